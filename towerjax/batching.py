"""Minibatches for one epoch: a fresh permutation reshaped to ``[n_batches, B]``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["epoch_batches", "num_batches"]


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
