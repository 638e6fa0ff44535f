"""Learning a list policy through the user's path: slate logs as CSV files, ``towerjax train`` at its defaults.

The Python-API check is benchmarks/list_learning.py; this one goes through the files and the command
line. On the synthetic position-based slate problem at its defaults
(:func:`towerjax.slate_synthetic.slate_problem`, ``key(0)``), each seed draws its own logs (the keys of
list_learning.py), writes them as a slate CSV (context columns ``x0..x4``; per position ``item_id_k``,
``reward_k`` and the logger's conditional ``pscore_k``; with ``--marginals`` also ``marginal_pscore_k``)
and runs ``towerjax train --logs slate.csv --out DIR --seed S`` with no other flag (the slate path is
detected; the objective is the default, snrips, or sniips with ``--marginals``). The saved model is
loaded back and its list policy's exact value on a fixed set of evaluation contexts
(:func:`towerjax.slate_synthetic.exact_list_value`, at the saved temperature) is compared with the
logging policy's and the best lists': ``gap_closed = (V(pi) - V(pi_0)) / (V(best) - V(pi_0))``, mean and
standard error over seeds; the deterministic top-K lists of the saved scores (what ``towerjax
recommend`` serves) beside it, and each run's own held-out verdict.

    python benchmarks/list_learning_cli.py                  # 3 seeds, about 2 minutes on 2 busy cores
    python benchmarks/list_learning_cli.py --marginals      # the logs carry position marginals: sniips
    python benchmarks/list_learning_cli.py --marginals --items   # and the item tower reads the item features

One JSON line on stdout; progress (the command's own lines) on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from towerjax.cli import main as towerjax_main
from towerjax.serving import load_model
from towerjax.slate_synthetic import (
    best_list_value,
    exact_list_value,
    logging_scores,
    sample_contexts,
    sample_slate_logs,
    slate_problem,
    top_k_list_value,
)


def slate_csv(logs, path: Path, marginals: bool) -> None:
    """Writes :class:`~towerjax.slate_synthetic.SlateLogs` as a slate log file (item ids ``i0..``)."""
    n, k = logs.lists.shape
    frame = pd.DataFrame(np.asarray(logs.context), columns=[f"x{j}" for j in range(logs.context.shape[1])])
    cascade = np.asarray(logs.pscore_cascade, np.float64)
    conditional = cascade / np.concatenate([np.ones((n, 1)), cascade[:, :-1]], axis=1)
    for j in range(k):
        frame[f"item_id_{j + 1}"] = [f"i{a}" for a in np.asarray(logs.lists[:, j])]
        frame[f"reward_{j + 1}"] = np.asarray(logs.rewards[:, j])
        frame[f"pscore_{j + 1}"] = conditional[:, j]
        if marginals:
            frame[f"marginal_pscore_{j + 1}"] = np.asarray(logs.pscore_item_position[:, j], np.float64)
    frame.to_csv(path, index=False)


def saved_scores(model: Path, context: np.ndarray, n_items: int) -> tuple[np.ndarray, float]:
    """``([n, A] scores in the problem's item order, temperature)`` of a saved model."""
    policy = load_model(model)
    frame = pd.DataFrame(context, columns=[f"x{j}" for j in range(context.shape[1])])
    scores = np.asarray(policy.scores(policy.encoding.encode_contexts(frame)))
    order = [list(policy.item_ids).index(f"i{a}") for a in range(n_items)]
    return scores[:, order], policy.temperature


def se(values: list[float]) -> float:
    """The standard error of the mean (NaN for one value)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-logs", type=int, default=5000)
    parser.add_argument("--n-eval", type=int, default=5000)
    parser.add_argument("--marginals", action="store_true", help="write marginal_pscore_k columns too")
    parser.add_argument(
        "--items", action="store_true", help="write the problem's item features as items.csv and pass --items"
    )
    parser.add_argument(
        "--train-args", default="", help="more flags for towerjax train (a diagnosis, not the defaults)"
    )
    args = parser.parse_args()

    problem = slate_problem(jax.random.key(0))
    context = sample_contexts(jax.random.key(1), problem, args.n_eval)
    v_log = float(exact_list_value(problem, context, logging_scores(problem, context)))
    v_best = float(best_list_value(problem, context))
    seed_keys = jax.random.split(jax.random.key(2), args.seeds)
    print(f"logging value {v_log:.4f}, best {v_best:.4f}, {args.seeds} seeds", file=sys.stderr)
    gaps, gaps_top, verdicts, seconds = [], [], [], []
    with tempfile.TemporaryDirectory() as root:
        extra = args.train_args.split()
        if args.items:
            features = np.asarray(problem.item_features)
            items = pd.DataFrame(features, columns=[f"f{j}" for j in range(features.shape[1])])
            items.insert(0, "item_id", [f"i{a}" for a in range(problem.n_items)])
            items.to_csv(Path(root) / "items.csv", index=False)
            extra = ["--items", str(Path(root) / "items.csv"), *extra]
        for s in range(args.seeds):
            logs = sample_slate_logs(seed_keys[s], problem, args.n_logs)
            path, model = Path(root) / f"slate{s}.csv", Path(root) / f"model{s}"
            slate_csv(logs, path, args.marginals)
            start = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):
                status = towerjax_main(
                    ["train", "--logs", str(path), "--out", str(model), "--seed", str(s), *extra]
                )
            if status != 0:
                raise SystemExit(status)
            seconds.append(time.perf_counter() - start)
            scores, temperature = saved_scores(model, np.asarray(context), problem.n_items)
            v_pl = float(exact_list_value(problem, context, scores, temperature))
            v_top = float(top_k_list_value(problem, context, scores))
            gaps.append((v_pl - v_log) / (v_best - v_log))
            gaps_top.append((v_top - v_log) / (v_best - v_log))
            report = json.loads((model / "report.json").read_text())
            verdicts.append(report["verdict"])
            objective = report["config"]["objective"]
            print(f"seed {s}: gap closed {gaps[-1]:.3f} (top-K {gaps_top[-1]:.3f})", file=sys.stderr)
    row = {
        "path": "towerjax train --logs slate.csv"
        + (" --items items.csv" if args.items else "")
        + (f" {args.train_args}" if args.train_args else " (defaults)"),
        "objective": objective,
        "marginals": args.marginals,
        "seeds": args.seeds,
        "n_logs": args.n_logs,
        "logging_value": round(v_log, 5),
        "best_value": round(v_best, 5),
        "gap_closed_mean": round(float(np.mean(gaps)), 4),
        "gap_closed_se": round(se(gaps), 4),
        "gap_closed_top_k_mean": round(float(np.mean(gaps_top)), 4),
        "gap_closed_top_k_se": round(se(gaps_top), 4),
        "gap_closed_per_seed": [round(g, 3) for g in gaps],
        "held_out_verdicts": verdicts,
        "train_s_per_seed": [round(t, 1) for t in seconds],
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
