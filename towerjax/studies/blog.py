"""The seed study's four figures (SPEC 8), many seeds per cell, resumable.

A *cell* is one (figure, x value, learner): one compiled call over the seeds
(:func:`towerjax.training.train_seeds`; the grid's other axes change array shapes, so they run
one after another). The cells run through :func:`towerjax.studies.runner.run_study`: each
finished cell appends its rows, one per seed, to ``rows.jsonl``, and a restarted study with
the same ``--out`` skips finished cells, so an interruption loses at most the cell in
flight. Every cell depends only on its configuration and the seeds' keys, so the final
tables equal an uninterrupted run's. A cell whose configuration equals a finished cell's
(of any figure in the folder) copies its rows instead of training again.

Figures (the seed study's fixed settings, SPEC 6, everywhere else):
  1. test value vs training rounds, uniform logging;
  2. the same under epsilon-greedy logging;
  3. test value vs number of actions (uniform logging);
  4. test value vs batch size (uniform logging).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from towerjax import jsonio
from towerjax.checks import InputError, check_positive_int
from towerjax.cli.arguments import (
    add_seed_arguments,
    check_out_dir,
    positive_int,
    positive_int_list,
    subcommand,
)
from towerjax.evaluation import mean_se
from towerjax.reward_model import RewardModelConfig
from towerjax.studies.headline import HEADLINE_LEARNERS
from towerjax.studies.runner import (
    MANIFEST_FILE,
    ROWS_FILE,
    Study,
    append_cell,
    check_manifest,
    interrupted,
    read_rows,
    run_study,
)
from towerjax.synthetic import SyntheticProblem
from towerjax.training import TrainConfig, train_seeds

__all__ = [
    "FIGURES",
    "BlogStudy",
    "Figure",
    "StudyOptions",
    "add_parser",
    "figure_table",
    "plot_figure",
    "read_rows",
    "run_blog_study",
]

Cell = tuple[int, int, str]  # (figure, x, learner)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of the seed study: ``field`` of :class:`TrainConfig` or of the synthetic problem
    (:class:`SyntheticProblem`) swept over ``values``."""

    number: int
    title: str
    field: str
    values: tuple[int, ...]
    behavior: str
    quick_values: tuple[int, ...]


FIGURES = {
    1: Figure(1, "training rounds", "n_rounds", (500, 1000, 2000, 5000, 10000, 15000), "uniform", (100, 300)),
    2: Figure(
        2, "training rounds", "n_rounds", (500, 1000, 2000, 5000, 10000, 15000), "epsilon-greedy", (100, 300)
    ),
    3: Figure(3, "actions", "n_actions", (10, 50, 100, 200, 500, 1000, 2000, 5000), "uniform", (5, 20)),
    4: Figure(4, "batch size", "batch_size", (10, 100, 200, 500, 1000, 2000, 5000), "uniform", (10, 100)),
}

# Fields of TrainConfig and SyntheticProblem (n_rounds, n_test_rounds) in the quick study.
QUICK = {
    "n_rounds": 300,
    "n_test_rounds": 500,
    "epochs": 3,
    "hidden_sizes": (32,),
    "embedding_size": 16,
    "reward_model": RewardModelConfig(hidden_sizes=(32,), epochs=3, folds=1),  # in-sample, as the seed
}

ROW_FIELDS = (
    "figure",
    "x",
    "learner",
    "seed",
    "test_value",
    "train_value",
    "initial_value",
    "behavior_value",
    "optimal_value",
    "seconds_cell",
)


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """What a study's rows depend on; a resumed study must be started with the same."""

    figures: tuple[int, ...]
    seeds: int
    seed: int = 0
    epochs: int | None = None  # default: the seed study's 100, or QUICK's with quick=True
    quick: bool = False
    values: tuple[int, ...] | None = None  # overrides the grid of the (single) figure
    learners: tuple[str, ...] = HEADLINE_LEARNERS

    def __post_init__(self) -> None:
        unknown = [f for f in self.figures if f not in FIGURES]
        if unknown or not self.figures:
            raise InputError("figure", f"expected some of {sorted(FIGURES)}, got {list(self.figures)!r}")
        check_positive_int("seeds", self.seeds)
        if self.epochs is None:
            object.__setattr__(self, "epochs", QUICK["epochs"] if self.quick else 100)
        check_positive_int("epochs", self.epochs)
        if self.values is not None:
            if len(self.figures) != 1:
                raise InputError("values", "give a single figure to override its grid")
            if not self.values or any(int(v) != v or v < 1 for v in self.values):
                raise InputError("values", f"expected positive integers, got {list(self.values)!r}")
        for learner in self.learners:
            if learner not in HEADLINE_LEARNERS:
                raise InputError("learners", f"expected some of {HEADLINE_LEARNERS}, got {learner!r}")

    def grid(self, figure: Figure) -> tuple[int, ...]:
        if self.values is not None:
            return tuple(self.values)
        return figure.quick_values if self.quick else figure.values

    def setup(self, figure: Figure, x: int, learner: str) -> tuple[TrainConfig, SyntheticProblem]:
        """The cell's training configuration and synthetic problem (raises InputError naming
        the field if ``x`` does not fit)."""
        fields = dict(QUICK) if self.quick else {}
        fields.update(objective=learner, behavior=figure.behavior, epochs=self.epochs, evaluate_train=True)
        fields[figure.field] = int(x)
        problem_fields = {f.name for f in dataclasses.fields(SyntheticProblem)}
        problem = SyntheticProblem(**{k: fields.pop(k) for k in list(fields) if k in problem_fields})
        config = TrainConfig.seed_study(**fields)
        problem.check_batch_size(config.batch_size)
        return config, problem

    def cells(self) -> list[Cell]:
        """Every ``(figure, x, learner)`` in run order; validates each cell's settings."""
        cells = []
        for number in self.figures:
            figure = FIGURES[number]
            for x in self.grid(figure):
                for learner in self.learners:
                    try:
                        self.setup(figure, x, learner)
                    except ValueError as err:
                        raise InputError(
                            "values", f"figure {number} cannot use {figure.field}={x} ({err})"
                        ) from None
                    cells.append((number, int(x), learner))
        return cells

    def to_dict(self) -> dict:
        return {
            "seeds": self.seeds,
            "seed": self.seed,
            "epochs": self.epochs,
            "quick": self.quick,
            "learners": list(self.learners),
        }


class BlogStudy(Study):
    """The seed study's figures as cells ``(figure, x, learner)``, one row per seed."""

    name = "blog"

    def __init__(self, options: StudyOptions, devices: int | None = None):
        self.options = options
        self.devices = devices

    def manifest(self) -> dict:
        return self.options.to_dict()

    def cells(self) -> list[Cell]:
        return self.options.cells()

    def label(self, cell: Cell) -> str:
        number, x, learner = cell
        return f"fig {number} {FIGURES[number].field}={x:>5} {learner:>10}"

    def summary(self, cell: Cell, rows: list[dict]) -> str:
        mean, se = mean_se([r["test_value"] for r in rows])
        return f"{mean:.4f} ± {se:.4f}"

    def run_cell(self, cell: Cell) -> list[dict]:
        number, x, learner = cell
        config, problem = self.options.setup(FIGURES[number], x, learner)
        start = time.perf_counter()
        result, _ = train_seeds(
            config, seeds=self.options.seeds, seed=self.options.seed, devices=self.devices, problem=problem
        )
        seconds = time.perf_counter() - start
        return [
            {
                "figure": number,
                "x": x,
                "learner": learner,
                "seed": s,
                "test_value": float(result.test_value[s, -1]),
                "train_value": float(result.train_value[s, -1]),
                "initial_value": float(result.initial_value[s]),
                "behavior_value": float(result.behavior_value[s]),
                "optimal_value": float(result.optimal_value[s]),
                "seconds_cell": seconds,
            }
            for s in range(self.options.seeds)
        ]

    def reuse(self, cell: Cell, finished: Mapping[Cell, list[dict]]) -> list[dict] | None:
        """Figure 4's batch 10 is figure 1's 15000 rounds, for example: the same runs."""
        setup = self._setup(cell)
        for other, rows in finished.items():
            if self._setup(other) == setup:
                return [{**row, "figure": cell[0], "x": cell[1]} for row in rows]
        return None

    def _setup(self, cell) -> tuple[TrainConfig, SyntheticProblem] | None:
        """The settings a finished cell ran with (any figure of this folder), if still valid."""
        try:
            number, x, learner = cell
            return self.options.setup(FIGURES[number], x, learner)
        except (KeyError, TypeError, ValueError):
            return None

    def render(self, rows: list[dict], out: Path) -> None:
        """``figureN.md`` and ``figureN.png`` of each figure whose cells are all finished."""
        for number, chosen in self.complete_figures(rows).items():
            (out / f"figure{number}.md").write_text(figure_table(chosen, FIGURES[number]) + "\n")
            plot_figure(chosen, FIGURES[number], out / f"figure{number}.png")

    def complete_figures(self, rows: list[dict]) -> dict[int, list[dict]]:
        """The rows of each requested figure whose every cell is finished."""
        complete = {}
        for number in self.options.figures:
            chosen = [r for r in rows if r["figure"] == number]
            if (
                len(chosen)
                == len(self.options.grid(FIGURES[number])) * len(self.options.learners) * self.options.seeds
            ):
                complete[number] = chosen
        return complete


def run_blog_study(
    options: StudyOptions,
    out: Path,
    *,
    progress: bool | None = True,
    log: Callable[[str], None] | None = None,
    max_cells: int | None = None,
    devices: int | None = None,
) -> list[dict]:
    """Runs the cells not yet in ``out/rows.jsonl``, then writes each finished figure's table and plot.

    ``max_cells`` stops after that many new cells (as an interruption would; for tests).
    A folder written before ``rows.jsonl`` (its ``rows.csv``) is carried over first.
    Returns every row of the requested figures, in grid order.
    """
    study = BlogStudy(options, devices)
    study.cells()  # validates every cell before any work
    _import_csv(study, Path(out))
    return run_study(study, Path(out), progress=progress, log=log, max_cells=max_cells)


def _import_csv(study: BlogStudy, out: Path) -> None:
    """Copies the finished cells of an older folder's ``rows.csv`` (a line per seed) into ``rows.jsonl``."""
    legacy, manifest = out / "rows.csv", out / MANIFEST_FILE
    if not legacy.exists() or (out / ROWS_FILE).exists():
        return
    if manifest.exists():  # written before manifests named their study
        found = json.loads(manifest.read_text())
        manifest.write_text(jsonio.dumps({"study": study.name, **found}, indent=2) + "\n")
    check_manifest(out, study)
    text = legacy.read_text()
    cells: dict[Cell, dict[int, dict]] = {}
    for row in csv.DictReader(text[: text.rfind("\n") + 1].splitlines()):
        if None in row.values() or None in row:
            continue  # a torn last line
        row = {
            **{k: int(row[k]) for k in ("figure", "x", "seed")},
            "learner": row["learner"],
            **{k: float(row[k]) for k in ROW_FIELDS[4:]},
        }
        cells.setdefault((row["figure"], row["x"], row["learner"]), {}).setdefault(row["seed"], row)
    for cell, by_seed in cells.items():
        if set(by_seed) >= set(range(study.options.seeds)):
            rows = [by_seed[s] for s in range(study.options.seeds)]
            append_cell(out / ROWS_FILE, cell, [{k: row[k] for k in ROW_FIELDS} for row in rows])


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """``towerjax study blog``."""
    parser = subcommand(
        subparsers,
        "blog",
        _main,
        help="the seed study's four figures, many seeds per cell, resumable (same --out)",
    )
    parser.add_argument("--figure", choices=("1", "2", "3", "4", "all"), default="all", help="which figure")
    add_seed_arguments(parser, seeds=12)
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="passes over the logs [default 100; 3 with --quick]"
    )
    parser.add_argument("--out", type=Path, default=Path("towerjax-blog"), help="output folder (resumes)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny grids and models: a smoke test of the pipeline"
    )
    parser.add_argument(
        "--values", type=positive_int_list, default=None, help="comma-separated x values (one figure only)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _main(args: argparse.Namespace) -> int:
    options = StudyOptions(
        figures=tuple(FIGURES) if args.figure == "all" else (int(args.figure),),
        seeds=args.seeds,
        seed=args.seed,
        epochs=args.epochs,
        quick=args.quick,
        values=None if args.values is None else tuple(args.values),
    )
    options.cells()  # every cell's configuration, before the folder is touched
    check_out_dir(args.subparser, "--out", args.out)
    print(
        f"blog study: figures {', '.join(map(str, options.figures))}, {options.seeds} seeds per cell, "
        f"{options.epochs} epochs",
        flush=True,
    )
    try:
        rows = run_blog_study(options, args.out, progress=not args.no_progress, devices=args.devices)
    except KeyboardInterrupt:
        return interrupted(args.out / ROWS_FILE)
    complete = BlogStudy(options).complete_figures(rows)
    for number, chosen in complete.items():
        print("\n" + figure_table(chosen, FIGURES[number]))
    names = ", ".join(f"figure{n}.png/.md" for n in complete)
    print(f"\nwrote {args.out / ROWS_FILE}" + (f" and {names} in {args.out}" if names else ""))
    return 0


# --------------------------------------------------------------------------- tables and plots


def _summaries(rows: list[dict]) -> dict[tuple[int, str], dict[str, tuple[float, float]]]:
    grouped: dict[tuple[int, str], list[dict]] = {}
    for row in rows:
        grouped.setdefault((row["x"], row["learner"]), []).append(row)
    return {
        key: {k: mean_se([r[k] for r in group]) for k in ("test_value", "behavior_value", "optimal_value")}
        for key, group in grouped.items()
    }


def figure_table(rows: list[dict], figure: Figure) -> str:
    """Markdown: mean ± standard error of the final test value per x and learner."""
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    xs = list(dict.fromkeys(r["x"] for r in rows))
    seeds = len({r["seed"] for r in rows})
    summary = _summaries(rows)
    lines = [
        f"Figure {figure.number}: test policy value vs {figure.title} ({figure.behavior} logging), "
        f"mean ± standard error over {seeds} seeds",
        "",
        f"| {figure.field} | " + " | ".join(learners) + " | logging policy | best |",
        "|---" * (len(learners) + 3) + "|",
    ]
    for x in xs:
        cells = [summary[(x, learner)]["test_value"] for learner in learners]
        reference = summary[(x, learners[0])]
        lines.append(
            f"| {x} | "
            + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in cells)
            + f" | {reference['behavior_value'][0]:.4f} | {reference['optimal_value'][0]:.4f} |"
        )
    return "\n".join(lines)


def plot_figure(rows: list[dict], figure: Figure, path: Path) -> None:
    """Mean ± standard error per learner against x, with the logging policy and the best value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = _summaries(rows)
    learners = list(dict.fromkeys(r["learner"] for r in rows))
    xs = np.array(list(dict.fromkeys(r["x"] for r in rows)))
    seeds = len({r["seed"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 4))
    for learner in learners:
        mean = np.array([summary[(x, learner)]["test_value"][0] for x in xs])
        se = np.array([summary[(x, learner)]["test_value"][1] for x in xs])
        ax.plot(xs, mean, marker="o", ms=4, label=learner)
        ax.fill_between(xs, mean - se, mean + se, alpha=0.2)
    reference = [summary[(x, learners[0])] for x in xs]
    ax.plot(xs, [r["behavior_value"][0] for r in reference], color="gray", ls="--", label="logging policy")
    ax.plot(xs, [r["optimal_value"][0] for r in reference], color="black", ls=":", label="best")
    if xs.size > 1 and xs.max() / xs.min() >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(figure.title)
    ax.set_ylabel("test policy value")
    ax.set_title(
        f"Figure {figure.number}: {figure.behavior} logging, {seeds} seeds (mean ± s.e.)", fontsize=10
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
