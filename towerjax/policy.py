"""The softmax policy that two-tower scores define, and its true value (SPEC 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["log_policy", "policy_value", "sample_actions"]


def log_policy(scores: ArrayLike, temperature: float = 1.0) -> jax.Array:
    """Log-probabilities of the softmax policy.

    .. math:: \\log \\pi(a|x) = \\mathrm{log\\_softmax}(s(x, \\cdot) / \\tau)_a

    Args:
      scores: ``[..., A]`` scores ``s(x, a)``.
      temperature: ``tau > 0``.

    Returns:
      ``[..., A]`` log-probabilities, computed with ``log_softmax`` (never ``log(softmax)``).
    """
    if not isinstance(temperature, jax.core.Tracer) and not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    return jax.nn.log_softmax(jnp.asarray(scores) / temperature, axis=-1)


def policy_value(log_pi: ArrayLike, expected_reward: ArrayLike) -> jax.Array:
    """True value ``V_hat = mean_i sum_a pi(a|x_i) q(x_i, a)`` of a policy on known ``q``.

    Args:
      log_pi: ``[n, A]`` log-probabilities of the policy.
      expected_reward: ``[n, A]`` ``q(x_i, a)``.
    """
    log_pi, expected_reward = jnp.asarray(log_pi), jnp.asarray(expected_reward)
    if log_pi.shape != expected_reward.shape:
        raise ValueError(
            f"expected_reward: expected shape {log_pi.shape} to match log_pi, got {expected_reward.shape}"
        )
    return jnp.mean(jnp.sum(jnp.exp(log_pi) * expected_reward, axis=-1))


def sample_actions(key: jax.Array, log_pi: ArrayLike) -> jax.Array:
    """``[n]`` actions drawn from ``pi(.|x_i)`` given ``[n, A]`` log-probabilities."""
    return jax.random.categorical(key, jnp.asarray(log_pi), axis=-1)
