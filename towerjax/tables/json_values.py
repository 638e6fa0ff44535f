"""Column names, categories, item ids and statistics as JSON-ready Python, and back exactly.

What :meth:`~towerjax.tables.FrameEncoding.to_dict` writes: str, int, float, bool and None as
they are (numpy scalars as Python numbers), tuples and bytes tagged (``{"tuple": [...]}``,
``{"bytes": "..."}``) so that reading them back gives the same values and types.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["from_json", "from_json_list", "from_json_statistics", "json_list", "json_statistics", "to_json"]


def to_json(value: Any, where: str) -> Any:
    """A column name, category or item id as JSON-ready Python; tuples and bytes tagged.

    Raises:
      TypeError: naming ``where``, for a value of another type or a non-finite float.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise TypeError(f"{where}: {value!r} is not finite, so it cannot be saved as JSON")
        return value
    if isinstance(value, bytes):
        return {"bytes": bytes(value).decode("latin-1")}
    if isinstance(value, tuple):
        return {"tuple": [to_json(v, where) for v in value]}
    raise TypeError(
        f"{where}: {value!r} of type {type(value).__name__} cannot be saved as JSON "
        "(expected str, int, float, bool, bytes or tuples of these)"
    )


def from_json(value: Any) -> Any:
    """The value :func:`to_json` wrote; ValueError for an unknown tag or a list."""
    if isinstance(value, dict):
        if set(value) == {"tuple"}:
            return tuple(from_json(v) for v in value["tuple"])
        if set(value) == {"bytes"}:
            return value["bytes"].encode("latin-1")
        raise ValueError(f"unknown tagged value {value!r}")
    if isinstance(value, list):
        raise ValueError(f"expected a value, got the list {value!r}")
    return value


def json_list(values: Sequence[Any], where: str) -> list[Any]:
    """:func:`to_json` of each value (``where[i]`` in messages)."""
    return [to_json(v, f"{where}[{i}]") for i, v in enumerate(values)]


def from_json_list(values: Sequence[Any]) -> tuple[Any, ...]:
    """:func:`from_json` of each value, as a tuple."""
    return tuple(from_json(v) for v in values)


def json_statistics(
    statistics: Mapping[Hashable, tuple[Sequence[float], Sequence[float]]], where: str
) -> list[list[Any]]:
    """``{column: (mean, std)}`` as ``[[column, [mean, ...], [std, ...]], ...]``."""
    return [
        [to_json(column, where), [float(m) for m in mean], [float(s) for s in std]]
        for column, (mean, std) in statistics.items()
    ]


def from_json_statistics(
    saved: Sequence[Any],
) -> dict[Hashable, tuple[tuple[float, ...], tuple[float, ...]]]:
    """The ``{column: (mean, std)}`` :func:`json_statistics` wrote."""
    return {
        from_json(column): (tuple(float(m) for m in mean), tuple(float(s) for s in std))
        for column, mean, std in saved
    }
