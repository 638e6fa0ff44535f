"""Categorical columns as embedded ids: vocabularies with minimum counts, or stable hashing.

A categorical column's vocabulary is built from the training table: the values seen at
least ``min_count`` times, sorted (a pandas category column keeps its declared order), get
ids ``1..V``; id ``0`` is the out-of-vocabulary (OOV) bucket, shared by values unseen in
training, values rarer than ``min_count`` and missing values. The default ``min_count`` of
a context column is :data:`CONTEXT_MIN_COUNT` (2): the values seen once in training then
train the OOV row, so a context whose value was never seen (a new user at serving time) gets
the embedding of a rarely seen value, not an untrained random vector. (With ``min_count=1``
every training value has its own row and row 0 is never trained.) Item-table columns keep
every value (each item is one row). For unbounded ids, hash buckets map a value to
``1 + h(value) mod B`` instead, no vocabulary stored, with ``h`` SipHash-2-4 of the value's
text (:func:`stable_hash`): the same id in every process and on every machine; a missing
value is id 0. Lookups are vectorised (:func:`factorize` and ``Index.get_indexer`` over the
distinct values).

:class:`CategoricalColumn` is one such column (vocabulary or buckets, table name, width);
:func:`fit_categorical` builds it from training values.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from towerjax.features import Table, default_embedding_dim
from towerjax.tables.columns import object_array
from towerjax.tables.json_values import from_json, from_json_list, json_list, to_json

__all__ = [
    "CONTEXT_MIN_COUNT",
    "ITEM_ID_FEATURE",
    "CategoricalColumn",
    "category_name",
    "factorize",
    "fit_categorical",
    "sorted_values",
    "stable_hash",
    "stable_hash_ids",
    "table_name",
]

CONTEXT_MIN_COUNT = 2
"""Default ``min_count`` of a categorical context column (item-table columns: 1)."""
ITEM_ID_FEATURE = "item_id"
"""The name of the item tower's item-id table (ids ``1..A``, 0 for an unknown item)."""


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
        return f"{category_name(self.column)}: {what}, dim {self.dim}"

    def ids(self, codes: np.ndarray, uniques: np.ndarray) -> np.ndarray:
        """``[n]`` int32 ids of factorized values (``codes`` ``-1`` for missing: id 0)."""
        if len(uniques) == 0:
            return np.zeros(codes.shape, np.int32)
        if self.vocabulary is None:
            unique_ids = 1 + (stable_hash(uniques) % np.uint64(self.hash_buckets)).astype(np.int64)
        else:
            unique_ids = self._index.get_indexer(object_array(uniques)) + 1  # -1 (not found) -> 0
        return np.where(codes >= 0, unique_ids[codes], 0).astype(np.int32)

    @functools.cached_property
    def _index(self):
        import pandas as pd

        return pd.Index(object_array(self.vocabulary), dtype=object, tupleize_cols=False)

    def to_dict(self, where: str) -> dict[str, Any]:
        return {
            "column": to_json(self.column, where),
            "name": self.name,
            "dim": self.dim,
            "vocabulary": None
            if self.vocabulary is None
            else json_list(self.vocabulary, f"{where}[{self.column!r}].vocabulary"),
            "hash_buckets": self.hash_buckets,
            "min_count": self.min_count,
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> CategoricalColumn:
        vocabulary = saved["vocabulary"]
        return cls(
            column=from_json(saved["column"]),
            name=str(saved["name"]),
            dim=int(saved["dim"]),
            vocabulary=None if vocabulary is None else from_json_list(vocabulary),
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


def factorize(values: np.ndarray, missing: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
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


def sorted_values(values: np.ndarray) -> tuple[Any, ...]:
    """Distinct ``values`` sorted (mixed types: by type name, then text)."""
    if values.dtype.kind in "biuf":
        return tuple(np.sort(values).tolist())
    listed = values.tolist()
    try:
        return tuple(sorted(listed))
    except TypeError:
        return tuple(sorted(listed, key=lambda v: (type(v).__name__, str(v))))


def category_name(value: Any) -> str:
    """A column name or category as text (bytes decoded, numpy scalars as Python values)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode() if isinstance(value, bytes) else str(value)


def table_name(column: Hashable, taken: set[str]) -> str:
    """A table name for ``column``: its text with other characters than ``[A-Za-z0-9_.-]``
    replaced, made unique among ``taken`` (a suffix ``_2``, ``_3``, ...)."""
    if isinstance(column, tuple):
        text = "_".join(category_name(part) for part in column)
    else:
        text = category_name(column)
    base = re.sub(r"[^0-9A-Za-z_.-]+", "_", text).strip("_") or "feature"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def fit_categorical(
    column: Hashable,
    codes: np.ndarray,
    uniques: np.ndarray,
    declared: tuple[Any, ...] | None,
    *,
    name: str,
    min_count: int,
    hash_buckets: int | None,
    embedding_dim: int | None,
) -> CategoricalColumn:
    """A column's :class:`CategoricalColumn` from its training values (``codes`` and
    ``uniques`` from :func:`factorize`): ``hash_buckets`` when given, else the values seen at
    least ``min_count`` times (``declared`` categories in their order, else sorted); width
    ``embedding_dim``, default :func:`~towerjax.features.default_embedding_dim` of the size."""
    if hash_buckets is not None:
        dim = embedding_dim or default_embedding_dim(hash_buckets + 1)
        return CategoricalColumn(column, name, dim, hash_buckets=hash_buckets)
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    if declared is not None:
        import pandas as pd

        position = pd.Index(object_array(declared), dtype=object, tupleize_cols=False).get_indexer(
            object_array(uniques)
        )
        declared_counts = np.zeros(len(declared), np.int64)
        declared_counts[position[position >= 0]] = counts[position >= 0]
        vocabulary = tuple(
            v for v, c in zip(declared, declared_counts.tolist(), strict=True) if c >= min_count
        )
    else:
        vocabulary = sorted_values(uniques[counts >= min_count])
    dim = embedding_dim or default_embedding_dim(len(vocabulary) + 1)
    return CategoricalColumn(column, name, dim, vocabulary=vocabulary, min_count=min_count)
