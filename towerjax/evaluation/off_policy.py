"""The host entry points of off-policy evaluation (SPEC 7): :func:`off_policy_estimates` and
:func:`off_policy_terms` check the logs and call the estimators of
:mod:`towerjax.evaluation.estimators`.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int
from towerjax.evaluation.bounds import bernstein_lower_bound
from towerjax.evaluation.estimators import (
    ALIASES,
    Lambdas,
    applicable_estimators,
    logged_estimates,
    logged_terms,
)
from towerjax.evaluation.results import Z_95, Estimate, WeightDiagnostics
from towerjax.evaluation.selection import Choice, choose_estimator

__all__ = [
    "DM_NOTE",
    "ROW_SUM_TOLERANCE",
    "SHRUNK_NOTE",
    "chosen_estimate",
    "off_policy_estimates",
    "off_policy_lower_bound",
    "off_policy_terms",
]

ROW_SUM_TOLERANCE = 1e-3
"""How far a row of ``pi`` or ``pi_b`` may sum from 1 (float32 softmax over many items drifts)."""

DM_NOTE = (
    "conditional on q_hat: the standard error and intervals count only the sampling of contexts, "
    "not the reward model's own error (DM's bias), so they understate DM's uncertainty"
)

SHRUNK_NOTE = (
    "pessimistic by design: the estimate and its intervals are for the shrunk value, below V(pi) by a "
    "bias of the order of the standard error, so the intervals do not cover V(pi) at 95% "
    "(benchmarks/RESULTS.md, coverage)"
)


def off_policy_estimates(
    pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike | None = None,
    *,
    pi_b: ArrayLike | None = None,
    action_embedding: ArrayLike | None = None,
    switch_lambda: float | None = None,
    dros_lambda: float | None = None,
    subgauss_lambda: float | None = None,
    ls_lambda: float | None = None,
    key: jax.Array | None = None,
    n_bootstrap: int = 1000,
) -> dict[str, Estimate]:
    """Estimates ``V(pi)`` from single-position logs collected by another policy (SPEC 7).

    With ``w_i = pi(a_i|x_i) / p_i``, ``dm_i = sum_a pi(a|x_i) q_hat(x_i, a)`` and
    ``res_i = r_i - q_hat(x_i, a_i)``, names as Open Bandit Pipeline's ``estimator_name``:

    .. math::
      \\mathrm{ipw} = \\tfrac1n \\textstyle\\sum_i w_i r_i, \\quad
      \\mathrm{snipw} = \\frac{\\sum_i w_i r_i}{\\sum_i w_i}, \\quad
      \\mathrm{dm} = \\tfrac1n \\textstyle\\sum_i dm_i, \\quad
      \\mathrm{dr} = \\tfrac1n \\textstyle\\sum_i (dm_i + w_i res_i), \\quad
      \\mathrm{sndr} = \\tfrac1n \\textstyle\\sum_i dm_i + \\frac{\\sum_i w_i res_i}{\\sum_i w_i}

    - ``switch-dr`` (Wang et al., ICML 2017): ``mean(dm_i + 1[w_i <= lambda] w_i res_i)``;
      ``lambda = inf`` is ``dr``.
    - ``dr-os`` (Su et al., ICML 2020, optimistic shrinkage): ``w~ = lambda w / (w^2 + lambda)``,
      ``mean(dm_i + w~_i res_i)``; ``lambda = 0`` is ``dm``, ``lambda -> inf`` is ``dr``.
    - ``ipw-subgauss`` (Metelli et al., NeurIPS 2021): ``w~ = w / (1 - lambda + lambda w)``,
      ``mean(w~_i r_i)``, ``lambda in [0, 1]``; ``lambda = 0`` is ``ipw``.
    - ``ipw-ls`` (logarithmic smoothing, Sakhi et al., NeurIPS 2024):
      ``mean(log(1 + lambda w_i r_i)) / lambda``; pessimistic, never above ``ipw``. Defined for
      rewards in ``[0, 1]``: left out when a reward lies outside.
    - ``mips`` (Saito & Joachims, ICML 2022) for discrete item embeddings ``e(a)``:
      ``w(x, e) = sum_{a: e(a)=e} pi(a|x) / sum_{a: e(a)=e} pi_b(a|x)``, ``mean(w(x_i, e(a_i)) r_i)``;
      with every item its own category it is ``ipw``. Only when both ``pi_b`` and
      ``action_embedding`` are given.

    ``"ips"`` and ``"snips"`` are aliases of ``ipw`` and ``snipw``; the estimators using ``q_hat``
    appear only when it is given.

    Default ``lambda`` s. A row with weight ``w`` moves a mean over ``n`` rows by ``w r / n``, so
    each row with ``w >~ sqrt(n)`` moves it by about a standard error (for rewards in ``[0, 1]``).
    The defaults make each estimator's shrinkage act at that scale: ``switch_lambda = sqrt(n)``
    (rows with larger weights use the model alone), ``dros_lambda = n`` (halves ``w = sqrt(n)``),
    ``subgauss_lambda = 1 / sqrt(n)`` (halves ``w = 1 + sqrt(n)``), ``ls_lambda = 1 / sqrt(n)``
    (shrinks ``w r = sqrt(n)`` by 31%). The bias each adds then falls like ``1 / sqrt(n)``, the
    rate at which the ``lambda`` minimising Metelli et al.'s and Sakhi et al.'s bounds decays,
    while heavy rows stay tamed. A ``lambda`` depends only on ``n`` and is held fixed in the
    bootstrap. Tune it per dataset if needed (e.g. OBP's ``*Tuning`` estimators). OBP's own
    defaults make these estimators degenerate: ``switch-dr`` ``inf`` (``dr``), ``dr-os`` 0
    (``dm``), ``sg-ipw`` 0 (``ipw``).

    Uncertainty. ``stderr`` is ``std(ddof=1) / sqrt(n)`` of the per-row terms, by the delta
    method for ``snipw`` (influence ``w_i (r_i - V) / mean(w)``) and ``sndr`` (influence
    ``dm_i - mean(dm) + w_i (res_i - V_res) / mean(w)``, ``V_res = sum w res / sum w``). The Wald
    interval is ``value ± 1.96 stderr``; the bootstrap interval the 2.5/97.5% percentiles over
    ``n_bootstrap`` resamples of the rows (``q_hat`` and the ``lambda`` s fixed), computed in one
    vectorised call. Randomness comes only from ``key``: without one no bootstrap runs and its
    fields are NaN (:func:`towerjax.jsonio.plain` turns them into ``null``). Every uncertainty treats
    ``q_hat`` as given: for ``dm`` that leaves out its main error (the model's bias), which its
    ``note`` says; for the DR family it is right when ``q_hat`` was fitted on other rows.
    ``ipw-subgauss`` and ``ipw-ls`` shrink the weights on purpose: with the default
    ``lambda`` their bias falls at the same rate as their standard error, so their intervals
    cover the shrunk value, not ``V(pi)`` (their ``note`` says so; measured coverage in
    ``benchmarks/RESULTS.md``).

    When ``sum_i w_i = 0`` (``pi`` gives no mass to any logged action), ``snipw`` is 0 and
    ``sndr`` is ``dm``, with the weighted part's standard error 0, never NaN; the diagnostics
    (ESS 0) say the logs carry no information about ``pi``.

    Args:
      pi: ``[n, A]`` action probabilities of the evaluated policy (rows sum to 1), ``n >= 2``.
      action: ``[n]`` int logged actions in ``[0, A)``.
      reward: ``[n]`` rewards.
      pscore: ``[n]`` logged propensities ``pi_0(a_i|x_i)`` in ``(0, 1]``.
      q_hat: optional ``[n, A]`` reward model; adds ``dm, dr, sndr, switch-dr, dr-os``.
      pi_b: optional ``[n, A]`` the logging policy's full distribution (for ``mips``).
      action_embedding: optional ``[A]`` int category of each item, or ``[A, d]`` ints (each
        distinct row one category), for ``mips``.
      switch_lambda: ``switch-dr`` weight threshold ``>= 0`` (``inf`` allowed); default ``sqrt(n)``.
      dros_lambda: ``dr-os`` shrinkage ``>= 0`` (``inf`` allowed); default ``n``.
      subgauss_lambda: ``ipw-subgauss`` correction in ``[0, 1]``; default ``1 / sqrt(n)``.
      ls_lambda: ``ipw-ls`` smoothing ``>= 0`` (0 gives ``ipw``); default ``1 / sqrt(n)``.
      key: ``jax.random.key`` for the bootstrap; ``None`` skips it.
      n_bootstrap: number of bootstrap resamples.

    Returns:
      ``{name: Estimate}`` for the names of :data:`ESTIMATORS` that apply, then the aliases.

    Raises:
      InputError: naming the argument, for wrong shapes or dtypes, ``n < 2``, actions out of
        range, ``pscore`` outside ``(0, 1]``, rows of ``pi``/``pi_b`` that are not distributions,
        non-finite values, ``pi_b = 0`` at a logged action, or a ``lambda`` out of range.

    >>> pi = jnp.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    >>> est = off_policy_estimates(pi, jnp.array([0, 0, 1]), jnp.array([1.0, 0.0, 1.0]), jnp.full(3, 0.5))
    >>> round(est["ipw"].value, 4), round(est["snipw"].value, 4), est["ips"] == est["ipw"]
    (0.8667, 0.5909, True)
    """
    logs, lambdas, names = _prepare(
        pi,
        action,
        reward,
        pscore,
        q_hat,
        pi_b,
        action_embedding,
        switch_lambda,
        dros_lambda,
        subgauss_lambda,
        ls_lambda,
    )
    n_bootstrap = check_positive_int("n_bootstrap", n_bootstrap)
    value, stderr, low, high, (diag_w, diag_e) = jax.device_get(
        logged_estimates(*logs, key, names=names, n_bootstrap=n_bootstrap)
    )
    diag_w = WeightDiagnostics(*map(float, diag_w))
    diag_e = None if diag_e is None else WeightDiagnostics(*map(float, diag_e))
    notes = {
        "dm": DM_NOTE,
        "switch-dr": f"lambda={lambdas.switch:.6g}",
        "dr-os": f"lambda={lambdas.dros:.6g}",
        "ipw-subgauss": f"lambda={lambdas.subgauss:.6g}; {SHRUNK_NOTE}",
        "ipw-ls": f"lambda={lambdas.ls:.6g}; {SHRUNK_NOTE}",
    }
    out = {}
    for i, name in enumerate(names):
        v, se = float(value[i]), float(stderr[i])
        out[name] = Estimate(
            value=v,
            stderr=se,
            wald_low=v - Z_95 * se,
            wald_high=v + Z_95 * se,
            bootstrap_low=float(low[i]),
            bootstrap_high=float(high[i]),
            diagnostics=None if name == "dm" else diag_e if name == "mips" else diag_w,
            note=notes.get(name),
        )
    for alias, name in ALIASES.items():
        out[alias] = out[name]
    return out


def off_policy_terms(
    pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike | None = None,
    *,
    pi_b: ArrayLike | None = None,
    action_embedding: ArrayLike | None = None,
    switch_lambda: float | None = None,
    dros_lambda: float | None = None,
    subgauss_lambda: float | None = None,
    ls_lambda: float | None = None,
) -> dict[str, np.ndarray]:
    """The per-row terms ``phi [n]`` of every estimate :func:`off_policy_estimates` gives, on the host.

    The same arguments, checks and estimators (aliases included); ``mean(phi)`` is the estimate's
    value and ``std(phi, ddof=1) / sqrt(n)`` its standard error, up to float rounding
    (:func:`estimator_terms` says what the terms are). Terms of two policies on the same logs give
    their paired difference (:func:`paired_difference`).

    Returns:
      ``{name: phi [n]}`` as numpy arrays.

    Raises:
      InputError: as :func:`off_policy_estimates`.
    """
    logs, _, names = _prepare(
        pi,
        action,
        reward,
        pscore,
        q_hat,
        pi_b,
        action_embedding,
        switch_lambda,
        dros_lambda,
        subgauss_lambda,
        ls_lambda,
    )
    terms = {name: np.asarray(t) for name, t in jax.device_get(logged_terms(*logs, names=names)).items()}
    for alias, name in ALIASES.items():
        terms[alias] = terms[name]
    return terms


def chosen_estimate(
    pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike | None = None,
    *,
    family: str | None = None,
    lambdas: tuple[float, ...] | None = None,
    delta: float = 0.05,
) -> Choice:
    """The estimate to report: the choice within one estimator family on these logs, with the reason
    (rule ``slope-mse``: the smallest estimated MSE among the members SLOPE admits).

    The same logs and checks as :func:`off_policy_estimates`; the family is ``dr-os`` (shrinkage
    ``lambda``, ``inf`` is ``dr``) when ``q_hat`` is given, else ``ipw-cap`` (``mean(min(w, lambda) r)``,
    ``inf`` is ``ipw``), each over :func:`~towerjax.evaluation.selection.default_grid` unless
    ``lambdas`` is given (:func:`~towerjax.evaluation.selection.choose_estimator`).

    Raises:
      InputError: as :func:`off_policy_estimates`, or for a bad ``family``, ``lambdas`` or ``delta``.
    """
    pi_h, action_h, reward_h, pscore_h = _check_logs(pi, action, reward, pscore)
    rows = np.arange(pi_h.shape[0])
    w = pi_h[rows, action_h] / pscore_h
    direct = q_logged = None
    if q_hat is not None:
        q = _check_matrix("q_hat", q_hat, pi_h.shape)
        direct, q_logged = np.sum(pi_h * q, axis=1), q[rows, action_h]
    return choose_estimator(
        w, reward_h, direct=direct, q_logged=q_logged, family=family, lambdas=lambdas, delta=delta
    )


def off_policy_lower_bound(
    pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    clip: float | None = None,
    delta: float = 0.05,
) -> float:
    """The empirical-Bernstein lower bound on ``V(pi)`` (rewards in ``[0, 1]``, IPS weights clipped at
    ``clip``; :func:`~towerjax.evaluation.bounds.bernstein_lower_bound`), with the checks of
    :func:`off_policy_estimates`."""
    pi_h, action_h, reward_h, pscore_h = _check_logs(pi, action, reward, pscore)
    w = pi_h[np.arange(pi_h.shape[0]), action_h] / pscore_h
    return bernstein_lower_bound(w, reward_h, clip=clip, delta=delta)


def _prepare(pi, action, reward, pscore, q_hat, pi_b, action_embedding, switch, dros, subgauss, ls):
    """Checked logs as device arrays ``(pi, action, reward, pscore, lambdas, q_hat, pi_b, category)``,
    the :class:`Lambdas` (floats) and the estimators that apply."""
    pi_h, action_h, reward_h, pscore_h = _check_logs(pi, action, reward, pscore)
    n, n_actions = pi_h.shape
    q_hat_h = None if q_hat is None else _check_matrix("q_hat", q_hat, pi_h.shape)
    category = pi_b_h = None
    if pi_b is not None and action_embedding is not None:
        pi_b_h = _check_distribution("pi_b", pi_b, pi_h.shape)
        if np.any(pi_b_h[np.arange(n), action_h] <= 0):
            raise InputError("pi_b", "expected pi_b > 0 at every logged action")
        category = _check_embedding(action_embedding, n_actions)
    elif pi_b is not None:
        _check_distribution("pi_b", pi_b, pi_h.shape)
    elif action_embedding is not None:
        _check_embedding(action_embedding, n_actions)
    defaults = Lambdas.default(n)
    lambdas = Lambdas(
        switch=_check_lambda("switch_lambda", switch, defaults.switch, allow_inf=True),
        dros=_check_lambda("dros_lambda", dros, defaults.dros, allow_inf=True),
        subgauss=_check_lambda("subgauss_lambda", subgauss, defaults.subgauss, upper=1.0),
        ls=_check_lambda("ls_lambda", ls, defaults.ls),
    )
    has_ls = bool(np.all((reward_h >= 0) & (reward_h <= 1)))
    logs = (
        jnp.asarray(pi_h, float),
        jnp.asarray(action_h),
        jnp.asarray(reward_h, float),
        jnp.asarray(pscore_h, float),
        jnp.asarray(lambdas, float),
        None if q_hat_h is None else jnp.asarray(q_hat_h, float),
        None if pi_b_h is None else jnp.asarray(pi_b_h, float),
        None if category is None else jnp.asarray(category),
    )
    return logs, lambdas, applicable_estimators(q_hat_h is not None, pi_b_h is not None, has_ls)


# --------------------------------------------------------------------------- input checks (host)


def _as_float(name: str, value: ArrayLike) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as err:  # e.g. a ragged list
        raise InputError(name, f"expected an array, got {type(value).__name__}") from err
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        array = array.astype(np.float64)
    elif not np.issubdtype(array.dtype, np.floating):
        raise InputError(name, f"expected numbers, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise InputError(name, "expected finite values")
    return array


def _check_matrix(name: str, value: ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    array = _as_float(name, value)
    if array.shape != shape:
        raise InputError(name, f"expected shape {shape} to match pi, got {array.shape}")
    return array


def _check_distribution(name: str, value: ArrayLike, shape: tuple[int, int] | None = None) -> np.ndarray:
    array = _as_float(name, value)
    if array.ndim != 2 or array.shape[1] < 1 or (shape is not None and array.shape != shape):
        expected = f"{shape} to match pi" if shape is not None else "[n, A]"
        raise InputError(name, f"expected shape {expected}, got {array.shape}")
    if np.any(array < 0):
        raise InputError(name, "expected probabilities >= 0")
    worst = float(np.max(np.abs(array.sum(axis=1) - 1)))
    if worst > ROW_SUM_TOLERANCE:
        raise InputError(
            name, f"expected every row to sum to 1 (within {ROW_SUM_TOLERANCE}), one is off by {worst:.3g}"
        )
    return array


def _check_logs(pi, action, reward, pscore):
    pi = _check_distribution("pi", pi)
    n, n_actions = pi.shape
    if n < 2:
        raise InputError("pi", f"expected at least 2 rows for a standard error, got {n}")
    action = np.asarray(action)
    if action.shape != (n,):
        raise InputError("action", f"expected shape ({n},) to match pi, got {action.shape}")
    if not np.issubdtype(action.dtype, np.integer):
        raise InputError("action", f"expected integer indices, got dtype {action.dtype}")
    if np.any((action < 0) | (action >= n_actions)):
        raise InputError(
            "action", f"expected actions in [0, {n_actions}), got {action.min()}..{action.max()}"
        )
    reward = _as_float("reward", reward)
    if reward.shape != (n,):
        raise InputError("reward", f"expected shape ({n},) to match pi, got {reward.shape}")
    pscore = _as_float("pscore", pscore)
    if pscore.shape != (n,):
        raise InputError("pscore", f"expected shape ({n},) to match pi, got {pscore.shape}")
    if np.any((pscore <= 0) | (pscore > 1 + 1e-6)):
        raise InputError(
            "pscore", f"expected propensities in (0, 1], got {pscore.min():.3g}..{pscore.max():.3g}"
        )
    return pi, action.astype(np.int32), reward, pscore


def _check_embedding(value: ArrayLike, n_actions: int) -> np.ndarray:
    """``[A]`` or ``[A, d]`` ints -> ``[A]`` category ids (each distinct row one category)."""
    embedding = np.asarray(value)
    if not np.issubdtype(embedding.dtype, np.integer):
        raise InputError("action_embedding", f"expected integer categories, got dtype {embedding.dtype}")
    if embedding.ndim == 1:
        embedding = embedding[:, None]
    if embedding.ndim != 2 or embedding.shape[0] != n_actions or embedding.shape[1] < 1:
        raise InputError(
            "action_embedding", f"expected shape [{n_actions}] or [{n_actions}, d], got {np.shape(value)}"
        )
    return np.unique(embedding, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int32)


def _check_lambda(
    name: str, value: float | None, default: float, *, allow_inf: bool = False, upper: float = math.inf
) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= upper:
        raise InputError(name, f"expected a number in [0, {upper}], got {value!r}")
    if math.isinf(value) and not allow_inf:
        raise InputError(name, f"expected a finite number, got {value!r}")
    return float(value)
