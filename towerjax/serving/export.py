"""A saved policy's serving files: a folder that scores raw context rows without towerjax.

:func:`export_policy` (:meth:`SavedPolicy.export <towerjax.serving.policy.SavedPolicy.export>`)
writes one directory that stands alone::

    export/
      item_embeddings.npy    [A, D] float32: g(e_a), the item tower's embedding of each item
      item_ids.npy / .json   [A] the catalogue's id of each row (ints as .npy, strings as .json)
      context_tower.msgpack  the context tower's parameters (towerjax.towers.params_to_bytes)
      context_tower.npz      the same as plain arrays "Dense_i/kernel", "Dense_i/bias" and,
                             for contexts with ids, "embed_<name>/embedding" [size, width]
      encoding.json          how training encoded the columns (the model's FrameEncoding:
                             vocabularies, min counts, hash buckets, standardisation,
                             parsed text columns), for a policy trained from a table
      score.py               the recipe in plain numpy (towerjax.serving.recipe): encode raw
                             context rows, embed them, score, top-k, probabilities
      export.json            shapes, the temperature, the tower's input, embedding mode,
                             layers and activation, each file's sha256
      README.txt             how to use score.py, and the context tower's arithmetic in numpy

``s(x, a) = <f(x), item_embeddings[a]>`` and the policy is ``softmax(s / tau)``. The
context tower's first layer depends on ``embedding_mode`` (:class:`towerjax.towers.Tower`):
``"concat"`` looks each id up in its ``dim``-wide table and concatenates the rows with the
dense columns before ``Dense_0``; ``"sum"`` tables are as wide as ``Dense_0``'s output and
their rows are added to it, ``dense @ kernel + bias + sum_t E_t[id_t]``. The recipe and
``export.json`` say which. Written atomically like a saved model
(:func:`towerjax.serving.store.write_folder`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np

from towerjax import jsonio
from towerjax.checks import InputError
from towerjax.features import FeatureSpec, spec_to_json
from towerjax.outputs import check_output
from towerjax.serving.store import (
    FORMAT_VERSION,
    file_digests,
    npy_bytes,
    npz_bytes,
    towerjax_version,
    utc_now,
    write_folder,
)
from towerjax.towers import params_to_bytes

if TYPE_CHECKING:
    from towerjax.serving.policy import SavedPolicy

__all__ = ["EXPORT_FORMAT", "export_policy", "tower_layers"]

EXPORT_FORMAT = "towerjax-export"

_EXPORT_MANIFEST = "export.json"
_ENCODING = "encoding.json"
_RECIPE = "score.py"
_EXPORT_FILES = (
    "item_embeddings.npy",
    "item_ids.npy",
    "item_ids.json",
    "context_tower.msgpack",
    "context_tower.npz",
    _ENCODING,
    _RECIPE,
    "README.txt",
    _EXPORT_MANIFEST,
)
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


def export_policy(policy: SavedPolicy, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes what a serving stack needs, without towerjax, into ``directory``.

    The folder stands alone: ``score.py`` (numpy only) encodes raw context rows with
    ``encoding.json`` and reproduces :meth:`SavedPolicy.scores
    <towerjax.serving.policy.SavedPolicy.scores>` of the encoded rows and its top-k.
    Files (layout in the module docstring): ``item_embeddings.npy`` (``[A, D]`` float32,
    ``g(e_a)``), ``item_ids.npy`` (int ids) or ``item_ids.json`` (string ids),
    ``context_tower.msgpack`` (the context tower's parameters), ``context_tower.npz`` (the
    same as ``"Dense_i/kernel"``, ``"Dense_i/bias"`` arrays, and ``"embed_<name>/embedding"``
    for each id feature of contexts with ids: ``[size, dim]`` in ``"concat"`` mode,
    ``[size, H_0]`` (the first layer's width) in ``"sum"`` mode), ``export.json`` (shapes,
    the temperature, the tower's input, embedding mode, layers and activation, each file's
    sha256), ``encoding.json`` (the policy's :class:`~towerjax.tables.FrameEncoding`, when it has
    one), ``score.py`` (:mod:`towerjax.serving.recipe`) and ``README.txt`` (how to use
    ``score.py``, and the context embedding and the scores in numpy).
    ``s(x, a) = <f(x), item_embeddings[a]>``; the policy is ``softmax(s / tau)``. Written
    atomically like :func:`~towerjax.serving.store.save_model`; a non-empty directory
    needs ``overwrite=True``.

    Args:
      policy: the :class:`~towerjax.serving.policy.SavedPolicy` to export.
      directory: where to write (created if needed).
      overwrite: replace the export in a non-empty directory (files towerjax did not write are kept).

    Returns:
      The directory's path.

    Raises:
      InputError: naming ``directory``, ``params`` for a context tower of unexpected layers, or
        ``encoding`` for an encoding that cannot be written as JSON.
    """
    directory = check_output(directory, argument="directory", folder=True, overwrite=overwrite)
    tower = jax.tree.map(np.asarray, policy.params["context"])
    layers = tower_layers(tower)
    tables = policy.context_spec.tables if isinstance(policy.context_spec, FeatureSpec) else ()
    mode = policy.config.embedding_mode
    arrays = {f"{name}/{part}": tower[name][part] for name in layers for part in ("kernel", "bias")}
    arrays.update({f"embed_{t.name}/embedding": tower[f"embed_{t.name}"]["embedding"] for t in tables})
    files = {
        "item_embeddings.npy": npy_bytes(np.asarray(policy.embed_items(), np.float32)),
        "context_tower.msgpack": params_to_bytes(tower),
        "context_tower.npz": npz_bytes(arrays),
        _RECIPE: resources.files("towerjax.serving").joinpath("recipe.py").read_bytes(),
    }
    if policy.encoding is not None:
        try:
            files[_ENCODING] = jsonio.dumps(policy.encoding.to_dict(), indent=2).encode()
        except (TypeError, ValueError) as err:
            raise InputError("encoding", f"cannot be written as JSON ({err})") from None
    if policy.item_ids.dtype.kind == "U":
        ids_file = "item_ids.json"
        files[ids_file] = jsonio.dumps(policy.item_ids.tolist()).encode()
    else:
        ids_file = "item_ids.npy"
        files[ids_file] = npy_bytes(policy.item_ids)
    spec = {
        "format": EXPORT_FORMAT,
        "format_version": FORMAT_VERSION,
        "towerjax_version": towerjax_version(),
        "created": utc_now(),
        "n_items": policy.n_items,
        "context_dim": policy.context_dim,
        "embedding_size": policy.embedding_size,
        "temperature": policy.temperature,
        "item_ids": ids_file,
        "encoding": _ENCODING if policy.encoding is not None else None,
        "recipe": _RECIPE,
        "score": "s(x, a) = f(x) . item_embeddings[a] (inner product, [n, D] @ [D, A])",
        "policy": "pi(a|x) = softmax_a(s(x, a) / temperature)",
        "context_tower": {
            "input": _input_text(policy.context_dim, bool(tables), mode, policy.encoding is not None),
            "context_spec": spec_to_json(policy.context_spec),
            "embedding_mode": mode,
            "tables": [
                {
                    "name": t.name,
                    "embedding": f"embed_{t.name}/embedding",
                    "size": t.size,
                    # The table's width: Table.dim when concatenated, Dense_0's output when summed.
                    "dim": int(tower[f"embed_{t.name}"]["embedding"].shape[1]),
                }
                for t in tables
            ],
            "activation": policy.config.activation,
            "activation_formula": _ACTIVATION_FORMULAS[policy.config.activation],
            "layers": [
                {
                    "name": name,
                    "kernel": list(tower[name]["kernel"].shape),
                    "bias": list(tower[name]["bias"].shape),
                    "activation": None if i == len(layers) - 1 else policy.config.activation,
                }
                for i, name in enumerate(layers)
            ],
        },
    }
    files["README.txt"] = _export_readme(spec).encode()
    spec["files"] = file_digests(files)
    files[_EXPORT_MANIFEST] = jsonio.dumps(spec, indent=2).encode()
    return write_folder(directory, files, overwrite=overwrite, own=_EXPORT_FILES, marker=_EXPORT_MANIFEST)


def tower_layers(tower: dict) -> list[str]:
    """The layer names ``Dense_0 .. Dense_L`` of a tower's parameters, in order (the MLP's
    auto-names; ``embed_<name>`` tables left out), or InputError naming ``params``."""
    dense = sorted(k for k in tower if not str(k).startswith("embed_"))
    names = [f"Dense_{i}" for i in range(len(dense))]
    if dense != sorted(names):
        raise InputError("params", f"expected layers {names} in the context tower, got {dense}")
    return names


def _encoded_how(has_encoding: bool) -> str:
    """How the contexts are encoded: with this folder's ``encoding.json``, or as for training."""
    if has_encoding:
        return "encoded as in training by encoding.json in this folder (score.py: encode)"
    return "encoded as the training contexts were (the policy has no encoding.json: it was not trained from a table)"


def _input_text(context_dim: int, has_tables: bool, mode: str, has_encoding: bool) -> str:
    """``export.json``'s description of the context tower's input."""
    if not has_tables:
        return f"x [n, {context_dim}] float32, {_encoded_how(has_encoding)}"
    text = (
        f"dense [n, {context_dim}] float32 and one [n] int id array per table, {_encoded_how(has_encoding)}; "
    )
    if mode == "sum":
        return text + (
            "embedding_mode sum: each table is as wide as Dense_0's output and its rows are added to it, "
            "h = dense @ Dense_0/kernel + Dense_0/bias + sum of embed_<name>/embedding[ids] over the tables"
        )
    return text + "h = concat(dense, embed_<name>/embedding[ids] for each table in order)"


_USAGE = """Raw context rows, with numpy alone (score.py: no towerjax, jax or pandas needed):

  import importlib.util
  spec = importlib.util.spec_from_file_location("score", "EXPORT/score.py")
  score = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(score)
  policy = score.load("EXPORT")
  rows = {"column": [...], ...}               # the context columns: lists, numpy arrays or a DataFrame
  encoded = policy.encode(rows)               # dense [n, d] float32, ids {name: [n] int32}, unseen counts
  s = policy.scores(rows)                     # [n, A], as towerjax's SavedPolicy.scores / recommend
  index, ids, top = policy.top_k(rows, k=10)  # the k best items (ties to the smaller index)
  pi = policy.probabilities(rows)             # [n, A] softmax(s / temperature)

encode follows encoding.json as towerjax does: numeric columns dense (standardised with the
training mean and std where training standardised them; columns training parsed from text
are parsed again); categorical columns as vocabulary ids 1..V, or 1 + SipHash-2-4(text) mod B
for a hashed column (score.stable_hash equals towerjax.tables.stable_hash). A value not in the
vocabulary (unseen in training, or rarer than the column's min count) and a missing value get
the out-of-vocabulary id 0. A missing, non-finite or non-numeric value in a numeric column is
a ValueError naming the column and row.
"""
_USAGE_ENCODED = """Encoded contexts, with numpy alone (score.py: no towerjax, jax or pandas needed):
this policy was not trained from a table, so the export has no encoding.json; pass encoded
contexts to score.load("EXPORT").scores(score.Encoded(dense, ids, {})) (or a [n, d] array).
"""


def _export_readme(spec: dict) -> str:
    """``README.txt``: the files, the scores and the policy, and the context tower in numpy."""
    tower = spec["context_tower"]
    n_layers = len(tower["layers"])
    tables = tower["tables"]
    summed = bool(tables) and tower["embedding_mode"] == "sum"
    lines = []
    for i, layer in enumerate(tower["layers"]):
        source = "dense" if summed and i == 0 else "h"
        added = " + embed_<name>/embedding[ids_<name>] for each feature" if summed and i == 0 else ""
        then = f", then {layer['activation']}" if layer["activation"] else "  (no activation)"
        lines.append(
            f"  {layer['name']}: h = {source} @ kernel {layer['kernel']} + bias {layer['bias']}{added}{then}"
        )
    layers = "\n".join(lines)
    activation = _ACTIVATION_NUMPY[tower["activation"]]
    loop = (
        f"  for i in range({n_layers}):\n"
        '      h = h @ tower[f"Dense_{i}/kernel"] + tower[f"Dense_{i}/bias"]\n'
        f"      if i < {n_layers - 1}:\n"
        f"          h = {activation}"
    )
    if tables:
        listed = ", ".join(f"{t['name']} ({t['size']} ids, width {t['dim']})" for t in tables)
        names = ", ".join(repr(t["name"]) for t in tables)
        input_text = (
            f"The context is dense [n, {spec['context_dim']}] float32 features and one [n] integer id array per\n"
            f"embedded feature, in this order: {listed}; id 0 is the out-of-vocabulary bucket.\n"
        )
        arrays = '"Dense_i/kernel", "Dense_i/bias",\n                         "embed_<name>/embedding"'
        if summed:
            input_text += (
                "Embedding mode sum: each table is as wide as the first layer's output and its rows are\n"
                "ADDED to that output (a one-hot input times the first layer's kernel, by lookup):\n"
                "h = dense @ Dense_0/kernel + Dense_0/bias + sum of embed_<name>/embedding[ids_<name>]."
            )
            recipe = (
                '  h = dense.astype(np.float32) @ tower["Dense_0/kernel"] + tower["Dense_0/bias"]\n'
                f"  for name in ({names},):\n"
                '      h = h + tower[f"embed_{name}/embedding"][ids[name]]\n'
                f"  for i in range(1, {n_layers}):\n"
                f"      h = {activation}\n"
                '      h = h @ tower[f"Dense_{i}/kernel"] + tower[f"Dense_{i}/bias"]'
            )
        else:
            input_text += (
                "Embedding mode concat: the tower's input is\n"
                "h = concat(dense, embed_<name>/embedding[ids_<name>] for each feature)."
            )
            recipe = (
                "  h = np.concatenate([dense.astype(np.float32)] + [\n"
                f'      tower[f"embed_{{name}}/embedding"][ids[name]] for name in ({names},)], axis=1)\n'
            ) + loop
    else:
        input_text = f"The context is x of shape [n, d_x = {spec['context_dim']}]."
        recipe = "  h = x.astype(np.float32)\n" + loop
        arrays = '"Dense_i/kernel", "Dense_i/bias"'
    usage = _USAGE if spec["encoding"] is not None else _USAGE_ENCODED
    inputs = "dense, ids, _" if tables else "x, _, _"
    encoding_line = (
        "  encoding.json          how training encoded the context columns (vocabularies, hash buckets,\n"
        "                         standardisation, columns parsed from text)\n"
        if spec["encoding"] is not None
        else ""
    )
    return f"""A two-tower softmax policy exported by towerjax {spec["towerjax_version"]} ({spec["created"]}).

Shapes: {spec["n_items"]} items, dense context features d_x = {spec["context_dim"]}, embeddings D = {spec["embedding_size"]}.

  item_embeddings.npy    [A, D] float32: g(e_a), the item tower's embedding of each item
  {spec["item_ids"]:<22} [A] the catalogue's id of each row of item_embeddings.npy
  context_tower.msgpack  the context tower's parameters (flax.serialization.msgpack_restore)
  context_tower.npz      the same parameters as plain arrays {arrays}
{encoding_line}  score.py               the recipe below in plain numpy: encode raw rows, embed, score, top-k
  export.json            these shapes, the input, the layers, the temperature and each file's sha256

Scores and policy:
  s(x, a) = f(x) . item_embeddings[a]        (an inner product)
  pi(a|x) = softmax_a(s(x, a) / temperature), temperature = {spec["temperature"]}
An inner-product nearest-neighbour index over item_embeddings.npy, queried with f(x),
returns the items of highest s(x, a), which are the policy's most likely items.

{usage}
The context embedding f(x), for contexts {_encoded_how(spec["encoding"] is not None)}.
{input_text}
{layers}
  activation {tower["activation"]}: {tower["activation_formula"]}

The same in numpy, from the contexts as score.py's encode returns them ({inputs} = policy.encode(rows)).
In numpy:
  import numpy as np
  tower = np.load("context_tower.npz")
{recipe}
  scores = h @ np.load("item_embeddings.npy").T     # [n, A]
"""
