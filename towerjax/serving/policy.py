"""A trained two-tower policy over a fixed catalogue, ready to serve: :class:`SavedPolicy`.

``s(x, a) = <f(x), g(e_a)>`` scores item ``a`` for context ``x`` and the policy is
``softmax(s / tau)``. :class:`SavedPolicy` scores contexts (``scores``, ``log_probs``,
``action_dist``), retrieves items (``top_k``, ``explore``) and gives the embeddings an
approximate-nearest-neighbour index needs (``embed_items``, ``embed_contexts``).
:func:`search_top_k` is the one exact top-k search over embeddings, compiled once per
``k`` and chunk sizes. Either tower's input may be a dense ``[n, d]`` matrix or
:class:`~towerjax.features.Features` (dense columns plus integer ids looked up in the
tower's embedding tables). Saving and loading are :mod:`towerjax.serving.store`; the
serving files :mod:`towerjax.serving.export`.

Example:
  >>> import jax, numpy as np
  >>> from towerjax.training import TrainConfig
  >>> config = TrainConfig(hidden_sizes=(8,), embedding_size=4)
  >>> params = config.model.init(jax.random.key(0), 3, 2)
  >>> policy = SavedPolicy(config=config, params=params, item_features=np.eye(5, 2), item_ids=list("abcde"))
  >>> policy.scores(np.ones((2, 3))).shape
  (2, 5)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax import retrieval
from towerjax.behavior import init_behavior_head
from towerjax.checks import InputError
from towerjax.features import Features, FeatureSpec, feature_spec, num_rows, take
from towerjax.policy import log_policy
from towerjax.tables import FrameEncoding
from towerjax.towers import TwoTower
from towerjax.training.config import TrainConfig

__all__ = [
    "CONTEXT_CHUNK_SIZE",
    "SavedPolicy",
    "check_params",
    "param_template",
    "search_top_k",
]

# Contexts scored per compiled call: bounds the [chunk, A] scores and [chunk, H] activations.
CONTEXT_CHUNK_SIZE = 1024


@dataclasses.dataclass(frozen=True, eq=False)
class SavedPolicy:
    """A trained two-tower softmax policy over a fixed catalogue, ready to serve.

    ``s(x, a) = <f(x), g(e_a)>`` is the score of item ``a`` for context ``x`` (``f`` the
    context tower, ``g`` the item tower, ``e_a`` row ``a`` of ``item_features``) and the
    policy is ``pi(a|x) = softmax_a(s(x, a) / tau)`` with ``tau = config.temperature``.
    Built by :func:`~towerjax.serving.store.load_model`, or directly from a training run's parameters (validated
    here: shapes must match ``config``'s towers).

    Attributes:
      config: the :class:`~towerjax.training.config.TrainConfig` the towers were built and trained with.
      params: ``{"context": ..., "action": ...}`` (and ``"behavior"`` with
        ``estimate_propensities``) for one run, no leading seed axis.
      item_features: the item tower's input, one row per item in action order: ``[A, d_a]``
        or :class:`~towerjax.features.Features` (``LoggedData.action_context``).
      item_ids: ``[A]`` numpy array of the catalogue's ids (str or int) in the same order;
        ``None`` gives ``0..A-1``, or the encoding's ids when an encoding is given.
      encoding: how a table's columns became the context and item features
        (:class:`~towerjax.tables.FrameEncoding`), or ``None``.
      metadata: free-form JSON-ready information saved with the model.
      context_spec: the context tower's input (:func:`towerjax.features.feature_spec`): the
        dense width, or the :class:`~towerjax.features.FeatureSpec` of contexts with ids.
        ``None``: the encoding's :attr:`~towerjax.tables.FrameEncoding.context_spec`, else
        the dense width the parameters take (a tower with embedding tables needs one of these).
    """

    config: TrainConfig
    params: dict
    item_features: jax.Array | Features
    item_ids: np.ndarray | None = None
    encoding: FrameEncoding | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    context_spec: int | FeatureSpec | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.config, TrainConfig):
            raise InputError("config", f"expected a TrainConfig, got {type(self.config).__name__}")
        if self.encoding is not None and not isinstance(self.encoding, FrameEncoding):
            raise InputError(
                "encoding", f"expected a FrameEncoding or None, got {type(self.encoding).__name__}"
            )
        features = _check_item_features(self.item_features)
        n_items = num_rows(features)
        item_ids = self.item_ids
        if item_ids is None and self.encoding is not None:
            item_ids = self.encoding.item_ids
        item_ids = _check_item_ids(item_ids, n_items)
        if self.encoding is not None and list(self.encoding.item_ids) != item_ids.tolist():
            raise InputError("item_ids", "expected the encoding's item_ids, in the same order")
        context_spec = _context_spec(self.context_spec, self.encoding, self.params)
        params = check_params(
            self.params, self.config, context_spec, feature_spec(features), n_items, argument="params"
        )
        if not isinstance(self.metadata, dict):
            raise InputError("metadata", f"expected a dict, got {type(self.metadata).__name__}")
        object.__setattr__(self, "item_features", features)
        object.__setattr__(self, "item_ids", item_ids)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "context_spec", context_spec)

    # ----------------------------------------------------------------- shapes

    @property
    def model(self) -> TwoTower:
        """The towers (:attr:`TrainConfig.model`)."""
        return self.config.model

    @property
    def temperature(self) -> float:
        """``tau`` of the softmax policy."""
        return self.config.temperature

    @property
    def n_items(self) -> int:
        """``A``, the number of items."""
        return num_rows(self.item_features)

    @property
    def context_dim(self) -> int:
        """``d_x``, the number of dense context features (of ``Features.dense`` for contexts with ids)."""
        spec = self.context_spec
        return spec.dense if isinstance(spec, FeatureSpec) else int(spec)

    @property
    def item_spec(self) -> int | FeatureSpec:
        """The item tower's input (:func:`towerjax.features.feature_spec` of ``item_features``)."""
        return feature_spec(self.item_features)

    @property
    def embedding_size(self) -> int:
        """``D``, the size of both towers' embeddings."""
        return self.config.embedding_size

    # ---------------------------------------------------------------- scoring

    def embed_items(self) -> jax.Array:
        """``[A, D]`` item embeddings ``g(e_a)``, computed once and kept.

        An inner-product nearest-neighbour index over these rows, queried with
        :meth:`embed_contexts`, ranks items as :meth:`scores` does.
        """
        return self._item_embeddings

    @functools.cached_property
    def _item_embeddings(self) -> jax.Array:
        return _embed_items(self.model, self.params, self.item_features)

    def embed_contexts(self, context: Any, *, context_chunk_size: int = CONTEXT_CHUNK_SIZE) -> jax.Array:
        """``[n, d_x] -> [n, D]`` context embeddings ``f(x)``, ``context_chunk_size`` rows per call.

        ``embed_contexts(x) @ embed_items().T`` is :meth:`scores` ``(x)``.
        """
        context = self._check_context(context)
        return _map_rows(
            lambda rows: _embed_contexts(self.model, self.params, rows), context, context_chunk_size
        )

    def scores(self, context: Any, *, context_chunk_size: int = CONTEXT_CHUNK_SIZE) -> jax.Array:
        """``[n, d_x] -> [n, A]`` scores ``s(x_i, a) = <f(x_i), g(e_a)>`` of every item.

        Contexts are scored ``context_chunk_size`` rows per compiled call (the last chunk
        padded), so one compiled program serves any ``n``.
        """
        context = self._check_context(context)
        items = self.embed_items()
        return _map_rows(
            lambda rows: _scores(self.model, self.params, rows, items), context, context_chunk_size
        )

    def log_probs(self, context: Any, *, context_chunk_size: int = CONTEXT_CHUNK_SIZE) -> jax.Array:
        """``[n, A]`` ``log pi(a|x_i) = log_softmax(s(x_i, .) / tau)_a``."""
        return log_policy(self.scores(context, context_chunk_size=context_chunk_size), self.temperature)

    def action_dist(self, context: Any, *, context_chunk_size: int = CONTEXT_CHUNK_SIZE) -> np.ndarray:
        """``[n, A, 1]`` ``pi(a|x_i)`` as a float64 numpy array, Open Bandit Pipeline's
        ``action_dist`` layout (``len_list = 1``); each row sums to 1."""
        log_pi = np.asarray(self.log_probs(context, context_chunk_size=context_chunk_size), np.float64)
        pi = np.exp(log_pi)
        return (pi / pi.sum(axis=1, keepdims=True))[:, :, None]

    def top_k(
        self,
        context: Any,
        k: int,
        *,
        chunk_size: int | None = None,
        context_chunk_size: int | None = None,
    ) -> tuple[jax.Array, np.ndarray, jax.Array]:
        """The ``k`` highest-scoring items for each context, exactly (:func:`search_top_k`
        over :meth:`embed_contexts` and :meth:`embed_items`; ties go to the smaller item index).

        Args:
          context: ``[n, d_x]`` contexts.
          k: items per context, ``1 <= k <= A``.
          chunk_size: items scored per step of the exact chunked search (``None``: all at once).
          context_chunk_size: contexts per block (``None``: all at once).

        Returns:
          ``item_index [n, k]`` (int32 rows of ``item_features``), ``item_ids [n, k]``
          (numpy, the catalogue's ids) and ``scores [n, k]`` in decreasing order.
        """
        scores, index = search_top_k(
            self.embed_contexts(context),
            self.embed_items(),
            k,
            chunk_size=chunk_size,
            context_chunk_size=context_chunk_size,
        )
        return index, self.item_ids[np.asarray(index)], scores

    def explore(
        self,
        key: jax.Array,
        context: Any,
        k: int,
        *,
        m: int | None = None,
        k_deterministic: int = 0,
        temperature: float | None = None,
        chunk_size: int | None = None,
    ) -> tuple[jax.Array, np.ndarray]:
        """Boltzmann slates of ``k`` distinct items (:func:`towerjax.retrieval.boltzmann_slate`).

        The top ``k_deterministic`` items by score, then ``k - k_deterministic`` draws without
        replacement from ``softmax(s / temperature)`` over the rest of the top ``m``. The
        defaults (``m = A``, no deterministic slots, the policy's ``tau``) make the first
        item a draw from the policy ``pi(.|x)`` itself.

        Returns:
          ``item_index [n, k]`` (int32) and ``item_ids [n, k]`` (numpy).
        """
        index = retrieval.boltzmann_slate(
            key,
            self.embed_contexts(context),
            self.embed_items(),
            m=self.n_items if m is None else m,
            k=k,
            k_deterministic=k_deterministic,
            temperature=self.temperature if temperature is None else temperature,
            chunk_size=chunk_size,
        )
        return index, self.item_ids[np.asarray(index)]

    def _check_context(self, context: Any) -> jax.Array | Features:
        """``context`` as the context tower's input (a ``[n, d_x]`` float array of the towers'
        dtype, or :class:`~towerjax.features.Features` of :attr:`context_spec`), or InputError
        naming ``context``."""
        dtype = self.params["context"]["Dense_0"]["kernel"].dtype
        spec = self.context_spec
        if isinstance(spec, FeatureSpec):
            return _check_features(context, spec, dtype)
        if isinstance(context, Features):
            raise InputError(
                "context",
                f"expected a [n, {spec}] array (the towers embed no ids), got Features {context.spec}",
            )
        array = np.asarray(context)
        if array.ndim != 2 or array.shape[1] != spec:
            raise InputError("context", f"expected shape [n, {spec}], got {array.shape}")
        if array.dtype.kind not in "iuf":
            raise InputError("context", f"expected numbers, got dtype {array.dtype}")
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
        if bad.size:
            raise InputError("context", f"row {bad[0]} has a NaN or infinite value")
        return jnp.asarray(array, dtype=dtype)

    # ----------------------------------------------------------------- export

    def export(self, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Writes what a serving stack needs, without towerjax, into ``directory``
        (:func:`towerjax.serving.export.export_policy`: item embeddings, ids, the context
        tower's arrays, the encoding, ``score.py`` (numpy only: raw context rows to scores and
        top-k), ``export.json`` and a ``README.txt``).

        Returns:
          The directory's path.
        """
        # Imported here: the export writes files with towerjax.serving.store, which builds on this module.
        from towerjax.serving.export import export_policy

        return export_policy(self, directory, overwrite=overwrite)


# ------------------------------------------------------------------ checks


def _check_item_features(item_features: Any) -> np.ndarray | Features:
    """``[A, d_a]`` finite numbers as a float array, or :class:`~towerjax.features.Features`
    with finite dense columns and ids in range, or InputError naming ``item_features``."""
    if isinstance(item_features, Features):
        if num_rows(item_features) < 1:
            raise InputError("item_features", "expected at least one item")
        return _check_features(item_features, item_features.spec, jnp.float32, argument="item_features")
    try:
        features = np.asarray(item_features)
    except (TypeError, ValueError):
        raise InputError("item_features", "expected an [A, d_a] array of numbers") from None
    if features.ndim != 2 or features.shape[0] < 1:
        raise InputError("item_features", f"expected shape [A, d_a] with A >= 1, got {features.shape}")
    if features.dtype.kind not in "iuf":
        raise InputError("item_features", f"expected numbers, got dtype {features.dtype}")
    if features.dtype.kind != "f":
        features = features.astype(np.float32)
    if not np.isfinite(features).all():
        row = int(np.flatnonzero(~np.isfinite(features).all(axis=1))[0])
        raise InputError("item_features", f"row {row} has a NaN or infinite value")
    return jnp.asarray(features)


def _check_features(value: Any, spec: FeatureSpec, dtype: Any, *, argument: str = "context") -> Features:
    """``value`` as :class:`~towerjax.features.Features` of ``spec`` (dense of ``dtype``, int32
    ids), or InputError naming ``argument``: another spec, a NaN or an id out of range."""
    if not isinstance(value, Features):
        names = ", ".join(t.name for t in spec.tables)
        raise InputError(
            argument,
            f"expected Features with {spec.dense} dense columns and ids for {names} (the towers embed ids: "
            f"encode a table with the model's encoding, e.g. policy.encoding.encode_contexts(frame)), got "
            f"{type(value).__name__}",
        )
    if value.spec != spec:
        raise InputError(argument, f"expected Features of spec {spec}, got {value.spec}")
    dense = np.asarray(value.dense)
    n = dense.shape[0]
    bad = np.flatnonzero(~np.isfinite(dense).all(axis=1))
    if bad.size:
        raise InputError(argument, f"row {bad[0]} has a NaN or infinite value")
    ids = {}
    for table in spec.tables:
        column = np.asarray(value.ids[table.name])
        if column.shape != (n,) or column.dtype.kind not in "iu":
            raise InputError(
                argument, f"ids[{table.name!r}]: expected {n} integer ids, got {column.dtype} {column.shape}"
            )
        bad = np.flatnonzero((column < 0) | (column >= table.size))
        if bad.size:
            raise InputError(
                argument,
                f"ids[{table.name!r}]: row {bad[0]} is {column[bad[0]]}, expected an id in [0, {table.size})",
            )
        ids[table.name] = jnp.asarray(column, jnp.int32)
    return Features(dense=jnp.asarray(dense, dtype), ids=ids, tables=spec.tables)


def _context_spec(spec: Any, encoding: FrameEncoding | None, params: Any) -> int | FeatureSpec:
    """The context tower's input: ``spec`` checked, else the encoding's, else the dense width
    of ``params`` (InputError naming ``context_spec`` when the tower embeds ids)."""
    if spec is not None:
        if isinstance(spec, FeatureSpec):
            resolved = spec
        elif isinstance(spec, bool) or not isinstance(spec, int | np.integer) or spec < 0:
            raise InputError("context_spec", f"expected a FeatureSpec or a dense width, got {spec!r}")
        else:
            resolved = int(spec)
        if encoding is not None and encoding.context_spec != resolved:
            raise InputError(
                "context_spec",
                f"expected the encoding's context spec {encoding.context_spec}, got {resolved}",
            )
        return resolved
    if encoding is not None:
        return encoding.context_spec
    try:
        tower = params["context"]
        width = int(tower["Dense_0"]["kernel"].shape[-2])
    except (TypeError, KeyError, IndexError, AttributeError):
        raise InputError(
            "params", "expected the towers' parameters {'context': ..., 'action': ...} (TrainResult.params)"
        ) from None
    tables = sorted(k.removeprefix("embed_") for k in tower if str(k).startswith("embed_"))
    if tables:
        raise InputError(
            "context_spec",
            f"the context tower embeds ids ({', '.join(tables)}): pass context_spec (the FeatureSpec of "
            "the contexts, towerjax.features.feature_spec(data.context)) or the encoding",
        )
    return width


def _check_item_ids(item_ids: Any, n_items: int) -> np.ndarray:
    """``[A]`` distinct ids, all str (unicode array) or all int (int64), or InputError naming ``item_ids``."""
    if item_ids is None:
        return np.arange(n_items, dtype=np.int64)
    values = np.asarray(item_ids).tolist() if isinstance(item_ids, np.ndarray) else list(item_ids)
    if len(values) != n_items:
        raise InputError("item_ids", f"expected {n_items} ids (one per item_features row), got {len(values)}")
    if all(isinstance(v, str) for v in values):
        ids = np.asarray(values, dtype=str)
    elif all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in values):
        ids = np.asarray(values, dtype=np.int64)
    else:
        kinds = sorted({type(v).__name__ for v in values})
        raise InputError("item_ids", f"expected all strings or all integers, got {', '.join(kinds)}")
    unique, counts = np.unique(ids, return_counts=True)
    if unique.size != n_items:
        raise InputError("item_ids", f"id {unique[counts > 1][0].item()!r} appears more than once")
    return ids


def param_template(
    config: TrainConfig, context_spec: int | FeatureSpec, item_spec: int | FeatureSpec, n_items: int
) -> dict:
    """The parameters' structure, shapes and dtypes for ``config``'s towers (nothing computed).

    A pytree of ``jax.ShapeDtypeStruct``: ``{"context": ..., "action": ...}`` for contexts of
    ``context_spec`` and ``n_items`` items of ``item_spec``, and ``"behavior"`` with
    ``config.estimate_propensities``; the template :func:`towerjax.towers.params_from_bytes`
    restores saved parameters into.
    """

    def init():
        params = config.model.init(jax.random.key(0), context_spec, item_spec)
        if config.estimate_propensities:
            params["behavior"] = init_behavior_head(jax.random.key(0), n_items, config.embedding_size)
        return params

    return jax.eval_shape(init)


def check_params(
    params: Any,
    config: TrainConfig,
    context_spec: int | FeatureSpec,
    item_spec: int | FeatureSpec,
    n_items: int,
    *,
    argument: str,
) -> dict:
    """``params`` as device arrays, or InputError naming ``argument`` unless they match
    ``config``'s towers (:func:`param_template`) leaf by leaf."""
    template = param_template(config, context_spec, item_spec, n_items)
    expected = jax.tree_util.tree_flatten_with_path(template)[0]
    try:
        given = jax.tree_util.tree_flatten_with_path(params)[0]
        same_tree = jax.tree.structure(params) == jax.tree.structure(template)
    except TypeError:
        same_tree = False
    if not same_tree:
        raise InputError(
            argument,
            f"the parameters do not have the structure of config's towers (hidden_sizes="
            f"{config.hidden_sizes}, estimate_propensities={config.estimate_propensities}) for contexts "
            f"{context_spec} and items {item_spec}",
        )
    for (path, want), (_, leaf) in zip(expected, given, strict=True):
        shape = tuple(np.shape(leaf))
        if shape != want.shape:
            hint = (
                "; a train_seeds result has a leading seed axis: pass one seed's parameters"
                if shape[1:] == want.shape
                else ""
            )
            raise InputError(
                argument,
                f"{jax.tree_util.keystr(path)} has shape {shape}, expected {want.shape} for config's "
                f"towers, contexts {context_spec} and {n_items} items {item_spec}{hint}",
            )
    return jax.tree.map(jnp.asarray, params)


# ------------------------------------------------------------------ compiled pieces


@functools.partial(jax.jit, static_argnames=("k", "chunk_size", "context_chunk_size"))
def search_top_k(
    context_emb: ArrayLike,
    item_emb: ArrayLike,
    k: int,
    *,
    chunk_size: int | None = None,
    context_chunk_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The exact top-``k`` items by ``<f(x_i), g(e_a)>``, compiled once per ``k``, chunk sizes and shapes.

    :func:`towerjax.retrieval.top_k_items` under ``jit``: without ``chunk_size`` the
    ``lax.top_k`` of ``context_emb @ item_emb.T``; with it, items in chunks of ``chunk_size``
    merged into a running list; with ``context_chunk_size``, contexts in blocks. Ties go to
    the smaller item index.

    Args:
      context_emb: ``[n, D]`` context embeddings (:meth:`SavedPolicy.embed_contexts`).
      item_emb: ``[A, D]`` item embeddings (:meth:`SavedPolicy.embed_items`).
      k: items per context, ``1 <= k <= A``.
      chunk_size: items scored per step (``None``: all at once).
      context_chunk_size: contexts per block (``None``: all at once).

    Returns:
      ``scores [n, k]`` in decreasing order and ``item_index [n, k]`` (int32).

    Raises:
      InputError: naming ``k``, ``chunk_size``, ``context_chunk_size``, ``context_emb`` or ``item_emb``.
    """
    return retrieval.top_k_items(
        context_emb, item_emb, k, chunk_size=chunk_size, context_chunk_size=context_chunk_size
    )


@functools.partial(jax.jit, static_argnums=0)
def _embed_items(model: TwoTower, params: dict, item_features: jax.Array) -> jax.Array:
    return model.embed_actions(params, item_features)


@functools.partial(jax.jit, static_argnums=0)
def _embed_contexts(model: TwoTower, params: dict, context: jax.Array) -> jax.Array:
    return model.embed_context(params, context)


@functools.partial(jax.jit, static_argnums=0)
def _scores(model: TwoTower, params: dict, context: jax.Array, item_embeddings: jax.Array) -> jax.Array:
    return model.embed_context(params, context) @ item_embeddings.T


def _map_rows(fn, rows: jax.Array | Features, chunk_size: int) -> jax.Array:
    """``fn`` over ``rows`` (an array or :class:`~towerjax.features.Features`) in chunks of
    ``chunk_size`` (the last one zero-padded, so every call has one shape), concatenated; a
    single call when ``n <= chunk_size``."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError("context_chunk_size", f"expected a positive integer, got {chunk_size!r}")
    n = num_rows(rows)
    if n <= chunk_size:
        return fn(rows)
    pad = -n % chunk_size
    padded = jax.tree.map(lambda leaf: jnp.pad(leaf, [(0, pad)] + [(0, 0)] * (leaf.ndim - 1)), rows)
    parts = [fn(take(padded, slice(start, start + chunk_size))) for start in range(0, n + pad, chunk_size)]
    return jnp.concatenate(parts)[:n]
