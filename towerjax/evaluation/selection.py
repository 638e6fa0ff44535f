"""Choosing an estimator from the data: SLOPE (Lepski's principle) over a family of estimators (SPEC 10).

A family ``theta_1, ..., theta_L`` of estimates of one value (IPS with caps ``lambda_1 > ... > lambda_L``,
Switch-DR thresholds, DR-OS shrinkages) trades variance for bias: the wider the interval, the smaller
the bias. SLOPE (Su, Srinath & Krishnamurthy, ICML 2020), in the SLOPE++ form of Tucker & Lee (2021)
that Open Bandit Pipeline's ``tuning_method="slope"`` uses: with ``cnf_i`` the one-sided Student-t
half-width of estimate ``i`` (``t_{1-delta, n-1} std(phi_i, ddof=1) / sqrt(n)`` of its per-row terms),
the candidates sorted by decreasing ``cnf``, keep taking the next candidate ``i`` while

.. math::
   |\\theta_j - \\theta_i| \\le cnf_i + C\\, cnf_j \\quad \\text{for every } j \\text{ taken before}, \\qquad C = \\sqrt 6 - 1,

and choose the last one taken: the narrowest estimate still consistent with every less-biased one.

SLOPE bounds the chosen estimate's error by a constant times the best bias-plus-width, not its mean
squared error: it accepts any member within about two standard errors of the wider ones, so on logs
where capping saves little variance it takes up to that much bias (4.6-8.6 times the oracle cap's MSE on
the coverage benchmark). The default rule, ``"slope-mse"``, keeps SLOPE's admissible set (the members it
took) and chooses among them the smallest estimated mean squared error, the bias-variance rule of
Wang, Agarwal & Dudik (ICML 2017, Switch) and Su, Dimakopoulou, Krishnamurthy & Dudik (ICML 2020,
DR-OS) with the bias measured against the widest (least biased) member ``0`` on the same rows:

.. math::
   \\widehat{MSE}_i = \\max\\big(\\bar d_i^2 - se(d_i)^2, 0\\big) + se(\\phi_i)^2, \\qquad d_i = \\phi_i - \\phi_0,

(``bar d_i^2 - se(d_i)^2`` is unbiased for the squared bias); it is never more biased than SLOPE's
choice. ``rule="slope"`` is plain SLOPE.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError
from towerjax.evaluation.bounds import lower_bound_entry
from towerjax.evaluation.estimators import Lambdas, estimator_terms
from towerjax.evaluation.results import Z_95, Estimate, mean_se, weight_diagnostics

__all__ = [
    "FAMILIES",
    "RULES",
    "SLOPE_C",
    "Choice",
    "choose_estimator",
    "default_grid",
    "estimate_entry",
    "estimated_mse",
    "family_terms",
    "slope",
    "slope_mse",
]

SLOPE_C = math.sqrt(6) - 1
"""Tucker & Lee's constant of the pairwise test (OBP 0.5.7's ``C``)."""

FAMILIES = ("ipw-cap", "switch-dr", "dr-os")
"""The estimator families SLOPE chooses within: IPS with capped weights ``mean(min(w_i, lambda) r_i)``
(``lambda = inf`` is ``ipw``), ``switch-dr`` thresholds and ``dr-os`` shrinkages (``inf`` is ``dr``)."""

RULES = ("slope-mse", "slope")
"""How :func:`choose_estimator` chooses within a family: ``"slope-mse"`` (the default,
:func:`slope_mse`: the smallest estimated MSE among the members SLOPE admits) or ``"slope"``
(:func:`slope`: the narrowest admitted member, Su et al.'s rule)."""

_GRID_SIZE = 12  # finite lambdas in a default grid


@dataclasses.dataclass(frozen=True)
class Choice:
    """What :func:`choose_estimator` returns.

    Attributes:
      family: one of :data:`FAMILIES`.
      lambda_: the chosen hyperparameter (``inf`` for the unbiased member).
      estimate: the chosen estimator's :class:`Estimate` (value, standard error, Wald interval; no bootstrap).
      reason: one sentence saying why this member was chosen.
      lambdas: ``[L]`` the candidates, in SLOPE's order (decreasing interval width).
      values: ``[L]`` their estimates, in that order.
      widths: ``[L]`` their one-sided half-widths ``cnf``, in that order.
      rule: one of :data:`RULES`.
      mses: ``[L]`` their estimated mean squared errors (:func:`estimated_mse`), in that order.
    """

    family: str
    lambda_: float
    estimate: Estimate
    reason: str
    lambdas: tuple[float, ...]
    values: tuple[float, ...]
    widths: tuple[float, ...]
    rule: str = "slope"
    mses: tuple[float, ...] = ()

    @property
    def name(self) -> str:
        """``"ipw-cap[lambda=12.5]"``: the family and its chosen hyperparameter."""
        return f"{self.family}[lambda={self.lambda_:.4g}]"

    def to_dict(self) -> dict:
        """JSON-ready (write it with :func:`towerjax.jsonio.dumps`); an infinite ``lambda`` is ``"inf"``."""
        return {
            "family": self.family,
            "lambda": _lambda_value(self.lambda_),
            "name": self.name,
            "estimate": self.estimate.to_dict(),
            "reason": self.reason,
            "rule": self.rule,
            "candidates": [
                {"lambda": _lambda_value(lam), "value": v, "width": c, "mse": m}
                for lam, v, c, m in zip(
                    self.lambdas,
                    self.values,
                    self.widths,
                    self.mses or (math.nan,) * len(self.lambdas),
                    strict=True,
                )
            ],
        }


def _lambda_value(lam: float) -> float | str:
    return "inf" if math.isinf(lam) else lam


def _student_t(delta: float, n: int) -> float:
    """``t_{1-delta, n-1}``, the one-sided Student-t quantile (scipy, a dependency of jax)."""
    from scipy.stats import t

    return float(t.ppf(1.0 - delta, n - 1))


def slope(terms: ArrayLike, *, delta: float = 0.05) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """SLOPE's choice among ``L`` estimators given as per-row terms ``[L, n]`` (on the host).

    ``theta_l = mean(phi_l)``, ``cnf_l = t_{1-delta, n-1} std(phi_l, ddof=1) / sqrt(n)``; the estimators
    are visited in order of decreasing ``cnf`` (ties keep the given order) and the last one ``i`` with
    ``|theta_j - theta_i| <= cnf_i + C cnf_j`` against every earlier ``j`` is chosen (module docstring).

    Args:
      terms: ``[L, n]`` per-row terms of each estimator (:func:`family_terms`), ``n >= 2``.
      delta: the one-sided level of each interval, in ``(0, 1)``.

    Returns:
      ``(index, order, values [L], widths [L])``: the chosen row of ``terms``, the visiting order
      (indices into ``terms``), and every estimator's ``theta`` and ``cnf`` (in the rows' order).

    >>> index, order, values, widths = slope(np.array([[0.0, 2.0, 0.0, 2.0], [0.9, 1.1, 0.9, 1.1], [3.0, 3.0, 3.0, 3.1]]))
    >>> int(index), order.tolist()
    (1, [0, 1, 2])
    """
    terms = np.asarray(terms, np.float64)
    if terms.ndim != 2 or terms.shape[0] < 1 or terms.shape[1] < 2:
        raise InputError("terms", f"expected shape [L, n] with L >= 1 and n >= 2, got {terms.shape}")
    if not np.all(np.isfinite(terms)):
        raise InputError("terms", "expected finite values")
    if not 0 < delta < 1:
        raise InputError("delta", f"expected a number in (0, 1), got {delta!r}")
    n = terms.shape[1]
    values = terms.mean(axis=1)
    widths = _student_t(delta, n) * terms.std(axis=1, ddof=1) / math.sqrt(n)
    order = np.argsort(-widths, kind="stable")
    chosen = order[0]
    for pos in range(1, len(order)):
        i, earlier = order[pos], order[:pos]
        if not np.all(np.abs(values[earlier] - values[i]) <= widths[i] + SLOPE_C * widths[earlier]):
            break
        chosen = i
    return int(chosen), order, values, widths


def estimated_mse(terms: ArrayLike, *, reference: int) -> np.ndarray:
    """``[L]``: each estimator's estimated mean squared error, its bias measured against row ``reference``
    (the least biased) on the same rows.

    With ``d_i = phi_i - phi_ref`` per row, ``max(mean(d_i)^2 - se(d_i)^2, 0) + se(phi_i)^2``,
    ``se(x) = std(x, ddof=1) / sqrt(n)``: ``mean(d_i)^2 - se(d_i)^2`` is unbiased for the squared bias
    ``(E theta_i - E theta_ref)^2`` when ``theta_ref`` is unbiased, and the reference's own is its variance.

    Args:
      terms: ``[L, n]`` per-row terms (:func:`family_terms`), ``n >= 2``.
      reference: the row of the least biased estimator.
    """
    terms = np.asarray(terms, np.float64)
    n = terms.shape[1]
    d = terms - terms[reference]
    bias2 = np.maximum(d.mean(axis=1) ** 2 - d.var(axis=1, ddof=1) / n, 0.0)
    return bias2 + terms.var(axis=1, ddof=1) / n


def slope_mse(
    terms: ArrayLike, *, delta: float = 0.05
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The member with the smallest :func:`estimated_mse` among those :func:`slope` admits (module docstring).

    SLOPE's visiting order takes a prefix ``order[:k]`` (the admitted members, ``order[k - 1]`` its own
    choice); the bias reference is ``order[0]``, the widest. Ties go to the wider member.

    Returns:
      ``(index, order, values, widths, mses)``: as :func:`slope`, and every estimator's estimated MSE
      (in the rows' order).

    >>> index, order, values, widths, mses = slope_mse(np.array([[0.0, 2.0, 0.0, 2.0], [0.9, 1.1, 0.9, 1.1]]))
    >>> int(index), [round(float(m), 4) for m in mses]
    (1, [0.3333, 0.0033])
    """
    chosen, order, values, widths = slope(terms, delta=delta)
    mses = estimated_mse(terms, reference=int(order[0]))
    admitted = order[: int(np.flatnonzero(order == chosen)[0]) + 1]
    return int(admitted[int(np.argmin(mses[admitted]))]), order, values, widths, mses


def default_grid(family: str, w: ArrayLike) -> tuple[float, ...]:
    """The default candidates of ``family`` for weights ``w [n]``: ``inf`` (the unbiased member), then
    :data:`_GRID_SIZE` values spaced geometrically (factor ``sqrt 2``) down from the largest weight
    (caps and thresholds) or from its square (``dr-os``: ``lambda w / (w^2 + lambda)`` is ``w / 2`` at
    ``lambda = w^2``), keeping those above 1."""
    if family not in FAMILIES:
        raise InputError("family", f"expected one of {FAMILIES}, got {family!r}")
    top = float(np.max(np.asarray(w)))
    if family == "dr-os":
        top = top**2
    steps = top / np.sqrt(2.0) ** np.arange(1, _GRID_SIZE + 1) if top > 0 else np.zeros(0)
    return (math.inf, *(float(s) for s in steps if s > 1))


def family_terms(
    family: str,
    w: ArrayLike,
    reward: ArrayLike,
    lambdas: tuple[float, ...],
    *,
    direct: ArrayLike | None = None,
    q_logged: ArrayLike | None = None,
) -> np.ndarray:
    """The per-row terms ``[L, n]`` of each member of ``family`` (one row per ``lambda``).

    ``ipw-cap``: ``min(w_i, lambda) r_i``; ``switch-dr`` and ``dr-os``: :func:`estimator_terms` with that
    ``lambda`` (they need ``direct`` and ``q_logged``).
    """
    if family not in FAMILIES:
        raise InputError("family", f"expected one of {FAMILIES}, got {family!r}")
    if not lambdas or any(not (lam >= 0) for lam in lambdas):
        raise InputError("lambdas", f"expected a non-empty tuple of numbers >= 0, got {lambdas!r}")
    w64, r64 = np.asarray(w, np.float64), np.asarray(reward, np.float64)
    if family == "ipw-cap":
        return np.stack([np.minimum(w64, lam) * r64 for lam in lambdas])
    if direct is None or q_logged is None:
        raise InputError("direct", f"expected direct and q_logged for {family!r}")
    rows = []
    for lam in lambdas:
        hyper = Lambdas(switch=lam, dros=lam, subgauss=0.0, ls=0.0)
        t = estimator_terms(
            jnp.asarray(w),
            jnp.asarray(reward),
            direct=direct,
            q_logged=q_logged,
            names=(family,),
            lambdas=hyper,
        )
        rows.append(np.asarray(t[family], np.float64))
    return np.stack(rows)


def choose_estimator(
    w: ArrayLike,
    reward: ArrayLike,
    *,
    direct: ArrayLike | None = None,
    q_logged: ArrayLike | None = None,
    family: str | None = None,
    lambdas: tuple[float, ...] | None = None,
    delta: float = 0.05,
    rule: str = "slope-mse",
) -> Choice:
    """SLOPE's choice within one family of estimators, with its estimate and the reason (SPEC 10).

    Args:
      w: ``[n]`` importance weights ``pi(a_i|x_i) / p_i``.
      reward: ``[n]`` rewards.
      direct, q_logged: ``[n]`` as :func:`estimator_terms` (needed by ``switch-dr`` and ``dr-os``).
      family: one of :data:`FAMILIES`; default ``dr-os`` with a reward model, else ``ipw-cap``.
      lambdas: the candidates; default :func:`default_grid`.
      delta: each interval's one-sided level.
      rule: one of :data:`RULES`: ``"slope-mse"`` (:func:`slope_mse`) or ``"slope"`` (:func:`slope`).

    Returns:
      A :class:`Choice`: the chosen member's estimate (standard error of its terms, 95% Wald interval,
      diagnostics of the weights ``min(w, lambda)`` for ``ipw-cap``, else of ``w``) and the reason.
    """
    w = np.asarray(w, np.float64)
    if w.ndim != 1 or w.shape[0] < 2:
        raise InputError("w", f"expected shape [n] with n >= 2, got {w.shape}")
    if np.shape(reward) != w.shape:
        raise InputError("reward", f"expected shape {w.shape} to match w, got {np.shape(reward)}")
    if rule not in RULES:
        raise InputError("rule", f"expected one of {RULES}, got {rule!r}")
    if family is None:
        family = "ipw-cap" if direct is None else "dr-os"
    lambdas = default_grid(family, w) if lambdas is None else tuple(float(lam) for lam in lambdas)
    terms = family_terms(family, w, reward, lambdas, direct=direct, q_logged=q_logged)
    index, order, values, widths, mses = slope_mse(terms, delta=delta)
    slope_index = slope(terms, delta=delta)[0]
    if rule == "slope":
        index = slope_index
    value, stderr = mean_se(terms[index])
    lam = lambdas[index]
    diagnostics = weight_diagnostics(jnp.asarray(np.minimum(w, lam) if family == "ipw-cap" else w))
    estimate = Estimate(
        value=value,
        stderr=stderr,
        wald_low=value - Z_95 * stderr,
        wald_high=value + Z_95 * stderr,
        diagnostics=type(diagnostics)(*map(float, diagnostics)),
        note=f"{'SLOPE' if rule == 'slope' else 'SLOPE-MSE'} within {family}",
    )
    admitted = int(np.flatnonzero(order == slope_index)[0])  # SLOPE took order[: admitted + 1]
    reason = _reason(family, lambdas, order, values, widths, mses, delta, index, rule, admitted)
    return Choice(
        family=family,
        lambda_=lam,
        estimate=estimate,
        reason=reason,
        lambdas=tuple(lambdas[i] for i in order),
        values=tuple(float(values[i]) for i in order),
        widths=tuple(float(widths[i]) for i in order),
        rule=rule,
        mses=tuple(float(mses[i]) for i in order),
    )


def estimate_entry(
    w: ArrayLike,
    reward: ArrayLike,
    *,
    direct: ArrayLike | None = None,
    q_logged: ArrayLike | None = None,
    delta: float = 0.05,
) -> dict:
    """``{"the_estimate": Choice.to_dict(), "lower_bound": dict or None}``: "the estimate" of a policy on
    some rows, as ``towerjax evaluate`` and training's report give it.

    :func:`choose_estimator` at its defaults (``dr-os`` with a reward model's ``direct`` and ``q_logged``,
    else ``ipw-cap``) and, for rewards in ``[0, 1]``, the empirical-Bernstein lower bound at level
    ``1 - delta`` (:func:`~towerjax.evaluation.bounds.lower_bound_entry`); ``w``, ``reward`` ``[n]``.
    """
    choice = choose_estimator(w, reward, direct=direct, q_logged=q_logged, delta=delta)
    return {"the_estimate": choice.to_dict(), "lower_bound": lower_bound_entry(w, reward, delta=delta)}


def _reason(family, lambdas, order, values, widths, mses, delta, index, rule, admitted) -> str:
    """One sentence: which member, among how many, what stopped SLOPE (after ``order[admitted]``) and
    (``slope-mse``) why this one."""
    level = f"{1 - delta:.0%} one-sided interval"
    if rule == "slope":
        head = (
            f"SLOPE (Lepski's principle, Su et al. 2020) over {len(order)} {family} lambdas chose "
            f"lambda={lambdas[index]:.4g}: the narrowest whose {level} agrees with every wider (less biased) one"
        )
        if admitted == len(order) - 1:
            return head + (" (all agree, so the narrowest)" if len(order) > 1 else " (the only candidate)")
        return head + _stop(lambdas, order, admitted, values, widths)
    head = (
        f"SLOPE (Lepski's principle, Su et al. 2020) over {len(order)} {family} lambdas admitted "
        f"{admitted + 1}, each {level} agreeing with every wider (less biased) one"
    )
    stop = " (all of them)" if admitted == len(order) - 1 else _stop(lambdas, order, admitted, values, widths)
    return (
        head
        + stop
        + (
            f"; of those, lambda={lambdas[index]:.4g} has the smallest estimated MSE ({mses[index]:.3g}: its "
            f"squared bias against lambda={lambdas[order[0]]:.4g}, net of the noise of their difference, plus "
            "its variance)"
        )
    )


def _stop(lambdas, order, position, values, widths) -> str:
    """What stopped SLOPE after ``order[position]``: the next member and the wider one it disagrees with."""
    nxt = order[position + 1]
    earlier = order[: position + 1]
    gap = np.abs(values[earlier] - values[nxt]) - (widths[nxt] + SLOPE_C * widths[earlier])
    worst = earlier[int(np.argmax(gap))]
    return (
        f"; the next, lambda={lambdas[nxt]:.4g} (estimate {values[nxt]:.4g}), is {abs(values[worst] - values[nxt]):.3g} "
        f"from lambda={lambdas[worst]:.4g}'s {values[worst]:.4g}, more than "
        f"{widths[nxt] + SLOPE_C * widths[worst]:.3g} allows"
    )
