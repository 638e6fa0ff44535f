"""How a frame's columns became tower inputs: :class:`FrameEncoding`, to reuse, save and serve.

The :class:`FrameEncoding` that :func:`~towerjax.tables.logged_data_from_frame` returns records
the columns, vocabularies, hashing settings, embedding widths, standardisation statistics and
which columns were parsed from text; its :attr:`~FrameEncoding.context_spec` and
:attr:`~FrameEncoding.item_spec` are what :meth:`towerjax.towers.TwoTower.init` needs. Pass it
back as ``encoding=`` to build a test log the same way; save it with
:meth:`FrameEncoding.to_dict` (JSON-ready) and load it with :meth:`FrameEncoding.from_dict`;
encode new contexts or items for serving with :meth:`FrameEncoding.encode_contexts` and
:meth:`FrameEncoding.encode_items`, where a value not in the vocabulary becomes id 0 (counted in
an :class:`~towerjax.tables.UnseenCategoryWarning`), never an error unless asked.

Items. The item id is itself an embedded feature of the item tower (table ``item_id``: row
``a`` of the item table has id ``a + 1``; id 0 is an item not in the training catalogue, at
serving time), next to the item table's feature columns, numeric ones dense and categorical
ones ids as for contexts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.checks import InputError
from towerjax.features import Features, FeatureSpec, Table
from towerjax.tables.access import TableView, require_rows, rows_message, show
from towerjax.tables.columns import id_values, id_values_of, object_array, python_values
from towerjax.tables.encoder import KnownColumns, encode_columns
from towerjax.tables.errors import FrameValidationError, Problems, UnseenRows, warn_unseen
from towerjax.tables.json_values import (
    from_json,
    from_json_list,
    from_json_statistics,
    json_list,
    json_statistics,
    to_json,
)
from towerjax.tables.options import EncodingOptions, check_unknown
from towerjax.tables.vocabulary import ITEM_ID_FEATURE, CategoricalColumn

__all__ = ["FORMAT", "VERSION", "FrameEncoding", "catalogue_ids", "check_feature_names"]

FORMAT = "towerjax.FrameEncoding"
"""The ``format`` of a saved encoding (:meth:`FrameEncoding.to_dict`)."""
VERSION = 2
"""The ``version`` of a saved encoding; 1 (one-hot categorical columns) is no longer read."""


@dataclasses.dataclass(frozen=True)
class FrameEncoding:
    """How a frame's columns became tower inputs: reuse it, save it, serve with it.

    Pass it back to :func:`~towerjax.tables.logged_data_from_frame` as ``encoding=``, save it with
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
            lines = [f"{name}: dense" for name in self.feature_names(role)]
            if role == "item" and self.item_id_dim is not None:
                lines.insert(
                    0, f"item id: {len(self.item_catalogue)} items + unknown, dim {self.item_id_dim}"
                )
            lines += [c.describe() for c in self.categorical_columns(role)]
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
            (and is not in ``context_parsed_columns``), as in :func:`~towerjax.tables.logged_data_from_frame`.
          unknown: what a value not in a column's vocabulary becomes (unseen in training,
            rarer than ``min_count``, or missing): ``"warn"`` (id 0, the OOV bucket, and an
            :class:`~towerjax.tables.UnseenCategoryWarning` with the count of such rows), ``"ignore"`` (id 0,
            silently) or ``"error"``.

        Raises:
          FrameValidationError: naming each column with a problem (missing, non-finite,
            text in a numeric column, an unseen value under ``unknown="error"``) and an
            empty frame.
        """
        options = _new_table_options(self, numeric_strings, unknown)
        table = TableView(frame, "frame", "frame")
        return _encode_new(table, "context", options, unknown, self)

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
        options = _new_table_options(self, numeric_strings, unknown)
        table = TableView(item_table, "item table", "item_table")
        return _encode_new(table, "item", options, unknown, self)

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
            "format": FORMAT,
            "version": VERSION,
            "context_columns": json_list(self.context_columns, "context_columns"),
            "item_feature_columns": json_list(self.item_feature_columns, "item_feature_columns"),
            "context_feature_names": list(self.context_feature_names),
            "item_feature_names": list(self.item_feature_names),
            "item_ids": json_list(self.item_ids, "item_ids"),
            "context_categorical": [c.to_dict("context_categorical") for c in self.context_categorical],
            "item_categorical": [c.to_dict("item_categorical") for c in self.item_categorical],
            "item_id_dim": self.item_id_dim,
            "item_id_vocabulary": None
            if self.item_id_vocabulary is None
            else json_list(self.item_id_vocabulary, "item_id_vocabulary"),
            "context_standardization": json_statistics(
                self.context_standardization, "context_standardization"
            ),
            "item_standardization": json_statistics(self.item_standardization, "item_standardization"),
            "context_parsed_columns": json_list(self.context_parsed_columns, "context_parsed_columns"),
            "item_parsed_columns": json_list(self.item_parsed_columns, "item_parsed_columns"),
            "item_id_column": to_json(self.item_id_column, "item_id_column"),
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> FrameEncoding:
        """The encoding :meth:`to_dict` wrote (also after a JSON round trip).

        Raises:
          InputError: naming ``encoding``, for a dict that is not a saved FrameEncoding
            (wrong ``format``, another ``version``, a missing key, a malformed entry).
        """
        if not isinstance(saved, Mapping) or saved.get("format") != FORMAT:
            raise InputError(
                "encoding", f"expected a dict written by FrameEncoding.to_dict (format {FORMAT!r})"
            )
        version = saved.get("version")
        if version != VERSION:
            hint = (
                ": it was saved by an older towerjax, which one-hot encoded categorical columns; "
                "train the model again to embed them as ids"
                if isinstance(version, int) and version < VERSION
                else ": upgrade towerjax"
            )
            raise InputError("encoding", f"expected version {VERSION}, got {version!r}{hint}")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in saved]
        if missing:
            raise InputError("encoding", f"missing keys {missing}")
        try:
            item_id_dim, item_id_vocabulary = saved["item_id_dim"], saved["item_id_vocabulary"]
            return cls(
                context_columns=from_json_list(saved["context_columns"]),
                item_feature_columns=from_json_list(saved["item_feature_columns"]),
                context_feature_names=tuple(str(v) for v in saved["context_feature_names"]),
                item_feature_names=tuple(str(v) for v in saved["item_feature_names"]),
                item_ids=from_json_list(saved["item_ids"]),
                context_categorical=tuple(
                    CategoricalColumn.from_dict(c) for c in saved["context_categorical"]
                ),
                item_categorical=tuple(CategoricalColumn.from_dict(c) for c in saved["item_categorical"]),
                item_id_dim=None if item_id_dim is None else int(item_id_dim),
                item_id_vocabulary=None if item_id_vocabulary is None else from_json_list(item_id_vocabulary),
                context_standardization=from_json_statistics(saved["context_standardization"]),
                item_standardization=from_json_statistics(saved["item_standardization"]),
                context_parsed_columns=from_json_list(saved["context_parsed_columns"]),
                item_parsed_columns=from_json_list(saved["item_parsed_columns"]),
                item_id_column=from_json(saved["item_id_column"]),
            )
        except (TypeError, ValueError, KeyError) as err:
            raise InputError("encoding", f"malformed saved encoding ({err})") from None

    def categorical_columns(self, role: str) -> tuple[CategoricalColumn, ...]:
        """The categorical columns of the ``role`` (``"context"`` or ``"item"``) table."""
        return self.context_categorical if role == "context" else self.item_categorical

    def feature_names(self, role: str) -> tuple[str, ...]:
        """The dense feature names of the ``role`` (``"context"`` or ``"item"``) table."""
        return self.context_feature_names if role == "context" else self.item_feature_names

    def known_columns(self, role: str) -> KnownColumns:
        """What this encoding fixed for the ``role`` (``"context"`` or ``"item"``) table's columns."""
        if role == "context":
            return KnownColumns(
                {c.column: c for c in self.context_categorical},
                self.context_standardization,
                self.context_parsed_columns,
            )
        return KnownColumns(
            {c.column: c for c in self.item_categorical}, self.item_standardization, self.item_parsed_columns
        )


def catalogue_ids(encoding: FrameEncoding, ids: np.ndarray) -> np.ndarray:
    """``[m]`` int32 item-id ids of ``ids`` in the encoding's catalogue: row + 1, 0 if absent."""
    import pandas as pd

    catalogue = pd.Index(object_array(encoding.item_catalogue), dtype=object, tupleize_cols=False)
    try:
        return (catalogue.get_indexer(ids) + 1).astype(np.int32)
    except TypeError:  # an unhashable id: not in the catalogue
        return np.asarray([_catalogue_id(catalogue, v) for v in ids.tolist()], np.int32)


def _catalogue_id(catalogue, value) -> int:
    try:
        return int(catalogue.get_indexer(object_array([value]))[0]) + 1
    except TypeError:
        return 0


def check_feature_names(kind: str, names: Sequence[str], expected: Sequence[str]) -> None:
    """InputError naming ``encoding`` unless the dense feature ``names`` are the ``expected`` ones."""
    if tuple(expected) != tuple(names):
        raise InputError(
            "encoding",
            f"{kind} features {list(names)} differ from the encoding's {list(expected)} "
            "(a 2-d column changed width?)",
        )


def _new_table_options(encoding: FrameEncoding, numeric_strings: Any, unknown: Any) -> EncodingOptions:
    """The options of :meth:`FrameEncoding.encode_contexts` / ``encode_items``, checked."""
    check_unknown(unknown)
    options = EncodingOptions(numeric_strings=numeric_strings)
    options.check_columns(encoding.context_columns + encoding.item_feature_columns)
    return options


def _encode_new(
    table: TableView, role: str, options: EncodingOptions, unknown: str, encoding: FrameEncoding
) -> np.ndarray | Features:
    """A new table's tower input under ``encoding`` (``role`` ``"context"`` or ``"item"``)."""
    label = "context column" if role == "context" else "item table column"
    columns = encoding.context_columns if role == "context" else encoding.item_feature_columns
    problems = Problems()
    for c in columns:
        if not table.has(c):
            problems.add(
                c,
                f"{table.label}: missing column {c!r} (a {role} column of the encoding); "
                f"columns are {table.column_names()}",
            )
    problems.raise_if_any()
    unseen: list[UnseenRows] = []
    item_id_table = None
    if role == "item" and encoding.item_id_dim is not None:
        found, unseen = _new_item_ids(table, encoding, unknown, problems)
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
    require_rows(table, n, what)
    encoded = encode_columns(
        table, columns, n, label, role, options, unknown, encoding.known_columns(role), problems
    )
    problems.raise_if_any()
    check_feature_names(role, encoded.names, encoding.feature_names(role))
    warn_unseen(unseen + encoded.unseen, unknown, stacklevel=4)
    return encoded.features(item_id_table)


def _new_item_ids(
    table: TableView, encoding: FrameEncoding, unknown: str, problems: Problems
) -> tuple[np.ndarray, list[UnseenRows]]:
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
        read = None if m is None else id_values(table, id_column, m, problems, "item table id column")
        label, column = "item table id column", id_column
    else:
        names = table.column_names()
        if not table.is_frame and not names:
            raise FrameValidationError(
                ["item table: has no columns, expected one row per item"], [table.argument]
            )
        m = table.index_length() if table.is_frame else table.length(names[0], problems, "item table column")
        read = None if m is None else id_values_of(object_array(table.index_values(m)))
        label, column = "item table index", table.argument
    if read is None:
        raise problems.error()
    values, missing = read
    require_rows(table, len(values), "item")
    found = np.where(missing, 0, catalogue_ids(encoding, object_array(python_values(values))))
    found = found.astype(np.int32)
    bad = np.flatnonzero(found == 0)
    unseen: list[UnseenRows] = []
    if bad.size:
        shown = "missing" if missing[bad[0]] else show(values[bad[0]])
        if unknown == "error":
            problems.add(
                column,
                rows_message(f"{label} {column!r}", table, bad, shown, None)
                + ", an item id not in the encoding; pass unknown='ignore' or 'warn' to give it id 0",
            )
        else:
            unseen.append(
                UnseenRows("item", len(values), label, column, bad, f"{table.row(bad[0])} is {shown}")
            )
    return found, unseen
