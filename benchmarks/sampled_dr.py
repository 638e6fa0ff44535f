"""The sampled softmax's gradient bias for DR beside IPS: distance to the exact gradient at M = 4 ... 1024.

On one minibatch of the built-in synthetic problem (``--items`` items, ``--batch`` rows, the
library's default towers at their initial parameters, the entropy bonus off so that each
objective's own gradient is measured), the exact gradient of each objective (full softmax over
all items; DR with ``q_hat [B, A]`` from a cross-fitted reward model) is compared with the
gradient of the same objective under ``TrainConfig(sampled_softmax=M)`` (log-Q corrected,
:func:`towerjax.training.objective_loss`; DR's direct term self-normalised over the samples,
with the *same* ``q_hat`` gathered at the logged and sampled items), over ``--draws`` draws of
the ``M`` items per ``M``. For each objective and ``M`` it prints one JSON line:

- ``bias``: ``||mean_r g_r - g_exact|| / ||g_exact||``, the distance of the draws' mean gradient
  (what the sampled softmax converges to in expectation) to the exact one;
- ``noise_floor``: ``sqrt(sum_p Var_r(g_rp) / R) / ||g_exact||``, the part of ``bias`` that the
  finite number of draws alone gives (``bias`` well above it is real bias);
- ``per_draw``: ``sqrt(mean_r ||g_r - g_exact||^2) / ||g_exact||``, one step's distance (bias and
  variance together).

One compiled function per ``M`` computes both objectives' gradients.

``--step-items A`` instead times one jitted update step (``make_update_step``) of sampled IPS and
sampled DR at ``A`` items (random features, ``M = 1024``, batch 128, the default reward model's
cross-fitted fold models scoring the ``B (1 + M)`` pairs per step), interleaved rounds, medians
and the per-round DR / IPS ratio (``kind: "sampled_step"``). Run::

    python benchmarks/sampled_dr.py                     # A = 10,000, B = 128, 200 draws, uniform q
    python benchmarks/sampled_dr.py --proposal popularity --temperature 0.25
    python benchmarks/sampled_dr.py --step-items 1000000
    python benchmarks/sampled_dr.py --quick             # small, for a smoke test

JSON lines on stdout, progress on stderr; results in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="catalogue size A")
    parser.add_argument("--batch", type=int, default=128, help="minibatch rows B")
    parser.add_argument("--draws", type=int, default=200, help="draws of the M items per M")
    parser.add_argument("--num-samples", default="4,16,64,256,1024", help="comma-separated M")
    parser.add_argument("--proposal", choices=("uniform", "popularity"), default="uniform")
    parser.add_argument("--temperature", type=float, default=1.0, help="policy temperature tau")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="A = 500, B = 32, 50 draws, M = 4, 64")
    parser.add_argument("--step-items", type=int, default=None, help="time update steps at this many items")
    parser.add_argument("--rounds", type=int, default=20, help="--step-items: timed rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.batch, args.draws, args.num_samples = 500, 32, 50, "4,64"
    args.num_samples = [int(m) for m in args.num_samples.split(",")]
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _setting(args):
    """One minibatch, its item proposal, the towers' parameters and a cross-fitted ``q_hat [B, A]``."""
    import jax
    import jax.numpy as jnp

    from towerjax.large_softmax import item_proposal, popularity_log_q, uniform_log_q
    from towerjax.objectives import DR, IPS
    from towerjax.reward_model import RewardModel
    from towerjax.synthetic import SyntheticProblem
    from towerjax.training import Batch, TrainConfig

    keys = jax.random.split(jax.random.key(args.seed), 5)
    logs = max(8 * args.batch, 1024)  # the reward model is fitted on these rows; the batch is the first B
    problem = SyntheticProblem(n_rounds=logs, n_test_rounds=1, n_actions=args.items, dim=10)
    data, _ = problem.sample(keys[0], keys[1], keys[2])
    q_hat = jax.jit(RewardModel().cross_fit)(keys[3], data)[: args.batch]
    counts = jnp.bincount(data.action, length=args.items)
    log_q = popularity_log_q(counts) if args.proposal == "popularity" else uniform_log_q(args.items)
    batch_data = data.take_rows(jnp.arange(args.batch))
    batch_data = dataclasses.replace(batch_data, pi_b=None, expected_reward=None)
    batch = Batch(batch_data, jnp.ones(args.batch), q_hat=q_hat, proposal=item_proposal(log_q))
    configs = {
        name: TrainConfig(objective=objective, temperature=args.temperature)
        for name, objective in (("ips", IPS(entropy=0.0)), ("dr", DR(entropy=0.0)))
    }
    params = configs["ips"].model.init(keys[4], 10, 10)
    return batch, params, configs


def _flat(tree):
    import jax
    import jax.numpy as jnp

    return jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(tree)])


def run(args) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from towerjax.training import objective_loss

    batch, params, configs = _setting(args)
    exact = {
        name: _flat(jax.jit(jax.grad(objective_loss, argnums=1), static_argnums=0)(config, params, batch))
        for name, config in configs.items()
    }
    keys = jax.random.split(jax.random.key(args.seed + 1), args.draws)
    records = []
    for m in args.num_samples:
        sampled = {name: dataclasses.replace(config, sampled_softmax=m) for name, config in configs.items()}

        @jax.jit
        def stats(keys, sampled=sampled):
            def one(key):
                return {
                    n: _flat(jax.grad(objective_loss, argnums=1)(c, params, batch, key))
                    for n, c in sampled.items()
                }

            grads = jax.lax.map(one, keys, batch_size=min(50, args.draws))  # {name: [R, P]}
            out = {}
            for name, g in grads.items():
                norm = jnp.linalg.norm(exact[name])
                mean = jnp.mean(g, 0)
                out[name] = {
                    "bias": jnp.linalg.norm(mean - exact[name]) / norm,
                    "noise_floor": jnp.sqrt(jnp.sum(jnp.var(g, 0, ddof=1)) / g.shape[0]) / norm,
                    "per_draw": jnp.sqrt(jnp.mean(jnp.sum((g - exact[name]) ** 2, -1))) / norm,
                }
            return out

        start = time.perf_counter()
        out = jax.block_until_ready(stats(keys))
        seconds = time.perf_counter() - start
        for name, values in out.items():
            record = {
                "kind": "sampled_gradient_distance",
                "objective": name,
                "num_samples": m,
                **{k: float(f"{float(v):.4g}") for k, v in values.items()},
                "items": args.items,
                "batch": args.batch,
                "draws": args.draws,
                "proposal": args.proposal,
                "temperature": args.temperature,
            }
            records.append(record)
            print(json.dumps(record), flush=True)
        _log(f"M = {m}: {seconds:.1f} s (compile and {args.draws} draws)")
    return records


def run_step(args) -> list[dict]:
    """Median seconds of one update step, sampled IPS and sampled DR, interleaved rounds."""
    import statistics

    import jax
    import jax.numpy as jnp

    from towerjax.data import LoggedData
    from towerjax.large_softmax import item_proposal, uniform_log_q
    from towerjax.objectives import DR, IPS
    from towerjax.reward_model import FoldFits, RewardModel
    from towerjax.training import Batch, TrainConfig, make_optimizer, make_update_step

    num_items, dim, m, b = args.step_items, 10, args.num_samples[-1], args.batch
    keys = jax.random.split(jax.random.key(args.seed), 6)
    n = 2000
    data = LoggedData(
        context=jax.random.normal(keys[0], (n, dim)),
        action_context=jax.random.normal(keys[1], (num_items, dim)),
        action=jax.random.randint(keys[2], (n,), 0, num_items),
        reward=jax.random.bernoulli(keys[3], 0.3, (n,)).astype(jnp.float32),
        pscore=jnp.full((n,), 1.0 / num_items),
    )
    fits = jax.jit(RewardModel().fold_fits)(keys[4], data)
    rows = data.take_rows(jnp.arange(b))
    proposal = item_proposal(uniform_log_q(num_items))
    batch = Batch(rows, jnp.ones(b), proposal=proposal, reward_fits=FoldFits(fits.params, fits.fold[:b]))
    steps, states = {}, {}
    for name, objective in (("ips", IPS()), ("dr", DR())):
        config = TrainConfig(objective=objective, sampled_softmax=m, batch_size=b)
        params = config.model.init(keys[5], dim, dim)
        steps[name] = jax.jit(make_update_step(config))
        states[name] = (params, make_optimizer(config).init(params))
        start = time.perf_counter()
        jax.block_until_ready(steps[name](*states[name], batch, keys[5]))
        _log(f"{name}: compiled and ran one step in {time.perf_counter() - start:.1f} s")
    seconds = {name: [] for name in steps}
    for r in range(args.rounds):
        key = jax.random.fold_in(keys[5], r)
        for name, step in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(step(*states[name], batch, key))
            seconds[name].append(time.perf_counter() - start)
    ratios = [d / i for d, i in zip(seconds["dr"], seconds["ips"], strict=True)]
    record = {
        "kind": "sampled_step",
        "items": num_items,
        "num_samples": m,
        "batch": b,
        "rounds": args.rounds,
        "ips_step_seconds_median": float(f"{statistics.median(seconds['ips']):.4g}"),
        "dr_step_seconds_median": float(f"{statistics.median(seconds['dr']):.4g}"),
        "dr_over_ips_median": float(f"{statistics.median(ratios):.3g}"),
    }
    print(json.dumps(record), flush=True)
    return [record]


def main(argv=None) -> int:
    args = _parse(argv)
    if args.step_items is not None:
        _log(f"sampled IPS and DR update steps: A = {args.step_items}, B = {args.batch}")
        run_step(args)
        return 0
    _log(f"sampled-softmax gradient distance: A = {args.items}, B = {args.batch}, {args.draws} draws")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
