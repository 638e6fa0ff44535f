"""Every off-policy estimator as a function ``g`` of the column means of one per-row table (SPEC 7).

The table ``C [n, K]`` holds per-row columns (``w r``, ``w``, ``direct``, ``w res``, ...), built from
the importance weights ``w_i = pi(a_i|x_i) / p_i``, the rewards and, for the model-based
estimators, ``direct_i = sum_a pi(a|x_i) q_hat(x_i, a)`` and ``q_hat(x_i, a_i)``. An estimate is
``g(m)`` of the column means ``m``; row ``i``'s delta-method influence is ``(C_i - m) . grad g(m)``
(``jax.jacfwd``; for a plain mean, the row's term minus the mean) and its per-row term
``phi_i = g(m) + influence_i`` (:func:`estimator_terms`), whose mean is the estimate and whose
``std(ddof=1) / sqrt(n)`` is its standard error. A bootstrap resample ``b`` is
``g(counts_b @ C / n)`` with ``counts_b`` the rows' multiplicities (:func:`logged_estimates`).
This is the one place an estimate is computed: :func:`towerjax.evaluation.off_policy_estimates`,
training's validation (:func:`validation_estimates`) and paired differences
(:func:`paired_difference`) all use it.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError
from towerjax.evaluation.results import Estimate, wald_estimate, weight_diagnostics
from towerjax.rows import safe_ratio, take_logged

if TYPE_CHECKING:
    from towerjax.data import LoggedData

__all__ = [
    "ALIASES",
    "ESTIMATORS",
    "Lambdas",
    "applicable_estimators",
    "column_mean_intervals",
    "estimates_from_terms",
    "estimator_terms",
    "logged_estimates",
    "logged_terms",
    "paired_difference",
    "summarize_terms",
    "validation_estimates",
]

ESTIMATORS = ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os", "ipw-subgauss", "ipw-ls", "mips")
"""Open Bandit Pipeline's ``estimator_name`` s, in the order :func:`off_policy_estimates` lists them."""

ALIASES = {"ips": "ipw", "snips": "snipw"}
"""The names of towerjax's first releases, kept as aliases (the same :class:`Estimate`)."""
_BOOTSTRAP_CELLS = 1 << 22  # resamples x rows held at once in the bootstrap (16 MiB of float32 counts)


class Lambdas(NamedTuple):
    """The estimators' hyperparameters (a pytree: scalars or traced scalars under ``jit``).

    Attributes:
      switch: ``switch-dr``'s weight threshold ``>= 0`` (``inf`` gives ``dr``).
      dros: ``dr-os``'s shrinkage ``>= 0`` (0 gives ``dm``, ``inf`` gives ``dr``).
      subgauss: ``ipw-subgauss``'s correction in ``[0, 1]`` (0 gives ``ipw``).
      ls: ``ipw-ls``'s smoothing ``>= 0`` (0 gives ``ipw``).
    """

    switch: Any
    dros: Any
    subgauss: Any
    ls: Any

    @classmethod
    def default(cls, n: int) -> Lambdas:
        """The defaults for ``n`` rows: ``sqrt(n), n, 1 / sqrt(n), 1 / sqrt(n)`` (see :func:`off_policy_estimates`)."""
        root = math.sqrt(n)
        return cls(switch=root, dros=float(n), subgauss=1 / root, ls=1 / root)


_USES = {  # estimator -> the columns of the per-row table its value is a function of
    "ipw": ("wr",),
    "snipw": ("wr", "w"),
    "dm": ("dm",),
    "dr": ("dm", "wres"),
    "sndr": ("dm", "wres", "w"),
    "switch-dr": ("dm", "switch"),
    "dr-os": ("dm", "dros"),
    "ipw-subgauss": ("subgauss",),
    "ipw-ls": ("ls",),
    "mips": ("mips",),
}
_COLUMNS = ("wr", "w", "dm", "wres", "switch", "dros", "subgauss", "ls", "mips")  # the table's column order
_NEEDS_Q = frozenset({"dm", "dr", "sndr", "switch-dr", "dr-os"})

_VALUE = {  # estimator -> g(m), its value as a function of the column means m
    "ipw": lambda m: m["wr"],
    "snipw": lambda m: safe_ratio(m["wr"], m["w"]),
    "dm": lambda m: m["dm"],
    "dr": lambda m: m["dm"] + m["wres"],
    "sndr": lambda m: m["dm"] + safe_ratio(m["wres"], m["w"]),
    "switch-dr": lambda m: m["dm"] + m["switch"],
    "dr-os": lambda m: m["dm"] + m["dros"],
    "ipw-subgauss": lambda m: m["subgauss"],
    "ipw-ls": lambda m: m["ls"],
    "mips": lambda m: m["mips"],
}


def applicable_estimators(has_q: bool, has_mips: bool, has_ls: bool) -> tuple[str, ...]:
    """The names of :data:`ESTIMATORS` that apply, in that order: those using ``q_hat`` when
    ``has_q``, ``mips`` when ``has_mips`` and ``ipw-ls`` when ``has_ls`` (rewards in ``[0, 1]``)."""
    skip = set()
    if not has_q:
        skip |= _NEEDS_Q
    if not has_mips:
        skip.add("mips")
    if not has_ls:
        skip.add("ipw-ls")
    return tuple(name for name in ESTIMATORS if name not in skip)


def _row_inputs(pi, action, pscore, q_hat, pi_b, category):
    """``w``, ``direct``, ``q_logged`` and ``w(x, e)`` ``[n]`` from the logs (the last three may be None)."""
    rows = jnp.arange(pi.shape[0])
    w = pi[rows, action] / pscore
    direct = q_logged = w_e = None
    if q_hat is not None:
        direct, q_logged = jnp.sum(pi * q_hat, axis=-1), q_hat[rows, action]
    if pi_b is not None:
        same = category[None, :] == category[action][:, None]  # [n, A]: a shares e(a_i)
        w_e = jnp.sum(jnp.where(same, pi, 0), -1) / jnp.sum(jnp.where(same, pi_b, 0), -1)
    return w, direct, q_logged, w_e


def _columns(w, reward, direct, q_logged, w_e, lambdas, names):
    """The per-row table ``{column: [n]}`` the estimators ``names`` are functions of (in :data:`_COLUMNS` order)."""
    lam_switch, lam_dros, lam_sg, lam_ls = lambdas
    used = {column for name in names for column in _USES[name]}
    cols = {}
    if "wr" in used:
        cols["wr"] = w * reward
    if "w" in used:
        cols["w"] = w
    if direct is not None and used & {"dm", "wres", "switch", "dros"}:
        res = reward - q_logged
        # dr-os: lambda w / (w^2 + lambda), written so that lambda = inf gives w and lambda = 0 gives 0.
        shrunk = jnp.where(lam_dros > 0, w / (1 + w**2 / jnp.where(lam_dros > 0, lam_dros, 1)), 0)
        every = {
            "dm": direct,
            "wres": w * res,
            "switch": jnp.where(w <= lam_switch, w, 0) * res,
            "dros": shrunk * res,
        }
        cols |= {key: value for key, value in every.items() if key in used}
    if "subgauss" in used:
        cols["subgauss"] = safe_ratio(w, 1 - lam_sg + lam_sg * w) * reward
    if "ls" in used:
        safe_ls = jnp.where(lam_ls > 0, lam_ls, 1)
        cols["ls"] = jnp.where(lam_ls > 0, jnp.log1p(lam_ls * w * reward) / safe_ls, w * reward)
    if "mips" in used:
        cols["mips"] = w_e * reward
    return cols


def _delta_method(cols, names):
    """``(table [n, K], g, value [E], influence [n, E])``: the estimates ``g(m)`` of ``names`` and each
    row's delta-method influence ``(C_i - m) . grad g(m)``."""
    keys = tuple(cols)
    table = jnp.stack([cols[k] for k in keys], axis=1)  # C [n, K]

    def estimates(means):  # g: [K] column means -> [E] estimates
        m = dict(zip(keys, means, strict=True))
        return jnp.stack([_VALUE[name](m) for name in names])

    means = jnp.mean(table, axis=0)
    value = estimates(means)
    influence = (table - means) @ jax.jacfwd(estimates)(means).T  # [n, E], delta method
    return table, estimates, value, influence


def _check_names(names, *, has_q: bool, has_mips: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(keys, canonical)``: the requested names as given and as :data:`ESTIMATORS` names."""
    if names is None:
        keys = applicable_estimators(has_q, has_mips, True)
        return keys, keys
    keys = (names,) if isinstance(names, str) else tuple(names)
    canonical = tuple(ALIASES.get(name, name) for name in keys)
    for key, name in zip(keys, canonical, strict=True):
        if name not in _USES:
            raise InputError("names", f"expected names from {ESTIMATORS + tuple(ALIASES)}, got {key!r}")
        if name in _NEEDS_Q and not has_q:
            raise InputError("names", f"{key!r} needs a reward model: pass direct and q_logged")
        if name == "mips" and not has_mips:
            raise InputError("names", "'mips' needs the marginal weights: pass w_embedding")
    if not keys or len(set(keys)) != len(keys):
        raise InputError("names", f"expected distinct estimator names, got {keys!r}")
    return keys, canonical


def _check_terms_inputs(w, reward, direct, q_logged, w_embedding):
    w = jnp.asarray(w)
    if w.ndim != 1 or w.shape[0] < 1:
        raise InputError("w", f"expected shape [n] with n >= 1, got {w.shape}")
    if (direct is None) != (q_logged is None):
        raise InputError(
            "q_logged" if q_logged is None else "direct", "expected direct and q_logged together"
        )
    out = [w]
    for name, value in (
        ("reward", reward),
        ("direct", direct),
        ("q_logged", q_logged),
        ("w_embedding", w_embedding),
    ):
        if value is not None:
            value = jnp.asarray(value)
            if value.shape != w.shape:
                raise InputError(name, f"expected shape {w.shape} to match w, got {value.shape}")
        out.append(value)
    return out


def estimator_terms(
    w: ArrayLike,
    reward: ArrayLike,
    *,
    direct: ArrayLike | None = None,
    q_logged: ArrayLike | None = None,
    w_embedding: ArrayLike | None = None,
    names: str | tuple[str, ...] | None = None,
    lambdas: Lambdas | None = None,
) -> dict[str, jax.Array]:
    """Each estimator's per-row terms ``phi [n]``: their mean is the estimate, ``std(ddof=1) / sqrt(n)``
    its standard error (jit-able; ``vmap`` it over policies or seeds).

    ``phi_i = g(m) + (C_i - m) . grad g(m)``: the estimate plus row ``i``'s delta-method influence,
    with ``C [n, K]`` the per-row table and ``g`` the estimator as a function of its column means
    ``m`` (:func:`off_policy_estimates`' definitions). For a plain mean (``ipw``, ``dr``, ...) that is
    the row's own term (``w_i r_i``, ``direct_i + w_i (r_i - q_logged_i)``); for ``snipw`` it is
    ``V + w_i (r_i - V) / mean(w)``; for ``sndr`` ``direct_i + V_res + w_i (res_i - V_res) / mean(w)``.
    When every weight is 0, ``snipw``'s terms are all 0 (value and standard error 0, never NaN) and
    ``sndr``'s are ``direct_i``. Terms of two policies on the same rows give their paired difference
    (:func:`paired_difference`).

    Args:
      w: ``[n]`` importance weights ``w_i = pi(a_i|x_i) / p_i``.
      reward: ``[n]`` rewards ``r_i``.
      direct: optional ``[n]`` ``direct_i = sum_a pi(a|x_i) q_hat(x_i, a)``; with ``q_logged``
        adds ``dm, dr, sndr, switch-dr, dr-os``.
      q_logged: optional ``[n]`` ``q_hat(x_i, a_i)``.
      w_embedding: optional ``[n]`` marginal weights ``w(x_i, e(a_i))``; adds ``mips``.
      names: the estimators wanted (names of :data:`ESTIMATORS` or :data:`ALIASES`, keyed as
        given); default every one the inputs allow, ``ipw-ls`` included (it is defined for
        rewards in ``[0, 1]``).
      lambdas: the hyperparameters; default :meth:`Lambdas.default` of ``n``.

    Returns:
      ``{name: phi [n]}``.

    >>> terms = estimator_terms(jnp.array([1.0, 0.2, 1.6]), jnp.array([1.0, 0.0, 1.0]), names=("ipw", "snipw"))
    >>> [round(float(t.mean()), 4) for t in terms.values()]
    [0.8667, 0.9286]
    """
    w, reward, direct, q_logged, w_embedding = _check_terms_inputs(w, reward, direct, q_logged, w_embedding)
    keys, canonical = _check_names(names, has_q=direct is not None, has_mips=w_embedding is not None)
    lambdas = Lambdas.default(w.shape[0]) if lambdas is None else lambdas
    cols = _columns(w, reward, direct, q_logged, w_embedding, lambdas, canonical)
    _, _, value, influence = _delta_method(cols, canonical)
    terms = value + influence
    return {key: terms[:, i] for i, key in enumerate(keys)}


def summarize_terms(terms: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``terms [..., n] -> (value, stderr)``: the mean over the last axis and ``std(ddof=1) / sqrt(n)``
    (NaN for one row). Jit-able.

    >>> value, stderr = summarize_terms(jnp.array([1.0, 2.0, 3.0]))
    >>> float(value), round(float(stderr), 4)
    (2.0, 0.5774)
    """
    terms = jnp.asarray(terms)
    n = terms.shape[-1]
    return jnp.mean(terms, axis=-1), jnp.std(terms, axis=-1, ddof=1) / jnp.sqrt(n)


def paired_difference(terms_a: ArrayLike, terms_b: ArrayLike) -> Estimate:
    """The paired difference of two estimates on the same rows (SPEC 9), on the host.

    ``d_i = phi_i(a) - phi_i(b)`` with ``phi`` each estimate's per-row terms
    (:func:`estimator_terms`; the logging policy's on-policy terms are its rewards ``r_i``):
    value ``mean(d)``, standard error ``std(d, ddof=1) / sqrt(n)``, and the Wald interval. Pairing
    cancels the rows' shared noise, so this is far tighter than the two standard errors combined.

    Args:
      terms_a, terms_b: ``[n]`` per-row terms on the same ``n >= 2`` rows, in the same order.

    >>> paired_difference(jnp.array([1.0, 2.0, 4.0]), jnp.array([0.0, 1.0, 2.0])).value
    1.3333333333333333
    """
    a, b = np.asarray(terms_a, np.float64), np.asarray(terms_b, np.float64)
    if a.ndim != 1 or a.shape[0] < 2:
        raise InputError("terms_a", f"expected shape [n] with n >= 2, got {a.shape}")
    if b.shape != a.shape:
        raise InputError("terms_b", f"expected shape {a.shape} to match terms_a, got {b.shape}")
    return wald_estimate(a - b)


def estimates_from_terms(
    w: jax.Array, reward: jax.Array, direct: jax.Array | None = None, q_logged: jax.Array | None = None
) -> dict[str, jax.Array]:
    """SNIPS and DR with their standard errors from per-row inputs ``[n]`` (jit-able):
    ``w_i = pi(a_i|x_i) / p_i``, ``r_i``, and for DR ``direct_i = sum_a pi(a|x_i) q_hat(x_i, a)``
    and ``q_logged_i = q_hat(x_i, a_i)`` (DR is NaN without them).

    .. math::

        \\hat V_{SNIPS} = \\frac{\\sum_i w_i r_i}{\\sum_i w_i}, \\qquad
        \\hat V_{DR} = \\frac{1}{n} \\sum_i \\Big[\\text{direct}_i + w_i (r_i - \\hat q(x_i, a_i))\\Big].

    :func:`summarize_terms` of :func:`estimator_terms`' ``snipw`` and ``dr``: SNIPS' standard error
    by the delta method (influence ``w_i (r_i - V) / mean(w)``); SNIPS is 0 with standard error 0
    when every weight is 0.

    Returns:
      ``{"snips", "snips_se", "dr", "dr_se"}`` scalars.
    """
    if direct is None:
        snips, snips_se = summarize_terms(estimator_terms(w, reward, names=("snipw",))["snipw"])
        dr = dr_se = jnp.full((), jnp.nan)
    else:
        terms = estimator_terms(w, reward, direct=direct, q_logged=q_logged, names=("snipw", "dr"))
        (snips, dr), (snips_se, dr_se) = summarize_terms(jnp.stack([terms["snipw"], terms["dr"]]))
    return {"snips": snips, "snips_se": snips_se, "dr": dr, "dr_se": dr_se}


def validation_estimates(
    log_pi: jax.Array, logs: LoggedData, q_hat: jax.Array | None
) -> dict[str, jax.Array]:
    """SNIPS and DR estimates of ``pi`` on validation logs, with delta-method standard errors.

    ``log_pi [n, A]`` the policy on the logs' contexts; ``q_hat [n, A]`` a reward model that
    did not see these rows (DR is NaN without it). Jit-able; the same definitions as
    :func:`off_policy_estimates`' ``snipw`` and ``dr`` (:func:`estimates_from_terms`).
    """
    pi = jnp.exp(log_pi)
    w = take_logged(pi, logs.action) / logs.pscore
    if q_hat is None:
        return estimates_from_terms(w, logs.reward)
    return estimates_from_terms(w, logs.reward, jnp.sum(pi * q_hat, axis=-1), take_logged(q_hat, logs.action))


def column_mean_intervals(
    table: jax.Array, estimates, influence: jax.Array, key: jax.Array | None, n_bootstrap: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Standard errors and 95% bootstrap percentile bounds of estimates that are functions of
    column means (the estimator core's form).

    Args:
      table: ``[n, C]`` per-row columns; ``estimates(means [C]) -> [E]`` the estimates of their means.
      influence: ``[n, E]`` per-row influence terms (the delta method's), whose ``std / sqrt(n)``
        is the standard error.
      key: the bootstrap's key, or None (bounds NaN).
      n_bootstrap: resamples (static), each a count-weighted mean of the rows, run in batches of
        at most ``2^22`` resample x row cells.

    Returns:
      ``(stderr [E], low [E], high [E])``.
    """
    n = table.shape[0]
    stderr = jnp.std(influence, axis=0, ddof=1) / jnp.sqrt(n)
    if key is None:
        nan = jnp.full_like(stderr, jnp.nan)
        return stderr, nan, nan

    def resample(k):  # one bootstrap resample as count-weighted column means
        counts = jnp.zeros(n, table.dtype).at[jax.random.randint(k, (n,), 0, n)].add(1)
        return estimates(counts @ table / n)

    batch = max(1, min(n_bootstrap, _BOOTSTRAP_CELLS // n))
    stats = jax.lax.map(resample, jax.random.split(key, n_bootstrap), batch_size=batch)  # [B, E]
    low, high = jnp.quantile(stats, jnp.array([0.025, 0.975]), axis=0)
    return stderr, low, high


@functools.partial(jax.jit, static_argnames=("names", "n_bootstrap"))
def logged_estimates(pi, action, reward, pscore, lambdas, q_hat, pi_b, category, key, *, names, n_bootstrap):
    """The estimates ``names`` from logs, unchecked (jitted; :func:`towerjax.evaluation.off_policy_estimates`
    checks the inputs and calls it).

    Args:
      pi, action, reward, pscore, q_hat, pi_b: as ``off_policy_estimates`` (``q_hat``, ``pi_b`` may be None).
      lambdas: ``[4]`` or :class:`Lambdas`.
      category: ``[A]`` int category of each item (for ``mips``), or None.
      key: the bootstrap's key, or None for no bootstrap.
      names: the estimators (static), from :func:`applicable_estimators`.
      n_bootstrap: resamples (static).

    Returns:
      ``(value [E], stderr [E], bootstrap_low [E], bootstrap_high [E], (diagnostics of w, of w(x, e) or None))``
      with ``E = len(names)``; the bootstrap bounds NaN without ``key``.
    """
    w, direct, q_logged, w_e = _row_inputs(pi, action, pscore, q_hat, pi_b, category)
    cols = _columns(w, reward, direct, q_logged, w_e, lambdas, names)
    table, estimates, value, influence = _delta_method(cols, names)
    stderr, low, high = column_mean_intervals(table, estimates, influence, key, n_bootstrap)
    diagnostics = weight_diagnostics(w), None if w_e is None else weight_diagnostics(w_e)
    return value, stderr, low, high, diagnostics


@functools.partial(jax.jit, static_argnames=("names",))
def logged_terms(pi, action, reward, pscore, lambdas, q_hat, pi_b, category, *, names):
    """:func:`estimator_terms` of ``names`` from logs, unchecked (jitted; the arguments of
    :func:`logged_estimates`; :func:`towerjax.evaluation.off_policy_terms` checks and calls it)."""
    w, direct, q_logged, w_e = _row_inputs(pi, action, pscore, q_hat, pi_b, category)
    return estimator_terms(
        w, reward, direct=direct, q_logged=q_logged, w_embedding=w_e, names=names, lambdas=Lambdas(*lambdas)
    )
