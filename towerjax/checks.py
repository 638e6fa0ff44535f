"""Shared argument checks used by several modules.

:class:`InputError` is the one exception type for bad user input: it carries the name of
the offending argument (a config field, a function argument or a CLI flag's field), so
the command line can report ``--flag: message`` without parsing message text. It is a
``ValueError``, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = [
    "InputError",
    "as_float_array",
    "as_int_array",
    "check_batch",
    "check_choice",
    "check_embeddings",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_sizes",
    "check_temperature",
]


class InputError(ValueError):
    """Bad input, naming the argument: ``str(err)`` is ``"argument: message"``.

    Attributes:
      argument: the argument's (or config field's) name, e.g. ``"batch_size"``.
      message: what was expected and what was given.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message

    def __reduce__(self):
        return (type(self), (self.argument, self.message))


def check_positive_int(name: str, value) -> int:
    """``value`` as an int, or :class:`InputError` unless it is an integer ``>= 1``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 1 <= value < float("inf")
        or int(value) != value
    ):
        raise InputError(name, f"expected a positive integer, got {value!r}")
    return int(value)


def check_positive(name: str, value) -> float:
    """``value`` as a float, or :class:`InputError` unless it is a finite number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < float("inf"):
        raise InputError(name, f"expected a positive number, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    """``value`` as a float, or :class:`InputError` unless it is a finite number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < float("inf"):
        raise InputError(name, f"expected a number >= 0, got {value!r}")
    return float(value)


def check_sizes(name: str, values, *, allow_empty: bool = True) -> tuple[int, ...]:
    """``values`` as a tuple of positive ints (layer sizes), or :class:`InputError` naming ``name``."""
    try:
        sizes = tuple(values)
    except TypeError:
        raise InputError(name, f"expected positive integers, got {values!r}") from None
    if (not sizes and not allow_empty) or not all(
        not isinstance(v, bool) and isinstance(v, numbers.Integral) and v >= 1 for v in sizes
    ):
        raise InputError(name, f"expected positive integers, got {values!r}")
    return tuple(int(v) for v in sizes)


def check_choice(name: str, value, choices) -> None:
    """:class:`InputError` unless ``value`` is one of ``choices``."""
    if value not in tuple(choices):
        raise InputError(name, f"expected one of {tuple(choices)}, got {value!r}")


def check_batch(
    matrix: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    *,
    pscore: ArrayLike | None = None,
    name: str = "log_pi",
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
    """Static shape and dtype checks of a batch (they hold under ``jit`` and per example under ``vmap``)."""
    matrix, action, reward = jnp.asarray(matrix), jnp.asarray(action), jnp.asarray(reward)
    if matrix.ndim != 2:
        raise InputError(name, f"expected shape [B, A], got {matrix.shape}")
    batch = matrix.shape[0]
    if action.shape != (batch,):
        raise InputError("action", f"expected shape ({batch},) to match {name}, got {action.shape}")
    if not jnp.issubdtype(action.dtype, jnp.integer):
        raise TypeError(f"action: expected integer indices, got dtype {action.dtype}")
    if reward.shape != (batch,):
        raise InputError("reward", f"expected shape ({batch},) to match {name}, got {reward.shape}")
    if pscore is not None:
        pscore = jnp.asarray(pscore)
        if pscore.shape != (batch,):
            raise InputError("pscore", f"expected shape ({batch},) to match {name}, got {pscore.shape}")
    return matrix, action, reward, pscore


def check_temperature(temperature, name: str = "temperature") -> None:
    """:class:`InputError` unless ``temperature > 0``; a traced value (under ``jit``) passes unchecked."""
    if not isinstance(temperature, jax.core.Tracer) and not temperature > 0:
        raise InputError(name, f"expected a positive number, got {temperature}")


def check_embeddings(context_emb: ArrayLike, item_emb: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``context_emb [B, D]`` and ``item_emb [A, D]`` (``A >= 1``) as arrays, or :class:`InputError`."""
    context_emb, item_emb = jnp.asarray(context_emb), jnp.asarray(item_emb)
    if context_emb.ndim != 2:
        raise InputError("context_emb", f"expected shape [B, D], got {context_emb.shape}")
    if item_emb.ndim != 2 or item_emb.shape[0] < 1:
        raise InputError("item_emb", f"expected shape [A, D] with A >= 1, got {item_emb.shape}")
    if item_emb.shape[1] != context_emb.shape[1]:
        raise InputError(
            "item_emb",
            f"expected embedding size {context_emb.shape[1]} to match context_emb, got {item_emb.shape[1]}",
        )
    return context_emb, item_emb


def as_int_array(value: Any, name: str, length: int) -> np.ndarray:
    """An ``[length]`` int64 array (whole floats accepted), or an InputError/TypeError naming ``name``."""
    array = np.asarray(value)
    if array.ndim != 1 or array.shape[0] != length:
        raise InputError(name, f"expected shape ({length},) to match context, got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array)):
            return array.astype(np.int64)
        raise TypeError(f"{name}: expected integer indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def as_float_array(
    value: Any,
    name: str,
    *,
    ndim: int,
    length: int | None = None,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """A finite float numpy array of the given rank, or an InputError naming ``name``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a numeric array ({err})") from None
    if array.ndim != ndim:
        raise InputError(name, f"expected a {ndim}-d array, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise InputError(name, f"expected length {length} to match context, got {array.shape[0]}")
    if shape is not None and array.shape != shape:
        raise InputError(name, f"expected shape {shape}, got {array.shape}")
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise InputError(name, f"expected finite values, got {array[where]} at index {where}")
    return array
