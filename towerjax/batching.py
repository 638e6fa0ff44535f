"""Minibatches for one epoch (a fresh permutation reshaped to ``[n_batches, B]``), and
row chunks that bound the memory of per-row work over many rows and items."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["ROW_CHUNK_ELEMENTS", "epoch_batches", "map_row_chunks", "num_batches", "row_chunk"]

# Per-row work over every item is done in chunks of rows holding at most this many
# (row, item) pairs (16 MiB of float32 scores).
ROW_CHUNK_ELEMENTS = 1 << 22


def num_batches(n: int, batch_size: int) -> int:
    """``ceil(n / batch_size)``: every event is seen once per epoch."""
    return -(-n // batch_size)


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Shuffled row indices ``[n_batches, B]`` and a mask ``[n_batches, B]``.

    The last batch is padded (with index 0) when ``B`` does not divide ``n``; its padded
    slots have mask 0, so no event is dropped and none is counted twice.
    """
    n_batches = num_batches(n, batch_size)
    padded = n_batches * batch_size
    order = jax.random.permutation(key, n)
    index = jnp.zeros(padded, jnp.int32).at[:n].set(order.astype(jnp.int32))
    mask = (jnp.arange(padded) < n).astype(jnp.float32)
    return index.reshape(n_batches, batch_size), mask.reshape(n_batches, batch_size)


def row_chunk(n_rows: int, n_items: int, elements: int = ROW_CHUNK_ELEMENTS) -> int:
    """Rows per chunk so a chunk's ``[rows, n_items]`` block holds at most ``elements``."""
    return max(1, min(n_rows, elements // max(1, n_items)))


def map_row_chunks(fn: Callable[[Any], Any], rows: Any, chunk: int) -> Any:
    """``fn(rows)`` computed ``chunk`` rows at a time (``jax.lax.map``), results concatenated.

    ``rows`` is a pytree whose leaves share a leading row axis ``[n, ...]``; ``fn`` maps a
    ``[c, ...]`` chunk to a pytree of ``[c, ...]`` per-row results. With ``chunk >= n`` it is
    one call, ``fn(rows)``. The last chunk is padded with copies of the last row, whose
    results are dropped.
    """
    n = jax.tree.leaves(rows)[0].shape[0]
    if chunk >= n:
        return fn(rows)
    count = num_batches(n, chunk)
    pad = count * chunk - n

    def split(leaf):
        leaf = jnp.pad(leaf, [(0, pad)] + [(0, 0)] * (leaf.ndim - 1), mode="edge")
        return leaf.reshape(count, chunk, *leaf.shape[1:])

    out = jax.lax.map(fn, jax.tree.map(split, rows))
    return jax.tree.map(lambda leaf: leaf.reshape(count * chunk, *leaf.shape[2:])[:n], out)
