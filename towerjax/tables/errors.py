"""The errors and warnings of the table adapter, and the collector that gathers its problems.

Every problem in the input is reported with its column and row (0-based position in the
table): all problems found are collected (:class:`Problems`) into one
:class:`FrameValidationError` (an :class:`~towerjax.checks.InputError`, so a ``ValueError``),
one line each. Values given the out-of-vocabulary id 0 against an encoding are counted in an
:class:`UnseenCategoryWarning` (:func:`warn_unseen`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from towerjax.checks import InputError

__all__ = [
    "MAX_LISTED",
    "FrameValidationError",
    "Problems",
    "UnseenCategoryWarning",
    "UnseenRows",
    "warn_unseen",
]

MAX_LISTED = 5
"""The most rows (or duplicate ids) one message lists before ``...``."""


class FrameValidationError(InputError):
    """Problems in a frame or item table; ``problems`` holds one message per problem.

    Each message names the column and the first offending row (0-based), e.g.
    ``pscore column 'p': row 3 is 1.5, expected a value in (0, 1]``. ``columns`` holds the
    column each problem is about (``"frame"`` or ``"item_table"`` for a problem with a
    whole table) and ``argument``, as for every :class:`~towerjax.checks.InputError`, the
    first of them. Unlike other InputErrors, ``str(err)`` is the problem itself (or a
    list of them), which names its column already.
    """

    def __init__(self, problems: Sequence[str], columns: Sequence[Hashable]):
        self.problems = list(problems)
        self.columns = list(columns)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the logged data:\n" + "\n".join(
                f"- {p}" for p in self.problems
            )
        ValueError.__init__(self, message)
        self.argument = self.columns[0]
        self.message = message

    def __reduce__(self):
        return (type(self), (self.problems, self.columns))


class UnseenCategoryWarning(UserWarning):
    """Rows whose categorical value was not in the encoding's vocabulary got id 0 (OOV).

    A value is out of vocabulary when it was not seen in training, was rarer than the
    column's ``min_count``, or is missing (for a hashed column: only when missing); for
    items, an item id not in the training catalogue.

    Attributes:
      counts: for each column with such values, how many rows had one.
      n_rows: how many rows had at least one.
    """

    def __init__(self, message: str, counts: Mapping[Hashable, int], n_rows: int):
        super().__init__(message)
        self.counts = dict(counts)
        self.n_rows = n_rows


class Problems:
    """The problems found so far, each message with the column it is about."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.columns: list[Hashable] = []

    def add(self, column: Hashable, message: str) -> None:
        self.messages.append(message)
        self.columns.append(column)

    def error(self) -> FrameValidationError:
        return FrameValidationError(self.messages, self.columns)

    def raise_if_any(self) -> None:
        if self.messages:
            raise self.error()


@dataclasses.dataclass(frozen=True)
class UnseenRows:
    """Rows of one column whose value got id 0 against an encoding (for the warning)."""

    table: str  # "frame" or "item"
    n: int  # rows of that table
    label: str
    column: Hashable
    rows: np.ndarray
    first: str  # "row 1 is 'Paris'"


def warn_unseen(unseen: Sequence[UnseenRows], unknown: str, stacklevel: int = 3) -> None:
    """An :class:`UnseenCategoryWarning` counting the rows given id 0, under ``unknown="warn"``.

    ``stacklevel`` as :func:`warnings.warn` takes it, counted from this function (3: the
    caller of its caller, the user's line for a public function that calls this one).
    """
    if unknown != "warn" or not unseen:
        return
    counts: dict[Hashable, int] = {}
    masks: dict[str, np.ndarray] = {}
    parts = []
    for u in unseen:
        counts[u.column] = counts.get(u.column, 0) + len(u.rows)
        mask = masks.setdefault(u.table, np.zeros(u.n, bool))
        mask[u.rows] = True
        parts.append(f"{u.label} {u.column!r}: {len(u.rows)} row{'s' if len(u.rows) > 1 else ''} ({u.first})")
    n_rows = int(sum(mask.sum() for mask in masks.values()))
    message = (
        f"{n_rows} row{'s' if n_rows > 1 else ''} had a value not in the encoding (unseen in training, "
        "rarer than its min_count, or missing), encoded as the out-of-vocabulary id 0: " + "; ".join(parts)
    )
    warnings.warn(UnseenCategoryWarning(message, counts, n_rows), stacklevel=stacklevel)
