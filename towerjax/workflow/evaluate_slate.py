"""Off-policy estimates of a saved model's list policy on multi-position logs (``towerjax evaluate --slate``).

The logs hold one row per shown list of ``K`` items, with per-position columns (``k = 1..K``; the
names are the single-position ones with a ``_k`` suffix):

- ``item_id_k``: the item shown at position ``k`` (ids of the model's catalogue; distinct in a row);
- ``reward_k``: its reward (e.g. a click);
- ``pscore_k``: the logging policy's probability of that item at position ``k`` given the items above it,
  ``pi_0(a_k | x, a_1..a_{k-1})`` in ``(0, 1]`` (a Plackett-Luce or any sequential logger logs this);
  the prefix probabilities ``pi_0(a_1..a_k | x)`` are their running products;
- ``marginal_pscore_k`` (optional): the logger's position marginal ``P_pi0(a_k at k | x)`` in ``(0, 1]``.

At least one of the two propensity families must be there. The evaluated policy is the model's
Plackett-Luce list policy at its temperature (:mod:`towerjax.list_policy`: position 1 is the model's
single-action policy). Its estimates are those of :func:`towerjax.evaluation.slate_estimates` that the
propensities allow:

- with ``pscore_k``: ``sips`` and ``snsips`` (whole list, any reward), ``rips`` and ``snrips``
  (prefixes, cascade rewards) and ``cascade-dr`` (Kiyohara et al., WSDM 2022) with the position-aware
  reward model ``q_hat_k(x, b)`` (:class:`towerjax.slate_reward_model.SlateRewardModel`) cross-fitted on
  these logs (the model's reward-model settings, at least 2 folds over lists, BCE for rewards in
  ``[0, 1]`` else squared error: as ``towerjax evaluate`` fits its DR model);
- with ``marginal_pscore_k``: ``iips`` and ``sniips`` (position-based clicks) and ``pseudo-inverse``
  (with its note). The policy's position marginals are exact (every list enumerated) when
  ``n A! / (A - K)!`` is at most :data:`EXACT_MARGINAL_PAIRS`, else the unbiased Rao-Blackwellised
  estimate from :data:`POLICY_MARGINAL_SAMPLES` sampled lists a row
  (:func:`towerjax.list_objectives.logged_position_marginals`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.checks import InputError, check_positive_int
from towerjax.evaluation import Estimate, slate_estimates
from towerjax.list_objectives import logged_position_marginals
from towerjax.list_policy import next_item_log_probs, prefix_log_probs
from towerjax.slate_reward_model import SlateRewardModel
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
from towerjax.workflow.report import reward_model_loss

__all__ = [
    "EXACT_MARGINAL_PAIRS",
    "POLICY_MARGINAL_SAMPLES",
    "SlateEvaluation",
    "count_positions",
    "evaluate_slate",
    "marginal_pscore_columns",
    "policy_position_marginals",
    "read_slate_lists",
    "read_slate_marginals",
    "slate_columns",
]

EXACT_MARGINAL_PAIRS = 20_000_000
"""Rows times lists (``n A! / (A - K)!``) up to which the policy's position marginals are enumerated exactly."""

POLICY_MARGINAL_SAMPLES = 256
"""Sampled lists a row for the policy's position marginals when enumerating them is too costly."""


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


def marginal_pscore_columns(
    positions: int, marginal_pscore_column: Hashable = "marginal_pscore"
) -> list[str]:
    """``[marginal_k]`` for ``k = 1..positions``: the logger's position-marginal columns ``P_pi0(a_k at k | x)``."""
    return [f"{marginal_pscore_column}_{k}" for k in range(1, positions + 1)]


@dataclasses.dataclass(frozen=True)
class SlateEvaluation:
    """What :func:`evaluate_slate` returns.

    Attributes:
      name: the model (its directory as given).
      estimates: ``{estimator: Estimate}`` of :func:`towerjax.evaluation.slate_estimates`.
      weights: ``[n]`` the whole-list importance weights ``pi(a_i | x_i) / pi_0(a_i | x_i)``; ``[n, K]`` the
        position-marginal ones when the logs give only ``marginal_pscore_k``.
      summary: the logs (``source``, ``rows``, ``positions``, ``reward_mean`` per position, ``columns``,
        ``marginal_columns``, ``seed``, ``n_bootstrap``, ``unseen_rows``, ``policy``, ``notes``; with
        ``pscore_k`` the cascade-dr ``reward_model``'s settings, with marginals ``policy_marginals``: how
        the policy's were computed).
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
        lines.extend(f"  note: {note}" for note in s.get("notes", ()))
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
        what = "list" if self.weights.ndim == 1 else "position-marginal"
        ax_w.set_xlabel(f"log10 {what} weight pi / pi_0")
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


def count_positions(
    frame: Any, item_column: Hashable, label: str, command: str = "towerjax evaluate --slate"
) -> int:
    """``K``: the consecutive ``{item_column}_1, _2, ...`` columns of a slate log (InputError naming
    ``logs``, and ``command`` in its message, when there is none)."""
    present = set(map(str, column_names(frame)))
    k = 0
    while f"{item_column}_{k + 1}" in present:
        k += 1
    if k == 0:
        raise InputError(
            "logs",
            f"{label}: column '{item_column}_1' is not there: a slate log has per-position columns "
            f"{item_column}_1, reward_1, pscore_1, {item_column}_2, ... ({command})",
        )
    return k


def _read_numbers(frame, col, label, *, propensity):
    """A column as ``[n]`` float64: finite numbers, or propensities in ``(0, 1]`` (InputError naming the row)."""
    try:
        values = np.asarray(column_values(frame, col), np.float64)
    except (TypeError, ValueError):
        raise InputError("logs", f"{label}: column {col!r}: expected numbers") from None
    bad = ~((values > 0) & (values <= 1)) if propensity else ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        expected = "a propensity in (0, 1]" if propensity else "a finite number"
        raise InputError("logs", f"{label}: column {col!r} row {i}: expected {expected}, got {values[i]!r}")
    return values


def _read_slate(frame, item_ids, columns, label, *, conditional: bool = True):
    """``(lists [n, K] int, reward [n, K], pscore_cascade [n, K] or None)``, checked, naming the column and
    row; ``conditional=False`` reads no ``pscore_k`` (the logs give the position marginals only)."""
    present = set(map(str, column_names(frame)))
    index = {plain_id(v): j for j, v in enumerate(item_ids)}
    lists, rewards, conditional_pscores = [], [], []
    for item_col, reward_col, pscore_col in columns:
        for col in (item_col, reward_col, pscore_col) if conditional else (item_col, reward_col):
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
        rewards.append(_read_numbers(frame, reward_col, label, propensity=False))
        if conditional:
            conditional_pscores.append(_read_numbers(frame, pscore_col, label, propensity=True))
    lists = np.stack(lists, axis=1).astype(np.int32)
    ordered = np.sort(lists, axis=1)
    repeats = np.flatnonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=1))
    if repeats.size:
        raise InputError("logs", f"{label}: row {int(repeats[0])} shows an item at two positions")
    pscore_cascade = np.cumprod(np.stack(conditional_pscores, axis=1), axis=1) if conditional else None
    return lists, np.stack(rewards, axis=1), pscore_cascade


def read_slate_marginals(frame: Any, columns: list[str], label: str) -> np.ndarray:
    """``[n, K]`` the logger's position marginals from the columns ``columns``
    (:func:`marginal_pscore_columns`), each in ``(0, 1]`` (InputError naming ``logs``, the column and row)."""
    present = set(map(str, column_names(frame)))
    for col in columns:
        if col not in present:
            raise InputError(
                "logs",
                f"{label}: column {col!r} is missing ({columns[0]} is there: give one for each position)",
            )
    return np.stack([_read_numbers(frame, col, label, propensity=True) for col in columns], axis=1)


_exact_marginals = jax.jit(logged_position_marginals, static_argnums=2)  # one compile per shape and tau


def policy_position_marginals(scores, lists, temperature, key) -> tuple[np.ndarray, str]:
    """``([n, K] float64, how)``: the Plackett-Luce policy's ``P_pi(a_ik at k | x_i)`` of the logged
    lists, exact in row chunks when ``n A! / (A - K)!`` is at most :data:`EXACT_MARGINAL_PAIRS`, else
    :data:`POLICY_MARGINAL_SAMPLES` sampled lists a row (with ``key``); ``how`` says which."""
    n, k = lists.shape
    n_lists = math.perm(scores.shape[1], k)
    if n * n_lists <= EXACT_MARGINAL_PAIRS:
        chunk = max(1, min(n, EXACT_MARGINAL_PAIRS // (20 * n_lists)))
        parts = [
            _exact_marginals(scores[i : i + chunk], lists[i : i + chunk], temperature)
            for i in range(0, n, chunk)
        ]
        return np.concatenate([np.asarray(p, np.float64) for p in parts]), "exact (every list enumerated)"
    sampled = logged_position_marginals(
        scores, lists, temperature, key=key, n_samples=POLICY_MARGINAL_SAMPLES
    )
    how = f"Monte-Carlo, {POLICY_MARGINAL_SAMPLES} sampled lists a row (Rao-Blackwellised, unbiased)"
    return np.asarray(sampled, np.float64), how


def evaluate_slate(
    model: Any,
    logs: Any,
    *,
    item_column: Hashable = "item_id",
    reward_column: Hashable = "reward",
    pscore_column: Hashable = "pscore",
    marginal_pscore_column: Hashable = "marginal_pscore",
    positions: int | None = None,
    seed: int = 0,
    n_bootstrap: int = 1000,
    progress: Progress = None,
) -> SlateEvaluation:
    """Slate estimates of a saved model's Plackett-Luce list policy on multi-position logs (module docstring).

    Args:
      model: a model directory (or :class:`~towerjax.serving.SavedPolicy`).
      logs: the slate logs (path or table): the model's context columns and, per position ``k``,
        ``{item_column}_k``, ``{reward_column}_k`` and ``{pscore_column}_k`` or
        ``{marginal_pscore_column}_k`` (or both).
      item_column, reward_column, pscore_column, marginal_pscore_column: the stems of the per-position columns.
      positions: ``K``; default every consecutive ``{item_column}_1, _2, ...`` present.
      seed: the key of the reward model (cascade-dr), the sampled position marginals and the bootstrap.
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
        count_positions(frame, item_column, label)
        if positions is None
        else check_positive_int("positions", positions)
    )
    if k > policy.n_items:
        raise InputError("positions", f"expected at most the catalogue's {policy.n_items} items, got {k}")
    columns = slate_columns(k, item_column, reward_column, pscore_column)
    marginal_columns = marginal_pscore_columns(k, marginal_pscore_column)
    present = set(map(str, column_names(frame)))
    conditional, marginal = columns[0][2] in present, marginal_columns[0] in present
    if not (conditional or marginal):
        raise InputError(
            "logs",
            f"{label}: neither column {columns[0][2]!r} nor {marginal_columns[0]!r} is there: a slate log gives "
            f"the logger's probability of each position's item given those above ({pscore_column}_k), or its "
            f"position marginals ({marginal_pscore_column}_k), or both",
        )
    lists, reward, pscore_cascade = _read_slate(
        frame, policy.item_ids, columns, label, conditional=conditional
    )
    pscore_item = read_slate_marginals(frame, marginal_columns, label) if marginal else None
    if lists.shape[0] < 2:
        raise InputError("logs", f"{label}: has {lists.shape[0]} row, expected at least 2")
    context, _, unseen_rows = encode_contexts(policy.encoding, frame, argument="logs", label=label)
    say(f"evaluating {name}'s list policy (Plackett-Luce, K={k}) on {lists.shape[0]} lists of {label} ...")
    key = jax.random.key(seed)
    scores = policy.scores(context)
    given, notes, summary = {}, [], {}
    if conditional:
        target_cascade = np.exp(np.asarray(prefix_log_probs(scores, lists, policy.temperature), np.float64))
        given.update(pscore_cascade=pscore_cascade, evaluation_policy_pscore_cascade=target_cascade)
        reward_config = dataclasses.replace(
            policy.config.reward_model,
            folds=min(max(2, policy.config.reward_model.folds), lists.shape[0]),
            loss=reward_model_loss(reward),
        )
        say(
            f"cascade-dr: position-aware reward model ({reward_config.folds} folds over lists, {reward_config.loss}) ..."
        )
        q_hat = SlateRewardModel(reward_config).cross_fit(
            jax.random.fold_in(key, 1), context, lists, reward, policy.item_features
        )
        action_dist = jnp.exp(next_item_log_probs(scores, lists, policy.temperature))
        given.update(
            q_hat=np.asarray(q_hat, np.float64),
            evaluation_policy_action_dist=np.asarray(action_dist, np.float64),
        )
        notes.append(
            f"cascade-dr: q_hat_k(x, b) position-aware reward model cross-fitted on these logs "
            f"({reward_config.folds} folds over lists, {reward_config.loss})"
        )
        summary["reward_model"] = dataclasses.asdict(reward_config)
    if marginal:
        say(f"the policy's position marginals of {lists.shape[0]} logged lists ...")
        target_item, how = policy_position_marginals(
            scores, lists, policy.temperature, jax.random.fold_in(key, 2)
        )
        given.update(pscore_item_position=pscore_item, evaluation_policy_pscore_item_position=target_item)
        notes.append(f"iips, sniips: the policy's position marginals {how}")
        summary["policy_marginals"] = how
    estimates = slate_estimates(lists, reward, key=key, n_bootstrap=n_bootstrap, **given)
    if conditional:
        weights = target_cascade[:, -1] / pscore_cascade[:, -1]
    else:
        weights = target_item / pscore_item
    if "pseudo-inverse" in estimates:
        notes.append(f"pseudo-inverse: {estimates['pseudo-inverse'].note.split(';')[0]}")
    summary = {
        "source": label,
        "rows": int(lists.shape[0]),
        "positions": k,
        "reward_mean": [float(v) for v in reward.mean(axis=0)],
        "columns": [list(c) if conditional else list(c[:2]) for c in columns],
        "marginal_columns": marginal_columns if marginal else None,
        "policy": f"Plackett-Luce list policy on the model's scores, temperature {policy.temperature:g}",
        "unseen_rows": int(unseen_rows),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        **summary,
        "notes": notes,
    }
    return SlateEvaluation(name=name, estimates=estimates, weights=weights, summary=summary)


def read_slate_lists(frame: Any, item_ids: Any, columns: list[tuple[str, str, str]], label: str):
    """``(lists [n, K] int32, reward [n, K], pscore_cascade [n, K])`` of a slate log's per-position
    ``columns`` (:func:`slate_columns`), each id replaced by its index in ``item_ids``, with the checks
    :func:`evaluate_slate` makes (InputError naming ``logs``, the column and the row). Shared with
    ``towerjax train --slate`` (:mod:`towerjax.workflow.train_slate`)."""
    return _read_slate(frame, list(item_ids), columns, label)
