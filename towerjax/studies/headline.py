"""The main job: the seed study's headline comparison on the built-in synthetic data.

IPS, DR and regression learners under uniform and epsilon-greedy logging, each cell one
``jit(vmap(train))`` call over the seeds. Results are written after every cell
(``results.json``, ``results.csv``) and plotted at the end (``results.png``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from towerjax.train import TrainConfig, train_seeds

__all__ = ["HEADLINE_BEHAVIORS", "HEADLINE_LEARNERS", "format_table", "run_headline"]

HEADLINE_LEARNERS = ("ips", "dr", "regression")
HEADLINE_BEHAVIORS = ("uniform", "epsilon-greedy")
CSV_FIELDS = ("behavior", "learner", "seed", "test_value", "initial_value", "behavior_value", "optimal_value")


def mean_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (``std / sqrt(S)``, ``ddof=1``)."""
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def run_headline(
    base: TrainConfig,
    *,
    seeds: int,
    seed: int,
    out: Path,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Runs every (logging policy, learner) cell; returns one summary dict per cell."""
    out.mkdir(parents=True, exist_ok=True)
    cells: list[dict] = []
    total = len(HEADLINE_BEHAVIORS) * len(HEADLINE_LEARNERS)
    for behavior in HEADLINE_BEHAVIORS:
        for learner in HEADLINE_LEARNERS:
            config = dataclasses.replace(base, behavior=behavior, objective=learner)
            start = time.perf_counter()
            result, timing = train_seeds(config, seeds=seeds, seed=seed)
            cell = {
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
            cells.append(cell)
            mean, se = mean_se(cell["test_value"])
            log(
                f"[{len(cells)}/{total}] {behavior:>14} {learner:>10}: test value {mean:.4f} ± {se:.4f} "
                f"({time.perf_counter() - start:.1f}s, compile {timing['seconds_compile']:.1f}s, "
                f"{timing['devices']} device(s))"
            )
            write_results(cells, out, seeds=seeds, seed=seed)
    plot_results(cells, out / "results.png")
    return cells


def write_results(cells: list[dict], out: Path, *, seeds: int, seed: int) -> None:
    """Writes ``results.json`` and ``results.csv`` (one row per cell and seed)."""
    payload = {"seeds": seeds, "seed": seed, "table": format_table(cells), "cells": cells}
    (out / "results.json").write_text(json.dumps(payload, indent=2))
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
