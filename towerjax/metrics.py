"""Ranking metrics of recommended lists against binary relevance labels.

Each user ``u`` has a ranked list of item indices (best first) and binary labels
``y(u, i)`` over all items; ``R_u = {i : y(u, i) = 1}`` are the user's relevant items and
``y_j`` is the label of the item at rank ``j`` (``j = 1, 2, ...``). The per-user metrics
return ``[U]``; :func:`ranking_metrics` averages them over users.

These measure a list against labels. :func:`towerjax.retrieval.recall_at_k` is a different
quantity (the overlap of an approximate top-k with the exact one) and keeps its name there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int

__all__ = ["METRICS", "metric_names", "ndcg_at_k", "precision_at_k", "ranking_metrics", "recall_at_k"]

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
    return jnp.where(total > 0, hits / jnp.maximum(total, 1.0), 0.0)


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
    return jnp.where(ideal > 0, dcg / jnp.maximum(ideal, 1e-12), 0.0)


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
