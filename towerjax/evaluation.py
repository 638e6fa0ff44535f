"""Off-policy evaluation of a policy from logged data (SPEC 7).

Estimators follow Open Bandit Pipeline's definitions, each with a standard error from
its per-event terms (``std(ddof=1) / sqrt(n)``; for SNIPS the delta method). The true
value on data with known ``q`` is :func:`towerjax.policy.policy_value`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["Z_95", "Estimate", "mean_se", "normal_interval", "off_policy_estimates"]

Z_95 = 1.959963984540054  # the standard normal quantile of 0.975


class Estimate(NamedTuple):
    """A value estimate and its standard error."""

    value: jax.Array
    stderr: jax.Array


def mean_se(values: ArrayLike) -> tuple[float, float]:
    """Mean and standard error of the mean (``std(ddof=1) / sqrt(n)``; NaN for one value), on the host."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def normal_interval(value: float, stderr: float, z: float = Z_95) -> tuple[float, float]:
    """``value ± z * stderr``: the normal (Wald) interval, 95% by default."""
    return value - z * stderr, value + z * stderr


def _mean_se(terms: jax.Array) -> Estimate:
    n = terms.shape[0]
    return Estimate(jnp.mean(terms), jnp.std(terms, ddof=1) / jnp.sqrt(n))


def off_policy_estimates(
    pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike | None = None,
) -> dict[str, Estimate]:
    """Estimates ``V(pi)`` from logs collected by another policy.

    .. math::
      \\hat V_{IPS} = \\frac1n \\sum_i w_i r_i, \\quad
      \\hat V_{SNIPS} = \\frac{\\sum_i w_i r_i}{\\sum_i w_i}, \\quad
      \\hat V_{DM} = \\frac1n \\sum_i \\sum_a \\pi(a|x_i) \\hat q(x_i, a), \\quad
      \\hat V_{DR} = \\hat V_{DM} + \\frac1n \\sum_i w_i (r_i - \\hat q(x_i, a_i))

    with ``w_i = pi(a_i|x_i) / p_i``.

    Args:
      pi: ``[n, A]`` action probabilities of the evaluated policy.
      action: ``[n]`` int logged actions.
      reward: ``[n]`` rewards.
      pscore: ``[n]`` logged propensities.
      q_hat: optional ``[n, A]`` reward model; adds ``"dm"`` and ``"dr"``.

    Returns:
      ``{"ips", "snips"[, "dm", "dr"]}`` to :class:`Estimate`.
    """
    pi, action = jnp.asarray(pi), jnp.asarray(action)
    reward, pscore = jnp.asarray(reward), jnp.asarray(pscore)
    if pi.ndim != 2:
        raise ValueError(f"pi: expected shape [n, A], got {pi.shape}")
    n = pi.shape[0]
    if n < 2:
        raise ValueError(f"pi: expected at least 2 events for a standard error, got {n}")
    for name, value in (("action", action), ("reward", reward), ("pscore", pscore)):
        if value.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},) to match pi, got {value.shape}")
    rows = jnp.arange(n)
    w = pi[rows, action] / pscore
    mean_w = jnp.mean(w)
    snips = jnp.sum(w * reward) / jnp.sum(w)
    out = {
        "ips": _mean_se(w * reward),
        "snips": Estimate(snips, jnp.std(w * (reward - snips) / mean_w, ddof=1) / jnp.sqrt(n)),
    }
    if q_hat is not None:
        q_hat = jnp.asarray(q_hat)
        if q_hat.shape != pi.shape:
            raise ValueError(f"q_hat: expected shape {pi.shape} to match pi, got {q_hat.shape}")
        direct = jnp.sum(pi * q_hat, axis=-1)
        out["dm"] = _mean_se(direct)
        out["dr"] = _mean_se(direct + w * (reward - q_hat[rows, action]))
    return out
