"""Training a two-tower Plackett-Luce list policy from slate logs with a list objective (issue 25, item 3).

``make_list_train(config, item_features)`` returns ``train(key, logs) -> params`` (purejaxrl's
pattern): Adam from :func:`towerjax.training.make_optimizer`, epochs and shuffled minibatches as
``jax.lax.scan`` (a permutation reshaped to ``[n_batches, batch]``; the last ``n mod batch`` rows of
each shuffle sit that epoch out), the loss one of :data:`towerjax.list_objectives.LIST_OBJECTIVES`.
Seeds are ``jax.jit(jax.vmap(train))(keys, stacked_logs)``. For ``cascade-dr`` the position-aware reward
model (:class:`towerjax.slate_reward_model.SlateRewardModel`) is cross-fitted on the logs once, before
the epochs, and each minibatch reads its rows' ``q_hat [B, K, A]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_choice, check_positive, check_positive_int
from towerjax.features import Features, feature_spec
from towerjax.list_objectives import LIST_OBJECTIVES, list_objective_loss
from towerjax.reward_model import RewardModelConfig
from towerjax.slate_reward_model import SlateRewardModel
from towerjax.slate_synthetic import SlateLogs
from towerjax.towers import TwoTower
from towerjax.training.config import TrainConfig
from towerjax.training.step import make_optimizer

__all__ = ["ListTrainConfig", "list_model", "make_list_epochs", "make_list_train"]


@dataclasses.dataclass(frozen=True)
class ListTrainConfig:
    """Settings of :func:`make_list_train`.

    ``objective`` names the loss (:data:`~towerjax.list_objectives.LIST_OBJECTIVES`); ``iips_samples``
    ``None`` gives IIPS the exact position marginals (every list enumerated, small ``A`` and ``K``),
    a number the sampled ones (:func:`~towerjax.list_objectives.logged_position_marginals`). The
    towers, optimiser and batches are :class:`~towerjax.training.TrainConfig`'s. ``temperature`` 5: the
    initial towers' scores spread by about 3.6 across items (``D = 32``), so at ``tau = 1`` training starts
    from a nearly deterministic random list policy whose importance weights are almost all 0; at 5 it starts
    near uniform (benchmarks/list_learning.py). The learned policy is Plackett-Luce at this ``tau``.
    ``reward_model``: the cross-fitted ``q_hat`` of ``cascade-dr`` (unused by the other objectives).
    """

    objective: str = "rips"
    hidden_sizes: tuple[int, ...] = (64,)
    embedding_size: int = 32
    activation: str = "elu"
    temperature: float = 5.0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 128
    epochs: int = 10
    position_weight: tuple[float, ...] | None = None
    iips_samples: int | None = None
    reward_model: RewardModelConfig = dataclasses.field(default_factory=RewardModelConfig)

    def __post_init__(self) -> None:
        check_choice("objective", self.objective, LIST_OBJECTIVES)
        for name in ("batch_size", "epochs"):
            check_positive_int(name, getattr(self, name))
        check_positive("learning_rate", self.learning_rate)
        check_positive("temperature", self.temperature)
        if self.iips_samples is not None:
            check_positive_int("iips_samples", self.iips_samples)

    def train_config(self) -> TrainConfig:
        """The :class:`~towerjax.training.TrainConfig` whose optimiser and towers this uses."""
        return TrainConfig(
            hidden_sizes=self.hidden_sizes,
            embedding_size=self.embedding_size,
            activation=self.activation,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            epochs=self.epochs,
        )


def list_model(config: ListTrainConfig) -> TwoTower:
    """The two-tower scorer the list policy is Plackett-Luce on."""
    return TwoTower(config.hidden_sizes, config.embedding_size, config.activation)


def _batch_loss(params, config: ListTrainConfig, model: TwoTower, logs: SlateLogs, item_features, key, q_hat):
    scores = model.scores(params, logs.context, item_features)
    return list_objective_loss(
        config.objective,
        scores,
        logs.lists,
        logs.rewards,
        pscore=logs.pscore,
        pscore_item_position=logs.pscore_item_position,
        pscore_cascade=logs.pscore_cascade,
        temperature=config.temperature,
        position_weight=None if config.position_weight is None else jnp.asarray(config.position_weight),
        key=key if config.iips_samples is not None else None,
        n_samples=config.iips_samples or 1,
        q_hat=q_hat,
    )


def _q_hat(config: ListTrainConfig, key: jax.Array, logs: SlateLogs, item_features) -> jax.Array | None:
    """``[n, K, A]`` the cross-fitted ``q_hat`` of ``cascade-dr`` (``None`` for the other objectives)."""
    if config.objective != "cascade-dr":
        return None
    model = SlateRewardModel(config.reward_model)
    return model.cross_fit(key, logs.context, logs.lists, logs.rewards, item_features)


def make_list_epochs(config: ListTrainConfig, item_features: Any) -> tuple[Callable, Callable]:
    """:func:`make_list_train` split at the epochs: ``(init, epoch)`` with
    ``init(key, logs) -> (carry, epoch_keys [epochs], q_hat)`` and
    ``epoch(carry, epoch_key, logs, q_hat) -> carry`` (``carry = (params, opt_state, key)``), so a caller
    can look at the parameters between epochs (``towerjax train --slate`` estimates each epoch's).

    Args:
      config: the settings.
      item_features: ``[A, da]`` the item tower's inputs, or :class:`~towerjax.features.Features`
        (embedded ids); ``logs.context`` likewise.
    """
    if not isinstance(item_features, Features):
        item_features = jnp.asarray(item_features)
    model = list_model(config)
    optimizer = make_optimizer(config.train_config())
    grad_fn = jax.grad(_batch_loss)

    def init(key: jax.Array, logs: SlateLogs):
        n = logs.lists.shape[0]
        if n < config.batch_size:
            raise InputError("logs", f"expected at least batch_size = {config.batch_size} rows, got {n}")
        init_key, loss_key, shuffle_key = jax.random.split(key, 3)
        q_hat = _q_hat(config, jax.random.fold_in(key, 3), logs, item_features)  # once, before the epochs
        params = model.init(init_key, feature_spec(logs.context), feature_spec(item_features))
        carry = (params, optimizer.init(params), loss_key)
        return carry, jax.random.split(shuffle_key, config.epochs), q_hat

    def epoch(carry, epoch_key: jax.Array, logs: SlateLogs, q_hat):
        n = logs.lists.shape[0]
        n_batches = n // config.batch_size

        def minibatch(carry, rows):
            params, opt_state, key = carry
            key, loss_key = jax.random.split(key)
            batch = jax.tree.map(lambda column: column[rows], logs)
            q_batch = None if q_hat is None else q_hat[rows]
            grads = grad_fn(params, config, model, batch, item_features, loss_key, q_batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (jax.tree.map(jnp.add, params, updates), opt_state, key), None

        order = jax.random.permutation(epoch_key, n)[: n_batches * config.batch_size]
        carry, _ = jax.lax.scan(minibatch, carry, order.reshape(n_batches, config.batch_size))
        return carry

    return init, epoch


def make_list_train(
    config: ListTrainConfig, item_features: ArrayLike
) -> Callable[[jax.Array, SlateLogs], dict]:
    """``train(key, logs) -> params``: ``config.epochs`` epochs of minibatch Adam on the list objective
    (:func:`make_list_epochs`' epochs as one ``jax.lax.scan``).

    ``logs`` (:class:`~towerjax.slate_synthetic.SlateLogs`, ``n >= batch_size`` rows) is an argument, so
    that ``jax.vmap(train)(keys, stacked_logs)`` trains one policy per seed on its own logs.

    Args:
      config: the settings.
      item_features: ``[A, da]`` the item tower's inputs (or :class:`~towerjax.features.Features`).
    """
    init, epoch = make_list_epochs(config, item_features)

    def train(key: jax.Array, logs: SlateLogs) -> dict:
        carry, epoch_keys, q_hat = init(key, logs)
        carry, _ = jax.lax.scan(lambda c, k: (epoch(c, k, logs, q_hat), None), carry, epoch_keys)
        return carry[0]

    return train
