"""The seed study's four figures (SPEC 8), many seeds per cell, resumable.

A *cell* is one (figure, x value, learner): one compiled ``jit(vmap(train))`` call over
the seeds (the grid's other axes change array shapes, so they run one after another).
Each finished cell appends its rows, one per seed, to ``rows.csv`` in a single flushed
write; a restarted study with the same ``--out`` reads them back and skips finished
cells, so an interruption loses at most the cell in flight. Every cell depends only on
its configuration and the seeds' keys, so the final tables equal an uninterrupted run's.

Figures (the seed study's fixed settings, SPEC 6, everywhere else):
  1. test value vs training rounds, uniform logging;
  2. the same under epsilon-greedy logging;
  3. test value vs number of actions (uniform logging);
  4. test value vs batch size (uniform logging).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from towerjax.evaluation import mean_se
from towerjax.reward_model import RewardModelConfig
from towerjax.studies.headline import HEADLINE_LEARNERS
from towerjax.train import TrainConfig, train_seeds

__all__ = ["FIGURES", "Figure", "StudyOptions", "figure_table", "plot_figure", "read_rows", "run_blog_study"]


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of the seed study: ``field`` of :class:`TrainConfig` swept over ``values``."""

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

QUICK = {
    "n_rounds": 300,
    "n_test_rounds": 500,
    "epochs": 3,
    "hidden_sizes": (32,),
    "embedding_size": 16,
    "reward_model": RewardModelConfig(hidden_sizes=(32,), epochs=3),
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
            raise ValueError(f"figure: expected some of {sorted(FIGURES)}, got {list(self.figures)!r}")
        if isinstance(self.seeds, bool) or int(self.seeds) != self.seeds or self.seeds < 1:
            raise ValueError(f"seeds: expected a positive integer, got {self.seeds!r}")
        if self.epochs is None:
            object.__setattr__(self, "epochs", QUICK["epochs"] if self.quick else 100)
        if isinstance(self.epochs, bool) or int(self.epochs) != self.epochs or self.epochs < 1:
            raise ValueError(f"epochs: expected a positive integer, got {self.epochs!r}")
        if self.values is not None:
            if len(self.figures) != 1:
                raise ValueError("values: give a single figure to override its grid")
            if not self.values or any(int(v) != v or v < 1 for v in self.values):
                raise ValueError(f"values: expected positive integers, got {list(self.values)!r}")
        for learner in self.learners:
            if learner not in HEADLINE_LEARNERS:
                raise ValueError(f"learners: expected some of {HEADLINE_LEARNERS}, got {learner!r}")

    def grid(self, figure: Figure) -> tuple[int, ...]:
        if self.values is not None:
            return tuple(self.values)
        return figure.quick_values if self.quick else figure.values

    def config(self, figure: Figure, x: int, learner: str) -> TrainConfig:
        """The cell's configuration (raises ValueError naming the field if ``x`` does not fit)."""
        fields = dict(QUICK) if self.quick else {}
        fields.update(objective=learner, behavior=figure.behavior, epochs=self.epochs, evaluate_train=True)
        fields[figure.field] = int(x)
        return TrainConfig(**fields)

    def cells(self) -> list[tuple[int, int, str]]:
        """Every ``(figure, x, learner)`` in run order; validates each cell's config."""
        cells = []
        for number in self.figures:
            figure = FIGURES[number]
            for x in self.grid(figure):
                for learner in self.learners:
                    try:
                        self.config(figure, x, learner)
                    except ValueError as err:
                        raise ValueError(
                            f"values: figure {number} cannot use {figure.field}={x} ({err})"
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


def read_rows(path: Path) -> list[dict]:
    """Rows of ``rows.csv``; a last line cut off by an interruption is ignored."""
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(text.splitlines()):
        if None in row.values() or None in row:
            continue
        rows.append(
            {
                "figure": int(row["figure"]),
                "x": int(row["x"]),
                "learner": row["learner"],
                "seed": int(row["seed"]),
                **{k: float(row[k]) for k in ROW_FIELDS[4:]},
            }
        )
    return rows


def _append_rows(path: Path, rows: list[dict]) -> None:
    """Appends rows in one write, flushed to disk; drops a torn last line first."""
    if path.exists():
        text = path.read_bytes()
        if text and not text.endswith(b"\n"):
            with open(path, "r+b") as handle:
                handle.truncate(text.rfind(b"\n") + 1)
    new = not path.exists() or path.stat().st_size == 0
    lines = []
    if new:
        lines.append(",".join(ROW_FIELDS))
    for row in rows:
        lines.append(",".join(repr(row[k]) if isinstance(row[k], float) else str(row[k]) for k in ROW_FIELDS))
    with open(path, "a") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _check_manifest(out: Path, options: StudyOptions) -> None:
    """Refuses to mix rows of studies with different options in one folder."""
    manifest = out / "study.json"
    wanted = options.to_dict()
    if manifest.exists():
        try:
            found = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(
                f"out: cannot read {manifest} ({err}); remove it or choose another --out"
            ) from None
        if found != wanted:
            differing = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise ValueError(
                f"out: {out} holds a study with other options ({', '.join(differing)}: "
                f"{ {k: found.get(k) for k in differing} }); use those options to resume, or another --out"
            )
    else:
        manifest.write_text(json.dumps(wanted, indent=2) + "\n")


def run_blog_study(
    options: StudyOptions,
    out: Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    max_cells: int | None = None,
) -> list[dict]:
    """Runs the cells not yet in ``out/rows.csv``, then writes each figure's table and plot.

    ``max_cells`` stops after that many new cells (as an interruption would; for tests).
    Returns every row of the requested figures, in grid order.
    """
    cells = options.cells()  # validates every cell before any work
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, options)
    path = out / "rows.csv"
    done = _finished(read_rows(path), options.seeds)
    todo = [c for c in cells if c not in done]
    configs = {cell: options.config(FIGURES[cell[0]], cell[1], cell[2]) for cell in cells}
    log(
        f"blog study: {len(cells)} cells ({len(cells) - len(todo)} already in {path}), "
        f"{options.seeds} seeds each, {options.epochs} epochs"
    )
    bar = _progress_bar(total=len(cells), initial=len(cells) - len(todo), enabled=progress)
    try:
        for count, (number, x, learner) in enumerate(todo):
            if max_cells is not None and count >= max_cells:
                break
            figure = FIGURES[number]
            bar.set_postfix_str(f"fig {number} {figure.field}={x} {learner}")
            same = [c for c in sorted(done) if _config_of(options, c) == configs[(number, x, learner)]]
            start = time.perf_counter()
            if same:  # e.g. figure 4's batch 10 is figure 1's 15000 rounds: the same runs
                rows = [r for r in _ordered(read_rows(path), same[:1], options.seeds)]
                rows = [{**r, "figure": number, "x": x} for r in rows]
            else:
                rows = _train_cell(configs[(number, x, learner)], options, (number, x, learner))
            seconds = time.perf_counter() - start
            _append_rows(path, rows)
            done.add((number, x, learner))
            mean, se = mean_se([r["test_value"] for r in rows])
            bar.write(
                f"  fig {number} {figure.field}={x:>5} {learner:>10}: {mean:.4f} ± {se:.4f} ({seconds:.0f}s)"
            )
            bar.update(1)
    finally:
        bar.close()
    rows = _ordered(read_rows(path), cells, options.seeds)
    for number in options.figures:
        chosen = [r for r in rows if r["figure"] == number]
        if _complete(chosen, options, number):
            (out / f"figure{number}.md").write_text(figure_table(chosen, FIGURES[number]) + "\n")
            plot_figure(chosen, FIGURES[number], out / f"figure{number}.png")
    return rows


def _config_of(options: StudyOptions, cell: tuple[int, int, str]) -> TrainConfig | None:
    """The configuration a finished cell ran with (any figure of this folder), if still valid."""
    try:
        return options.config(FIGURES[cell[0]], cell[1], cell[2])
    except (KeyError, ValueError):
        return None


def _train_cell(config: TrainConfig, options: StudyOptions, cell: tuple[int, int, str]) -> list[dict]:
    start = time.perf_counter()
    result, _ = train_seeds(config, seeds=options.seeds, seed=options.seed)
    seconds = time.perf_counter() - start
    number, x, learner = cell
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
        for s in range(options.seeds)
    ]


def _finished(rows: list[dict], seeds: int) -> set[tuple[int, int, str]]:
    seen: dict[tuple[int, int, str], set[int]] = {}
    for row in rows:
        seen.setdefault((row["figure"], row["x"], row["learner"]), set()).add(row["seed"])
    return {cell for cell, found in seen.items() if found >= set(range(seeds))}


def _ordered(rows: list[dict], cells: Sequence[tuple[int, int, str]], seeds: int) -> list[dict]:
    """One row per (cell, seed) in grid order (the first copy if a row was written twice)."""
    by_key = {}
    for row in rows:
        by_key.setdefault((row["figure"], row["x"], row["learner"], row["seed"]), row)
    return [by_key[(*cell, s)] for cell in cells for s in range(seeds) if (*cell, s) in by_key]


def _complete(rows: list[dict], options: StudyOptions, number: int) -> bool:
    return len(rows) == len(options.grid(FIGURES[number])) * len(options.learners) * options.seeds


def _progress_bar(*, total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="cell", disable=not enabled, dynamic_ncols=True)


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
