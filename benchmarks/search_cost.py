"""What a search costs next to one run: 16 candidates against one configuration, side by side.

On the same logs, alternately: one run of ``TrainConfig()`` (:func:`towerjax.training.train_seeds`,
one seed: compile and train, as ``towerjax train --search none`` does) and
:func:`towerjax.training.train_search` with a 16-candidate :class:`~towerjax.training.Search`
(naive and regression at two learning rates, SNIPS and DR at two learning rates x three entropy
bonuses: one compiled call), plus its report on the held-out rows. Each is timed end to end
(compiling included: a user pays it every time), ``--repeats`` times; the medians and their
ratio are printed as one JSON line per task, and a Markdown line for benchmarks/RESULTS.md.

    python benchmarks/search_cost.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from towerjax.training import expose_cpu_cores

expose_cpu_cores()

import jax  # noqa: E402

from towerjax.synthetic import SyntheticProblem  # noqa: E402
from towerjax.training import Search, TrainConfig, train_search, train_seeds  # noqa: E402

# 2 + 2 + 6 + 6 candidates (the regression baseline at one temperature)
SEARCH_16 = Search(objectives=("naive", "regression", "snips", "dr"), temperature=(1.0,))


def _tasks() -> dict:
    """``{name: logs}``: the seed study's problem (15,000 events, 10 items) and a smaller one."""
    out = {}
    for name, problem in {
        "synthetic-15000x10": SyntheticProblem(),
        "synthetic-3000x50": SyntheticProblem(n_rounds=3000, n_test_rounds=1000, n_actions=50),
    }.items():
        out[name] = problem.sample(*jax.random.split(jax.random.key(0), 3))[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    candidates = sum(len(v) for _, v in SEARCH_16.groups(TrainConfig()))
    assert candidates == 16, candidates
    lines = []
    for name, data in _tasks().items():
        one, search = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            train_seeds(TrainConfig(), seeds=1, data=data)
            one.append(time.perf_counter() - start)
            start = time.perf_counter()
            train_search(SEARCH_16, TrainConfig(), data)
            search.append(time.perf_counter() - start)
        row = {
            "task": name,
            "candidates": candidates,
            "one_run_seconds": one,
            "search_seconds": search,
            "one_run_median": statistics.median(one),
            "search_median": statistics.median(search),
            "ratio": statistics.median(search) / statistics.median(one),
        }
        print(json.dumps(row), flush=True)
        lines.append(
            f"| {name} | {row['one_run_median']:.1f} | {row['search_median']:.1f} | {row['ratio']:.2f} |"
        )
    print("| logs | one run (s, median) | search of 16 (s, median) | ratio |\n|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
