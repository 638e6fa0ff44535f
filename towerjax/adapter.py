"""Logged bandit feedback from a table: a pandas DataFrame or a dict of numpy arrays (SPEC 1).

:func:`logged_data_from_frame` turns one row per logged event (context columns, the
logged item's id, the reward and the propensity) plus an item table (one row per item,
its id and features) into a validated :class:`~towerjax.data.LoggedData`. Categorical
columns (object, string or pandas category dtype) are one-hot encoded; the categories are
recorded in the returned :class:`FrameEncoding`, which encodes a later (test) frame the
same way when passed back as ``encoding=``. pandas is optional: it is never imported, and
a plain ``dict`` of numpy arrays works the same.

Every problem in the input is reported with its column and row (0-based position in the
table): all problems found are collected into one :class:`FrameValidationError` (an
:class:`~towerjax.checks.InputError`, so a ``ValueError``), one line each.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.checks import InputError
from towerjax.data import LoggedData

__all__ = ["FrameEncoding", "FrameValidationError", "logged_data_from_frame"]

_MAX_LISTED = 5


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
      FrameValidationError: (an :class:`~towerjax.checks.InputError`, so a ``ValueError``)
        listing every problem found, each naming its column and row: a missing column, a
        missing or out-of-range propensity, an action whose id is not in the item table,
        a non-finite number, a missing category, duplicate item ids.
      InputError: for a bad argument (``categorical``, ``unknown``, an ``encoding`` built
        for other columns).
    """
    if categorical not in ("onehot", "error"):
        raise InputError("categorical", f"expected 'onehot' or 'error', got {categorical!r}")
    if unknown not in ("error", "ignore"):
        raise InputError("unknown", f"expected 'error' or 'ignore', got {unknown!r}")
    context_columns = _column_list("context_columns", context_columns)
    events, items = _Table(frame, "frame", "frame"), _Table(item_table, "item table", "item_table")
    if item_feature_columns is None:
        item_feature_columns = tuple(c for c in items.column_names() if c != item_id_column)
    roles = _Roles(
        context_columns,
        action_column,
        reward_column,
        pscore_column,
        item_id_column,
        _column_list("item_feature_columns", item_feature_columns),
    )
    if encoding is not None:
        _check_encoding_columns(encoding, roles)
    _check_columns_present(events, items, roles)

    problems = _Problems()
    n, n_items = _table_lengths(events, items, roles, problems)
    ids, id_to_index, id_role = _item_index(items, roles.item_id, n_items, problems)
    action = _actions(events, roles.action, n, ids, id_to_index, id_role, problems)
    reward = _rewards(events, roles.reward, n, problems)
    pscore = _propensities(events, roles.pscore, n, problems)
    context, action_context, fitted = _encode_features(
        events, items, roles, (n, n_items), ids or (), categorical, encoding, unknown, problems
    )
    problems.raise_if_any()
    if encoding is not None:
        _check_encoding_features(encoding, fitted)
    data = LoggedData.from_arrays(
        context=context, action_context=action_context, action=action, reward=reward, pscore=pscore
    )
    return data, fitted


# --------------------------------------------------------------------------- steps


@dataclasses.dataclass(frozen=True)
class _Roles:
    """The column playing each role: the ``*_column(s)`` arguments, lists as tuples."""

    context: tuple[Hashable, ...]
    action: Hashable
    reward: Hashable
    pscore: Hashable
    item_id: Hashable | None
    item_features: tuple[Hashable, ...]


class _Problems:
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


def _column_list(argument: str, columns: Sequence[Hashable]) -> tuple[Hashable, ...]:
    """``columns`` as a tuple; TypeError for a single string (a common slip for ``[name]``)."""
    if isinstance(columns, (str, bytes)):
        raise TypeError(f"{argument}: expected a sequence of column names, got the string {columns!r}")
    return tuple(columns)


def _check_encoding_columns(encoding: FrameEncoding, roles: _Roles) -> None:
    """InputError unless ``encoding`` was built for the same context and item feature columns."""
    for argument, columns, built_for in (
        ("context_columns", roles.context, encoding.context_columns),
        ("item_feature_columns", roles.item_features, encoding.item_feature_columns),
    ):
        if tuple(built_for) != columns:
            raise InputError("encoding", f"built for {argument} {list(built_for)}, got {list(columns)}")


def _check_columns_present(events: _Table, items: _Table, roles: _Roles) -> None:
    """FrameValidationError naming every column that an argument names but its table lacks."""
    problems = _Problems()
    named = [
        ("action_column", roles.action),
        ("reward_column", roles.reward),
        ("pscore_column", roles.pscore),
        *(("context_columns", c) for c in roles.context),
    ]
    for role, c in named:
        if not events.has(c):
            problems.add(
                c, f"frame: missing column {c!r} (named by {role}); columns are {events.column_names()}"
            )
    item_missing = [c for c in roles.item_features if not items.has(c)]
    if roles.item_id is not None and not items.has(roles.item_id):
        item_missing.insert(0, roles.item_id)
    for c in item_missing:
        role = "item_id_column" if c == roles.item_id else "item_feature_columns"
        problems.add(
            c, f"item table: missing column {c!r} (named by {role}); columns are {items.column_names()}"
        )
    problems.raise_if_any()


def _table_lengths(events: _Table, items: _Table, roles: _Roles, problems: _Problems) -> tuple[int, int]:
    """``(n, A)``: the rows of the action column and of the item table's id (or first) column.

    Raises FrameValidationError with the problems so far when either cannot be read.
    """
    n = events.length(roles.action, problems, "action column")
    n_items = None
    if roles.item_id is not None:
        n_items = items.length(roles.item_id, problems, "item table id column")
    if n_items is None:
        first = roles.item_features[0] if roles.item_features else None
        n_items = (
            items.index_length() if first is None else items.length(first, problems, "item table column")
        )
    if n is None or n_items is None:
        raise problems.error()
    return n, n_items


def _item_index(
    items: _Table, item_id_column: Hashable | None, n_items: int, problems: _Problems
) -> tuple[tuple[Any, ...] | None, dict[Any, int], str]:
    """``(ids, id_to_index, id_role)``: each item-table row's id, each id's row, and how messages name them.

    Reports a missing or unhashable id and duplicate ids (a duplicate maps to its first
    row). ``ids`` is ``None`` when the id column cannot be read.
    """
    if item_id_column is None:
        ids = items.index_values(n_items)
        id_role, column = "item table index", items.argument
    else:
        ids = _object_values(items, item_id_column, n_items, problems, "item table id column")
        id_role, column = f"item table id column {item_id_column!r}", item_id_column
    if ids is None:
        return None, {}, id_role
    first_seen: dict[Any, int] = {}
    duplicates: list[tuple[Any, int, int]] = []
    for i, v in enumerate(ids):
        if _is_missing(v):
            problems.add(column, f"{id_role}: {items.row(i)} is missing, expected an item id")
            continue
        try:
            j = first_seen.setdefault(v, i)
        except TypeError:
            problems.add(column, f"{id_role}: {items.row(i)} is {v!r}, which is not hashable")
            continue
        if j != i:
            duplicates.append((v, j, i))
    for v, j, i in duplicates[:_MAX_LISTED]:
        problems.add(column, f"{id_role}: item id {_show(v)} appears at {items.row(j)} and {items.row(i)}")
    if len(duplicates) > _MAX_LISTED:
        problems.add(column, f"{id_role}: {len(duplicates) - _MAX_LISTED} more duplicate item ids")
    return tuple(ids), first_seen, id_role


def _actions(
    events: _Table,
    column: Hashable,
    n: int,
    ids: tuple[Any, ...] | None,
    id_to_index: Mapping[Any, int],
    id_role: str,
    problems: _Problems,
) -> np.ndarray:
    """``[n]`` action indices: the item-table row of each event's item id.

    Reports missing ids and ids not in the item table (with a hint when the action
    values and the item ids have different types).
    """
    action = np.zeros(n, np.int64)
    raw = _object_values(events, column, n, problems, "action column")
    if raw is None or ids is None:
        return action
    not_found: list[int] = []
    missing_rows: list[int] = []
    for i, v in enumerate(raw):
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
    prefix = f"action column {column!r}"
    if missing_rows:
        problems.add(
            column,
            _rows_message(prefix, events, missing_rows, "missing", "an item id from the item table"),
        )
    if not_found:
        first = raw[not_found[0]]
        problems.add(
            column,
            _rows_message(
                prefix, events, not_found, f"{_show(first)}, which is not an item id in the {id_role}", None
            )
            + _type_hint(first, ids),
        )
    return action


def _report_missing(
    events: _Table, column: Hashable, values: np.ndarray, problems: _Problems, prefix: str, expected: str
) -> None:
    """Reports the rows where ``values`` is NaN."""
    missing = np.flatnonzero(np.isnan(values))
    if missing.size:
        problems.add(column, _rows_message(prefix, events, missing, "missing (NaN)", expected))


def _rewards(events: _Table, column: Hashable, n: int, problems: _Problems) -> np.ndarray | None:
    """``[n]`` rewards; reports a missing (NaN) or infinite reward."""
    reward = _numeric_1d(events, column, n, problems, "reward column")
    if reward is None:
        return None
    prefix = f"reward column {column!r}"
    _report_missing(events, column, reward, problems, prefix, "a finite number")
    infinite = np.flatnonzero(np.isinf(reward))
    if infinite.size:
        shown = _show_float(reward[infinite[0]])
        problems.add(column, _rows_message(prefix, events, infinite, shown, "a finite number"))
    return reward


def _propensities(events: _Table, column: Hashable, n: int, problems: _Problems) -> np.ndarray | None:
    """``[n]`` logging propensities; reports a missing (NaN) one or one outside ``(0, 1]``."""
    pscore = _numeric_1d(events, column, n, problems, "pscore column")
    if pscore is None:
        return None
    prefix = f"pscore column {column!r}"
    _report_missing(events, column, pscore, problems, prefix, "a value in (0, 1]")
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isnan(pscore) & ~((pscore > 0) & (pscore <= 1)))
    if bad.size:
        problems.add(
            column, _rows_message(prefix, events, bad, _show_float(pscore[bad[0]]), "a value in (0, 1]")
        )
    return pscore


def _encode_features(
    events: _Table,
    items: _Table,
    roles: _Roles,
    sizes: tuple[int, int],
    item_ids: tuple[Any, ...],
    categorical: str,
    encoding: FrameEncoding | None,
    unknown: str,
    problems: _Problems,
) -> tuple[np.ndarray, np.ndarray, FrameEncoding]:
    """``[n, d_x]`` context and ``[A, d_a]`` item features, and the encoding that built them.

    Categories come from ``encoding`` when given, else are fitted here; with no item
    feature columns each item is its own one-hot feature.
    """
    n, n_items = sizes
    context, context_names, context_categories = _features(
        events,
        roles.context,
        n,
        "context column",
        categorical,
        None if encoding is None else encoding.context_categories,
        unknown,
        problems,
    )
    if roles.item_features:
        action_context, item_names, item_categories = _features(
            items,
            roles.item_features,
            n_items,
            "item table column",
            categorical,
            None if encoding is None else encoding.item_categories,
            unknown,
            problems,
        )
    else:
        if encoding is not None and tuple(encoding.item_ids) != item_ids:
            problems.add(
                items.argument,
                "item table: the encoding has no item features (one-hot item identity), so the item "
                "table must list the same item ids in the same order",
            )
        action_context = np.eye(n_items)
        item_names = tuple(f"item={_show(v)}" for v in item_ids)
        item_categories = {}
    fitted = FrameEncoding(
        context_columns=roles.context,
        item_feature_columns=roles.item_features,
        context_categories=context_categories,
        item_categories=item_categories,
        context_feature_names=context_names,
        item_feature_names=item_names,
        item_ids=item_ids,
    )
    return context, action_context, fitted


def _check_encoding_features(encoding: FrameEncoding, fitted: FrameEncoding) -> None:
    """InputError unless the features built with ``encoding`` have its feature names."""
    for kind, names, expected in (
        ("context", fitted.context_feature_names, encoding.context_feature_names),
        ("item", fitted.item_feature_names, encoding.item_feature_names),
    ):
        if tuple(expected) != names:
            raise InputError(
                "encoding",
                f"{kind} features {list(names)} differ from the encoding's {list(expected)} "
                "(a 2-d column changed width?)",
            )


# --------------------------------------------------------------------------- tables


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns") and hasattr(obj, "iloc")


class _Table:
    """A DataFrame or a mapping of arrays, seen through the few operations needed here.

    ``label`` names the table in messages (``"item table"``), ``argument`` is the argument
    that holds it (``"item_table"``).
    """

    def __init__(self, obj: Any, label: str, argument: str):
        self.label = label
        self.argument = argument
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

    def length(self, column: Any, problems: _Problems, role: str) -> int | None:
        values = self.get(column)
        if self.is_frame and _is_dataframe(values):
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
    values: np.ndarray, n: int, column: Any, role: str, table: _Table, problems: _Problems
) -> bool:
    if values.ndim == 0 or values.shape[0] != n:
        got = "a scalar" if values.ndim == 0 else f"{values.shape[0]} rows"
        problems.add(column, f"{role} {column!r}: has {got}, expected {n} (the {table.label}'s length)")
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


def _numeric_1d(table: _Table, column: Any, n: int, problems: _Problems, role: str) -> np.ndarray | None:
    kind, values, _ = _column(table, column)
    if kind == "categorical":
        converted = _to_float(values)
        if converted is None:
            bad = next(i for i, v in enumerate(values) if _to_float(np.asarray([v], dtype=object)) is None)
            problems.add(
                column, f"{role} {column!r}: {table.row(bad)} is {_show(values[bad])}, expected a number"
            )
            return None
        values = converted
    elif kind != "numeric":
        problems.add(column, f"{role} {column!r}: has {kind}, expected numbers")
        return None
    if values.ndim != 1:
        problems.add(column, f"{role} {column!r}: expected a 1-d column, got shape {values.shape}")
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


def _object_values(table: _Table, column: Any, n: int, problems: _Problems, role: str) -> list[Any] | None:
    kind, values, _ = _column(table, column)
    if values is None:
        problems.add(column, f"{role} {column!r}: has {kind}, expected item ids")
        return None
    if values.ndim != 1:
        problems.add(column, f"{role} {column!r}: expected a 1-d column, got shape {values.shape}")
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
    problems: _Problems,
) -> tuple[np.ndarray, tuple[str, ...], dict[Any, tuple[Any, ...]]]:
    """The ``[n, d]`` feature matrix of ``columns``, its column names and categories.

    Numeric columns (1-d, or 2-d for several features) are used as they are; categorical
    ones, and any column ``known`` (an encoding's categories) lists, are one-hot encoded.
    A column with a problem is reported and left out.
    """
    blocks: list[np.ndarray] = []
    names: list[str] = []
    categories_out: dict[Any, tuple[Any, ...]] = {}
    for column in columns:
        kind, values, declared = _column(table, column)
        if values is None:
            problems.add(column, f"{role} {column!r}: has {kind}, which cannot be a feature")
            continue
        if not _check_length(values, n, column, role, table, problems):
            continue
        if known is not None and kind == "categorical" and column not in known:
            problems.add(
                column,
                f"{role} {column!r}: is categorical here but numeric in the encoding; "
                f"{table.row(0)} is {_show(values[0])}",
            )
            continue
        if kind == "categorical" or (known is not None and column in known):
            values = _category_values(table, column, kind, values, role, categorical, problems)
            cats = (
                None
                if values is None
                else _categories(table, column, values, declared, known, role, problems)
            )
            block = (
                None
                if cats is None
                else _one_hot(table, column, values, cats, role, known, unknown, problems)
            )
            if block is not None:
                blocks.append(block)
                names.extend(f"{column}={_category_name(c)}" for c in cats)
                categories_out[column] = cats
        else:
            numeric = _numeric_feature(table, column, values, n, role, problems)
            if numeric is not None:
                blocks.append(numeric[0])
                names.extend(numeric[1])
    matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return matrix, tuple(names), categories_out


def _numeric_feature(
    table: _Table, column: Any, values: np.ndarray, n: int, role: str, problems: _Problems
) -> tuple[np.ndarray, list[str]] | None:
    """A numeric column as ``[n, k]`` features and their names; reports a non-finite value or rank > 2."""
    flat = values.reshape(n, -1)
    finite = np.isfinite(flat)
    rows = np.flatnonzero(~finite.all(axis=1))
    if rows.size:
        first = _show_float(flat[rows[0]][~finite[rows[0]]][0])
        problems.add(column, _rows_message(f"{role} {column!r}", table, rows, first, "a finite number"))
        return None
    if values.ndim == 1:
        return values[:, None], [str(column)]
    if values.ndim == 2:
        return values, [f"{column}[{j}]" for j in range(values.shape[1])]
    problems.add(column, f"{role} {column!r}: expected a 1-d or 2-d array, got shape {values.shape}")
    return None


def _category_values(
    table: _Table,
    column: Any,
    kind: str,
    values: np.ndarray,
    role: str,
    categorical: str,
    problems: _Problems,
) -> np.ndarray | None:
    """A categorical column's values as a 1-d object array (numbers too, against an encoding).

    Reports the column itself under ``categorical="error"``, a 2-d column, a missing value.
    """
    if categorical == "error":
        problems.add(
            column,
            f"{role} {column!r}: is categorical ({_show(values[0])} at {table.row(0)}); "
            "pass categorical='onehot' to one-hot encode it",
        )
        return None
    if values.ndim != 1:
        problems.add(column, f"{role} {column!r}: a categorical column must be 1-d, got shape {values.shape}")
        return None
    if kind == "numeric":  # numeric values against an encoding's categories
        values = np.asarray([None if math.isnan(v) else v for v in values.tolist()], dtype=object)
    missing_rows = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing_rows:
        problems.add(
            column, _rows_message(f"{role} {column!r}", table, missing_rows, "missing", "a category")
        )
        return None
    return values


def _categories(
    table: _Table,
    column: Any,
    values: np.ndarray,
    declared: tuple[Any, ...] | None,
    known: Mapping[Any, tuple[Any, ...]] | None,
    role: str,
    problems: _Problems,
) -> tuple[Any, ...] | None:
    """The column's categories in one-hot order: the encoding's, else pandas' declared ones, else sorted.

    Reports an unhashable value.
    """
    try:
        if known is not None:
            return tuple(known[column])
        if declared is not None:
            return declared
        return _sorted_categories(values.tolist())
    except TypeError:
        bad = next(i for i, v in enumerate(values) if not isinstance(v, Hashable))
        problems.add(
            column, f"{role} {column!r}: {table.row(bad)} is {_show(values[bad])}, which is not hashable"
        )
        return None


def _one_hot(
    table: _Table,
    column: Any,
    values: np.ndarray,
    categories: tuple[Any, ...],
    role: str,
    known: Mapping[Any, tuple[Any, ...]] | None,
    unknown: str,
    problems: _Problems,
) -> np.ndarray | None:
    """``[n, len(categories)]`` one-hot rows of ``values``.

    A value outside ``categories`` is reported, except against an encoding (``known``)
    with ``unknown="ignore"``, where its row stays all zeros.
    """
    position = {c: j for j, c in enumerate(categories)}
    block = np.zeros((len(values), len(categories)))
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
        hint = "; pass unknown='ignore' to encode unseen categories as zeros" if known is not None else ""
        problems.add(
            column,
            _rows_message(
                f"{role} {column!r}",
                table,
                unseen,
                f"{_show(values[unseen[0]])}, a category not in {source}",
                None,
            )
            + hint,
        )
        return None
    return block


def _category_name(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode() if isinstance(value, bytes) else str(value)
