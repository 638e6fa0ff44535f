"""Seed-runs per hour: towerjax (seeds vmapped and sharded over cores) vs a PyTorch reference.

Both train the seed study's IPS learner on its defaults (15000 rounds, batch 10, 10 actions,
50-dim features, (100, 100, 100) elu towers, D = 100, Adam 0.005 with L2 1e-6) and evaluate
the true test value after every epoch (towerjax also the train value). Every epoch costs
the same, so a full 100-epoch seed-run is timed as 100 x the median epoch:

* towerjax: ``--epochs`` epochs per compiled call, ``--repeats`` calls after compiling;
  seconds per epoch = median call / epochs.
* reference: ``--reference-epochs`` epochs of one seed; seconds per epoch = median epoch.

Prints one JSON object per line (``"kind": "towerjax" | "reference" | "ratio"``) and a
summary. Run: ``python benchmarks/speed.py`` (add ``--no-reference`` without PyTorch).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=str, default="1,16", help="comma-separated vmapped seed counts")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed towerjax call")
    parser.add_argument("--repeats", type=int, default=3, help="timed towerjax calls after compiling")
    parser.add_argument("--reference-epochs", type=int, default=3, help="epochs of the PyTorch reference")
    parser.add_argument("--full-epochs", type=int, default=100, help="epochs in one seed-run")
    parser.add_argument("--devices", type=int, default=None, help="CPU devices (default: one per core)")
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch reference")
    parser.add_argument("--json", type=str, default=None, help="also write all records here")
    args = parser.parse_args()
    if min(args.epochs, args.repeats, args.reference_epochs, args.full_epochs) < 1:
        parser.error("--epochs, --repeats, --reference-epochs and --full-epochs must be positive")
    return args


def _emit(record: dict, records: list[dict]) -> None:
    records.append(record)
    print(json.dumps(record), flush=True)


def main() -> int:
    args = _parse()
    count = args.devices or len(os.sched_getaffinity(0))
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
        ).strip()
    import jax
    import numpy as np

    from towerjax.batching import num_batches
    from towerjax.synthetic import blog_problem, sample_logged_data
    from towerjax.train import TrainConfig, make_train, seed_sharding

    records: list[dict] = []
    config = TrainConfig(objective="ips", epochs=args.epochs)
    steps_per_epoch = num_batches(config.n_rounds, config.batch_size)
    jax_rates = {}
    for seeds in [int(s) for s in args.seeds.split(",")]:
        sharding = seed_sharding(seeds, args.devices)
        keys = jax.device_put(jax.random.split(jax.random.key(0), seeds), sharding)
        start = time.perf_counter()
        compiled = jax.jit(jax.vmap(make_train(config))).lower(keys).compile()
        seconds_compile = time.perf_counter() - start
        calls = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = jax.block_until_ready(compiled(keys))
            calls.append(time.perf_counter() - start)
        per_epoch = statistics.median(calls) / args.epochs
        rate = seeds * 3600.0 / (per_epoch * args.full_epochs)
        jax_rates[seeds] = rate
        _emit(
            {
                "kind": "towerjax",
                "backend": jax.default_backend(),
                "seeds": seeds,
                "devices": len(sharding.mesh.devices.flat),
                "seconds_compile": round(seconds_compile, 3),
                "seconds_per_epoch": round(per_epoch, 4),
                "us_per_step": round(per_epoch / steps_per_epoch * 1e6, 1),
                "seed_runs_per_hour": round(rate, 2),
                "final_test_value_mean": float(np.mean(result.test_value[:, -1])),
            },
            records,
        )

    if not args.no_reference:
        if importlib.util.find_spec("torch") is None:
            print("PyTorch is not installed: skipping the reference (pip install -e '.[reference]')")
        else:
            import torch

            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from torch_reference import train_reference

            problem = blog_problem(jax.random.key(0))
            data = sample_logged_data(jax.random.key(1), problem, config.n_rounds)
            test = sample_logged_data(jax.random.key(2), problem, config.n_test_rounds)
            arrays = {
                k: np.array(getattr(data, k))
                for k in ("context", "action_context", "action", "reward", "pscore")
            }
            out = train_reference(
                arrays, np.array(test.expected_reward), np.array(test.context), epochs=args.reference_epochs
            )
            per_epoch = statistics.median(out["seconds_per_epoch"])
            ref_rate = 3600.0 / (per_epoch * args.full_epochs)
            _emit(
                {
                    "kind": "reference",
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "seconds_per_epoch": round(per_epoch, 4),
                    "us_per_step": round(per_epoch / steps_per_epoch * 1e6, 1),
                    "seed_runs_per_hour": round(ref_rate, 2),
                },
                records,
            )
            for seeds, rate in jax_rates.items():
                _emit(
                    {"kind": "ratio", "seeds": seeds, "towerjax_over_reference": round(rate / ref_rate, 2)},
                    records,
                )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(records, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
