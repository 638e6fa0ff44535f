"""Ranking metrics of recommended lists against binary relevance labels.

Each user ``u`` has a ranked list of item indices (best first) and binary labels
``y(u, i)`` over all items; ``R_u = {i : y(u, i) = 1}`` are the user's relevant items and
``y_j`` is the label of the item at rank ``j`` (``j = 1, 2, ...``). The per-user metrics
return ``[U]``; :func:`ranking_metrics` averages them over users.

These measure a list against labels. :func:`towerjax.retrieval.recall_at_k` is a different
quantity (the overlap of an approximate top-k with the exact one) and keeps its name there.

Evaluation on randomised logs. When the test logs come from a uniform logging policy (the
Open Bandit Dataset's ``random`` campaign; rating data sets with a test set of randomly
chosen items such as Yahoo! R3 or Coat), two model-free evaluations are available:

- :func:`randomized_value`: the unbiased (IPS) estimate of a policy's value and its
  standard error, from one logged action per row;
- :func:`logged_item_metrics`: P@k, NDCG@k and AUC of each user's ranking of *their own
  logged items* (the items the random test set showed them), averaged over users. Since the
  logged items are a uniform draw of the catalogue, unaffected by what the user chose to
  interact with, these are free of the selection bias of metrics computed on organically
  collected (missing-not-at-random) test data (Marlin & Zemel, RecSys 2009; Schnabel et al.,
  ICML 2016).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int
from towerjax.evaluation import mean_se, summarize_terms
from towerjax.rows import safe_ratio, take_logged

__all__ = [
    "METRICS",
    "PolicyValue",
    "logged_item_metrics",
    "metric_names",
    "ndcg_at_k",
    "precision_at_k",
    "randomized_value",
    "ranking_metrics",
    "recall_at_k",
]

METRICS = ("precision", "recall", "ndcg")


def _ranked_labels(ranked: ArrayLike, labels: ArrayLike, k: int) -> jax.Array:
    """``[U, k]`` float labels of each user's first ``k`` items, after checking the shapes."""
    ranked, labels = jnp.asarray(ranked), jnp.asarray(labels)
    if ranked.ndim != 2 or labels.ndim != 2 or ranked.shape[0] != labels.shape[0]:
        raise InputError(
            "ranked", f"expected shape [U, K] with labels [U, I], got {ranked.shape} and {labels.shape}"
        )
    if not jnp.issubdtype(ranked.dtype, jnp.integer):
        raise TypeError(f"ranked: expected integer item indices, got dtype {ranked.dtype}")
    k = check_positive_int("k", k)
    if k > ranked.shape[1]:
        raise InputError("k", f"expected at most {ranked.shape[1]} (the ranked list's length), got {k}")
    return jnp.take_along_axis(labels, ranked[:, :k], axis=1).astype(jnp.float32)


def _relevant(labels: ArrayLike) -> jax.Array:
    """``[U]`` ``|R_u|``, the number of relevant items of each user."""
    return jnp.sum(jnp.asarray(labels, jnp.float32), axis=1)


def precision_at_k(ranked: ArrayLike, labels: ArrayLike, k: int) -> jax.Array:
    """Fraction of relevant items among each user's first ``k``.

    .. math:: \\mathrm{P@k}(u) = \\frac{1}{k} \\sum_{j=1}^{k} y_j

    Args:
      ranked: ``[U, K]`` integer item indices, best first (``K >= k``).
      labels: ``[U, I]`` binary relevance ``y(u, i)``.
      k: the cut-off, ``1 <= k <= K`` (a Python int: static under ``jit``).

    Returns:
      ``[U]`` precision of each user's list.

    Example:
      >>> precision_at_k([[0, 1, 2]], [[1, 0, 1, 0]], 2)
      Array([0.5], dtype=float32)
    """
    return jnp.mean(_ranked_labels(ranked, labels, k), axis=1)


def recall_at_k(ranked: ArrayLike, labels: ArrayLike, k: int) -> jax.Array:
    """Share of each user's relevant items found in the first ``k`` (0 for a user with none).

    .. math:: \\mathrm{R@k}(u) = \\frac{\\sum_{j=1}^{k} y_j}{|R_u|}

    Args and shapes as in :func:`precision_at_k`; returns ``[U]``.

    Example:
      >>> recall_at_k([[0, 1, 2]], [[1, 0, 1, 0]], 2)
      Array([0.5], dtype=float32)
    """
    hits = jnp.sum(_ranked_labels(ranked, labels, k), axis=1)
    total = _relevant(labels)
    return safe_ratio(hits, total)


def ndcg_at_k(ranked: ArrayLike, labels: ArrayLike, k: int) -> jax.Array:
    """Binary NDCG@k: the list's discounted gain over the best possible (0 for a user with none).

    .. math::
      \\mathrm{NDCG@k}(u) = \\frac{\\sum_{j=1}^{k} y_j / \\log_2(j + 1)}
                                 {\\sum_{j=1}^{\\min(k, |R_u|)} 1 / \\log_2(j + 1)}

    Args and shapes as in :func:`precision_at_k`; returns ``[U]``.

    Example:
      >>> ndcg_at_k([[2, 0, 1]], [[1, 0, 1, 0]], 2)
      Array([1.], dtype=float32)
    """
    gains = _ranked_labels(ranked, labels, k)
    discount = 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))
    dcg = jnp.sum(gains * discount, axis=1)
    ideal = jnp.sum(jnp.where(jnp.arange(k) < _relevant(labels)[:, None], discount, 0.0), axis=1)
    return safe_ratio(dcg, ideal)


def metric_names(ks: tuple[int, ...]) -> list[str]:
    """The keys of :func:`ranking_metrics`: ``"precision@k"`` for every ``k``, then recall, then NDCG."""
    return [f"{metric}@{k}" for metric in METRICS for k in ks]


def ranking_metrics(ranked: ArrayLike, labels: ArrayLike, ks: tuple[int, ...]) -> dict[str, jax.Array]:
    """Precision, recall and NDCG at each cut-off, averaged over users.

    Args:
      ranked: ``[U, K]`` integer item indices, best first (``K >= max(ks)``).
      labels: ``[U, I]`` binary relevance.
      ks: the cut-offs.

    Returns:
      ``{"precision@k", "recall@k", "ndcg@k"}`` for each ``k`` in ``ks``: scalars, the
      mean over the ``U`` users of :func:`precision_at_k`, :func:`recall_at_k` and
      :func:`ndcg_at_k`.
    """
    functions = {"precision": precision_at_k, "recall": recall_at_k, "ndcg": ndcg_at_k}
    out = {}
    for k in ks:
        for metric, function in functions.items():
            out[f"{metric}@{k}"] = jnp.mean(function(ranked, labels, k))
    return out


# --------------------------------------------------------------------------- randomised logs


class PolicyValue(NamedTuple):
    """An estimated policy value: ``value`` and its standard error ``stderr`` (scalars)."""

    value: jax.Array
    stderr: jax.Array


def randomized_value(
    pi: ArrayLike, action: ArrayLike, reward: ArrayLike, pscore: ArrayLike | None = None
) -> PolicyValue:
    """Unbiased value of a policy on the logs of a uniform (randomised) logging policy.

    The inverse-propensity-scoring (IPS) estimate with the logged propensities
    ``p_i = pi_0(a_i | x_i)``, or ``p_i = 1/A`` (the uniform policy's) when none are given:

    .. math::
      \\hat V(\\pi) = \\frac{1}{n} \\sum_{i=1}^{n} t_i, \\qquad
      t_i = \\frac{\\pi(a_i | x_i)}{p_i} r_i, \\qquad
      \\mathrm{se} = \\frac{\\mathrm{std}(t, \\mathrm{ddof}=1)}{\\sqrt{n}}

    Why this is unbiased here. For i.i.d. rows,
    ``E[t_i] = E_x sum_a pi_0(a|x) (pi(a|x) / p(a|x)) q(x, a) = E_x sum_a pi(a|x) q(x, a) = V(pi)``
    exactly when ``p(a|x)`` is the logging policy's true probability and is positive
    wherever ``pi`` puts mass (full support). A uniform logging policy meets both by
    construction: its propensities ``1/A`` are known, not estimated, and every action has
    support, so the estimate is unbiased for *any* ``pi``, and the weights are bounded by
    ``A`` (finite variance). On logs of a learned or adaptive policy (such as the Open
    Bandit Dataset's ``bts`` campaign) the propensities are themselves estimates and
    actions the policy rarely or never showed break the support condition, so the same
    formula is biased there; this function is meant for known-propensity randomised logs.
    The standard error is the sampling error of the mean of the ``n`` i.i.d. terms (normal
    95% interval ``value ± 1.96 se``); with few positive rewards the normal approximation is
    rough. References: Horvitz & Thompson (JASA 1952); Li et al., "Unbiased offline
    evaluation of contextual-bandit-based news article recommendation algorithms" (WSDM
    2011); Saito et al., "Open Bandit Dataset and Pipeline" (NeurIPS Datasets 2021).

    Args:
      pi: ``[n, A]`` the evaluated policy's action distribution ``pi(. | x_i)`` on each
        logged row (rows summing to one; for a slate log, the distribution of the row's slot).
      action: ``[n]`` integer logged actions ``a_i`` in ``[0, A)``.
      reward: ``[n]`` logged rewards ``r_i``.
      pscore: ``[n]`` logged propensities ``p_i`` in ``(0, 1]``; ``None`` means ``1/A``.

    Returns:
      :class:`PolicyValue` ``(value, stderr)``, float32 scalars (``stderr`` is NaN for one row).
      Works under ``jit`` and ``vmap`` (the shape checks run at trace time).

    Raises:
      InputError: naming the argument, for a ``pi`` that is not ``[n, A]``, an ``action``,
        ``reward`` or ``pscore`` that is not ``[n]``, or (eager calls) an action outside ``[0, A)``.

    Example:
      >>> v = randomized_value([[0.5, 0.5], [1.0, 0.0]], [0, 0], [1.0, 1.0])
      >>> float(v.value)  # (0.5 / 0.5 + 1.0 / 0.5) / 2
      1.5
    """
    pi = jnp.asarray(pi, jnp.float32)
    if pi.ndim != 2 or pi.shape[0] == 0 or pi.shape[1] == 0:
        raise InputError("pi", f"expected shape [n, A] with n, A >= 1, got {pi.shape}")
    n, n_actions = pi.shape
    action, reward = jnp.asarray(action), jnp.asarray(reward, jnp.float32)
    if action.shape != (n,):
        raise InputError("action", f"expected shape ({n},) to match pi's rows, got {action.shape}")
    if not jnp.issubdtype(action.dtype, jnp.integer):
        raise TypeError(f"action: expected integer action indices, got dtype {action.dtype}")
    if reward.shape != (n,):
        raise InputError("reward", f"expected shape ({n},) to match pi's rows, got {reward.shape}")
    if pscore is None:
        pscore = jnp.full((n,), 1.0 / n_actions, jnp.float32)
    else:
        pscore = jnp.asarray(pscore, jnp.float32)
        if pscore.shape != (n,):
            raise InputError("pscore", f"expected shape ({n},) to match pi's rows, got {pscore.shape}")
    terms = take_logged(pi, action) / pscore * reward
    return PolicyValue(*summarize_terms(terms))


def logged_item_metrics(
    scores: ArrayLike,
    user: ArrayLike,
    item: ArrayLike,
    reward: ArrayLike,
    *,
    k: int,
    graded: bool = False,
) -> dict[str, float]:
    """Ranking metrics of each user's *logged* items, averaged over users (randomised test sets).

    For rating data with a random test set (every user rated a few items drawn at random),
    each user ``u`` has ``n_u`` logged rows ``(u, i, r)``. The model ranks only those items,
    by ``scores[u, i]`` (highest first), and the ranking is compared with the logged rewards.
    Relevance is binary, ``y = 1[r > 0]`` (binarise ratings beforehand, e.g. ``r = rating >= 4``).
    With ``j = 1, 2, ...`` the rank among the user's logged items, ``L_u`` their set and
    ``R_u = {i in L_u : y_i = 1}``:

    .. math::
      \\mathrm{P@k}(u) = \\frac{1}{\\min(k, n_u)} \\sum_{j=1}^{\\min(k, n_u)} y_j, \\qquad
      \\mathrm{NDCG@k}(u) = \\frac{\\sum_{j \\le k} g_j / \\log_2(j + 1)}
                                 {\\sum_{j \\le k} g^*_j / \\log_2(j + 1)}, \\qquad
      \\mathrm{AUC}(u) = \\frac{1}{|R_u| (n_u - |R_u|)}
          \\sum_{i \\in R_u} \\sum_{i' \\in L_u \\setminus R_u}
          \\left(1[s_i > s_{i'}] + \\tfrac12 1[s_i = s_{i'}]\\right)

    - P@k divides by ``min(k, n_u)``, the length of the list the user can be shown, so a
      perfect ranking scores ``min(|R_u|, k) / min(k, n_u)`` (the share relevant when
      ``k >= n_u``) whatever the user's number of logged items.
    - NDCG's gain ``g`` is ``y`` (binary, default) or, with ``graded=True``, the reward
      itself (linear gain, Järvelin & Kekäläinen, TOIS 2002; rewards must be ``>= 0``);
      ``g*`` are the user's logged gains sorted in decreasing order (the ideal ranking). A
      user with no positive gain gets 0, as :func:`ndcg_at_k` does.
    - AUC (the Mann–Whitney statistic: the probability that a relevant logged item outranks
      an irrelevant one, ties counting one half) is defined only for users with both
      classes; the others are skipped and counted.
    - Ties in ``scores`` are broken uniformly at random *in expectation*: P@k and NDCG@k are
      their exact expected values over the random orders of tied items (McSherry & Najork,
      ECIR 2008), so they do not depend on the order of the rows.
    - Each row is one logged item; an item logged twice for a user counts twice.

    The evaluation is unbiased for the population metric over uniformly drawn items because
    the test items were chosen at random, not by the user (Marlin & Zemel, RecSys 2009; Saito
    et al., "Unbiased recommender learning from missing-not-at-random implicit feedback",
    WSDM 2020, evaluate on Yahoo! R3 and Coat this way).

    Computed on the host in numpy, vectorised: rows are sorted once by (user, score), tie
    groups and per-user positions come from run boundaries, and per-user sums are
    ``bincount``s (no loop over users).

    Args:
      scores: ``[n_users, A]`` the model's scores of every (user, item), e.g.
        ``model.scores(params, user_context, item_context)``; only the logged pairs are read.
      user: ``[n]`` integer user of each logged row, in ``[0, n_users)``.
      item: ``[n]`` integer item of each logged row, in ``[0, A)``.
      reward: ``[n]`` logged rewards (binary, or graded with ``graded=True``).
      k: the cut-off, a positive int.
      graded: NDCG gains are the rewards rather than ``1[r > 0]``.

    Returns:
      ``{"precision@k", "ndcg@k", "auc"}``: means over users (P@k and NDCG@k over the
      ``"users"`` with at least one logged row, AUC over the ``"auc_users"`` with both
      classes; NaN when there are none), ``"precision@k_se"``, ``"ndcg@k_se"``, ``"auc_se"``:
      their standard errors over users (``std(ddof=1) / sqrt(count)``), and the counts
      ``"users"``, ``"users_with_relevant"``, ``"auc_users"`` and ``"auc_skipped"``
      (users with only one class).

    Raises:
      InputError: naming the argument, for ``scores`` not 2-D, ``user``/``item``/``reward``
        not ``[n]`` with ``n >= 1``, indices out of range, non-finite scores of logged pairs
        or rewards, negative rewards with ``graded=True``, or a bad ``k``.

    Example:
      >>> out = logged_item_metrics([[0.9, 0.1, 0.5]], [0, 0, 0], [0, 1, 2], [1, 0, 0], k=1)
      >>> out["precision@1"], out["ndcg@1"], out["auc"]
      (1.0, 1.0, 1.0)
    """
    k = check_positive_int("k", k)
    s, user, reward = _logged_scores(scores, user, item, reward, graded)
    n = s.size
    relevant = reward > 0
    gain = reward if graded else relevant.astype(np.float64)

    # Each user's rows, best score first: user blocks, position within the block, tie groups.
    order = np.lexsort((-s, user))
    u, s, relevant, gain = user[order], s[order], relevant[order], gain[order]
    new_user = np.r_[True, u[1:] != u[:-1]]
    block = np.cumsum(new_user) - 1  # [n] the user's index among the users present
    starts = np.flatnonzero(new_user)
    count = np.diff(np.r_[starts, n])  # [U] n_u
    n_users = starts.size
    position = np.arange(n) - starts[block]  # 0-based rank within the user
    new_group = new_user | np.r_[True, s[1:] != s[:-1]]
    group_starts = np.flatnonzero(new_group)
    group_ends = np.r_[group_starts[1:], n]
    group = np.cumsum(new_group) - 1
    first = group_starts[group] - starts[block]  # [n] the tie group's first and past-last rank
    last = group_ends[group] - starts[block]
    size = last - first

    # Expected in-top-k indicator and discount of a row whose tie group fills ranks [first, last).
    longest = int(count.max())
    discount = np.where(np.arange(longest) < k, 1.0 / np.log2(np.arange(2, longest + 2)), 0.0)
    cumulative = np.r_[0.0, np.cumsum(discount)]
    in_top = (np.minimum(last, k) - np.minimum(first, k)) / size
    expected_discount = (cumulative[last] - cumulative[first]) / size

    hits = np.bincount(block, weights=relevant * in_top, minlength=n_users)
    precision = hits / np.minimum(count, k)
    dcg = np.bincount(block, weights=gain * expected_discount, minlength=n_users)
    ideal_gain = gain[np.lexsort((-gain, u))]  # the ideal order: each user's gains, largest first
    ideal = np.bincount(block, weights=ideal_gain * discount[position], minlength=n_users)
    ndcg = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)

    # AUC from mid-ranks: ascending mid-rank of a row in a group at ranks [first, last) of n_u.
    positives = np.bincount(block, weights=relevant, minlength=n_users)
    negatives = count - positives
    midrank = count[block] - (first + last - 1) / 2.0
    rank_sum = np.bincount(block, weights=relevant * midrank, minlength=n_users)
    both = (positives > 0) & (negatives > 0)
    auc = (rank_sum[both] - positives[both] * (positives[both] + 1) / 2) / (positives[both] * negatives[both])

    out = {}
    for name, values in ((f"precision@{k}", precision), (f"ndcg@{k}", ndcg), ("auc", auc)):
        out[name], out[f"{name}_se"] = _mean_and_se(values)
    out.update(
        users=int(n_users),
        users_with_relevant=int(np.sum(positives > 0)),
        auc_users=int(np.sum(both)),
        auc_skipped=int(n_users - np.sum(both)),
    )
    return out


def _logged_scores(scores, user, item, reward, graded: bool):
    """The float64 scores of the logged pairs, the users and the rewards, after checking them."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise InputError("scores", f"expected shape [n_users, A], got {scores.shape}")
    arrays = {}
    for name, value in (("user", user), ("item", item), ("reward", reward)):
        value = np.asarray(value)
        if value.ndim != 1 or value.size == 0:
            raise InputError(name, f"expected shape [n] with n >= 1, got {value.shape}")
        arrays[name] = value
    n = arrays["user"].size
    for name in ("item", "reward"):
        if arrays[name].shape != (n,):
            raise InputError(name, f"expected shape ({n},) to match user, got {arrays[name].shape}")
    for name, bound in (("user", scores.shape[0]), ("item", scores.shape[1])):
        value = arrays[name]
        if not np.issubdtype(value.dtype, np.integer):
            raise InputError(name, f"expected integer indices, got dtype {value.dtype}")
        if value.min() < 0 or value.max() >= bound:
            raise InputError(
                name, f"expected indices in [0, {bound}), got values from {value.min()} to {value.max()}"
            )
    reward = arrays["reward"].astype(np.float64)
    if not np.all(np.isfinite(reward)):
        raise InputError("reward", "expected finite rewards")
    if graded and np.any(reward < 0):
        raise InputError("reward", "expected non-negative rewards (the NDCG gains) with graded=True")
    user = arrays["user"].astype(np.int64)
    s = scores[user, arrays["item"]].astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise InputError("scores", "expected finite scores for the logged (user, item) pairs")
    return s, user, reward


def _mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and its standard error over users (NaN when there are none; se NaN for one)."""
    if values.size == 0:
        return float("nan"), float("nan")
    return mean_se(values)
