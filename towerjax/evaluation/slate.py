"""Off-policy evaluation of list (slate) policies from multi-position logs (SPEC 10).

Row ``i`` of the logs holds the list ``a_i = (a_i1, ..., a_iK)`` the logger showed, the reward
``r_ik`` at each position and the logger's propensities; the evaluated policy gives the same
propensities of the same list. Names and definitions follow Open Bandit Pipeline's slate
estimators (``estimator_name``), with position weights ``alpha_k`` (default 1, OBP's case) and
``V(pi) = E sum_k alpha_k r_k``. With the whole-list weight ``w_i = pi(a_i | x_i) / pi_0(a_i | x_i)``,
the position-marginal weight ``w_ik = P_pi(a_ik at k | x_i) / P_pi0(a_ik at k | x_i)`` and the prefix
weight ``w_i,1:k = pi(a_i1..a_ik | x_i) / pi_0(a_i1..a_ik | x_i)`` (``w_i,1:0 = 1``):

- ``sips`` (standard IPS; no assumption on the reward): ``mean_i w_i sum_k alpha_k r_ik``;
- ``iips`` (independent IPS; a position-based click model, Li et al., WSDM 2018):
  ``mean_i sum_k alpha_k w_ik r_ik``;
- ``rips`` (reward-interaction IPS; a cascade model, McInerney et al., KDD 2020):
  ``mean_i sum_k alpha_k w_i,1:k r_ik``;
- ``snsips``, ``sniips``, ``snrips``: the self-normalised forms, as OBP defines them:
  ``sum_i w_i R_i / sum_i w_i`` and, per position, ``sum_k alpha_k sum_i w_ik r_ik / sum_i w_ik``;
- ``cascade-dr`` (Kiyohara et al., WSDM 2022): ``mean_i sum_k alpha_k [w_i,1:k (r_ik - q_hat_k(a_ik))
  + w_i,1:k-1 sum_b pi(b | x_i, a_i,1:k-1) q_hat_k(b)]`` with ``q_hat_k(b)`` the reward model's
  expected reward at position ``k`` for item ``b`` after the logged prefix ``a_i,1:k-1``;
- ``pseudo-inverse`` (Swaminathan et al., NeurIPS 2017): ``mean_i (sum_k w_ik - K + 1) R_i`` with
  ``R_i = sum_k alpha_k r_ik``; unbiased when the list reward is additive over positions and the
  logger fills positions independently (e.g. each position from its own candidate set).

Every estimator is a function ``g`` of the column means ``m`` of one per-row table, as the
single-action estimators are (:mod:`towerjax.evaluation.estimators`): the per-row terms are
``phi_i = g(m) + (C_i - m) . grad g(m)`` (the row's own term for the linear ones, the delta method
for the self-normalised ones), the standard error is ``std(phi, ddof=1) / sqrt(n)`` and a bootstrap
resample is ``g(counts @ C / n)``. :func:`slate_estimator_terms` is the jit-able core;
:func:`slate_estimates` and :func:`slate_terms` check the logs on the host and call it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int
from towerjax.evaluation.estimators import column_mean_intervals
from towerjax.evaluation.off_policy import ROW_SUM_TOLERANCE
from towerjax.evaluation.results import Z_95, Estimate, WeightDiagnostics, weight_diagnostics
from towerjax.rows import safe_ratio

__all__ = [
    "PSEUDO_INVERSE_NOTE",
    "SLATE_ESTIMATORS",
    "slate_estimates",
    "slate_estimator_terms",
    "slate_terms",
]

SLATE_ESTIMATORS = ("sips", "snsips", "iips", "sniips", "rips", "snrips", "cascade-dr", "pseudo-inverse")
"""The slate estimators, in the order :func:`slate_estimates` lists them (OBP's names; ``pseudo-inverse`` has none)."""

PSEUDO_INVERSE_NOTE = (
    "unbiased only when the list reward is additive over positions and the logger fills positions "
    "independently (Swaminathan et al. 2017); it weights the whole list's reward sum_k alpha_k r_k"
)


_WEIGHTS = {  # estimator -> the weights it needs: "list" (w_i), "item" (w_ik) or "cascade" (w_i,1:k)
    "sips": "list",
    "snsips": "list",
    "iips": "item",
    "sniips": "item",
    "pseudo-inverse": "item",
    "rips": "cascade",
    "snrips": "cascade",
    "cascade-dr": "cascade",
}

_USES = {  # estimator -> the columns of the per-row table its value is a function of
    "sips": ("sips",),
    "snsips": ("sips", "w"),
    "iips": ("iips",),
    "sniips": ("iips", "w_item"),
    "rips": ("rips",),
    "snrips": ("rips", "w_cascade"),
    "cascade-dr": ("cascade-dr",),
    "pseudo-inverse": ("pseudo-inverse",),
}

_VALUE = {  # estimator -> g(m, alpha): its value from the column means (scalars, or [K] per position)
    "sips": lambda m, alpha: m["sips"],
    "snsips": lambda m, alpha: safe_ratio(m["sips"], m["w"]),
    "iips": lambda m, alpha: jnp.sum(alpha * m["iips"]),
    "sniips": lambda m, alpha: jnp.sum(alpha * safe_ratio(m["iips"], m["w_item"])),
    "rips": lambda m, alpha: jnp.sum(alpha * m["rips"]),
    "snrips": lambda m, alpha: jnp.sum(alpha * safe_ratio(m["rips"], m["w_cascade"])),
    "cascade-dr": lambda m, alpha: m["cascade-dr"],
    "pseudo-inverse": lambda m, alpha: m["pseudo-inverse"],
}


def _applicable(has_list: bool, has_item: bool, has_cascade: bool, has_q: bool) -> tuple[str, ...]:
    """The names of :data:`SLATE_ESTIMATORS` whose inputs are given, in that order."""
    given = {"list": has_list, "item": has_item, "cascade": has_cascade}
    return tuple(
        name for name in SLATE_ESTIMATORS if given[_WEIGHTS[name]] and (name != "cascade-dr" or has_q)
    )


def _columns(reward, w, w_item, w_cascade, q_logged, direct, alpha, names):
    """The per-row table ``{column: [n] or [n, K]}`` the estimators ``names`` are functions of."""
    used = {column for name in names for column in _USES[name]}
    list_reward = reward @ alpha  # R_i = sum_k alpha_k r_ik
    cols = {}
    if "sips" in used:
        cols["sips"] = w * list_reward
    if "w" in used:
        cols["w"] = w
    if "iips" in used:
        cols["iips"] = w_item * reward
    if "w_item" in used:
        cols["w_item"] = w_item
    if "rips" in used:
        cols["rips"] = w_cascade * reward
    if "w_cascade" in used:
        cols["w_cascade"] = w_cascade
    if "cascade-dr" in used:
        above = jnp.concatenate([jnp.ones_like(w_cascade[:, :1]), w_cascade[:, :-1]], axis=1)  # w_i,1:k-1
        cols["cascade-dr"] = (w_cascade * (reward - q_logged) + above * direct) @ alpha
    if "pseudo-inverse" in used:
        cols["pseudo-inverse"] = (jnp.sum(w_item, axis=1) - w_item.shape[1] + 1) * list_reward
    return cols


def _delta_method(cols, names, alpha):
    """``(table [n, M], g, value [E], influence [n, E])``: the estimates ``g(m)`` of ``names`` from the
    column means of the flattened table and each row's delta-method influence ``(C_i - m) . grad g(m)``."""
    keys = tuple(cols)
    blocks = [cols[key].reshape(cols[key].shape[0], -1) for key in keys]
    table = jnp.concatenate(blocks, axis=1)  # C [n, M]
    bounds = np.cumsum([0] + [block.shape[1] for block in blocks])

    def estimates(means):  # g: [M] column means -> [E] estimates
        m = {
            key: means[start] if cols[key].ndim == 1 else means[start:stop]
            for key, start, stop in zip(keys, bounds[:-1], bounds[1:], strict=True)
        }
        return jnp.stack([_VALUE[name](m, alpha) for name in names])

    means = jnp.mean(table, axis=0)
    value = estimates(means)
    influence = (table - means) @ jax.jacfwd(estimates)(means).T  # [n, E]
    return table, estimates, value, influence


def slate_estimator_terms(
    reward: ArrayLike,
    *,
    w: ArrayLike | None = None,
    w_item_position: ArrayLike | None = None,
    w_cascade: ArrayLike | None = None,
    q_logged: ArrayLike | None = None,
    direct: ArrayLike | None = None,
    position_weight: ArrayLike | None = None,
    names: str | tuple[str, ...] | None = None,
) -> dict[str, jax.Array]:
    """Each slate estimator's per-row terms ``phi [n]`` from the importance weights (jit-able).

    ``phi_i = g(m) + (C_i - m) . grad g(m)``, the estimate plus row ``i``'s delta-method influence:
    for the linear estimators the row's own term (``sips``: ``w_i R_i``), for ``snsips``
    ``V + w_i (R_i - V) / mean(w)`` and for ``sniips``/``snrips`` the same per position, summed with
    ``alpha``. ``mean(phi)`` is the estimate, ``std(phi, ddof=1) / sqrt(n)`` its standard error. The
    module docstring gives the definitions.

    Args:
      reward: ``[n, K]`` per-position rewards ``r_ik``.
      w: ``[n]`` whole-list weights ``pi(a_i | x_i) / pi_0(a_i | x_i)``; adds ``sips``, ``snsips``.
      w_item_position: ``[n, K]`` position-marginal weights; adds ``iips``, ``sniips``, ``pseudo-inverse``.
      w_cascade: ``[n, K]`` prefix weights ``w_i,1:k``; adds ``rips``, ``snrips``.
      q_logged: ``[n, K]`` ``q_hat_k(a_ik)``, the reward model at the logged item given the logged prefix.
      direct: ``[n, K]`` ``sum_b pi(b | x_i, a_i,1:k-1) q_hat_k(b)``; with ``q_logged`` and ``w_cascade``
        adds ``cascade-dr``.
      position_weight: ``[K]`` ``alpha_k``; default 1.
      names: the estimators wanted; default every one the inputs allow.

    Returns:
      ``{name: phi [n]}``.

    >>> reward = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> terms = slate_estimator_terms(reward, w=jnp.array([2.0, 0.5, 0.25]), names=("sips", "snsips"))
    >>> [round(float(t.mean()), 4) for t in terms.values()]  # (2 + 0.5 + 0.5) / 3 and 3 / 2.75
    [1.0, 1.0909]
    """
    reward = jnp.asarray(reward)
    if reward.ndim != 2 or reward.shape[0] < 1 or reward.shape[1] < 1:
        raise InputError("reward", f"expected shape [n, K] with n, K >= 1, got {reward.shape}")
    n, k = reward.shape
    shapes = {"w": (n,), "w_item_position": (n, k), "w_cascade": (n, k), "q_logged": (n, k), "direct": (n, k)}
    given = {
        "w": w,
        "w_item_position": w_item_position,
        "w_cascade": w_cascade,
        "q_logged": q_logged,
        "direct": direct,
    }
    for name, value in given.items():
        if value is not None and jnp.shape(value) != shapes[name]:
            raise InputError(name, f"expected shape {shapes[name]} to match reward, got {jnp.shape(value)}")
    if (q_logged is None) != (direct is None):
        raise InputError(
            "q_logged" if q_logged is None else "direct", "expected q_logged and direct together"
        )
    alpha = jnp.ones(k, reward.dtype) if position_weight is None else jnp.asarray(position_weight)
    if alpha.shape != (k,):
        raise InputError("position_weight", f"expected shape ({k},) to match reward, got {alpha.shape}")
    has = (w is not None, w_item_position is not None, w_cascade is not None, q_logged is not None)
    allowed = _applicable(*has)
    if names is None:
        names = allowed
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if name not in allowed:
            raise InputError(
                "names", f"expected names from {allowed} (the ones these weights allow), got {name!r}"
            )
    if not names or len(set(names)) != len(names):
        raise InputError("names", f"expected distinct estimator names, got {names!r}")
    arrays = [None if value is None else jnp.asarray(value) for value in (w, w_item_position, w_cascade)]
    q_logged = None if q_logged is None else jnp.asarray(q_logged)
    direct = None if direct is None else jnp.asarray(direct)
    cols = _columns(reward, *arrays, q_logged, direct, alpha, names)
    _, _, value, influence = _delta_method(cols, names, alpha)
    terms = value + influence
    return {name: terms[:, i] for i, name in enumerate(names)}


def _weights_and_model(lists, pscores, evaluation, q_hat, action_dist):
    """``w [n] or None, w_item [n, K] or None, w_cascade [n, K] or None, q_logged, direct`` on device."""
    w_list, w_item, w_cascade = (
        None if p is None else e / p for p, e in zip(pscores, evaluation, strict=True)
    )
    q_logged = direct = None
    if q_hat is not None:
        q_logged = jnp.take_along_axis(q_hat, lists[..., None], axis=-1)[..., 0]
        direct = jnp.sum(action_dist * q_hat, axis=-1)
    return w_list, w_item, w_cascade, q_logged, direct


@functools.partial(jax.jit, static_argnames=("names", "n_bootstrap"))
def _estimates(lists, reward, pscores, evaluation, q_hat, action_dist, alpha, key, *, names, n_bootstrap):
    """Values, standard errors, bootstrap bounds ``[E]`` and the weights' diagnostics (jitted, unchecked)."""
    w, w_item, w_cascade, q_logged, direct = _weights_and_model(
        lists, pscores, evaluation, q_hat, action_dist
    )
    cols = _columns(reward, w, w_item, w_cascade, q_logged, direct, alpha, names)
    table, estimates, value, influence = _delta_method(cols, names, alpha)
    stderr, low, high = column_mean_intervals(table, estimates, influence, key, n_bootstrap)
    per_position = jax.vmap(weight_diagnostics, in_axes=1)  # [n, K] -> diagnostics with [K] fields
    diagnostics = (
        None if w is None else weight_diagnostics(w),
        None if w_item is None else per_position(w_item),
        None if w_cascade is None else per_position(w_cascade),
    )
    return value, stderr, low, high, diagnostics


@functools.partial(jax.jit, static_argnames=("names",))
def _terms(lists, reward, pscores, evaluation, q_hat, action_dist, alpha, *, names):
    """:func:`slate_estimator_terms` from checked logs (jitted)."""
    w, w_item, w_cascade, q_logged, direct = _weights_and_model(
        lists, pscores, evaluation, q_hat, action_dist
    )
    return slate_estimator_terms(
        reward,
        w=w,
        w_item_position=w_item,
        w_cascade=w_cascade,
        q_logged=q_logged,
        direct=direct,
        position_weight=alpha,
        names=names,
    )


def slate_estimates(
    lists: ArrayLike,
    reward: ArrayLike,
    *,
    pscore: ArrayLike | None = None,
    pscore_item_position: ArrayLike | None = None,
    pscore_cascade: ArrayLike | None = None,
    evaluation_policy_pscore: ArrayLike | None = None,
    evaluation_policy_pscore_item_position: ArrayLike | None = None,
    evaluation_policy_pscore_cascade: ArrayLike | None = None,
    q_hat: ArrayLike | None = None,
    evaluation_policy_action_dist: ArrayLike | None = None,
    position_weight: ArrayLike | None = None,
    key: jax.Array | None = None,
    n_bootstrap: int = 1000,
) -> dict[str, Estimate]:
    """Estimates ``V(pi) = E sum_k alpha_k r_k`` of a list policy from multi-position logs (SPEC 10).

    The estimators of the module docstring, each one whose propensities are given: the whole-list
    pair (``pscore``, ``evaluation_policy_pscore``) gives ``sips``, ``snsips``; the position-marginal
    pair gives ``iips``, ``sniips``, ``pseudo-inverse``; the prefix (cascade) pair gives ``rips``,
    ``snrips``, and with ``q_hat`` and ``evaluation_policy_action_dist`` ``cascade-dr``. Without the
    whole-list pair, the last prefix column (the whole list's probability) stands in for it. The
    arguments are OBP's (``SyntheticSlateBanditDataset``'s feedback and the evaluation policy's
    pscores), reshaped from OBP's flat ``[n * K]`` to ``[n, K]``;
    :mod:`towerjax.list_policy` computes the evaluation policy's ones for a Plackett-Luce policy.

    Uncertainty as :func:`towerjax.off_policy_estimates`: ``stderr`` is ``std(ddof=1) / sqrt(n)`` of
    the per-row terms (delta method for the self-normalised ones), the Wald interval
    ``value ± 1.96 stderr``, the bootstrap interval the 2.5/97.5% percentiles over ``n_bootstrap``
    resamples of the rows in one vectorised call (NaN without ``key``); ``q_hat`` is held fixed, which
    is right when it was fitted on other rows (cross-fitting). Diagnostics are those of the weights the
    estimator uses: ``w_i`` for the standard ones; for the others the position whose weights have the
    smallest effective sample size, which the ``note`` names.

    Args:
      lists: ``[n, K]`` int logged lists of distinct items, ``n >= 2``.
      reward: ``[n, K]`` per-position rewards.
      pscore: ``[n]`` the logger's whole-list probabilities ``pi_0(a_i | x_i)`` in ``(0, 1]``.
      pscore_item_position: ``[n, K]`` the logger's position marginals ``P_pi0(a_ik at k | x_i)`` in ``(0, 1]``.
      pscore_cascade: ``[n, K]`` the logger's prefix probabilities ``pi_0(a_i1..a_ik | x_i)`` in ``(0, 1]``,
        not increasing along positions.
      evaluation_policy_pscore, evaluation_policy_pscore_item_position, evaluation_policy_pscore_cascade:
        the evaluated policy's same quantities of the logged lists, in ``[0, 1]``; each with the logger's.
      q_hat: ``[n, K, A]`` ``q_hat_k(b)``: the expected reward at position ``k`` of item ``b`` placed after
        the logged prefix ``a_i,1:k-1`` (cross-fitted); needs the cascade pair.
      evaluation_policy_action_dist: ``[n, K, A]`` ``pi(b | x_i, a_i,1:k-1)``, each row a distribution with
        no mass on the prefix's items (:func:`towerjax.list_policy.next_item_log_probs`, as ``exp``).
      position_weight: ``[K]`` ``alpha_k >= 0``; default 1.
      key: ``jax.random.key`` for the bootstrap; ``None`` skips it.
      n_bootstrap: number of bootstrap resamples.

    Returns:
      ``{name: Estimate}`` in :data:`SLATE_ESTIMATORS` order.

    Raises:
      InputError: naming the argument, for wrong shapes or dtypes, ``n < 2``, repeated items in a list,
        non-finite values, propensities outside their range, a propensity without its counterpart,
        ``q_hat`` without ``evaluation_policy_action_dist`` or without the cascade pair.

    >>> lists = jnp.array([[0, 1], [1, 0], [2, 0]])
    >>> reward = jnp.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    >>> est = slate_estimates(lists, reward, pscore=jnp.full(3, 1 / 6), evaluation_policy_pscore=jnp.array([0.5, 0.1, 0.2]))
    >>> round(est["sips"].value, 4), round(est["snsips"].value, 4)
    (1.8, 1.125)
    """
    logs, names, n_bootstrap = _prepare(
        lists,
        reward,
        (pscore, pscore_item_position, pscore_cascade),
        (evaluation_policy_pscore, evaluation_policy_pscore_item_position, evaluation_policy_pscore_cascade),
        q_hat,
        evaluation_policy_action_dist,
        position_weight,
        n_bootstrap,
    )
    value, stderr, low, high, (diag_list, diag_item, diag_cascade) = jax.device_get(
        _estimates(*logs, key, names=names, n_bootstrap=n_bootstrap)
    )
    alpha = np.asarray(logs[-1])
    out = {}
    for i, name in enumerate(names):
        v, se = float(value[i]), float(stderr[i])
        kind = _WEIGHTS[name]
        if kind == "list":
            diagnostics, note = WeightDiagnostics(*map(float, diag_list)), None
        else:
            diagnostics, note = _worst_position(diag_item if kind == "item" else diag_cascade, alpha)
        if name == "pseudo-inverse":
            note = f"{PSEUDO_INVERSE_NOTE}; {note}"
        out[name] = Estimate(
            value=v,
            stderr=se,
            wald_low=v - Z_95 * se,
            wald_high=v + Z_95 * se,
            bootstrap_low=float(low[i]),
            bootstrap_high=float(high[i]),
            diagnostics=diagnostics,
            note=note,
        )
    return out


def slate_terms(
    lists: ArrayLike,
    reward: ArrayLike,
    *,
    pscore: ArrayLike | None = None,
    pscore_item_position: ArrayLike | None = None,
    pscore_cascade: ArrayLike | None = None,
    evaluation_policy_pscore: ArrayLike | None = None,
    evaluation_policy_pscore_item_position: ArrayLike | None = None,
    evaluation_policy_pscore_cascade: ArrayLike | None = None,
    q_hat: ArrayLike | None = None,
    evaluation_policy_action_dist: ArrayLike | None = None,
    position_weight: ArrayLike | None = None,
) -> dict[str, np.ndarray]:
    """The per-row terms ``phi [n]`` of every estimate :func:`slate_estimates` gives, on the host.

    The same arguments, checks and estimators; ``mean(phi)`` is the value and ``std(phi, ddof=1) / sqrt(n)``
    the standard error. Terms of two policies on the same logs give their paired difference
    (:func:`towerjax.evaluation.paired_difference`); the logging policy's on-policy terms are
    ``reward @ alpha``.
    """
    logs, names, _ = _prepare(
        lists,
        reward,
        (pscore, pscore_item_position, pscore_cascade),
        (evaluation_policy_pscore, evaluation_policy_pscore_item_position, evaluation_policy_pscore_cascade),
        q_hat,
        evaluation_policy_action_dist,
        position_weight,
        1,
    )
    return {name: np.asarray(t) for name, t in jax.device_get(_terms(*logs, names=names)).items()}


def _worst_position(diagnostics: WeightDiagnostics, alpha: np.ndarray) -> tuple[WeightDiagnostics, str]:
    """The diagnostics of the position (with ``alpha_k > 0``) whose weights have the smallest ESS, and a note."""
    ess = np.where(alpha > 0, np.asarray(diagnostics.ess, np.float64), np.inf)
    k = int(np.argmin(ess))
    picked = WeightDiagnostics(*(float(np.asarray(field)[k]) for field in diagnostics))
    return picked, f"diagnostics of position {k + 1}'s weights (the smallest ESS of {alpha.size} positions)"


# --------------------------------------------------------------------------- input checks (host)


def _prepare(lists, reward, pscores, evaluation, q_hat, action_dist, position_weight, n_bootstrap):
    """Checked logs as device arrays ``(lists, reward, pscores, evaluation, q_hat, action_dist, alpha)``,
    the estimators that apply and ``n_bootstrap``."""
    lists = _check_lists(lists)
    n, k = lists.shape
    reward = _as_float("reward", reward, (n, k))
    names = ("pscore", "pscore_item_position", "pscore_cascade")
    shapes = ((n,), (n, k), (n, k))
    checked_p, checked_e = [], []
    for name, p, e, shape in zip(names, pscores, evaluation, shapes, strict=True):
        eval_name = f"evaluation_policy_{name}"
        if (p is None) != (e is None):
            missing, other = (name, eval_name) if p is None else (eval_name, name)
            raise InputError(missing, f"expected together with {other}")
        checked_p.append(None if p is None else _check_propensity(name, p, shape, positive=True))
        checked_e.append(None if e is None else _check_propensity(eval_name, e, shape, positive=False))
    if all(p is None for p in checked_p):
        raise InputError(
            "pscore",
            "expected at least one of pscore, pscore_item_position, pscore_cascade (with its evaluation_policy_ counterpart)",
        )
    cascade, eval_cascade = checked_p[2], checked_e[2]
    if cascade is not None:
        for name, prefix in (("pscore_cascade", cascade), ("evaluation_policy_pscore_cascade", eval_cascade)):
            if np.any(np.diff(prefix, axis=1) > 1e-6 * prefix[:, :-1] + 1e-12):
                raise InputError(name, "expected prefix probabilities that do not increase along positions")
        if checked_p[0] is None:  # the whole list's probability is the prefix of length K
            checked_p[0], checked_e[0] = cascade[:, -1], eval_cascade[:, -1]
    if (q_hat is None) != (action_dist is None):
        missing = "q_hat" if q_hat is None else "evaluation_policy_action_dist"
        other = "evaluation_policy_action_dist" if q_hat is None else "q_hat"
        raise InputError(missing, f"expected together with {other} (for cascade-dr)")
    if q_hat is not None:
        if cascade is None:
            raise InputError("q_hat", "cascade-dr needs pscore_cascade and evaluation_policy_pscore_cascade")
        q_hat, action_dist = _check_model(lists, q_hat, action_dist)
    alpha = np.ones(k) if position_weight is None else _as_float("position_weight", position_weight, (k,))
    if np.any(alpha < 0):
        raise InputError("position_weight", f"expected weights >= 0, got {alpha.min():.3g}")
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    applicable = _applicable(*(p is not None for p in checked_p), q_hat is not None)

    def device(array):
        return None if array is None else jnp.asarray(array, float)

    logs = (
        jnp.asarray(lists),
        device(reward),
        tuple(map(device, checked_p)),
        tuple(map(device, checked_e)),
        device(q_hat),
        device(action_dist),
        device(alpha),
    )
    return logs, applicable, n_bootstrap


def _as_float(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as err:  # e.g. a ragged list
        raise InputError(name, f"expected an array, got {type(value).__name__}") from err
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        array = array.astype(np.float64)
    elif not np.issubdtype(array.dtype, np.floating):
        raise InputError(name, f"expected numbers, got dtype {array.dtype}")
    if array.shape != shape:
        raise InputError(name, f"expected shape {shape} to match lists, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(name, "expected finite values")
    return array


def _check_lists(value: ArrayLike) -> np.ndarray:
    lists = np.asarray(value)
    if lists.ndim != 2 or lists.shape[1] < 1:
        raise InputError("lists", f"expected shape [n, K] with K >= 1, got {lists.shape}")
    if lists.shape[0] < 2:
        raise InputError("lists", f"expected at least 2 rows for a standard error, got {lists.shape[0]}")
    if not np.issubdtype(lists.dtype, np.integer):
        raise InputError("lists", f"expected integer item indices, got dtype {lists.dtype}")
    if np.any(lists < 0):
        raise InputError("lists", f"expected item indices >= 0, got {lists.min()}")
    ordered = np.sort(lists, axis=1)
    repeats = np.any(ordered[:, 1:] == ordered[:, :-1], axis=1)
    if np.any(repeats):
        row = int(np.argmax(repeats))
        raise InputError("lists", f"expected distinct items in each list, row {row} is {lists[row].tolist()}")
    return lists.astype(np.int32)


def _check_propensity(name: str, value: ArrayLike, shape: tuple[int, ...], *, positive: bool) -> np.ndarray:
    array = _as_float(name, value, shape)
    low_ok = array > 0 if positive else array >= 0
    if not np.all(low_ok & (array <= 1 + 1e-6)):
        expected = "(0, 1]" if positive else "[0, 1]"
        raise InputError(
            name, f"expected probabilities in {expected}, got {array.min():.3g}..{array.max():.3g}"
        )
    return array


def _check_model(
    lists: np.ndarray, q_hat: ArrayLike, action_dist: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    n, k = lists.shape
    q_hat = np.asarray(q_hat)
    if q_hat.ndim != 3 or q_hat.shape[:2] != (n, k):
        raise InputError("q_hat", f"expected shape ({n}, {k}, A) to match lists, got {q_hat.shape}")
    n_items = q_hat.shape[2]
    q_hat = _as_float("q_hat", q_hat, (n, k, n_items))
    if lists.max() >= n_items:
        raise InputError("lists", f"expected items in [0, {n_items}) to match q_hat, got {lists.max()}")
    dist = _as_float("evaluation_policy_action_dist", action_dist, (n, k, n_items))
    if np.any(dist < 0):
        raise InputError("evaluation_policy_action_dist", "expected probabilities >= 0")
    worst = float(np.max(np.abs(dist.sum(axis=2) - 1)))
    if worst > ROW_SUM_TOLERANCE:
        raise InputError(
            "evaluation_policy_action_dist",
            f"expected every [i, k] row to sum to 1 (within {ROW_SUM_TOLERANCE}), one is off by {worst:.3g}",
        )
    above = np.cumsum(np.eye(n_items, dtype=np.int32)[lists], axis=1) - np.eye(n_items, dtype=np.int32)[lists]
    if np.any(dist[above > 0] > ROW_SUM_TOLERANCE):
        raise InputError(
            "evaluation_policy_action_dist", "expected no mass on the items already shown above position k"
        )
    return q_hat, dist
