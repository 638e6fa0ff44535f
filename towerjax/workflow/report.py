"""What a fit on your own logs reports: ``report.json``, its summary lines and its curves.

:func:`fit_report` assembles the report from the training result (the validation estimates
it recorded per epoch, and of each seed's returned parameters), the data and the choice of
seed; :func:`fit_summary` prints it in a few lines; :func:`plot_curves` draws the validation
curves with their bands. Nothing here estimates anything again: the numbers come from
training (:class:`~towerjax.training.TrainResult`) and from the logs themselves.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

import jax.numpy as jnp
import numpy as np

from towerjax.data import LoggedData
from towerjax.evaluation import Z_95, weight_diagnostics
from towerjax.features import Features
from towerjax.tables import FrameEncoding, is_missing
from towerjax.workflow.io import object_column, plain_id, save_figure

__all__ = ["REPORT_FORMAT", "fit_report", "fit_summary", "plot_curves"]

REPORT_FORMAT = "towerjax-fit-report"
"""The ``format`` field of ``report.json``."""

CURVES = ("snips", "dr")
"""The validation estimates recorded per epoch, each with its ``*_se``."""


def interval_dict(value: Any, stderr: Any) -> dict:
    """``{"value", "stderr", "low", "high"}`` (float64 arrays): ``value ± 1.96 stderr``."""
    value, stderr = np.asarray(value, np.float64), np.asarray(stderr, np.float64)
    return {"value": value, "stderr": stderr, "low": value - Z_95 * stderr, "high": value + Z_95 * stderr}


def criterion_values(selected: dict, criterion: str) -> np.ndarray:
    """``[S]`` each seed's value of ``criterion`` (``"snips"``, ``"dr"``, or ``"*-lower"``: the
    estimate minus 1.96 s.e.) from its ``selected`` estimates; NaN becomes ``-inf``."""
    name = criterion.removesuffix("-lower")
    value = selected[name] - (Z_95 * selected[name + "_se"] if criterion.endswith("-lower") else 0.0)
    return np.where(np.isnan(value), -np.inf, value)


# --------------------------------------------------------------------------- the data


def position_counts(frame: Any, position_column: Hashable | None) -> dict | None:
    """``{position: rows}`` of ``position_column`` (``"missing"`` for empty cells), or ``None``."""
    if position_column is None:
        return None
    import pandas as pd

    counts: dict[str, int] = {}
    tallies = pd.Series(object_column(frame[position_column])).value_counts(dropna=False)
    for value, count in tallies.items():
        key = "missing" if is_missing(value) else str(plain_id(value))
        counts[key] = counts.get(key, 0) + int(count)
    return dict(sorted(counts.items()))


def feature_summary(encoding: FrameEncoding, data: LoggedData) -> dict[str, list[str]]:
    """One line per feature of each tower (dense, or an embedded id's vocabulary and width),
    with the training rows whose context value got the out-of-vocabulary id 0."""
    lines = encoding.describe()
    if isinstance(data.context, Features):
        out = []
        dense = len(encoding.context_feature_names)
        for line, column in zip(lines["context"][dense:], encoding.context_categorical, strict=True):
            oov = int(np.count_nonzero(np.asarray(data.context.ids[column.name]) == 0))
            out.append(
                f"{line} ({oov} training rows out of vocabulary)" if column.vocabulary is not None else line
            )
        lines["context"] = lines["context"][:dense] + out
    return lines


def id_like_columns(frame: Any, encoding: FrameEncoding) -> list[str]:
    """Notes on integer context columns named like ids (``user_id``, ``userId``) that are
    used as numbers: they were probably meant to be embedded."""
    notes = []
    embedded = {c.column for c in encoding.context_categorical}
    for column in encoding.context_columns:
        name = str(column).lower()
        if column in embedded or not (name.endswith("id") or name.endswith("ids")):
            continue
        if getattr(getattr(frame[column], "dtype", None), "kind", None) in ("i", "u"):
            notes.append(
                f"context column {column!r} holds integers and is used as a number; if it is an id, pass "
                f"categorical=[{column!r}] (towerjax train --categorical {column}) to embed it"
            )
    return notes


def data_summary(data: LoggedData, features: dict[str, list[str]]) -> dict:
    """Rows, items, rewards, propensities and how well the logs cover the uniform policy."""
    reward = np.asarray(data.reward, np.float64)
    pscore = np.asarray(data.pscore, np.float64)
    action = np.asarray(data.action)
    n_items = data.n_actions
    uniform = weight_diagnostics(jnp.asarray((1.0 / n_items) / pscore))
    counts = np.bincount(action, minlength=n_items)
    return {
        "rows": int(data.n_rounds),
        "items": int(n_items),
        "items_logged": int(np.count_nonzero(counts)),
        "top_item_share": float(counts.max() / data.n_rounds),
        "context_features": features["context"],
        "item_features": features["items"],
        "reward_mean": float(reward.mean()),
        "reward_rate": float(np.mean(reward > 0)),
        "reward_min": float(reward.min()),
        "reward_max": float(reward.max()),
        "pscore_min": float(pscore.min()),
        "pscore_max": float(pscore.max()),
        "uniform_policy_weights": {
            **uniform.to_dict(),
            "ess_share": float(uniform.ess) / data.n_rounds,
            "note": "w_i = (1/A) / pscore_i, the weights of the uniform policy: an ESS far below the rows "
            "means the logs concentrate on few items and say little about policies that spread out",
        },
    }


# --------------------------------------------------------------------------- the report


def validation_curves(validation: dict, seeds: int) -> dict:
    """Per estimator of :data:`CURVES`: each seed's ``[S, E]`` curve with its band, and the
    mean over seeds (``seed_std``: the spread of the seeds' values, NaN for one seed)."""
    validation = {k: np.asarray(v, np.float64) for k, v in validation.items()}
    epochs = int(validation["snips"].shape[1])
    curves = {}
    for name in CURVES:
        per_seed = interval_dict(validation[name], validation[name + "_se"])
        mean_value, mean_se = per_seed["value"].mean(axis=0), per_seed["stderr"].mean(axis=0)
        spread = per_seed["value"].std(axis=0, ddof=1) if seeds > 1 else np.full(epochs, np.nan)
        curves[name] = {
            "per_seed": per_seed,
            "mean": {**interval_dict(mean_value, mean_se), "seed_std": spread},
        }
    return curves


def seed_entries(selected_epoch: Any, selected: dict | None, criterion: str | None) -> list[dict]:
    """One entry per seed: its selected epoch and, with validation rows, the validation
    estimates of its returned parameters (with their intervals) and its criterion."""
    entries = []
    for s in range(len(selected_epoch)):
        entry = {"index": s, "selected_epoch": int(selected_epoch[s])}
        if selected is not None:
            entry["selected"] = {
                name: {
                    k: float(v[s]) for k, v in interval_dict(selected[name], selected[name + "_se"]).items()
                }
                for name in CURVES
                if not np.isnan(selected[name][s])
            }
            entry["criterion"] = float(criterion_values(selected, criterion)[s])
        entries.append(entry)
    return entries


def fit_report(
    *,
    config: Any,
    result: Any,
    timing: dict,
    selected: dict | None,
    criterion: str | None,
    chosen: int,
    seeds: int,
    seed: int,
    data: LoggedData,
    features: dict[str, list[str]],
    train_data: LoggedData,
    validation_data: LoggedData | None,
    sources: dict,
    columns: dict,
    positions: dict | None,
    unseen: dict | None,
    notes: list[str],
) -> dict:
    """What ``report.json`` holds (written with :func:`towerjax.jsonio.dumps`).

    ``result`` is the training's :class:`~towerjax.training.TrainResult` (leading ``[S]`` axis),
    ``selected`` each seed's validation estimates of its returned parameters (``None``
    without validation rows), ``criterion`` the estimate the seed was chosen by and
    ``chosen`` that seed. The config is ``config.to_dict()``: training settings only.
    """
    curves = validation_curves(result.validation, seeds)
    epochs = int(np.shape(result.validation["snips"])[1])
    summary = data_summary(data, features)
    summary.update(
        training_rows=int(train_data.n_rounds),
        validation_rows=0 if validation_data is None else int(validation_data.n_rounds),
        positions=positions,
        validation_unseen_categories=unseen,
    )
    if validation_data is not None:
        summary["validation_reward_mean"] = float(np.mean(np.asarray(validation_data.reward)))
    if selected is None:
        why = "no validation rows: seed 0 is saved"
    else:
        why = f"the seed with the best validation {criterion} of its selected epoch" + (
            " (of the last epoch: select is none)" if config.select is None else ""
        )
    return {
        "format": REPORT_FORMAT,
        "config": config.to_dict(),
        "sources": sources,
        "columns": dict(columns),
        "data": summary,
        "seeds": seeds,
        "seed": seed,
        "timing": timing,
        "epochs": list(range(1, epochs + 1)),
        "validation": curves,
        "loss": np.asarray(result.loss, np.float64),
        "top_share": np.asarray(result.top_share, np.float64),
        "per_seed": seed_entries(result.selected_epoch, selected, criterion),
        "selection": {
            "select": config.select,
            "seed_criterion": criterion,
            "chosen_seed": chosen,
            "selected_epoch": int(result.selected_epoch[chosen]),
            "why": why,
            "note": "'selected' is each seed's validation estimate of its returned parameters, as "
            "recorded by its training run (SNIPS; DR with that run's reward model fitted on the "
            "training rows); the per-epoch curves are the estimates recorded after each epoch. "
            "Epoch 0 is the initial policy.",
        },
        "notes": notes,
    }


def fit_summary(report: dict, *, features: bool = True) -> str:
    """A few lines: the data, each seed's selected epoch and estimate, the chosen seed, the notes."""
    data = report["data"]
    lines = [
        f"{data['rows']} rows ({data['training_rows']} training, {data['validation_rows']} validation), "
        f"{data['items']} items, reward mean {data['reward_mean']:.4f}, pscore "
        f"{data['pscore_min']:.3g}..{data['pscore_max']:.3g}, uniform-policy ESS "
        f"{data['uniform_policy_weights']['ess']:.1f}"
    ]
    if features:
        lines.append("  context features: " + "; ".join(data["context_features"]))
        lines.append("  item features: " + "; ".join(data["item_features"]))
    for entry in report["per_seed"]:
        line = f"  seed {entry['index']}: selected epoch {entry['selected_epoch']}"
        for name, est in entry.get("selected", {}).items():
            line += f", {name} {est['value']:.4f} [{est['low']:.4f}, {est['high']:.4f}]"
        lines.append(line)
    lines.append(f"  kept seed {report['selection']['chosen_seed']}: {report['selection']['why']}")
    lines.extend(f"  note: {note}" for note in report["notes"])
    return "\n".join(lines)


# --------------------------------------------------------------------------- the curves


def plot_curves(report: dict, path: str | os.PathLike | None = None):
    """The validation SNIPS and DR estimates per epoch with ± 1.96 s.e. bands, one line per seed.

    ``report`` is :attr:`~towerjax.workflow.fit.FitResult.report` (or ``report.json`` read
    back). The kept seed is drawn bold with its selected epoch marked; the dotted line is the
    logging policy's value on the validation rows (their mean reward). Returns the matplotlib
    ``Figure`` (saved to ``path`` when given).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 3.8), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    epochs = np.asarray(report["epochs"])
    chosen = report["selection"]["chosen_seed"]
    reference = report["data"].get("validation_reward_mean")
    for ax, name, title in zip(axes, CURVES, ("SNIPS", "DR"), strict=True):
        curves = report["validation"][name]["per_seed"]
        value = np.asarray(curves["value"], dtype=np.float64)
        low, high = np.asarray(curves["low"], np.float64), np.asarray(curves["high"], np.float64)
        drawn = False
        for s in range(value.shape[0]):
            if np.all(np.isnan(value[s])):
                continue
            drawn = True
            bold = s == chosen
            (line,) = ax.plot(
                epochs, value[s], lw=2.2 if bold else 1.0, alpha=1.0 if bold else 0.6, label=f"seed {s}"
            )
            ax.fill_between(epochs, low[s], high[s], color=line.get_color(), alpha=0.18 if bold else 0.07)
            epoch = report["per_seed"][s]["selected_epoch"]
            if bold and 1 <= epoch <= len(epochs):
                ax.plot([epoch], [value[s][epoch - 1]], "o", color=line.get_color(), label="selected epoch")
        if not drawn:
            ax.text(0.5, 0.5, "no validation estimates", ha="center", va="center", transform=ax.transAxes)
        elif reference is not None:
            ax.axhline(reference, color="0.4", ls=":", lw=1, label="logging policy (mean reward)")
        ax.set_title(f"validation {title} ± 1.96 s.e.")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if drawn:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("estimated value")
    if path is not None:
        save_figure(figure, path, argument="path")
    return figure
