"""Per-row array helpers shared by the losses, estimators and metrics.

A batch is ``B`` rows (``n`` for a whole log), each with the ``[A]`` entries of every item and
one logged action. These pick a row's logged entry (:func:`take_logged`), average over the rows
an event mask keeps (:func:`event_mask`, :func:`masked_mean`) and divide by a total that may be
zero (:func:`safe_ratio`). All are jit-able.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError

__all__ = ["event_mask", "masked_mean", "safe_ratio", "take_logged"]


def take_logged(values: jax.Array, action: jax.Array) -> jax.Array:
    """``[B, A], [B] -> [B]``: the entry of each row at its logged action.

    An action outside ``[0, A)`` is an :class:`InputError` when it can be checked (eager
    calls) and gives NaN under ``jit``/``vmap``, never another column's entry.
    """
    n_items = values.shape[-1]
    if not isinstance(action, jax.core.Tracer):
        found = np.asarray(action)
        if found.size and (found.min() < 0 or found.max() >= n_items):
            raise InputError(
                "action",
                f"expected item indices in [0, {n_items}), got values from {found.min()} to {found.max()}",
            )
    valid = (action >= 0) & (action < n_items)
    picked = jnp.take_along_axis(values, jnp.where(valid, action, 0)[:, None], axis=-1)[:, 0]
    return jnp.where(valid, picked, jnp.nan)


def event_mask(values: jax.Array, mask: ArrayLike | None) -> jax.Array:
    """``mask`` as an array of ``values``' shape and dtype (all ones when ``None``)."""
    if mask is None:
        return jnp.ones_like(values)
    mask = jnp.asarray(mask, values.dtype)
    if mask.shape != values.shape:
        raise InputError("mask", f"expected shape {values.shape}, got {mask.shape}")
    return mask


def masked_mean(values: jax.Array, mask: ArrayLike | None) -> jax.Array:
    """Mean over the batch, or over the events with nonzero ``mask`` (0 when none is)."""
    if mask is None:
        return jnp.mean(values)
    mask = event_mask(values, mask)
    return jnp.sum(mask * values) / jnp.maximum(jnp.sum(mask), 1.0)


def safe_ratio(num: ArrayLike, den: ArrayLike) -> jax.Array:
    """``num / den``, and 0 (with a zero gradient in both) where ``den == 0``.

    The one division by a total that may be zero (a sum of importance weights when the policy
    puts no mass on any logged action, a count of kept rows): self-normalised estimates are 0
    there, never NaN, and so are their gradients and delta-method influences.

    >>> safe_ratio(jnp.array([1.0, 2.0]), jnp.array([4.0, 0.0]))
    Array([0.25, 0.  ], dtype=float32)
    """
    num, den = jnp.asarray(num), jnp.asarray(den)
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)
