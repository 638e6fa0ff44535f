"""Off-policy estimates of saved policies on any logs, side by side, with paired differences.

:func:`evaluate` encodes the logs with each model's encoding, fits a reward model cross-fitted
on those logs, and calls the estimator core (:func:`towerjax.evaluation.off_policy_estimates`
for the estimates, :func:`towerjax.evaluation.off_policy_terms` and
:func:`towerjax.evaluation.paired_difference` for the differences between models).
:class:`Evaluation` holds the result and prints, plots and serialises it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.checks import InputError, check_positive_int
from towerjax.data import LoggedData
from towerjax.evaluation import (
    ALIASES,
    Estimate,
    chosen_estimate,
    off_policy_estimates,
    off_policy_lower_bound,
    off_policy_terms,
    paired_difference,
)
from towerjax.evaluation.bounds import default_clip
from towerjax.features import Features
from towerjax.metrics import randomized_value
from towerjax.reward_model import RewardModel
from towerjax.serving import SavedPolicy
from towerjax.tables import FrameValidationError, logged_data_from_frame
from towerjax.workflow.fit import FitResult
from towerjax.workflow.io import (
    Progress,
    catching_unseen,
    column_names,
    column_values,
    encode_contexts,
    frame_error,
    load_policy,
    n_rows,
    plain_id,
    read_table,
    require_columns,
    save_figure,
    say_to,
    source_label,
)
from towerjax.workflow.report import interval_dict, reward_model_loss, reward_note

__all__ = ["DIFFERENCE_ESTIMATORS", "Evaluation", "evaluate"]

DIFFERENCE_ESTIMATORS = ("ipw", "snipw", "dr")
"""Estimators whose paired difference between two models :func:`evaluate` reports."""

_ROW_COLUMN = "__towerjax_row__"  # a placeholder context column for reading the logged columns alone


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` returns: one entry per model, then the paired differences.

    Attributes:
      names: each model's name (its directory as given).
      estimates: per model, ``{estimator: Estimate}`` (Open Bandit Pipeline's names, no aliases).
      randomized: per model, ``{"value", "stderr", "low", "high"}`` of
        :func:`~towerjax.metrics.randomized_value`, or ``None`` (not requested).
      differences: per model after the first, ``{"model", "baseline", "estimators": {name:
        {"value", "stderr", "low", "high"}}}``: that model's estimate minus the first's.
      summary: the logs (``rows``, ``reward_mean``, ..., ``notes``: e.g. how rewards that are
        not 0/1 are treated) and per model ``items``,
        ``unseen_rows`` (rows with a context value not in the training vocabulary: an unseen
        id, a value rarer than its ``min_count``, or a missing one, all given the
        out-of-vocabulary id 0), ``unseen_columns`` (those rows per column), ``reward_model``.
      chosen: per model, ``{"the_estimate": Choice.to_dict(), "lower_bound": {...} or None}``:
        SLOPE's choice within ``dr-os`` (:func:`~towerjax.evaluation.chosen_estimate`) and, for
        rewards in ``[0, 1]``, the empirical-Bernstein lower bound on ``V(pi)``
        (:func:`~towerjax.evaluation.off_policy_lower_bound`); ``None`` when not computed.
    """

    names: list[str]
    estimates: list[dict[str, Estimate]]
    randomized: list[dict] | None
    differences: list[dict]
    summary: dict
    chosen: list[dict] | None = None

    def to_dict(self) -> dict:
        """JSON-ready (write it with :func:`towerjax.jsonio.dumps`)."""
        models = []
        for i, name in enumerate(self.names):
            models.append(
                {
                    "name": name,
                    **self.summary["models"][i],
                    "estimates": {k: v.to_dict() for k, v in self.estimates[i].items()},
                    "randomized": None if self.randomized is None else self.randomized[i],
                    **({} if self.chosen is None else self.chosen[i]),
                }
            )
        return {
            "logs": {k: v for k, v in self.summary.items() if k != "models"},
            "models": models,
            "differences": self.differences,
        }

    def table(self) -> str:
        """The estimates as text: one block per model, then the differences."""
        lines = []
        logs = self.summary
        lines.append(
            f"{logs['source']}: {logs['rows']} rows, reward mean {logs['reward_mean']:.4f}, "
            f"pscore {logs['pscore_min']:.3g}..{logs['pscore_max']:.3g}"
        )
        lines.extend(f"  note: {note}" for note in logs.get("notes", []))
        header = f"  {'estimator':<13}{'value':>9}   {'95% interval':<20} {'bootstrap 95%':<20} {'ESS':>8} {'max w':>8}"
        for i, name in enumerate(self.names):
            info = self.summary["models"][i]
            lines.append(f"{name}: {info['items']} items" + _unseen_text(info))
            lines.append(header)
            for estimator, est in self.estimates[i].items():
                diag = est.diagnostics
                lines.append(
                    f"  {estimator:<13}{est.value:>9.4f}   {_interval(est.wald_low, est.wald_high):<20} "
                    f"{_interval(est.bootstrap_low, est.bootstrap_high):<20} "
                    f"{'' if diag is None else f'{diag.ess:.1f}':>8} {'' if diag is None else f'{diag.max_weight:.3g}':>8}"
                )
            if self.randomized is not None:
                r = self.randomized[i]
                lines.append(f"  {'randomized':<13}{r['value']:>9.4f}   {_interval(r['low'], r['high']):<20}")
            if self.chosen is not None:
                lines.extend(_chosen_lines(self.chosen[i]))
        for diff in self.differences:
            lines.append(f"{diff['model']} minus {diff['baseline']} (paired on the same rows):")
            for estimator, d in diff["estimators"].items():
                lines.append(f"  {estimator:<13}{d['value']:>+9.4f}   {_interval(d['low'], d['high']):<20}")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike | None = None):
        """Each estimator's value with its 95% (Wald) interval, one row of the figure per model,
        and the logging policy's value (the on-policy mean reward of the logs) as a dotted line.

        Returns the matplotlib ``Figure`` (saved to ``path`` when given).
        """
        from matplotlib.figure import Figure

        rows = len(self.names)
        names = list(self.estimates[0])
        height = 0.3 * (len(names) + 2) + 0.6
        figure = Figure(figsize=(7, height * rows), layout="constrained")
        axes = np.atleast_1d(figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
        for i, ax in enumerate(axes):
            labels, values, lows, highs = [], [], [], []
            for estimator, est in self.estimates[i].items():
                labels.append(estimator)
                values.append(est.value)
                lows.append(est.wald_low)
                highs.append(est.wald_high)
            if self.randomized is not None:
                r = self.randomized[i]
                labels.append("randomized")
                values.append(r["value"])
                lows.append(r["low"])
                highs.append(r["high"])
            y = np.arange(len(labels))[::-1]
            values, lows, highs = np.asarray(values), np.asarray(lows), np.asarray(highs)
            ax.errorbar(values, y, xerr=[values - lows, highs - values], fmt="o", capsize=3)
            ax.axvline(
                self.summary["reward_mean"], color="0.3", ls=":", lw=1.2, label="logging policy (mean reward)"
            )
            ax.set_yticks(y, labels)
            ax.set_title(self.names[i], fontsize=9)
            ax.grid(axis="x", alpha=0.3)
        axes[-1].set_xlabel(
            f"estimated value (95% interval) on {self.summary['source']}\ndotted: the logging "
            f"policy's value (the logs' mean reward, {self.summary['reward_mean']:.4g})"
        )
        if path is not None:
            save_figure(figure, path, argument="plot")
        return figure


def _chosen_lines(chosen: dict) -> list[str]:
    """The estimate (SLOPE's choice, with its reason) and the lower bound, as lines of :meth:`Evaluation.table`."""
    choice = chosen["the_estimate"]
    est = choice["estimate"]
    lines = [
        f"  the estimate: {choice['name']} = {est['value']:.4f}   {_interval(est['wald_low'], est['wald_high'])}",
        f"    why: {choice['reason']}",
    ]
    bound = chosen["lower_bound"]
    if bound is not None:
        lines.append(
            f"  lower bound: V >= {bound['value']:.4f} at {1 - bound['delta']:.0%} confidence "
            f"(empirical Bernstein, IPS weights clipped at {bound['clip']:.3g})"
        )
    return lines


def _unseen_text(info: dict) -> str:
    """``"; 3 row(s) with a value not in the training vocabulary (user_id 3): id 0"`` or ``""``."""
    if not info["unseen_rows"]:
        return ""
    columns = ", ".join(f"{c} {r}" for c, r in info["unseen_columns"].items())
    return (
        f"; {info['unseen_rows']} row(s) with a value not in the training vocabulary ({columns}), "
        "given the out-of-vocabulary id 0"
    )


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"[{low:.4f}, {high:.4f}]"


# --------------------------------------------------------------------------- the logs


def _logged_columns(
    frame: Any,
    item_ids: np.ndarray,
    *,
    item_column: Hashable,
    reward_column: Hashable,
    pscore_column: Hashable,
    argument: str,
    label: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(action, reward, pscore)`` of ``frame`` against a catalogue, checked by the tables layer.

    The logged item ids are mapped to the catalogue's rows; a missing or unknown id, a
    reward that is not a finite number or a propensity outside ``(0, 1]`` is an InputError
    naming ``argument`` and, in its message, the column and rows.
    """
    n = n_rows(frame, item_column)
    columns = {column: frame[column] for column in (item_column, reward_column, pscore_column)}
    try:
        data, _ = logged_data_from_frame(
            {**columns, _ROW_COLUMN: np.zeros(n)},
            context_columns=[_ROW_COLUMN],
            action_column=item_column,
            reward_column=reward_column,
            pscore_column=pscore_column,
            item_table={
                item_column: np.asarray(item_ids, dtype=object),
                _ROW_COLUMN: np.zeros(len(item_ids)),
            },
            item_id_column=item_column,
            item_feature_columns=[_ROW_COLUMN],
            item_id_embedding=False,
        )
    except FrameValidationError as err:
        raise frame_error(err, argument, label) from None
    return np.asarray(data.action), np.asarray(data.reward, np.float64), np.asarray(data.pscore, np.float64)


def _with_items(
    policy: SavedPolicy, items: Any, item_column: Hashable, label: str
) -> tuple[SavedPolicy, int]:
    """The policy over the catalogue of an item table (encoded with its encoding), and the
    rows whose item id or feature value got the out-of-vocabulary id 0."""
    require_columns(items, [item_column], argument="item_column", where=f"items {label}")
    try:
        features, _, unseen_rows = catching_unseen(
            lambda: policy.encoding.encode_items(items, unknown="warn")
        )
    except FrameValidationError as err:
        raise frame_error(err, "items", label) from None
    except InputError as err:
        raise InputError("items", f"{label}: {err.message}") from None
    ids = [plain_id(v) for v in column_values(items, item_column)]
    try:
        return SavedPolicy(
            config=policy.config,
            params=policy.params,
            item_features=features,
            item_ids=ids,
            metadata=policy.metadata,
            context_spec=policy.context_spec,
        ), unseen_rows
    except InputError as err:
        raise InputError("items", f"{label}: column {item_column!r}: {err.message}") from None


@functools.partial(jax.jit, static_argnums=0)
def _cross_fit(reward_model: RewardModel, key: jax.Array, data: LoggedData) -> jax.Array:
    return reward_model.cross_fit(key, data)


# --------------------------------------------------------------------------- evaluate


def evaluate(
    models: Any,
    logs: Any,
    *,
    items: Any = None,
    item_column: Hashable = "item_id",
    reward_column: Hashable = "reward",
    pscore_column: Hashable = "pscore",
    randomized: bool = False,
    seed: int = 0,
    n_bootstrap: int = 1000,
    progress: Progress = None,
) -> Evaluation:
    """Off-policy estimates of saved policies on logs, side by side with paired differences.

    For each model: its contexts are built from ``logs`` with the model's encoding (a
    value not in the training vocabulary, such as a new user id, gets the
    out-of-vocabulary id 0; the rows are counted, never an error), its policy
    ``pi(.|x_i)`` over the catalogue (the saved one, or ``items`` encoded with the model's
    encoding) is evaluated by every estimator of
    :func:`~towerjax.evaluation.off_policy_estimates` (value, standard error, Wald and
    bootstrap 95% intervals, weight diagnostics), the DR family with a reward model
    cross-fitted on these logs (at least 2 folds; BCE for rewards in ``[0, 1]``, else squared
    error; the same key for every model).

    Paired differences. For the second and later models, ``ipw``, ``snipw`` and ``dr`` minus
    the first model's (:func:`~towerjax.evaluation.paired_difference`): every model is
    evaluated on the same rows, so the difference of two estimates is the mean of the
    difference of their per-row terms ``phi_i`` (:func:`~towerjax.evaluation.off_policy_terms`;
    for ``snipw`` the estimate plus its delta-method influence ``w_i (r_i - V) / mean(w)``),
    whose standard error is ``std(d_i, ddof=1) / sqrt(n)``; the interval is ``± 1.96`` of it.
    The rows the models share cancel out, so the difference is estimated far more precisely
    than either value.

    The estimate. Beside the table, per model: SLOPE's choice of the ``dr-os`` shrinkage
    (:func:`~towerjax.evaluation.chosen_estimate`, Lepski's principle over ``lambda = inf`` (``dr``)
    and a geometric grid, then the smallest estimated MSE among the members it admits) with the
    reason, and for rewards in ``[0, 1]`` the empirical-Bernstein 95%
    lower bound on ``V(pi)`` with IPS weights clipped at ``n^(1/3)``
    (:func:`~towerjax.evaluation.off_policy_lower_bound`); :attr:`Evaluation.chosen` holds both.

    ``randomized=True`` (logs of a uniform logging policy) adds the unbiased value
    (:func:`~towerjax.metrics.randomized_value`) with its 95% interval; without a
    ``pscore_column`` in the logs the propensities are then ``1/A``.

    Args:
      models: a model directory (or :class:`~towerjax.serving.SavedPolicy` /
        :class:`~towerjax.workflow.fit.FitResult`), or a list of them.
      logs: the evaluation logs (path or table) with the models' context columns.
      items: an item table (path or table) to evaluate over instead of the saved catalogue.
      item_column, reward_column, pscore_column: the logs' columns (and the item table's id).
      randomized: the logs come from a uniform logging policy.
      seed: the key of the reward models and the bootstrap.
      n_bootstrap: bootstrap resamples.
      progress: called with one line per step (e.g. ``print``).

    Raises:
      InputError: naming ``model``, ``logs``, ``items`` or a ``*_column``.
    """
    say = say_to(progress)
    if isinstance(models, str | os.PathLike | SavedPolicy | FitResult):
        models = [models]
    models = list(models)
    if not models:
        raise InputError("model", "expected at least one model")
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    policies = [load_policy(m.policy if isinstance(m, FitResult) else m) for m in models]
    names = [source_label(m, f"model {i}") for i, m in enumerate(models)]
    label = source_label(logs, "logs")
    frame = read_table(logs, argument="logs")
    require_columns(frame, [item_column], argument="item_column", where=f"the logs {label}")
    require_columns(frame, [reward_column], argument="reward_column", where=f"the logs {label}")
    uniform_pscore = randomized and pscore_column not in column_names(frame)
    if not uniform_pscore:
        require_columns(frame, [pscore_column], argument="pscore_column", where=f"the logs {label}")
    items_label = None if items is None else source_label(items, "items")
    item_table = None if items is None else read_table(items, argument="items")
    key_q, key_bootstrap = jax.random.split(jax.random.key(seed))

    estimates, randomized_values, terms, infos, chosen = [], [], [], [], []
    logged = None
    for name, policy in zip(names, policies, strict=True):
        unseen_items, encoding = 0, policy.encoding
        if item_table is not None:
            policy, unseen_items = _with_items(policy, item_table, item_column, items_label)
        table = frame
        if uniform_pscore:
            n = n_rows(frame, item_column)
            table = {
                item_column: frame[item_column],
                reward_column: frame[reward_column],
                pscore_column: np.full(n, 1.0 / policy.n_items),
            }
        action, reward, pscore = _logged_columns(
            table,
            policy.item_ids,
            item_column=item_column,
            reward_column=reward_column,
            pscore_column=pscore_column,
            argument="logs",
            label=label,
        )
        if action.shape[0] < 2:
            raise InputError("logs", f"{label}: has {action.shape[0]} row, expected at least 2")
        logged = (reward, pscore)
        context, unseen, unseen_rows = encode_contexts(encoding, frame, argument="logs", label=label)
        reward_config = dataclasses.replace(
            policy.config.reward_model,
            folds=max(2, policy.config.reward_model.folds),
            loss=reward_model_loss(reward),
        )
        say(
            f"evaluating {name} on {action.shape[0]} rows of {label}: reward model "
            f"({reward_config.folds} folds, {reward_config.loss}) ..."
        )
        data = LoggedData(
            context=context if isinstance(context, Features) else jnp.asarray(context),
            action_context=policy.item_features,
            action=jnp.asarray(action, jnp.int32),
            reward=jnp.asarray(reward, jnp.float32),
            pscore=jnp.asarray(pscore, jnp.float32),
        )
        q_hat = np.asarray(_cross_fit(RewardModel(reward_config), key_q, data), np.float64)
        pi = policy.action_dist(context)[:, :, 0]
        est = off_policy_estimates(
            pi, action, reward, pscore, q_hat, key=key_bootstrap, n_bootstrap=n_bootstrap
        )
        estimates.append({k: v for k, v in est.items() if k not in ALIASES})
        if randomized:
            value = jax.device_get(randomized_value(pi, action, reward, pscore))
            randomized_values.append(
                {k: float(v) for k, v in interval_dict(value.value, value.stderr).items()}
            )
        terms.append(off_policy_terms(pi, action, reward, pscore, q_hat))
        chosen.append(_chosen(pi, action, reward, pscore, q_hat))
        infos.append(
            {
                "path": name,
                "items": policy.n_items,
                "unseen_rows": int(unseen_rows),
                "unseen_columns": {str(k): v for k, v in unseen.items()},
                "unseen_item_rows": int(unseen_items),
                "reward_model": dataclasses.asdict(reward_config),
            }
        )
    differences = [_difference(names[j], names[0], terms[j], terms[0]) for j in range(1, len(names))]
    reward, pscore = logged
    note = reward_note(reward, reward_model_loss(reward), evaluating=True)
    summary = {
        "source": label,
        "items_source": items_label,
        "rows": len(reward),
        "reward_mean": float(reward.mean()),
        "pscore_min": float(pscore.min()),
        "pscore_max": float(pscore.max()),
        "pscore": "1/A (no pscore column; randomized logs)" if uniform_pscore else str(pscore_column),
        "randomized": bool(randomized),
        "seed": seed,
        "n_bootstrap": n_bootstrap,
        "models": infos,
        "notes": [] if note is None else [note],
    }
    return Evaluation(
        names, estimates, randomized_values if randomized else None, differences, summary, chosen
    )


def _chosen(pi, action, reward, pscore, q_hat, delta: float = 0.05) -> dict:
    """SLOPE's choice within ``dr-os`` and, for rewards in ``[0, 1]``, the empirical-Bernstein lower bound."""
    choice = chosen_estimate(pi, action, reward, pscore, q_hat, delta=delta)
    bound = None
    if np.all((reward >= 0) & (reward <= 1)):
        clip = default_clip(len(reward))
        bound = {
            "value": off_policy_lower_bound(pi, action, reward, pscore, clip=clip, delta=delta),
            "clip": clip,
            "delta": delta,
            "method": "empirical Bernstein (Maurer & Pontil 2009; Thomas et al. 2015), "
            "X = min(w, clip) r, clip = n^(1/3)",
        }
    return {"the_estimate": choice.to_dict(), "lower_bound": bound}


def _difference(model: str, baseline: str, terms: dict, baseline_terms: dict) -> dict:
    """``model`` minus ``baseline`` for each of :data:`DIFFERENCE_ESTIMATORS`, paired on the rows."""
    entry = {}
    for estimator in DIFFERENCE_ESTIMATORS:
        d = paired_difference(terms[estimator], baseline_terms[estimator])
        entry[estimator] = {"value": d.value, "stderr": d.stderr, "low": d.wald_low, "high": d.wald_high}
    return {
        "model": model,
        "baseline": baseline,
        "estimators": entry,
        "note": "paired: the mean over the same rows of the difference of the per-row terms "
        "(snipw: the estimate plus its delta-method influence); stderr = std(d, ddof=1) / sqrt(n), "
        "interval ± 1.96 stderr",
    }
