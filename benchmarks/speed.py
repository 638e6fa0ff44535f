"""Seed-runs per hour: towerjax (seeds vmapped and sharded over cores) vs a PyTorch reference.

Both train the seed study's IPS learner on its defaults (15000 rounds, batch 10, 10 actions,
50-dim features, (100, 100, 100) elu towers, D = 100, Adam 0.005 with L2 1e-6) and compute
the true test value (10000 held-out contexts) after every epoch; towerjax also computes the
true train value (15000 contexts) every epoch, work the reference does not do.

Every epoch costs the same, so a 100-epoch seed-run is timed as 100 x the median epoch. The
machine is shared and noisy, so the measurements are interleaved: each round times one
call of every towerjax layout (``--epochs`` epochs) and then ``--reference-epochs`` epochs
of the reference, and the ratio is taken per round; medians are reported.

Prints one JSON object per line (``"kind": "towerjax" | "reference" | "ratio"``).
Run: ``python benchmarks/speed.py`` (``--no-reference`` without PyTorch).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import sys
import time

from harness import emit  # benchmarks/harness.py: one JSON line per record


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=str, default="1,16", help="comma-separated vmapped seed counts")
    parser.add_argument(
        "--seeds-per-device",
        type=str,
        default="8",
        help="extra layouts of the largest seed count: seeds each device trains at once (comma-separated)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed towerjax call")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    parser.add_argument("--reference-epochs", type=int, default=1, help="reference epochs per round")
    parser.add_argument("--full-epochs", type=int, default=100, help="epochs in one seed-run")
    parser.add_argument("--n-rounds", type=int, default=15000, help="logged training events of the problem")
    parser.add_argument("--n-test-rounds", type=int, default=10000, help="held-out test events")
    parser.add_argument("--devices", type=int, default=None, help="CPU devices (default: one per core)")
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--json", type=str, default=None, help="also write all records here")
    args = parser.parse_args()
    if (
        min(
            args.epochs,
            args.rounds,
            args.reference_epochs,
            args.full_epochs,
            args.n_rounds,
            args.n_test_rounds,
        )
        < 1
    ):
        parser.error(
            "--epochs, --rounds, --reference-epochs, --full-epochs, --n-rounds and --n-test-rounds must be positive"
        )
    return args


def main() -> int:
    args = _parse()
    from towerjax.training import expose_cpu_cores

    expose_cpu_cores(args.devices)
    import jax
    import numpy as np

    from towerjax.batching import num_batches
    from towerjax.synthetic import SyntheticProblem
    from towerjax.training import TrainConfig, compile_seeds

    records: list[dict] = []
    config = TrainConfig.seed_study(objective="ips", epochs=args.epochs)
    problem = SyntheticProblem(n_rounds=args.n_rounds, n_test_rounds=args.n_test_rounds)
    steps_per_epoch = num_batches(problem.n_rounds, config.batch_size)
    seed_counts = [int(s) for s in args.seeds.split(",")]
    layouts = [(s, None, True) for s in seed_counts]
    layouts += [(max(seed_counts), None, False)]  # the reference's work: test value only
    layouts += [(max(seed_counts), int(g), True) for g in args.seeds_per_device.split(",") if g]
    runners = {}
    for seeds, per_device, evaluate_train in layouts:
        runner = compile_seeds(
            dataclasses.replace(config, evaluate_train=evaluate_train),
            seeds=seeds,
            devices=args.devices,
            seeds_per_device=per_device,
            problem=problem,
        )
        at_once = seeds // runner.devices // runner.groups
        evaluated = "train+test" if evaluate_train else "test only (as the reference)"
        runners[f"{seeds} seeds, {at_once}/device at once, eval {evaluated}"] = runner
        jax.block_until_ready(runner.run())  # warm-up call

    reference = None
    if not args.no_reference:
        if importlib.util.find_spec("torch") is None:
            print("PyTorch is not installed: skipping the reference (pip install -e '.[reference]')")
        else:
            import torch

            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from torch_reference import train_reference

            data, test = problem.sample(jax.random.key(0), jax.random.key(1), jax.random.key(2))
            arrays = {
                k: np.array(getattr(data, k))
                for k in ("context", "action_context", "action", "reward", "pscore")
            }

            def reference(seed: int) -> float:
                out = train_reference(
                    arrays,
                    np.array(test.expected_reward),
                    np.array(test.context),
                    epochs=args.reference_epochs,
                    seed=seed,
                )
                return statistics.median(out["seconds_per_epoch"])

    epoch_seconds = {name: [] for name in runners}
    reference_seconds = []
    for round_index in range(args.rounds):
        for name, runner in runners.items():
            start = time.perf_counter()
            jax.block_until_ready(runner.run())
            epoch_seconds[name].append((time.perf_counter() - start) / args.epochs)
        if reference is not None:
            reference_seconds.append(reference(round_index))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    for name, runner in runners.items():
        per_epoch = statistics.median(epoch_seconds[name])
        emit(
            {
                "kind": "towerjax",
                "layout": name,
                "backend": jax.default_backend(),
                "seeds": runner.seeds,
                "devices": runner.devices,
                "seconds_compile": round(runner.seconds_compile, 3),
                "seconds_per_epoch_median": round(per_epoch, 4),
                "us_per_step": round(per_epoch / steps_per_epoch * 1e6, 1),
                "seed_runs_per_hour": round(runner.seeds * 3600.0 / (per_epoch * args.full_epochs), 2),
            },
            records,
        )
    if reference_seconds:
        per_epoch = statistics.median(reference_seconds)
        emit(
            {
                "kind": "reference",
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "seconds_per_epoch_median": round(per_epoch, 4),
                "us_per_step": round(per_epoch / steps_per_epoch * 1e6, 1),
                "seed_runs_per_hour": round(3600.0 / (per_epoch * args.full_epochs), 2),
            },
            records,
        )
        for name, runner in runners.items():
            per_round = [
                runner.seeds * ref / mine
                for mine, ref in zip(epoch_seconds[name], reference_seconds, strict=True)
            ]
            emit(
                {
                    "kind": "ratio",
                    "layout": name,
                    "towerjax_over_reference_median": round(statistics.median(per_round), 2),
                    "per_round": [round(r, 2) for r in per_round],
                },
                records,
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(records, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
