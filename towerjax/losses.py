"""Surrogate losses whose gradients are policy-gradient estimators (SPEC 3).

Each loss is a pure function of arrays for one batch. Its gradient with respect to the
tower parameters (through ``log_pi`` or ``scores``) equals minus the named estimator of
the policy gradient ``grad V(pi)``. The importance weight

.. math:: w_i = \\mathrm{sg}(\\pi(a_i|x_i)) / p_i

is computed in :func:`importance_weight`, the one place where ``stop_gradient`` holds
the policy's probability out of the gradient.

Every loss takes an optional keyword ``mask`` ``[B]`` (1 for real events, 0 for padding);
the mean is then over the real events only, so a final partial batch counts exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

__all__ = [
    "dr_loss",
    "importance_weight",
    "ips_loss",
    "naive_loss",
    "regression_loss",
]


def importance_weight(log_pi_a: ArrayLike, pscore: ArrayLike) -> jax.Array:
    """``w_i = sg(pi(a_i|x_i)) / p_i``: no gradient flows through the weight.

    Args:
      log_pi_a: ``[B]`` log-probability of the logged action under the policy.
      pscore: ``[B]`` logged propensity ``p_i``.
    """
    return jax.lax.stop_gradient(jnp.exp(log_pi_a)) / pscore


def ips_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Inverse propensity scoring (IPS) policy-gradient surrogate.

    .. math:: L = -\\frac{1}{B} \\sum_i w_i r_i \\log \\pi(a_i|x_i)

    Args:
      log_pi: ``[B, A]`` log-probabilities of the policy being learned.
      action: ``[B]`` int logged actions ``a_i``.
      reward: ``[B]`` rewards ``r_i``.
      pscore: ``[B]`` logged propensities ``p_i``.
      mask: optional ``[B]`` weights of the events (0 drops an event).

    Returns:
      Scalar loss; its gradient is minus the IPS policy-gradient estimate.

    References:
      Williams, *Simple statistical gradient-following algorithms*, 1992;
      Chen et al., *Top-K Off-Policy Correction for a REINFORCE Recommender System*, 2019.

    Example:
      >>> import jax.numpy as jnp
      >>> log_pi = jnp.log(jnp.array([[0.5, 0.5]]))
      >>> float(ips_loss(log_pi, jnp.array([0]), jnp.array([1.0]), jnp.array([0.25])))
      1.3862...
    """
    log_pi, action, reward, pscore = _check_batch(log_pi, action, reward, pscore=pscore)
    log_pi_a = _logged(log_pi, action)
    w = importance_weight(log_pi_a, pscore)
    return -_batch_mean(w * reward * log_pi_a, mask)


def dr_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike,
    *,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Doubly robust (DR) policy-gradient surrogate.

    .. math::
      L = -\\frac{1}{B} \\sum_i \\Big[ w_i (r_i - \\hat q(x_i, a_i)) \\log \\pi(a_i|x_i)
          + \\sum_a \\mathrm{sg}(\\pi(a|x_i)) \\hat q(x_i, a) \\log \\pi(a|x_i) \\Big]

    Args:
      log_pi: ``[B, A]`` log-probabilities of the policy.
      action: ``[B]`` int logged actions.
      reward: ``[B]`` rewards.
      pscore: ``[B]`` logged propensities.
      q_hat: ``[B, A]`` reward-model predictions ``q_hat(x_i, a)``; no gradient flows
        into them.
      mask: optional ``[B]`` event weights.

    References:
      Dudík, Langford & Li, *Doubly Robust Policy Evaluation and Learning*, ICML 2011.
    """
    log_pi, action, reward, pscore = _check_batch(log_pi, action, reward, pscore=pscore)
    q_hat = jax.lax.stop_gradient(jnp.asarray(q_hat))
    if q_hat.shape != log_pi.shape:
        raise ValueError(f"q_hat: expected shape {log_pi.shape} to match log_pi, got {q_hat.shape}")
    log_pi_a = _logged(log_pi, action)
    w = importance_weight(log_pi_a, pscore)
    correction = w * (reward - _logged(q_hat, action)) * log_pi_a
    direct = jnp.sum(jax.lax.stop_gradient(jnp.exp(log_pi)) * q_hat * log_pi, axis=-1)
    return -_batch_mean(correction + direct, mask)


def regression_loss(
    scores: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    *,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Regression-based (supervised) baseline: binary cross-entropy of the logged score.

    .. math:: L = \\frac{1}{B} \\sum_i \\mathrm{BCE}(\\sigma(s(x_i, a_i)), r_i)

    computed from logits. The policy it yields is still ``softmax(s / tau)``.

    Args:
      scores: ``[B, A]`` raw two-tower scores (logits), not log-probabilities.
      action: ``[B]`` int logged actions.
      reward: ``[B]`` binary rewards in ``{0, 1}`` (values in ``[0, 1]`` act as soft labels).
      mask: optional ``[B]`` event weights.
    """
    scores, action, reward, _ = _check_batch(scores, action, reward, name="scores")
    bce = optax.sigmoid_binary_cross_entropy(_logged(scores, action), reward)
    return _batch_mean(bce, mask)


def naive_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    *,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Naive REINFORCE on logs, with no off-policy correction ("cross-entropy").

    .. math:: L = -\\frac{1}{B} \\sum_i r_i \\log \\pi(a_i|x_i)

    Its fixed point is biased towards the logging policy: ``pi ∝ q * pi_0``.

    Args:
      log_pi: ``[B, A]`` log-probabilities.
      action: ``[B]`` int logged actions.
      reward: ``[B]`` rewards.
      mask: optional ``[B]`` event weights.
    """
    log_pi, action, reward, _ = _check_batch(log_pi, action, reward)
    return -_batch_mean(reward * _logged(log_pi, action), mask)


def _logged(values: jax.Array, action: jax.Array) -> jax.Array:
    """``[B, A], [B] -> [B]``: the entry of each row at its logged action."""
    return jnp.take_along_axis(values, action[:, None], axis=-1)[:, 0]


def _batch_mean(values: jax.Array, mask: ArrayLike | None) -> jax.Array:
    """Mean over the batch, or over the events with nonzero ``mask``."""
    if mask is None:
        return jnp.mean(values)
    mask = jnp.asarray(mask, values.dtype)
    if mask.shape != values.shape:
        raise ValueError(f"mask: expected shape {values.shape}, got {mask.shape}")
    return jnp.sum(mask * values) / jnp.maximum(jnp.sum(mask), 1.0)


def _check_batch(
    matrix: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    *,
    pscore: ArrayLike | None = None,
    name: str = "log_pi",
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
    """Static shape and dtype checks (they hold under ``jit`` and per example under ``vmap``)."""
    matrix, action, reward = jnp.asarray(matrix), jnp.asarray(action), jnp.asarray(reward)
    if matrix.ndim != 2:
        raise ValueError(f"{name}: expected shape [B, A], got {matrix.shape}")
    batch = matrix.shape[0]
    if action.shape != (batch,):
        raise ValueError(f"action: expected shape ({batch},) to match {name}, got {action.shape}")
    if not jnp.issubdtype(action.dtype, jnp.integer):
        raise TypeError(f"action: expected integer indices, got dtype {action.dtype}")
    if reward.shape != (batch,):
        raise ValueError(f"reward: expected shape ({batch},) to match {name}, got {reward.shape}")
    if pscore is not None:
        pscore = jnp.asarray(pscore)
        if pscore.shape != (batch,):
            raise ValueError(f"pscore: expected shape ({batch},) to match {name}, got {pscore.shape}")
    return matrix, action, reward, pscore
