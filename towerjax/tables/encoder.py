"""One table's feature columns as tower inputs: dense ``[n, d]`` features and ``[n]`` id arrays.

Numeric columns are dense features, used as they are or standardised (``(value - mean) /
std`` with the training table's statistics). Categorical columns (object, string or pandas
category dtype, and any column named categorical or hashed) become one ``[n]`` int32 id array
each, which the tower looks up in its own embedding table
(:class:`~towerjax.features.Features`): a column of a million distinct values costs ``n``
integers, never an ``[n, 10^6]`` one-hot matrix. :func:`encode_columns` fits the
vocabularies and statistics, or applies those an encoding fixed (:class:`KnownColumns`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.features import Features
from towerjax.tables.access import TableView, rows_message, show, show_float
from towerjax.tables.columns import check_length, exact_numeric, first_unhashable, missing_mask, read_column
from towerjax.tables.errors import Problems, UnseenRows
from towerjax.tables.numeric_text import numeric_text, numeric_text_message, parse_numeric_text
from towerjax.tables.options import EncodingOptions
from towerjax.tables.vocabulary import (
    ITEM_ID_FEATURE,
    CategoricalColumn,
    factorize,
    fit_categorical,
    table_name,
)

__all__ = ["EncodedTable", "KnownColumns", "encode_columns"]

Statistics = tuple[tuple[float, ...], tuple[float, ...]]


@dataclasses.dataclass(frozen=True)
class KnownColumns:
    """What an encoding fixed for one table's feature columns."""

    categorical: Mapping[Hashable, CategoricalColumn]
    standardization: Mapping[Hashable, Statistics]
    parsed: tuple[Hashable, ...]


@dataclasses.dataclass
class EncodedTable:
    """One table's dense ``[n, d]`` features, its ``[n]`` id arrays, and how they were built."""

    dense: np.ndarray
    names: tuple[str, ...]
    categorical: tuple[CategoricalColumn, ...]
    ids: dict[str, np.ndarray]
    standardization: dict[Hashable, Statistics]
    parsed: tuple[Hashable, ...]
    unseen: list[UnseenRows]

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


def encode_columns(
    table: TableView,
    columns: Sequence[Any],
    n: int,
    label: str,
    role: str,
    options: EncodingOptions,
    unknown: str,
    known: KnownColumns | None,
    problems: Problems,
) -> EncodedTable:
    """The dense ``[n, d]`` features and ``[n]`` id arrays of ``columns`` and how they were built.

    Numeric columns (1-d, or 2-d for several features) are dense, used as they are or
    standardised; categorical ones, those ``options`` names, and any column ``known`` (an
    encoding) embeds, become ids; numeric-looking text follows ``options.numeric_strings``
    (or ``known.parsed``). ``role`` is ``"context"`` or ``"item"``; ``unknown`` what a value not
    in a ``known`` vocabulary becomes. A column with a problem is reported and left out.
    """
    blocks: list[np.ndarray] = []
    names: list[str] = []
    categorical: list[CategoricalColumn] = []
    ids: dict[str, np.ndarray] = {}
    statistics_out: dict[Any, Statistics] = {}
    parsed: list[Any] = []
    unseen: list[UnseenRows] = []
    taken = {ITEM_ID_FEATURE} if role == "item" else set()
    for column in columns:
        kind, values, declared = read_column(table, column)
        if values is None:
            problems.add(column, f"{label} {column!r}: has {kind}, which cannot be a feature")
            continue
        if not check_length(values, n, column, label, table, problems):
            continue
        known_spec = None if known is None else known.categorical.get(column)
        forced = known is None and options.is_categorical(column)
        factorized = None
        if (
            kind == "categorical"
            and declared is None
            and known_spec is None
            and not forced
            and values.ndim == 1
        ):
            try:
                factorized = factorize(values, missing_mask(values))
            except TypeError:  # an unhashable value: reported as a categorical column's problem
                factorized = None
            text = None if factorized is None else numeric_text(*factorized)
            if text is not None:
                mode = (
                    "parse" if known is not None and column in known.parsed else options.numeric_mode(column)
                )
                if mode == "error":
                    problems.add(column, numeric_text_message(table, column, values, text, label))
                    continue
                if mode == "parse":
                    values = parse_numeric_text(table, column, values, text, label, problems)
                    if values is None:
                        continue
                    kind, factorized = "numeric", None
                    parsed.append(column)
        if kind == "categorical" and known is not None and known_spec is None:
            problems.add(
                column,
                f"{label} {column!r}: is categorical here but numeric in the encoding; "
                f"{table.row(0)} is {show(values[0])}",
            )
            continue
        if kind == "categorical" or known_spec is not None or forced:
            if known is None and options.names_for_standardizing(column):
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
                options,
                unknown,
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
            elif options.standardizes(column):
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
    return EncodedTable(dense, tuple(names), tuple(categorical), ids, statistics_out, tuple(parsed), unseen)


def _category_ids(
    table: TableView,
    column: Any,
    kind: str,
    values: np.ndarray,
    declared: tuple[Any, ...] | None,
    label: str,
    role: str,
    options: EncodingOptions,
    unknown: str,
    known: CategoricalColumn | None,
    taken: set[str],
    problems: Problems,
    factorized: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[CategoricalColumn, np.ndarray, list[UnseenRows]] | None:
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
        values = exact_numeric(table.get(column), values)
    missing = missing_mask(values)
    try:
        codes, uniques = factorize(values, missing) if factorized is None else factorized
    except TypeError:
        bad = first_unhashable(values)
        problems.add(
            column, f"{label} {column!r}: {table.row(bad)} is {show(values[bad])}, which is not hashable"
        )
        return None
    if known is not None:
        spec = known
    else:
        spec = fit_categorical(
            column,
            codes,
            uniques,
            declared,
            name=table_name(column, taken),
            min_count=options.column_min_count(column, role),
            hash_buckets=options.buckets(column),
            embedding_dim=options.embedding_dim(column),
        )
    column_ids = spec.ids(codes, uniques)
    unseen: list[UnseenRows] = []
    if known is not None:
        bad = np.flatnonzero(column_ids == 0)
        if bad.size:
            shown = "missing" if missing[bad[0]] else show(values[bad[0]])
            if unknown == "error":
                problems.add(
                    column,
                    rows_message(
                        f"{label} {column!r}", table, bad, f"{shown}, a value not in the encoding", None
                    )
                    + "; pass unknown='ignore' or 'warn' to give it the out-of-vocabulary id 0",
                )
                return None
            unseen.append(
                UnseenRows("frame" if role == "context" else "item", len(values), label, column, bad,
                           f"{table.row(bad[0])} is {shown}")
            )  # fmt: skip
    return spec, column_ids, unseen


def _fit_standardization(block: np.ndarray) -> Statistics:
    """``(mean, std)`` of each feature (column of ``block``); std 1.0 for a constant feature."""
    mean, std = block.mean(axis=0), block.std(axis=0)
    return tuple(float(m) for m in mean), tuple(float(s) if s > 0 else 1.0 for s in std)


def _numeric_feature(
    table: TableView, column: Any, values: np.ndarray, n: int, role: str, problems: Problems
) -> tuple[np.ndarray, list[str]] | None:
    """A numeric column as ``[n, k]`` features and their names; reports a non-finite value or rank > 2."""
    flat = values.reshape(n, -1)
    finite = np.isfinite(flat)
    rows = np.flatnonzero(~finite.all(axis=1))
    if rows.size:
        first = show_float(flat[rows[0]][~finite[rows[0]]][0])
        problems.add(column, rows_message(f"{role} {column!r}", table, rows, first, "a finite number"))
        return None
    if values.ndim == 1:
        return values[:, None], [str(column)]
    if values.ndim == 2:
        return values, [f"{column}[{j}]" for j in range(values.shape[1])]
    problems.add(column, f"{role} {column!r}: expected a 1-d or 2-d array, got shape {values.shape}")
    return None
