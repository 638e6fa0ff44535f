"""Two-stage off-policy correction (Ma et al., WWW 2020) for a candidate generator and a ranker.

The two-tower model is the candidate generator ``p_theta(a|x)``; a fixed ranker scores
items and picks among the candidates with ``q_rank(a|x, A_cand)``, its softmax restricted
to the candidate set.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import check_batch
from towerjax.losses import importance_weight, score_surrogate
from towerjax.rows import take_logged

__all__ = ["candidate_sets", "two_stage_ips_loss", "two_stage_policy", "two_stage_value"]


def candidate_sets(
    key: jax.Array, log_p: jax.Array, action: jax.Array, *, k: int, num_samples: int
) -> tuple[jax.Array, jax.Array]:
    """Samples ``T`` candidate sets per event: ``k - 1`` draws from ``sg(p)`` plus ``a_i``.

    Draws by inverse CDF (a binary search in each row's cumulative ``p``), at cost
    ``O(B A + B T k log A)``; nothing of size ``[B, T, k, A]`` is built.

    Returns:
      ``items [B, T, k-1]`` (int) and ``member [B, T, k-1]`` (bool): ``member`` is True
      for the first occurrence of each sampled item that is not ``a_i`` itself, so the
      set is ``{a_i} ∪ {items[member]}`` (deduplicated).
    """
    batch, num_items = log_p.shape
    cdf = jnp.cumsum(jnp.exp(jax.lax.stop_gradient(log_p)), axis=-1)
    u = jax.random.uniform(key, (batch, num_samples * (k - 1))) * cdf[:, -1:]
    items = jnp.minimum(jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="right"))(cdf, u), num_items - 1)
    items = items.reshape(batch, num_samples, k - 1).astype(jnp.asarray(action).dtype)
    earlier = jnp.tril(jnp.ones((k - 1, k - 1), bool), -1)
    repeat = jnp.any((items[..., :, None] == items[..., None, :]) & earlier, axis=-1)
    return items, ~repeat & (items != action[:, None, None])


def two_stage_ips_loss(
    key: jax.Array,
    log_p: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    pscore: ArrayLike,
    ranker_scores: ArrayLike,
    *,
    k: int,
    num_samples: int,
    alpha: float | None = None,
    unbiased: bool = False,
    cap: float | None = None,
    clip: tuple[float, float] | None = None,
    self_normalize: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """Two-stage IPS surrogate (2-IPS).

    .. math::
      J_i = \\frac1T \\sum_t q_{rank}(a_i | x_i, A_t) \\Big[ \\log p(a_i|x_i)
            + \\alpha \\sum_{a \\in A_t, a \\ne a_i} \\log p(a|x_i) \\Big],
      \\quad L = -\\frac1B \\sum_i w_i r_i J_i

    where each ``A_t`` is ``k - 1`` draws from ``sg(p)`` with replacement plus ``a_i``,
    deduplicated, and ``q_rank`` (the ranker's softmax within ``A_t``) and ``w`` (with the
    given transforms) carry no gradient. Vectorised over events and samples.

    With ``unbiased=True`` the surrogate is instead the exact score-function gradient of
    the value of the *sampled two-stage policy* ``pi_2``: draw ``k`` items i.i.d. from
    ``p``, deduplicate, and let the ranker pick among them. Its probability is
    ``pi_2(a|x) = k p(a|x) E_S[q_rank(a | {a} ∪ S) / (1 + n_a(S))]`` over the other
    ``k - 1`` draws ``S`` (``n_a(S)`` counts the draws equal to ``a``), so

    .. math::
      J_i = \\frac{k}{T} \\sum_t \\frac{q_{rank}(a_i | x_i, A_t)}{1 + n_{a_i}(S_t)}
            \\Big[ \\log p(a_i|x_i) + \\sum_{s \\in S_t} \\log p(s|x_i) \\Big]

    summing over all ``k - 1`` draws, repeats included. Then ``-E[grad L]`` is
    ``grad V(pi_2)`` exactly (for untransformed weights). Ma et al.'s estimator drops the
    ``k / (1 + n_a)`` factor and damps the other candidates by ``alpha``, trading this
    bias for variance.

    Args:
      key: randomness of the candidate sets.
      log_p: ``[B, A]`` log-probabilities of the candidate generator.
      action: ``[B]`` int logged actions.
      reward: ``[B]`` rewards.
      pscore: ``[B]`` logged propensities.
      ranker_scores: ``[B, A]`` the fixed ranker's scores.
      k: candidate set size (``k - 1`` sampled items plus the logged one); Ma et al. use 30.
      num_samples: ``T`` sampled sets per event; Ma et al. use 100.
      alpha: weight of the other candidates' score terms; default (and Ma et al.'s)
        ``1e-3``. Not used with ``unbiased=True``.
      unbiased: use the unbiased gradient of ``V(pi_2)`` above instead of Ma et al.'s.
      cap, clip, self_normalize: weight transforms as in :func:`towerjax.ips_loss`
        (Ma et al. clip to ``(0.01, 10)`` then self-normalise; self-normalisation carries
        the SNIPS baseline, :func:`towerjax.losses.score_surrogate`).
      mask: optional ``[B]`` event weights.

    References:
      Ma et al., *Off-policy Learning in Two-stage Recommender Systems*, WWW 2020.
    """
    log_p, action, reward, pscore = check_batch(log_p, action, reward, pscore=pscore)
    ranker_scores = jax.lax.stop_gradient(jnp.asarray(ranker_scores))
    if ranker_scores.shape != log_p.shape:
        raise ValueError(
            f"ranker_scores: expected shape {log_p.shape} to match log_p, got {ranker_scores.shape}"
        )
    for name, value in (("k", k), ("num_samples", num_samples)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    if unbiased and alpha is not None:
        raise ValueError("alpha: not used with unbiased=True (every draw's score term has weight 1)")
    alpha = 1e-3 if alpha is None else alpha
    if not alpha >= 0:
        raise ValueError(f"alpha: expected >= 0, got {alpha!r}")
    items, member = candidate_sets(key, log_p, action, k=k, num_samples=num_samples)
    batch = log_p.shape[0]
    rows = jnp.arange(batch)[:, None, None]
    logged_score = jnp.broadcast_to(
        take_logged(ranker_scores, action)[:, None, None], (batch, num_samples, 1)
    )
    other_scores = jnp.where(member, ranker_scores[rows, items], -jnp.inf)
    q_rank = jnp.exp(jax.nn.log_softmax(jnp.concatenate([logged_score, other_scores], -1), axis=-1)[..., 0])
    log_p_a = take_logged(log_p, action)
    if unbiased:
        repeats = jnp.sum(items == action[:, None, None], axis=-1)
        draws = jnp.sum(log_p[rows, items], axis=-1)
        j = k * jnp.mean(q_rank / (1 + repeats) * (log_p_a[:, None] + draws), axis=-1)
    else:
        others = jnp.sum(jnp.where(member, log_p[rows, items], 0.0), axis=-1)
        j = jnp.mean(q_rank * (log_p_a[:, None] + alpha * others), axis=-1)
    w = importance_weight(log_p_a, pscore, cap=cap, clip=clip)
    return score_surrogate(w, reward, j, self_normalize=self_normalize, mask=mask)


def two_stage_policy(log_p: ArrayLike, ranker_scores: ArrayLike, *, k: int) -> jax.Array:
    """``[B, A]`` the two-stage policy: the generator's top ``k`` items, then the ranker's
    softmax among them (zero outside the candidates)."""
    log_p, ranker_scores = jnp.asarray(log_p), jnp.asarray(ranker_scores)
    if ranker_scores.shape != log_p.shape:
        raise ValueError(
            f"ranker_scores: expected shape {log_p.shape} to match log_p, got {ranker_scores.shape}"
        )
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= log_p.shape[-1]:
        raise ValueError(f"k: expected an integer in [1, {log_p.shape[-1]}], got {k!r}")
    _, top = jax.lax.top_k(log_p, k)
    candidate = jnp.zeros(log_p.shape, bool).at[jnp.arange(log_p.shape[0])[:, None], top].set(True)
    return jax.nn.softmax(jnp.where(candidate, ranker_scores, -jnp.inf), axis=-1)


def two_stage_value(
    log_p: ArrayLike, ranker_scores: ArrayLike, expected_reward: ArrayLike, *, k: int
) -> jax.Array:
    """True value ``mean_i sum_a pi_2(a|x_i) q(x_i, a)`` of :func:`two_stage_policy`."""
    pi = two_stage_policy(log_p, ranker_scores, k=k)
    return jnp.mean(jnp.sum(pi * jnp.asarray(expected_reward), axis=-1))
