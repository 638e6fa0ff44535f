"""Access to a table: a pandas DataFrame or a mapping of arrays, seen through a few operations.

:class:`TableView` wraps either kind of table for the adapter (its columns, their lengths, a
row's name in messages); :func:`is_dataframe` and :func:`is_missing` are the tests every
reader of user tables shares (pandas stays an optional import: a plain ``dict`` of numpy
arrays works as well as a DataFrame). :data:`MISSING_MARKERS` is the text read as a missing
value in a column of numbers stored as text. :func:`rows_message` and the ``show`` helpers
format values and rows in the problems' messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.tables.errors import MAX_LISTED, FrameValidationError, Problems

__all__ = [
    "MISSING_MARKERS",
    "TableView",
    "is_dataframe",
    "is_missing",
    "require_rows",
    "rows_message",
    "show",
    "show_float",
    "show_value",
]

MISSING_MARKERS = frozenset({"", "n/a", "na", "nan", "null", "none", "-", "?", "#n/a", "missing"})
"""Text read as a missing value when a numeric-looking text column is parsed (case-insensitive,
after stripping spaces)."""


def is_dataframe(obj: Any) -> bool:
    """Whether ``obj`` is a pandas DataFrame (checked without importing pandas)."""
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns") and hasattr(obj, "iloc")


def is_missing(value: Any) -> bool:
    """Whether one value is missing: ``None``, a float NaN, or pandas' ``NA`` / ``NaT``."""
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(math.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


class TableView:
    """A DataFrame or a mapping of arrays, seen through the few operations needed here.

    ``label`` names the table in messages (``"item table"``), ``argument`` is the argument
    that holds it (``"item_table"``).
    """

    def __init__(self, obj: Any, label: str, argument: str):
        self.label = label
        self.argument = argument
        self.obj = obj
        self.is_frame = is_dataframe(obj)
        if not self.is_frame and not isinstance(obj, Mapping):
            raise TypeError(
                f"{label}: expected a pandas DataFrame or a dict of arrays, got {type(obj).__name__}"
            )
        self.labels: list[Any] | None = None
        if self.is_frame:
            index = obj.index
            is_default = type(index).__name__ == "RangeIndex" and index.start == 0 and index.step == 1
            if not is_default:
                self.labels = list(index)

    def column_names(self) -> list[Any]:
        return list(self.obj.columns) if self.is_frame else list(self.obj.keys())

    def has(self, column: Any) -> bool:
        try:
            return column in self.obj.columns if self.is_frame else column in self.obj
        except TypeError:
            return False

    def get(self, column: Any) -> Any:
        return self.obj[column]

    def row(self, i: int) -> str:
        """``row 3``, with the DataFrame's index label when it is not the position."""
        if self.labels is not None and i < len(self.labels) and self.labels[i] != i:
            return f"row {i} (index {self.labels[i]!r})"
        return f"row {i}"

    def length(self, column: Any, problems: Problems, role: str) -> int | None:
        values = self.get(column)
        if self.is_frame and is_dataframe(values):
            problems.add(
                column, f"{role} {column!r}: the {self.label} has more than one column with this name"
            )
            return None
        shape = np.shape(values)
        if not shape:
            problems.add(column, f"{role} {column!r}: is a scalar, expected a column of values")
            return None
        return shape[0]

    def index_length(self) -> int:
        if self.is_frame:
            return len(self.obj.index)
        raise FrameValidationError(
            [f"{self.label}: needs item_id_column or at least one item feature column to know its rows"],
            [self.argument],
        )

    def index_values(self, n: int) -> list[Any]:
        return list(self.obj.index) if self.is_frame else list(range(n))


def require_rows(table: TableView, n: int, what: str) -> None:
    """FrameValidationError naming the table when it has no rows."""
    if n == 0:
        raise FrameValidationError(
            [f"{table.label}: has no rows, expected at least one {what}"], [table.argument]
        )


def show(value: Any) -> str:
    """``repr`` of a value, numpy scalars as the Python value (``'Oslo'``, ``3``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def show_float(value: float) -> str:
    """A float for a message: ``missing (NaN)`` or its ``repr``."""
    value = float(value)
    return "missing (NaN)" if math.isnan(value) else repr(value)


def show_value(value: Any) -> str:
    """A value for a message: ``missing`` or :func:`show` of it."""
    return "missing" if is_missing(value) else show(value)


def rows_message(prefix: str, table: TableView, rows: Sequence[int], first: str, expected: str | None) -> str:
    """``prefix: row 3 is <first>, expected <expected> (and 2 more: rows 5, 8)``."""
    count = len(rows)
    shown_rows = [int(r) for r in rows[: 1 + MAX_LISTED]]
    message = f"{prefix}: {table.row(shown_rows[0])} is {first}"
    if expected is not None:
        message += f", expected {expected}"
    if count > 1:
        shown = ", ".join(str(r) for r in shown_rows[1:])
        more = "" if count <= 1 + MAX_LISTED else ", ..."
        message += f" (and {count - 1} more: row{'s' if count > 2 else ''} {shown}{more})"
    return message
