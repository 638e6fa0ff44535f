"""Typed tower inputs: dense numeric columns plus integer ids for categorical features.

A tower reads either a plain ``[n, d]`` float matrix (the synthetic problems, OBP's dicts)
or :class:`Features`: a dense ``[n, d]`` part and one ``[n]`` int32 id array per
categorical feature (user id, item id, country, genre, ...). Each categorical feature has an
embedding table (:class:`Table`: its vocabulary size and embedding width) that the tower
looks its ids up in (:mod:`towerjax.towers`), so a feature with 10^6 values costs ``[n]``
integers in the data, never an ``[n, 10^6]`` one-hot matrix.

:class:`Features` is a JAX pytree: the arrays are leaves (they gain a leading ``[S]`` axis
under ``vmap`` and are row-indexed by :func:`take`), the tables are static metadata. The
functions here treat a plain array and :class:`Features` alike, so code that indexes rows
(minibatches, validation splits, the logged items' features) is written once.

Id ``0`` of every table built by :mod:`towerjax.adapter` is the out-of-vocabulary bucket
(values unseen in training, rarer than its minimum count, or missing); a hashed feature
has no vocabulary and maps values to ``hash(value) mod size``.

References:
  Covington et al., *Deep Neural Networks for YouTube Recommendations*, RecSys 2016
  (embedded ids in the towers); the ``6 * size ** 0.25`` width rule of thumb is
  TensorFlow's feature-column guide.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError

__all__ = [
    "FeatureSpec",
    "Features",
    "Table",
    "default_embedding_dim",
    "example_input",
    "feature_spec",
    "nbytes",
    "num_rows",
    "spec_from_json",
    "spec_to_json",
    "take",
]

# The width rule of thumb is capped here: tables of 10^5+ rows dominate memory and
# the Adam update, and the towers' own width (TrainConfig.embedding_size) is 32.
MAX_DEFAULT_DIM = 32


def default_embedding_dim(size: int) -> int:
    """``min(32, max(2, round(6 * size ** 0.25)))``: the embedding width of a table of ``size`` ids."""
    return int(min(MAX_DEFAULT_DIM, max(2, round(6 * size**0.25))))


@dataclasses.dataclass(frozen=True)
class Table:
    """One categorical feature's embedding table: ``size`` ids (``[0, size)``), ``dim`` wide."""

    name: str
    size: int
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("tables", f"expected a non-empty string feature name, got {self.name!r}")
        for field in ("size", "dim"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(
                    f"tables[{self.name!r}].{field}", f"expected a positive integer, got {value!r}"
                )
            object.__setattr__(self, field, int(value))


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The static shape of a :class:`Features` input: ``dense`` columns and its ``tables``.

    Hashable; what :meth:`towerjax.towers.TwoTower.init` needs to build the parameters,
    and what a saved model stores to rebuild them (:meth:`to_dict` / :meth:`from_dict`).
    """

    dense: int
    tables: tuple[Table, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"dense": self.dense, "tables": [dataclasses.asdict(t) for t in self.tables]}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> FeatureSpec:
        try:
            return cls(int(saved["dense"]), tuple(Table(**t) for t in saved["tables"]))
        except (KeyError, TypeError) as err:
            raise InputError(
                "feature_spec", f"expected {{'dense': int, 'tables': [...]}}, got {saved!r}"
            ) from err

    def example(self, rows: int = 1) -> Features:
        """All-zero :class:`Features` of ``rows`` rows with this spec (for initialisation)."""
        return Features(
            dense=jnp.zeros((rows, self.dense), jnp.float32),
            ids={t.name: jnp.zeros((rows,), jnp.int32) for t in self.tables},
            tables=self.tables,
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Features:
    """Tower input with embedded categorical features.

    Attributes:
      dense: ``[n, d]`` float numeric columns (``d`` may be 0).
      ids: ``{name: [n] int32}``, one id array per table, ids in ``[0, table.size)``.
      tables: the :class:`Table` of each id array (static: not a pytree leaf).

    The plain constructor does no checking (it is what code under ``jit`` uses); build
    from user arrays with :meth:`from_arrays`.
    """

    dense: jax.Array
    ids: dict[str, jax.Array]
    tables: tuple[Table, ...] = dataclasses.field(default=(), metadata={"static": True})

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(self.dense.shape[-1], self.tables)

    @property
    def n_rows(self) -> int:
        return self.dense.shape[-2]

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the data's memory: ``O(n)`` per id column)."""
        return nbytes(self)

    @classmethod
    def from_arrays(
        cls,
        *,
        ids: Mapping[str, ArrayLike],
        sizes: Mapping[str, int],
        dense: ArrayLike | None = None,
        dims: Mapping[str, int] | None = None,
    ) -> Features:
        """Validates user arrays: ``ids`` ``{name: [n]}`` integers in ``[0, sizes[name])``,
        ``dense`` ``[n, d]`` finite floats (default: no dense columns), ``dims`` the
        embedding widths (default :func:`default_embedding_dim` of each size).

        Raises:
          InputError: naming the argument (``ids['user']``, ``dense``, ``sizes``) for a
            wrong rank or length, a non-integer id, an id out of range or a missing size.
        """
        dims = dict(dims or {})
        if not ids and dense is None:
            raise InputError("ids", "expected at least one id array or dense columns")
        unknown = set(dims) - set(ids)
        if unknown:
            raise InputError("dims", f"names {sorted(unknown)} are not id arrays (ids: {sorted(ids)})")
        n = None
        arrays, tables = {}, []
        for name, values in ids.items():
            where = f"ids[{name!r}]"
            values = np.asarray(values)
            if values.ndim != 1:
                raise InputError(where, f"expected a 1-d array of ids, got shape {values.shape}")
            if not np.issubdtype(values.dtype, np.integer):
                raise InputError(where, f"expected integer ids, got dtype {values.dtype}")
            if n is None:
                n = values.shape[0]
            elif values.shape[0] != n:
                raise InputError(where, f"expected {n} rows like the other id arrays, got {values.shape[0]}")
            if name not in sizes:
                raise InputError("sizes", f"expected a vocabulary size for {name!r}")
            size = sizes[name]
            bad = np.flatnonzero((values < 0) | (values >= size))
            if bad.size:
                raise InputError(where, f"expected ids in [0, {size}), got {values[bad[0]]} at row {bad[0]}")
            tables.append(Table(name, size, dims.get(name, default_embedding_dim(size))))
            arrays[name] = jnp.asarray(values, jnp.int32)
        if dense is None:
            dense = np.zeros((n, 0), np.float32)
        dense = np.asarray(dense, dtype=np.float32)
        if dense.ndim != 2:
            raise InputError("dense", f"expected a 2-d [n, d] array, got shape {dense.shape}")
        if n is not None and dense.shape[0] != n:
            raise InputError("dense", f"expected {n} rows like the id arrays, got {dense.shape[0]}")
        if not np.all(np.isfinite(dense)):
            raise InputError("dense", "expected finite values, got NaN or inf")
        return cls(dense=jnp.asarray(dense), ids=arrays, tables=tuple(tables))


def take(x: jax.Array | Features, rows: ArrayLike) -> jax.Array | Features:
    """Rows ``rows`` (indices of any shape, or a boolean mask) of an array or :class:`Features`."""
    return jax.tree.map(lambda leaf: leaf[rows], x)


def num_rows(x: jax.Array | Features) -> int:
    """Number of rows of an ``[..., n, d]`` array or of :class:`Features`."""
    return x.n_rows if isinstance(x, Features) else x.shape[-2]


def feature_spec(x: jax.Array | Features) -> int | FeatureSpec:
    """What initialises a tower for ``x``: the width ``d`` of an ``[n, d]`` array, or the
    :class:`FeatureSpec` of :class:`Features`."""
    return x.spec if isinstance(x, Features) else int(x.shape[-1])


def example_input(spec: int | FeatureSpec, rows: int = 1) -> jax.Array | Features:
    """All-zero input of ``rows`` rows for :func:`feature_spec`'s result (to initialise a tower)."""
    return spec.example(rows) if isinstance(spec, FeatureSpec) else jnp.zeros((rows, spec), jnp.float32)


def spec_to_json(spec: int | FeatureSpec) -> int | dict:
    """JSON form of :func:`feature_spec`'s result (an int stays an int)."""
    return spec.to_dict() if isinstance(spec, FeatureSpec) else int(spec)


def spec_from_json(saved: int | Mapping[str, Any]) -> int | FeatureSpec:
    """The inverse of :func:`spec_to_json`."""
    if isinstance(saved, Mapping):
        return FeatureSpec.from_dict(saved)
    if isinstance(saved, bool) or not isinstance(saved, (int, np.integer)):
        raise InputError("feature_spec", f"expected a width or a feature spec dict, got {saved!r}")
    return int(saved)


def nbytes(x: jax.Array | Features) -> int:
    """Bytes held by the arrays of ``x``."""
    return int(sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in jax.tree.leaves(x)))
