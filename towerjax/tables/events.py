"""The logged columns of an event table: each event's action index, reward and propensity.

:func:`item_index` reads the item table's ids (one row per item, no duplicates) into a
lookup; :func:`actions` maps each logged item id to its item-table row (the action index);
:func:`rewards` and :func:`propensities` read the reward (finite numbers) and the logging
propensity ``pi_0(a_i|x_i)`` (each in ``(0, 1]``). Each reports what is wrong by column and row
into a :class:`~towerjax.tables.errors.Problems`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from towerjax.tables.access import TableView, rows_message, show, show_float
from towerjax.tables.columns import (
    first_unhashable,
    id_values,
    id_values_of,
    object_array,
    python_values,
)
from towerjax.tables.errors import MAX_LISTED, Problems
from towerjax.tables.numeric_text import numeric_1d
from towerjax.tables.vocabulary import factorize

__all__ = ["IdIndex", "actions", "item_index", "propensities", "rewards"]


@dataclasses.dataclass(frozen=True)
class IdIndex:
    """Lookup of item ids: the distinct ids (an object ``pandas.Index``) and each one's first row."""

    index: Any
    rows: np.ndarray

    def rows_of(self, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """``[m]`` the item-table row of each value, ``-1`` for a missing or unknown id."""
        codes, uniques = factorize(values, missing)
        if len(uniques) == 0:
            return np.full(codes.shape, -1)
        found = self.index.get_indexer(object_array(uniques))
        unique_rows = np.where(found >= 0, self.rows[found], -1)
        return np.where(codes >= 0, unique_rows[codes], -1)


def item_index(
    items: TableView, item_id_column: Hashable | None, n_items: int, problems: Problems
) -> tuple[tuple[Any, ...] | None, IdIndex | None, str]:
    """``(ids, lookup, id_role)``: each item-table row's id, a lookup from id to row, and
    how messages name them.

    Reports a missing or unhashable id and duplicate ids (a duplicate maps to its first
    row). ``ids`` is ``None`` when the id column cannot be read.
    """
    import pandas as pd

    if item_id_column is None:
        ids = object_array(items.index_values(n_items))
        id_role, column = "item table index", items.argument
        read = id_values_of(ids)
    else:
        id_role, column = f"item table id column {item_id_column!r}", item_id_column
        read = id_values(items, item_id_column, n_items, problems, "item table id column")
    if read is None:
        return None, None, id_role
    values, missing = read
    for i in np.flatnonzero(missing)[:MAX_LISTED]:
        problems.add(column, f"{id_role}: {items.row(int(i))} is missing, expected an item id")
    try:
        codes, uniques = factorize(values, missing)
    except TypeError:
        bad = first_unhashable(values)
        problems.add(column, f"{id_role}: {items.row(bad)} is {values[bad]!r}, which is not hashable")
        return None, None, id_role
    first_rows = np.full(len(uniques), -1)
    present = np.flatnonzero(codes >= 0)
    seen, first = np.unique(codes[present], return_index=True)
    first_rows[seen] = present[first]
    duplicate_rows = present[first_rows[codes[present]] != present]
    for i in duplicate_rows[:MAX_LISTED]:
        j = first_rows[codes[i]]
        problems.add(
            column,
            f"{id_role}: item id {show(values[i])} appears at {items.row(int(j))} and {items.row(int(i))}",
        )
    if len(duplicate_rows) > MAX_LISTED:
        problems.add(column, f"{id_role}: {len(duplicate_rows) - MAX_LISTED} more duplicate item ids")
    index = pd.Index(object_array(uniques), dtype=object, tupleize_cols=False)
    return tuple(python_values(values)), IdIndex(index, first_rows), id_role


def actions(
    events: TableView,
    column: Hashable,
    n: int,
    ids: tuple[Any, ...] | None,
    id_index: IdIndex | None,
    id_role: str,
    problems: Problems,
) -> np.ndarray:
    """``[n]`` action indices: the item-table row of each event's item id.

    Reports missing ids and ids not in the item table (with a hint when the action
    values and the item ids have different types).
    """
    action = np.zeros(n, np.int64)
    read = id_values(events, column, n, problems, "action column")
    if read is None or id_index is None:
        return action
    raw, missing = read
    try:
        rows = id_index.rows_of(raw, missing)
    except TypeError:
        bad = first_unhashable(raw)
        problems.add(
            column, f"action column {column!r}: {events.row(bad)} is {raw[bad]!r}, which is not hashable"
        )
        return action
    prefix = f"action column {column!r}"
    missing_rows = np.flatnonzero(missing)
    if missing_rows.size:
        problems.add(
            column,
            rows_message(prefix, events, missing_rows, "missing", "an item id from the item table"),
        )
    not_found = np.flatnonzero((rows < 0) & ~missing)
    if not_found.size:
        first = raw[not_found[0]]
        if isinstance(first, float | np.floating) and float(first).is_integer():
            first = int(first)  # an integer id read as a float (a column with missing values)
        problems.add(
            column,
            rows_message(
                prefix, events, not_found, f"{show(first)}, which is not an item id in the {id_role}", None
            )
            + _type_hint(first, ids),
        )
    return np.where(rows >= 0, rows, 0)


def _report_missing(
    events: TableView, column: Hashable, values: np.ndarray, problems: Problems, prefix: str, expected: str
) -> None:
    """Reports the rows where ``values`` is NaN."""
    missing = np.flatnonzero(np.isnan(values))
    if missing.size:
        problems.add(column, rows_message(prefix, events, missing, "missing (NaN)", expected))


def rewards(events: TableView, column: Hashable, n: int, problems: Problems) -> np.ndarray | None:
    """``[n]`` rewards; reports text that is not a number, a missing (NaN) or infinite reward
    (:func:`~towerjax.tables.numeric_text.numeric_1d`)."""
    reward = numeric_1d(events, column, n, problems, "reward column")
    if reward is None:
        return None
    prefix = f"reward column {column!r}"
    _report_missing(events, column, reward, problems, prefix, "a finite number")
    infinite = np.flatnonzero(np.isinf(reward))
    if infinite.size:
        shown = show_float(reward[infinite[0]])
        problems.add(column, rows_message(prefix, events, infinite, shown, "a finite number"))
    return reward


def propensities(events: TableView, column: Hashable, n: int, problems: Problems) -> np.ndarray | None:
    """``[n]`` logging propensities; reports text that is not a number, a missing (NaN)
    propensity or one outside ``(0, 1]``."""
    pscore = numeric_1d(events, column, n, problems, "pscore column")
    if pscore is None:
        return None
    prefix = f"pscore column {column!r}"
    _report_missing(events, column, pscore, problems, prefix, "a value in (0, 1]")
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isnan(pscore) & ~((pscore > 0) & (pscore <= 1)))
    if bad.size:
        problems.add(
            column, rows_message(prefix, events, bad, show_float(pscore[bad[0]]), "a value in (0, 1]")
        )
    return pscore


def _type_hint(value: Any, item_ids: Sequence[Any]) -> str:
    if not item_ids:
        return ""
    value_type = type(value.item() if isinstance(value, np.generic) else value).__name__
    first = item_ids[0]
    id_type = type(first.item() if isinstance(first, np.generic) else first).__name__
    if value_type != id_type:
        return f" (action values are {value_type}, item ids are {id_type})"
    return ""
