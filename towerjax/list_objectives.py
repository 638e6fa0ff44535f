"""Surrogate losses whose gradients are the slate estimators' policy gradients (SPEC 10, issue 25).

The learned policy is the Plackett-Luce list policy of the scores ``s(x, .)`` (:mod:`towerjax.list_policy`);
the logs hold lists ``a_i = (a_i1..a_iK)``, per-position rewards ``r_ik`` and the logger's propensities,
and ``V(pi) = E sum_k alpha_k r_k``. Each loss is ``-V_hat`` in score-function form: an importance
weight under ``jax.lax.stop_gradient`` times the reward times the log-probability that the weight's
numerator is, so that ``grad L = -grad V_hat`` with the logger's propensities fixed
(``grad w = w grad log pi``, Williams 1992):

- ``sips``: ``L = -(1/B) sum_i sg(w_i) R_i log pi(a_i | x_i)``, ``R_i = sum_k alpha_k r_ik``;
  with ``self_normalize`` the gradient of ``sum w R / sum w`` (the ``snsips`` estimate), and per
  position for ``snrips`` and ``sniips`` (Swaminathan & Joachims 2015: the self-normalised gradient
  does not reward a policy for moving away from the logged lists, as the plain one can);
- ``rips`` (cascade): ``L = -(1/B) sum_i sum_k alpha_k sg(w_i,1:k) r_ik log pi(a_i1..a_ik | x_i)``;
- ``iips`` (position-based): ``L = -(1/B) sum_i sum_k alpha_k sg(w_ik) r_ik log P_pi(a_ik at k | x_i)``.
  The position marginal has no closed form beyond ``k = 1``, so its gradient is that of the exact
  marginal by enumeration (:func:`logged_position_marginals`, small ``A`` and ``K``: then the identity
  with the IIPS estimate holds exactly), or, with ``key``, an unbiased Monte-Carlo estimate of
  it: ``P(b at k) = E_{a' ~ pi} pi(b | x, a'_1:k-1)``, whose gradient is
  ``E [grad pi(b | x, a'_1:k-1) + pi(b | x, a'_1:k-1) grad log pi(a'_1:k-1 | x)]`` (the sampled prefix's
  log-probability is the score function). The per-position log-probability alone would drop how
  the earlier positions move item ``b``'s chance of reaching position ``k``, and is not the IIPS gradient.
- ``cascade-dr`` (Kiyohara et al., WSDM 2022): the gradient of
  ``mean_i sum_k alpha_k [w_i,1:k (r_ik - q_ik(a_ik)) + w_i,1:k-1 D_ik]``, ``D_ik = sum_b pi(b | x_i, a_i,1:k-1) q_ik(b)``,
  with the reward model ``q`` fixed: the weights in score-function form and the direct term ``D`` through
  ``pi`` (times its prefix weight, itself in score-function form);
- ``naive``: the log-likelihood of clicked items at their positions, no off-policy correction:
  ``L = -(1/B) sum_i sum_k alpha_k r_ik log pi(a_ik | x_i, a_i,1:k-1)``.

The estimators are :mod:`towerjax.evaluation.slate`'s (``sips``, ``snsips``, ``iips``, ``sniips``,
``rips``, ``snrips``, ``cascade-dr``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int, check_temperature
from towerjax.list_policy import (
    exact_position_marginals,
    list_log_prob,
    next_item_log_probs,
    position_log_probs,
    prefix_log_probs,
    sample_lists,
)
from towerjax.losses import score_surrogate
from towerjax.rows import event_mask, masked_mean, safe_ratio

__all__ = [
    "LIST_OBJECTIVES",
    "cascade_dr_list_loss",
    "iips_list_loss",
    "list_objective_loss",
    "logged_position_marginals",
    "naive_list_loss",
    "rips_list_loss",
    "sips_list_loss",
]

LIST_OBJECTIVES = ("sips", "snsips", "iips", "sniips", "rips", "snrips", "cascade-dr", "naive")
"""The list objectives :func:`list_objective_loss` knows, by the estimator whose gradient they follow."""


def _check_slate(scores, lists, rewards, position_weight):
    """Checked ``scores [B, A]``, ``lists [B, K]`` int, ``rewards [B, K]`` and ``alpha [K]``."""
    scores = jnp.asarray(scores)
    if scores.ndim != 2:
        raise InputError("scores", f"expected shape [B, A], got {scores.shape}")
    batch, n_items = scores.shape
    lists = jnp.asarray(lists)
    if lists.ndim != 2 or lists.shape[0] != batch or not 1 <= lists.shape[1] <= n_items:
        raise InputError("lists", f"expected shape ({batch}, K) with 1 <= K <= {n_items}, got {lists.shape}")
    if not jnp.issubdtype(lists.dtype, jnp.integer):
        raise InputError("lists", f"expected integer item indices, got dtype {lists.dtype}")
    rewards = jnp.asarray(rewards)
    if rewards.shape != lists.shape:
        raise InputError("rewards", f"expected shape {lists.shape} to match lists, got {rewards.shape}")
    k = lists.shape[1]
    alpha = jnp.ones(k, scores.dtype) if position_weight is None else jnp.asarray(position_weight)
    if alpha.shape != (k,):
        raise InputError("position_weight", f"expected shape ({k},) to match lists, got {alpha.shape}")
    return scores, lists, rewards, alpha


def _check_pscore(name: str, pscore: ArrayLike, shape: tuple[int, ...]) -> jax.Array:
    pscore = jnp.asarray(pscore)
    if pscore.shape != shape:
        raise InputError(name, f"expected shape {shape} to match lists, got {pscore.shape}")
    return pscore


def _position_surrogate(weight, reward, score, alpha, self_normalize, mask):
    """``-sum_k alpha_k (1/N_k) sum_i m_i sg(c_ik) (r_ik - b_k) score_ik``: ``N_k = sum_i m_i``, ``b_k = 0``; or,
    self-normalised, ``N_k = sum_i m_i c_ik`` and ``b_k = sum_i m_i c_ik r_ik / N_k`` (0 when ``N_k = 0``)."""
    weight = jax.lax.stop_gradient(weight)
    if not self_normalize:
        return -masked_mean(jnp.sum(alpha * weight * reward * score, axis=-1), mask)
    m = event_mask(weight[:, 0], mask)[:, None]
    total = jnp.sum(m * weight, axis=0)  # [K]
    baseline = safe_ratio(jnp.sum(m * weight * reward, axis=0), total)
    return -jnp.sum(alpha * safe_ratio(jnp.sum(m * weight * (reward - baseline) * score, axis=0), total))


def sips_list_loss(
    scores: ArrayLike,
    lists: ArrayLike,
    rewards: ArrayLike,
    pscore: ArrayLike,
    *,
    temperature: float = 1.0,
    position_weight: ArrayLike | None = None,
    self_normalize: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Standard (whole-list) IPS policy-gradient surrogate, and its self-normalised form.

    .. math:: L = -\\frac1B \\sum_i \\mathrm{sg}(w_i) R_i \\log \\pi(a_i | x_i), \\quad
        w_i = \\frac{\\pi(a_i | x_i)}{\\pi_0(a_i | x_i)}, \\quad R_i = \\sum_k \\alpha_k r_{ik}

    ``grad L = -grad SIPS`` (with ``self_normalize``, ``-grad SNSIPS``, through
    :func:`towerjax.losses.score_surrogate`'s baseline).

    Args:
      scores: ``[B, A]`` scores of the policy being learned.
      lists: ``[B, K]`` int logged lists of distinct items.
      rewards: ``[B, K]`` per-position rewards.
      pscore: ``[B]`` the logger's list probabilities ``pi_0(a_i | x_i)``.
      temperature: Plackett-Luce ``tau``.
      position_weight: ``[K]`` ``alpha_k``; default 1.
      self_normalize: the SNSIPS gradient.
      mask: optional ``[B]`` event weights.

    References:
      Swaminathan et al., *Off-policy evaluation for slate recommendation*, NeurIPS 2017 (SIPS);
      Williams 1992 (score function).
    """
    scores, lists, rewards, alpha = _check_slate(scores, lists, rewards, position_weight)
    pscore = _check_pscore("pscore", pscore, lists.shape[:1])
    log_pi = list_log_prob(scores, lists, temperature)
    w = jnp.exp(jax.lax.stop_gradient(log_pi)) / pscore
    return score_surrogate(w, rewards @ alpha, log_pi, self_normalize=self_normalize, mask=mask)


def rips_list_loss(
    scores: ArrayLike,
    lists: ArrayLike,
    rewards: ArrayLike,
    pscore_cascade: ArrayLike,
    *,
    temperature: float = 1.0,
    position_weight: ArrayLike | None = None,
    self_normalize: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Reward-interaction (cascade) IPS surrogate: prefix weights, prefix log-probabilities.

    .. math:: L = -\\frac1B \\sum_i \\sum_k \\alpha_k \\mathrm{sg}(w_{i,1:k}) r_{ik}
        \\log \\pi(a_{i1}..a_{ik} | x_i), \\quad w_{i,1:k} = \\frac{\\pi(a_{i,1:k} | x_i)}{\\pi_0(a_{i,1:k} | x_i)}

    ``grad L = -grad RIPS``; with ``self_normalize``, ``-grad SNRIPS`` (each position normalised by
    ``sum_i w_i,1:k`` with its baseline, as :mod:`towerjax.evaluation.slate` defines ``snrips``).

    Args:
      scores, lists, rewards, temperature, position_weight, self_normalize, mask: as :func:`sips_list_loss`.
      pscore_cascade: ``[B, K]`` the logger's prefix probabilities ``pi_0(a_i1..a_ik | x_i)``.

    References:
      McInerney et al., *Counterfactual evaluation of slate recommendations with sequential reward
      interactions*, KDD 2020.
    """
    scores, lists, rewards, alpha = _check_slate(scores, lists, rewards, position_weight)
    pscore_cascade = _check_pscore("pscore_cascade", pscore_cascade, lists.shape)
    log_prefix = prefix_log_probs(scores, lists, temperature)  # [B, K]
    w = jnp.exp(jax.lax.stop_gradient(log_prefix)) / pscore_cascade
    return _position_surrogate(w, rewards, log_prefix, alpha, self_normalize, mask)


def logged_position_marginals(
    scores: ArrayLike,
    lists: ArrayLike,
    temperature: float = 1.0,
    *,
    key: jax.Array | None = None,
    n_samples: int = 64,
) -> jax.Array:
    """``[B, K]`` ``P_pi(a_ik at k | x_i)``, differentiable in ``scores``: exact, or sampled with ``key``.

    Without ``key``: the exact marginals by enumeration
    (:func:`towerjax.list_policy.exact_position_marginals`; memory ``[B, A! / (A - K)!]``).
    With ``key``: the Rao-Blackwellised estimate from ``S = n_samples`` lists ``a'^s ~ pi``,

    .. math:: \\hat P_{ik} = \\frac1S \\sum_s \\pi(a_{ik} | x_i, a'^s_{1:k-1}), \\quad
        \\nabla \\hat P_{ik} = \\frac1S \\sum_s \\big[\\nabla \\pi(a_{ik} | x_i, a'^s_{1:k-1})
        + \\pi(a_{ik} | x_i, a'^s_{1:k-1}) \\nabla \\log \\pi(a'^s_{1:k-1} | x_i)\\big]

    value and gradient both unbiased (the second term is the score function of the sampled prefix,
    carried by ``sg(p) (log pi - sg(log pi))``, which is 0 in value).
    """
    scores = jnp.asarray(scores)
    lists = jnp.asarray(lists)
    k = lists.shape[1]
    check_temperature(temperature)
    if key is None:
        marginals = exact_position_marginals(scores, k, temperature)  # [B, K, A]
        return jnp.take_along_axis(marginals, lists[..., None], axis=-1)[..., 0]
    n_samples = check_positive_int("n_samples", n_samples)

    def one_sample(sample_key):  # [B, K]: pi(a_ik | x_i, a'_1:k-1) with the prefix's score function
        sampled = jax.lax.stop_gradient(sample_lists(sample_key, scores, k, temperature))
        log_next = next_item_log_probs(scores, sampled, temperature)  # [B, K, A]
        p = jnp.exp(jnp.take_along_axis(log_next, lists[..., None], axis=-1)[..., 0])
        log_position = jnp.take_along_axis(log_next, sampled[..., None], axis=-1)[..., 0]
        log_before = jnp.cumsum(log_position, axis=-1) - log_position  # log pi(a'_1:k-1 | x), 0 at k = 1
        return p + jax.lax.stop_gradient(p) * (log_before - jax.lax.stop_gradient(log_before))

    return jnp.mean(jax.lax.map(one_sample, jax.random.split(key, n_samples)), axis=0)


def iips_list_loss(
    scores: ArrayLike,
    lists: ArrayLike,
    rewards: ArrayLike,
    pscore_item_position: ArrayLike,
    *,
    temperature: float = 1.0,
    position_weight: ArrayLike | None = None,
    key: jax.Array | None = None,
    n_samples: int = 64,
    self_normalize: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Independent (position-based) IPS surrogate: position-marginal weights and log-marginals.

    .. math:: L = -\\frac1B \\sum_i \\sum_k \\alpha_k \\mathrm{sg}(w_{ik}) r_{ik} \\log P_\\pi(a_{ik} \\text{ at } k | x_i),
        \\quad w_{ik} = \\frac{P_\\pi(a_{ik} \\text{ at } k | x_i)}{P_{\\pi_0}(a_{ik} \\text{ at } k | x_i)}

    ``grad L = -grad IIPS`` with the exact marginals (no ``key``, small ``A`` and ``K``); with ``key``
    the marginals and their gradient are the unbiased estimates of :func:`logged_position_marginals`
    (``sg(w) grad log P_hat = grad P_hat / p``, so the loss is ``-(1/B) sum alpha r P_hat / p`` in gradient).
    With ``self_normalize``, ``-grad SNIIPS`` (each position normalised by ``sum_i w_ik``, with its baseline).

    Args:
      scores, lists, rewards, temperature, position_weight, self_normalize, mask: as :func:`sips_list_loss`.
      pscore_item_position: ``[B, K]`` the logger's position marginals ``P_pi0(a_ik at k | x_i)``.
      key: ``jax.random.key`` for sampled marginals; ``None`` enumerates every list.
      n_samples: lists sampled per row with ``key``.

    References:
      Li et al., *Offline evaluation of ranking policies with click models*, KDD 2018.
    """
    scores, lists, rewards, alpha = _check_slate(scores, lists, rewards, position_weight)
    pscore_item_position = _check_pscore("pscore_item_position", pscore_item_position, lists.shape)
    marginal = logged_position_marginals(scores, lists, temperature, key=key, n_samples=n_samples)
    w = jax.lax.stop_gradient(marginal) / pscore_item_position
    log_marginal = jnp.log(jnp.maximum(marginal, jnp.finfo(marginal.dtype).tiny))
    if key is not None:  # grad log P_hat = grad P_hat / P_hat; keep it finite where P_hat is 0
        safe = jax.lax.stop_gradient(jnp.maximum(marginal, jnp.finfo(marginal.dtype).tiny))
        log_marginal = marginal / safe
    return _position_surrogate(w, rewards, log_marginal, alpha, self_normalize, mask)


def cascade_dr_list_loss(
    scores: ArrayLike,
    lists: ArrayLike,
    rewards: ArrayLike,
    pscore_cascade: ArrayLike,
    q_hat: ArrayLike,
    *,
    temperature: float = 1.0,
    position_weight: ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Cascade doubly robust surrogate: ``grad L = -grad`` of the cascade-DR estimate, ``pi_0`` and ``q_hat`` fixed.

    .. math:: \\hat V = \\frac1B \\sum_i \\sum_k \\alpha_k \\big[w_{i,1:k} (r_{ik} - \\hat q_{ik}(a_{ik}))
        + w_{i,1:k-1} D_{ik}\\big], \\quad D_{ik} = \\sum_b \\pi(b | x_i, a_{i,1:k-1}) \\hat q_{ik}(b)

    .. math:: L = -\\frac1B \\sum_i \\sum_k \\alpha_k \\big[\\mathrm{sg}(w_{i,1:k}) (r_{ik} - \\hat q_{ik}(a_{ik}))
        \\log \\pi(a_{i,1:k} | x_i) + \\mathrm{sg}(w_{i,1:k-1}) (\\mathrm{sg}(D_{ik}) \\log \\pi(a_{i,1:k-1} | x_i)
        + D_{ik})\\big]

    ``w_i,1:k`` the prefix weights (``w_i,1:0 = 1``, ``log pi(a_i,1:0) = 0``): ``grad w = w grad log pi``
    (score function) and ``D`` carries the gradient of the policy's next-item distribution.

    Args:
      scores, lists, rewards, temperature, position_weight, mask: as :func:`sips_list_loss`.
      pscore_cascade: ``[B, K]`` the logger's prefix probabilities ``pi_0(a_i1..a_ik | x_i)``.
      q_hat: ``[B, K, A]`` ``q_hat_k(x_i, b)``, the reward model of item ``b`` at position ``k`` after the
        logged prefix (cross-fitted, :class:`towerjax.slate_reward_model.SlateRewardModel`).

    References:
      Kiyohara et al., *Doubly robust off-policy evaluation for ranking policies under the cascade
      behavior model*, WSDM 2022.
    """
    scores, lists, rewards, alpha = _check_slate(scores, lists, rewards, position_weight)
    pscore_cascade = _check_pscore("pscore_cascade", pscore_cascade, lists.shape)
    q_hat = _check_pscore("q_hat", q_hat, (*lists.shape, scores.shape[1]))
    log_next = next_item_log_probs(scores, lists, temperature)  # [B, K, A]
    log_position = jnp.take_along_axis(log_next, lists[..., None], axis=-1)[..., 0]
    log_prefix = jnp.cumsum(log_position, axis=-1)  # log pi(a_1:k)
    log_above = log_prefix - log_position  # log pi(a_1:k-1), 0 at k = 1
    w = jax.lax.stop_gradient(jnp.exp(log_prefix) / pscore_cascade)  # w_1:k
    w_above = jnp.concatenate([jnp.ones_like(w[:, :1]), w[:, :-1]], axis=1)  # w_1:k-1
    q_logged = jnp.take_along_axis(q_hat, lists[..., None], axis=-1)[..., 0]
    direct = jnp.sum(jnp.exp(log_next) * q_hat, axis=-1)  # D_ik, through pi
    per_position = w * (rewards - q_logged) * log_prefix + w_above * (
        jax.lax.stop_gradient(direct) * log_above + direct
    )
    return -masked_mean(per_position @ alpha, mask)


def naive_list_loss(
    scores: ArrayLike,
    lists: ArrayLike,
    rewards: ArrayLike,
    *,
    temperature: float = 1.0,
    position_weight: ArrayLike | None = None,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Naive list learner: the log-likelihood of clicked items at their positions, no correction.

    .. math:: L = -\\frac1B \\sum_i \\sum_k \\alpha_k r_{ik} \\log \\pi(a_{ik} | x_i, a_{i,1:k-1})

    The baseline: it imitates the clicked part of the logger's lists, so it is biased towards the
    logging policy (like :func:`towerjax.losses.naive_loss` for one action).
    """
    scores, lists, rewards, alpha = _check_slate(scores, lists, rewards, position_weight)
    log_position = position_log_probs(scores, lists, temperature)
    return -masked_mean(jnp.sum(alpha * rewards * log_position, axis=-1), mask)


def list_objective_loss(
    name: str,
    scores: ArrayLike,
    lists: ArrayLike,
    rewards: ArrayLike,
    *,
    pscore: ArrayLike | None = None,
    pscore_item_position: ArrayLike | None = None,
    pscore_cascade: ArrayLike | None = None,
    temperature: float = 1.0,
    position_weight: ArrayLike | None = None,
    key: jax.Array | None = None,
    n_samples: int = 64,
    mask: ArrayLike | None = None,
    q_hat: ArrayLike | None = None,
) -> jax.Array:
    """The loss of the objective ``name`` in :data:`LIST_OBJECTIVES`, given the propensities it needs.

    ``sips``/``snsips`` take ``pscore``, ``rips``/``snrips`` ``pscore_cascade``, ``iips``/``sniips``
    ``pscore_item_position``
    (``key`` samples its marginals from ``n_samples`` lists a row; ``None`` enumerates), ``cascade-dr``
    ``pscore_cascade`` and the reward model ``q_hat [B, K, A]``, ``naive`` none.
    """
    common = {"temperature": temperature, "position_weight": position_weight, "mask": mask}
    propensity = {"sips": "pscore", "rips": "pscore_cascade", "iips": "pscore_item_position"}
    given = {"pscore": pscore, "pscore_cascade": pscore_cascade, "pscore_item_position": pscore_item_position}
    if name not in LIST_OBJECTIVES:
        raise InputError("name", f"expected one of {LIST_OBJECTIVES}, got {name!r}")
    if name == "naive":
        return naive_list_loss(scores, lists, rewards, **common)
    if name == "cascade-dr":
        for argument, value in (("pscore_cascade", pscore_cascade), ("q_hat", q_hat)):
            if value is None:
                raise InputError(argument, f"expected it for {name!r}")
        return cascade_dr_list_loss(scores, lists, rewards, pscore_cascade, q_hat, **common)
    self_normalize = name.startswith("sn")
    base = name[2:] if self_normalize else name
    if given[propensity[base]] is None:
        raise InputError(propensity[base], f"expected the logger's propensities for {name!r}")
    common["self_normalize"] = self_normalize
    if base == "sips":
        return sips_list_loss(scores, lists, rewards, pscore, **common)
    if base == "rips":
        return rips_list_loss(scores, lists, rewards, pscore_cascade, **common)
    return iips_list_loss(
        scores, lists, rewards, pscore_item_position, key=key, n_samples=n_samples, **common
    )
