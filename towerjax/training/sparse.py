"""Sparse (lazy) updates of embedding tables (SPEC 6): a step touches only the rows it looks up.

The gradient of a lookup ``E[ids]`` reaches only the rows ``J`` looked up in the batch,
``g_j = sum_{i: id_i = j} dL/dE_j``. Lazy Adam (TensorFlow Addons' ``LazyAdam``) updates
those rows and their moments and leaves every other row alone:

.. math::

  m_j \\leftarrow \\beta_1 m_j + (1 - \\beta_1) g_j, \\quad
  v_j \\leftarrow \\beta_2 v_j + (1 - \\beta_2) g_j^2, \\quad
  E_j \\leftarrow E_j - \\eta \\, \\hat m_j / (\\sqrt{\\hat v_j} + \\epsilon) \\qquad (j \\in J)

with the bias corrections ``hat m = m / (1 - beta1^t)``, ``hat v = v / (1 - beta2^t)`` of the
global step ``t``. When every row is looked up every step it is dense Adam.

How, in three moves, with no ``[V, D]`` array touched beyond the rows looked up:

1. :func:`compact`: each table's ids in the batch, ``[n]``, are replaced by their index into
   the table's unique looked-up rows ``u`` (``jnp.unique(ids, size=k, fill_value=V)`` with
   ``k = min(n, V + 1)``: the distinct ids sorted, then padding ``V``), and the table's
   static size becomes ``k``.
2. :func:`gather_rows`: the parameters with each table ``E [V, D]`` replaced by its
   sub-table ``E[u] [k, D]`` (padding rows are zeros). The loss of the compacted batch on
   them is the loss of the batch; its gradient w.r.t. the sub-table is ``g_u``, duplicates
   summed by autodiff of the lookup.
3. :func:`lazy_update`: the configured optax optimiser
   (:func:`towerjax.training.step.make_optimizer`) runs once on the parameters with each
   table's sub-table and each of its state's per-parameter trees (Adam's ``mu``, ``nu``)
   gathered at ``u`` likewise; the count and the dense parameters are as in a dense step.
   Adam and weight decay are elementwise, so this is lazy Adam exactly. The new rows and
   moments are scattered back (``.at[u].set(..., mode="drop")``: padding dropped).

Weight decay of the tables is lazy too: coupled L2 adds ``wd * E_j`` to ``g_j`` of the
looked-up rows only; AdamW decays the looked-up rows only. A padding row is zero with a zero
gradient and zero moments, so its update is zero (and it is dropped anyway).

The cost per step is ``O(n log n + k D)`` per table (a sort of its ``n`` ids, gathers and
scatters of ``k`` rows) instead of ``O(V D)``. The optimiser state keeps the dense layout (the same
``opt_state`` as ``make_optimizer(config).init(params)``), so checkpoints, seeds and the
state's sharding are unchanged.

Row-wise Adagrad (:func:`scale_by_row_adagrad`, ``TrainConfig.embedding_optimizer =
"row-adagrad"``) keeps one scalar per row instead of Adam's two ``[V, D]`` moments; it has
no momentum, so a row whose gradient is zero does not move and its lazy and dense updates
differ only by weight decay.

References:
  Kingma & Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015; TensorFlow Addons,
  ``tfa.optimizers.LazyAdam``; Duchi, Hazan & Singer, *Adaptive Subgradient Methods*, JMLR
  2011 (Adagrad), in its row-wise form as large recommenders use it (Gupta et al.,
  *Training Recommender Systems at Scale*, 2020).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from towerjax.features import Features, Table

__all__ = ["compact", "gather_rows", "lazy_update", "scale_by_row_adagrad", "scatter_rows", "table_path"]

# Tables are params[tower][TABLE_PREFIX + name]["embedding"] (towerjax.towers.Tower).
TABLE_PREFIX = "embed_"


def compact(x: Features, mask: jax.Array | None = None) -> tuple[Features, dict[str, jax.Array]]:
    """``x`` with every table's ids renumbered into the rows it looks up, and those rows.

    Args:
      x: :class:`~towerjax.features.Features` of ``n`` rows (ids ``[n]``).
      mask: optional ``[n]``; rows with mask 0 (the padding of a final partial batch) look
        nothing up: their ids become the padding row (embedded as zeros).

    Returns:
      ``(features, rows)``: ``features`` whose ids ``[n]`` index ``rows[name]`` and whose
      tables have size ``k = min(n, V + 1)`` (``V = table.size``); ``rows[name]`` ``[k]`` the
      distinct ids looked up, ascending, then the padding id ``V``.
    """
    ids, rows, tables = {}, {}, []
    for table in x.tables:
        looked_up = x.ids[table.name]
        if mask is not None:
            looked_up = jnp.where(mask > 0, looked_up, table.size)
        # At most min(n, V + 1) distinct values (the ids, and V for masked rows): a small
        # table's sub-table stays small however many rows look it up.
        size = min(looked_up.size, table.size + 1)
        unique, inverse = jnp.unique(looked_up.ravel(), size=size, fill_value=table.size, return_inverse=True)
        rows[table.name] = unique
        ids[table.name] = inverse.reshape(looked_up.shape).astype(jnp.int32)
        tables.append(Table(table.name, size, table.dim))
    return Features(dense=x.dense, ids=ids, tables=tuple(tables)), rows


def table_path(path: tuple, rows: dict[str, dict[str, jax.Array]]) -> jax.Array | None:
    """The looked-up ``rows`` of the table a pytree ``path`` ends in, or ``None``.

    A table's leaf (in the parameters, or in an optimiser state's copy of them) has a path
    ending ``[tower]["embed_<name>"]["embedding"]``; ``rows`` is ``{tower: {name: [n]}}``.
    """
    keys = [getattr(k, "key", None) for k in path[-3:]]
    if len(keys) < 3 or keys[2] != "embedding" or not isinstance(keys[1], str):
        return None
    if not keys[1].startswith(TABLE_PREFIX) or not isinstance(keys[0], str):
        return None
    return rows.get(keys[0], {}).get(keys[1][len(TABLE_PREFIX) :])


def gather_rows(tree: Any, rows: dict[str, dict[str, jax.Array]]) -> Any:
    """``tree`` (parameters, or an optimiser state) with each table's leaf ``[V, ...]`` replaced by
    its ``rows`` ``[n, ...]`` (the padding id ``V`` gives zeros); other leaves unchanged."""

    def gather(path, leaf):
        u = table_path(path, rows)
        return leaf if u is None else jnp.take(leaf, u, axis=0, mode="fill", fill_value=0)

    return jax.tree_util.tree_map_with_path(gather, tree)


def scatter_rows(tree: Any, sub: Any, rows: dict[str, dict[str, jax.Array]]) -> Any:
    """The inverse of :func:`gather_rows`: ``tree`` with each table's ``rows`` set from ``sub``
    (the padding id dropped) and every other leaf taken from ``sub``."""

    def scatter(path, leaf, new):
        u = table_path(path, rows)
        if u is None:
            return new
        return leaf.at[u].set(new, mode="drop", indices_are_sorted=True)

    return jax.tree_util.tree_map_with_path(scatter, tree, sub)


def lazy_update(
    optimizer: optax.GradientTransformation,
    grads: dict,
    opt_state: Any,
    params: dict,
    sub_params: dict,
    rows: dict[str, dict[str, jax.Array]],
) -> tuple[dict, Any]:
    """One lazy step: ``optimizer`` on the looked-up rows of the tables, densely elsewhere.

    Args:
      optimizer: an elementwise optax optimiser (Adam, AdamW, with decay masks), the one
        whose ``init(params)`` made ``opt_state``.
      grads: the loss's gradient w.r.t. ``sub_params``.
      opt_state: the optimiser state of the full ``params``.
      params: the full parameters (tables ``[V, D]``).
      sub_params: ``gather_rows(params, rows)``.
      rows: ``{tower: {name: [n]}}`` from :func:`compact`.

    Returns:
      ``(params, opt_state)`` updated: the tables' looked-up rows and their state rows, every
      dense parameter, the step count; other table rows and their moments untouched.
    """
    sub_state = gather_rows(opt_state, rows)
    updates, sub_state = optimizer.update(grads, sub_state, sub_params)
    sub_params = optax.apply_updates(sub_params, updates)
    return scatter_rows(params, sub_params, rows), scatter_rows(opt_state, sub_state, rows)


def scale_by_row_adagrad(eps: float = 1e-8) -> optax.GradientTransformation:
    """Row-wise Adagrad's scaling of ``[V, D]`` gradients: one accumulator per row.

    .. math::

      G_j \\leftarrow G_j + \\tfrac1D \\textstyle\\sum_d g_{jd}^2, \\qquad
      u_j = g_j / \\sqrt{G_j + \\epsilon}

    (chain ``optax.scale(-learning_rate)`` after it for the step ``-lr u_j``). The state is
    ``[V]`` per table (``[n]`` gathered by :func:`gather_rows`), a ``D``-th of one Adam moment.
    """

    def init(params):
        return jax.tree.map(lambda p: jnp.zeros(p.shape[:1], p.dtype), params)

    def update(updates, state, params=None):
        del params
        state = jax.tree.map(lambda g, acc: acc + jnp.mean(jnp.square(g), axis=-1), updates, state)
        updates = jax.tree.map(lambda g, acc: g * jax.lax.rsqrt(acc + eps)[:, None], updates, state)
        return updates, state

    return optax.GradientTransformation(init, update)
