"""Serving a two-tower policy over many items: exact and approximate top-k, Boltzmann slates.

Scores are ``s(x, a) = <f(x), g(e_a)>`` (SPEC 2). :func:`top_k_items` is exact; given
``chunk_size`` it merges per-chunk top-k lists in a ``jax.lax.scan`` over item chunks, and
given ``context_chunk_size`` it handles contexts in blocks (``jax.lax.map``), so 10,000
contexts x 1,000,000 items never build the ``[B, A]`` score matrix: peak memory is
``[context_chunk_size, k + chunk_size]``. :func:`approx_top_k_items` uses
``jax.lax.approx_max_k`` (Chern et al. 2022), which is approximate and fast on TPU; on CPU
and GPU XLA may compute it exactly. :func:`recall_at_k` measures an approximate list
against the exact one. :func:`boltzmann_slate` is the serving rule of Chen et al. (2019, §5).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_embeddings, check_positive_int, check_temperature

__all__ = ["approx_top_k_items", "boltzmann_slate", "recall_at_k", "top_k_items"]


def top_k_items(
    context_emb: ArrayLike,
    item_emb: ArrayLike,
    k: int,
    *,
    chunk_size: int | None = None,
    context_chunk_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Exact top-``k`` items by score ``<f(x_i), g(e_a)>`` for every context.

    Without ``chunk_size`` this is ``jax.lax.top_k`` of ``context_emb @ item_emb.T``. With
    it, items are scanned in chunks of ``chunk_size`` (the last one padded with ``-inf``
    scores, so it need not divide ``A``) and a running ``[B, k]`` list is merged with each
    chunk's scores by ``top_k`` over ``k + chunk_size`` candidates. With
    ``context_chunk_size``, contexts are processed ``context_chunk_size`` at a time. Ties go
    to the smaller item id in every mode.

    Args:
      context_emb: ``[B, D]`` context embeddings.
      item_emb: ``[A, D]`` item embeddings.
      k: number of items, ``1 <= k <= A``.
      chunk_size: items per chunk, or ``None`` for all at once.
      context_chunk_size: contexts per block, or ``None`` for all at once.

    Returns:
      ``scores [B, k]`` in decreasing order and ``ids [B, k]`` (int32).

    Example:
      >>> import jax.numpy as jnp
      >>> items = jnp.array([[0.0], [3.0], [1.0], [2.0]])
      >>> top_k_items(jnp.ones((1, 1)), items, 2, chunk_size=3)[1].tolist()
      [[1, 3]]
    """
    context_emb, item_emb = check_embeddings(context_emb, item_emb)
    k = _check_k(k, item_emb.shape[0])
    if chunk_size is not None:
        chunk_size = min(check_positive_int("chunk_size", chunk_size), item_emb.shape[0])
    if context_chunk_size is not None:
        context_chunk_size = check_positive_int("context_chunk_size", context_chunk_size)

    def search(ctx: jax.Array) -> tuple[jax.Array, jax.Array]:
        if chunk_size is None:
            scores, ids = jax.lax.top_k(ctx @ item_emb.T, k)
            return scores, ids.astype(jnp.int32)
        return _chunked_top_k(ctx, item_emb, k, chunk_size)

    if context_chunk_size is None:
        return search(context_emb)
    return jax.lax.map(
        lambda row: jax.tree.map(lambda v: v[0], search(row[None])),
        context_emb,
        batch_size=context_chunk_size,
    )


def _chunked_top_k(
    context_emb: jax.Array, item_emb: jax.Array, k: int, chunk_size: int
) -> tuple[jax.Array, jax.Array]:
    num_items, dim = item_emb.shape
    num_chunks = -(-num_items // chunk_size)
    padded = jnp.pad(item_emb, ((0, num_chunks * chunk_size - num_items), (0, 0)))
    chunks = padded.reshape(num_chunks, chunk_size, dim)
    starts = jnp.arange(num_chunks, dtype=jnp.int32) * chunk_size

    def merge(best, xs):
        best_scores, best_ids = best
        chunk, start = xs
        ids = start + jnp.arange(chunk_size, dtype=jnp.int32)
        scores = jnp.where(ids < num_items, context_emb @ chunk.T, -jnp.inf)
        # The running list holds smaller ids than the chunk and comes first, so ties keep
        # the smaller id, as lax.top_k over the whole row does.
        scores = jnp.concatenate([best_scores, scores], axis=-1)
        ids = jnp.concatenate([best_ids, jnp.broadcast_to(ids, (context_emb.shape[0], chunk_size))], axis=-1)
        top_scores, position = jax.lax.top_k(scores, k)
        return (top_scores, jnp.take_along_axis(ids, position, axis=-1)), None

    dtype = jnp.result_type(context_emb, item_emb)
    init = (
        jnp.full((context_emb.shape[0], k), -jnp.inf, dtype),
        jnp.full((context_emb.shape[0], k), -1, jnp.int32),
    )
    (scores, ids), _ = jax.lax.scan(merge, init, (chunks, starts))
    return scores, ids


def approx_top_k_items(
    context_emb: ArrayLike, item_emb: ArrayLike, k: int, *, recall_target: float = 0.95
) -> tuple[jax.Array, jax.Array]:
    """Approximate top-``k`` items with ``jax.lax.approx_max_k`` on the ``[B, A]`` scores.

    On TPU, XLA fuses the score matmul with the approximate reduction and returns each true
    top-``k`` item with probability about ``recall_target``; elsewhere the result may be
    exact. Measure with :func:`recall_at_k` against :func:`top_k_items`.

    Args:
      context_emb: ``[B, D]`` context embeddings.
      item_emb: ``[A, D]`` item embeddings.
      k: number of items, ``1 <= k <= A``.
      recall_target: target recall in ``(0, 1]``.

    Returns:
      ``scores [B, k]`` in decreasing order and ``ids [B, k]`` (int32).
    """
    context_emb, item_emb = check_embeddings(context_emb, item_emb)
    k = _check_k(k, item_emb.shape[0])
    if not (isinstance(recall_target, int | float) and 0 < recall_target <= 1):
        raise InputError("recall_target", f"expected a number in (0, 1], got {recall_target!r}")
    scores, ids = jax.lax.approx_max_k(context_emb @ item_emb.T, k, recall_target=float(recall_target))
    return scores, ids.astype(jnp.int32)


def recall_at_k(approx_ids: ArrayLike, exact_ids: ArrayLike) -> jax.Array:
    """Recall of approximate top-k lists: the mean over rows of ``|approx_i ∩ exact_i| / |exact_i|``.

    Args:
      approx_ids: ``[B, k']`` int item ids returned by an approximate search.
      exact_ids: ``[B, k]`` int ids of the exact top-k (distinct within a row).

    Returns:
      Scalar in ``[0, 1]`` (a 0-d array; ``float()`` it outside ``jit``).

    Example:
      >>> import jax.numpy as jnp
      >>> float(recall_at_k(jnp.array([[1, 2], [3, 4]]), jnp.array([[2, 1], [3, 5]])))
      0.75
    """
    approx_ids, exact_ids = jnp.asarray(approx_ids), jnp.asarray(exact_ids)
    if exact_ids.ndim != 2 or exact_ids.shape[1] < 1:
        raise InputError("exact_ids", f"expected shape [B, k] with k >= 1, got {exact_ids.shape}")
    if approx_ids.ndim != 2 or approx_ids.shape[0] != exact_ids.shape[0] or approx_ids.shape[1] < 1:
        raise InputError(
            "approx_ids",
            f"expected shape [{exact_ids.shape[0]}, k'] to match exact_ids, got {approx_ids.shape}",
        )
    approx_sorted = jnp.sort(approx_ids, axis=-1)

    def found(row_sorted: jax.Array, row_exact: jax.Array) -> jax.Array:
        position = jnp.minimum(jnp.searchsorted(row_sorted, row_exact), row_sorted.shape[0] - 1)
        return row_sorted[position] == row_exact

    return jnp.mean(jax.vmap(found)(approx_sorted, exact_ids))


def boltzmann_slate(
    key: jax.Array,
    context_emb: ArrayLike,
    item_emb: ArrayLike,
    *,
    m: int,
    k: int,
    k_deterministic: int,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> jax.Array:
    """A slate of ``K`` items: the top ``K'`` by score, then ``K - K'`` Boltzmann draws from the rest of the top ``M``.

    Chen et al. (2019, §5): take the ``M`` highest-scoring items; the first ``K' =
    k_deterministic`` slots are the top ``K'`` in order; the other ``K - K'`` are drawn
    without replacement from ``softmax(s(x, .) / tau)`` restricted to the remaining
    ``M - K'`` items, via the Gumbel top-k trick: the ``K - K'`` largest
    ``s / tau + Gumbel`` values, listed in that order (which is the order of sequential
    draws, each from the softmax over the items not yet drawn).

    Args:
      key: a ``jax.random`` key (one draw of Gumbel noise per row and candidate).
      context_emb: ``[B, D]`` context embeddings.
      item_emb: ``[A, D]`` item embeddings.
      m: candidates ``M``, ``k <= m <= A``.
      k: slate size ``K``, ``k_deterministic <= k <= m``, ``k >= 1``.
      k_deterministic: deterministic slots ``K'``, ``0 <= K' <= K``.
      temperature: ``tau > 0`` of the Boltzmann draws.
      chunk_size: passed to :func:`top_k_items` for the top-``M`` search.

    Returns:
      ``ids [B, K]`` (int32), distinct within each row.
    """
    context_emb, item_emb = check_embeddings(context_emb, item_emb)
    num_items = item_emb.shape[0]
    m = check_positive_int("m", m)
    if m > num_items:
        raise InputError("m", f"expected at most the number of items A={num_items}, got {m}")
    k = check_positive_int("k", k)
    if k > m:
        raise InputError("k", f"expected at most m={m}, got {k}")
    if isinstance(k_deterministic, bool) or not isinstance(k_deterministic, numbers.Integral):
        raise InputError("k_deterministic", f"expected an integer in [0, k], got {k_deterministic!r}")
    if not 0 <= k_deterministic <= k:
        raise InputError("k_deterministic", f"expected an integer in [0, k={k}], got {k_deterministic}")
    k_deterministic = int(k_deterministic)
    check_temperature(temperature)
    scores, ids = top_k_items(context_emb, item_emb, m, chunk_size=chunk_size)
    fixed = ids[:, :k_deterministic]
    if k == k_deterministic:
        return fixed
    rest_logits = scores[:, k_deterministic:] / temperature
    perturbed = rest_logits + jax.random.gumbel(key, rest_logits.shape, rest_logits.dtype)
    _, position = jax.lax.top_k(perturbed, k - k_deterministic)
    drawn = jnp.take_along_axis(ids[:, k_deterministic:], position, axis=-1)
    return jnp.concatenate([fixed, drawn], axis=-1)


def _check_k(k: int, num_items: int) -> int:
    k = check_positive_int("k", k)
    if k > num_items:
        raise InputError("k", f"expected at most the number of items A={num_items}, got {k}")
    return k
