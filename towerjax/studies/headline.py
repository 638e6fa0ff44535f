"""The main job, ``towerjax run``: the seed study's headline comparison on the built-in synthetic data.

IPS, DR and regression learners under uniform and epsilon-greedy logging; each cell
(logging policy, learner) is one compiled call over the seeds
(:func:`towerjax.training.train_seeds`) and one row holding every seed's values. The cells run
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
from towerjax.checks import check_positive_int
from towerjax.cli.arguments import add_seed_arguments, check_out_dir, positive_int, subcommand
from towerjax.evaluation import mean_se
from towerjax.objectives import objective_from_name
from towerjax.studies.runner import ROWS_FILE, Study, interrupted, run_study
from towerjax.synthetic import SyntheticProblem
from towerjax.training import TrainConfig, train_seeds

__all__ = [
    "HEADLINE_BEHAVIORS",
    "HEADLINE_LEARNERS",
    "HeadlineStudy",
    "add_parser",
    "format_table",
    "headline_settings",
    "plot_results",
    "run_headline",
    "write_results",
]

HEADLINE_LEARNERS = ("ips", "dr", "regression")
HEADLINE_BEHAVIORS = ("uniform", "epsilon-greedy")
CSV_FIELDS = (
    "settings",
    "behavior",
    "learner",
    "seed",
    "test_value",
    "selected_value",
    "initial_value",
    "behavior_value",
    "optimal_value",
)


def headline_settings(*, n_rounds: int = 15000, epochs: int | None = None) -> dict[str, TrainConfig]:
    """The two settings ``towerjax run`` compares: the library's defaults, and the seed
    study's (``TrainConfig.seed_study``, 10 epochs unless ``epochs`` is given); batches of at
    most the problem's ``n_rounds`` logged events."""
    defaults = TrainConfig(batch_size=min(TrainConfig().batch_size, n_rounds))
    seed = TrainConfig.seed_study(epochs=10, batch_size=min(10, n_rounds))
    if epochs is not None:
        defaults, seed = (dataclasses.replace(c, epochs=epochs) for c in (defaults, seed))
    return {"defaults": defaults, "seed-study": seed}


class HeadlineStudy(Study):
    """Cells ``(settings, behavior, learner)``; each row is one cell's per-seed values, curves and timings.

    Every cell draws ``problem`` (default :class:`SyntheticProblem()`) under the cell's
    logging policy.
    """

    name = "headline"

    def __init__(
        self,
        settings: dict[str, TrainConfig],
        *,
        seeds: int,
        seed: int,
        devices: int | None = None,
        problem: SyntheticProblem | None = None,
    ):
        self.settings, self.seeds, self.seed, self.devices = (
            dict(settings),
            check_positive_int("seeds", seeds),
            seed,
            devices,
        )
        self.problem = problem or SyntheticProblem()

    def manifest(self) -> dict:
        return {
            "settings": {name: config.to_dict() for name, config in self.settings.items()},
            "problem": self.problem.to_dict(),
            "seeds": self.seeds,
            "seed": self.seed,
        }

    def cells(self) -> list[tuple[str, str, str]]:
        for config in self.settings.values():
            self.problem.check_batch_size(config.batch_size)
        return [
            (name, behavior, learner)
            for name in self.settings
            for behavior in HEADLINE_BEHAVIORS
            for learner in HEADLINE_LEARNERS
        ]

    def label(self, cell: tuple[str, str, str]) -> str:
        return f"{cell[0]:>10} {cell[1]:>14} {cell[2]:>10}"

    def summary(self, cell: tuple[str, str, str], rows: list[dict]) -> str:
        (row,) = rows
        mean, se = mean_se(row["test_value"])
        compile_ = f"compile {row['seconds_compile']:.1f}s on {row['devices']} device(s)"
        return f"test value {mean:.4f} ± {se:.4f}, {compile_}"

    def run_cell(self, cell: tuple[str, str, str]) -> list[dict]:
        name, behavior, learner = cell
        objective = objective_from_name(learner)
        if name == "seed-study":  # the seed's learners had no entropy bonus (TrainConfig.seed_study)
            objective = dataclasses.replace(objective, entropy=0.0)
        config = dataclasses.replace(self.settings[name], objective=objective)
        problem = dataclasses.replace(self.problem, behavior=behavior)
        # Epochs inside the cell: a bar on a terminal, else a line every few epochs.
        result, timing = train_seeds(
            config, seeds=self.seeds, seed=self.seed, devices=self.devices, problem=problem, progress=True
        )
        # Epoch 0 is the initial policy; the curves are the seed mean and its standard error.
        curves = np.concatenate([result.initial_value[:, None], result.test_value], axis=1)
        stats = [mean_se(curves[:, e]) for e in range(curves.shape[1])]
        return [
            {
                "settings": name,
                "behavior": behavior,
                "learner": learner,
                "config": config.to_dict(),
                "problem": problem.to_dict(),
                "test_value": result.test_value[:, -1].tolist(),
                "selected_value": result.selected_value.tolist(),
                "selected_epoch": result.selected_epoch.tolist(),
                "test_curve": [m for m, _ in stats],
                "test_curve_se": [e for _, e in stats],
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
    settings: dict[str, TrainConfig] | TrainConfig,
    *,
    seeds: int,
    seed: int,
    out: Path,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
    devices: int | None = None,
    problem: SyntheticProblem | None = None,
) -> list[dict]:
    """Runs every (settings, logging policy, learner) cell not yet in ``out``; returns one dict per cell.

    ``settings`` names the training configurations to compare (:func:`headline_settings`;
    one :class:`TrainConfig` is ``{"defaults": config}``); every cell draws ``problem``
    (default :class:`SyntheticProblem()`) under its logging policy. Each dict holds the cell's
    ``settings``, ``behavior``, ``learner``, ``config``, ``problem``, per-seed ``test_value`` (final),
    ``selected_value`` (the validation-selected epoch's, when the config selects),
    ``initial_value``, ``behavior_value`` and ``optimal_value``, the seed-mean
    ``test_curve`` from epoch 0 with its ``test_curve_se``, and the timings of
    :func:`towerjax.training.train_seeds`.
    """
    if isinstance(settings, TrainConfig):
        settings = {"defaults": settings}
    study = HeadlineStudy(settings, seeds=seeds, seed=seed, devices=devices, problem=problem)
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
                        "settings": cell["settings"],
                        "behavior": cell["behavior"],
                        "learner": cell["learner"],
                        "seed": index,
                        "test_value": value,
                        "selected_value": cell["selected_value"][index],
                        "initial_value": cell["initial_value"][index],
                        "behavior_value": cell["behavior_value"][index],
                        "optimal_value": cell["optimal_value"][index],
                    }
                )


def format_table(cells: list[dict]) -> str:
    """Markdown table: mean ± standard error of the final (and validation-selected) test value."""
    header = "| settings | logging | learner | test value (final) | test value (selected) | initial | logging policy | best |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        test, selected, init, beh, best = (
            mean_se(cell[k])
            for k in ("test_value", "selected_value", "initial_value", "behavior_value", "optimal_value")
        )
        chosen = "–" if cell["config"].get("select") is None else f"{selected[0]:.4f} ± {selected[1]:.4f}"
        lines.append(
            f"| {cell['settings']} | {cell['behavior']} | {cell['learner']} | {test[0]:.4f} ± {test[1]:.4f} | "
            f"{chosen} | {init[0]:.4f} | {beh[0]:.4f} | {best[0]:.4f} |"
        )
    return "\n".join(lines)


def plot_results(cells: list[dict], path: Path) -> None:
    """Learning curves from epoch 0, one panel per (settings, logging policy): each learner's
    seed mean with a band of ± 1 standard error of that mean over its seeds, and the logging
    and best policies' values. The title says what the bands are and over how many seeds;
    the legend sits below the panels, clear of the curves."""
    from matplotlib.figure import Figure

    settings = list(dict.fromkeys(c["settings"] for c in cells))
    figure = Figure(figsize=(11, 3.6 * len(settings) + 1.0), layout="constrained")
    axes = figure.subplots(len(settings), len(HEADLINE_BEHAVIORS), sharey=True, squeeze=False)
    colors = {learner: f"C{i}" for i, learner in enumerate(HEADLINE_LEARNERS)}
    for row, name in enumerate(settings):
        for ax, behavior in zip(axes[row], HEADLINE_BEHAVIORS, strict=True):
            chosen = [c for c in cells if c["behavior"] == behavior and c["settings"] == name]
            for cell in chosen:
                curve, se = np.asarray(cell["test_curve"]), np.asarray(cell["test_curve_se"], dtype=float)
                epochs = np.arange(curve.size)
                color = colors.get(cell["learner"])
                ax.plot(epochs, curve, color=color, lw=1.8, label=f"{cell['learner']} (mean ± 1 s.e.)")
                ax.fill_between(
                    epochs, curve - np.nan_to_num(se), curve + np.nan_to_num(se), color=color, alpha=0.2, lw=0
                )
            if chosen:
                ax.axhline(
                    np.mean(chosen[0]["behavior_value"]), color="gray", ls="--", label="logging policy"
                )
                ax.axhline(np.mean(chosen[0]["optimal_value"]), color="black", ls=":", label="best policy")
                config = chosen[0]["config"]
                ax.set_title(
                    f"{name}: {behavior} logging (lr {config['learning_rate']:g}, batch {config['batch_size']})",
                    fontsize=10,
                )
            ax.set_xlabel("epoch (0 = initial policy)")
            ax.grid(alpha=0.25)
        axes[row][0].set_ylabel("test policy value")
    figure.suptitle(
        f"Test value of the learned policy per epoch: the mean over {_seeds_text(cells)}, "
        "bands ± 1 standard error of that mean (std / sqrt(seeds))",
        fontsize=11,
    )
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=10, frameon=False)
    figure.savefig(path, dpi=100)


def _seeds_text(cells: list[dict]) -> str:
    """``8 seeds`` (or ``2 to 8 seeds`` when the cells differ)."""
    counts = sorted({len(c["test_value"]) for c in cells}) or [0]
    low, high = counts[0], counts[-1]
    return f"{high} seed{'s' if high != 1 else ''}" if low == high else f"{low} to {high} seeds"


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """The top-level ``towerjax run``."""
    parser = subcommand(
        subparsers, "run", _main, help="main job: IPS, DR and regression under two logging policies"
    )
    parser.add_argument("--out", type=Path, default=Path("towerjax-results"), help="output folder (resumes)")
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="passes over the logs [default the library's for its defaults, 10 for the seed study's settings]",
    )
    parser.add_argument("--n-rounds", type=positive_int, default=15000, help="logged training events")
    add_seed_arguments(parser, seeds=8)


def _main(args: argparse.Namespace) -> int:
    settings = headline_settings(n_rounds=args.n_rounds, epochs=args.epochs)
    problem = SyntheticProblem(n_rounds=args.n_rounds)
    check_out_dir(args.subparser, "--out", args.out)
    described = "; ".join(
        f"{name}: {c.epochs} epochs, batch {c.batch_size}, lr {c.learning_rate:g}"
        for name, c in settings.items()
    )
    print(
        f"towerjax run: IPS, DR and regression learners x uniform and epsilon-greedy logging, "
        f"{args.seeds} seeds, {args.n_rounds} rounds ({described})",
        flush=True,
    )
    try:
        cells = run_headline(
            settings, seeds=args.seeds, seed=args.seed, out=args.out, devices=args.devices, problem=problem
        )
    except KeyboardInterrupt as err:
        return interrupted(args.out / ROWS_FILE, err)
    print()
    print(format_table(cells))
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'results.csv'}, {args.out / 'results.png'}")
    return 0
