"""What a fit on your own logs reports: ``report.json``, its summary lines and its curves.

:func:`fit_report` assembles the report from the training result (the validation estimates
it recorded per epoch, and of each seed's returned parameters), the data and the choice of
seed, or of a search's candidate (its table and verdict, :class:`~towerjax.training.SearchResult`);
:func:`fit_summary` prints it in a few lines; :func:`plot_curves` draws the validation
curves with their bands. Nothing here estimates anything again: the numbers come from
training (:class:`~towerjax.training.TrainResult`, :func:`~towerjax.training.train_search`,
the training step's estimate on the held-out rows, :func:`~towerjax.workflow.train.held_out_estimate`)
and from the logs themselves.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable
from typing import Any

import jax.numpy as jnp
import numpy as np

from towerjax.data import LoggedData
from towerjax.evaluation import Z_95, weight_diagnostics
from towerjax.features import Features
from towerjax.tables import FrameEncoding, is_missing
from towerjax.training import VALIDATION_DR_PAIRS
from towerjax.training.search_report import search_summary
from towerjax.workflow.io import object_column, plain_id, save_figure

__all__ = [
    "REPORT_FORMAT",
    "dr_skipped",
    "fit_report",
    "fit_summary",
    "plot_curves",
    "reward_model_loss",
    "reward_note",
]

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
                f"categorical=[{column!r}] to embed it"
            )
    return notes


def reward_model_loss(reward: Any, loss: str = "bce") -> str:
    """The reward model's loss for these rewards: binary cross-entropy (``"bce"``: ``q_hat =
    sigmoid(.)`` in ``(0, 1)``) fits rewards in ``[0, 1]`` only, so rewards outside take squared
    error (``"mse"``: a linear output); ``loss`` otherwise."""
    reward = np.asarray(reward, np.float64)
    return "mse" if np.any((reward < 0) | (reward > 1)) else loss


def reward_note(reward: Any, loss: str, *, evaluating: bool = False) -> str | None:
    """One line on how rewards that are not all 0 or 1 are treated (``None`` when they are):
    the reward model's ``loss`` (``"bce"`` or ``"mse"``), that no estimate is clipped to the
    rewards' range, and (``evaluating``) that ``ipw-ls`` needs rewards in ``[0, 1]``."""
    reward = np.asarray(reward, np.float64)
    if np.all((reward == 0) | (reward == 1)):
        return None
    low, high = float(reward.min()), float(reward.max())
    distinct = len(np.unique(reward))
    what = f"rewards are not 0/1 ({distinct} distinct values, {low:g} to {high:g})"
    model = "the reward model" + (
        "" if evaluating else " (of the DR objective and the validation DR estimate)"
    )
    if loss == "bce":
        fitted = f"{model} fits them by binary cross-entropy as probabilities (q_hat in (0, 1))"
    else:
        fitted = f"{model} fits them by squared error with a linear output (q_hat not clipped to {low:g}..{high:g})"
    line = f"{what}: {fitted}; no estimate is clipped to the rewards' range"
    if evaluating and (low < 0 or high > 1):
        line += "; ipw-ls (logarithmic smoothing) needs rewards in [0, 1] and is left out"
    return line


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


def dr_skipped(validation: dict, config: Any, rows: int, n_actions: int) -> str | None:
    """Why the DR validation estimate is missing, in one line (``None`` when it is there).

    Training records DR as NaN when it skips it (``TrainConfig.validation_dr``): above
    :data:`~towerjax.training.VALIDATION_DR_PAIRS` (validation row, item) pairs unless asked
    for, since its reward model scores every pair every epoch. ``validation`` is the run's
    per-epoch estimates; ``rows`` the validation rows."""
    dr, snips = np.asarray(validation["dr"], np.float64), np.asarray(validation["snips"], np.float64)
    if not (np.isnan(dr).all() and not np.isnan(snips).all()):
        return None
    if getattr(config, "validation_dr", None) is False:
        return "the DR validation estimate was not computed: validation_dr=False"
    pairs = rows * n_actions
    if pairs > VALIDATION_DR_PAIRS:
        return (
            f"the DR validation estimate was skipped: {rows} validation rows x {n_actions} items = {pairs:,} "
            f"(row, item) pairs, above the limit of {VALIDATION_DR_PAIRS:,} (its reward model scores every "
            "pair every epoch); validation_dr=True computes it anyway"
        )
    return "the DR validation estimate is NaN: its reward model's predictions were not finite"


def validation_curves(validation: dict, initial: dict | None = None, dr_note: str | None = None) -> dict:
    """Per estimator of :data:`CURVES`: each seed's ``[S, E]`` curve with its band, and the
    mean over seeds (``seed_std``: the spread of the seeds' values, NaN for one seed), and
    ``skipped``: why the estimate is missing (DR: ``dr_note``), or ``None``.

    ``initial`` (each ``[S]``: the initial policy's estimates) is put first, so the curves
    are ``[S, E + 1]`` from epoch 0."""
    validation = {k: np.asarray(v, np.float64) for k, v in validation.items()}
    if initial:
        validation = {
            k: np.concatenate([np.reshape(np.asarray(initial[k], np.float64), (-1, 1)), v], axis=1)
            for k, v in validation.items()
        }
    seeds, epochs = (int(n) for n in validation["snips"].shape)
    curves = {}
    for name in CURVES:
        per_seed = interval_dict(validation[name], validation[name + "_se"])
        mean_value, mean_se = per_seed["value"].mean(axis=0), per_seed["stderr"].mean(axis=0)
        spread = per_seed["value"].std(axis=0, ddof=1) if seeds > 1 else np.full(epochs, np.nan)
        curves[name] = {
            "per_seed": per_seed,
            "mean": {**interval_dict(mean_value, mean_se), "seed_std": spread},
            "skipped": dr_note if name == "dr" else None,
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
    search: Any = None,
    estimate: dict | None = None,
) -> dict:
    """What ``report.json`` holds (written with :func:`towerjax.jsonio.dumps`).

    ``result`` is the training's :class:`~towerjax.training.TrainResult` (leading ``[S]`` axis),
    ``selected`` each seed's validation estimates of its returned parameters (``None``
    without validation rows), ``criterion`` the estimate the seed was chosen by and
    ``chosen`` that seed. The config is ``config.to_dict()``: training settings only.

    With ``search`` (a :class:`~towerjax.training.SearchResult`), ``result`` is the chosen
    candidate's run (``S = 1``, its curves on the search's selection rows), ``config`` its
    concrete configuration, ``seeds`` the runs per candidate, and the report adds
    ``"search"``: :meth:`~towerjax.training.SearchResult.to_dict` (the table of the chosen
    policy, the best candidate of each objective and the popularity and logging baselines on
    the report rows, the verdict and its lines, every candidate's selection bound).
    """
    initial = getattr(result, "initial_validation", None) or None
    if search is not None:
        held_out = int(search.rows["select"])
    else:
        held_out = 0 if validation_data is None else int(validation_data.n_rounds)
    dr_note = dr_skipped(result.validation, config, held_out, data.n_actions) if held_out else None
    curves = validation_curves(result.validation, initial, dr_note)
    epochs = int(np.shape(result.validation["snips"])[1])
    first = 0 if initial is not None else 1
    summary = data_summary(data, features)
    summary.update(
        training_rows=int(train_data.n_rounds),
        validation_rows=0 if validation_data is None else int(validation_data.n_rounds),
        positions=positions,
        validation_unseen_categories=unseen,
    )
    if validation_data is not None:
        summary["validation_reward_mean"] = float(np.mean(np.asarray(validation_data.reward)))
    if search is not None:
        rows = search.rows
        summary.update(
            training_rows=int(rows["train"]),
            validation_rows=int(rows["select"]) + int(rows["report"]),
            selection_rows=int(rows["select"]),
            report_rows=int(rows["report"]),
        )
        summary.pop("validation_reward_mean", None)  # the validation logs' mean; the search split them
        why = (
            f"the search's choice: of every candidate's run (at its best epoch), the one with the best "
            f"lower confidence bound of its {search.criterion} estimate on the selection rows; reported on "
            "the report rows, which neither training nor the choice saw (search)"
        )
    elif selected is None:
        why = "no validation rows: seed 0 is saved"
    else:
        why = f"the seed with the best validation {criterion} of its selected epoch" + (
            " (of the last epoch: select is none)" if config.select is None else ""
        )
    if dr_note is not None:
        notes = [*notes, dr_note]
    report = {
        "format": REPORT_FORMAT,
        "config": config.to_dict(),
        "sources": sources,
        "columns": dict(columns),
        "data": summary,
        "seeds": seeds,
        "seed": seed,
        "timing": timing,
        "epochs": list(range(first, epochs + 1)),
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
            "training rows); the per-epoch curves are the estimates recorded after each epoch, "
            "from epoch 0, the initial policy ('loss' and 'top_share' from epoch 1)."
            + (
                " With a search these are the chosen candidate's run, on the search's selection rows."
                if search is not None
                else ""
            ),
        },
        "notes": notes,
        "estimate": estimate,
    }
    if search is not None:
        report["search"] = search.to_dict()
    return report


def fit_summary(report: dict, *, features: bool = True) -> str:
    """A few lines: the data; then the search's table and verdict lines, or each seed's
    selected epoch and estimate and the chosen seed; the kept policy's estimate on the held-out
    rows (:func:`estimate_lines`); the notes."""
    data = report["data"]
    search = report.get("search")
    if search is not None:
        held_out = f"{data['selection_rows']} selection, {data['report_rows']} report"
    else:
        held_out = f"{data['validation_rows']} validation"
    lines = [
        f"{data['rows']} rows ({data['training_rows']} training, {held_out}), "
        f"{data['items']} items, reward mean {data['reward_mean']:.4f}, pscore "
        f"{data['pscore_min']:.3g}..{data['pscore_max']:.3g}, uniform-policy ESS "
        f"{data['uniform_policy_weights']['ess']:.1f}"
    ]
    if features:
        lines.append("  context features: " + "; ".join(data["context_features"]))
        lines.append("  item features: " + "; ".join(data["item_features"]))
    if search is not None:
        lines.extend(search_lines(search))
    else:
        for entry in report["per_seed"]:
            line = f"  seed {entry['index']}: selected epoch {entry['selected_epoch']}"
            for name, est in entry.get("selected", {}).items():
                line += f", {name} {est['value']:.4f} [{est['low']:.4f}, {est['high']:.4f}]"
            lines.append(line)
        lines.append(f"  kept seed {report['selection']['chosen_seed']}: {report['selection']['why']}")
    if report.get("estimate") is not None:
        lines.extend(estimate_lines(report["estimate"]))
    lines.extend(f"  note: {note}" for note in report["notes"])
    return "\n".join(lines)


def estimate_lines(estimate: dict) -> list[str]:
    """The two lines of :func:`fit_summary` on ``report["estimate"]``: the estimate on the held-out rows
    with its 95% interval and the lower bound, then why SLOPE chose it."""
    choice = estimate["the_estimate"]
    est = choice["estimate"]
    line = (
        f"  the estimate on the {estimate['n']} {estimate['rows']} rows: {choice['name']} = "
        f"{_number(est['value']):.4f} [{_number(est['wald_low']):.4f}, {_number(est['wald_high']):.4f}]"
    )
    bound = estimate["lower_bound"]
    if bound is not None:
        line += f"; V >= {bound['value']:.4f} at {1 - bound['delta']:.0%} confidence (empirical Bernstein)"
    lines = [line, f"    why: {choice['reason']}"]
    if estimate["rows"] == "validation":
        lines.append(
            "    these rows also chose the kept epoch and seed, so the estimate leans optimistic; a search "
            "(the default) reports on rows that chose nothing"
        )
    return lines


def search_lines(search: dict) -> list[str]:
    """The search's lines of :func:`fit_summary`: what was searched, the table and verdict lines
    (:func:`~towerjax.training.search_report.search_summary`), and the objectives the budget skipped.
    ``search`` is ``report["search"]``, in memory or read back from ``report.json``."""
    candidates = search["candidates"]
    objectives: dict[str, int] = {}
    for entry in candidates:
        objectives[entry["objective"]] = objectives.get(entry["objective"], 0) + 1
    searched = ", ".join(f"{name} {count}" for name, count in objectives.items())
    lines = [
        f"  search: {len(candidates)} runs ({searched}) in {search['seconds']:.0f} s, chosen by the lower "
        f"bound of the selection rows' {search['criterion']}; on the report rows:"
    ]
    table = [{**row, "select_lower": _number(row["select_lower"])} for row in search["table"]]
    for row in table:
        for name in ("snips", "dr", "difference"):
            row[name] = {k: _number(v) for k, v in row[name].items()}
    lines.extend(
        "  " + line for line in search_summary(table, search["lines"], search["criterion"]).splitlines()
    )
    if search["skipped"]:
        lines.append(f"  skipped by the search's time budget: {', '.join(search['skipped'])}")
    return lines


def _number(value: Any) -> float:
    """A number of the report (``None``, JSON's NaN, as ``nan``)."""
    return math.nan if value is None else float(value)


# --------------------------------------------------------------------------- the curves


def plot_curves(report: dict, path: str | os.PathLike | None = None):
    """The validation SNIPS and DR estimates per epoch from epoch 0 (the initial policy).

    One panel per estimate: its mean over seeds with a band of ± 1 s.e. (the estimate's
    standard error on the validation rows, averaged over seeds), each seed a thin line. The
    kept seed's selected epoch is marked; the dotted line is the logging policy's value on the
    validation rows (their mean reward). The title names the objective and the logs, the
    caption says what the band is. With a search (``report["search"]``) it draws the chosen
    candidate's run on the selection rows, and the dotted line is the logging policy's value
    on the report rows. A skipped estimate's panel says why. ``report`` is
    :attr:`~towerjax.workflow.fit.FitResult.report` (or ``report.json`` read back). Returns the
    matplotlib ``Figure`` (saved to ``path`` when given).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4.4), layout="constrained")
    axes = figure.subplots(1, 2, sharey=True)
    epochs = np.asarray(report["epochs"])
    chosen = report["selection"]["chosen_seed"]
    search = report.get("search")
    reference, rows = report["data"].get("validation_reward_mean"), "validation"
    if search is not None:
        reference, rows = _table_value(search, "logging", "snips"), "selection"
    seeds = len(report["per_seed"])
    for ax, name, title, color in zip(axes, CURVES, ("SNIPS", "DR"), ("C0", "C1"), strict=True):
        if search is not None:
            drawn = _draw_chosen_run(ax, report, name, epochs, color)
        else:
            drawn = _draw_curve(ax, report, name, epochs, chosen, color)
        if not drawn:
            skipped = report["validation"][name].get("skipped")
            text = "no validation estimates" if not skipped else f"{title} skipped:\n" + _wrap(skipped)
            ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
        if reference is not None and (drawn or search is not None):
            where = "report rows" if search is not None else "mean reward"
            ax.axhline(reference, color="0.3", ls=":", lw=1.2, label=f"logging policy ({where})")
        ax.set_title(f"{rows} {title}")
        ax.set_xlabel("epoch (0: the initial policy)" if epochs[0] == 0 else "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.25)
        if drawn:
            ax.legend(fontsize=8)
    axes[0].set_ylabel("estimated value of the policy")
    figure.suptitle(_curves_title(report))
    if search is not None:
        caption = (
            "Line: the chosen candidate's run, its estimate on the selection rows after each epoch; band: "
            "± 1 s.e.\nSquare: the kept epoch's estimate on the report rows, with its 95% interval. "
            "Every candidate is in report.json's search table."
        )
    else:
        seeds_text = f"{seeds} seeds" if seeds > 1 else "1 seed"
        caption = (
            f"Thick line: mean over {seeds_text}; band: ± 1 s.e. of the estimate on the validation rows "
            "(mean of the seeds' standard errors); thin lines: each seed."
        )
    figure.supxlabel(caption, fontsize=9)
    if path is not None:
        save_figure(figure, path, argument="path")
    return figure


def _draw_curve(ax: Any, report: dict, name: str, epochs: np.ndarray, chosen: int, color: str) -> bool:
    """Draws one estimate's seed-mean with its ± 1 s.e. band and each seed's thin line;
    whether there was anything to draw."""
    curves = report["validation"][name]
    value = np.asarray(curves["per_seed"]["value"], np.float64)
    if np.all(np.isnan(value)):
        return False
    for s in range(value.shape[0]):
        ax.plot(epochs, value[s], color=color, lw=0.8, alpha=0.45, label="each seed" if s == 0 else None)
    mean = np.asarray(curves["mean"]["value"], np.float64)
    stderr = np.asarray(curves["mean"]["stderr"], np.float64)
    ax.fill_between(epochs, mean - stderr, mean + stderr, color=color, alpha=0.2, lw=0, label="± 1 s.e.")
    ax.plot(epochs, mean, color=color, lw=2.2, label="mean over seeds")
    epoch = report["per_seed"][chosen]["selected_epoch"]
    where = np.flatnonzero(epochs == epoch)
    if where.size and not np.isnan(value[chosen][where[0]]):
        ax.plot(
            [epoch],
            [value[chosen][where[0]]],
            "o",
            color="k",
            ms=5,
            label=f"kept seed {chosen}, epoch {epoch}",
        )
    return True


def _draw_chosen_run(ax: Any, report: dict, name: str, epochs: np.ndarray, color: str) -> bool:
    """A search's chosen run: its estimate on the selection rows per epoch with a ± 1 s.e.
    band, its kept epoch marked, and beside it the chosen policy's estimate on the report
    rows with its 95% interval (the search's table); whether there was anything to draw."""
    per_seed = report["validation"][name]["per_seed"]
    value = np.asarray(per_seed["value"], np.float64)[0]
    stderr = np.asarray(per_seed["stderr"], np.float64)[0]
    if np.all(np.isnan(value)):
        return False
    ax.fill_between(epochs, value - stderr, value + stderr, color=color, alpha=0.2, lw=0, label="± 1 s.e.")
    ax.plot(epochs, value, color=color, lw=2.2, label="chosen run (selection rows)")
    epoch = report["per_seed"][0]["selected_epoch"]
    where = np.flatnonzero(epochs == epoch)
    if where.size and not np.isnan(value[where[0]]):
        ax.plot([epoch], [value[where[0]]], "o", color="k", ms=5, label=f"kept epoch {epoch}")
    row = report["search"]["table"][0]  # the chosen policy's row
    estimate = {k: _number(v) for k, v in row[name].items()}
    if not math.isnan(estimate["value"]):
        low, high = estimate["value"] - estimate["wald_low"], estimate["wald_high"] - estimate["value"]
        ax.errorbar(
            [epoch + 0.08 * max(1, epochs[-1] - epochs[0])],
            [estimate["value"]],
            yerr=[[low], [high]],
            fmt="s",
            color="k",
            ms=5,
            capsize=3,
            label="kept epoch, report rows (95%)",
        )
    return True


def _table_value(search: dict, objective: str, name: str) -> float | None:
    """The ``name`` estimate of the search table's ``objective`` row (``"logging"``), or ``None``."""
    rows = [row for row in search["table"] if row["objective"] == objective]
    return None if not rows else rows[0][name]["value"]


def _wrap(text: str, width: int = 48) -> str:
    """``text`` in lines of at most about ``width`` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _curves_title(report: dict) -> str:
    """``Training ips on logs.csv; validation: ...``: the objective and the logs (a search:
    ``Search on logs.csv: chose snips lr=0.003 entropy=0.05``)."""
    objective = report["config"].get("objective", {})
    name = objective.get("name", "?") if isinstance(objective, dict) else str(objective)
    sources = report.get("sources", {})
    logs = sources.get("logs") or "the logs"
    validation = sources.get("validation")
    if report.get("search") is not None:
        return f"Search on {logs}: chose {report['search']['chosen']['label']}"
    return f"Training {name} on {logs}" + (f"; validation: {validation}" if validation else "")
