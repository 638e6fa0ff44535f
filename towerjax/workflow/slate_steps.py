"""The steps of ``towerjax train --slate`` (:func:`towerjax.workflow.train_slate.fit_slate`): training
the seeds' list policies, estimating them on the held-out lists, the comparison with the logging
policy, the summary lines and the saved model.

Training is :func:`~towerjax.list_training.make_list_train`'s, split at the epochs
(:func:`~towerjax.list_training.make_list_epochs`, so each epoch can print its held-out estimate), on
the own-logs encoding's inputs: dense arrays or :class:`~towerjax.features.Features` with embedded ids. Estimates are
:func:`towerjax.evaluation.slate_estimates` of the Plackett-Luce list policy at the trained temperature
(:mod:`towerjax.list_policy`); the comparison pairs the criterion's per-row terms
(:func:`towerjax.evaluation.slate_terms`) with the logged ``sum_k r_ik``
(:func:`towerjax.evaluation.paired_difference`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from towerjax.evaluation import (
    Estimate,
    paired_difference,
    slate_estimates,
    slate_terms,
    wald_estimate,
)
from towerjax.list_policy import prefix_log_probs
from towerjax.list_training import ListTrainConfig, list_model, make_list_epochs
from towerjax.serving import SavedPolicy
from towerjax.slate_synthetic import SlateLogs
from towerjax.workflow.evaluate_slate import policy_position_marginals
from towerjax.workflow.fit import save_model_folder

__all__ = [
    "MAX_EXACT_LISTS",
    "choose_seed",
    "compare_to_logging",
    "held_out_estimates",
    "held_out_terms",
    "policy_scores",
    "save_slate_fit",
    "slate_report",
    "slate_summary",
    "train_list_seeds",
]

MAX_EXACT_LISTS = 5_000
"""Above this many lists ``A! / (A - K)!``, IIPS training samples its position marginals instead of
enumerating every list (``ListTrainConfig.iips_samples``)."""


# --------------------------------------------------------------------------- training


def train_list_seeds(config, item_features, train_rows, held_rows, seeds, seed, criterion, say) -> dict:
    """``{"params" [S, ...], "terms": [S] x [n], "epochs": [{epoch, criterion [S]}], "timing"}``:
    ``seeds`` runs (keys ``split(fold_in(key(seed), 1), S)``) vmapped, one compiled call per epoch,
    each epoch's criterion estimate on the held-out lists printed; ``terms`` are the last epoch's
    per-row criterion terms of each seed (:func:`held_out_terms`)."""
    init, epoch = make_list_epochs(config, item_features)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 1), seeds)
    say(
        f"training {config.objective} (Plackett-Luce list policy, temperature {config.temperature:g}): "
        f"{seeds} seed(s), {config.epochs} epochs, batch {config.batch_size}, "
        f"on {int(train_rows.lists.shape[0])} lists ..."
    )
    start = time.perf_counter()
    carry, epoch_keys, q_hat = jax.jit(jax.vmap(init, in_axes=(0, None)))(keys, train_rows)
    if q_hat is not None:
        say("  cross-fitted the position-aware reward model of cascade-dr on the training lists")
    step = jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, 0)))
    curve = []
    compile_s = None
    for e in range(config.epochs):
        carry = jax.block_until_ready(step(carry, epoch_keys[:, e], train_rows, q_hat))
        if compile_s is None:
            compile_s = time.perf_counter() - start
        terms = [
            held_out_terms(config, _seed(carry[0], s), item_features, held_rows, seed)[criterion]
            for s in range(seeds)
        ]
        values = [float(np.mean(t)) for t in terms]
        curve.append({"epoch": e + 1, criterion: values})
        say(
            f"  epoch {e + 1}/{config.epochs}: {criterion} on the validation lists "
            + ", ".join(f"{v:.4f}" for v in values)
        )
    seconds = time.perf_counter() - start
    return {
        "params": carry[0],
        "terms": terms,
        "epochs": curve,
        "timing": {"seconds": round(seconds, 2), "seconds_first_epoch": round(compile_s or 0.0, 2)},
    }


# --------------------------------------------------------------------------- estimates


def _seed(stacked_params: dict, s: int) -> dict:
    return jax.tree.map(lambda a: a[s], stacked_params)


@functools.partial(jax.jit, static_argnums=0)
def _scores(model, params, context, item_features):
    return model.scores(params, context, item_features)


def policy_scores(config: ListTrainConfig, params: dict, context: Any, item_features: Any) -> jax.Array:
    """``[n, A]`` the list policy's scores ``s(x_i, a)`` on the rows' contexts."""
    return _scores(list_model(config), params, context, item_features)


def _target_pscores(config: ListTrainConfig, scores: jax.Array, logs: SlateLogs, seed: int) -> dict:
    """The evaluated list policy's propensities of the logged lists: prefixes always, position
    marginals (:func:`~towerjax.workflow.evaluate_slate.policy_position_marginals`, as ``evaluate
    --slate`` computes them) when the logs have them."""
    out = {
        "evaluation_policy_pscore_cascade": np.exp(
            np.asarray(prefix_log_probs(scores, logs.lists, config.temperature), np.float64)
        )
    }
    if logs.pscore_item_position is not None:
        key = jax.random.fold_in(jax.random.key(seed), 2)
        marginals, _ = policy_position_marginals(scores, logs.lists, config.temperature, key)
        out["evaluation_policy_pscore_item_position"] = marginals
    return out


def _logged_pscores(logs: SlateLogs) -> dict:
    out = {"pscore_cascade": np.asarray(logs.pscore_cascade, np.float64)}
    if logs.pscore_item_position is not None:
        out["pscore_item_position"] = np.asarray(logs.pscore_item_position, np.float64)
    return out


def held_out_terms(config, params, item_features, logs: SlateLogs, seed: int) -> dict[str, np.ndarray]:
    """``{estimator: phi [n]}``: the per-row terms of every slate estimate of the list policy of
    ``params`` (one seed's) on ``logs`` (:func:`towerjax.evaluation.slate_terms`); ``mean(phi)`` is
    the estimate and ``std(phi, ddof=1) / sqrt(n)`` its standard error."""
    scores = policy_scores(config, params, logs.context, item_features)
    return slate_terms(
        np.asarray(logs.lists),
        np.asarray(logs.rewards, np.float64),
        **_logged_pscores(logs),
        **_target_pscores(config, scores, logs, seed),
    )


def held_out_estimates(config, params, item_features, logs: SlateLogs, seed: int, n_bootstrap: int) -> dict:
    """``{estimator: Estimate}`` of the list policy of ``params`` on ``logs``
    (:func:`towerjax.evaluation.slate_estimates`, ``n_bootstrap`` resamples with key ``seed``)."""
    scores = policy_scores(config, params, logs.context, item_features)
    return slate_estimates(
        np.asarray(logs.lists),
        np.asarray(logs.rewards, np.float64),
        **_logged_pscores(logs),
        **_target_pscores(config, scores, logs, seed),
        key=jax.random.key(seed),
        n_bootstrap=n_bootstrap,
    )


def choose_seed(terms: list[np.ndarray]) -> tuple[int, list[Estimate], np.ndarray]:
    """``(kept seed, each seed's criterion estimate, the kept seed's per-row terms)`` from each seed's
    per-row criterion ``terms`` on the held-out lists (:func:`train_list_seeds`' last epoch): the seed
    whose estimate has the highest lower 95% (Wald) bound."""
    per_seed = [wald_estimate(t) for t in terms]
    chosen = int(np.argmax([e.wald_low for e in per_seed]))
    return chosen, per_seed, terms[chosen]


def compare_to_logging(terms: np.ndarray, logs: SlateLogs, criterion: str) -> dict:
    """``{"logging", "difference", "verdict", "verdict_line"}``: the logging policy's on-policy value
    ``mean_i sum_k r_ik`` with its Wald interval, the kept policy's criterion (its per-row ``terms``)
    minus it paired on the same lists (:func:`towerjax.evaluation.paired_difference`), and the verdict
    from that difference's 95% interval."""
    on_policy = np.asarray(logs.rewards, np.float64).sum(axis=1)
    logging = wald_estimate(on_policy)
    diff = paired_difference(terms, on_policy)
    if diff.wald_low > 0:
        verdict = "better"
    elif diff.wald_high < 0:
        verdict = "worse"
    else:
        verdict = "not distinguishable"
    line = (
        f"verdict: {verdict} {'from' if verdict == 'not distinguishable' else 'than'} the logging policy on "
        f"the validation lists ({criterion} minus the "
        f"logged value: {diff.value:+.4f}, 95% [{diff.wald_low:+.4f}, {diff.wald_high:+.4f}])"
    )
    return {
        "logging": {k: logging.to_dict()[k] for k in ("value", "stderr", "wald_low", "wald_high")},
        "difference": {"estimator": criterion, **diff.to_dict()},
        "verdict": verdict,
        "verdict_line": line,
    }


# --------------------------------------------------------------------------- report and saving


def slate_report(
    *, sources, columns, rows, n_items, config, seeds, seed, trained, selection, estimates, comparison, notes
) -> dict:
    """What ``report.json`` holds (:func:`slate_summary` prints it): the sources and columns, the lists
    (all, training, validation: ``rows``), the config, each epoch's criterion, each seed's estimate
    and the kept one, the kept policy's estimates, its comparison with the logging policy, the notes."""
    every, train, held = rows
    criterion, per_seed, chosen = selection
    if seeds > 1:
        notes = [
            *notes,
            f"the kept seed was chosen among {seeds} on the same validation lists it is reported on: its "
            "estimate is a little optimistic (hold out other lists, e.g. --validation, to check it)",
        ]
    return {
        "format": "towerjax-slate-fit",
        "sources": sources,
        "columns": columns,
        "data": {
            "lists": int(every.lists.shape[0]),
            "train_lists": int(train.lists.shape[0]),
            "validation_lists": int(held.lists.shape[0]),
            "items": n_items,
            "reward_mean": [float(v) for v in np.asarray(every.rewards).mean(axis=0)],
        },
        "config": {**dataclasses.asdict(config), "hidden_sizes": list(config.hidden_sizes)},
        "search": "none: one configuration is trained (train --slate runs no search yet)",
        "seeds": seeds,
        "seed": seed,
        "epochs": trained["epochs"],
        "timing": trained["timing"],
        "selection": {
            "criterion": criterion,
            "by": "lower 95% Wald bound on the validation lists",
            "per_seed": [e.to_dict() for e in per_seed],
            "chosen_seed": chosen,
        },
        "estimates": {name: est.to_dict() for name, est in estimates.items()},
        **comparison,
        "notes": notes,
    }


def slate_summary(report: dict) -> str:
    """Lines of a :func:`~towerjax.workflow.train_slate.fit_slate` report: the data, the kept seed, its
    estimate beside the logging policy's value, the verdict, the notes."""
    data, sel = report["data"], report["selection"]
    crit = sel["criterion"]
    est = report["estimates"][crit]
    log = report["logging"]
    lines = [
        f"{report['sources']['logs']}: {data['lists']} lists of {report['columns']['positions']} items, "
        f"{data['items']} items; reward mean per position "
        + ", ".join(f"{r:.4f}" for r in data["reward_mean"]),
        f"one configuration ({report['config']['objective']}; no search with --slate yet), "
        f"{report['seeds']} seed(s); kept seed {sel['chosen_seed']} by the lower 95% bound of {crit} "
        f"on {data['validation_lists']} validation lists",
        f"  list policy ({crit}): {est['value']:.4f}  95% [{est['wald_low']:.4f}, {est['wald_high']:.4f}]",
        f"  logging policy (mean of sum_k reward_k): {log['value']:.4f}  "
        f"95% [{log['wald_low']:.4f}, {log['wald_high']:.4f}]",
        f"  {report['verdict_line']}",
    ]
    lines += [f"  note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def save_slate_fit(directory: Path, policy: SavedPolicy, report: dict, overwrite: bool) -> None:
    """Saves the policy and ``report.json`` into ``directory`` in one atomic write
    (:func:`~towerjax.workflow.fit.save_model_folder`), ``model.json`` naming the list policy."""
    metadata = {
        "list_policy": {
            "objective": report["config"]["objective"],
            "positions": report["columns"]["positions"],
            "temperature": report["config"]["temperature"],
        },
        "chosen_seed": report["selection"]["chosen_seed"],
        "verdict": report["verdict_line"],
    }
    save_model_folder(directory, policy, report, metadata, overwrite)
