"""Strict JSON for every file towerjax writes: NaN and inf become ``null``, never bare ``NaN``.

Python's ``json`` writes ``NaN``/``Infinity`` by default, which strict parsers (browsers,
``jq``, most other languages) reject. :func:`dumps` converts non-finite floats to ``None``,
numpy and JAX scalars and arrays to plain numbers and lists, tuples to lists, and then
serialises with ``allow_nan=False``, so a value that slipped through is an error, not a
corrupt file.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

import numpy as np

__all__ = ["dumps", "plain"]


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: dicts, lists, str, bool, int, finite float or ``None``.

    NamedTuples become dicts (through their ``to_dict`` where they have one).

    >>> plain({"a": float("nan"), "b": (1, np.float32(2.5)), "c": np.array([np.inf, 0.0])})
    {'a': None, 'b': [1, 2.5], 'c': [None, 0.0]}
    """
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return plain(value.to_dict() if hasattr(value, "to_dict") else value._asdict())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if hasattr(value, "__array__"):
        return plain(np.asarray(value).tolist())
    return value


def dumps(value: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`plain` ``(value)`` with ``allow_nan=False``."""
    return json.dumps(plain(value), allow_nan=False, **kwargs)
