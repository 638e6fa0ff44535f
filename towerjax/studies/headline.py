"""The main job, ``towerjax run``: the seed study's headline comparison on the built-in synthetic data.

IPS, DR and regression learners under uniform and epsilon-greedy logging; each cell
(logging policy, learner) is one compiled call over the seeds
(:func:`towerjax.train.train_seeds`) and one row holding every seed's values. The cells run
through :func:`towerjax.studies.runner.run_study`, so an interrupted job resumes from
``--out``; at the end it writes ``results.json``, ``results.csv`` and ``results.png``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from towerjax import jsonio
from towerjax.arguments import add_seed_arguments, check_out_dir, positive_int, subcommand
from towerjax.checks import check_positive_int
from towerjax.evaluation import mean_se
from towerjax.studies.runner import ROWS_FILE, Study, interrupted, run_study
from towerjax.train import TrainConfig, train_seeds

__all__ = [
    "HEADLINE_BEHAVIORS",
    "HEADLINE_LEARNERS",
    "HeadlineStudy",
    "add_parser",
    "format_table",
    "plot_results",
    "run_headline",
    "write_results",
]

HEADLINE_LEARNERS = ("ips", "dr", "regression")
HEADLINE_BEHAVIORS = ("uniform", "epsilon-greedy")
CSV_FIELDS = ("behavior", "learner", "seed", "test_value", "initial_value", "behavior_value", "optimal_value")


class HeadlineStudy(Study):
    """Cells ``(behavior, learner)`` of ``base``; each row is one cell's per-seed values and timings."""

    name = "headline"

    def __init__(self, base: TrainConfig, *, seeds: int, seed: int, devices: int | None = None):
        self.base, self.seeds, self.seed, self.devices = (
            base,
            check_positive_int("seeds", seeds),
            seed,
            devices,
        )

    def manifest(self) -> dict:
        return {"config": self.base.to_dict(), "seeds": self.seeds, "seed": self.seed}

    def cells(self) -> list[tuple[str, str]]:
        return [(behavior, learner) for behavior in HEADLINE_BEHAVIORS for learner in HEADLINE_LEARNERS]

    def label(self, cell: tuple[str, str]) -> str:
        return f"{cell[0]:>14} {cell[1]:>10}"

    def summary(self, cell: tuple[str, str], rows: list[dict]) -> str:
        (row,) = rows
        mean, se = mean_se(row["test_value"])
        compile_ = f"compile {row['seconds_compile']:.1f}s on {row['devices']} device(s)"
        return f"test value {mean:.4f} ± {se:.4f}, {compile_}"

    def run_cell(self, cell: tuple[str, str]) -> list[dict]:
        behavior, learner = cell
        config = dataclasses.replace(self.base, behavior=behavior, objective=learner)
        result, timing = train_seeds(config, seeds=self.seeds, seed=self.seed, devices=self.devices)
        return [
            {
                "behavior": behavior,
                "learner": learner,
                "config": config.to_dict(),
                "test_value": result.test_value[:, -1].tolist(),
                "test_curve": result.test_value.mean(axis=0).tolist(),
                "initial_value": result.initial_value.tolist(),
                "behavior_value": result.behavior_value.tolist(),
                "optimal_value": result.optimal_value.tolist(),
                **timing,
            }
        ]

    def render(self, rows: list[dict], out: Path) -> None:
        write_results(rows, out, seeds=self.seeds, seed=self.seed)
        plot_results(rows, out / "results.png")


def run_headline(
    base: TrainConfig,
    *,
    seeds: int,
    seed: int,
    out: Path,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
    devices: int | None = None,
) -> list[dict]:
    """Runs every (logging policy, learner) cell not yet in ``out``; returns one dict per cell.

    Each dict holds the cell's ``behavior``, ``learner``, ``config``, per-seed
    ``test_value``, ``initial_value``, ``behavior_value`` and ``optimal_value``, the
    seed-mean ``test_curve`` and the timings of :func:`towerjax.train.train_seeds`.
    """
    study = HeadlineStudy(base, seeds=seeds, seed=seed, devices=devices)
    return run_study(study, out, progress=progress, log=log)


def write_results(cells: list[dict], out: Path, *, seeds: int, seed: int) -> None:
    """Writes ``results.json`` and ``results.csv`` (one row per cell and seed)."""
    payload = {"seeds": seeds, "seed": seed, "table": format_table(cells), "cells": cells}
    (out / "results.json").write_text(jsonio.dumps(payload, indent=2))
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for cell in cells:
            for index, value in enumerate(cell["test_value"]):
                writer.writerow(
                    {
                        "behavior": cell["behavior"],
                        "learner": cell["learner"],
                        "seed": index,
                        "test_value": value,
                        "initial_value": cell["initial_value"][index],
                        "behavior_value": cell["behavior_value"][index],
                        "optimal_value": cell["optimal_value"][index],
                    }
                )


def format_table(cells: list[dict]) -> str:
    """Markdown table: mean ± standard error of the final test value per learner and logging."""
    header = "| logging | learner | test value | initial | logging policy | best |"
    lines = [header, "|---|---|---|---|---|---|"]
    for cell in cells:
        test, init, beh, best = (
            mean_se(cell[k]) for k in ("test_value", "initial_value", "behavior_value", "optimal_value")
        )
        lines.append(
            f"| {cell['behavior']} | {cell['learner']} | {test[0]:.4f} ± {test[1]:.4f} | "
            f"{init[0]:.4f} | {beh[0]:.4f} | {best[0]:.4f} |"
        )
    return "\n".join(lines)


def plot_results(cells: list[dict], path: Path) -> None:
    """Learning curves (mean test value per epoch) per logging policy, with reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HEADLINE_BEHAVIORS), figsize=(11, 4), sharey=True)
    for ax, behavior in zip(np.atleast_1d(axes), HEADLINE_BEHAVIORS, strict=True):
        chosen = [c for c in cells if c["behavior"] == behavior]
        for cell in chosen:
            curve = np.asarray(cell["test_curve"])
            epochs = np.arange(1, curve.size + 1)
            mean, se = mean_se(cell["test_value"])
            ax.plot(epochs, curve, marker="o", ms=3, label=f"{cell['learner']} ({mean:.3f} ± {se:.3f})")
        if chosen:
            ax.axhline(np.mean(chosen[0]["behavior_value"]), color="gray", ls="--", label="logging policy")
            ax.axhline(np.mean(chosen[0]["optimal_value"]), color="black", ls=":", label="best")
        ax.set_title(f"{behavior} logging")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("test policy value (mean over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """The top-level ``towerjax run``."""
    parser = subcommand(
        subparsers, "run", _main, help="main job: IPS, DR and regression under two logging policies"
    )
    parser.add_argument("--out", type=Path, default=Path("towerjax-results"), help="output folder (resumes)")
    parser.add_argument("--epochs", type=positive_int, default=10, help="passes over the logs")
    parser.add_argument("--n-rounds", type=positive_int, default=15000, help="logged training events")
    add_seed_arguments(parser, seeds=8)


def _main(args: argparse.Namespace) -> int:
    config = TrainConfig(n_rounds=args.n_rounds, epochs=args.epochs)
    check_out_dir(args.subparser, "--out", args.out)
    print(
        f"towerjax run: IPS, DR and regression learners x uniform and epsilon-greedy logging, "
        f"{args.seeds} seeds, {config.n_rounds} rounds, {config.epochs} epochs, batch {config.batch_size}",
        flush=True,
    )
    try:
        cells = run_headline(config, seeds=args.seeds, seed=args.seed, out=args.out, devices=args.devices)
    except KeyboardInterrupt:
        return interrupted(args.out / ROWS_FILE)
    print()
    print(format_table(cells))
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'results.csv'}, {args.out / 'results.png'}")
    return 0
