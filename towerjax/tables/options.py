"""How a table's feature columns are encoded: one :class:`EncodingOptions` value.

The options say HOW columns become tower inputs (which are categorical, their minimum
counts, hashing, embedding widths, numbers stored as text, standardisation, the item-id
embedding), never which column plays which role (contexts, action, reward, propensity).
:func:`~towerjax.tables.logged_data_from_frame` and the own-logs workflow take one such
value, or its fields as keywords (:func:`resolve_options`). Values are checked when the
value is made; the columns they name are checked against a table's feature columns by
:meth:`EncodingOptions.check_columns`. Each problem is an
:class:`~towerjax.checks.InputError` naming the field.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from towerjax.checks import InputError
from towerjax.tables.vocabulary import CONTEXT_MIN_COUNT

__all__ = [
    "NUMERIC_STRINGS",
    "UNKNOWN",
    "EncodingOptions",
    "check_option_names",
    "check_unknown",
    "resolve_options",
]

NUMERIC_STRINGS = ("error", "parse", "categorical")
"""The values of ``numeric_strings`` (what a text column that looks numeric becomes)."""
UNKNOWN = ("error", "ignore", "warn")
"""The values of ``unknown`` (what a value not in an encoding's vocabulary becomes)."""


def check_unknown(unknown: Any) -> str:
    """``unknown`` when it is one of :data:`UNKNOWN`; InputError naming ``unknown`` otherwise."""
    if unknown not in UNKNOWN:
        raise InputError("unknown", f"expected 'error', 'ignore' or 'warn', got {unknown!r}")
    return unknown


@dataclasses.dataclass(frozen=True)
class EncodingOptions:
    """How feature columns become tower inputs (``EncodingOptions()``: the defaults).

    Passed to :func:`~towerjax.tables.logged_data_from_frame` as ``options=`` (or its fields
    as keywords). With an ``encoding=`` to reuse, only ``numeric_strings`` applies; the other
    fields are checked but the encoding's choices are kept.

    Attributes:
      categorical: feature columns to embed as ids even though they hold numbers (an
        integer ``user_id``); object, string and category columns are categorical anyway.
      min_count: the fewest training rows a value needs for its own id (rarer ones share
        id 0 with unseen and missing values). An int applies to the context columns
        (item-table columns keep every value); a mapping sets it per column (others: the
        default, :data:`~towerjax.tables.CONTEXT_MIN_COUNT` for a context column, 1 for an
        item-table column).
      hash_buckets: ``{column: B}``: hash these columns' values into ``B`` buckets (ids
        ``1..B``; 0 for missing) instead of building a vocabulary, for unbounded ids.
      embedding_dims: ``{column: width}`` of the embedding tables (a categorical feature
        column, or the item id column for the item id); default
        :func:`towerjax.features.default_embedding_dim` of the table's size.
      item_id_embedding: give the item tower the item id as an embedded feature (table
        :data:`~towerjax.tables.ITEM_ID_FEATURE`); without it the items need feature columns.
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

    Sequences are kept as tuples and mappings as dicts (copies), so the fields give the value
    back: ``EncodingOptions(**{f.name: getattr(o, f.name) for f in fields(o)}) == o``.

    Raises:
      InputError: naming the field, for a value of the wrong type or out of range (the
        columns named are checked by :meth:`check_columns`).
    """

    categorical: Sequence[Hashable] = ()
    min_count: int | Mapping[Hashable, int] = CONTEXT_MIN_COUNT
    hash_buckets: Mapping[Hashable, int] | None = None
    embedding_dims: Mapping[Hashable, int] | None = None
    item_id_embedding: bool = True
    numeric_strings: str | Mapping[Hashable, str] = "error"
    standardize: bool | Sequence[Hashable] = False

    def __post_init__(self) -> None:
        numeric_strings = self.numeric_strings
        if isinstance(numeric_strings, Mapping):
            for column, mode in numeric_strings.items():
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
        standardize = _column_names("standardize", self.standardize, allow_bool=True)
        categorical = _column_names("categorical", self.categorical, allow_bool=False)
        min_count = self.min_count
        if isinstance(min_count, Mapping):
            min_count = _positive_ints("min_count", min_count)
        elif isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) or min_count < 1:
            raise InputError(
                "min_count", f"expected a positive integer or a mapping from column to one, got {min_count!r}"
            )
        else:
            min_count = int(min_count)
        hash_buckets = (
            None if self.hash_buckets is None else _positive_ints("hash_buckets", self.hash_buckets)
        )
        embedding_dims = (
            None if self.embedding_dims is None else _positive_ints("embedding_dims", self.embedding_dims)
        )
        if not isinstance(self.item_id_embedding, (bool, np.bool_)):
            raise InputError("item_id_embedding", f"expected True or False, got {self.item_id_embedding!r}")
        for name, value in (
            ("numeric_strings", numeric_strings),
            ("standardize", standardize),
            ("categorical", categorical),
            ("min_count", min_count),
            ("hash_buckets", hash_buckets),
            ("embedding_dims", embedding_dims),
            ("item_id_embedding", bool(self.item_id_embedding)),
        ):
            object.__setattr__(self, name, value)

    def check_columns(self, columns: Sequence[Hashable], item_id_column: Hashable | None = None) -> None:
        """InputError naming the field that names a column not among the feature ``columns``
        (``embedding_dims`` may also name ``item_id_column``, for the item id's width)."""
        if isinstance(self.numeric_strings, Mapping):
            _check_named("numeric_strings", self.numeric_strings, columns)
        if not isinstance(self.standardize, bool):
            _check_named("standardize", self.standardize, columns)
        _check_named("categorical", self.categorical, columns)
        if isinstance(self.min_count, Mapping):
            _check_named("min_count", self.min_count, columns)
        _check_named("hash_buckets", self.hash_buckets or {}, columns)
        extra = () if item_id_column is None else (item_id_column,)
        _check_named("embedding_dims", self.embedding_dims or {}, [*columns, *extra], shown=columns)

    def numeric_mode(self, column: Hashable) -> str:
        """The ``numeric_strings`` mode of ``column``."""
        if isinstance(self.numeric_strings, str):
            return self.numeric_strings
        return self.numeric_strings.get(column, "error")

    def standardizes(self, column: Hashable) -> bool:
        """Whether ``standardize`` applies to ``column`` (``True``, or the column named)."""
        if isinstance(self.standardize, bool):
            return self.standardize
        return column in self.standardize

    def names_for_standardizing(self, column: Hashable) -> bool:
        """Whether ``standardize`` lists ``column`` by name (not ``True`` for every column)."""
        return not isinstance(self.standardize, bool) and column in self.standardize

    def is_categorical(self, column: Hashable) -> bool:
        """Named by ``categorical`` or ``hash_buckets``: embedded ids whatever its dtype."""
        return column in self.categorical or column in (self.hash_buckets or {})

    def column_min_count(self, column: Hashable, role: str) -> int:
        """``min_count`` of ``column`` in the ``role`` (``"context"`` or ``"item"``) table."""
        if isinstance(self.min_count, Mapping):
            return self.min_count.get(column, CONTEXT_MIN_COUNT if role == "context" else 1)
        return self.min_count if role == "context" else 1

    def buckets(self, column: Hashable) -> int | None:
        """``hash_buckets`` of ``column``, or ``None`` for a column with a vocabulary."""
        return (self.hash_buckets or {}).get(column)

    def embedding_dim(self, column: Hashable) -> int | None:
        """``embedding_dims`` of ``column``, or ``None`` for the default width."""
        return (self.embedding_dims or {}).get(column)


def check_option_names(fields: Mapping[str, Any], caller: str) -> None:
    """TypeError, as Python's for ``caller``, for a keyword that is not an :class:`EncodingOptions` field."""
    names = {f.name for f in dataclasses.fields(EncodingOptions)}
    for name in fields:
        if name not in names:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")


def resolve_options(options: EncodingOptions | None, fields: Mapping[str, Any]) -> EncodingOptions:
    """``options``, or ``EncodingOptions(**fields)`` (the fields given as keywords).

    Raises:
      InputError: naming ``options``, for both given or an ``options`` that is not an
        :class:`EncodingOptions`; naming the field, for a bad field value.
    """
    if options is None:
        return EncodingOptions(**fields)
    if not isinstance(options, EncodingOptions):
        raise InputError("options", f"expected an EncodingOptions, got {type(options).__name__}")
    if fields:
        raise InputError(
            "options",
            f"given with the encoding options {sorted(fields)} as keywords; pass them in options= "
            "(dataclasses.replace(options, ...)) or as keywords, not both",
        )
    return options


def _column_names(argument: str, value: Any, *, allow_bool: bool) -> bool | tuple[Hashable, ...]:
    """``True``/``False`` (when allowed) or a tuple of column names; InputError naming ``argument``."""
    if allow_bool and isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | set | frozenset):
        expected = "True, False or a sequence of column names" if allow_bool else "a sequence of column names"
        raise InputError(argument, f"expected {expected}, got {value!r}")
    return tuple(value)


def _positive_ints(argument: str, value: Any) -> dict[Hashable, int]:
    """``value`` as a dict ``{column: positive int}``; InputError naming ``argument``."""
    if not isinstance(value, Mapping):
        raise InputError(
            argument, f"expected a mapping from column name to a positive integer, got {value!r}"
        )
    for column, number in value.items():
        if isinstance(number, bool) or not isinstance(number, numbers.Integral) or number < 1:
            raise InputError(argument, f"expected a positive integer for {column!r}, got {number!r}")
    return {column: int(number) for column, number in value.items()}


def _check_named(
    argument: str, named: Any, columns: Sequence[Hashable], shown: Sequence[Hashable] | None = None
) -> None:
    """InputError naming ``argument`` for a name in ``named`` that is not in ``columns``."""
    for column in named:
        if column not in columns:
            listed = list(columns if shown is None else shown)
            raise InputError(argument, f"names {column!r}, which is not a feature column {listed}")
