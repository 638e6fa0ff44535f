"""Reward model ``q_hat(x, a)`` for the doubly robust learner (SPEC 3).

An MLP on ``concat(x, e_a)`` fitted to the logged rewards with optax. Its first layer is
split as ``W [x; e] = W_x x + W_e e``, so ``q_hat`` for every (context, item) pair is one
broadcast sum of ``[n, H]`` and ``[A, H]`` followed by the rest of the MLP, never a
``[n * A, d_x + d_a]`` concatenation. Fitting is a pure function of a key, vmappable over
seeds.

Cross-fitting (SPEC 3, the default): :meth:`RewardModel.cross_fit` splits the logs into
``folds`` random folds, fits one model per fold on the other folds' rows (all folds in one
``vmap``) and predicts each row with the model that did not see it. ``folds=1`` fits and
predicts on the same rows, an explicit choice: an overfit ``q_hat`` absorbs the residuals
``r_i - q_hat(x_i, a_i)`` and a doubly robust estimate drifts to the direct method's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from towerjax.batching import epoch_batches, row_chunk
from towerjax.checks import InputError, check_choice, check_positive_int, check_sizes
from towerjax.data import LoggedData
from towerjax.features import FeatureSpec, feature_spec, num_rows, take
from towerjax.towers import PairMLP, check_activation

__all__ = ["RewardModel", "RewardModelConfig"]

REWARD_LOSSES = ("bce", "mse")


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
        :data:`~towerjax.batching.ROW_CHUNK_ELEMENTS` (``H`` the widest hidden layer).
        """
        mlp = self._mlp
        items = jax.tree.map(lambda v: v[None], action_context)

        def pairs(x):
            return self._link(mlp.apply(params, jax.tree.map(lambda v: v[:, None], x), items))

        if chunk_size is None:
            chunk_size = row_chunk(
                num_rows(context), num_rows(action_context) * max(self.config.hidden_sizes)
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
        the model of fold ``k`` is fitted on the other folds' rows (the ``K`` fits are one
        ``vmap``) and predicts fold ``k``'s rows. ``folds=1`` fits and predicts on all rows
        (in-sample). Pure in ``key``; ``vmap`` it over seeds.

        References:
          Chernozhukov et al., *Double/debiased machine learning*, 2018 (cross-fitting).
        """
        folds, n = self.config.folds, data.n_rounds
        key_split, key_fit = jax.random.split(key)
        if folds == 1:
            params = self.fit(key, data)
            return self.predict(params, data.context, data.action_context, chunk_size=chunk_size)
        if folds > n:
            raise InputError("reward_model.folds", f"expected at most the {n} logged rows, got {folds}")
        fold = jax.random.permutation(key_split, n) % folds
        # Fold k's training rows first (stable order), then its own rows; the first
        # n - floor(n / K) rows hold every training row (one held-out row pads the folds
        # that are a row smaller), so every fit has the same static size.
        size = n - n // folds
        order = jax.vmap(lambda k: jnp.argsort(fold == k, stable=True)[:size])(jnp.arange(folds))
        weight = (fold[order] != jnp.arange(folds)[:, None]).astype(jnp.float32)
        subsets = jax.vmap(data.take_rows)(order)
        params = jax.vmap(self.fit)(jax.random.split(key_fit, folds), subsets, weight)

        def add_fold(q_hat, inputs):
            k, fold_params = inputs
            pred = self.predict(fold_params, data.context, data.action_context, chunk_size=chunk_size)
            return jnp.where((fold == k)[:, None], pred, q_hat), None

        q_hat = jnp.zeros((n, data.n_actions), jnp.float32)
        q_hat, _ = jax.lax.scan(add_fold, q_hat, (jnp.arange(folds), params))
        return q_hat
