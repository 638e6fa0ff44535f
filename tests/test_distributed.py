"""Several processes, one run (towerjax.training.parallel): two local CPU processes joined by JAX's
own runtime (coordinator and Gloo collectives), each reading half of the log, train the same
run as one process holding the whole log on as many devices."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.training import TrainConfig, parallel, train_seeds

N_ROUNDS, N_ACTIONS = 32, 5
CONFIG = TrainConfig(
    hidden_sizes=(),
    embedding_size=4,
    batch_size=8,
    epochs=2,
    validation_fraction=0,
    select=None,
    data_parallel=2,
)

# Each process: join the run from TOWERJAX_*, read its half of the log, train one seed.
WORKER = textwrap.dedent(
    """
    import json, sys
    from towerjax.training import parallel
    parallel.initialize()  # TOWERJAX_COORDINATOR, TOWERJAX_NUM_PROCESSES, TOWERJAX_PROCESS_ID
    import jax, numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_distributed import CONFIG, N_ROUNDS, logs, summary
    from towerjax.training import train_seeds

    local = logs().take_rows(np.arange(N_ROUNDS)[parallel.process_rows(N_ROUNDS)])
    data = parallel.global_logged_data(local)
    result, _ = train_seeds(CONFIG, seeds=1, seed=3, data=data)
    print(json.dumps({
        "processes": jax.process_count(), "devices": jax.device_count(), "rows": local.n_rounds,
        **summary(result),
    }))
    """
)


def logs() -> LoggedData:
    """A fixed uniform-logging log of 32 rounds and 5 items (numpy, so no JAX compiles)."""
    rng = np.random.default_rng(0)
    return LoggedData(
        context=rng.normal(size=(N_ROUNDS, 3)).astype(np.float32),
        action_context=rng.normal(size=(N_ACTIONS, 2)).astype(np.float32),
        action=rng.integers(0, N_ACTIONS, N_ROUNDS).astype(np.int32),
        reward=rng.binomial(1, 0.5, N_ROUNDS).astype(np.float32),
        pscore=np.full(N_ROUNDS, 1 / N_ACTIONS, np.float32),
    )


def summary(result) -> dict:
    return {
        "loss": np.asarray(result.loss).ravel().tolist(),
        "params": np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(result.params)]).tolist(),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_settings(monkeypatch):
    for variable in (parallel.COORDINATOR, parallel.NUM_PROCESSES, parallel.PROCESS_ID):
        monkeypatch.delenv(variable, raising=False)


def test_two_processes_train_the_run_of_one_process_on_the_whole_log():
    if jax.device_count() < 2:
        pytest.skip("the one-process reference needs 2 devices (conftest exposes them)")
    port, here = _free_port(), os.path.dirname(os.path.abspath(__file__))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in (parallel.COORDINATOR, parallel.NUM_PROCESSES, parallel.PROCESS_ID)
    }
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
        TOWERJAX_COORDINATOR=f"127.0.0.1:{port}",
        TOWERJAX_NUM_PROCESSES="2",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, here],
            env={**env, "TOWERJAX_PROCESS_ID": str(index)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        # Meanwhile the reference: one process, both rows halves, the same 2-device mesh.
        reference, _ = train_seeds(CONFIG, seeds=1, seed=3, data=parallel.global_logged_data(logs()))
        outputs = [proc.communicate(timeout=180) for proc in procs]  # a hung collective fails here
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
    first, second = (json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs)
    assert first["processes"] == 2 and first["devices"] == 2 and first["rows"] == N_ROUNDS // 2
    assert first == second  # one run, gathered whole on every process
    expected = summary(reference)
    np.testing.assert_allclose(first["loss"], expected["loss"], atol=1e-5)
    # Parameters loosely: Adam turns rounding-level gradient differences into +-lr steps.
    np.testing.assert_allclose(first["params"], expected["params"], atol=1e-2)


def test_global_logged_data_in_one_process_is_the_log_with_rows_over_the_devices():
    data = logs()
    spread = parallel.global_logged_data(data)
    assert spread.context.sharding.spec == jax.sharding.PartitionSpec(("rows",))
    assert len(spread.action.sharding.device_set) == jax.device_count()
    assert spread.action_context.sharding.is_fully_replicated
    assert spread.pi_b is None
    for got, want in zip(jax.tree.leaves(spread), jax.tree.leaves(data), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_global_logged_data_needs_rows_divisible_by_the_devices():
    if jax.device_count() < 2:
        pytest.skip("needs 2 devices")
    with pytest.raises(InputError, match="local"):
        parallel.global_logged_data(logs().take_rows(np.arange(N_ROUNDS - 1)))


def test_process_rows_are_equal_contiguous_shares():
    assert parallel.process_rows(10) == slice(0, 10)  # one process
    shares = [parallel.process_rows(12, process_id=p, num_processes=3) for p in range(3)]
    assert shares == [slice(0, 4), slice(4, 8), slice(8, 12)]
    with pytest.raises(InputError, match="n_rounds"):
        parallel.process_rows(10, process_id=0, num_processes=3)


def test_initialize_without_settings_or_with_one_process_does_nothing(no_settings):
    assert parallel.initialize_from_environment() is False
    assert parallel.initialize("127.0.0.1:1234", 1, 0) is False
    assert not jax.distributed.is_initialized() and jax.process_count() == 1


@pytest.mark.parametrize(
    ("arguments", "environment", "named"),
    [
        ({"coordinator_address": "127.0.0.1:1234"}, {}, "TOWERJAX_NUM_PROCESSES"),
        (
            {},
            {"TOWERJAX_COORDINATOR": "127.0.0.1:1234", "TOWERJAX_NUM_PROCESSES": "2"},
            "TOWERJAX_PROCESS_ID",
        ),
        (
            {},
            {"TOWERJAX_COORDINATOR": "h:1", "TOWERJAX_NUM_PROCESSES": "two", "TOWERJAX_PROCESS_ID": "0"},
            "TOWERJAX_NUM_PROCESSES",
        ),
        ({"process_id": 2}, {"TOWERJAX_COORDINATOR": "h:1", "TOWERJAX_NUM_PROCESSES": "2"}, "process_id"),
        ({"num_processes": 2, "process_id": -1}, {"TOWERJAX_COORDINATOR": "h:1"}, "process_id"),
        (
            {"num_processes": 2, "process_id": 0},
            {"TOWERJAX_COORDINATOR": "localhost"},
            "TOWERJAX_COORDINATOR",
        ),
        ({"coordinator_address": "h:99999", "num_processes": 2, "process_id": 0}, {}, "coordinator_address"),
    ],
)
def test_initialize_names_the_missing_or_malformed_setting(
    no_settings, monkeypatch, arguments, environment, named
):
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(InputError) as error:
        parallel.initialize(**arguments)
    assert error.value.argument == named
