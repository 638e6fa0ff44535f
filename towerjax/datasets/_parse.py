"""Column parsing shared by the dataset readers; errors name the file, column and row."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from towerjax.datasets._wheel import DatasetFileError


def row_ref(i: int, header_lines: int = 1) -> str:
    """``row 3 (line 5)``: the 0-based data row and the 1-based line of the file."""
    return f"row {i} (line {i + header_lines + 1})"


def float_column(values: Sequence[str], where: str, column: str, *, finite: bool = True) -> np.ndarray:
    """Parses text to float64; ``DatasetFileError`` naming the first row that is not a number."""
    try:
        out = np.asarray(values, dtype=np.float64) if len(values) else np.zeros(0)
    except ValueError:
        out = None
    if out is None:
        for i, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                raise DatasetFileError(
                    f"{where}: column {column!r}, {row_ref(i)} is {v!r}, expected a number"
                ) from None
    if finite:
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            i = int(bad[0])
            raise DatasetFileError(
                f"{where}: column {column!r}, {row_ref(i)} is {values[i]!r}, expected a finite number"
            )
    return out


def int_column(values: Sequence[str], where: str, column: str) -> np.ndarray:
    """Parses text holding whole numbers (``3`` or ``3.0``) to int64."""
    out = float_column(values, where, column)
    bad = np.flatnonzero(out != np.round(out))
    if bad.size:
        i = int(bad[0])
        raise DatasetFileError(
            f"{where}: column {column!r}, {row_ref(i)} is {values[i]!r}, expected an integer"
        )
    return out.astype(np.int64)


def is_numeric(values: Sequence[str]) -> bool:
    """Whether every value parses as a finite float (a numeric feature, not a category)."""
    try:
        out = [float(v) for v in values]
    except ValueError:
        return False
    return all(math.isfinite(v) for v in out)


def require_present(values: Sequence[str], where: str, column: str) -> None:
    """``DatasetFileError`` naming the first empty cell of a column."""
    for i, v in enumerate(values):
        if v == "":
            raise DatasetFileError(f"{where}: column {column!r}, {row_ref(i)} is empty")


def one_hot(values: Sequence[str], prefix: str) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """``(matrix [n, k], names, categories)``: one column per category, in sorted order."""
    categories, codes = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    matrix = np.zeros((len(values), len(categories)))
    matrix[np.arange(len(values)), codes.reshape(-1)] = 1.0
    cats = tuple(str(c) for c in categories)
    return matrix, tuple(f"{prefix}={c}" for c in cats), cats


def index_of(ids: np.ndarray, where: str, column: str) -> dict:
    """``{id: row}`` for an id column; ``DatasetFileError`` naming both rows of a duplicate."""
    position: dict = {}
    for i, v in enumerate(ids.tolist()):
        j = position.setdefault(v, i)
        if j != i:
            raise DatasetFileError(
                f"{where}: column {column!r}, id {v!r} appears at {row_ref(j)} and {row_ref(i)}"
            )
    return position


def lookup(values: np.ndarray, position: dict, where: str, column: str, table: str) -> np.ndarray:
    """Maps ids to rows of a table; ``DatasetFileError`` naming the first id not in it."""
    out = np.empty(len(values), np.int64)
    for i, v in enumerate(values.tolist()):
        j = position.get(v)
        if j is None:
            raise DatasetFileError(
                f"{where}: column {column!r}, {row_ref(i)} is {v!r}, which is not in {table}"
            )
        out[i] = j
    return out
