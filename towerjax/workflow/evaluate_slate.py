"""Off-policy estimates of a saved model's list policy on multi-position logs (``towerjax evaluate --slate``).

The logs hold one row per shown list of ``K`` items, with per-position columns (``k = 1..K``; the
names are the single-position ones with a ``_k`` suffix):

- ``item_id_k``: the item shown at position ``k`` (ids of the model's catalogue; distinct in a row);
- ``reward_k``: its reward (e.g. a click);
- ``pscore_k``: the logging policy's probability of that item at position ``k`` given the items above it,
  ``pi_0(a_k | x, a_1..a_{k-1})`` in ``(0, 1]`` (a Plackett-Luce or any sequential logger logs this);
  the prefix probabilities ``pi_0(a_1..a_k | x)`` are their running products.

The evaluated policy is the model's Plackett-Luce list policy at its temperature
(:mod:`towerjax.list_policy`: position 1 is the model's single-action policy). Its estimates are those
of :func:`towerjax.evaluation.slate_estimates` that these propensities allow: ``sips`` and ``snsips``
(whole list, any reward), ``rips`` and ``snrips`` (prefixes, cascade rewards). ``iips`` needs the
logger's position marginals and ``cascade-dr`` a position-aware reward model; neither is built here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Hashable
from typing import Any

import jax
import numpy as np

from towerjax.checks import InputError, check_positive_int
from towerjax.evaluation import Estimate, slate_estimates
from towerjax.list_policy import prefix_log_probs
from towerjax.workflow.io import (
    Progress,
    column_names,
    column_values,
    encode_contexts,
    load_policy,
    plain_id,
    read_table,
    save_figure,
    say_to,
    source_label,
)

__all__ = ["SlateEvaluation", "evaluate_slate", "slate_columns"]


def slate_columns(
    positions: int,
    item_column: Hashable = "item_id",
    reward_column: Hashable = "reward",
    pscore_column: Hashable = "pscore",
) -> list[tuple[str, str, str]]:
    """``[(item_k, reward_k, pscore_k)]`` for ``k = 1..positions``: a slate log's column names."""
    return [
        (f"{item_column}_{k}", f"{reward_column}_{k}", f"{pscore_column}_{k}")
        for k in range(1, positions + 1)
    ]


@dataclasses.dataclass(frozen=True)
class SlateEvaluation:
    """What :func:`evaluate_slate` returns.

    Attributes:
      name: the model (its directory as given).
      estimates: ``{estimator: Estimate}`` of :func:`towerjax.evaluation.slate_estimates`.
      weights: ``[n]`` the whole-list importance weights ``pi(a_i | x_i) / pi_0(a_i | x_i)``.
      summary: the logs (``source``, ``rows``, ``positions``, ``reward_mean`` per position, ``columns``,
        ``seed``, ``n_bootstrap``, ``unseen_rows``, ``policy``).
    """

    name: str
    estimates: dict[str, Estimate]
    weights: np.ndarray
    summary: dict

    def to_dict(self) -> dict:
        """JSON-ready (write it with :func:`towerjax.jsonio.dumps`)."""
        return {
            "model": self.name,
            "logs": self.summary,
            "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
        }

    def table(self) -> str:
        """The estimates as text, one line per estimator."""
        s = self.summary
        lines = [
            f"{s['source']}: {s['rows']} lists of {s['positions']} items, reward mean per position "
            + ", ".join(f"{r:.4f}" for r in s["reward_mean"]),
            f"{self.name}: {s['policy']}",
            f"  {'estimator':<15}{'value':>9}   {'95% interval':<20} {'bootstrap 95%':<20} {'ESS':>8} {'max w':>9}",
        ]
        for estimator, est in self.estimates.items():
            diag = est.diagnostics
            lines.append(
                f"  {estimator:<15}{est.value:>9.4f}   {_interval(est.wald_low, est.wald_high):<20} "
                f"{_interval(est.bootstrap_low, est.bootstrap_high):<20} "
                f"{'' if diag is None else f'{diag.ess:.1f}':>8} {'' if diag is None else f'{diag.max_weight:.3g}':>9}"
            )
        lines.append(
            f"  value = E sum_k r_k of the list; logging policy (on-policy mean): {sum(s['reward_mean']):.4f}"
        )
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike | None = None):
        """Three panels: each estimate with its Wald and bootstrap 95% intervals (dotted: the logging
        policy's value), the distribution of the list weights (log10), and each estimator's ESS.

        Returns the matplotlib ``Figure`` (saved to ``path`` when given).
        """
        from matplotlib.figure import Figure

        names = list(self.estimates)
        figure = Figure(figsize=(11, 0.35 * len(names) + 2.2), layout="constrained")
        ax_est, ax_w, ax_ess = figure.subplots(1, 3)
        y = np.arange(len(names))[::-1]
        values = np.array([self.estimates[k].value for k in names])
        for offset, (low, high, label) in enumerate(
            (("wald_low", "wald_high", "Wald 95%"), ("bootstrap_low", "bootstrap_high", "bootstrap 95%"))
        ):
            lo = np.array([getattr(self.estimates[k], low) for k in names])
            hi = np.array([getattr(self.estimates[k], high) for k in names])
            ax_est.errorbar(
                values,
                y - 0.15 * offset,
                xerr=[values - lo, hi - values],
                fmt="o",
                capsize=3,
                ms=3,
                label=label,
            )
        ax_est.axvline(sum(self.summary["reward_mean"]), color="0.3", ls=":", lw=1.2, label="logging policy")
        ax_est.set_yticks(y, names)
        ax_est.set_xlabel("estimated value of the list policy")
        ax_est.legend(fontsize=7)
        positive = self.weights[self.weights > 0]
        ax_w.hist(np.log10(positive) if positive.size else [0.0], bins=30, color="0.5")
        ax_w.set_xlabel("log10 list weight pi / pi_0")
        ax_w.set_ylabel("lists")
        ess = [
            self.estimates[k].diagnostics.ess if self.estimates[k].diagnostics else math.nan for k in names
        ]
        ax_ess.barh(y, ess, color="0.6")
        ax_ess.axvline(self.summary["rows"], color="0.3", ls=":", lw=1.2)
        ax_ess.set_yticks(y, names)
        ax_ess.set_xlabel(f"effective sample size (dotted: n = {self.summary['rows']})")
        figure.suptitle(f"{self.name} on {self.summary['source']}", fontsize=9)
        if path is not None:
            save_figure(figure, path, argument="plot")
        return figure


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"[{low:.4f}, {high:.4f}]"


def _count_positions(frame: Any, item_column: Hashable, label: str) -> int:
    present = set(map(str, column_names(frame)))
    k = 0
    while f"{item_column}_{k + 1}" in present:
        k += 1
    if k == 0:
        raise InputError(
            "logs",
            f"{label}: column '{item_column}_1' is not there: a slate log has per-position columns "
            f"{item_column}_1, reward_1, pscore_1, {item_column}_2, ... (towerjax evaluate --slate)",
        )
    return k


def _slate_columns(frame, policy, columns, label):
    """``(lists [n, K] int, reward [n, K], pscore_cascade [n, K])``, checked, naming the column and row."""
    present = set(map(str, column_names(frame)))
    index = {plain_id(v): j for j, v in enumerate(policy.item_ids)}
    lists, rewards, conditional = [], [], []
    for item_col, reward_col, pscore_col in columns:
        for col in (item_col, reward_col, pscore_col):
            if col not in present:
                raise InputError(
                    "logs",
                    f"{label}: column {col!r} is missing (a slate log has {', '.join(columns[0])}, ... for each position)",
                )
        ids = [plain_id(v) for v in column_values(frame, item_col)]
        rows = [index.get(v, -1) for v in ids]
        if -1 in rows:
            i = rows.index(-1)
            raise InputError(
                "logs",
                f"{label}: column {item_col!r} row {i}: item {ids[i]!r} is not in the model's catalogue",
            )
        lists.append(rows)
        for col, out, check in ((reward_col, rewards, None), (pscore_col, conditional, "pscore")):
            try:
                values = np.asarray(column_values(frame, col), np.float64)
            except (TypeError, ValueError):
                raise InputError("logs", f"{label}: column {col!r}: expected numbers") from None
            bad = ~np.isfinite(values) if check is None else ~((values > 0) & (values <= 1))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                expected = "a finite number" if check is None else "a propensity in (0, 1]"
                raise InputError(
                    "logs", f"{label}: column {col!r} row {i}: expected {expected}, got {values[i]!r}"
                )
            out.append(values)
    lists = np.stack(lists, axis=1).astype(np.int32)
    ordered = np.sort(lists, axis=1)
    repeats = np.flatnonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=1))
    if repeats.size:
        raise InputError("logs", f"{label}: row {int(repeats[0])} shows an item at two positions")
    return lists, np.stack(rewards, axis=1), np.cumprod(np.stack(conditional, axis=1), axis=1)


def evaluate_slate(
    model: Any,
    logs: Any,
    *,
    item_column: Hashable = "item_id",
    reward_column: Hashable = "reward",
    pscore_column: Hashable = "pscore",
    positions: int | None = None,
    seed: int = 0,
    n_bootstrap: int = 1000,
    progress: Progress = None,
) -> SlateEvaluation:
    """Slate estimates of a saved model's Plackett-Luce list policy on multi-position logs (module docstring).

    Args:
      model: a model directory (or :class:`~towerjax.serving.SavedPolicy`).
      logs: the slate logs (path or table): the model's context columns and, per position ``k``,
        ``{item_column}_k``, ``{reward_column}_k``, ``{pscore_column}_k``.
      item_column, reward_column, pscore_column: the stems of the per-position columns.
      positions: ``K``; default every consecutive ``{item_column}_1, _2, ...`` present.
      seed: the bootstrap's key.
      n_bootstrap: bootstrap resamples.
      progress: called with one line per step.

    Raises:
      InputError: naming ``model`` or ``logs`` (with the column and row in the message).
    """
    say = say_to(progress)
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    policy = load_policy(model)
    name = source_label(model, "model")
    label = source_label(logs, "logs")
    frame = read_table(logs, argument="logs")
    k = (
        _count_positions(frame, item_column, label)
        if positions is None
        else check_positive_int("positions", positions)
    )
    if k > policy.n_items:
        raise InputError("positions", f"expected at most the catalogue's {policy.n_items} items, got {k}")
    columns = slate_columns(k, item_column, reward_column, pscore_column)
    lists, reward, pscore_cascade = _slate_columns(frame, policy, columns, label)
    if lists.shape[0] < 2:
        raise InputError("logs", f"{label}: has {lists.shape[0]} row, expected at least 2")
    context, _, unseen_rows = encode_contexts(policy.encoding, frame, argument="logs", label=label)
    say(f"evaluating {name}'s list policy (Plackett-Luce, K={k}) on {lists.shape[0]} lists of {label} ...")
    scores = policy.scores(context)
    target_cascade = np.exp(np.asarray(prefix_log_probs(scores, lists, policy.temperature), np.float64))
    estimates = slate_estimates(
        lists,
        reward,
        pscore_cascade=pscore_cascade,
        evaluation_policy_pscore_cascade=target_cascade,
        key=jax.random.key(seed),
        n_bootstrap=n_bootstrap,
    )
    weights = target_cascade[:, -1] / pscore_cascade[:, -1]
    summary = {
        "source": label,
        "rows": int(lists.shape[0]),
        "positions": k,
        "reward_mean": [float(v) for v in reward.mean(axis=0)],
        "columns": [list(c) for c in columns],
        "policy": f"Plackett-Luce list policy on the model's scores, temperature {policy.temperature:g}",
        "unseen_rows": int(unseen_rows),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
    }
    return SlateEvaluation(name=name, estimates=estimates, weights=weights, summary=summary)
