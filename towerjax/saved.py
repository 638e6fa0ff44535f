"""Saved models: a trained two-tower policy on disk, and :class:`SavedPolicy` to serve it.

:func:`save_model` writes one directory::

    model/
      model.json       format, format version, towerjax version, creation time, shapes,
                       the kind of item ids, each file's size and sha256, your metadata
      config.json      TrainConfig.to_dict(): the architecture and how it was trained
      params.msgpack   the parameters {"context": ..., "action": ...} (flax.serialization)
      items.npz        item_features [A, d_a] (the item tower's dense input, in action
                       order), item_ids [A] (strings or ints: the catalogue's id of each
                       row) and, for embedded item features, item_feature_ids/<name> [A]
      encoding.json    how a table's columns became features (FrameEncoding), if given

Either tower's input may be a dense ``[n, d]`` matrix or
:class:`~towerjax.features.Features` (dense columns plus integer ids looked up in the
tower's embedding tables); ``model.json`` stores both inputs' feature specs
(:func:`towerjax.features.spec_to_json`), from which the parameters' structure is rebuilt.

:func:`load_model` reads it back into a :class:`SavedPolicy`, whose methods score contexts
(``scores``, ``log_probs``, ``action_dist``), retrieve items (``top_k``, ``explore``) and
give the embeddings an approximate-nearest-neighbour index needs (``embed_items``,
``embed_contexts``); :meth:`SavedPolicy.export` writes those for a serving stack.

A save is atomic: every file is written under a temporary name first; then the old
``model.json`` is removed, the files are renamed into place and the new ``model.json``
is renamed in last. ``model.json`` lists each file's sha256, so a directory whose save was
interrupted (no ``model.json``, or files that do not match it) never loads: it raises
:class:`~towerjax.checks.InputError` naming ``model``.

Example:
  >>> import jax, numpy as np
  >>> from towerjax.train import TrainConfig
  >>> config = TrainConfig(hidden_sizes=(8,), embedding_size=4)
  >>> params = config.model.init(jax.random.key(0), 3, 2)
  >>> policy = SavedPolicy(config=config, params=params, item_features=np.eye(5, 2), item_ids=list("abcde"))
  >>> policy.scores(np.ones((2, 3))).shape
  (2, 5)
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from towerjax import jsonio, retrieval
from towerjax.adapter import ITEM_ID_FEATURE, FrameEncoding
from towerjax.behavior import init_behavior_head
from towerjax.checks import InputError
from towerjax.features import (
    Features,
    FeatureSpec,
    feature_spec,
    num_rows,
    spec_from_json,
    spec_to_json,
    take,
)
from towerjax.policy import log_policy
from towerjax.towers import TwoTower
from towerjax.train import TrainConfig

__all__ = [
    "EXPORT_FORMAT",
    "FORMAT",
    "FORMAT_VERSION",
    "SavedPolicy",
    "load_model",
    "save_model",
]

FORMAT = "towerjax-model"
EXPORT_FORMAT = "towerjax-export"
FORMAT_VERSION = 2  # 2: feature specs in model.json, embedded ids (1: dense inputs only)
# Contexts scored per compiled call: bounds the [chunk, A] scores and [chunk, H] activations.
CONTEXT_CHUNK_SIZE = 1024

_MANIFEST = "model.json"
_PARAMS, _CONFIG, _ITEMS, _ENCODING = "params.msgpack", "config.json", "items.npz", "encoding.json"
_MODEL_FILES = (_PARAMS, _CONFIG, _ITEMS, _ENCODING, _MANIFEST)
_EXPORT_MANIFEST = "export.json"
_EXPORT_FILES = (
    "item_embeddings.npy",
    "item_ids.npy",
    "item_ids.json",
    "context_tower.msgpack",
    "context_tower.npz",
    "README.txt",
    _EXPORT_MANIFEST,
)
_PARTIAL = ".partial"
_ACTIVATION_NUMPY = {
    "elu": "np.where(h > 0, h, np.expm1(h))",
    "relu": "np.maximum(h, 0)",
    "tanh": "np.tanh(h)",
}
_ACTIVATION_FORMULAS = {
    "elu": "h if h > 0 else exp(h) - 1  (numpy: np.where(h > 0, h, np.expm1(h)))",
    "relu": "max(h, 0)  (numpy: np.maximum(h, 0))",
    "tanh": "tanh(h)  (numpy: np.tanh(h))",
}


@dataclasses.dataclass(frozen=True, eq=False)
class SavedPolicy:
    """A trained two-tower softmax policy over a fixed catalogue, ready to serve.

    ``s(x, a) = <f(x), g(e_a)>`` is the score of item ``a`` for context ``x`` (``f`` the
    context tower, ``g`` the item tower, ``e_a`` row ``a`` of ``item_features``) and the
    policy is ``pi(a|x) = softmax_a(s(x, a) / tau)`` with ``tau = config.temperature``.
    Built by :func:`load_model`, or directly from a training run's parameters (validated
    here: shapes must match ``config``'s towers).

    Attributes:
      config: the :class:`~towerjax.train.TrainConfig` the towers were built and trained with.
      params: ``{"context": ..., "action": ...}`` (and ``"behavior"`` with
        ``estimate_propensities``) for one run, no leading seed axis.
      item_features: the item tower's input, one row per item in action order: ``[A, d_a]``
        or :class:`~towerjax.features.Features` (``LoggedData.action_context``).
      item_ids: ``[A]`` numpy array of the catalogue's ids (str or int) in the same order;
        ``None`` gives ``0..A-1``, or the encoding's ids when an encoding is given.
      encoding: how a table's columns became the context and item features
        (:class:`~towerjax.adapter.FrameEncoding`), or ``None``.
      metadata: free-form JSON-ready information saved with the model.
      context_spec: the context tower's input (:func:`towerjax.features.feature_spec`): the
        dense width, or the :class:`~towerjax.features.FeatureSpec` of contexts with ids.
        ``None``: the encoding's :attr:`~towerjax.adapter.FrameEncoding.context_spec`, else
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
        params = _check_params(
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
        """The ``k`` highest-scoring items for each context, exactly
        (:func:`towerjax.retrieval.top_k_items`; ties go to the smaller item index).

        Args:
          context: ``[n, d_x]`` contexts.
          k: items per context, ``1 <= k <= A``.
          chunk_size: items scored per step of the exact chunked search (``None``: all at once).
          context_chunk_size: contexts per block (``None``: all at once).

        Returns:
          ``item_index [n, k]`` (int32 rows of ``item_features``), ``item_ids [n, k]``
          (numpy, the catalogue's ids) and ``scores [n, k]`` in decreasing order.
        """
        scores, index = retrieval.top_k_items(
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
        """Writes what a serving stack needs, without towerjax, into ``directory``.

        Files: ``item_embeddings.npy`` (``[A, D]`` float32, ``g(e_a)``), ``item_ids.npy``
        (int ids) or ``item_ids.json`` (string ids), ``context_tower.msgpack`` (the context
        tower's parameters, ``flax.serialization``), ``context_tower.npz`` (the same as
        ``"Dense_i/kernel"``, ``"Dense_i/bias"`` arrays, and ``"embed_<name>/embedding"``
        ``[size, dim]`` for each id feature of contexts with ids), ``export.json`` (shapes,
        the temperature, the tower's input, layers and activation, each file's sha256) and
        ``README.txt`` (how to compute a context embedding and the scores in numpy).
        ``s(x, a) = <f(x), item_embeddings[a]>``; the policy is ``softmax(s / tau)``.
        Written atomically like :func:`save_model`; a non-empty directory that holds
        something other than an export needs ``overwrite=True``.

        Returns:
          The directory's path.
        """
        directory = _prepare_directory(
            directory, _EXPORT_FILES, _EXPORT_MANIFEST, EXPORT_FORMAT, overwrite=overwrite
        )
        tower = jax.tree.map(np.asarray, self.params["context"])
        layers = _tower_layers(tower)
        tables = self.context_spec.tables if isinstance(self.context_spec, FeatureSpec) else ()
        arrays = {f"{name}/{part}": tower[name][part] for name in layers for part in ("kernel", "bias")}
        arrays.update({f"embed_{t.name}/embedding": tower[f"embed_{t.name}"]["embedding"] for t in tables})
        files = {
            "item_embeddings.npy": _npy(np.asarray(self.embed_items(), np.float32)),
            "context_tower.msgpack": serialization.to_bytes(tower),
            "context_tower.npz": _npz(arrays),
        }
        if self.item_ids.dtype.kind == "U":
            ids_file, stale = "item_ids.json", "item_ids.npy"
            files[ids_file] = jsonio.dumps(self.item_ids.tolist()).encode()
        else:
            ids_file, stale = "item_ids.npy", "item_ids.json"
            files[ids_file] = _npy(self.item_ids)
        spec = {
            "format": EXPORT_FORMAT,
            "format_version": FORMAT_VERSION,
            "towerjax_version": _towerjax_version(),
            "created": _now(),
            "n_items": self.n_items,
            "context_dim": self.context_dim,
            "embedding_size": self.embedding_size,
            "temperature": self.temperature,
            "item_ids": ids_file,
            "score": "s(x, a) = f(x) . item_embeddings[a] (inner product, [n, D] @ [D, A])",
            "policy": "pi(a|x) = softmax_a(s(x, a) / temperature)",
            "context_tower": {
                "input": f"x [n, {self.context_dim}] float32, encoded as for training (encoding.json)"
                if not tables
                else f"dense [n, {self.context_dim}] float32 and one [n] int id array per table, encoded "
                "as for training (encoding.json); h = concat(dense, embed_<name>/embedding[ids] for each "
                "table in order)",
                "context_spec": spec_to_json(self.context_spec),
                "tables": [
                    {"name": t.name, "embedding": f"embed_{t.name}/embedding", "size": t.size, "dim": t.dim}
                    for t in tables
                ],
                "activation": self.config.activation,
                "activation_formula": _ACTIVATION_FORMULAS[self.config.activation],
                "layers": [
                    {
                        "name": name,
                        "kernel": list(tower[name]["kernel"].shape),
                        "bias": list(tower[name]["bias"].shape),
                        "activation": None if i == len(layers) - 1 else self.config.activation,
                    }
                    for i, name in enumerate(layers)
                ],
            },
        }
        files["README.txt"] = _export_readme(spec).encode()
        spec["files"] = _file_digests(files)
        files[_EXPORT_MANIFEST] = jsonio.dumps(spec, indent=2).encode()
        _commit_files(directory, files, _EXPORT_MANIFEST, stale=[stale])
        return directory


# ------------------------------------------------------------------ save and load


def save_model(
    directory: str | os.PathLike,
    *,
    params: dict,
    config: TrainConfig,
    item_ids: Any = None,
    item_features: Any = None,
    encoding: FrameEncoding | None = None,
    metadata: dict | None = None,
    overwrite: bool = False,
    context_spec: int | FeatureSpec | None = None,
) -> Path:
    """Saves a trained policy to ``directory`` (created if needed; layout in the module docstring).

    Args:
      directory: where to write. An existing towerjax model there is replaced; a non-empty
        directory holding anything else is refused unless ``overwrite=True`` (which writes
        the model's files into it and leaves other files alone).
      params: one run's parameters (:attr:`TrainResult.params`; for :func:`train_seeds`'
        stacked result, one seed's: ``jax.tree.map(lambda a: a[i], result.params)``).
      config: the :class:`~towerjax.train.TrainConfig` they were trained with.
      item_ids: ``[A]`` the catalogue's ids (all str or all int) of the rows of
        ``item_features``; default the encoding's ids, else ``0..A-1``.
      item_features: the item tower's input the towers were trained with
        (``LoggedData.action_context``: ``[A, d_a]`` or
        :class:`~towerjax.features.Features`). ``None`` only with an ``encoding`` whose items
        are their id alone (no item feature columns): the item-id features ``1..A``.
      encoding: the :class:`~towerjax.adapter.FrameEncoding` from
        :func:`~towerjax.adapter.logged_data_from_frame`, to encode later tables the same way.
      metadata: JSON-ready information to keep in ``model.json`` (data source, metrics, ...).
      overwrite: write into a non-empty directory that is not a towerjax model.
      context_spec: the context tower's input (:attr:`SavedPolicy.context_spec`); default
        the encoding's, else the dense width of the parameters.

    Returns:
      The directory's path.

    Raises:
      InputError: naming the argument that is wrong (shapes that do not match ``config``'s
        towers name ``params``), or ``directory``.
    """
    if item_features is None:
        item_features = _id_only_items(encoding)
    policy = SavedPolicy(
        config=config,
        params=params,
        item_features=item_features,
        item_ids=item_ids,
        encoding=encoding,
        metadata={} if metadata is None else metadata,
        context_spec=context_spec,
    )
    try:
        metadata_json = json.loads(jsonio.dumps(policy.metadata))
    except (TypeError, ValueError) as err:
        raise InputError("metadata", f"expected JSON-ready values: {err}") from None
    features = policy.item_features
    dense = features.dense if isinstance(features, Features) else features
    arrays = {"item_features": np.asarray(dense), "item_ids": policy.item_ids}
    if isinstance(features, Features):
        arrays.update({f"item_feature_ids/{name}": np.asarray(ids) for name, ids in features.ids.items()})
    files = {
        _PARAMS: serialization.to_bytes(jax.tree.map(np.asarray, policy.params)),
        _CONFIG: jsonio.dumps(config.to_dict(), indent=2).encode(),
        _ITEMS: _npz(arrays),
    }
    if encoding is not None:
        files[_ENCODING] = _encoding_json(encoding).encode()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "towerjax_version": _towerjax_version(),
        "created": _now(),
        "shapes": {
            "n_items": policy.n_items,
            "context_dim": policy.context_dim,
            "item_feature_dim": int(dense.shape[1]),
            "embedding_size": policy.embedding_size,
            "context_spec": spec_to_json(policy.context_spec),
            "item_spec": spec_to_json(policy.item_spec),
        },
        "item_ids": "str" if policy.item_ids.dtype.kind == "U" else "int",
        "files": _file_digests(files),
        "metadata": metadata_json,
    }
    files[_MANIFEST] = jsonio.dumps(manifest, indent=2).encode()
    directory = _prepare_directory(directory, _MODEL_FILES, _MANIFEST, FORMAT, overwrite=overwrite)
    _commit_files(directory, files, _MANIFEST, stale=[] if encoding is not None else [_ENCODING])
    return directory


def load_model(directory: str | os.PathLike) -> SavedPolicy:
    """Loads a model written by :func:`save_model`.

    The files are checked against ``model.json`` (present, same sha256), the format version
    against this towerjax's, and the parameters are restored into the structure of
    ``config``'s towers for the stored feature specs (format version 1: dense widths).

    Raises:
      InputError: naming ``model``, saying which file is missing or wrong.
    """
    directory = Path(directory)
    if not directory.is_dir():
        what = "not a directory" if directory.exists() else "no such directory"
        raise InputError("model", f"{directory}: {what}")
    manifest = _read_manifest(directory)
    contents = _read_listed_files(directory, manifest)

    def fail(name: str, message: str):
        return InputError("model", f"{directory / name}: {message}")

    try:
        config = TrainConfig.from_dict(json.loads(contents[_CONFIG]))
    except (ValueError, TypeError) as err:  # InputError is a ValueError, as is bad JSON
        raise fail(_CONFIG, f"not a valid TrainConfig ({err})") from None
    shapes = manifest.get("shapes", {})
    try:
        context_spec = spec_from_json(shapes.get("context_spec", shapes.get("context_dim")))
        item_spec = spec_from_json(shapes.get("item_spec", shapes.get("item_feature_dim")))
    except InputError as err:
        raise fail(_MANIFEST, f"expected shapes.context_spec and shapes.item_spec ({err.message})") from None
    if isinstance(context_spec, int) and context_spec < 1:
        raise fail(_MANIFEST, f"expected shapes.context_dim, a positive integer, got {context_spec!r}")
    try:
        with np.load(io.BytesIO(contents[_ITEMS]), allow_pickle=False) as items:
            dense, item_ids = items["item_features"], items["item_ids"]
            tables = item_spec.tables if isinstance(item_spec, FeatureSpec) else ()
            item_id_arrays = {t.name: items[f"item_feature_ids/{t.name}"] for t in tables}
    except (ValueError, KeyError, OSError) as err:
        raise fail(
            _ITEMS, f"expected arrays item_features, item_ids and the item feature ids ({err})"
        ) from None
    if dense.ndim != 2 or list(dense.shape) != [shapes.get("n_items"), shapes.get("item_feature_dim")]:
        raise fail(_ITEMS, f"item_features has shape {dense.shape}, model.json says {shapes}")
    item_features = dense
    if isinstance(item_spec, FeatureSpec):
        try:
            item_features = Features.from_arrays(
                ids=item_id_arrays,
                sizes={t.name: t.size for t in item_spec.tables},
                dense=dense,
                dims={t.name: t.dim for t in item_spec.tables},
            )
        except InputError as err:
            raise fail(_ITEMS, f"item feature ids do not match model.json's item_spec ({err})") from None
    template = _param_template(config, context_spec, item_spec, int(dense.shape[0]))
    try:
        params = serialization.from_bytes(template, contents[_PARAMS])
    except Exception as err:  # msgpack and flax raise many types for bad bytes
        raise fail(_PARAMS, f"cannot restore the parameters for config.json's towers ({err})") from None
    encoding = None
    if _ENCODING in contents:
        try:
            encoding = FrameEncoding.from_dict(json.loads(contents[_ENCODING]))
        except (ValueError, TypeError) as err:
            raise fail(_ENCODING, f"not a valid FrameEncoding ({err})") from None
    try:
        return SavedPolicy(
            config=config,
            params=params,
            item_features=item_features,
            item_ids=item_ids,
            encoding=encoding,
            metadata=manifest.get("metadata") or {},
            context_spec=context_spec,
        )
    except InputError as err:
        raise InputError("model", f"{directory}: {err}") from None


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


def _param_template(
    config: TrainConfig, context_spec: int | FeatureSpec, item_spec: int | FeatureSpec, n_items: int
) -> dict:
    """The parameters' structure, shapes and dtypes for ``config``'s towers (nothing computed)."""

    def init():
        params = config.model.init(jax.random.key(0), context_spec, item_spec)
        if config.estimate_propensities:
            params["behavior"] = init_behavior_head(jax.random.key(0), n_items, config.embedding_size)
        return params

    return jax.eval_shape(init)


def _check_params(
    params: Any,
    config: TrainConfig,
    context_spec: int | FeatureSpec,
    item_spec: int | FeatureSpec,
    n_items: int,
    *,
    argument: str,
) -> dict:
    """``params`` as device arrays, or InputError unless they match ``config``'s towers leaf by leaf."""
    template = _param_template(config, context_spec, item_spec, n_items)
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


def _id_only_items(encoding: FrameEncoding | None) -> Features:
    """The item-id features ``1..A`` of an encoding whose items are their id alone, else
    InputError naming ``item_features``."""
    if (
        encoding is None
        or encoding.item_feature_columns
        or encoding.item_id_dim is None
        or encoding.item_id_vocabulary is not None
    ):
        raise InputError(
            "item_features",
            "expected the item tower's input the towers were trained with (LoggedData.action_context)",
        )
    n = encoding.n_actions
    return Features.from_arrays(
        ids={ITEM_ID_FEATURE: np.arange(1, n + 1)},
        sizes={ITEM_ID_FEATURE: n + 1},
        dense=np.zeros((n, 0), np.float32),
        dims={ITEM_ID_FEATURE: encoding.item_id_dim},
    )


def _tower_layers(tower: dict) -> list[str]:
    """The tower's layer names ``Dense_0 .. Dense_L`` in order (the MLP's auto-names)."""
    dense = sorted(k for k in tower if not str(k).startswith("embed_"))
    names = [f"Dense_{i}" for i in range(len(dense))]
    if dense != sorted(names):
        raise InputError("params", f"expected layers {names} in the context tower, got {dense}")
    return names


# ------------------------------------------------------------------ files


def _prepare_directory(
    directory: str | os.PathLike, own: Iterable[str], marker: str, format: str, *, overwrite: bool
) -> Path:
    """Creates ``directory``, or checks that it is empty, holds only files named ``own``
    (an earlier save, complete or not) or carries ``marker`` of ``format``; else
    InputError naming ``directory`` unless ``overwrite``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError("directory", f"{directory} is a file, expected a directory")
    if directory.is_dir() and not overwrite:
        own = set(own)
        entries = sorted(p.name for p in directory.iterdir())
        foreign = [n for n in entries if n not in own and not (n.startswith(".") and n.endswith(_PARTIAL))]
        if foreign and _marker_format(directory / marker) != format:
            listed = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise InputError(
                "directory",
                f"{directory} is not empty and is not a {format} ({listed}); "
                "pass overwrite=True to write into it anyway",
            )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _marker_format(path: Path) -> str | None:
    try:
        payload = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return payload.get("format") if isinstance(payload, dict) else None


def _rename(source: Path, target: Path) -> None:
    """``os.replace``: atomic on one filesystem (a seam for the interrupted-save tests)."""
    os.replace(source, target)


def _commit_files(
    directory: Path, files: dict[str, bytes], marker: str, *, stale: Iterable[str] = ()
) -> None:
    """Writes ``files`` into ``directory`` so that an interruption never leaves a loadable mix.

    Every file goes to a temporary name and is flushed to disk; then the old ``marker`` is
    removed (from here on the directory is not loadable), the ``stale`` files of an earlier
    save are removed, the files are renamed into place, and ``marker`` is renamed in last.
    Temporary files are removed whatever happens.
    """
    token = uuid.uuid4().hex[:8]
    temporary: dict[str, Path] = {}
    try:
        for name, content in files.items():
            path = directory / f".{name}.{token}{_PARTIAL}"
            temporary[name] = path
            with open(path, "wb") as stream:
                stream.write(content)
                stream.flush()
                os.fsync(stream.fileno())
        (directory / marker).unlink(missing_ok=True)
        for name in stale:
            (directory / name).unlink(missing_ok=True)
        for name, path in temporary.items():
            if name != marker:
                _rename(path, directory / name)
        _rename(temporary[marker], directory / marker)
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)


def _file_digests(files: dict[str, bytes]) -> dict[str, dict]:
    return {
        name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()
    }


def _read_manifest(directory: Path) -> dict:
    """``model.json``, checked for the format and version, or InputError naming ``model``."""
    path = directory / _MANIFEST
    if not path.is_file():
        raise InputError(
            "model", f"{path} is missing: {directory} is not a towerjax model, or its save was interrupted"
        )
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise InputError("model", f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError("model", f"{path}: expected format {FORMAT!r}, not a towerjax model")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError("model", f"{path}: expected a format_version >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise InputError(
            "model",
            f"{path}: format version {version} (towerjax {manifest.get('towerjax_version')}) is newer "
            f"than this towerjax {_towerjax_version()} reads ({FORMAT_VERSION}); upgrade towerjax",
        )
    files = manifest.get("files")
    required = (_PARAMS, _CONFIG, _ITEMS)
    if not isinstance(files, dict) or not all(name in files for name in required):
        raise InputError("model", f"{path}: expected 'files' listing {', '.join(required)}")
    return manifest


def _read_listed_files(directory: Path, manifest: dict) -> dict[str, bytes]:
    """The bytes of each file ``model.json`` lists, checked against its size and sha256."""
    contents = {}
    for name, entry in manifest["files"].items():
        if name not in _MODEL_FILES or name == _MANIFEST:
            raise InputError("model", f"{directory / _MANIFEST}: lists an unknown file {name!r}")
        path = directory / name
        if not path.is_file():
            raise InputError("model", f"{path} is missing (listed in model.json)")
        data = path.read_bytes()
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if hashlib.sha256(data).hexdigest() != digest:
            raise InputError(
                "model",
                f"{path} does not match model.json's sha256: the file was changed, or a save was interrupted",
            )
        contents[name] = data
    return contents


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def _encoding_json(encoding: FrameEncoding) -> str:
    """The encoding as strict JSON (:meth:`~towerjax.adapter.FrameEncoding.to_dict`)."""
    try:
        return jsonio.dumps(encoding.to_dict(), indent=2)
    except (TypeError, ValueError) as err:
        raise InputError("encoding", f"cannot be written as JSON ({err})") from None


def _towerjax_version() -> str:
    from towerjax import __version__  # the package imports this module: read it at call time

    return __version__


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _export_readme(spec: dict) -> str:
    tower = spec["context_tower"]
    layers = "\n".join(
        f"  {layer['name']}: h = h @ kernel {layer['kernel']} + bias {layer['bias']}"
        + (f", then {layer['activation']}" if layer["activation"] else "  (no activation)")
        for layer in tower["layers"]
    )
    tables = tower["tables"]
    if tables:
        listed = ", ".join(f"{t['name']} ({t['size']} ids, dim {t['dim']})" for t in tables)
        input_text = (
            f"The context is dense [n, {spec['context_dim']}] float32 features and one [n] integer id array per\n"
            f"embedded feature, in this order: {listed}; id 0 is the out-of-vocabulary bucket.\n"
            "The tower's input is h = concat(dense, embed_<name>/embedding[ids_<name>] for each feature)."
        )
        first = "  h = np.concatenate([dense.astype(np.float32)] + [\n"
        first += '      tower[f"embed_{name}/embedding"][ids[name]] for name in ('
        first += ", ".join(repr(t["name"]) for t in tables) + ",)], axis=1)"
        arrays = '"Dense_i/kernel", "Dense_i/bias",\n                         "embed_<name>/embedding"'
    else:
        input_text = f"The context is x of shape [n, d_x = {spec['context_dim']}]."
        first = "  h = x.astype(np.float32)"
        arrays = '"Dense_i/kernel", "Dense_i/bias"'
    return f"""A two-tower softmax policy exported by towerjax {spec["towerjax_version"]} ({spec["created"]}).

Shapes: {spec["n_items"]} items, dense context features d_x = {spec["context_dim"]}, embeddings D = {spec["embedding_size"]}.

  item_embeddings.npy    [A, D] float32: g(e_a), the item tower's embedding of each item
  {spec["item_ids"]:<22} [A] the catalogue's id of each row of item_embeddings.npy
  context_tower.msgpack  the context tower's parameters (flax.serialization.msgpack_restore)
  context_tower.npz      the same parameters as plain arrays {arrays}
  export.json            these shapes, the input, the layers, the temperature and each file's sha256

Scores and policy:
  s(x, a) = f(x) . item_embeddings[a]        (an inner product)
  pi(a|x) = softmax_a(s(x, a) / temperature), temperature = {spec["temperature"]}
An inner-product nearest-neighbour index over item_embeddings.npy, queried with f(x),
returns the items of highest s(x, a), which are the policy's most likely items.

The context embedding f(x), for contexts encoded as in training (encoding.json).
{input_text}
{layers}
  activation {tower["activation"]}: {tower["activation_formula"]}

In numpy:
  import numpy as np
  tower = np.load("context_tower.npz")
{first}
  for i in range({len(tower["layers"])}):
      h = h @ tower[f"Dense_{{i}}/kernel"] + tower[f"Dense_{{i}}/bias"]
      if i < {len(tower["layers"]) - 1}:
          h = {_ACTIVATION_NUMPY[tower["activation"]]}
  scores = h @ np.load("item_embeddings.npy").T     # [n, A]
"""


# ------------------------------------------------------------------ compiled pieces


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
