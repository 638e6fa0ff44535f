"""Saved models on disk: :func:`save_model` writes a trained policy, :func:`load_model` reads it.

:func:`save_model` writes one directory::

    model/
      model.json       format, format version, towerjax version, creation time, shapes,
                       the kind of item ids, each file's size and sha256, your metadata
      config.json      TrainConfig.to_dict(): the architecture and how it was trained
      params.msgpack   the parameters {"context": ..., "action": ...}
                       (towerjax.towers.params_to_bytes: flax.serialization's msgpack)
      items.npz        item_features [A, d_a] (the item tower's dense input, in action
                       order), item_ids [A] (strings or ints: the catalogue's id of each
                       row) and, for embedded item features, item_feature_ids/<name> [A]
      encoding.json    how a table's columns became features (FrameEncoding), if given

``model.json`` stores both towers' input feature specs
(:func:`towerjax.features.spec_to_json`), from which the parameters' structure is rebuilt.
:func:`load_model` reads the directory back into a
:class:`~towerjax.serving.policy.SavedPolicy`.

A save is atomic (:func:`write_folder`, :func:`towerjax.outputs.replacing_folder`): the
files are written into a hidden temporary folder beside ``model/`` and renamed into place
once all are written, so an interrupted or failed save leaves the previous model as it was
(it still loads) and no half folder. A non-empty folder is replaced only with
``overwrite=True``. ``model.json`` lists each file's sha256, so files changed or mixed
afterwards never load: :func:`load_model` raises :class:`~towerjax.checks.InputError` naming
``model``. The export (:mod:`towerjax.serving.export`) is written the same way.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from towerjax import jsonio
from towerjax.checks import InputError
from towerjax.features import Features, FeatureSpec, spec_from_json, spec_to_json
from towerjax.outputs import replacing_folder, write_files
from towerjax.serving.policy import SavedPolicy, param_template
from towerjax.tables import ITEM_ID_FEATURE, FrameEncoding
from towerjax.towers import params_from_bytes, params_to_bytes
from towerjax.training.config import TrainConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_FILES",
    "file_digests",
    "load_model",
    "npy_bytes",
    "npz_bytes",
    "save_model",
    "towerjax_version",
    "utc_now",
    "write_folder",
]

FORMAT = "towerjax-model"
FORMAT_VERSION = 2  # 2: feature specs in model.json, embedded ids (1: dense inputs only)

_MANIFEST = "model.json"
_PARAMS, _CONFIG, _ITEMS, _ENCODING = "params.msgpack", "config.json", "items.npz", "encoding.json"
_MODEL_FILES = (_PARAMS, _CONFIG, _ITEMS, _ENCODING, _MANIFEST)
MODEL_FILES = (*_MODEL_FILES, "report.json", "curves.png")
"""The files towerjax writes into a model folder (``report.json`` and ``curves.png`` by
:func:`towerjax.own_logs.fit`): replaced by a new save; anything else there is kept."""


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
      directory: where to write (created if needed). A non-empty directory is refused
        unless ``overwrite=True``, which replaces the model there and keeps files towerjax
        did not write (:data:`MODEL_FILES`).
      params: one run's parameters (:attr:`TrainResult.params`; for :func:`train_seeds`'
        stacked result, one seed's: ``jax.tree.map(lambda a: a[i], result.params)``).
      config: the :class:`~towerjax.training.config.TrainConfig` they were trained with.
      item_ids: ``[A]`` the catalogue's ids (all str or all int) of the rows of
        ``item_features``; default the encoding's ids, else ``0..A-1``.
      item_features: the item tower's input the towers were trained with
        (``LoggedData.action_context``: ``[A, d_a]`` or
        :class:`~towerjax.features.Features`). ``None`` only with an ``encoding`` whose items
        are their id alone (no item feature columns): the item-id features ``1..A``.
      encoding: the :class:`~towerjax.tables.FrameEncoding` from
        :func:`~towerjax.tables.logged_data_from_frame`, to encode later tables the same way.
      metadata: JSON-ready information to keep in ``model.json`` (data source, metrics, ...).
      overwrite: replace the model in a non-empty ``directory``.
      context_spec: the context tower's input (:attr:`SavedPolicy.context_spec`); default
        the encoding's, else the dense width of the parameters.

    Returns:
      The directory's path.

    Raises:
      InputError: naming the argument that is wrong (shapes that do not match ``config``'s
        towers name ``params``), or ``directory`` (not writable, or not empty without
        ``overwrite``).
    """
    return write_folder(
        directory,
        model_files(
            params=params,
            config=config,
            item_ids=item_ids,
            item_features=item_features,
            encoding=encoding,
            metadata=metadata,
            context_spec=context_spec,
        ),
        overwrite=overwrite,
    )


def model_files(
    *,
    params: dict,
    config: TrainConfig,
    item_ids: Any = None,
    item_features: Any = None,
    encoding: FrameEncoding | None = None,
    metadata: dict | None = None,
    context_spec: int | FeatureSpec | None = None,
) -> dict[str, bytes]:
    """``{file name: bytes}`` of a saved model (:func:`save_model`'s arguments, checked)."""
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
        _PARAMS: params_to_bytes(jax.tree.map(np.asarray, policy.params)),
        _CONFIG: jsonio.dumps(config.to_dict(), indent=2).encode(),
        _ITEMS: npz_bytes(arrays),
    }
    if encoding is not None:
        files[_ENCODING] = _encoding_json(encoding).encode()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "towerjax_version": towerjax_version(),
        "created": utc_now(),
        "shapes": {
            "n_items": policy.n_items,
            "context_dim": policy.context_dim,
            "item_feature_dim": int(dense.shape[1]),
            "embedding_size": policy.embedding_size,
            "context_spec": spec_to_json(policy.context_spec),
            "item_spec": spec_to_json(policy.item_spec),
        },
        "item_ids": "str" if policy.item_ids.dtype.kind == "U" else "int",
        "files": file_digests(files),
        "metadata": metadata_json,
    }
    files[_MANIFEST] = jsonio.dumps(manifest, indent=2).encode()
    return files


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
    template = param_template(config, context_spec, item_spec, int(dense.shape[0]))
    try:
        params = params_from_bytes(template, contents[_PARAMS])
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


# ------------------------------------------------------------------ files


def write_folder(
    directory: str | os.PathLike,
    files: dict[str, bytes],
    *,
    overwrite: bool,
    own: Iterable[str] = MODEL_FILES,
    marker: str = _MANIFEST,
    argument: str = "directory",
) -> Path:
    """Writes ``files`` as the folder ``directory``, atomically
    (:func:`towerjax.outputs.replacing_folder`): a non-empty folder only with ``overwrite``,
    which replaces the names in ``own`` and keeps the rest; ``marker`` (the file that makes the
    folder loadable) goes in last. InputError naming ``argument`` for a folder that cannot be
    written or is not empty without ``overwrite``."""
    directory = Path(directory)
    with replacing_folder(
        directory, argument=argument, overwrite=overwrite, own=own, marker=marker
    ) as staging:
        write_files(staging, files)
    return directory


def file_digests(files: dict[str, bytes]) -> dict[str, dict]:
    """``{name: {"bytes": size, "sha256": hex digest}}`` of each file's bytes: a manifest's ``files``."""
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
            f"than this towerjax {towerjax_version()} reads ({FORMAT_VERSION}); upgrade towerjax",
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


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (``np.save``, no pickles)."""
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=False)
    return stream.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an uncompressed ``.npz`` file (``np.savez``), one entry per key."""
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def _encoding_json(encoding: FrameEncoding) -> str:
    """The encoding as strict JSON (:meth:`~towerjax.tables.FrameEncoding.to_dict`)."""
    try:
        return jsonio.dumps(encoding.to_dict(), indent=2)
    except (TypeError, ValueError) as err:
        raise InputError("encoding", f"cannot be written as JSON ({err})") from None


def towerjax_version() -> str:
    """This towerjax's version (``towerjax.__version__``), as manifests record it."""
    import towerjax  # the package imports this module: read its version at call time

    return towerjax.__version__


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second, as manifests record their creation."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
