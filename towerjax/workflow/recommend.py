"""Policies out: each context's top ``k`` items (or Boltzmann slates) as a table, and the
serving files of a saved model.

:func:`recommend` encodes a table of contexts with the model's encoding and asks the saved
policy for its lists; :func:`export` writes what a serving stack needs
(:meth:`towerjax.serving.SavedPolicy.export`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.checks import InputError, check_positive_int
from towerjax.features import num_rows, take
from towerjax.serving import SavedPolicy, load_model
from towerjax.workflow.fit import FitResult
from towerjax.workflow.io import (
    Progress,
    check_output_table,
    encode_contexts,
    load_policy,
    n_rows,
    read_table,
    require_columns,
    say_to,
    source_label,
    write_table,
)

__all__ = [
    "CONTEXT_CHUNK_SIZE",
    "ITEM_CHUNK_SIZE",
    "PROBABILITY_CHUNK_ELEMENTS",
    "Recommendations",
    "export",
    "policy_probabilities",
    "recommend",
]

ITEM_CHUNK_SIZE = 8192
"""Items scored per step of the exact top-k search."""

CONTEXT_CHUNK_SIZE = 1024
"""Contexts per block of the exact top-k search."""

PROBABILITY_CHUNK_ELEMENTS = 2**24
"""The most ``[contexts, A]`` log-probabilities held at once by :func:`policy_probabilities`."""


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """What :func:`recommend` returns.

    Attributes:
      table: a pandas DataFrame, one row per context: ``row`` (its position in the
        contexts table), the kept columns, then ``item_1, score_1, ..., item_k, score_k``
        (with ``probabilities``, ``probability_j`` after each ``score_j``).
      item_index: ``[n, k]`` rows of the catalogue.
      item_ids: ``[n, k]`` the catalogue's ids.
      scores: ``[n, k]`` the scores ``s(x_i, a)`` (decreasing for top-k; slate order for
        ``explore``).
      unseen_rows: rows with a value not in the training vocabulary (an unseen id, a value
        rarer than its ``min_count``, or a missing one), given the out-of-vocabulary id 0.
      unseen_columns: those rows per column.
      explore: whether the lists are Boltzmann slates.
      probabilities: ``[n, k]`` the policy's ``pi(a|x_i)`` of each listed item (a softmax
        over the whole catalogue), or ``None`` (not asked for).
    """

    table: Any
    item_index: np.ndarray
    item_ids: np.ndarray
    scores: np.ndarray
    unseen_rows: int
    unseen_columns: dict
    explore: bool
    probabilities: np.ndarray | None = None


def recommend(
    model: Any,
    contexts: Any,
    *,
    k: int,
    explore: bool = False,
    seed: int = 0,
    keep_columns: Sequence[Hashable] = (),
    probabilities: bool = False,
    out: str | os.PathLike | None = None,
    progress: Progress = None,
) -> Recommendations:
    """The top ``k`` items of a saved policy for each context row (or Boltzmann slates).

    Contexts are encoded with the model's encoding: a value not in the training vocabulary
    (a new user id) gets the out-of-vocabulary id 0 and the rows are counted in
    ``unseen_rows``, never an error. The top ``k`` is
    exact (:func:`~towerjax.retrieval.top_k_items`, chunked over items and contexts, ties to
    the smaller item index). ``explore=True`` draws slates of ``k`` distinct items from the
    policy ``softmax(s / tau)`` instead (:meth:`~towerjax.serving.SavedPolicy.explore`, key
    from ``seed``). ``probabilities=True`` adds each listed item's probability under the
    policy, ``pi(a|x) = softmax(s(x, .) / tau)_a`` over the whole catalogue
    (:func:`policy_probabilities`).

    Args:
      model: a model directory, a :class:`~towerjax.serving.SavedPolicy` or a
        :class:`~towerjax.workflow.fit.FitResult`.
      contexts: the contexts (path or table) with the model's context columns.
      k: items per row, ``1 <= k <= A``.
      explore: Boltzmann slates instead of the top ``k``.
      seed: root seed of the slates' draws.
      keep_columns: columns of ``contexts`` copied into the output (e.g. a user id).
      probabilities: add the column ``probability_j`` of ``pi(a|x)`` after each ``score_j``.
      out: a ``.csv`` / ``.parquet`` file to write the table to.
      progress: called with one line per step.

    Raises:
      InputError: naming ``model``, ``contexts``, ``k``, ``keep_columns`` or ``out``.
    """
    import pandas as pd

    say = say_to(progress)
    policy = load_policy(model.policy if isinstance(model, FitResult) else model)
    k = check_positive_int("k", k)
    if k > policy.n_items:
        raise InputError("k", f"expected at most the model's {policy.n_items} items, got {k}")
    if out is not None:
        check_output_table(out, argument="out")
    label = source_label(contexts, "contexts")
    frame = read_table(contexts, argument="contexts")
    keep_columns = [keep_columns] if isinstance(keep_columns, str) else list(keep_columns)
    require_columns(frame, keep_columns, argument="keep_columns", where=label)
    context, unseen, unseen_rows = encode_contexts(policy.encoding, frame, argument="contexts", label=label)
    n = n_rows(frame, policy.encoding.context_columns[0])
    say(
        f"{'sampling slates' if explore else 'top'} {k} of {policy.n_items} items for {n} contexts from {label}"
    )
    if unseen_rows:
        say(
            f"  {unseen_rows} row(s) had a value not in the training vocabulary, given the out-of-vocabulary "
            "id 0: " + ", ".join(f"{c!s} {r}" for c, r in unseen.items())
        )
    if explore:
        index, _ = policy.explore(jax.random.key(seed), context, k)
        index = np.asarray(index)
        scores = np.asarray(
            jnp.einsum("nd,nkd->nk", policy.embed_contexts(context), policy.embed_items()[index])
        )
    else:
        index, _, scores = policy.top_k(
            context,
            k,
            chunk_size=min(ITEM_CHUNK_SIZE, policy.n_items),
            context_chunk_size=CONTEXT_CHUNK_SIZE if n > CONTEXT_CHUNK_SIZE else None,
        )
        scores, index = np.asarray(scores), np.asarray(index)
    ids = policy.item_ids[index]
    pi = policy_probabilities(policy, context, index) if probabilities else None
    columns: dict[str, Any] = {"row": np.arange(n)}
    for column in keep_columns:
        columns[str(column)] = np.asarray(frame[column])
    for j in range(k):
        columns[f"item_{j + 1}"] = ids[:, j]
        columns[f"score_{j + 1}"] = scores[:, j]
        if pi is not None:
            columns[f"probability_{j + 1}"] = pi[:, j]
    table = pd.DataFrame(columns)
    if out is not None:
        write_table(table, out, argument="out")
        say(f"wrote {out}")
    return Recommendations(
        table=table,
        item_index=index,
        item_ids=ids,
        scores=scores,
        unseen_rows=int(unseen_rows),
        unseen_columns={str(c): v for c, v in unseen.items()},
        explore=bool(explore),
        probabilities=pi,
    )


def policy_probabilities(
    policy: SavedPolicy, context: Any, index: np.ndarray, *, max_elements: int = PROBABILITY_CHUNK_ELEMENTS
) -> np.ndarray:
    """``[n, k]`` float64 ``pi(a|x_i)`` of the items ``index [n, k]``: the exponential of
    :meth:`~towerjax.serving.SavedPolicy.log_probs`, the exact softmax over the whole
    catalogue at the policy's temperature, ``log_softmax(s(x_i, .) / tau)``.

    Contexts are taken in chunks of at most ``max_elements / A`` rows (and
    :data:`CONTEXT_CHUNK_SIZE`), each one compiled program, so a large catalogue never holds
    all ``[n, A]`` log-probabilities at once.
    """
    index = np.asarray(index)
    n = num_rows(context)
    rows = max(1, min(CONTEXT_CHUNK_SIZE, n, max_elements // policy.n_items))
    out = np.empty(index.shape, np.float64)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        log_pi = policy.log_probs(take(context, np.arange(start, stop)), context_chunk_size=rows)
        out[start:stop] = np.exp(
            np.take_along_axis(np.asarray(log_pi, np.float64), index[start:stop], axis=1)
        )
    return out


def export(model: Any, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes a saved model's serving files into ``out`` (:meth:`~towerjax.serving.SavedPolicy.export`).

    Args:
      model: a model directory, a :class:`~towerjax.serving.SavedPolicy` or a
        :class:`~towerjax.workflow.fit.FitResult`.
      out: the directory to write into.
      overwrite: replace the export in a non-empty ``out``.

    Raises:
      InputError: naming ``model`` or ``out``.
    """
    if isinstance(model, str | os.PathLike):
        try:
            policy = load_model(model)
        except InputError as err:
            raise InputError("model", err.message) from None
    else:
        policy = model.policy if isinstance(model, FitResult) else model
    try:
        return policy.export(out, overwrite=overwrite)
    except InputError as err:
        if err.argument == "directory":
            raise InputError("out", err.message) from None
        raise
