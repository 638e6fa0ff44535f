"""Logged bandit feedback from a table: a pandas DataFrame or a dict of numpy arrays (SPEC 1).

:func:`logged_data_from_frame` turns one row per logged event (context columns, the
logged item's id, the reward and the propensity) plus an item table (one row per item,
its id and features) into a validated :class:`~towerjax.data.LoggedData`, and returns
the :class:`FrameEncoding` that built its features.

Features. Numeric columns are used as they are, or standardised (``standardize=``:
``(value - mean) / std`` with the training table's statistics). Categorical columns
(object, string or pandas category dtype) are one-hot encoded, one feature per
category. A text column that looks numeric (numbers stored as strings, perhaps with a
marker such as ``"n/a"``) is never one-hot encoded silently: it is an error naming the
column unless ``numeric_strings=`` says to parse it or to treat it as categorical.

Reuse and serving. The :class:`FrameEncoding` records the columns, the categories, the
standardisation statistics and which columns were parsed from text. Pass it back as
``encoding=`` to build a test log the same way; save it with
:meth:`FrameEncoding.to_dict` (JSON-ready) and load it with :meth:`FrameEncoding.from_dict`;
encode new contexts or items for serving with :meth:`FrameEncoding.encode_contexts` and
:meth:`FrameEncoding.encode_items`, where a category not seen in training becomes an
all-zero one-hot (counted in an :class:`UnseenCategoryWarning`).

pandas is optional: it is never imported, and a plain ``dict`` of numpy arrays works the
same.

Every problem in the input is reported with its column and row (0-based position in the
table): all problems found are collected into one :class:`FrameValidationError` (an
:class:`~towerjax.checks.InputError`, so a ``ValueError``), one line each.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.checks import InputError
from towerjax.data import LoggedData

__all__ = [
    "NUMERIC_STRINGS",
    "FrameEncoding",
    "FrameValidationError",
    "UnseenCategoryWarning",
    "logged_data_from_frame",
]

NUMERIC_STRINGS = ("error", "parse", "categorical")

_MAX_LISTED = 5
_FORMAT = "towerjax.FrameEncoding"
_VERSION = 1
# Text read as a missing value when a numeric-looking text column is parsed (case-insensitive).
_MISSING_MARKERS = frozenset({"", "n/a", "na", "nan", "null", "none", "-", "?", "#n/a", "missing"})


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
    """Rows whose category was not in the encoding were encoded as all-zero one-hots.

    Attributes:
      counts: for each column with unseen categories, how many rows had one.
      n_rows: how many rows had at least one unseen category.
    """

    def __init__(self, message: str, counts: Mapping[Hashable, int], n_rows: int):
        super().__init__(message)
        self.counts = dict(counts)
        self.n_rows = n_rows


@dataclasses.dataclass(frozen=True)
class FrameEncoding:
    """How a frame's columns became feature matrices: reuse it, save it, serve with it.

    Pass it back to :func:`logged_data_from_frame` as ``encoding=``, save it with
    :meth:`to_dict` / :meth:`from_dict`, and encode new rows with :meth:`encode_contexts`
    and :meth:`encode_items`.

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
      context_standardization: for each standardised numeric context column,
        ``(mean, std)``, each a tuple with one float per feature of the column; the
        feature is ``(value - mean) / std``, with the training frame's mean and population
        standard deviation (1.0 where the column was constant).
      item_standardization: the same for item-table columns (statistics over the items).
      context_parsed_columns: context columns read as numbers from text
        (``numeric_strings="parse"``); text in them is parsed again in new frames.
      item_parsed_columns: the same for item-table columns.
      item_id_column: the item table's id column (``None``: its index, or for a mapping
        the row positions).
    """

    context_columns: tuple[Hashable, ...]
    item_feature_columns: tuple[Hashable, ...]
    context_categories: dict[Hashable, tuple[Any, ...]]
    item_categories: dict[Hashable, tuple[Any, ...]]
    context_feature_names: tuple[str, ...]
    item_feature_names: tuple[str, ...]
    item_ids: tuple[Any, ...]
    context_standardization: dict[Hashable, tuple[tuple[float, ...], tuple[float, ...]]] = dataclasses.field(
        default_factory=dict
    )
    item_standardization: dict[Hashable, tuple[tuple[float, ...], tuple[float, ...]]] = dataclasses.field(
        default_factory=dict
    )
    context_parsed_columns: tuple[Hashable, ...] = ()
    item_parsed_columns: tuple[Hashable, ...] = ()
    item_id_column: Hashable | None = None

    @property
    def n_actions(self) -> int:
        """Number of items in the item table the encoding was built from."""
        return len(self.item_ids)

    def encode_contexts(
        self, frame: Any, *, numeric_strings: str | Mapping[Hashable, str] = "error", unknown: str = "warn"
    ) -> np.ndarray:
        """``[n, d_x]`` float32 context features of a new frame, built as in training.

        The same rows give exactly the training ``LoggedData.context``: the same one-hot
        order, the stored standardisation statistics (never refitted), the stored parsed
        columns parsed again. Only ``context_columns`` are read; other columns are ignored.

        Args:
          frame: a pandas ``DataFrame`` or a mapping from column name to array, with at
            least one row.
          numeric_strings: for a column that was numeric in training but holds text here
            (and is not in ``context_parsed_columns``), as in :func:`logged_data_from_frame`.
          unknown: what a category not seen in training becomes: ``"warn"`` (an all-zero
            one-hot, and an :class:`UnseenCategoryWarning` with the count of such rows),
            ``"ignore"`` (all zeros, silently) or ``"error"``.

        Raises:
          FrameValidationError: naming each column with a problem (missing, non-finite,
            text in a numeric column, an unseen category under ``unknown="error"``) and
            an empty frame.
        """
        rules = _Rules.make(numeric_strings, False, unknown, self.context_columns + self.item_feature_columns)
        table = _Table(frame, "frame", "frame")
        return _encode_new(table, self.context_columns, "context", self._known("context"), rules, self)

    def encode_items(
        self,
        item_table: Any,
        *,
        numeric_strings: str | Mapping[Hashable, str] = "error",
        unknown: str = "warn",
    ) -> np.ndarray:
        """``[m, d_a]`` float32 item features of an item table, built as in training.

        The training item table gives exactly ``LoggedData.action_context``. With item
        feature columns, only those are read. Without (each item its own one-hot), the
        ids (``item_id_column``) are looked up in ``item_ids``; an id not seen in training
        is an unseen category. Arguments as in :meth:`encode_contexts`.
        """
        rules = _Rules.make(numeric_strings, False, unknown, self.context_columns + self.item_feature_columns)
        table = _Table(item_table, "item table", "item_table")
        return _encode_new(table, self.item_feature_columns, "item", self._known("item"), rules, self)

    def to_dict(self) -> dict[str, Any]:
        """The encoding as JSON-ready Python (dicts, lists, str, int, float, bool, None).

        Column names, categories and item ids may be str, int, float, bool, bytes or tuples
        of these (numpy scalars are written as Python numbers); tuples and bytes are
        tagged (``{"tuple": [...]}``, ``{"bytes": "..."}``) so :meth:`from_dict` restores
        them exactly. Floats are written in full (``json`` round-trips them exactly).

        Raises:
          TypeError: naming the field, for a value of another type.
        """
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "context_columns": _json_list(self.context_columns, "context_columns"),
            "item_feature_columns": _json_list(self.item_feature_columns, "item_feature_columns"),
            "context_categories": _json_categories(self.context_categories, "context_categories"),
            "item_categories": _json_categories(self.item_categories, "item_categories"),
            "context_feature_names": list(self.context_feature_names),
            "item_feature_names": list(self.item_feature_names),
            "item_ids": _json_list(self.item_ids, "item_ids"),
            "context_standardization": _json_statistics(
                self.context_standardization, "context_standardization"
            ),
            "item_standardization": _json_statistics(self.item_standardization, "item_standardization"),
            "context_parsed_columns": _json_list(self.context_parsed_columns, "context_parsed_columns"),
            "item_parsed_columns": _json_list(self.item_parsed_columns, "item_parsed_columns"),
            "item_id_column": _to_json(self.item_id_column, "item_id_column"),
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> FrameEncoding:
        """The encoding :meth:`to_dict` wrote (also after a JSON round trip).

        Raises:
          InputError: naming ``encoding``, for a dict that is not a saved FrameEncoding
            (wrong ``format``, a newer ``version``, a missing key, a malformed entry).
        """
        if not isinstance(saved, Mapping) or saved.get("format") != _FORMAT:
            raise InputError(
                "encoding", f"expected a dict written by FrameEncoding.to_dict (format {_FORMAT!r})"
            )
        if saved.get("version") != _VERSION:
            raise InputError("encoding", f"expected version {_VERSION}, got {saved.get('version')!r}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in saved]
        if missing:
            raise InputError("encoding", f"missing keys {missing}")
        try:
            return cls(
                context_columns=_from_json_list(saved["context_columns"]),
                item_feature_columns=_from_json_list(saved["item_feature_columns"]),
                context_categories=_from_json_categories(saved["context_categories"]),
                item_categories=_from_json_categories(saved["item_categories"]),
                context_feature_names=tuple(str(v) for v in saved["context_feature_names"]),
                item_feature_names=tuple(str(v) for v in saved["item_feature_names"]),
                item_ids=_from_json_list(saved["item_ids"]),
                context_standardization=_from_json_statistics(saved["context_standardization"]),
                item_standardization=_from_json_statistics(saved["item_standardization"]),
                context_parsed_columns=_from_json_list(saved["context_parsed_columns"]),
                item_parsed_columns=_from_json_list(saved["item_parsed_columns"]),
                item_id_column=_from_json(saved["item_id_column"]),
            )
        except (TypeError, ValueError, KeyError) as err:
            raise InputError("encoding", f"malformed saved encoding ({err})") from None

    def _known(self, role: str) -> _Known:
        if role == "context":
            return _Known(self.context_categories, self.context_standardization, self.context_parsed_columns)
        return _Known(self.item_categories, self.item_standardization, self.item_parsed_columns)


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
    numeric_strings: str | Mapping[Hashable, str] = "error",
    standardize: bool | Sequence[Hashable] = False,
    encoding: FrameEncoding | None = None,
    unknown: str = "error",
) -> tuple[LoggedData, FrameEncoding]:
    """Builds :class:`~towerjax.data.LoggedData` from a table of logged events.

    Args:
      frame: a pandas ``DataFrame`` or a mapping from column name to a 1-d array of
        length ``n >= 1`` (a context column may also be a numeric ``[n, k]`` array: ``k``
        features).
      context_columns: columns forming the context ``x`` (numeric columns are used as
        they are or standardised; categorical ones are one-hot encoded).
      action_column: the logged item's id; mapped to the row of ``item_table`` with that
        id, which becomes the action index.
      reward_column: the observed reward (finite numbers).
      pscore_column: the logging propensity ``pi_0(a_i|x_i)``, each in ``(0, 1]``.
      item_table: a ``DataFrame`` or mapping with one row per item (at least 2).
      item_id_column: the column of ``item_table`` holding item ids; ``None`` uses the
        DataFrame's index, or for a mapping the row positions ``0..A-1``.
      item_feature_columns: the item-table columns forming ``e_a``; ``None`` means every
        column except ``item_id_column``. If there are none, each item is its own one-hot
        feature (``action_context = eye(A)``).
      categorical: ``"onehot"`` one-hot encodes object/string/category columns;
        ``"error"`` reports them as problems instead.
      numeric_strings: what a feature column of text that looks numeric becomes: one
        whose values are numbers, numbers stored as strings (``"3.5"``) or missing markers
        (``"n/a"``, ``""``, ``"NA"``, ...), with at least as many numbers as other text.
        ``"error"`` (default) reports it, naming the column; ``"parse"`` reads it as
        numbers (a marker or other text left in it is reported by row);
        ``"categorical"`` one-hot encodes each distinct value. A mapping from column to
        one of these sets it per column (``"error"`` for the others). A pandas category
        column is always categorical.
      standardize: ``True`` standardises every numeric feature column (context columns
        over the frame's rows, item columns over the items) to ``(value - mean) / std``
        (population std; a constant column is only centred); a sequence of column names
        standardises those. The statistics are stored in the encoding.
      encoding: a :class:`FrameEncoding` returned earlier; its columns, categories,
        standardisation statistics and parsed columns are reused (``standardize`` is
        then ignored), so a test frame's features line up with the training frame's.
      unknown: with ``encoding``, what a category not seen before becomes: ``"error"`` (a
        problem naming the column and row), ``"ignore"`` (all zeros) or ``"warn"`` (all
        zeros and an :class:`UnseenCategoryWarning` with the count of such rows).

    Returns:
      ``(data, encoding)``: the validated container and how its features were built.

    Raises:
      FrameValidationError: (an :class:`~towerjax.checks.InputError`, so a ``ValueError``)
        listing every problem found, each naming its column and row: a missing column, an
        empty table, a missing or out-of-range propensity, an action whose id is not in
        the item table, a non-finite number, numbers stored as text, a missing category,
        duplicate item ids.
      InputError: for a bad argument (``categorical``, ``numeric_strings``,
        ``standardize``, ``unknown``, an ``encoding`` built for other columns).
    """
    if categorical not in ("onehot", "error"):
        raise InputError("categorical", f"expected 'onehot' or 'error', got {categorical!r}")
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
    rules = _Rules.make(
        numeric_strings,
        standardize,
        unknown,
        roles.context + roles.item_features,
        categorical=categorical,
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
    context, action_context, fitted, unseen = _encode_features(
        events, items, roles, (n, n_items), ids or (), rules, encoding, problems
    )
    problems.raise_if_any()
    if encoding is not None:
        _check_encoding_features(encoding, fitted)
    _warn_unseen(unseen, rules.unknown)
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


@dataclasses.dataclass(frozen=True)
class _Rules:
    """The encoding options of one call, checked: how each feature column is read."""

    categorical: str
    numeric_strings: str | Mapping[Hashable, str]
    standardize: bool | frozenset
    unknown: str

    @classmethod
    def make(
        cls,
        numeric_strings: Any,
        standardize: Any,
        unknown: Any,
        columns: Sequence[Hashable],
        *,
        categorical: str = "onehot",
    ) -> _Rules:
        """Checks the options against the feature ``columns``; InputError naming the bad one."""
        if unknown not in ("error", "ignore", "warn"):
            raise InputError("unknown", f"expected 'error', 'ignore' or 'warn', got {unknown!r}")
        if isinstance(numeric_strings, Mapping):
            for column, mode in numeric_strings.items():
                if column not in columns:
                    raise InputError(
                        "numeric_strings", f"names {column!r}, which is not a feature column {list(columns)}"
                    )
                if mode not in NUMERIC_STRINGS:
                    raise InputError(
                        "numeric_strings", f"expected one of {NUMERIC_STRINGS} for {column!r}, got {mode!r}"
                    )
            numeric_strings = dict(numeric_strings)
        elif numeric_strings not in NUMERIC_STRINGS:
            raise InputError(
                "numeric_strings",
                f"expected one of {NUMERIC_STRINGS} or a mapping from column to one, got {numeric_strings!r}",
            )
        if isinstance(standardize, (bool, np.bool_)):
            standardize = bool(standardize)
        else:
            if isinstance(standardize, (str, bytes)) or not isinstance(
                standardize, Sequence | set | frozenset
            ):
                raise InputError(
                    "standardize", f"expected True, False or a sequence of column names, got {standardize!r}"
                )
            for column in standardize:
                if column not in columns:
                    raise InputError(
                        "standardize", f"names {column!r}, which is not a feature column {list(columns)}"
                    )
            standardize = frozenset(standardize)
        return cls(categorical, numeric_strings, standardize, unknown)

    def numeric_mode(self, column: Hashable) -> str:
        if isinstance(self.numeric_strings, str):
            return self.numeric_strings
        return self.numeric_strings.get(column, "error")

    def standardizes(self, column: Hashable) -> bool:
        if isinstance(self.standardize, bool):
            return self.standardize
        return column in self.standardize


@dataclasses.dataclass(frozen=True)
class _Known:
    """What an encoding fixed for one table's feature columns."""

    categories: Mapping[Hashable, tuple[Any, ...]]
    standardization: Mapping[Hashable, tuple[tuple[float, ...], tuple[float, ...]]]
    parsed: tuple[Hashable, ...]


@dataclasses.dataclass
class _Encoded:
    """One table's ``[n, d]`` features and how they were built.

    ``unseen`` holds ``(role, column, rows, "row 1 is 'Paris'")`` for the rows whose
    category was not in the encoding (all zeros), when unseen categories are not an error.
    """

    matrix: np.ndarray
    names: tuple[str, ...]
    categories: dict[Hashable, tuple[Any, ...]]
    standardization: dict[Hashable, tuple[tuple[float, ...], tuple[float, ...]]]
    parsed: tuple[Hashable, ...]
    unseen: list[tuple[str, Hashable, list[int], Any]]


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
    if n == 0:
        problems.add(events.argument, "frame: has no rows, expected at least one logged event")
    if n_items < 2:
        problems.add(
            items.argument,
            f"item table: has {n_items} row{'' if n_items == 1 else 's'}, expected at least 2 items",
        )
    problems.raise_if_any()
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
    rules: _Rules,
    encoding: FrameEncoding | None,
    problems: _Problems,
) -> tuple[np.ndarray, np.ndarray, FrameEncoding, list]:
    """``[n, d_x]`` context and ``[A, d_a]`` item features, the encoding that built them, unseen rows.

    Categories, statistics and parsed columns come from ``encoding`` when given, else
    are fitted here; with no item feature columns each item is its own one-hot feature.
    """
    n, n_items = sizes
    known = (None, None) if encoding is None else (encoding._known("context"), encoding._known("item"))
    context = _features(events, roles.context, n, "context column", rules, known[0], problems)
    if roles.item_features:
        item = _features(items, roles.item_features, n_items, "item table column", rules, known[1], problems)
    else:
        if encoding is not None and tuple(encoding.item_ids) != item_ids:
            problems.add(
                items.argument,
                "item table: the encoding has no item features (one-hot item identity), so the item "
                "table must list the same item ids in the same order",
            )
        names = tuple(f"item={_show(v)}" for v in item_ids)
        item = _Encoded(np.eye(n_items), names, {}, {}, (), [])
    fitted = FrameEncoding(
        context_columns=roles.context,
        item_feature_columns=roles.item_features,
        context_categories=context.categories,
        item_categories=item.categories,
        context_feature_names=context.names,
        item_feature_names=item.names,
        item_ids=item_ids,
        context_standardization=context.standardization,
        item_standardization=item.standardization,
        context_parsed_columns=context.parsed,
        item_parsed_columns=item.parsed,
        item_id_column=roles.item_id,
    )
    return context.matrix, item.matrix, fitted, context.unseen + item.unseen


def _check_encoding_features(encoding: FrameEncoding, fitted: FrameEncoding) -> None:
    """InputError unless the features built with ``encoding`` have its feature names."""
    _check_feature_names("context", fitted.context_feature_names, encoding.context_feature_names)
    _check_feature_names("item", fitted.item_feature_names, encoding.item_feature_names)


def _check_feature_names(kind: str, names: Sequence[str], expected: Sequence[str]) -> None:
    if tuple(expected) != tuple(names):
        raise InputError(
            "encoding",
            f"{kind} features {list(names)} differ from the encoding's {list(expected)} "
            "(a 2-d column changed width?)",
        )


def _encode_new(
    table: _Table,
    columns: tuple[Hashable, ...],
    role: str,
    known: _Known,
    rules: _Rules,
    encoding: FrameEncoding,
) -> np.ndarray:
    """A new table's ``[n, d]`` float32 features under ``encoding`` (``role`` ``"context"`` or ``"item"``)."""
    label = "context column" if role == "context" else "item table column"
    problems = _Problems()
    if role == "item" and not columns:
        encoded = _identity_features(table, encoding, rules.unknown, problems)
        expected = encoding.item_feature_names
    else:
        if not columns:
            raise InputError("encoding", f"has no {role} columns to encode")
        for c in columns:
            if not table.has(c):
                problems.add(
                    c,
                    f"{table.label}: missing column {c!r} (a {role} column of the encoding); "
                    f"columns are {table.column_names()}",
                )
        problems.raise_if_any()
        n = table.length(columns[0], problems, label)
        if n is None:
            raise problems.error()
        _require_rows(table, n, "row to encode")
        encoded = _features(table, columns, n, label, rules, known, problems)
        expected = encoding.context_feature_names if role == "context" else encoding.item_feature_names
    problems.raise_if_any()
    _check_feature_names(role, encoded.names, expected)
    _warn_unseen(encoded.unseen, rules.unknown, stacklevel=4)
    return encoded.matrix.astype(np.float32)


def _identity_features(table: _Table, encoding: FrameEncoding, unknown: str, problems: _Problems) -> _Encoded:
    """``[m, A]`` one-hot item identities of a new item table; an id not in the encoding is all zeros."""
    id_column = encoding.item_id_column
    if id_column is not None:
        if not table.has(id_column):
            raise FrameValidationError(
                [
                    f"item table: missing column {id_column!r} (the encoding's item_id_column); "
                    f"columns are {table.column_names()}"
                ],
                [id_column],
            )
        m = table.length(id_column, problems, "item table id column")
        ids = None if m is None else _object_values(table, id_column, m, problems, "item table id column")
        label, column = "item table id column", id_column
    else:
        names = table.column_names()
        if not table.is_frame and not names:
            raise FrameValidationError(
                ["item table: has no columns, expected one row per item"], [table.argument]
            )
        m = table.index_length() if table.is_frame else table.length(names[0], problems, "item table column")
        ids = None if m is None else table.index_values(m)
        label, column = "item table index", table.argument
    if ids is None:
        raise problems.error()
    _require_rows(table, len(ids), "item")
    block, unseen = _one_hot_rows(ids, encoding.item_ids)
    found: list = []
    if unseen:
        first = f"{table.row(unseen[0])} is {_show(ids[unseen[0]])}"
        if unknown == "error":
            problems.add(
                column,
                _rows_message(f"{label} {column!r}", table, unseen, f"{_show(ids[unseen[0]])}", None)
                + ", an item id not in the encoding; pass unknown='ignore' or 'warn' to encode it as zeros",
            )
        else:
            found.append((label, column, unseen, first))
    return _Encoded(block, tuple(encoding.item_feature_names), {}, {}, (), found)


def _require_rows(table: _Table, n: int, what: str) -> None:
    """FrameValidationError naming the table when it has no rows."""
    if n == 0:
        raise FrameValidationError(
            [f"{table.label}: has no rows, expected at least one {what}"], [table.argument]
        )


def _warn_unseen(
    unseen: Sequence[tuple[str, Hashable, list[int], str]], unknown: str, stacklevel: int = 3
) -> None:
    """An :class:`UnseenCategoryWarning` counting the rows encoded as zeros, under ``unknown="warn"``."""
    if unknown != "warn" or not unseen:
        return
    counts: dict[Hashable, int] = {}
    rows: set[tuple[str, int]] = set()
    parts = []
    for label, column, bad, first in unseen:
        counts[column] = counts.get(column, 0) + len(bad)
        table = "item" if label.startswith("item") else "frame"
        rows.update((table, r) for r in bad)
        parts.append(f"{label} {column!r}: {len(bad)} row{'s' if len(bad) > 1 else ''} ({first})")
    message = (
        f"{len(rows)} row{'s' if len(rows) > 1 else ''} had a category not in the encoding, "
        "encoded as all zeros: " + "; ".join(parts)
    )
    warnings.warn(UnseenCategoryWarning(message, counts, len(rows)), stacklevel=stacklevel)


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
    rules: _Rules,
    known: _Known | None,
    problems: _Problems,
) -> _Encoded:
    """The ``[n, d]`` feature matrix of ``columns`` and how it was built.

    Numeric columns (1-d, or 2-d for several features) are used as they are or
    standardised; categorical ones, and any column ``known`` (an encoding) has
    categories for, are one-hot encoded; numeric-looking text follows
    ``rules.numeric_strings`` (or ``known.parsed``). A column with a problem is reported
    and left out.
    """
    blocks: list[np.ndarray] = []
    names: list[str] = []
    categories_out: dict[Any, tuple[Any, ...]] = {}
    statistics_out: dict[Any, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    parsed: list[Any] = []
    unseen: list = []
    for column in columns:
        kind, values, declared = _column(table, column)
        if values is None:
            problems.add(column, f"{role} {column!r}: has {kind}, which cannot be a feature")
            continue
        if not _check_length(values, n, column, role, table, problems):
            continue
        known_categorical = known is not None and column in known.categories
        if kind == "categorical" and declared is None and not known_categorical and values.ndim == 1:
            text = _numeric_text(values)
            if text is not None:
                mode = "parse" if known is not None and column in known.parsed else rules.numeric_mode(column)
                if mode == "error":
                    problems.add(column, _numeric_text_message(table, column, values, text, role))
                    continue
                if mode == "parse":
                    values = _parse_numeric_text(table, column, values, text, role, problems)
                    if values is None:
                        continue
                    kind = "numeric"
                    parsed.append(column)
        if kind == "categorical" and known is not None and not known_categorical:
            problems.add(
                column,
                f"{role} {column!r}: is categorical here but numeric in the encoding; "
                f"{table.row(0)} is {_show(values[0])}",
            )
            continue
        if kind == "categorical" or known_categorical:
            if known is None and not isinstance(rules.standardize, bool) and column in rules.standardize:
                problems.add(
                    column,
                    f"{role} {column!r}: is categorical (one-hot encoded), so it cannot be standardised "
                    "(named by standardize)",
                )
                continue
            values = _category_values(table, column, kind, values, role, rules.categorical, problems)
            cats = (
                None
                if values is None
                else _categories(
                    table,
                    column,
                    values,
                    declared,
                    None if known is None else known.categories,
                    role,
                    problems,
                )
            )
            if cats is None:
                continue
            block, unseen_rows = _one_hot(
                table, column, values, cats, role, known is not None, rules.unknown, problems
            )
            if block is not None:
                blocks.append(block)
                names.extend(f"{column}={_category_name(c)}" for c in cats)
                categories_out[column] = cats
                if unseen_rows:
                    first = f"{table.row(unseen_rows[0])} is {_show(values[unseen_rows[0]])}"
                    unseen.append((role, column, unseen_rows, first))
        else:
            numeric = _numeric_feature(table, column, values, n, role, problems)
            if numeric is None:
                continue
            block, feature_names = numeric
            if known is not None:
                statistics = known.standardization.get(column)
            elif rules.standardizes(column):
                statistics = _fit_standardization(block)
            else:
                statistics = None
            if statistics is not None:
                if len(statistics[0]) != block.shape[1]:
                    problems.add(
                        column,
                        f"{role} {column!r}: has {block.shape[1]} features, the encoding standardises "
                        f"{len(statistics[0])}",
                    )
                    continue
                block = (block - np.asarray(statistics[0])) / np.asarray(statistics[1])
                statistics_out[column] = statistics
            blocks.append(block)
            names.extend(feature_names)
    matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    if known is not None:  # the encoding's parsed columns stay parsed, whatever this table held
        parsed = [*known.parsed, *(c for c in parsed if c not in known.parsed)]
    return _Encoded(matrix, tuple(names), categories_out, statistics_out, tuple(parsed), unseen)


def _fit_standardization(block: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of each feature (column of ``block``); std 1.0 for a constant feature."""
    mean, std = block.mean(axis=0), block.std(axis=0)
    return tuple(float(m) for m in mean), tuple(float(s) if s > 0 else 1.0 for s in std)


def _numeric_text(values: np.ndarray) -> tuple[np.ndarray, list[int], bool] | None:
    """A text column that looks numeric, parsed: ``(floats, rows that are not numbers, any text number)``.

    A column looks numeric when at least one value is a number (a number, or text that
    parses as one) and numbers are at least as many as other text; missing values and
    markers (``"n/a"``, ``""``, ...) count as neither. ``None`` when it does not. Each
    distinct value is parsed once.
    """
    rows = values.tolist()
    try:
        counts = collections.Counter(rows)
    except TypeError:  # an unhashable value: not numbers (the one-hot path reports it)
        return None
    parsed = {v: _parse_number(v) for v in counts}
    n_numbers = sum(c for v, c in counts.items() if isinstance(parsed[v], float))
    n_other = sum(c for v, c in counts.items() if parsed[v] is None)
    if n_numbers == 0 or n_other > n_numbers:
        return None
    floats = np.array([p if isinstance(p, float) else np.nan for p in (parsed[v] for v in rows)])
    not_numbers = [i for i, v in enumerate(rows) if not isinstance(parsed[v], float)]
    text_number = any(isinstance(parsed[v], float) and isinstance(v, (str, bytes)) for v in counts)
    return floats, not_numbers, text_number


def _parse_number(value: Any) -> float | str | None:
    """``value`` as a float (a number or numeric text), ``"missing"`` (missing or a marker), or None."""
    if _is_missing(value):
        return "missing"
    if _is_real(value):
        return float(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lower() in _MISSING_MARKERS:
        return "missing"
    try:
        return float(text)
    except ValueError:
        return None


def _numeric_text_message(
    table: _Table, column: Any, values: np.ndarray, text: tuple[np.ndarray, list[int], bool], role: str
) -> str:
    """The problem of a numeric-looking text column under ``numeric_strings="error"``."""
    floats, not_numbers, text_number = text
    first = int(np.flatnonzero(~np.isnan(floats))[0])
    what = "numbers stored as text" if text_number else "numbers mixed with text"
    message = f"{role} {column!r}: holds {what} ({table.row(first)} is {_show(values[first])}"
    if not_numbers:
        message += f"; {table.row(not_numbers[0])} is {_show_value(values[not_numbers[0]])}, not a number"
    return (
        message + "), which one-hot encoding would turn into one feature per distinct value; pass "
        "numeric_strings='parse' to read it as numbers, or numeric_strings='categorical' to one-hot "
        f"encode it (a mapping such as {{{column!r}: 'parse'}} sets one column)"
    )


def _parse_numeric_text(
    table: _Table,
    column: Any,
    values: np.ndarray,
    text: tuple[np.ndarray, list[int], bool],
    role: str,
    problems: _Problems,
) -> np.ndarray | None:
    """The parsed floats of a numeric-looking text column; reports the rows that are not numbers."""
    floats, not_numbers, _ = text
    if not_numbers:
        problems.add(
            column,
            _rows_message(
                f"{role} {column!r}",
                table,
                not_numbers,
                _show_value(values[not_numbers[0]]),
                "a number (this column is parsed as numbers; fill or drop these rows)",
            ),
        )
        return None
    return floats


def _show_value(value: Any) -> str:
    return "missing" if _is_missing(value) else _show(value)


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


def _one_hot_rows(values, categories) -> tuple[np.ndarray, list[int]]:
    """``[n, len(categories)]`` one-hot rows of ``values`` and the rows whose value is not a
    category (or not hashable): those rows stay all zeros."""
    position = {c: j for j, c in enumerate(categories)}
    block = np.zeros((len(values), len(categories)))
    unseen: list[int] = []
    for i, v in enumerate(values):
        try:
            j = position.get(v)
        except TypeError:
            j = None
        if j is None:
            unseen.append(i)
        else:
            block[i, j] = 1.0
    return block, unseen


def _one_hot(
    table: _Table,
    column: Any,
    values: np.ndarray,
    categories: tuple[Any, ...],
    role: str,
    against_encoding: bool,
    unknown: str,
    problems: _Problems,
) -> tuple[np.ndarray | None, list[int]]:
    """``([n, len(categories)]`` one-hot rows of ``values``, the rows with an unseen value).

    A value outside ``categories`` is reported, except against an encoding with
    ``unknown`` ``"ignore"`` or ``"warn"``, where its row stays all zeros.
    """
    block, unseen = _one_hot_rows(values.tolist(), categories)
    if unseen and (not against_encoding or unknown == "error"):
        source = "the encoding" if against_encoding else "the column's categories"
        hint = (
            "; pass unknown='ignore' or 'warn' to encode unseen categories as zeros"
            if against_encoding
            else ""
        )
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
        return None, []
    return block, unseen


def _category_name(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- saving


def _to_json(value: Any, where: str) -> Any:
    """A column name, category or item id as JSON-ready Python; tuples and bytes tagged."""
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
        return {"tuple": [_to_json(v, where) for v in value]}
    raise TypeError(
        f"{where}: {value!r} of type {type(value).__name__} cannot be saved as JSON "
        "(expected str, int, float, bool, bytes or tuples of these)"
    )


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"tuple"}:
            return tuple(_from_json(v) for v in value["tuple"])
        if set(value) == {"bytes"}:
            return value["bytes"].encode("latin-1")
        raise ValueError(f"unknown tagged value {value!r}")
    if isinstance(value, list):
        raise ValueError(f"expected a value, got the list {value!r}")
    return value


def _json_list(values: Sequence[Any], where: str) -> list[Any]:
    return [_to_json(v, f"{where}[{i}]") for i, v in enumerate(values)]


def _from_json_list(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(_from_json(v) for v in values)


def _json_categories(categories: Mapping[Hashable, Sequence[Any]], where: str) -> list[list[Any]]:
    """``{column: categories}`` as ``[[column, [category, ...]], ...]`` (JSON keys must be strings)."""
    return [
        [_to_json(column, where), _json_list(cats, f"{where}[{column!r}]")]
        for column, cats in categories.items()
    ]


def _from_json_categories(saved: Sequence[Any]) -> dict[Hashable, tuple[Any, ...]]:
    return {_from_json(column): _from_json_list(cats) for column, cats in saved}


def _json_statistics(
    statistics: Mapping[Hashable, tuple[Sequence[float], Sequence[float]]], where: str
) -> list[list[Any]]:
    """``{column: (mean, std)}`` as ``[[column, [mean, ...], [std, ...]], ...]``."""
    return [
        [_to_json(column, where), [float(m) for m in mean], [float(s) for s in std]]
        for column, (mean, std) in statistics.items()
    ]


def _from_json_statistics(
    saved: Sequence[Any],
) -> dict[Hashable, tuple[tuple[float, ...], tuple[float, ...]]]:
    return {
        _from_json(column): (tuple(float(m) for m in mean), tuple(float(s) for s in std))
        for column, mean, std in saved
    }
