"""Sharding over 4 XLA CPU devices, in a subprocess (the device count is fixed at JAX start)."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json
    import jax, jax.numpy as jnp, numpy as np
    import towerjax
    from towerjax.synthetic import SyntheticProblem, blog_problem, sample_logged_data
    from towerjax.training import Batch, TrainConfig, objective_loss, shard_batch, train_seeds

    assert jax.device_count() == 4, jax.devices()
    # 48 of the 64 rows train: 6 full batches of 8, which split evenly over 2 devices below.
    config = TrainConfig(
        hidden_sizes=(8,), embedding_size=4, batch_size=8, epochs=2, objective="dr", validation_fraction=0.25,
        reward_model=towerjax.RewardModelConfig(hidden_sizes=(8,), epochs=2, batch_size=16),
    )
    tiny = SyntheticProblem(n_rounds=64, n_test_rounds=40, n_actions=5, dim=4)
    out = {}
    sharded, timing = train_seeds(config, seeds=8, seed=3, problem=tiny)
    single, single_timing = train_seeds(config, seeds=8, seed=3, devices=1, problem=tiny)
    out["devices"] = [timing["devices"], single_timing["devices"]]
    out["seed_axis_max_diff"] = max(
        float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(single))
    )

    problem = blog_problem(jax.random.key(0), n_actions=5, dim=4)
    data = sample_logged_data(jax.random.key(1), problem, 16)
    q_hat = jax.random.uniform(jax.random.key(2), (16, 5))
    batch = Batch(dataclasses.replace(data, pi_b=None, expected_reward=None), jnp.ones(16), q_hat)
    params = config.model.init(jax.random.key(4), 4, 4)
    # Gradients, not Adam steps: Adam turns rounding-level gradients into full +-lr steps.
    grad = jax.jit(jax.value_and_grad(objective_loss, argnums=1), static_argnums=0)
    plain = grad(config, params, batch, jax.random.key(5))
    spread = shard_batch(batch)
    out["batch_devices"] = len(spread.data.context.sharding.device_set)
    parallel = grad(config, params, spread, jax.random.key(5))
    out["batch_axis_max_diff"] = max(
        float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(parallel))
    )

    # Each run's minibatches spread over 2 devices (data_parallel), 2 seeds side by side: a
    # seed x batch mesh of the 4 devices, against the one-device run above. Same loss curve;
    # the parameters only to Adam's amplification of rounding (tiny gradients whose sign
    # flips move +-lr).
    runner = towerjax.compile_seeds(dataclasses.replace(config, data_parallel=2), seeds=8, seed=3, problem=tiny)
    out["spmd_all_reduce"] = "all-reduce" in runner.compiled.as_text()
    out["spmd_devices"] = runner.devices
    parallel_run = jax.device_get(runner.run())
    out["spmd_loss_diff"] = float(np.max(np.abs(parallel_run.loss - single.loss)))
    out["spmd_params_diff"] = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(jax.tree.leaves(parallel_run.params), jax.tree.leaves(single.params))
    )
    print(json.dumps(out))
    """
)


def _four_devices(*args, **kwargs):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, **kwargs)


def test_seed_batch_and_data_parallel_sharding_over_four_devices_match_one_device():
    proc = _four_devices(sys.executable, "-c", SCRIPT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == [4, 1] and out["batch_devices"] == 4
    assert out["seed_axis_max_diff"] < 1e-5
    assert out["batch_axis_max_diff"] < 1e-5
    assert out["spmd_all_reduce"] and out["spmd_devices"] == 4
    assert out["spmd_loss_diff"] < 1e-5
    assert out["spmd_params_diff"] < 1e-2  # 2 epochs x 6 Adam steps of lr 1e-3


def test_train_json_uses_every_local_device_by_default(tmp_path):
    path = tmp_path / "run.json"
    proc = _four_devices(
        sys.executable, "-m", "towerjax.cli", "train", "--n-rounds", "40", "--n-test-rounds", "20",
        "--n-actions", "3", "--batch-size", "8", "--epochs", "1", "--seeds", "4", "--json", str(path),
        "--validation-fraction", "0", "--select", "none",  # a smaller program to compile
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(path.read_text())["devices"] == 4
