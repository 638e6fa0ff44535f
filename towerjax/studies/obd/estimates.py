"""The OBD study's estimates: slot-averaged IPS and SNIPS, paired differences and permutation tests.

Confidence intervals. Normal 95% intervals, ``value +- 1.96 * se``, with ``se`` from
the per-row terms on the ``random`` rows (``std(ddof=1) / sqrt(n_k)`` per slot; the
delta method for SNIPS: :func:`towerjax.evaluation.estimator_terms`), combined
over slots as ``sqrt(sum_k se_k^2) / K`` since the slots' rows are disjoint. They
express the evaluation data's sampling noise for the given learned policies (not the
randomness of the ``bts`` training log). With about a dozen clicks per slot the normal
approximation is rough, and for a policy that concentrates on a few items the interval
can be much too narrow (below), so it is not the significance test on its own.

Significance. The difference between a learner and the uniform policy is estimated
*paired*, on the same ``random`` rows: for IPS the per-row terms ``(w_i - 1) r_i``
(learned IPS term minus the row's own click), for SNIPS the difference of the two
influence functions ``w_i (r_i - V_snips) / mean(w) - (r_i - mean(r))``, each with a
normal 95% interval (:func:`towerjax.evaluation.paired_difference` of the learned policy's
per-row terms and the rows' clicks). Because the interval's standard error only sees the clicked rows'
weights, it is too narrow when the policy concentrates on items that happen to have few
clicks in the random log; so each difference also gets a permutation test of the sharp
null "clicks do not depend on the policy's weights" (each slot's clicks reassigned to
uniformly drawn rows of that slot, ``permutations`` draws, two-sided). A difference is
called significant only when the interval excludes 0 *and* the permutation p-value is
below 0.05 (no correction for the several learners compared). The ``bts`` click rate is
compared unpaired (other rows): ``se = sqrt(se_bts^2 + se_uniform^2)``, and a
permutation test shuffling each slot's clicks over both logs' rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.evaluation import estimator_terms, mean_se, normal_interval, paired_difference
from towerjax.studies.obd.data import ObdData

__all__ = ["baselines", "permutation_pvalues", "row_terms", "slot_estimates"]


def baselines(data: ObdData, permutations: int, seed: int) -> tuple[dict, dict]:
    """The uniform policy's value (the random log's click rate), the ``bts`` log's, and their difference."""
    uniform = _slot_average([_mean_terms(r) for r in data.rewards])
    bts = _slot_average([_mean_terms(data.train_clicks(k).astype(np.float64)) for k in range(data.n_slots)])
    bts["difference"] = _with_ci(
        {"value": bts["value"] - uniform["value"], "stderr": math.hypot(bts["stderr"], uniform["stderr"])},
        significance=True,
    )
    bts["difference"]["p_permutation"] = _two_sample_pvalue(
        [data.train_clicks(k) for k in range(data.n_slots)],
        data.rewards,
        permutations,
        np.random.default_rng(seed),
    )
    return uniform, bts


def slot_estimates(
    prob_logged: Sequence[np.ndarray],
    reward: Sequence[np.ndarray],
    pscore: Sequence[np.ndarray],
    *,
    permutations: int = 10000,
    seed: int = 0,
) -> dict:
    """IPS and SNIPS of ``S`` policies and their mixture, slot by slot, and the paired difference to the log's CTR.

    Args:
      prob_logged: per slot ``k``, ``[S, n_k]`` each seed's probability of the logged action.
      reward: per slot, ``[n_k]`` the logged rewards (0 or 1 for the permutation test).
      pscore: per slot, ``[n_k]`` the logged propensities.
      permutations: draws of the permutation test of the differences (0 skips it).
      seed: its random generator's seed.

    Returns:
      ``{"ips", "snips", "difference": {"ips", "snips"}, "ess"}`` as described in
      :func:`run_obd_study`; the slot-averaged values weigh every slot equally.
    """
    per = {"ips": [], "snips": [], "diff_ips": [], "diff_snips": [], "seed_ips": [], "seed_snips": []}
    ess, mixture = 0.0, []
    for p, r, ps in zip(prob_logged, reward, pscore, strict=True):
        p = np.atleast_2d(np.asarray(p, np.float64))
        r, ps = np.asarray(r, np.float64), np.asarray(ps, np.float64)
        w = p / ps  # [S, n_k]
        w_bar = w.mean(axis=0)  # the mixture policy's weights
        mixture.append((w_bar, r))
        # [S + 1, n_k] per estimator: each seed's policy, then the mixture
        terms = row_terms(np.concatenate([w, w_bar[None]]), r)
        per["seed_ips"].append([_mean_terms(t) for t in terms["ipw"][:-1]])
        per["seed_snips"].append([_mean_terms(t) for t in terms["snipw"][:-1]])
        per["ips"].append(_mean_terms(terms["ipw"][-1]))
        per["snips"].append(_mean_terms(terms["snipw"][-1]))
        # The uniform policy's on-policy terms are the rows' own clicks r_i.
        per["diff_ips"].append(_paired(terms["ipw"][-1], r))
        per["diff_snips"].append(_paired(terms["snipw"][-1], r))
        ess += float(w_bar.sum() ** 2 / np.sum(w_bar**2)) if np.any(w_bar > 0) else 0.0
    out = {}
    for name in ("ips", "snips"):
        entry = _slot_average(per[name])
        seed_values = [
            _slot_average([per[f"seed_{name}"][k][s] for k in range(len(per[name]))])
            for s in range(len(per[f"seed_{name}"][0]))
        ]
        entry["per_seed"] = [e["value"] for e in seed_values]
        entry["per_seed_stderr"] = [e["stderr"] for e in seed_values]
        entry["seed_mean"] = float(np.mean(entry["per_seed"]))
        entry["seed_std"] = float(np.std(entry["per_seed"], ddof=1)) if len(seed_values) > 1 else float("nan")
        out[name] = entry
    out["difference"] = {
        "ips": _slot_average(per["diff_ips"], significance=True),
        "snips": _slot_average(per["diff_snips"], significance=True),
    }
    p_ips, p_snips = permutation_pvalues(mixture, permutations, np.random.default_rng(seed))
    out["difference"]["ips"]["p_permutation"] = p_ips
    out["difference"]["snips"]["p_permutation"] = p_snips
    out["ess"] = ess
    return out


def row_terms(w: np.ndarray, reward: np.ndarray) -> dict[str, np.ndarray]:
    """IPS's and SNIPS's per-row terms ``{"ipw", "snipw"}``, each ``[P, n]``, of ``P`` policies' weights ``w [P, n]``.

    :func:`towerjax.evaluation.estimator_terms` (mapped over the policies), computed in float64 like
    the study's host arrays: their mean is the estimate, ``std(ddof=1) / sqrt(n)`` its standard
    error (the delta method for SNIPS), and a policy's terms minus the rows' clicks its paired
    difference to the logging policy.
    """
    with jax.enable_x64(True):
        reward = jnp.asarray(reward, jnp.float64)
        terms = jax.vmap(lambda wp: estimator_terms(wp, reward, names=("ipw", "snipw")))(
            jnp.asarray(w, jnp.float64)
        )
        return {name: np.asarray(t, np.float64) for name, t in terms.items()}


def permutation_pvalues(
    mixture: Sequence[tuple[np.ndarray, np.ndarray]], permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Two-sided p-values of the IPS and SNIPS differences under "clicks ignore the policy".

    The sharp null: within each slot, which rows were clicked is exchangeable with
    respect to the policy's weights (so ``V(pi)`` equals the click rate). Each draw puts
    the slot's ``c_k`` clicks on ``c_k`` rows chosen uniformly without replacement and
    recomputes the slot-averaged differences; the p-value counts draws at least as far
    from the null mean as the observed one (``(1 + count) / (1 + draws)``). Unlike the
    normal interval, it sees the weights of the rows that were *not* clicked, so it
    stays valid when the policy concentrates on items with few clicks.
    """
    if permutations < 1:
        return float("nan"), float("nan")
    observed = np.zeros(2)
    null_mean = np.zeros(2)
    draws = np.zeros((permutations, 2))
    for w, r in mixture:
        n, clicks = w.size, int(np.rint(r.sum()))
        total = w.sum()
        observed += [np.sum(w * r) / n, np.sum(w * r) / total]
        null_mean += [clicks * w.mean() / n, clicks / n]
        if clicks == 0:
            continue
        rows = _draw_without_replacement(rng, n, clicks, permutations)
        sums = w[rows].sum(axis=1)
        draws[:, 0] += sums / n
        draws[:, 1] += sums / total
    # The slot average divides every term by K; that scaling cancels in the comparison.
    extreme = np.abs(draws - null_mean) >= np.abs(observed - null_mean) - 1e-12
    p = (1 + extreme.sum(axis=0)) / (1 + permutations)
    return float(p[0]), float(p[1])


def _two_sample_pvalue(
    first: Sequence[np.ndarray], second: Sequence[np.ndarray], permutations: int, rng: np.random.Generator
) -> float:
    """Two-sided permutation p-value of the slot-averaged click-rate difference of two logs.

    Per slot, the null shuffles the clicks over the two logs' rows pooled (the count
    landing in ``first`` is hypergeometric); the statistic is the mean over slots of
    ``ctr_first - ctr_second``, whose null mean is 0.
    """
    if permutations < 1:
        return float("nan")
    observed, draws = 0.0, np.zeros(permutations)
    for a, b in zip(first, second, strict=True):
        clicks_a, clicks_b = int(np.sum(a)), int(np.sum(b))
        total = clicks_a + clicks_b
        observed += clicks_a / a.size - clicks_b / b.size
        in_a = rng.hypergeometric(total, a.size + b.size - total, a.size, size=permutations)
        draws += in_a / a.size - (total - in_a) / b.size
    extreme = np.abs(draws) >= abs(observed) - 1e-12
    return float((1 + extreme.sum()) / (1 + permutations))


def _draw_without_replacement(rng: np.random.Generator, n: int, k: int, draws: int) -> np.ndarray:
    """``[draws, k]`` row indices, each row ``k`` distinct values of ``range(n)``."""
    if k > n // 2:
        return np.argsort(rng.random((draws, n)), axis=1)[:, :k]
    rows = rng.integers(0, n, size=(draws, k))
    while True:
        ordered = np.sort(rows, axis=1)
        bad = np.flatnonzero(np.any(ordered[:, 1:] == ordered[:, :-1], axis=1))
        if bad.size == 0:
            return rows
        rows[bad] = rng.integers(0, n, size=(bad.size, k))


def _mean_terms(terms: np.ndarray) -> dict:
    """The mean of per-row terms and its standard error."""
    value, stderr = mean_se(terms)
    return {"value": value, "stderr": stderr}


def _paired(terms: np.ndarray, baseline: np.ndarray) -> dict:
    """The paired difference of two estimates' per-row terms on the same rows."""
    difference = paired_difference(terms, baseline)
    return {"value": difference.value, "stderr": difference.stderr}


def _with_ci(entry: dict, significance: bool = False) -> dict:
    entry["ci"] = list(normal_interval(entry["value"], entry["stderr"]))
    if significance:
        entry["significant"] = bool(entry["ci"][0] > 0 or entry["ci"][1] < 0)
    return entry


def _slot_average(slots: Sequence[dict], significance: bool = False) -> dict:
    """Equal-weight mean over slots; the slots' rows are disjoint, so their variances add."""
    values = [s["value"] for s in slots]
    errors = [s["stderr"] for s in slots]
    entry = {
        "value": float(np.mean(values)),
        "stderr": float(math.sqrt(sum(e * e for e in errors)) / len(slots)),
        "per_slot": [{"value": float(v), "stderr": float(e)} for v, e in zip(values, errors, strict=True)],
    }
    return _with_ci(entry, significance)
