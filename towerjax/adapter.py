"""Logged bandit feedback from a table: a pandas DataFrame or a dict of numpy arrays (SPEC 1).

:func:`logged_data_from_frame` turns one row per logged event (context columns, the
logged item's id, the reward and the propensity) plus an item table (one row per item,
its id and features) into a validated :class:`~towerjax.data.LoggedData`, and returns
the :class:`FrameEncoding` that built its features.

Features. Numeric columns are dense features, used as they are or standardised
(``standardize=``: ``(value - mean) / std`` with the training table's statistics).
Categorical columns (object, string or pandas category dtype, and any column named in
``categorical=``, such as an integer ``user_id``) become one ``[n]`` int32 id array each,
which the tower looks up in its own embedding table (:class:`~towerjax.features.Features`):
a column of a million distinct values costs ``n`` integers, never an ``[n, 10^6]`` one-hot
matrix. A text column that looks numeric (numbers stored as strings, perhaps with a marker
such as ``"n/a"``) is never made categorical silently: it is an error naming the column
unless ``numeric_strings=`` says to parse it or to treat it as categorical.

Ids. A categorical column's vocabulary is built from the training table: the values seen
at least ``min_count`` times, sorted (a pandas category column keeps its declared order),
get ids ``1..V``; id ``0`` is the out-of-vocabulary (OOV) bucket, shared by values unseen
in training, values rarer than ``min_count`` and missing values. The default ``min_count``
of a context column is 2: the values seen once in training then train the OOV row, so a
context whose value was never seen (a new user at serving time) gets the embedding of a
rarely seen value, not an untrained random vector. (With ``min_count=1`` every training
value has its own row and row 0 is never trained.) Item-table columns keep every value
(each item is one row). For unbounded ids, ``hash_buckets={column: B}`` maps a value to
``1 + h(value) mod B`` instead, no vocabulary stored, with ``h`` SipHash-2-4 of the value's
text (:func:`pandas.util.hash_array`, fixed key): the same id in every process and on every
machine; a missing value is id 0. Encoding is vectorised (``pandas.factorize`` and
``Index.get_indexer`` over the distinct values): a million rows take about a second per
column.

Items. The item id is itself an embedded feature of the item tower (table ``item_id``:
row ``a`` of the item table has id ``a + 1``; id 0 is an item not in the training
catalogue, at serving time), next to the item table's feature columns, numeric ones dense
and categorical ones ids as for contexts. ``item_id_embedding=False`` leaves it out (the
items then need feature columns).

Reuse and serving. The :class:`FrameEncoding` records the columns, vocabularies, hashing
settings, embedding widths, standardisation statistics and which columns were parsed from
text; its :attr:`~FrameEncoding.context_spec` and :attr:`~FrameEncoding.item_spec` are what
:meth:`towerjax.towers.TwoTower.init` needs. Pass it back as ``encoding=`` to build a test log
the same way; save it with :meth:`FrameEncoding.to_dict` (JSON-ready) and load it with
:meth:`FrameEncoding.from_dict`; encode new contexts or items for serving with
:meth:`FrameEncoding.encode_contexts` and :meth:`FrameEncoding.encode_items`, where a value
not in the vocabulary becomes id 0 (counted in an :class:`UnseenCategoryWarning`), never
an error unless asked.

pandas (a dependency) does the hashing and lookups; a plain ``dict`` of numpy arrays works
as well as a DataFrame.

Every problem in the input is reported with its column and row (0-based position in the
table): all problems found are collected into one :class:`FrameValidationError` (an
:class:`~towerjax.checks.InputError`, so a ``ValueError``), one line each.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.features import Features, FeatureSpec, Table, default_embedding_dim

__all__ = [
    "CONTEXT_MIN_COUNT",
    "ITEM_ID_FEATURE",
    "NUMERIC_STRINGS",
    "CategoricalColumn",
    "FrameEncoding",
    "FrameValidationError",
    "UnseenCategoryWarning",
    "logged_data_from_frame",
    "stable_hash_ids",
]

NUMERIC_STRINGS = ("error", "parse", "categorical")
CONTEXT_MIN_COUNT = 2
"""Default ``min_count`` of a categorical context column (item-table columns: 1)."""
ITEM_ID_FEATURE = "item_id"
"""The name of the item tower's item-id table (ids ``1..A``, 0 for an unknown item)."""

_MAX_LISTED = 5
_FORMAT = "towerjax.FrameEncoding"
_VERSION = 2
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


@dataclasses.dataclass(frozen=True)
class CategoricalColumn:
    """One categorical column as embedded ids: a vocabulary or hash buckets, and a width.

    Attributes:
      column: the table's column.
      name: its table in :class:`~towerjax.features.Features` (the ``ids`` key; the
        tower's parameters ``embed_<name>``).
      dim: the embedding width.
      vocabulary: the values of ids ``1..V`` in order (``None`` for a hashed column).
      hash_buckets: ``B`` of a hashed column (ids ``1 + h(value) mod B``), else ``None``.
      min_count: the fewest training rows a value needed to get its own id (``None``
        for a hashed column).
    """

    column: Hashable
    name: str
    dim: int
    vocabulary: tuple[Any, ...] | None = None
    hash_buckets: int | None = None
    min_count: int | None = None

    @property
    def size(self) -> int:
        """Ids in the table: ``V + 1`` or ``B + 1`` (id 0 is the OOV bucket)."""
        return 1 + (len(self.vocabulary) if self.vocabulary is not None else int(self.hash_buckets))

    @property
    def table(self) -> Table:
        return Table(self.name, self.size, self.dim)

    def describe(self) -> str:
        """``"user_id: 15400 values + OOV, dim 32"`` or ``"url: hashed into 1000 buckets, dim 32"``."""
        if self.vocabulary is None:
            what = f"hashed into {self.hash_buckets} buckets"
        else:
            what = f"{len(self.vocabulary)} values + OOV (min count {self.min_count})"
        return f"{_category_name(self.column)}: {what}, dim {self.dim}"

    def ids(self, codes: np.ndarray, uniques: np.ndarray) -> np.ndarray:
        """``[n]`` int32 ids of factorized values (``codes`` ``-1`` for missing: id 0)."""
        if len(uniques) == 0:
            return np.zeros(codes.shape, np.int32)
        if self.vocabulary is None:
            unique_ids = 1 + (stable_hash(uniques) % np.uint64(self.hash_buckets)).astype(np.int64)
        else:
            unique_ids = self._index.get_indexer(_object_array(uniques)) + 1  # -1 (not found) -> 0
        return np.where(codes >= 0, unique_ids[codes], 0).astype(np.int32)

    @functools.cached_property
    def _index(self):
        import pandas as pd

        return pd.Index(_object_array(self.vocabulary), dtype=object, tupleize_cols=False)

    def to_dict(self, where: str) -> dict[str, Any]:
        return {
            "column": _to_json(self.column, where),
            "name": self.name,
            "dim": self.dim,
            "vocabulary": None
            if self.vocabulary is None
            else _json_list(self.vocabulary, f"{where}[{self.column!r}].vocabulary"),
            "hash_buckets": self.hash_buckets,
            "min_count": self.min_count,
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> CategoricalColumn:
        vocabulary = saved["vocabulary"]
        return cls(
            column=_from_json(saved["column"]),
            name=str(saved["name"]),
            dim=int(saved["dim"]),
            vocabulary=None if vocabulary is None else _from_json_list(vocabulary),
            hash_buckets=None if saved["hash_buckets"] is None else int(saved["hash_buckets"]),
            min_count=None if saved["min_count"] is None else int(saved["min_count"]),
        )


def stable_hash(values: Any) -> np.ndarray:
    """``[m]`` uint64 SipHash-2-4 (:func:`pandas.util.hash_array`, fixed key) of each value's text.

    Integers (and whole floats) are hashed as their decimal text, so ``7``, ``7.0`` and
    ``"7"`` share a hash; bytes as their bytes. The same in every process and machine
    (Python's own ``hash`` of a string is salted per process).
    """
    import pandas as pd

    values = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (np.mod(values, 1) == 0)
        if whole.all():
            values = values.astype(np.int64)
    if values.dtype.kind in "biuf":
        values = values.astype(str)
    return pd.util.hash_array(values.astype(object), categorize=False)


def stable_hash_ids(values: Any, buckets: int) -> np.ndarray:
    """``[m]`` int32 ids ``1 + stable_hash(value) mod buckets``: a hashed column's ids
    (missing values are id 0 there; here every value is hashed)."""
    return (1 + (stable_hash(values) % np.uint64(buckets)).astype(np.int64)).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class FrameEncoding:
    """How a frame's columns became tower inputs: reuse it, save it, serve with it.

    Pass it back to :func:`logged_data_from_frame` as ``encoding=``, save it with
    :meth:`to_dict` / :meth:`from_dict`, encode new rows with :meth:`encode_contexts` and
    :meth:`encode_items`, and initialise towers for it with :attr:`context_spec` and
    :attr:`item_spec`.

    Attributes:
      context_columns: the context columns, in order.
      item_feature_columns: the item-table feature columns, in order (may be empty).
      context_feature_names: the name of each dense context feature, the columns of
        ``Features.dense`` (``"age"``, ``"emb[3]"`` for column 3 of a 2-d array).
      item_feature_names: the same for the items.
      item_ids: the item id of each action index (row of the item features).
      context_categorical: each categorical context column (:class:`CategoricalColumn`:
        vocabulary or hash buckets, table name, width), in column order.
      item_categorical: the same for the item table's feature columns.
      item_id_dim: the width of the item-id embedding (table :data:`ITEM_ID_FEATURE`,
        ``A + 1`` ids); ``None`` without one.
      item_id_vocabulary: the item ids of the item-id table's ids ``1..V`` when they are not
        ``item_ids`` (an encoding applied to an item table listing other items than the
        training catalogue); ``None``: ``item_ids``.
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
    context_feature_names: tuple[str, ...]
    item_feature_names: tuple[str, ...]
    item_ids: tuple[Any, ...]
    context_categorical: tuple[CategoricalColumn, ...] = ()
    item_categorical: tuple[CategoricalColumn, ...] = ()
    item_id_dim: int | None = None
    item_id_vocabulary: tuple[Any, ...] | None = None
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

    @property
    def item_catalogue(self) -> tuple[Any, ...]:
        """The item ids of the item-id table's ids ``1..V`` (the training catalogue)."""
        return self.item_ids if self.item_id_vocabulary is None else self.item_id_vocabulary

    @property
    def context_vocabularies(self) -> dict[Hashable, tuple[Any, ...]]:
        """``{column: vocabulary}`` of the context columns with one (ids ``1..V`` in order)."""
        return {c.column: c.vocabulary for c in self.context_categorical if c.vocabulary is not None}

    @property
    def item_vocabularies(self) -> dict[Hashable, tuple[Any, ...]]:
        """The same for the item-table columns (the item id's vocabulary is :attr:`item_ids`)."""
        return {c.column: c.vocabulary for c in self.item_categorical if c.vocabulary is not None}

    @property
    def context_spec(self) -> int | FeatureSpec:
        """The context tower's input: the dense width (an int) when no column is
        categorical, else a :class:`~towerjax.features.FeatureSpec`."""
        if not self.context_categorical:
            return len(self.context_feature_names)
        return FeatureSpec(len(self.context_feature_names), tuple(c.table for c in self.context_categorical))

    @property
    def item_spec(self) -> int | FeatureSpec:
        """The item tower's input, as :attr:`context_spec` (the item id's table first)."""
        tables = tuple(c.table for c in self.item_categorical)
        if self.item_id_dim is not None:
            tables = (Table(ITEM_ID_FEATURE, len(self.item_catalogue) + 1, self.item_id_dim), *tables)
        if not tables:
            return len(self.item_feature_names)
        return FeatureSpec(len(self.item_feature_names), tables)

    def describe(self) -> dict[str, list[str]]:
        """``{"context": [...], "items": [...]}``: one line per feature (dense or embedded)."""
        out = {}
        for role in ("context", "item"):
            lines = [f"{name}: dense" for name in self._dense_names(role)]
            if role == "item" and self.item_id_dim is not None:
                lines.insert(
                    0, f"item id: {len(self.item_catalogue)} items + unknown, dim {self.item_id_dim}"
                )
            lines += [c.describe() for c in self._categorical(role)]
            out["context" if role == "context" else "items"] = lines
        return out

    def encode_contexts(
        self, frame: Any, *, numeric_strings: str | Mapping[Hashable, str] = "error", unknown: str = "warn"
    ) -> np.ndarray | Features:
        """The context tower's input for a new frame, built as in training.

        ``[n, d_x]`` float32 when no context column is categorical, else
        :class:`~towerjax.features.Features` (dense ``[n, d]`` and one ``[n]`` id array per
        categorical column). The same rows give exactly the training ``LoggedData.context``:
        the same vocabularies and hash buckets, the stored standardisation statistics (never
        refitted), the stored parsed columns parsed again. Only ``context_columns`` are
        read; other columns are ignored.

        Args:
          frame: a pandas ``DataFrame`` or a mapping from column name to array, with at
            least one row.
          numeric_strings: for a column that was numeric in training but holds text here
            (and is not in ``context_parsed_columns``), as in :func:`logged_data_from_frame`.
          unknown: what a value not in a column's vocabulary becomes (unseen in training,
            rarer than ``min_count``, or missing): ``"warn"`` (id 0, the OOV bucket, and an
            :class:`UnseenCategoryWarning` with the count of such rows), ``"ignore"`` (id 0,
            silently) or ``"error"``.

        Raises:
          FrameValidationError: naming each column with a problem (missing, non-finite,
            text in a numeric column, an unseen value under ``unknown="error"``) and an
            empty frame.
        """
        rules = _Rules.make(numeric_strings, False, unknown, self.context_columns + self.item_feature_columns)
        table = _Table(frame, "frame", "frame")
        return _encode_new(table, "context", rules, self)

    def encode_items(
        self,
        item_table: Any,
        *,
        numeric_strings: str | Mapping[Hashable, str] = "error",
        unknown: str = "warn",
    ) -> np.ndarray | Features:
        """The item tower's input for an item table, built as in training.

        The training item table gives exactly ``LoggedData.action_context``. The ids
        (``item_id_column``, or the index) are looked up in ``item_ids`` for the item-id
        embedding, an id not in training getting id 0 (counted like an unseen value), and
        the feature columns are encoded as for contexts. Arguments as in
        :meth:`encode_contexts`.
        """
        rules = _Rules.make(numeric_strings, False, unknown, self.context_columns + self.item_feature_columns)
        table = _Table(item_table, "item table", "item_table")
        return _encode_new(table, "item", rules, self)

    def to_dict(self) -> dict[str, Any]:
        """The encoding as JSON-ready Python (dicts, lists, str, int, float, bool, None).

        Column names, vocabulary values and item ids may be str, int, float, bool, bytes or
        tuples of these (numpy scalars are written as Python numbers); tuples and bytes are
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
            "context_feature_names": list(self.context_feature_names),
            "item_feature_names": list(self.item_feature_names),
            "item_ids": _json_list(self.item_ids, "item_ids"),
            "context_categorical": [c.to_dict("context_categorical") for c in self.context_categorical],
            "item_categorical": [c.to_dict("item_categorical") for c in self.item_categorical],
            "item_id_dim": self.item_id_dim,
            "item_id_vocabulary": None
            if self.item_id_vocabulary is None
            else _json_list(self.item_id_vocabulary, "item_id_vocabulary"),
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
            (wrong ``format``, another ``version``, a missing key, a malformed entry).
        """
        if not isinstance(saved, Mapping) or saved.get("format") != _FORMAT:
            raise InputError(
                "encoding", f"expected a dict written by FrameEncoding.to_dict (format {_FORMAT!r})"
            )
        version = saved.get("version")
        if version != _VERSION:
            hint = (
                ": it was saved by an older towerjax, which one-hot encoded categorical columns; "
                "train the model again to embed them as ids"
                if isinstance(version, int) and version < _VERSION
                else ": upgrade towerjax"
            )
            raise InputError("encoding", f"expected version {_VERSION}, got {version!r}{hint}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in saved]
        if missing:
            raise InputError("encoding", f"missing keys {missing}")
        try:
            item_id_dim, item_id_vocabulary = saved["item_id_dim"], saved["item_id_vocabulary"]
            return cls(
                context_columns=_from_json_list(saved["context_columns"]),
                item_feature_columns=_from_json_list(saved["item_feature_columns"]),
                context_feature_names=tuple(str(v) for v in saved["context_feature_names"]),
                item_feature_names=tuple(str(v) for v in saved["item_feature_names"]),
                item_ids=_from_json_list(saved["item_ids"]),
                context_categorical=tuple(
                    CategoricalColumn.from_dict(c) for c in saved["context_categorical"]
                ),
                item_categorical=tuple(CategoricalColumn.from_dict(c) for c in saved["item_categorical"]),
                item_id_dim=None if item_id_dim is None else int(item_id_dim),
                item_id_vocabulary=None
                if item_id_vocabulary is None
                else _from_json_list(item_id_vocabulary),
                context_standardization=_from_json_statistics(saved["context_standardization"]),
                item_standardization=_from_json_statistics(saved["item_standardization"]),
                context_parsed_columns=_from_json_list(saved["context_parsed_columns"]),
                item_parsed_columns=_from_json_list(saved["item_parsed_columns"]),
                item_id_column=_from_json(saved["item_id_column"]),
            )
        except (TypeError, ValueError, KeyError) as err:
            raise InputError("encoding", f"malformed saved encoding ({err})") from None

    def _categorical(self, role: str) -> tuple[CategoricalColumn, ...]:
        return self.context_categorical if role == "context" else self.item_categorical

    def _dense_names(self, role: str) -> tuple[str, ...]:
        return self.context_feature_names if role == "context" else self.item_feature_names

    def _known(self, role: str) -> _Known:
        if role == "context":
            return _Known(
                {c.column: c for c in self.context_categorical},
                self.context_standardization,
                self.context_parsed_columns,
            )
        return _Known(
            {c.column: c for c in self.item_categorical}, self.item_standardization, self.item_parsed_columns
        )


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
    categorical: Sequence[Hashable] = (),
    min_count: int | Mapping[Hashable, int] = CONTEXT_MIN_COUNT,
    hash_buckets: Mapping[Hashable, int] | None = None,
    embedding_dims: Mapping[Hashable, int] | None = None,
    item_id_embedding: bool = True,
    numeric_strings: str | Mapping[Hashable, str] = "error",
    standardize: bool | Sequence[Hashable] = False,
    encoding: FrameEncoding | None = None,
    unknown: str = "warn",
) -> tuple[LoggedData, FrameEncoding]:
    """Builds :class:`~towerjax.data.LoggedData` from a table of logged events.

    Args:
      frame: a pandas ``DataFrame`` or a mapping from column name to a 1-d array of
        length ``n >= 1`` (a numeric context column may also be an ``[n, k]`` array: ``k``
        features).
      context_columns: columns forming the context ``x`` (numeric columns dense, used as
        they are or standardised; categorical ones embedded ids).
      action_column: the logged item's id; mapped to the row of ``item_table`` with that
        id, which becomes the action index.
      reward_column: the observed reward (finite numbers).
      pscore_column: the logging propensity ``pi_0(a_i|x_i)``, each in ``(0, 1]``.
      item_table: a ``DataFrame`` or mapping with one row per item (at least 2).
      item_id_column: the column of ``item_table`` holding item ids; ``None`` uses the
        DataFrame's index, or for a mapping the row positions ``0..A-1``.
      item_feature_columns: the item-table columns forming ``e_a`` besides the item id;
        ``None`` means every column except ``item_id_column`` (possibly none).
      categorical: feature columns to embed as ids even though they hold numbers (an
        integer ``user_id``); object, string and category columns are categorical anyway.
      min_count: the fewest training rows a value needs for its own id (rarer ones share
        id 0 with unseen and missing values). An int applies to the context columns
        (item-table columns keep every value); a mapping sets it per column.
      hash_buckets: ``{column: B}``: hash these columns' values into ``B`` buckets (ids
        ``1..B``; 0 for missing) instead of building a vocabulary, for unbounded ids.
      embedding_dims: ``{column: width}`` of the embedding tables (a categorical feature
        column, or ``item_id_column`` for the item id); default
        :func:`towerjax.features.default_embedding_dim` of the table's size.
      item_id_embedding: give the item tower the item id as an embedded feature (table
        :data:`ITEM_ID_FEATURE`); without it the items need feature columns.
      numeric_strings: what a feature column of text that looks numeric becomes: one
        whose values are numbers, numbers stored as strings (``"3.5"``) or missing markers
        (``"n/a"``, ``""``, ``"NA"``, ...), with at least as many numbers as other text.
        ``"error"`` (default) reports it, naming the column; ``"parse"`` reads it as
        numbers (a marker or other text left in it is reported by row);
        ``"categorical"`` embeds its distinct values as ids. A mapping from column to one
        of these sets it per column (``"error"`` for the others). A pandas category column
        is always categorical.
      standardize: ``True`` standardises every numeric feature column (context columns
        over the frame's rows, item columns over the items) to ``(value - mean) / std``
        (population std; a constant column is only centred); a sequence of column names
        standardises those. The statistics are stored in the encoding.
      encoding: a :class:`FrameEncoding` returned earlier; its columns, vocabularies,
        hashing, widths, standardisation statistics and parsed columns are reused
        (``categorical``, ``min_count``, ``hash_buckets``, ``embedding_dims``,
        ``item_id_embedding`` and ``standardize`` are then ignored), so a test frame's
        features line up with the training frame's.
      unknown: with ``encoding``, what a value not in a vocabulary (or an item id not in
        the encoding's catalogue) becomes: ``"warn"`` (id 0, and an
        :class:`UnseenCategoryWarning` with the count of such rows), ``"ignore"`` (id 0,
        silently) or ``"error"`` (a problem naming the column and row).

    Returns:
      ``(data, encoding)``: the validated container and how its features were built.
      ``data.context`` is a ``[n, d_x]`` float array when no context column is categorical,
      else :class:`~towerjax.features.Features`; ``data.action_context`` likewise (Features
      whenever the item id is embedded).

    Raises:
      FrameValidationError: (an :class:`~towerjax.checks.InputError`, so a ``ValueError``)
        listing every problem found, each naming its column and row: a missing column, an
        empty table, a missing or out-of-range propensity, an action whose id is not in
        the item table, a non-finite number, numbers stored as text, an unhashable
        category, duplicate item ids.
      InputError: for a bad argument (``categorical``, ``min_count``, ``hash_buckets``,
        ``embedding_dims``, ``numeric_strings``, ``standardize``, ``unknown``, an
        ``encoding`` built for other columns).
    """
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
        min_count=min_count,
        hash_buckets=hash_buckets,
        embedding_dims=embedding_dims,
        item_id_column=item_id_column,
    )
    if encoding is not None:
        _check_encoding_columns(encoding, roles)
    elif not item_id_embedding and not roles.item_features:
        raise InputError(
            "item_id_embedding",
            "the item table has no feature columns, so the item tower needs the item id (item_id_embedding=True)",
        )
    _check_columns_present(events, items, roles)

    problems = _Problems()
    n, n_items = _table_lengths(events, items, roles, problems)
    ids, id_index, id_role = _item_index(items, roles.item_id, n_items, problems)
    action = _actions(events, roles.action, n, ids, id_index, id_role, problems)
    reward = _rewards(events, roles.reward, n, problems)
    pscore = _propensities(events, roles.pscore, n, problems)
    item_id_dim = None
    if encoding is not None:
        item_id_dim = encoding.item_id_dim
    elif item_id_embedding:
        item_id_dim = rules.embedding_dims.get(item_id_column) if item_id_column is not None else None
        item_id_dim = item_id_dim or default_embedding_dim(n_items + 1)
    context, action_context, fitted, unseen = _encode_features(
        events, items, roles, (n, n_items), ids or (), item_id_dim, rules, encoding, problems
    )
    problems.raise_if_any()
    if encoding is not None:
        _check_encoding_features(encoding, fitted)
    else:
        _check_embedding_dims(rules, fitted)
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


def _column_mapping(argument: str, value: Any, columns: Sequence[Hashable], extra: Sequence[Hashable] = ()):
    """``value`` as a dict ``{column: positive int}`` of feature ``columns``; InputError naming ``argument``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(
            argument, f"expected a mapping from column name to a positive integer, got {value!r}"
        )
    for column, number in value.items():
        if column not in columns and column not in extra:
            raise InputError(argument, f"names {column!r}, which is not a feature column {list(columns)}")
        if isinstance(number, bool) or not isinstance(number, numbers.Integral) or number < 1:
            raise InputError(argument, f"expected a positive integer for {column!r}, got {number!r}")
    return {column: int(number) for column, number in value.items()}


@dataclasses.dataclass(frozen=True)
class _Rules:
    """The encoding options of one call, checked: how each feature column is read."""

    numeric_strings: str | Mapping[Hashable, str]
    standardize: bool | frozenset
    unknown: str
    categorical: frozenset = frozenset()
    min_count: int | Mapping[Hashable, int] = CONTEXT_MIN_COUNT
    hash_buckets: Mapping[Hashable, int] = dataclasses.field(default_factory=dict)
    embedding_dims: Mapping[Hashable, int] = dataclasses.field(default_factory=dict)

    @classmethod
    def make(
        cls,
        numeric_strings: Any,
        standardize: Any,
        unknown: Any,
        columns: Sequence[Hashable],
        *,
        categorical: Any = (),
        min_count: Any = CONTEXT_MIN_COUNT,
        hash_buckets: Any = None,
        embedding_dims: Any = None,
        item_id_column: Hashable | None = None,
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
        standardize = _named_columns("standardize", standardize, columns, allow_bool=True)
        categorical = _named_columns("categorical", categorical, columns, allow_bool=False)
        if isinstance(min_count, Mapping):
            min_count = _column_mapping("min_count", min_count, columns)
        elif isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) or min_count < 1:
            raise InputError(
                "min_count", f"expected a positive integer or a mapping from column to one, got {min_count!r}"
            )
        else:
            min_count = int(min_count)
        hash_buckets = _column_mapping("hash_buckets", hash_buckets, columns)
        extra = () if item_id_column is None else (item_id_column,)
        embedding_dims = _column_mapping("embedding_dims", embedding_dims, columns, extra)
        return cls(
            numeric_strings, standardize, unknown, categorical, min_count, hash_buckets, embedding_dims
        )

    def numeric_mode(self, column: Hashable) -> str:
        if isinstance(self.numeric_strings, str):
            return self.numeric_strings
        return self.numeric_strings.get(column, "error")

    def standardizes(self, column: Hashable) -> bool:
        if isinstance(self.standardize, bool):
            return self.standardize
        return column in self.standardize

    def is_categorical(self, column: Hashable) -> bool:
        """Named by ``categorical`` or ``hash_buckets``: embedded ids whatever its dtype."""
        return column in self.categorical or column in self.hash_buckets

    def column_min_count(self, column: Hashable, role: str) -> int:
        if isinstance(self.min_count, Mapping):
            return self.min_count.get(column, CONTEXT_MIN_COUNT if role == "context" else 1)
        return self.min_count if role == "context" else 1


def _named_columns(argument: str, value: Any, columns: Sequence[Hashable], *, allow_bool: bool):
    """``True``/``False`` (when allowed) or a frozenset of feature ``columns``; InputError naming ``argument``."""
    if allow_bool and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | set | frozenset):
        expected = "True, False or a sequence of column names" if allow_bool else "a sequence of column names"
        raise InputError(argument, f"expected {expected}, got {value!r}")
    for column in value:
        if column not in columns:
            raise InputError(argument, f"names {column!r}, which is not a feature column {list(columns)}")
    return frozenset(value)


@dataclasses.dataclass(frozen=True)
class _Known:
    """What an encoding fixed for one table's feature columns."""

    categorical: Mapping[Hashable, CategoricalColumn]
    standardization: Mapping[Hashable, tuple[tuple[float, ...], tuple[float, ...]]]
    parsed: tuple[Hashable, ...]


@dataclasses.dataclass(frozen=True)
class _Unseen:
    """Rows of one column whose value got id 0 against an encoding (for the warning)."""

    table: str  # "frame" or "item"
    n: int  # rows of that table
    label: str
    column: Hashable
    rows: np.ndarray
    first: str  # "row 1 is 'Paris'"


@dataclasses.dataclass
class _Encoded:
    """One table's dense ``[n, d]`` features, its ``[n]`` id arrays, and how they were built."""

    dense: np.ndarray
    names: tuple[str, ...]
    categorical: tuple[CategoricalColumn, ...]
    ids: dict[str, np.ndarray]
    standardization: dict[Hashable, tuple[tuple[float, ...], tuple[float, ...]]]
    parsed: tuple[Hashable, ...]
    unseen: list[_Unseen]

    def features(self, item_ids: tuple[np.ndarray, int, int] | None = None) -> np.ndarray | Features:
        """``[n, d]`` float32, or :class:`Features` when there are ids (``item_ids``:
        ``(ids, size, dim)`` of the item-id table, put first)."""
        ids, sizes, dims = {}, {}, {}
        if item_ids is not None:
            ids[ITEM_ID_FEATURE], sizes[ITEM_ID_FEATURE], dims[ITEM_ID_FEATURE] = item_ids
        for spec in self.categorical:
            ids[spec.name], sizes[spec.name], dims[spec.name] = self.ids[spec.name], spec.size, spec.dim
        if not ids:
            return self.dense.astype(np.float32)
        return Features.from_arrays(ids=ids, sizes=sizes, dense=self.dense, dims=dims)


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


@dataclasses.dataclass(frozen=True)
class _IdIndex:
    """Lookup of item ids: the distinct ids (an object ``pandas.Index``) and each one's first row."""

    index: Any
    rows: np.ndarray

    def rows_of(self, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """``[m]`` the item-table row of each value, ``-1`` for a missing or unknown id."""
        codes, uniques = _factorize(values, missing)
        if len(uniques) == 0:
            return np.full(codes.shape, -1)
        found = self.index.get_indexer(_object_array(uniques))
        unique_rows = np.where(found >= 0, self.rows[found], -1)
        return np.where(codes >= 0, unique_rows[codes], -1)


def _item_index(
    items: _Table, item_id_column: Hashable | None, n_items: int, problems: _Problems
) -> tuple[tuple[Any, ...] | None, _IdIndex | None, str]:
    """``(ids, lookup, id_role)``: each item-table row's id, a lookup from id to row, and
    how messages name them.

    Reports a missing or unhashable id and duplicate ids (a duplicate maps to its first
    row). ``ids`` is ``None`` when the id column cannot be read.
    """
    import pandas as pd

    if item_id_column is None:
        ids = _object_array(items.index_values(n_items))
        id_role, column = "item table index", items.argument
        read = _id_values_of(ids)
    else:
        id_role, column = f"item table id column {item_id_column!r}", item_id_column
        read = _id_values(items, item_id_column, n_items, problems, "item table id column")
    if read is None:
        return None, None, id_role
    values, missing = read
    for i in np.flatnonzero(missing)[:_MAX_LISTED]:
        problems.add(column, f"{id_role}: {items.row(int(i))} is missing, expected an item id")
    try:
        codes, uniques = _factorize(values, missing)
    except TypeError:
        bad = _first_unhashable(values)
        problems.add(column, f"{id_role}: {items.row(bad)} is {values[bad]!r}, which is not hashable")
        return None, None, id_role
    first_rows = np.full(len(uniques), -1)
    present = np.flatnonzero(codes >= 0)
    seen, first = np.unique(codes[present], return_index=True)
    first_rows[seen] = present[first]
    duplicate_rows = present[first_rows[codes[present]] != present]
    for i in duplicate_rows[:_MAX_LISTED]:
        j = first_rows[codes[i]]
        problems.add(
            column,
            f"{id_role}: item id {_show(values[i])} appears at {items.row(int(j))} and {items.row(int(i))}",
        )
    if len(duplicate_rows) > _MAX_LISTED:
        problems.add(column, f"{id_role}: {len(duplicate_rows) - _MAX_LISTED} more duplicate item ids")
    index = pd.Index(_object_array(uniques), dtype=object, tupleize_cols=False)
    return tuple(_python_values(values)), _IdIndex(index, first_rows), id_role


def _actions(
    events: _Table,
    column: Hashable,
    n: int,
    ids: tuple[Any, ...] | None,
    id_index: _IdIndex | None,
    id_role: str,
    problems: _Problems,
) -> np.ndarray:
    """``[n]`` action indices: the item-table row of each event's item id.

    Reports missing ids and ids not in the item table (with a hint when the action
    values and the item ids have different types).
    """
    action = np.zeros(n, np.int64)
    read = _id_values(events, column, n, problems, "action column")
    if read is None or id_index is None:
        return action
    raw, missing = read
    try:
        rows = id_index.rows_of(raw, missing)
    except TypeError:
        bad = _first_unhashable(raw)
        problems.add(
            column, f"action column {column!r}: {events.row(bad)} is {raw[bad]!r}, which is not hashable"
        )
        return action
    prefix = f"action column {column!r}"
    missing_rows = np.flatnonzero(missing)
    if missing_rows.size:
        problems.add(
            column,
            _rows_message(prefix, events, missing_rows, "missing", "an item id from the item table"),
        )
    not_found = np.flatnonzero((rows < 0) & ~missing)
    if not_found.size:
        first = raw[not_found[0]]
        if isinstance(first, float | np.floating) and float(first).is_integer():
            first = int(first)  # an integer id read as a float (a column with missing values)
        problems.add(
            column,
            _rows_message(
                prefix, events, not_found, f"{_show(first)}, which is not an item id in the {id_role}", None
            )
            + _type_hint(first, ids),
        )
    return np.where(rows >= 0, rows, 0)


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
    item_id_dim: int | None,
    rules: _Rules,
    encoding: FrameEncoding | None,
    problems: _Problems,
) -> tuple[np.ndarray | Features | None, np.ndarray | Features | None, FrameEncoding, list[_Unseen]]:
    """The context and item tower inputs, the encoding that built them, and the unseen rows.

    Vocabularies, hashing, widths, statistics and parsed columns come from ``encoding``
    when given, else are fitted here. The inputs are ``None`` when a problem was found.
    """
    n, n_items = sizes
    known = (None, None) if encoding is None else (encoding._known("context"), encoding._known("item"))
    context = _features(events, roles.context, n, "context column", "context", rules, known[0], problems)
    item = _features(
        items, roles.item_features, n_items, "item table column", "item", rules, known[1], problems
    )
    unseen = context.unseen + item.unseen
    item_id_table = None
    if item_id_dim is not None:
        if encoding is None:
            item_id_table = (np.arange(1, n_items + 1, dtype=np.int32), n_items + 1, item_id_dim)
        else:
            label = "item table index" if roles.item_id is None else "item table id column"
            column = items.argument if roles.item_id is None else roles.item_id
            found = _catalogue_ids(encoding, _object_array(item_ids))
            bad = np.flatnonzero(found == 0)
            if bad.size:
                first = _show(item_ids[bad[0]])
                if rules.unknown == "error":
                    problems.add(
                        column,
                        _rows_message(f"{label} {column!r}", items, bad, first, None)
                        + ", an item id not in the encoding; pass unknown='ignore' or 'warn' to give it id 0",
                    )
                else:
                    unseen.append(
                        _Unseen("item", n_items, label, column, bad, f"{items.row(bad[0])} is {first}")
                    )
            item_id_table = (found, len(encoding.item_catalogue) + 1, item_id_dim)
    catalogue = (
        None if encoding is None or encoding.item_catalogue == tuple(item_ids) else encoding.item_catalogue
    )
    fitted = FrameEncoding(
        context_columns=roles.context,
        item_feature_columns=roles.item_features,
        context_feature_names=context.names,
        item_feature_names=item.names,
        item_ids=item_ids,
        context_categorical=context.categorical,
        item_categorical=item.categorical,
        item_id_dim=item_id_dim,
        item_id_vocabulary=catalogue,
        context_standardization=context.standardization,
        item_standardization=item.standardization,
        context_parsed_columns=context.parsed,
        item_parsed_columns=item.parsed,
        item_id_column=roles.item_id,
    )
    if problems.messages:
        return None, None, fitted, unseen
    return context.features(), item.features(item_id_table), fitted, unseen


def _catalogue_ids(encoding: FrameEncoding, ids: np.ndarray) -> np.ndarray:
    """``[m]`` int32 item-id ids of ``ids`` in the encoding's catalogue: row + 1, 0 if absent."""
    import pandas as pd

    catalogue = pd.Index(_object_array(encoding.item_catalogue), dtype=object, tupleize_cols=False)
    try:
        return (catalogue.get_indexer(ids) + 1).astype(np.int32)
    except TypeError:  # an unhashable id: not in the catalogue
        return np.asarray([_catalogue_id(catalogue, v) for v in ids.tolist()], np.int32)


def _catalogue_id(catalogue, value) -> int:
    try:
        return int(catalogue.get_indexer(_object_array([value]))[0]) + 1
    except TypeError:
        return 0


def _check_encoding_features(encoding: FrameEncoding, fitted: FrameEncoding) -> None:
    """InputError unless the features built with ``encoding`` have its feature names and tables."""
    for role in ("context", "item"):
        _check_feature_names(role, fitted._dense_names(role), encoding._dense_names(role))
        built = [c.table for c in fitted._categorical(role)]
        expected = [c.table for c in encoding._categorical(role)]
        if built != expected:
            raise InputError("encoding", f"{role} tables {built} differ from the encoding's {expected}")


def _check_feature_names(kind: str, names: Sequence[str], expected: Sequence[str]) -> None:
    if tuple(expected) != tuple(names):
        raise InputError(
            "encoding",
            f"{kind} features {list(names)} differ from the encoding's {list(expected)} "
            "(a 2-d column changed width?)",
        )


def _check_embedding_dims(rules: _Rules, fitted: FrameEncoding) -> None:
    """InputError naming ``embedding_dims`` for a column that turned out not to be embedded."""
    embedded = {c.column for c in fitted.context_categorical + fitted.item_categorical}
    if fitted.item_id_dim is not None and fitted.item_id_column is not None:
        embedded.add(fitted.item_id_column)
    for column in rules.embedding_dims:
        if column not in embedded:
            raise InputError(
                "embedding_dims",
                f"names {column!r}, which is a numeric (dense) feature, not an embedded one; name it in "
                "categorical= to embed it as ids",
            )


def _encode_new(table: _Table, role: str, rules: _Rules, encoding: FrameEncoding) -> np.ndarray | Features:
    """A new table's tower input under ``encoding`` (``role`` ``"context"`` or ``"item"``)."""
    label = "context column" if role == "context" else "item table column"
    columns = encoding.context_columns if role == "context" else encoding.item_feature_columns
    problems = _Problems()
    for c in columns:
        if not table.has(c):
            problems.add(
                c,
                f"{table.label}: missing column {c!r} (a {role} column of the encoding); "
                f"columns are {table.column_names()}",
            )
    problems.raise_if_any()
    unseen: list[_Unseen] = []
    item_id_table = None
    if role == "item" and encoding.item_id_dim is not None:
        found, unseen = _new_item_ids(table, encoding, rules.unknown, problems)
        item_id_table = (found, len(encoding.item_catalogue) + 1, encoding.item_id_dim)
        n = len(found)
        what = "item"
    elif columns:
        n = table.length(columns[0], problems, label)
        if n is None:
            raise problems.error()
        what = "row to encode" if role == "context" else "item"
    else:
        raise InputError("encoding", f"has no {role} columns to encode")
    _require_rows(table, n, what)
    encoded = _features(table, columns, n, label, role, rules, encoding._known(role), problems)
    problems.raise_if_any()
    _check_feature_names(role, encoded.names, encoding._dense_names(role))
    _warn_unseen(unseen + encoded.unseen, rules.unknown, stacklevel=4)
    return encoded.features(item_id_table)


def _new_item_ids(
    table: _Table, encoding: FrameEncoding, unknown: str, problems: _Problems
) -> tuple[np.ndarray, list[_Unseen]]:
    """``([m] item-id ids, unseen)`` of a new item table: each row's id looked up in the
    encoding's catalogue (row + 1; 0 for an id not in it)."""
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
        read = None if m is None else _id_values(table, id_column, m, problems, "item table id column")
        label, column = "item table id column", id_column
    else:
        names = table.column_names()
        if not table.is_frame and not names:
            raise FrameValidationError(
                ["item table: has no columns, expected one row per item"], [table.argument]
            )
        m = table.index_length() if table.is_frame else table.length(names[0], problems, "item table column")
        read = None if m is None else _id_values_of(_object_array(table.index_values(m)))
        label, column = "item table index", table.argument
    if read is None:
        raise problems.error()
    values, missing = read
    _require_rows(table, len(values), "item")
    found = np.where(missing, 0, _catalogue_ids(encoding, _object_array(_python_values(values))))
    found = found.astype(np.int32)
    bad = np.flatnonzero(found == 0)
    unseen: list[_Unseen] = []
    if bad.size:
        shown = "missing" if missing[bad[0]] else _show(values[bad[0]])
        if unknown == "error":
            problems.add(
                column,
                _rows_message(f"{label} {column!r}", table, bad, shown, None)
                + ", an item id not in the encoding; pass unknown='ignore' or 'warn' to give it id 0",
            )
        else:
            unseen.append(_Unseen("item", len(values), label, column, bad, f"{table.row(bad[0])} is {shown}"))
    return found, unseen


def _require_rows(table: _Table, n: int, what: str) -> None:
    """FrameValidationError naming the table when it has no rows."""
    if n == 0:
        raise FrameValidationError(
            [f"{table.label}: has no rows, expected at least one {what}"], [table.argument]
        )


def _warn_unseen(unseen: Sequence[_Unseen], unknown: str, stacklevel: int = 3) -> None:
    """An :class:`UnseenCategoryWarning` counting the rows given id 0, under ``unknown="warn"``."""
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
    count = len(rows)
    shown_rows = [int(r) for r in rows[: 1 + _MAX_LISTED]]
    message = f"{prefix}: {table.row(shown_rows[0])} is {first}"
    if expected is not None:
        message += f", expected {expected}"
    if count > 1:
        shown = ", ".join(str(r) for r in shown_rows[1:])
        more = "" if count <= 1 + _MAX_LISTED else ", ..."
        message += f" (and {count - 1} more: row{'s' if count > 2 else ''} {shown}{more})"
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


def _object_array(values: Any) -> np.ndarray:
    """``values`` as a 1-d object array (tuples stay single values)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values if values.dtype == object else values.astype(object)
    values = list(values)
    return np.fromiter(values, dtype=object, count=len(values))


def _python_values(values: np.ndarray) -> list[Any]:
    return values.tolist()


def _missing_mask(values: np.ndarray) -> np.ndarray:
    """``[n]`` bool: the missing values (NaN, None, pandas' NA/NaT)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "biu":
        return np.zeros(values.shape[0], bool)
    import pandas as pd

    return np.asarray(pd.isna(values), bool)


def _factorize(values: np.ndarray, missing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(codes [n], uniques)`` (:func:`pandas.factorize`): code ``-1`` for a missing value;
    whole float values come back as integers. TypeError for an unhashable value."""
    import pandas as pd

    codes, uniques = pd.factorize(values)
    codes = np.asarray(codes, np.int64)
    if missing is not None and missing.any():
        codes = np.where(missing, -1, codes)
    uniques = np.asarray(uniques)
    if (
        uniques.dtype.kind == "f"
        and uniques.size
        and np.all(np.isfinite(uniques) & (np.mod(uniques, 1) == 0))
    ):
        uniques = uniques.astype(np.int64)
    return codes, uniques


def _first_unhashable(values: np.ndarray) -> int:
    for i, v in enumerate(values.tolist()):
        try:
            hash(v)
        except TypeError:
            return i
    return 0


def _exact_numeric(raw: Any, values: np.ndarray) -> np.ndarray:
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


def _id_values(
    table: _Table, column: Any, n: int, problems: _Problems, role: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(values [n], missing [n])`` of an id column: int64 for whole numbers, else float64
    or object; reports an unreadable column, a 2-d one or a wrong length."""
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
        values = _exact_numeric(table.get(column), values)
    return _id_values_of(values)


def _id_values_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    missing = _missing_mask(values)
    if (
        values.dtype.kind == "f"
        and not missing.any()
        and np.all(np.isfinite(values) & (np.mod(values, 1) == 0))
    ):
        values = values.astype(np.int64)  # whole floats (ints read as floats) are integer ids
    return values, missing


def _sorted_values(values: np.ndarray) -> tuple[Any, ...]:
    """Distinct ``values`` sorted (mixed types: by type name, then text)."""
    if values.dtype.kind in "biuf":
        return tuple(np.sort(values).tolist())
    listed = values.tolist()
    try:
        return tuple(sorted(listed))
    except TypeError:
        return tuple(sorted(listed, key=lambda v: (type(v).__name__, str(v))))


def _table_name(column: Hashable, taken: set[str]) -> str:
    """A table name for ``column``: its text with other characters than ``[A-Za-z0-9_.-]``
    replaced, made unique among ``taken`` (a suffix ``_2``, ``_3``, ...)."""
    if isinstance(column, tuple):
        text = "_".join(_category_name(part) for part in column)
    else:
        text = _category_name(column)
    base = re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_") or "feature"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _fit_categorical(
    column: Hashable,
    codes: np.ndarray,
    uniques: np.ndarray,
    declared: tuple[Any, ...] | None,
    rules: _Rules,
    role: str,
    taken: set[str],
) -> CategoricalColumn:
    """A column's :class:`CategoricalColumn` from its training values: hash buckets, or the
    values seen at least ``min_count`` times (declared categories in their order, else sorted)."""
    name = _table_name(column, taken)
    buckets = rules.hash_buckets.get(column)
    if buckets is not None:
        dim = rules.embedding_dims.get(column) or default_embedding_dim(buckets + 1)
        return CategoricalColumn(column, name, dim, hash_buckets=buckets)
    min_count = rules.column_min_count(column, role)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    if declared is not None:
        import pandas as pd

        position = pd.Index(_object_array(declared), dtype=object, tupleize_cols=False).get_indexer(
            _object_array(uniques)
        )
        declared_counts = np.zeros(len(declared), np.int64)
        declared_counts[position[position >= 0]] = counts[position >= 0]
        vocabulary = tuple(
            v for v, c in zip(declared, declared_counts.tolist(), strict=True) if c >= min_count
        )
    else:
        vocabulary = _sorted_values(uniques[counts >= min_count])
    dim = rules.embedding_dims.get(column) or default_embedding_dim(len(vocabulary) + 1)
    return CategoricalColumn(column, name, dim, vocabulary=vocabulary, min_count=min_count)


def _features(
    table: _Table,
    columns: Sequence[Any],
    n: int,
    label: str,
    role: str,
    rules: _Rules,
    known: _Known | None,
    problems: _Problems,
) -> _Encoded:
    """The dense ``[n, d]`` features and ``[n]`` id arrays of ``columns`` and how they were built.

    Numeric columns (1-d, or 2-d for several features) are dense, used as they are or
    standardised; categorical ones, those ``rules`` names, and any column ``known`` (an
    encoding) embeds, become ids; numeric-looking text follows ``rules.numeric_strings``
    (or ``known.parsed``). A column with a problem is reported and left out.
    """
    blocks: list[np.ndarray] = []
    names: list[str] = []
    categorical: list[CategoricalColumn] = []
    ids: dict[str, np.ndarray] = {}
    statistics_out: dict[Any, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    parsed: list[Any] = []
    unseen: list[_Unseen] = []
    taken = {ITEM_ID_FEATURE} if role == "item" else set()
    for column in columns:
        kind, values, declared = _column(table, column)
        if values is None:
            problems.add(column, f"{label} {column!r}: has {kind}, which cannot be a feature")
            continue
        if not _check_length(values, n, column, label, table, problems):
            continue
        known_spec = None if known is None else known.categorical.get(column)
        forced = known is None and rules.is_categorical(column)
        factorized = None
        if (
            kind == "categorical"
            and declared is None
            and known_spec is None
            and not forced
            and values.ndim == 1
        ):
            try:
                factorized = _factorize(values, _missing_mask(values))
            except TypeError:  # an unhashable value: reported as a categorical column's problem
                factorized = None
            text = None if factorized is None else _numeric_text(*factorized)
            if text is not None:
                mode = "parse" if known is not None and column in known.parsed else rules.numeric_mode(column)
                if mode == "error":
                    problems.add(column, _numeric_text_message(table, column, values, text, label))
                    continue
                if mode == "parse":
                    values = _parse_numeric_text(table, column, values, text, label, problems)
                    if values is None:
                        continue
                    kind, factorized = "numeric", None
                    parsed.append(column)
        if kind == "categorical" and known is not None and known_spec is None:
            problems.add(
                column,
                f"{label} {column!r}: is categorical here but numeric in the encoding; "
                f"{table.row(0)} is {_show(values[0])}",
            )
            continue
        if kind == "categorical" or known_spec is not None or forced:
            if known is None and not isinstance(rules.standardize, bool) and column in rules.standardize:
                problems.add(
                    column,
                    f"{label} {column!r}: is categorical (embedded ids), so it cannot be standardised "
                    "(named by standardize)",
                )
                continue
            encoded = _category_ids(
                table,
                column,
                kind,
                values,
                declared,
                label,
                role,
                rules,
                known_spec,
                taken,
                problems,
                factorized,
            )
            if encoded is None:
                continue
            spec, column_ids, column_unseen = encoded
            categorical.append(spec)
            ids[spec.name] = column_ids
            unseen.extend(column_unseen)
        else:
            numeric = _numeric_feature(table, column, values, n, label, problems)
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
                        f"{label} {column!r}: has {block.shape[1]} features, the encoding standardises "
                        f"{len(statistics[0])}",
                    )
                    continue
                block = (block - np.asarray(statistics[0])) / np.asarray(statistics[1])
                statistics_out[column] = statistics
            blocks.append(block)
            names.extend(feature_names)
    dense = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    if known is not None:  # the encoding's parsed columns stay parsed, whatever this table held
        parsed = [*known.parsed, *(c for c in parsed if c not in known.parsed)]
    return _Encoded(dense, tuple(names), tuple(categorical), ids, statistics_out, tuple(parsed), unseen)


def _category_ids(
    table: _Table,
    column: Any,
    kind: str,
    values: np.ndarray,
    declared: tuple[Any, ...] | None,
    label: str,
    role: str,
    rules: _Rules,
    known: CategoricalColumn | None,
    taken: set[str],
    problems: _Problems,
    factorized: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[CategoricalColumn, np.ndarray, list[_Unseen]] | None:
    """A categorical column's ``(spec, [n] int32 ids, unseen rows)``: the spec ``known`` from
    an encoding (then the values not in its vocabulary are unseen: id 0, or a problem under
    ``unknown="error"``), else fitted on these values. Reports a 2-d column and an
    unhashable value."""
    if values.ndim != 1:
        problems.add(
            column, f"{label} {column!r}: a categorical column must be 1-d, got shape {values.shape}"
        )
        return None
    if kind == "numeric":
        values = _exact_numeric(table.get(column), values)
    missing = _missing_mask(values)
    try:
        codes, uniques = _factorize(values, missing) if factorized is None else factorized
    except TypeError:
        bad = _first_unhashable(values)
        problems.add(
            column, f"{label} {column!r}: {table.row(bad)} is {_show(values[bad])}, which is not hashable"
        )
        return None
    spec = (
        known if known is not None else _fit_categorical(column, codes, uniques, declared, rules, role, taken)
    )
    column_ids = spec.ids(codes, uniques)
    unseen: list[_Unseen] = []
    if known is not None:
        bad = np.flatnonzero(column_ids == 0)
        if bad.size:
            shown = "missing" if missing[bad[0]] else _show(values[bad[0]])
            if rules.unknown == "error":
                problems.add(
                    column,
                    _rows_message(
                        f"{label} {column!r}", table, bad, f"{shown}, a value not in the encoding", None
                    )
                    + "; pass unknown='ignore' or 'warn' to give it the out-of-vocabulary id 0",
                )
                return None
            unseen.append(
                _Unseen("frame" if role == "context" else "item", len(values), label, column, bad,
                        f"{table.row(bad[0])} is {shown}")
            )  # fmt: skip
    return spec, column_ids, unseen


def _fit_standardization(block: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of each feature (column of ``block``); std 1.0 for a constant feature."""
    mean, std = block.mean(axis=0), block.std(axis=0)
    return tuple(float(m) for m in mean), tuple(float(s) if s > 0 else 1.0 for s in std)


def _numeric_text(codes: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """A text column that looks numeric, parsed: ``(floats, rows that are not numbers, any text number)``.

    ``codes`` and ``uniques`` are the column factorized (:func:`_factorize`). A column looks
    numeric when at least one value is a number (a number, or text that parses as one) and
    numbers are at least as many as other text; missing values and markers (``"n/a"``,
    ``""``, ...) count as neither. ``None`` when it does not. Each distinct value is parsed
    once, and text that cannot start a number or a marker (``"u123"``) is not parsed at all.
    """
    if len(uniques) == 0:
        return None
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    parsed = _parse_numbers(uniques)
    is_number = np.fromiter((isinstance(p, float) for p in parsed), bool, len(parsed))
    is_other = np.fromiter((p is None for p in parsed), bool, len(parsed))
    n_numbers, n_other = int(counts[is_number].sum()), int(counts[is_other].sum())
    if n_numbers == 0 or n_other > n_numbers:
        return None
    unique_floats = np.array([p if isinstance(p, float) else np.nan for p in parsed])
    valid = codes >= 0
    safe = np.maximum(codes, 0)
    floats = np.where(valid, unique_floats[safe], np.nan)
    not_numbers = np.flatnonzero(~valid | ~is_number[safe])
    text_number = any(
        isinstance(p, float) and isinstance(v, (str, bytes))
        for v, p in zip(uniques.tolist(), parsed, strict=True)
    )
    return floats, not_numbers, text_number


# The first character (after leading spaces) of text that float() or a missing marker may accept.
_NUMBER_STARTS = ("", *"+-.0123456789iInN?#")


def _parse_numbers(uniques: np.ndarray) -> list[float | str | None]:
    """:func:`_parse_number` of each distinct value; text whose first character cannot
    start a number or a marker is ``None`` without being parsed (a vectorised screen)."""
    values = uniques.tolist()
    if not values or not all(isinstance(v, str) for v in values):
        return [_parse_number(v) for v in values]
    first = np.char.lstrip(np.asarray(values, dtype=str)).astype("U1")  # "" for empty text
    out: list[float | str | None] = [None] * len(values)
    for i in np.flatnonzero(np.isin(first, _NUMBER_STARTS)).tolist():
        out[i] = _parse_number(values[i])
    return out


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
    table: _Table, column: Any, values: np.ndarray, text: tuple[np.ndarray, np.ndarray, bool], role: str
) -> str:
    """The problem of a numeric-looking text column under ``numeric_strings="error"``."""
    floats, not_numbers, text_number = text
    first = int(np.flatnonzero(~np.isnan(floats))[0])
    what = "numbers stored as text" if text_number else "numbers mixed with text"
    message = f"{role} {column!r}: holds {what} ({table.row(first)} is {_show(values[first])}"
    if len(not_numbers):
        message += (
            f"; {table.row(int(not_numbers[0]))} is {_show_value(values[not_numbers[0]])}, not a number"
        )
    return (
        message + "), which as a categorical column would be one id per distinct value; pass "
        "numeric_strings='parse' to read it as numbers, or numeric_strings='categorical' to embed "
        f"it as ids (a mapping such as {{{column!r}: 'parse'}} sets one column)"
    )


def _parse_numeric_text(
    table: _Table,
    column: Any,
    values: np.ndarray,
    text: tuple[np.ndarray, np.ndarray, bool],
    role: str,
    problems: _Problems,
) -> np.ndarray | None:
    """The parsed floats of a numeric-looking text column; reports the rows that are not numbers."""
    floats, not_numbers, _ = text
    if len(not_numbers):
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
