"""A high-confidence lower bound on a policy's value for bounded rewards (SPEC 10).

Empirical Bernstein (Maurer & Pontil, COLT 2009, Theorem 4; used for off-policy evaluation by
Thomas, Theocharous & Ghavamzadeh, AAAI 2015): for rewards in ``[0, 1]`` and importance weights
clipped at ``b``, ``X_i = min(w_i, b) r_i`` lies in ``[0, b]`` and ``E X <= V(pi)`` (clipping only
lowers a nonnegative term), so with probability at least ``1 - delta``

.. math::
   V(\\pi) \\ge \\bar X - \\sqrt{\\frac{2\\, \\mathrm{Var}_n(X) \\ln(2/\\delta)}{n}}
   - \\frac{7\\, b \\ln(2/\\delta)}{3 (n - 1)},

with ``Var_n`` the sample variance (``ddof=1``). It holds for any ``n >= 2`` without a normal
approximation; ``b`` must not be chosen by looking at these rows' rewards.
"""

from __future__ import annotations

import math

import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError

__all__ = ["LOWER_BOUND_METHOD", "bernstein_lower_bound", "default_clip", "lower_bound_entry"]

LOWER_BOUND_METHOD = (
    "empirical Bernstein (Maurer & Pontil 2009; Thomas et al. 2015), X = min(w, clip) r, clip = n^(1/3)"
)
"""What :func:`lower_bound_entry` says the bound is."""


def default_clip(n: int) -> float:
    """``n ** (1/3)``: the clip of :func:`bernstein_lower_bound` when none is given, a function of ``n`` only
    (so the bound stays valid). The range term ``7 b ln(2/delta) / (3 (n - 1))`` then falls like ``n^(-2/3)``,
    faster than the variance term, while weights up to ``n^(1/3)`` are kept whole."""
    return float(n) ** (1 / 3)


def bernstein_lower_bound(
    w: ArrayLike, reward: ArrayLike, *, clip: float | None = None, delta: float = 0.05
) -> float:
    """The empirical-Bernstein lower bound on ``V(pi)`` at level ``1 - delta`` (module docstring).

    Args:
      w: ``[n]`` importance weights ``pi(a_i|x_i) / p_i >= 0``, ``n >= 2``.
      reward: ``[n]`` rewards in ``[0, 1]``.
      clip: ``b > 0``, the weights' clip; default :func:`default_clip` of ``n``.
      delta: in ``(0, 1)``.

    Returns:
      The bound (a float; it may be below 0, the trivial bound).

    >>> round(bernstein_lower_bound(np.ones(1000), np.full(1000, 0.5)), 4)
    0.4138
    """
    w = np.asarray(w, np.float64)
    reward = np.asarray(reward, np.float64)
    if w.ndim != 1 or w.shape[0] < 2:
        raise InputError("w", f"expected shape [n] with n >= 2, got {w.shape}")
    if reward.shape != w.shape:
        raise InputError("reward", f"expected shape {w.shape} to match w, got {reward.shape}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise InputError("w", "expected finite weights >= 0")
    if not (np.all(np.isfinite(reward)) and np.all((reward >= 0) & (reward <= 1))):
        raise InputError("reward", "expected rewards in [0, 1] (the bound needs bounded rewards)")
    if not 0 < delta < 1:
        raise InputError("delta", f"expected a number in (0, 1), got {delta!r}")
    n = w.shape[0]
    b = default_clip(n) if clip is None else clip
    if isinstance(b, bool) or not (isinstance(b, int | float) and 0 < b < math.inf):
        raise InputError("clip", f"expected a finite number > 0, got {clip!r}")
    x = np.minimum(w, b) * reward
    log_term = math.log(2 / delta)
    return float(x.mean() - math.sqrt(2 * x.var(ddof=1) * log_term / n) - 7 * b * log_term / (3 * (n - 1)))


def lower_bound_entry(w: ArrayLike, reward: ArrayLike, *, delta: float = 0.05) -> dict | None:
    """``{"value", "clip", "delta", "method"}``: :func:`bernstein_lower_bound` at the default clip
    (:func:`default_clip` of ``n``), or ``None`` when some reward is outside ``[0, 1]`` (the bound
    needs bounded rewards). What ``towerjax evaluate`` and training's report print as the lower bound.

    >>> lower_bound_entry(np.ones(4), np.array([0.0, 2.0, 1.0, 1.0])) is None
    True
    """
    reward = np.asarray(reward, np.float64)
    if not np.all((reward >= 0) & (reward <= 1)):
        return None
    clip = default_clip(reward.shape[0])
    return {
        "value": bernstein_lower_bound(w, reward, clip=clip, delta=delta),
        "clip": clip,
        "delta": delta,
        "method": LOWER_BOUND_METHOD,
    }
