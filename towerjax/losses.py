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

from towerjax.checks import InputError, check_batch, check_positive_int, masked_mean, take_logged

__all__ = [
    "dr_loss",
    "importance_weight",
    "ips_loss",
    "naive_loss",
    "regression_loss",
    "topk_ips_loss",
    "transform_weights",
]


def importance_weight(
    log_pi_a: ArrayLike,
    pscore: ArrayLike,
    *,
    cap: float | None = None,
    clip: tuple[float, float] | None = None,
    self_normalize: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """``w_i = sg(pi(a_i|x_i)) / p_i``: no gradient flows through the weight.

    Optional transforms, in this order (SPEC 4): capping ``min(w, cap)`` (Chen et al.
    2019) or clipping ``clip(w, c_min, c_max)`` (Ma et al. 2020 use ``(0.01, 10)``), then
    batch self-normalisation ``w / mean_j w_j`` (SNIPS; the mean over unmasked events).

    Args:
      log_pi_a: ``[B]`` log-probability of the logged action under the policy.
      pscore: ``[B]`` logged propensity ``p_i``.
      cap: upper bound on ``w``.
      clip: ``(c_min, c_max)`` bounds on ``w``; not together with ``cap``.
      self_normalize: divide by the batch mean of the (capped) weights.
      mask: optional ``[B]`` event weights for the batch mean.
    """
    return transform_weights(
        jax.lax.stop_gradient(jnp.exp(log_pi_a)) / pscore,
        cap=cap,
        clip=clip,
        self_normalize=self_normalize,
        mask=mask,
    )


def transform_weights(
    w: jax.Array,
    *,
    cap: float | None = None,
    clip: tuple[float, float] | None = None,
    self_normalize: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Caps or clips ``[B]`` weights, then self-normalises them (see :func:`importance_weight`)."""
    check_weight_options(cap, clip)
    if cap is not None:
        w = jnp.minimum(w, cap)
    if clip is not None:
        w = jnp.clip(w, clip[0], clip[1])
    if self_normalize:
        w = w / masked_mean(w, mask)
    return w


def check_weight_options(cap: float | None, clip: tuple[float, float] | None) -> tuple[float, float] | None:
    """Checks the weight options, naming ``cap`` or ``clip`` in an :class:`~towerjax.checks.InputError`.

    Returns ``clip`` as a pair of floats (or ``None``).
    """
    if cap is not None and clip is not None:
        raise InputError("cap", "give either cap or clip, not both")
    if cap is not None and not (isinstance(cap, int | float) and cap > 0):
        raise InputError("cap", f"expected a positive number, got {cap!r}")
    if clip is not None:
        try:
            low, high = (float(c) for c in clip)
        except (TypeError, ValueError):
            raise InputError("clip", f"expected a pair (c_min, c_max), got {clip!r}") from None
        if not 0 <= low < high:
            raise InputError("clip", f"expected 0 <= c_min < c_max, got {clip!r}")
        return (low, high)
    return None


def variance_penalty_term(terms: jax.Array, mask: ArrayLike | None) -> jax.Array:
    """``sqrt(Var_i(terms_i) / B)`` over the (unmasked) events: the POEM / CRM regulariser."""
    mean = masked_mean(terms, mask)
    variance = masked_mean(jnp.square(terms - mean), mask)
    count = terms.shape[0] if mask is None else jnp.maximum(jnp.sum(jnp.asarray(mask, terms.dtype)), 1.0)
    return jnp.sqrt(variance / count + 1e-12)


def ips_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    cap: float | None = None,
    clip: tuple[float, float] | None = None,
    self_normalize: bool = False,
    variance_penalty: float = 0.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Inverse propensity scoring (IPS) policy-gradient surrogate.

    .. math:: L = -\\frac{1}{B} \\sum_i w_i r_i \\log \\pi(a_i|x_i)
        + \\lambda \\sqrt{\\mathrm{Var}_i(\\tilde w_i r_i) / B}

    where ``w`` is :func:`importance_weight` with the given transforms (``self_normalize``
    gives SNIPS) and the optional variance penalty (POEM, ``lambda = variance_penalty``)
    uses ``w~ = pi(a_i|x_i) / p_i`` with the same transforms and *with* gradient.

    Args:
      log_pi: ``[B, A]`` log-probabilities of the policy being learned.
      action: ``[B]`` int logged actions ``a_i``.
      reward: ``[B]`` rewards ``r_i``.
      pscore: ``[B]`` logged propensities ``p_i``.
      cap: cap ``min(w, cap)`` on the weights.
      clip: ``(c_min, c_max)`` clipping of the weights.
      self_normalize: SNIPS: weights divided by their batch mean.
      variance_penalty: ``lambda >= 0`` of the POEM variance penalty.
      mask: optional ``[B]`` weights of the events (0 drops an event).

    Returns:
      Scalar loss; its gradient is minus the IPS policy-gradient estimate (plus the
      penalty's gradient).

    References:
      Williams, *Simple statistical gradient-following algorithms*, 1992;
      Swaminathan & Joachims, *Counterfactual Risk Minimization*, 2015 (penalty, SNIPS);
      Chen et al., *Top-K Off-Policy Correction for a REINFORCE Recommender System*, 2019.

    Example:
      >>> import jax.numpy as jnp
      >>> log_pi = jnp.log(jnp.array([[0.5, 0.5]]))
      >>> float(ips_loss(log_pi, jnp.array([0]), jnp.array([1.0]), jnp.array([0.25])))
      1.3862...
    """
    log_pi, action, reward, pscore = check_batch(log_pi, action, reward, pscore=pscore)
    options = dict(cap=cap, clip=clip, self_normalize=self_normalize, mask=mask)
    log_pi_a = take_logged(log_pi, action)
    w = importance_weight(log_pi_a, pscore, **options)
    loss = -masked_mean(w * reward * log_pi_a, mask)
    if variance_penalty:
        w_with_grad = transform_weights(jnp.exp(log_pi_a) / pscore, **options)
        loss = loss + variance_penalty * variance_penalty_term(w_with_grad * reward, mask)
    return loss


def dr_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike,
    *,
    cap: float | None = None,
    clip: tuple[float, float] | None = None,
    self_normalize: bool = False,
    variance_penalty: float = 0.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Doubly robust (DR) policy-gradient surrogate.

    .. math::
      L = -\\frac{1}{B} \\sum_i \\Big[ w_i (r_i - \\hat q(x_i, a_i)) \\log \\pi(a_i|x_i)
          + \\sum_a \\mathrm{sg}(\\pi(a|x_i)) \\hat q(x_i, a) \\log \\pi(a|x_i) \\Big]

    Weight options as in :func:`ips_loss`; the variance penalty is taken over the
    per-event DR value terms ``sum_a pi q_hat + w~ (r - q_hat(a_i))``.

    Args:
      log_pi: ``[B, A]`` log-probabilities of the policy.
      action: ``[B]`` int logged actions.
      reward: ``[B]`` rewards.
      pscore: ``[B]`` logged propensities.
      q_hat: ``[B, A]`` reward-model predictions ``q_hat(x_i, a)``; no gradient flows
        into them.
      cap, clip, self_normalize, variance_penalty: as in :func:`ips_loss`.
      mask: optional ``[B]`` event weights.

    References:
      Dudík, Langford & Li, *Doubly Robust Policy Evaluation and Learning*, ICML 2011.
    """
    log_pi, action, reward, pscore = check_batch(log_pi, action, reward, pscore=pscore)
    q_hat = jax.lax.stop_gradient(jnp.asarray(q_hat))
    if q_hat.shape != log_pi.shape:
        raise InputError("q_hat", f"expected shape {log_pi.shape} to match log_pi, got {q_hat.shape}")
    options = dict(cap=cap, clip=clip, self_normalize=self_normalize, mask=mask)
    log_pi_a = take_logged(log_pi, action)
    w = importance_weight(log_pi_a, pscore, **options)
    residual = reward - take_logged(q_hat, action)
    direct = jnp.sum(jax.lax.stop_gradient(jnp.exp(log_pi)) * q_hat * log_pi, axis=-1)
    loss = -masked_mean(w * residual * log_pi_a + direct, mask)
    if variance_penalty:
        w_with_grad = transform_weights(jnp.exp(log_pi_a) / pscore, **options)
        terms = jnp.sum(jnp.exp(log_pi) * q_hat, axis=-1) + w_with_grad * residual
        loss = loss + variance_penalty * variance_penalty_term(terms, mask)
    return loss


def topk_ips_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    k: int,
    cap: float | None = None,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Top-K off-policy correction for a slate of ``k`` draws with replacement from ``pi``.

    .. math::
      \\lambda_K(a|x) = K (1 - \\pi(a|x))^{K-1}, \\quad
      L = -\\frac{1}{B} \\sum_i \\mathrm{sg}(w_i \\lambda_K(a_i|x_i)) r_i \\log \\pi(a_i|x_i)

    The gradient of ``alpha(a|x) = 1 - (1 - pi(a|x))^K``, the probability that ``a`` is in
    the slate, is ``lambda_K grad pi``. ``cap`` bounds the product ``w lambda_K``.
    ``k = 1`` gives exactly :func:`ips_loss`.

    Args:
      log_pi: ``[B, A]`` log-probabilities.
      action: ``[B]`` int logged actions.
      reward: ``[B]`` rewards.
      pscore: ``[B]`` logged propensities.
      k: slate size ``K >= 1``.
      cap: optional cap on ``w * lambda_K``.
      mask: optional ``[B]`` event weights.

    References:
      Chen et al., *Top-K Off-Policy Correction for a REINFORCE Recommender System*,
      WSDM 2019, eq. (6)-(7).
    """
    check_positive_int("k", k)
    log_pi, action, reward, pscore = check_batch(log_pi, action, reward, pscore=pscore)
    log_pi_a = take_logged(log_pi, action)
    pi_a = jax.lax.stop_gradient(jnp.exp(log_pi_a))
    multiplier = k * (1.0 - pi_a) ** (k - 1)
    w = importance_weight(log_pi_a, pscore) * multiplier
    if cap is not None:
        check_weight_options(cap, None)
        w = jnp.minimum(w, cap)
    return -masked_mean(w * reward * log_pi_a, mask)


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
    scores, action, reward, _ = check_batch(scores, action, reward, name="scores")
    bce = optax.sigmoid_binary_cross_entropy(take_logged(scores, action), reward)
    return masked_mean(bce, mask)


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
    log_pi, action, reward, _ = check_batch(log_pi, action, reward)
    return -masked_mean(reward * take_logged(log_pi, action), mask)
