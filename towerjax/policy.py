"""The softmax policy that two-tower scores define, and its true value (SPEC 2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int, check_temperature

__all__ = ["log_policy", "policy_value", "sample_actions", "sample_slate", "slate_inclusion", "slate_value"]


def log_policy(scores: ArrayLike, temperature: float = 1.0) -> jax.Array:
    """Log-probabilities of the softmax policy.

    .. math:: \\log \\pi(a|x) = \\mathrm{log\\_softmax}(s(x, \\cdot) / \\tau)_a

    Args:
      scores: ``[..., A]`` scores ``s(x, a)``.
      temperature: ``tau > 0``.

    Returns:
      ``[..., A]`` log-probabilities, computed with ``log_softmax`` (never ``log(softmax)``).
    """
    check_temperature(temperature)
    return jax.nn.log_softmax(jnp.asarray(scores) / temperature, axis=-1)


def policy_value(log_pi: ArrayLike, expected_reward: ArrayLike) -> jax.Array:
    """True value ``V_hat = mean_i sum_a pi(a|x_i) q(x_i, a)`` of a policy on known ``q``.

    Args:
      log_pi: ``[n, A]`` log-probabilities of the policy.
      expected_reward: ``[n, A]`` ``q(x_i, a)``.
    """
    log_pi, expected_reward = jnp.asarray(log_pi), jnp.asarray(expected_reward)
    if log_pi.shape != expected_reward.shape:
        raise InputError(
            "expected_reward", f"expected shape {log_pi.shape} to match log_pi, got {expected_reward.shape}"
        )
    return jnp.mean(jnp.sum(jnp.exp(log_pi) * expected_reward, axis=-1))


def sample_actions(key: jax.Array, log_pi: ArrayLike) -> jax.Array:
    """``[n]`` actions drawn from ``pi(.|x_i)`` given ``[n, A]`` log-probabilities."""
    return jax.random.categorical(key, jnp.asarray(log_pi), axis=-1)


def slate_inclusion(log_pi: ArrayLike, k: int) -> jax.Array:
    """``alpha(a|x) = 1 - (1 - pi(a|x))^K``: the chance that ``a`` is among ``K`` draws with replacement.

    Args:
      log_pi: ``[..., A]`` log-probabilities.
      k: slate size ``K >= 1``.
    """
    k = check_positive_int("k", k)
    log_pi = jnp.asarray(log_pi)
    pi = jnp.exp(log_pi)
    # Two branches, each finite with a finite gradient: log1p(-pi) keeps small pi exact,
    # 1 - pi = -expm1(log pi) keeps pi near 1 exact (log1p(-1) would give NaN gradients).
    small = pi < 0.5
    from_small = -jnp.expm1(k * jnp.log1p(-jnp.where(small, pi, 0.0)))
    from_large = 1.0 - jnp.power(-jnp.expm1(jnp.where(small, -1.0, log_pi)), k)
    return jnp.where(small, from_small, from_large)


def slate_value(log_pi: ArrayLike, expected_reward: ArrayLike, k: int) -> jax.Array:
    """True value of a ``K``-item slate: ``mean_i sum_a alpha(a|x_i) q(x_i, a)`` (Chen et al. 2019).

    Args:
      log_pi: ``[n, A]`` log-probabilities.
      expected_reward: ``[n, A]`` ``q(x_i, a)``.
      k: slate size.
    """
    log_pi, expected_reward = jnp.asarray(log_pi), jnp.asarray(expected_reward)
    if log_pi.shape != expected_reward.shape:
        raise InputError(
            "expected_reward", f"expected shape {log_pi.shape} to match log_pi, got {expected_reward.shape}"
        )
    return jnp.mean(jnp.sum(slate_inclusion(log_pi, k) * expected_reward, axis=-1))


def sample_slate(key: jax.Array, log_pi: ArrayLike, k: int) -> tuple[jax.Array, jax.Array]:
    """Draws ``K`` items with replacement from ``pi(.|x_i)`` and removes repeats.

    Returns:
      ``items [n, K]`` (int) and ``unique [n, K]`` (bool): ``unique[i, j]`` is False when
      ``items[i, j]`` repeats an earlier draw of row ``i``; the slate is the unique items.
    """
    log_pi = jnp.asarray(log_pi)
    k = check_positive_int("k", k)
    items = jax.random.categorical(key, log_pi[..., None, :], axis=-1, shape=(*log_pi.shape[:-1], k))
    earlier = jnp.tril(jnp.ones((k, k), bool), -1)  # earlier[j, l]: draw l comes before draw j
    repeats = jnp.any((items[..., :, None] == items[..., None, :]) & earlier, axis=-1)
    return items, ~repeats
