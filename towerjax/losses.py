"""Surrogate losses whose gradients are policy-gradient estimators (SPEC 3, 4 and 7).

Each loss is a pure function of arrays for one batch. Its gradient with respect to the
tower parameters (through ``log_pi`` or ``scores``) equals minus the gradient of the named
value estimate ``V_hat(pi)``. The importance weight

.. math:: w_i = \\mathrm{sg}(\\pi(a_i|x_i)) / p_i

is computed in :func:`importance_weight`, the one place where ``stop_gradient`` holds
the policy's probability out of the gradient. Every score-function surrogate has the form

.. math:: L = -\\frac{1}{N} \\sum_i \\mathrm{sg}(c_i) (t_i - b) \\log \\pi(a_i|x_i)

(:func:`score_surrogate`): ``c_i`` the estimator's weight (``w_i`` for IPS), ``t_i`` its
target (``r_i``, or the residual ``r_i - q_hat(x_i, a_i)`` for the doubly robust family),
``N = B`` or, self-normalised, ``N = sum_j c_j`` with the baseline ``b = sum_j c_j t_j / N``
(the SNIPS gradient; 0 when every weight is 0, never NaN). Capping and clipping put the
capped weight inside the gradient (Chen et al., Ma et al.): this is *not* the gradient of
any unbiased estimate; it is biased toward the logging policy, and the bias does not
shrink with the batch size.

Every loss takes an optional keyword ``mask`` ``[B]`` (1 for real events, 0 for padding);
the mean is then over the real events only, so a final partial batch counts exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from towerjax.checks import (
    InputError,
    check_batch,
    check_positive,
    check_positive_int,
)
from towerjax.rows import event_mask, masked_mean, take_logged

__all__ = [
    "BASELINES",
    "dr_loss",
    "dr_os_loss",
    "entropy_bonus",
    "importance_weight",
    "ips_loss",
    "kl_to_logging",
    "log_smoothing_ips_loss",
    "naive_loss",
    "regression_loss",
    "score_surrogate",
    "subgaussian_ips_loss",
    "switch_dr_loss",
    "topk_ips_loss",
    "transform_weights",
    "weighted_regression_loss",
]

BASELINES = ("optimal",)  # named baselines of ips_loss besides a number (BanditNet's lambda)


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
    division by the batch mean ``w / mean_j w_j`` (0 when every weight is 0). The
    normalised weight alone is not the SNIPS gradient: the losses add its baseline
    (:func:`score_surrogate`).

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
    """Caps or clips ``[B]`` weights, then divides them by their mean (see :func:`importance_weight`)."""
    check_weight_options(cap, clip)
    if cap is not None:
        w = jnp.minimum(w, cap)
    if clip is not None:
        w = jnp.clip(w, clip[0], clip[1])
    if self_normalize:
        w = _safe_divide(w, masked_mean(w, mask))
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


def check_baseline(baseline: float | str | None, self_normalize: bool = False) -> float | str | None:
    """Checks a baseline: ``None``, a finite number (BanditNet's ``lambda``) or ``"optimal"``."""
    if baseline is None:
        return None
    if self_normalize:
        raise InputError(
            "baseline", "self-normalisation brings its own baseline (V_SN); give one or the other"
        )
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            try:
                baseline = float(baseline)
            except ValueError:
                raise InputError(
                    "baseline", f"expected a number or one of {BASELINES}, got {baseline!r}"
                ) from None
        else:
            return baseline
    if isinstance(baseline, bool) or not isinstance(baseline, int | float) or not math.isfinite(baseline):
        raise InputError("baseline", f"expected a finite number or one of {BASELINES}, got {baseline!r}")
    return float(baseline)


def _safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, and 0 where ``denominator`` is 0 (no NaN, no NaN gradient)."""
    positive = denominator != 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def score_surrogate(
    weight: jax.Array,
    target: jax.Array,
    score: jax.Array,
    *,
    self_normalize: bool = False,
    baseline: float | str | None = None,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """The score-function surrogate ``-(1/N) sum_i m_i sg(c_i) (t_i - b) score_i``.

    ``N = sum_i m_i`` (the batch mean) and ``b = 0`` by default. With ``self_normalize``,
    ``N = sum_j m_j c_j`` and ``b = sum_j m_j c_j t_j / N``: the gradient of the
    self-normalised estimate ``sum c t / sum c`` (Swaminathan & Joachims 2015, SPEC 4);
    ``N = 0`` gives 0. ``baseline`` a number ``lambda`` is BanditNet's translation
    ``t - lambda`` (Joachims et al. 2018); ``"optimal"`` is the variance-reducing
    ``b = sum c^2 t / sum c^2`` (Gupta et al. 2024, without the ``||grad log pi||^2`` factor).
    A constant baseline leaves the expected gradient of an unbiased estimator unchanged.

    Args:
      weight: ``[B]`` the estimator's weights ``c_i`` (held out of the gradient here).
      target: ``[B]`` what they weigh: rewards, or doubly robust residuals.
      score: ``[B]`` the term that carries the gradient, e.g. ``log pi(a_i|x_i)``.
      self_normalize: normalise by the weights' sum, with its baseline.
      baseline: ``None``, a number, or ``"optimal"``; not with ``self_normalize``.
      mask: optional ``[B]`` event weights (0 drops an event).
    """
    baseline = check_baseline(baseline, self_normalize)
    weight = jax.lax.stop_gradient(weight)
    target = jax.lax.stop_gradient(target)
    if not self_normalize and baseline is None:  # the plain batch mean
        return -masked_mean(weight * target * score, mask)
    m = event_mask(weight, mask)
    if self_normalize:
        total = jnp.sum(m * weight)
        b = _safe_divide(jnp.sum(m * weight * target), total)
    else:
        total = jnp.sum(m)
        if baseline == "optimal":
            b = _safe_divide(jnp.sum(m * weight**2 * target), jnp.sum(m * weight**2))
        else:
            b = 0.0 if baseline is None else baseline
    return -_safe_divide(jnp.sum(m * weight * (target - b) * score), total)


def variance_penalty_term(terms: jax.Array, mask: ArrayLike | None) -> jax.Array:
    """``sqrt(Var_i(terms_i) / B)`` with the sample variance (``ddof = 1``): the POEM / CRM regulariser.

    0 for fewer than two (unmasked) events.
    """
    m = event_mask(terms, mask)
    count = jnp.sum(m)
    mean = _safe_divide(jnp.sum(m * terms), count)
    variance = _safe_divide(jnp.sum(m * jnp.square(terms - mean)), count - 1.0) * (count > 1)
    return jnp.sqrt(_safe_divide(variance, count) + 1e-12)


def ips_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    cap: float | None = None,
    clip: tuple[float, float] | None = None,
    self_normalize: bool = False,
    baseline: float | str | None = None,
    variance_penalty: float = 0.0,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Inverse propensity scoring (IPS) policy-gradient surrogate, and SNIPS.

    .. math:: L = -\\frac{1}{B} \\sum_i w_i (r_i - b) \\log \\pi(a_i|x_i)
        + \\lambda \\sqrt{\\mathrm{Var}_i(\\tilde w_i r_i) / B}

    ``w`` is :func:`importance_weight` after ``cap``/``clip``. With ``self_normalize`` it
    is SNIPS, ``L = -sum_i w_i (r_i - V_SN) log pi_i / sum_j w_j`` with
    ``V_SN = sum w r / sum w``: the gradient of the SNIPS estimate (0 when every weight is
    0). ``baseline`` (``b``): BanditNet's ``lambda`` or ``"optimal"``
    (:func:`score_surrogate`). The optional variance penalty (POEM,
    ``lambda = variance_penalty``, sample variance) uses ``w~ = pi(a_i|x_i) / p_i`` with
    the same cap/clip and *with* gradient.

    Args:
      log_pi: ``[B, A]`` log-probabilities of the policy being learned.
      action: ``[B]`` int logged actions ``a_i``.
      reward: ``[B]`` rewards ``r_i``.
      pscore: ``[B]`` logged propensities ``p_i``.
      cap: cap ``min(w, cap)`` on the weights (biased toward the logging policy).
      clip: ``(c_min, c_max)`` clipping of the weights (likewise biased).
      self_normalize: SNIPS.
      baseline: ``None``, a number (BanditNet's translation) or ``"optimal"``.
      variance_penalty: ``lambda >= 0`` of the POEM variance penalty.
      mask: optional ``[B]`` weights of the events (0 drops an event).

    Returns:
      Scalar loss; without cap/clip its gradient is minus the gradient of the IPS (or
      SNIPS) estimate (plus the penalty's gradient).

    References:
      Williams, *Simple statistical gradient-following algorithms*, 1992;
      Swaminathan & Joachims, *Counterfactual Risk Minimization*, 2015 (penalty);
      Swaminathan & Joachims, *The Self-Normalized Estimator for Counterfactual Learning*, 2015;
      Joachims, Swaminathan & de Rijke, *Deep Learning with Logged Bandit Feedback*, ICLR 2018;
      Chen et al., *Top-K Off-Policy Correction for a REINFORCE Recommender System*, 2019.

    Example:
      >>> import jax.numpy as jnp
      >>> log_pi = jnp.log(jnp.array([[0.5, 0.5]]))
      >>> float(ips_loss(log_pi, jnp.array([0]), jnp.array([1.0]), jnp.array([0.25])))
      1.3862...
    """
    log_pi, action, reward, pscore = check_batch(log_pi, action, reward, pscore=pscore)
    log_pi_a = take_logged(log_pi, action)
    w = importance_weight(log_pi_a, pscore, cap=cap, clip=clip)
    loss = score_surrogate(w, reward, log_pi_a, self_normalize=self_normalize, baseline=baseline, mask=mask)
    if variance_penalty:
        w_with_grad = transform_weights(jnp.exp(log_pi_a) / pscore, cap=cap, clip=clip)
        loss = loss + variance_penalty * variance_penalty_term(w_with_grad * reward, mask)
    return loss


def _dr_parts(log_pi, action, reward, pscore, q_hat):
    """Checked DR inputs: ``log_pi_a [B]``, raw weights ``w [B]``, residuals ``[B]``, ``q_hat [B, A]``."""
    log_pi, action, reward, pscore = check_batch(log_pi, action, reward, pscore=pscore)
    q_hat = jax.lax.stop_gradient(jnp.asarray(q_hat))
    if q_hat.shape != log_pi.shape:
        raise InputError("q_hat", f"expected shape {log_pi.shape} to match log_pi, got {q_hat.shape}")
    log_pi_a = take_logged(log_pi, action)
    return log_pi, log_pi_a, importance_weight(log_pi_a, pscore), reward - take_logged(q_hat, action), q_hat


def _direct_surrogate(log_pi: jax.Array, q_hat: jax.Array, mask: ArrayLike | None) -> jax.Array:
    """``-(1/B) sum_i sum_a sg(pi(a|x_i)) q_hat(x_i, a) log pi(a|x_i)``: minus the DM gradient."""
    return -masked_mean(jnp.sum(jax.lax.stop_gradient(jnp.exp(log_pi)) * q_hat * log_pi, axis=-1), mask)


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
    """Doubly robust (DR) policy-gradient surrogate, and self-normalised DR (SN-DR).

    .. math::
      L = -\\frac{1}{B} \\sum_i \\Big[ w_i (r_i - \\hat q(x_i, a_i)) \\log \\pi(a_i|x_i)
          + \\sum_a \\mathrm{sg}(\\pi(a|x_i)) \\hat q(x_i, a) \\log \\pi(a|x_i) \\Big]

    With ``self_normalize`` the residual term is self-normalised with its baseline
    (:func:`score_surrogate`): the gradient of SN-DR, ``mean_i dm_i + sum w res / sum w``.
    Cap and clip as in :func:`ips_loss`; the variance penalty is taken over the
    per-event DR value terms ``sum_a pi q_hat + w~ (r - q_hat(a_i))``.

    Args:
      log_pi: ``[B, A]`` log-probabilities of the policy.
      action: ``[B]`` int logged actions.
      reward: ``[B]`` rewards.
      pscore: ``[B]`` logged propensities.
      q_hat: ``[B, A]`` reward-model predictions ``q_hat(x_i, a)``; no gradient flows
        into them. Fit them on other rows (cross-fitting, SPEC 3).
      cap, clip, self_normalize, variance_penalty: as in :func:`ips_loss`.
      mask: optional ``[B]`` event weights.

    References:
      Dudík, Langford & Li, *Doubly Robust Policy Evaluation and Learning*, ICML 2011.
    """
    log_pi, log_pi_a, w, residual, q_hat = _dr_parts(log_pi, action, reward, pscore, q_hat)
    w = transform_weights(w, cap=cap, clip=clip)
    if self_normalize:
        loss = _direct_surrogate(log_pi, q_hat, mask) + score_surrogate(
            w, residual, log_pi_a, self_normalize=True, mask=mask
        )
    else:
        direct = jnp.sum(jax.lax.stop_gradient(jnp.exp(log_pi)) * q_hat * log_pi, axis=-1)
        loss = -masked_mean(w * residual * log_pi_a + direct, mask)
    if variance_penalty:
        w_with_grad = transform_weights(jnp.exp(log_pi_a) / pscore, cap=cap, clip=clip)
        terms = jnp.sum(jnp.exp(log_pi) * q_hat, axis=-1) + w_with_grad * residual
        loss = loss + variance_penalty * variance_penalty_term(terms, mask)
    return loss


def switch_dr_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike,
    *,
    threshold: float,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Switch-DR surrogate: DR's residual term only where ``w_i <= threshold``.

    .. math:: \\hat V = \\frac1B \\sum_i \\big[ dm_i + 1[w_i \\le \\tau] w_i (r_i - \\hat q(x_i, a_i)) \\big]

    The indicator is piecewise constant in the parameters, so the gradient of the
    estimate is DR's with the switched-off residual terms removed.

    References:
      Wang, Agarwal & Dudík, *Optimal and Adaptive Off-policy Evaluation in Contextual
      Bandits*, ICML 2017.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not threshold > 0:
        raise InputError("threshold", f"expected a positive number (inf: DR), got {threshold!r}")
    log_pi, log_pi_a, w, residual, q_hat = _dr_parts(log_pi, action, reward, pscore, q_hat)
    c = jnp.where(w <= threshold, w, 0.0)
    return _direct_surrogate(log_pi, q_hat, mask) + score_surrogate(c, residual, log_pi_a, mask=mask)


def dr_os_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    q_hat: ArrayLike,
    *,
    shrinkage: float,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """DR with optimistic shrinkage (DR-OS): the gradient of ``mean_i [dm_i + w~_i res_i]``.

    .. math:: \\tilde w = \\frac{\\lambda w}{w^2 + \\lambda}, \\quad
      \\frac{\\partial \\tilde w}{\\partial \\theta}
        = \\frac{\\lambda w (\\lambda - w^2)}{(w^2 + \\lambda)^2} \\nabla \\log \\pi(a_i|x_i)

    so the residual term's weight is ``lambda w (lambda - w^2) / (w^2 + lambda)^2``
    (negative where ``w > sqrt(lambda)``: shrinkage there lowers the weight as ``pi`` grows).

    References:
      Su, Dimakopoulou, Krishnamurthy & Dudík, *Doubly Robust Off-policy Evaluation with
      Shrinkage*, ICML 2020.
    """
    check_positive("shrinkage", shrinkage)
    log_pi, log_pi_a, w, residual, q_hat = _dr_parts(log_pi, action, reward, pscore, q_hat)
    c = shrinkage * w * (shrinkage - w**2) / jnp.square(w**2 + shrinkage)
    return _direct_surrogate(log_pi, q_hat, mask) + score_surrogate(c, residual, log_pi_a, mask=mask)


def _ips_parts(log_pi, action, reward, pscore):
    """Checked IPS inputs: ``log_pi_a [B]``, raw weights ``w [B]`` (no gradient), rewards ``[B]``."""
    log_pi, action, reward, pscore = check_batch(log_pi, action, reward, pscore=pscore)
    log_pi_a = take_logged(log_pi, action)
    return log_pi_a, importance_weight(log_pi_a, pscore), reward


def subgaussian_ips_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    lam: float,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Sub-Gaussian IPS (harmonic weight correction): the gradient of ``mean_i w~_i r_i``.

    .. math:: \\tilde w = \\frac{w}{1 - \\lambda + \\lambda w}, \\quad
      \\frac{\\partial \\tilde w}{\\partial \\theta}
        = \\frac{(1 - \\lambda) w}{(1 - \\lambda + \\lambda w)^2} \\nabla \\log \\pi(a_i|x_i)

    ``lam = 0`` is IPS.

    References:
      Metelli, Russo & Restelli, *Subgaussian and Differentiable Importance Sampling for
      Off-Policy Evaluation and Learning*, NeurIPS 2021.
    """
    check_unit_interval("lam", lam)
    log_pi_a, w, reward = _ips_parts(log_pi, action, reward, pscore)
    c = (1.0 - lam) * w / jnp.square(1.0 - lam + lam * w)
    return score_surrogate(c, reward, log_pi_a, mask=mask)


def log_smoothing_ips_loss(
    log_pi: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    lam: float,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """IPS with logarithmic smoothing: the gradient of ``mean_i log(1 + lam w_i r_i) / lam``.

    .. math:: \\nabla \\hat V = \\frac1B \\sum_i \\frac{w_i r_i}{1 + \\lambda w_i r_i} \\nabla \\log \\pi(a_i|x_i)

    Pessimistic (never above IPS) for rewards in ``[0, 1]``; ``lam -> 0`` is IPS.

    References:
      Sakhi, Aouali, Alquier & Chopin, *Logarithmic Smoothing for Pessimistic Off-Policy
      Evaluation, Selection and Learning*, NeurIPS 2024.
    """
    check_positive("lam", lam)
    log_pi_a, w, reward = _ips_parts(log_pi, action, reward, pscore)
    c = w / (1.0 + lam * w * reward)
    return score_surrogate(c, reward, log_pi_a, mask=mask)


def check_unit_interval(name: str, value) -> float:
    """``value`` in ``[0, 1]``, else an :class:`~towerjax.checks.InputError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InputError(name, f"expected a number in [0, 1], got {value!r}")
    return float(value)


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


def weighted_regression_loss(
    scores: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    *,
    cap: float | None = None,
    clip: tuple[float, float] | None = None,
    self_normalize: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Propensity-weighted regression: BCE of the logged score weighted by ``1 / p_i``.

    .. math:: L = \\frac{1}{N} \\sum_i c_i \\, \\mathrm{BCE}(\\sigma(s(x_i, a_i)), r_i), \\quad c_i = 1 / p_i

    with ``c`` capped or clipped as the importance weights are, and ``N = B`` or, with
    ``self_normalize``, ``N = sum_i c_i``. The weights make the fitted scores estimate
    ``q(x, a)`` under a uniform spread of items rather than the logging policy's
    (missing-not-at-random correction); the policy is ``softmax(s / tau)`` as for
    :func:`regression_loss`.

    Args:
      scores: ``[B, A]`` raw two-tower scores (logits).
      action: ``[B]`` int logged actions.
      reward: ``[B]`` rewards in ``[0, 1]``.
      pscore: ``[B]`` logged propensities.
      cap, clip, self_normalize: transforms of ``1 / p``.
      mask: optional ``[B]`` event weights.

    References:
      Schnabel et al., *Recommendations as Treatments: Debiasing Learning and Evaluation*,
      ICML 2016.
    """
    scores, action, reward, pscore = check_batch(scores, action, reward, pscore=pscore, name="scores")
    c = jax.lax.stop_gradient(transform_weights(1.0 / pscore, cap=cap, clip=clip))
    bce = optax.sigmoid_binary_cross_entropy(take_logged(scores, action), reward)
    m = event_mask(c, mask)
    return _safe_divide(jnp.sum(m * c * bce), jnp.sum(m * c) if self_normalize else jnp.sum(m))


def entropy_bonus(log_pi: ArrayLike, *, mask: ArrayLike | None = None) -> jax.Array:
    """``-mean_i H(pi(.|x_i))`` with ``H = -sum_a pi log pi``: add ``beta`` times it to a loss
    to keep the policy from collapsing onto one item (gradient through ``pi``)."""
    log_pi = jnp.asarray(log_pi)
    entropy = -jnp.sum(jnp.exp(log_pi) * log_pi, axis=-1)
    return -masked_mean(entropy, mask)


def kl_to_logging(log_pi: ArrayLike, pi_b: ArrayLike, *, mask: ArrayLike | None = None) -> jax.Array:
    """``mean_i KL(pi(.|x_i) || pi_0(.|x_i))``: a trust region toward the logging policy.

    .. math:: \\mathrm{KL} = \\sum_a \\pi(a|x) (\\log \\pi(a|x) - \\log \\pi_0(a|x))

    ``pi_0`` is floored at ``1e-8`` (a deterministic logging policy's zeros would make the KL
    infinite; the floor keeps it finite and still pushes mass back onto logged actions).
    With a uniform ``pi_0`` it is the entropy bonus plus ``log A``. No gradient flows into
    ``pi_b``.

    Args:
      log_pi: ``[B, A]`` the policy's log-probabilities.
      pi_b: ``[B, A]`` the logging policy's distribution (known, or a behaviour head's).
      mask: optional ``[B]`` event weights.
    """
    log_pi = jnp.asarray(log_pi)
    pi_b = jax.lax.stop_gradient(jnp.asarray(pi_b))
    if pi_b.shape != log_pi.shape:
        raise InputError("pi_b", f"expected shape {log_pi.shape} to match log_pi, got {pi_b.shape}")
    kl = jnp.sum(jnp.exp(log_pi) * (log_pi - jnp.log(jnp.maximum(pi_b, 1e-8))), axis=-1)
    return masked_mean(kl, mask)


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
