"""Logged bandit feedback from a table: a pandas DataFrame or a dict of numpy arrays (SPEC 1).

:func:`logged_data_from_frame` turns one row per logged event (context columns, the
logged item's id, the reward and the propensity) plus an item table (one row per item,
its id and features) into a validated :class:`~towerjax.data.LoggedData`. Categorical
columns (object, string or pandas category dtype) are one-hot encoded; the categories are
recorded in the returned :class:`FrameEncoding`, which encodes a later (test) frame the
same way when passed back as ``encoding=``. pandas is optional: it is never imported, and
a plain ``dict`` of numpy arrays works the same.

Every problem in the input is reported with its column and row (0-based position in the
table): all problems found are collected into one :class:`FrameValidationError` (a
``ValueError``), one line each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.data import LoggedData

__all__ = ["FrameEncoding", "FrameValidationError", "logged_data_from_frame"]

_MAX_LISTED = 5


class FrameValidationError(ValueError):
    """Problems in a frame or item table; ``problems`` holds one message per problem.

    Each message names the column and the first offending row (0-based), e.g.
    ``pscore column 'p': row 3 is 1.5, expected a value in (0, 1]``.
    """

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the logged data:\n" + "\n".join(
                f"- {p}" for p in self.problems
            )
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class FrameEncoding:
    """How a frame's columns became feature matrices; pass back as ``encoding=`` to reuse.

    Attributes:
      context_columns: the context columns, in order.
      item_feature_columns: the item-table feature columns, in order (empty: each item is
        its own one-hot feature).
      context_categories: for each categorical context column, its categories in
        one-hot order.
      item_categories: the same for categorical item-table columns.
      context_feature_names: the name of each column of ``LoggedData.context``
        (``"age"``, ``"city=Oslo"``, ``"emb[3]"`` for column 3 of a 2-d array).
      item_feature_names: the name of each column of ``LoggedData.action_context``.
      item_ids: the item id of each action index (row of ``action_context``).
    """

    context_columns: tuple[Hashable, ...]
    item_feature_columns: tuple[Hashable, ...]
    context_categories: dict[Hashable, tuple[Any, ...]]
    item_categories: dict[Hashable, tuple[Any, ...]]
    context_feature_names: tuple[str, ...]
    item_feature_names: tuple[str, ...]
    item_ids: tuple[Any, ...]

    @property
    def n_actions(self) -> int:
        """Number of items in the item table the encoding was built from."""
        return len(self.item_ids)


def logged_data_from_frame(
    frame: Any,
    *,
    context_columns: Sequence[Hashable],
    action_column: Hashable,
    reward_column: Hashable,
    pscore_column: Hashable,
    item_table: Any,
    item_id_column: Hashable | None = None,
    item_feature_columns: Sequence[Hashable] | None = None,
    categorical: str = "onehot",
    encoding: FrameEncoding | None = None,
    unknown: str = "error",
) -> tuple[LoggedData, FrameEncoding]:
    """Builds :class:`~towerjax.data.LoggedData` from a table of logged events.

    Args:
      frame: a pandas ``DataFrame`` or a mapping from column name to a 1-d array of
        length ``n`` (a context column may also be a numeric ``[n, k]`` array: ``k``
        features).
      context_columns: columns forming the context ``x`` (numeric columns are used as
        they are; categorical ones are one-hot encoded).
      action_column: the logged item's id; mapped to the row of ``item_table`` with that
        id, which becomes the action index.
      reward_column: the observed reward (finite numbers).
      pscore_column: the logging propensity ``pi_0(a_i|x_i)``, each in ``(0, 1]``.
      item_table: a ``DataFrame`` or mapping with one row per item.
      item_id_column: the column of ``item_table`` holding item ids; ``None`` uses the
        DataFrame's index, or for a mapping the row positions ``0..A-1``.
      item_feature_columns: the item-table columns forming ``e_a``; ``None`` means every
        column except ``item_id_column``. If there are none, each item is its own one-hot
        feature (``action_context = eye(A)``).
      categorical: ``"onehot"`` one-hot encodes object/string/category columns;
        ``"error"`` reports them as problems instead.
      encoding: a :class:`FrameEncoding` returned earlier; its columns and categories
        are reused, so a test frame's features line up with the training frame's.
      unknown: with ``encoding``, what a category not seen before becomes:
        ``"error"`` (a problem naming the column and row) or ``"ignore"`` (all zeros).

    Returns:
      ``(data, encoding)``: the validated container and how its features were built.

    Raises:
      FrameValidationError: (a ``ValueError``) listing every problem found, each naming
        its column and row: a missing column, a missing or out-of-range propensity, an
        action whose id is not in the item table, a non-finite number, a missing
        category, duplicate item ids.
      ValueError: for a bad argument (``categorical``, ``unknown``, an ``encoding`` built
        for other columns).
    """
    if categorical not in ("onehot", "error"):
        raise ValueError(f"categorical: expected 'onehot' or 'error', got {categorical!r}")
    if unknown not in ("error", "ignore"):
        raise ValueError(f"unknown: expected 'error' or 'ignore', got {unknown!r}")
    if isinstance(context_columns, (str, bytes)):
        raise TypeError(
            f"context_columns: expected a sequence of column names, got the string {context_columns!r}"
        )
    context_columns = tuple(context_columns)

    events = _Table(frame, "frame")
    items = _Table(item_table, "item table")

    # Item table: ids and feature columns.
    if item_feature_columns is None:
        item_feature_columns = tuple(c for c in items.column_names() if c != item_id_column)
    elif isinstance(item_feature_columns, (str, bytes)):
        raise TypeError(
            f"item_feature_columns: expected a sequence of column names, got the string {item_feature_columns!r}"
        )
    item_feature_columns = tuple(item_feature_columns)

    if encoding is not None:
        if tuple(encoding.context_columns) != context_columns:
            raise ValueError(
                f"encoding: built for context_columns {list(encoding.context_columns)}, "
                f"got {list(context_columns)}"
            )
        if tuple(encoding.item_feature_columns) != item_feature_columns:
            raise ValueError(
                f"encoding: built for item_feature_columns {list(encoding.item_feature_columns)}, "
                f"got {list(item_feature_columns)}"
            )

    problems: list[str] = []
    missing = [
        (role, c)
        for role, c in [
            ("action_column", action_column),
            ("reward_column", reward_column),
            ("pscore_column", pscore_column),
            *(("context_columns", c) for c in context_columns),
        ]
        if not events.has(c)
    ]
    for role, c in missing:
        problems.append(f"frame: missing column {c!r} (named by {role}); columns are {events.column_names()}")
    item_missing = [c for c in item_feature_columns if not items.has(c)]
    if item_id_column is not None and not items.has(item_id_column):
        item_missing.insert(0, item_id_column)
    for c in item_missing:
        role = "item_id_column" if c == item_id_column else "item_feature_columns"
        problems.append(
            f"item table: missing column {c!r} (named by {role}); columns are {items.column_names()}"
        )
    if problems:
        raise FrameValidationError(problems)

    n = events.length(action_column, problems, "action column")
    n_items = (
        items.length(item_id_column, problems, "item table id column") if item_id_column is not None else None
    )
    if n_items is None:
        first = item_feature_columns[0] if item_feature_columns else None
        n_items = (
            items.index_length() if first is None else items.length(first, problems, "item table column")
        )
    if n is None or n_items is None:
        raise FrameValidationError(problems)

    # Item ids -> action index.
    if item_id_column is None:
        ids = items.index_values(n_items)
        id_role = "item table index"
    else:
        ids = _object_values(items, item_id_column, n_items, problems, "item table id column")
        id_role = f"item table id column {item_id_column!r}"
    id_to_index: dict[Any, int] = {}
    if ids is not None:
        first_seen: dict[Any, int] = {}
        duplicates: list[tuple[Any, int, int]] = []
        for i, v in enumerate(ids):
            if _is_missing(v):
                problems.append(f"{id_role}: {items.row(i)} is missing, expected an item id")
                continue
            try:
                j = first_seen.setdefault(v, i)
            except TypeError:
                problems.append(f"{id_role}: {items.row(i)} is {v!r}, which is not hashable")
                continue
            if j != i:
                duplicates.append((v, j, i))
        for v, j, i in duplicates[:_MAX_LISTED]:
            problems.append(f"{id_role}: item id {_show(v)} appears at {items.row(j)} and {items.row(i)}")
        if len(duplicates) > _MAX_LISTED:
            problems.append(f"{id_role}: {len(duplicates) - _MAX_LISTED} more duplicate item ids")
        id_to_index = first_seen
    item_ids = tuple(ids) if ids is not None else ()

    # Actions.
    action = np.zeros(n, np.int64)
    raw_actions = _object_values(events, action_column, n, problems, "action column")
    if raw_actions is not None and ids is not None:
        not_found: list[int] = []
        missing_rows: list[int] = []
        for i, v in enumerate(raw_actions):
            if _is_missing(v):
                missing_rows.append(i)
                continue
            try:
                j = id_to_index.get(v)
            except TypeError:
                j = None
            if j is None:
                not_found.append(i)
            else:
                action[i] = j
        if missing_rows:
            problems.append(
                _rows_message(
                    f"action column {action_column!r}",
                    events,
                    missing_rows,
                    "missing",
                    "an item id from the item table",
                )
            )
        if not_found:
            hint = _type_hint(raw_actions[not_found[0]], item_ids)
            problems.append(
                _rows_message(
                    f"action column {action_column!r}",
                    events,
                    not_found,
                    f"{_show(raw_actions[not_found[0]])}, which is not an item id in the {id_role}",
                    None,
                )
                + hint
            )

    # Reward and propensity.
    reward = _numeric_1d(events, reward_column, n, problems, "reward column")
    if reward is not None:
        nan_rows = np.flatnonzero(np.isnan(reward))
        if nan_rows.size:
            problems.append(
                _rows_message(
                    f"reward column {reward_column!r}", events, nan_rows, "missing (NaN)", "a finite number"
                )
            )
        bad = np.flatnonzero(np.isinf(reward))
        if bad.size:
            problems.append(
                _rows_message(
                    f"reward column {reward_column!r}",
                    events,
                    bad,
                    _show_float(reward[bad[0]]),
                    "a finite number",
                )
            )
    pscore = _numeric_1d(events, pscore_column, n, problems, "pscore column")
    if pscore is not None:
        nan_rows = np.flatnonzero(np.isnan(pscore))
        if nan_rows.size:
            problems.append(
                _rows_message(
                    f"pscore column {pscore_column!r}", events, nan_rows, "missing (NaN)", "a value in (0, 1]"
                )
            )
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~np.isnan(pscore) & ~((pscore > 0) & (pscore <= 1)))
        if bad.size:
            problems.append(
                _rows_message(
                    f"pscore column {pscore_column!r}",
                    events,
                    bad,
                    _show_float(pscore[bad[0]]),
                    "a value in (0, 1]",
                )
            )

    # Features.
    context, context_names, context_categories = _features(
        events,
        context_columns,
        n,
        "context column",
        categorical,
        encoding and encoding.context_categories,
        unknown,
        problems,
    )
    if item_feature_columns:
        action_context, item_names, item_categories = _features(
            items,
            item_feature_columns,
            n_items,
            "item table column",
            categorical,
            encoding and encoding.item_categories,
            unknown,
            problems,
        )
    else:
        if encoding is not None and tuple(encoding.item_ids) != item_ids:
            problems.append(
                "item table: the encoding has no item features (one-hot item identity), so the item "
                "table must list the same item ids in the same order"
            )
        action_context = np.eye(n_items)
        item_names = tuple(f"item={_show(v)}" for v in item_ids)
        item_categories = {}

    if problems:
        raise FrameValidationError(problems)
    if encoding is not None:
        if tuple(encoding.context_feature_names) != context_names:
            raise ValueError(
                f"encoding: context features {list(context_names)} differ from the encoding's "
                f"{list(encoding.context_feature_names)} (a 2-d column changed width?)"
            )
        if tuple(encoding.item_feature_names) != item_names:
            raise ValueError(
                f"encoding: item features {list(item_names)} differ from the encoding's "
                f"{list(encoding.item_feature_names)} (a 2-d column changed width?)"
            )

    data = LoggedData.from_arrays(
        context=context,
        action_context=action_context,
        action=action,
        reward=reward,
        pscore=pscore,
    )
    info = FrameEncoding(
        context_columns=context_columns,
        item_feature_columns=item_feature_columns,
        context_categories=context_categories,
        item_categories=item_categories,
        context_feature_names=context_names,
        item_feature_names=item_names,
        item_ids=item_ids,
    )
    return data, info


# --------------------------------------------------------------------------- tables


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns") and hasattr(obj, "iloc")


class _Table:
    """A DataFrame or a mapping of arrays, seen through the few operations needed here."""

    def __init__(self, obj: Any, label: str):
        self.label = label
        self.obj = obj
        self.is_frame = _is_dataframe(obj)
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

    def length(self, column: Any, problems: list[str], role: str) -> int | None:
        values = self.get(column)
        if self.is_frame and _is_dataframe(values):
            problems.append(f"{role} {column!r}: the {self.label} has more than one column with this name")
            return None
        shape = np.shape(values)
        if not shape:
            problems.append(f"{role} {column!r}: is a scalar, expected a column of values")
            return None
        return shape[0]

    def index_length(self) -> int:
        if self.is_frame:
            return len(self.obj.index)
        raise ValueError(
            f"{self.label}: needs item_id_column or at least one item feature column to know its rows"
        )

    def index_values(self, n: int) -> list[Any]:
        return list(self.obj.index) if self.is_frame else list(range(n))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return bool(math.isnan(value))
    return type(value).__name__ in ("NAType", "NaTType")


def _show(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _show_float(value: float) -> str:
    value = float(value)
    return "missing (NaN)" if math.isnan(value) else repr(value)


def _type_hint(value: Any, item_ids: Sequence[Any]) -> str:
    if not item_ids:
        return ""
    value_type = type(value.item() if isinstance(value, np.generic) else value).__name__
    first = item_ids[0]
    id_type = type(first.item() if isinstance(first, np.generic) else first).__name__
    if value_type != id_type:
        return f" (action values are {value_type}, item ids are {id_type})"
    return ""


def _rows_message(prefix: str, table: _Table, rows: Sequence[int], first: str, expected: str | None) -> str:
    """``prefix: row 3 is <first>, expected <expected> (and 2 more: rows 5, 8)``."""
    rows = [int(r) for r in rows]
    message = f"{prefix}: {table.row(rows[0])} is {first}"
    if expected is not None:
        message += f", expected {expected}"
    if len(rows) > 1:
        shown = ", ".join(str(r) for r in rows[1 : 1 + _MAX_LISTED])
        more = "" if len(rows) <= 1 + _MAX_LISTED else ", ..."
        message += f" (and {len(rows) - 1} more: row{'s' if len(rows) > 2 else ''} {shown}{more})"
    return message


def _check_length(
    values: np.ndarray, n: int, column: Any, role: str, table: _Table, problems: list[str]
) -> bool:
    if values.ndim == 0 or values.shape[0] != n:
        got = "a scalar" if values.ndim == 0 else f"{values.shape[0]} rows"
        problems.append(f"{role} {column!r}: has {got}, expected {n} (the {table.label}'s length)")
        return False
    return True


def _column(table: _Table, column: Any) -> tuple[str, np.ndarray | None, tuple[Any, ...] | None]:
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
        and all(_is_missing(v) or _is_real(v) for v in values.tolist())
    ):  # numbers with None/NaN holes, e.g. a list [0.5, None]
        return "numeric", _to_float(values), None
    if values.dtype.kind in "OUST":
        return "categorical", values.astype(object), None
    return f"dtype {values.dtype}", None, None


def _numeric_1d(table: _Table, column: Any, n: int, problems: list[str], role: str) -> np.ndarray | None:
    kind, values, _ = _column(table, column)
    if kind == "categorical":
        converted = _to_float(values)
        if converted is None:
            bad = next(i for i, v in enumerate(values) if _to_float(np.asarray([v], dtype=object)) is None)
            problems.append(f"{role} {column!r}: {table.row(bad)} is {_show(values[bad])}, expected a number")
            return None
        values = converted
    elif kind != "numeric":
        problems.append(f"{role} {column!r}: has {kind}, expected numbers")
        return None
    if values.ndim != 1:
        problems.append(f"{role} {column!r}: expected a 1-d column, got shape {values.shape}")
        return None
    if not _check_length(values, n, column, role, table, problems):
        return None
    return values


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _to_float(values: np.ndarray) -> np.ndarray | None:
    """Object values as floats (missing -> NaN), or None when one is not a number."""
    out = np.empty(values.shape, np.float64)
    for i, v in enumerate(values):
        if _is_missing(v):
            out[i] = np.nan
        elif isinstance(v, (bool, int, float, np.number, np.bool_)):
            out[i] = float(v)
        else:
            return None
    return out


def _object_values(table: _Table, column: Any, n: int, problems: list[str], role: str) -> list[Any] | None:
    kind, values, _ = _column(table, column)
    if values is None:
        problems.append(f"{role} {column!r}: has {kind}, expected item ids")
        return None
    if values.ndim != 1:
        problems.append(f"{role} {column!r}: expected a 1-d column, got shape {values.shape}")
        return None
    if not _check_length(values, n, column, role, table, problems):
        return None
    if kind == "numeric":
        # Whole floats (ints read with NaN present) compare equal to int ids anyway.
        return [None if math.isnan(v) else (int(v) if float(v).is_integer() else v) for v in values.tolist()]
    return values.tolist()


def _sorted_categories(values: Sequence[Any]) -> tuple[Any, ...]:
    unique = set(values)
    try:
        return tuple(sorted(unique))
    except TypeError:
        return tuple(sorted(unique, key=lambda v: (type(v).__name__, str(v))))


def _features(
    table: _Table,
    columns: Sequence[Any],
    n: int,
    role: str,
    categorical: str,
    known: Mapping[Any, tuple[Any, ...]] | None,
    unknown: str,
    problems: list[str],
) -> tuple[np.ndarray, tuple[str, ...], dict[Any, tuple[Any, ...]]]:
    """The ``[n, d]`` feature matrix of ``columns``, its column names and categories."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    categories_out: dict[Any, tuple[Any, ...]] = {}
    for column in columns:
        kind, values, declared = _column(table, column)
        if values is None:
            problems.append(f"{role} {column!r}: has {kind}, which cannot be a feature")
            continue
        if not _check_length(values, n, column, role, table, problems):
            continue
        is_categorical = kind == "categorical" or (known is not None and column in known)
        if known is not None and kind == "categorical" and column not in known:
            problems.append(
                f"{role} {column!r}: is categorical here but numeric in the encoding; "
                f"{table.row(0)} is {_show(values[0])}"
            )
            continue
        if not is_categorical:
            flat = values.reshape(n, -1)
            finite = np.isfinite(flat)
            rows = np.flatnonzero(~finite.all(axis=1))
            if rows.size:
                first = _show_float(flat[rows[0]][~finite[rows[0]]][0])
                problems.append(_rows_message(f"{role} {column!r}", table, rows, first, "a finite number"))
                continue
            if values.ndim == 1:
                blocks.append(values[:, None])
                names.append(str(column))
            elif values.ndim == 2:
                blocks.append(values)
                names.extend(f"{column}[{j}]" for j in range(values.shape[1]))
            else:
                problems.append(f"{role} {column!r}: expected a 1-d or 2-d array, got shape {values.shape}")
            continue

        if categorical == "error":
            problems.append(
                f"{role} {column!r}: is categorical ({_show(values[0])} at {table.row(0)}); "
                "pass categorical='onehot' to one-hot encode it"
            )
            continue
        if values.ndim != 1:
            problems.append(f"{role} {column!r}: a categorical column must be 1-d, got shape {values.shape}")
            continue
        if kind == "numeric":  # numeric values against an encoding's categories
            values = np.asarray([None if math.isnan(v) else v for v in values.tolist()], dtype=object)
        missing_rows = [i for i, v in enumerate(values) if _is_missing(v)]
        if missing_rows:
            problems.append(_rows_message(f"{role} {column!r}", table, missing_rows, "missing", "a category"))
            continue
        try:
            if known is not None:
                cats = tuple(known[column])
            elif declared is not None:
                cats = declared
            else:
                cats = _sorted_categories(values.tolist())
        except TypeError:
            bad = next(i for i, v in enumerate(values) if not isinstance(v, Hashable))
            problems.append(
                f"{role} {column!r}: {table.row(bad)} is {_show(values[bad])}, which is not hashable"
            )
            continue
        position = {c: j for j, c in enumerate(cats)}
        block = np.zeros((n, len(cats)))
        unseen: list[int] = []
        for i, v in enumerate(values.tolist()):
            try:
                j = position.get(v)
            except TypeError:
                j = None
            if j is None:
                unseen.append(i)
            else:
                block[i, j] = 1.0
        if unseen and (known is None or unknown == "error"):
            source = "the encoding" if known is not None else "the column's categories"
            problems.append(
                _rows_message(
                    f"{role} {column!r}",
                    table,
                    unseen,
                    f"{_show(values[unseen[0]])}, a category not in {source}",
                    None,
                )
                + (
                    "; pass unknown='ignore' to encode unseen categories as zeros"
                    if known is not None
                    else ""
                )
            )
            continue
        blocks.append(block)
        names.extend(f"{column}={_category_name(c)}" for c in cats)
        categories_out[column] = cats
    matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return matrix, tuple(names), categories_out


def _category_name(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode() if isinstance(value, bytes) else str(value)
