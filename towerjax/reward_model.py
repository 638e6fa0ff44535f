"""Reward model ``q_hat(x, a)`` for the doubly robust learner (SPEC 3).

An MLP on ``concat(x, e_a)`` fitted to the logged rewards with optax. Its first layer is
split as ``W [x; e] = W_x x + W_e e``, so ``q_hat`` for every (context, item) pair is one
broadcast sum of ``[n, H]`` and ``[A, H]`` followed by the rest of the MLP, never a
``[n * A, d_x + d_a]`` concatenation. Fitting is a pure function of a key, vmappable over
seeds.

Cross-fitting (SPEC 3, the default): :meth:`RewardModel.cross_fit` splits the logs into
``folds`` random folds, fits one model per fold on the other folds' rows (one after the
other, ``lax.map``) and predicts each row with the model that did not see it. ``folds=1``
fits and predicts on the same rows, an explicit choice: an overfit ``q_hat`` absorbs the
residuals ``r_i - q_hat(x_i, a_i)`` and a doubly robust estimate drifts to the direct method's.

Cost (:meth:`RewardModel.fold_predictions`): each model scores only the rows of its fold, and
rows with one context (a rating log's context is often its user: :func:`context_groups`)
share their scores, ``[K U, A]`` for ``U`` distinct contexts instead of ``[n, A]``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from towerjax.batching import epoch_batches, row_chunk
from towerjax.checks import InputError, check_choice, check_positive_int, check_sizes
from towerjax.data import LoggedData
from towerjax.features import Features, FeatureSpec, feature_spec, num_rows, take
from towerjax.towers import PairMLP, check_activation

__all__ = [
    "PREDICT_CHUNK_ELEMENTS",
    "ContextGroups",
    "FoldFits",
    "RewardModel",
    "RewardModelConfig",
    "context_groups",
    "distinct_contexts",
]

REWARD_LOSSES = ("bce", "mse")
# Rows x items x hidden units per chunk of RewardModel.predict: 1 MiB of float32 activations.
PREDICT_CHUNK_ELEMENTS = 1 << 18


def _row_keys(context, xp=jnp):
    """``[..., n, c]`` int32 columns equal row for row exactly where the contexts are: the
    bits of the float columns (as ``float32``) and the id columns."""
    leaves = [context.dense, *context.ids.values()] if isinstance(context, Features) else [context]
    batch = (context.dense if isinstance(context, Features) else context).shape[:-2]
    columns = []
    for leaf in leaves:
        leaf = xp.asarray(leaf)
        leaf = leaf.reshape(*batch, leaf.shape[len(batch)], -1)
        if xp.issubdtype(leaf.dtype, xp.floating):
            leaf = leaf.astype(xp.float32).view(xp.int32)
        columns.append(leaf.astype(xp.int32))
    return xp.concatenate(columns, axis=-1)


def distinct_contexts(context) -> int:
    """Number of distinct rows of ``[n, d]`` contexts (or :class:`Features`), on the host (numpy):
    the static ``size`` :func:`context_groups` needs. A rating log's context is often its user,
    so its events have as many distinct contexts as users. With a leading ``[S]`` axis (one
    dataset per seed), the largest of the ``S`` counts."""
    keys = _row_keys(jax.tree.map(np.asarray, context), np)
    keys = keys.reshape(-1, *keys.shape[-2:])
    return max(int(np.unique(k, axis=0).shape[0]) for k in keys)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ContextGroups:
    """Rows grouped by identical contexts (:func:`context_groups`).

    Attributes:
      context: ``[U, ...]`` the distinct contexts (padded with copies of a row up to ``U``).
      group: ``[n]`` int32: row ``i``'s context is ``context[group[i]]``.
    """

    context: jax.Array | Features
    group: jax.Array

    def take_rows(self, rows: jax.Array) -> ContextGroups:
        """The groups of the rows ``rows`` (the same distinct contexts)."""
        return ContextGroups(self.context, self.group[rows])


def context_groups(context, size: int) -> ContextGroups:
    """The distinct rows of ``[n, ...]`` contexts and each row's index among them, under ``jit``.

    ``size`` (static) is at least the number of distinct rows (:func:`distinct_contexts`).
    Exact: two rows are one context when every column's bits are equal. What depends on the
    context only, the reward model's ``q_hat(x, .)``, is then computed once per distinct
    context (``[U, A]``) and read through ``group``: the numbers of ``[n, A]``, ``n / U``
    times less work.
    """
    _, first, inverse = jnp.unique(
        _row_keys(context), axis=0, size=size, fill_value=0, return_index=True, return_inverse=True
    )
    return ContextGroups(take(context, first), inverse.reshape(-1).astype(jnp.int32))


@dataclasses.dataclass(frozen=True)
class RewardModelConfig:
    """How ``q_hat`` is modelled and fitted.

    ``loss="bce"`` fits ``sigmoid(MLP)`` by binary cross-entropy (rewards in ``[0, 1]``);
    ``"mse"`` regresses a linear output on ``r`` by squared error. ``folds`` is the
    number of cross-fitting folds (default 2); ``folds=1`` is in-sample (fit and predict on
    the same rows).
    """

    hidden_sizes: tuple[int, ...] = (100, 100)
    activation: str = "elu"
    loss: str = "bce"
    learning_rate: float = 0.005
    batch_size: int = 100
    epochs: int = 10
    folds: int = 2

    def __post_init__(self) -> None:
        check_activation(self.activation, "reward_model.activation")
        check_choice("reward_model.loss", self.loss, REWARD_LOSSES)
        sizes = check_sizes("reward_model.hidden_sizes", self.hidden_sizes, allow_empty=False)
        for name in ("batch_size", "epochs", "folds"):
            object.__setattr__(self, name, check_positive_int(f"reward_model.{name}", getattr(self, name)))
        if not self.learning_rate > 0:
            raise InputError("reward_model.learning_rate", f"expected > 0, got {self.learning_rate}")
        object.__setattr__(self, "hidden_sizes", sizes)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FoldFits:
    """Cross-fitting's ``K`` reward models and each row's fold (:meth:`RewardModel.fold_fits`).

    Row ``i`` is scored by ``params[fold[i]]``, the model fitted on the other folds' rows; for
    catalogues where the ``[n, A]`` predictions of :meth:`RewardModel.cross_fit` do not fit,
    the trainer scores each minibatch's rows on the items it needs (a sampled softmax's).

    Attributes:
      params: the ``K`` models' parameters, each leaf with a leading ``[K]`` axis.
      fold: ``[n]`` int fold of each row (all 0 with ``folds=1``: in-sample).
    """

    params: dict
    fold: jax.Array


@dataclasses.dataclass(frozen=True)
class RewardModel:
    """Pure functions to fit and query ``q_hat``; parameters are a plain pytree."""

    config: RewardModelConfig = dataclasses.field(default_factory=RewardModelConfig)

    @property
    def _mlp(self) -> PairMLP:
        """The MLP on ``concat(x, e_a)`` (:class:`towerjax.towers.PairMLP`)."""
        return PairMLP(self.config.hidden_sizes, self.config.activation)

    def init(self, key: jax.Array, context_dim: int | FeatureSpec, action_dim: int | FeatureSpec) -> dict:
        return self._mlp.init(key, context_dim, action_dim)

    def _link(self, logit: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(logit) if self.config.loss == "bce" else logit

    def predict_logged(self, params: dict, context: jax.Array, item_features: jax.Array) -> jax.Array:
        """``[n]`` ``q_hat(x_i, a_i)`` for aligned rows of contexts and logged items' features."""
        return self._link(self._mlp.apply(params, context, item_features))

    def predict(
        self,
        params: dict,
        context: jax.Array,
        action_context: jax.Array,
        *,
        chunk_size: int | None = None,
    ) -> jax.Array:
        """``[n, A]`` ``q_hat(x_i, a)`` for every context and every item in one batched call.

        ``chunk_size`` bounds memory to ``chunk_size * A * H`` by mapping over row chunks;
        ``None`` (default) picks the rows per chunk so that ``rows * A * H`` stays within
        :data:`PREDICT_CHUNK_ELEMENTS` (``H`` the widest hidden layer): a chunk's hidden
        activations stay in the CPU's cache (at ``A = 1000``, ``H = 100``, 2 rows per chunk
        score 4-6x faster than 41, benchmarks/dr_cost.py).
        """
        mlp = self._mlp
        items = jax.tree.map(lambda v: v[None], action_context)

        def pairs(x):
            return self._link(mlp.apply(params, jax.tree.map(lambda v: v[:, None], x), items))

        if chunk_size is None:
            chunk_size = row_chunk(
                num_rows(context),
                num_rows(action_context) * max(self.config.hidden_sizes),
                PREDICT_CHUNK_ELEMENTS,
            )
        if chunk_size >= num_rows(context):
            return pairs(context)
        return jax.lax.map(
            lambda x: pairs(jax.tree.map(lambda v: v[None], x))[0], context, batch_size=chunk_size
        )

    def loss(self, params: dict, context, item_features, reward, mask) -> jax.Array:
        """Masked mean BCE (from logits) or squared error of the logged rewards."""
        out = self._mlp.apply(params, context, item_features)
        if self.config.loss == "bce":
            per_event = optax.sigmoid_binary_cross_entropy(out, reward)
        else:
            per_event = jnp.square(out - reward)
        return jnp.sum(mask * per_event) / jnp.maximum(jnp.sum(mask), 1.0)

    def fit(self, key: jax.Array, data: LoggedData, weight: jax.Array | None = None) -> dict:
        """Fits ``q_hat`` to ``(x_i, e_{a_i}, r_i)`` by Adam over shuffled minibatches.

        ``weight`` ``[n]`` (optional, 0 or 1) leaves rows out of the fit with static shapes.
        """
        cfg = self.config
        key_init, key_epochs = jax.random.split(key)
        params = self.init(key_init, feature_spec(data.context), feature_spec(data.action_context))
        optimizer = optax.adam(cfg.learning_rate)
        n, batch_size = data.n_rounds, min(cfg.batch_size, data.n_rounds)
        item_features = take(data.action_context, data.action)
        weight = jnp.ones(n, jnp.float32) if weight is None else jnp.asarray(weight, jnp.float32)

        def step(state, batch):
            params, opt_state = state
            index, mask = batch
            grads = jax.grad(self.loss)(
                params,
                take(data.context, index),
                take(item_features, index),
                data.reward[index],
                mask * weight[index],
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        def epoch(state, key):
            state, _ = jax.lax.scan(step, state, epoch_batches(key, n, batch_size))
            return state, None

        state = (params, optimizer.init(params))
        (params, _), _ = jax.lax.scan(epoch, state, jax.random.split(key_epochs, cfg.epochs))
        return params

    def cross_fit(self, key: jax.Array, data: LoggedData, *, chunk_size: int | None = None) -> jax.Array:
        """``[n, A]`` cross-fitted ``q_hat(x_i, a)``: row ``i`` predicted by a model that did not see it.

        Rows are split into ``config.folds`` random folds of sizes differing by at most one;
        the model of fold ``k`` is fitted on the other folds' rows (the ``K`` fits one after
        the other) and predicts fold ``k``'s rows. ``folds=1`` fits and predicts on all rows
        (in-sample). Pure in ``key``; ``vmap`` it over seeds.

        References:
          Chernozhukov et al., *Double/debiased machine learning*, 2018 (cross-fitting).
        """
        fits = self.fold_fits(key, data)
        table, rows = self.fold_predictions(fits, data, chunk_size=chunk_size)
        return table[rows]

    @staticmethod
    def table_rows(n: int, groups: ContextGroups | None = None) -> int:
        """Rows of :meth:`predict_rows`' table for ``n`` rows: their distinct contexts where
        ``groups`` has fewer, else ``n``."""
        return n if groups is None else min(n, num_rows(groups.context))

    def predict_rows(
        self, params: dict, data: LoggedData, groups: ContextGroups | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """``(table [m, A], rows [n])``: ``q_hat(x_i, .)`` of ``data``'s row ``i`` is
        ``table[rows[i]]``; one table row per distinct context (``groups`` of ``data``'s rows,
        :func:`context_groups`, where they are fewer than the rows), else per row."""
        n = data.n_rounds
        if self.table_rows(n, groups) < n:
            return self.predict(params, groups.context, data.action_context), groups.group
        return self.predict(params, data.context, data.action_context), jnp.arange(n, dtype=jnp.int32)

    def fold_predictions(
        self,
        fits: FoldFits,
        data: LoggedData,
        groups: ContextGroups | None = None,
        *,
        chunk_size: int | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """``(table [m, A], rows [n])``: row ``i``'s ``q_hat(x_i, .)`` by its fold's model
        (:meth:`fold_fits`) is ``table[rows[i]]``, :meth:`cross_fit` without ``[n, A]`` held.

        Each model scores only what it is asked for: with ``groups`` (the rows' distinct
        contexts, ``U`` of them, :func:`context_groups`) and ``K U < n``, every model scores
        every distinct context, ``table [K U, A]``, ``rows = fold * U + group`` (``K U A``
        pairs, ``n / (K U)`` times fewer than ``n A``); else model ``k`` scores the rows of
        fold ``k`` only, ``table [K S, A]`` with ``S = ceil(n / K)`` (``n A`` pairs; scoring
        every row by every model and keeping its fold's would be ``K n A``). The numbers are
        those of ``predict(params[fold[i]], x_i, items)``.
        """
        n, folds = data.n_rounds, jax.tree.leaves(fits.params)[0].shape[0]
        fold = fits.fold.astype(jnp.int32)

        def scores(inputs):
            params, context = inputs
            return self.predict(params, context, data.action_context, chunk_size=chunk_size)

        if groups is not None and folds * num_rows(groups.context) < n:
            size = num_rows(groups.context)
            table = jax.lax.map(lambda params: scores((params, groups.context)), fits.params)
            return table.reshape(folds * size, -1), fold * size + groups.group
        size = -(-n // folds)  # the largest fold's rows (folds differ by at most one row)
        by_fold = jnp.argsort(fold, stable=True)  # fold 0's rows, then fold 1's, ...
        start = jnp.cumsum(jnp.bincount(fold, length=folds)) - jnp.bincount(fold, length=folds)
        slots = jnp.minimum(start[:, None] + jnp.arange(size), n - 1)  # [K, S] padded with row n-1
        contexts = jax.vmap(lambda s: take(data.context, by_fold[s]))(slots)
        table = jax.lax.map(scores, (fits.params, contexts)).reshape(folds * size, -1)
        rank = jnp.zeros(n, jnp.int32).at[by_fold].set(jnp.arange(n, dtype=jnp.int32))
        return table, fold * size + rank - start[fold]

    def fold_fits(self, key: jax.Array, data: LoggedData, *, group_size: int = 1) -> FoldFits:
        """The fits of :meth:`cross_fit` without its ``[n, A]`` predictions: the ``K`` models
        and each row's fold (the same models and folds for the same key), so a caller scores
        row ``i`` on any items with ``params[fold[i]]``. ``folds=1``: one model fitted on every
        row (in-sample), fold 0 for all.

        ``group_size`` ``g``: the rows come in consecutive groups of ``g`` that share a fold (the
        ``K`` positions of one logged list, :mod:`towerjax.slate_reward_model`), so no model sees a
        row of a group it predicts; ``g`` divides ``n``. ``g = 1`` (default): each row its own."""
        folds, n = self.config.folds, data.n_rounds
        key_split, key_fit = jax.random.split(key)
        if folds == 1:
            params = jax.tree.map(lambda v: v[None], self.fit(key, data))
            return FoldFits(params, jnp.zeros(n, jnp.int32))
        group_size = check_positive_int("group_size", group_size)
        if n % group_size:
            raise InputError("group_size", f"expected a divisor of the {n} logged rows, got {group_size}")
        groups = n // group_size
        if folds > groups:
            what = "logged rows" if group_size == 1 else f"groups of {group_size} rows"
            raise InputError("reward_model.folds", f"expected at most the {groups} {what}, got {folds}")
        fold = jax.random.permutation(key_split, groups) % folds
        if group_size > 1:
            fold = jnp.repeat(fold, group_size)
        # Fold k's training rows first (stable order), then its own rows; the first
        # n - g floor(n / (g K)) rows hold every training row (held-out rows pad the folds
        # that are a group smaller), so every fit has the same static size.
        size = n - group_size * (groups // folds)
        order = jax.vmap(lambda k: jnp.argsort(fold == k, stable=True)[:size])(jnp.arange(folds))
        weight = (fold[order] != jnp.arange(folds)[:, None]).astype(jnp.float32)
        # One fit after the other (lax.map), not a vmap: XLA's CPU backend runs the batched
        # gathers and scatter-adds of embedding tables several times slower (benchmarks/dr_cost.py).
        params = jax.lax.map(
            lambda a: self.fit(a[0], data.take_rows(a[1]), a[2]),
            (jax.random.split(key_fit, folds), order, weight),
        )
        return FoldFits(params, fold)
