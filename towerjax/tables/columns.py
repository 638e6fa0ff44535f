"""Reading one column of a table: its kind (numeric or categorical), its values, its checks.

:func:`read_column` tells a numeric column (numbers, perhaps with ``None``/NaN holes) from a
categorical one (object, string or pandas category dtype) and returns its values;
:func:`id_values` reads the item id columns, reporting what it cannot read by column and row; :func:`missing_mask` and :func:`object_array` are the
array forms the vocabulary lookups use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from towerjax.tables.access import TableView, is_missing
from towerjax.tables.errors import Problems

__all__ = [
    "check_length",
    "exact_numeric",
    "first_unhashable",
    "id_values",
    "id_values_of",
    "is_real",
    "missing_mask",
    "object_array",
    "python_values",
    "read_column",
    "to_float",
]


def check_length(
    values: np.ndarray, n: int, column: Any, role: str, table: TableView, problems: Problems
) -> bool:
    """Whether ``values`` has ``n`` rows; reports a scalar or another length."""
    if values.ndim == 0 or values.shape[0] != n:
        got = "a scalar" if values.ndim == 0 else f"{values.shape[0]} rows"
        problems.add(column, f"{role} {column!r}: has {got}, expected {n} (the {table.label}'s length)")
        return False
    return True


def read_column(table: TableView, column: Any) -> tuple[str, np.ndarray | None, tuple[Any, ...] | None]:
    """``(kind, values, declared categories)`` with kind ``numeric``/``categorical``/dtype name."""
    raw = table.get(column)
    dtype = getattr(raw, "dtype", None)
    declared = getattr(dtype, "categories", None)
    if declared is not None:  # pandas category dtype
        return "categorical", np.asarray(raw, dtype=object), tuple(declared.tolist())
    if getattr(dtype, "kind", None) in ("b", "i", "u", "f") and hasattr(raw, "to_numpy"):
        return "numeric", np.asarray(raw.to_numpy(dtype=np.float64, na_value=np.nan)), None
    try:
        values = np.asarray(raw)
    except Exception as err:
        return f"unreadable ({err})", None, None
    if values.dtype.kind in "biuf":
        return "numeric", values.astype(np.float64), None
    if (
        values.dtype.kind == "O"
        and values.ndim == 1
        and len(values)
        and all(is_missing(v) or is_real(v) for v in values.tolist())
    ):  # numbers with None/NaN holes, e.g. a list [0.5, None]
        return "numeric", to_float(values), None
    if values.dtype.kind in "OUST":
        return "categorical", values.astype(object), None
    return f"dtype {values.dtype}", None, None


def is_real(value: Any) -> bool:
    """Whether one value is a real number (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def to_float(values: np.ndarray) -> np.ndarray | None:
    """Object values as floats (missing -> NaN), or None when one is not a number."""
    out = np.empty(values.shape, np.float64)
    for i, v in enumerate(values):
        if is_missing(v):
            out[i] = np.nan
        elif isinstance(v, (bool, int, float, np.number, np.bool_)):
            out[i] = float(v)
        else:
            return None
    return out


def object_array(values: Any) -> np.ndarray:
    """``values`` as a 1-d object array (tuples stay single values)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values if values.dtype == object else values.astype(object)
    values = list(values)
    return np.fromiter(values, dtype=object, count=len(values))


def python_values(values: np.ndarray) -> list[Any]:
    """A 1-d array's values as Python values (numpy scalars converted)."""
    return values.tolist()


def missing_mask(values: np.ndarray) -> np.ndarray:
    """``[n]`` bool: the missing values (NaN, None, pandas' NA/NaT)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "biu":
        return np.zeros(values.shape[0], bool)
    import pandas as pd

    return np.asarray(pd.isna(values), bool)


def first_unhashable(values: np.ndarray) -> int:
    """The position of the first unhashable value (0 when every value hashes)."""
    for i, v in enumerate(values.tolist()):
        try:
            hash(v)
        except TypeError:
            return i
    return 0


def exact_numeric(raw: Any, values: np.ndarray) -> np.ndarray:
    """An integer column's values as int64 (exact beyond 2**53), else ``values`` (float64)."""
    if hasattr(raw, "to_numpy"):
        if getattr(getattr(raw, "dtype", None), "kind", None) in ("i", "u"):
            try:
                return np.asarray(raw.to_numpy(dtype=np.int64))
            except (TypeError, ValueError):  # a nullable integer column with missing values
                return values
        return values
    array = np.asarray(raw)
    return array.astype(np.int64) if array.dtype.kind in "iu" and array.ndim == 1 else values


def id_values(
    table: TableView, column: Any, n: int, problems: Problems, role: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(values [n], missing [n])`` of an id column: int64 for whole numbers, else float64
    or object; reports an unreadable column, a 2-d one or a wrong length."""
    kind, values, _ = read_column(table, column)
    if values is None:
        problems.add(column, f"{role} {column!r}: has {kind}, expected item ids")
        return None
    if values.ndim != 1:
        problems.add(column, f"{role} {column!r}: expected a 1-d column, got shape {values.shape}")
        return None
    if not check_length(values, n, column, role, table, problems):
        return None
    if kind == "numeric":
        values = exact_numeric(table.get(column), values)
    return id_values_of(values)


def id_values_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, missing)`` of ids already read; whole floats (ints read as floats) become int64."""
    missing = missing_mask(values)
    if (
        values.dtype.kind == "f"
        and not missing.any()
        and np.all(np.isfinite(values) & (np.mod(values, 1) == 0))
    ):
        values = values.astype(np.int64)  # whole floats (ints read as floats) are integer ids
    return values, missing
