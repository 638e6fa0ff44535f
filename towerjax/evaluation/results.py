"""The result of an off-policy estimate: :class:`Estimate` (value, standard error, intervals) and the
:class:`WeightDiagnostics` of the importance weights it relies on; the mean and standard error of
per-row values (:func:`mean_se`) and the normal interval (:func:`normal_interval`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError
from towerjax.rows import safe_ratio

__all__ = [
    "Z_95",
    "Estimate",
    "WeightDiagnostics",
    "mean_se",
    "normal_interval",
    "wald_estimate",
    "weight_diagnostics",
]

Z_95 = 1.959963984540054  # the standard normal quantile of 0.975


def mean_se(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard error of the mean (``std(ddof=1) / sqrt(n)``; NaN for one value), on the host."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def normal_interval(value: float, stderr: float, z: float = Z_95) -> tuple[float, float]:
    """``value ± z * stderr``: the normal (Wald) interval, 95% by default."""
    return value - z * stderr, value + z * stderr


class WeightDiagnostics(NamedTuple):
    """What to read before trusting an importance-weighted estimate.

    Attributes:
      ess: effective sample size ``(sum_i w_i)^2 / sum_i w_i^2`` (``n`` for equal weights; far
        below ``n`` means a few rows carry the estimate). 0 when every weight is 0.
      max_weight: ``max_i w_i``; one row moves a mean over ``n`` rows by ``w_i r_i / n``.
      top1_share: the share of ``sum_i w_i`` held by the ``ceil(n / 100)`` largest weights
        (at least one row); 0 when every weight is 0.
      mean_weight: ``mean_i w_i``, 1 in expectation when ``pi_0`` covers ``pi``; far from 1
        flags wrong propensities or a policy the logs do not support.
    """

    ess: Any
    max_weight: Any
    top1_share: Any
    mean_weight: Any

    def to_dict(self) -> dict[str, float]:
        """The fields as plain floats."""
        return {name: float(value) for name, value in self._asdict().items()}


class Estimate(NamedTuple):
    """One off-policy estimate of ``V(pi)``; the first two fields are the original ``(value, stderr)``.

    Attributes:
      value: the point estimate.
      stderr: its standard error: ``std(ddof=1) / sqrt(n)`` of the per-row terms, by the delta
        method for the self-normalised estimators.
      wald_low, wald_high: ``value ± 1.96 stderr``.
      bootstrap_low, bootstrap_high: the 2.5% and 97.5% percentiles of the estimate over row
        resamples; NaN when no bootstrap ran (no ``key``).
      diagnostics: :class:`WeightDiagnostics` of the weights the estimate uses (the marginal
        weights for ``mips``); ``None`` for ``dm``.
      note: how to read it (for ``dm``: that its uncertainty is conditional on ``q_hat``; for an
        estimator with a hyperparameter: the ``lambda`` used), or ``None``.
    """

    value: float
    stderr: float
    wald_low: float = math.nan
    wald_high: float = math.nan
    bootstrap_low: float = math.nan
    bootstrap_high: float = math.nan
    diagnostics: WeightDiagnostics | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain floats (NaN kept; pass the result through :func:`towerjax.jsonio.plain` for strict JSON)."""
        out: dict[str, Any] = {name: float(getattr(self, name)) for name in self._fields[:6]}
        out["diagnostics"] = None if self.diagnostics is None else self.diagnostics.to_dict()
        out["note"] = self.note
        return out


def wald_estimate(terms: ArrayLike) -> Estimate:
    """The estimate whose per-row terms are ``terms [n]``: their mean, its standard error
    ``std(ddof=1) / sqrt(n)`` (:func:`mean_se`) and the Wald 95% interval (:func:`normal_interval`)."""
    value, stderr = mean_se(terms)
    low, high = normal_interval(value, stderr)
    return Estimate(value=value, stderr=stderr, wald_low=low, wald_high=high)


def weight_diagnostics(w: ArrayLike) -> WeightDiagnostics:
    """``w [n] -> WeightDiagnostics`` (jax scalars; jit-able): ESS, max weight, top-1% share, mean.

    .. math::
      \\mathrm{ESS} = \\frac{(\\sum_i w_i)^2}{\\sum_i w_i^2}, \\quad
      \\mathrm{top1} = \\frac{\\sum_{i \\in \\text{top } \\lceil n/100 \\rceil} w_i}{\\sum_i w_i}

    Args:
      w: ``[n]`` nonnegative importance weights, ``n >= 1``.

    >>> d = weight_diagnostics(jnp.array([1.0, 1.0, 2.0, 0.0]))
    >>> float(d.ess), float(d.max_weight), float(d.top1_share), float(d.mean_weight)
    (2.6666667461395264, 2.0, 0.5, 1.0)
    """
    w = jnp.asarray(w, dtype=float)
    if w.ndim != 1 or w.shape[0] < 1:
        raise InputError("w", f"expected shape [n] with n >= 1, got {w.shape}")
    n = w.shape[0]
    total = jnp.sum(w)
    top = jnp.sum(jax.lax.top_k(w, -(-n // 100))[0])
    return WeightDiagnostics(
        ess=safe_ratio(total**2, jnp.sum(w**2)),
        max_weight=jnp.max(w),
        top1_share=safe_ratio(top, total),
        mean_weight=total / n,
    )
