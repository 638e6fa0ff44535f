"""Position-aware reward model ``q_hat_k(x, b)`` for cascade doubly robust on slate logs (SPEC 10).

Cascade-DR (Kiyohara et al., WSDM 2022; :mod:`towerjax.evaluation.slate`) needs, at each position
``k`` of each logged list, a reward model of every item ``b`` that could have been shown there after
the logged prefix ``a_i,1:k-1``. This module fits the position-aware model

.. math:: \\hat q_k(x, b) \\approx E[r_k | x, a_k = b]

the expected reward of item ``b`` at position ``k`` in context ``x`` (exact in form under a
position-based click model; under a cascade model the prefix also moves ``r_k``, and then ``q_hat``
is a projection that ignores it). Cascade-DR's estimate is unbiased under the cascade assumption for
any fixed ``q_hat`` (its two model terms have equal expectations), so the model only moves the
variance. OBP (``SlateCascadeDoublyRobust``, fed by ``SlateRegressionModel``) and Kiyohara et al. (Sec.
3.1) put the evaluation policy's Q-function of the prefix there, ``Q_k(x, a_1:k) = E_pi[sum_{l >= k}
alpha_l r_l | x, a_1:k]`` (fitted backwards from position ``K``): the same formula, and with it the
terms telescope so that the large prefix weights multiply residuals only. The per-position reward
fitted here does not depend on the policy evaluated or trained (training computes it once, before the
epochs), at the price of that cross-position variance reduction.

It is :class:`towerjax.reward_model.RewardModel`'s MLP on ``concat(x, e_b, onehot_K(k))``: the
``K A`` position-items ``(b, k)`` (:func:`position_items`) are its catalogue and the ``n K`` logged
(list, position) pairs its rows (:func:`position_rows`). Cross-fitting
(:meth:`SlateRewardModel.cross_fit`) splits the lists into folds, the ``K`` positions of a list in one
fold (``RewardModel.fold_fits(group_size=K)``), so list ``i``'s ``q_hat`` comes from a model that saw
none of its rewards. Pure in its key; ``vmap`` it over seeds.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.features import Features, num_rows
from towerjax.reward_model import FoldFits, RewardModel, RewardModelConfig

__all__ = ["SlateRewardModel", "position_items", "position_rows"]


def position_items(item_features: jax.Array | Features, positions: int) -> jax.Array | Features:
    """``[K A, d_a + K]`` the features of item ``b`` at position ``k`` in row ``k A + b``: ``concat(e_b, onehot(k))``.

    :class:`~towerjax.features.Features` items keep their id columns (tiled ``K`` times) and get the
    one-hot position appended to their dense columns.
    """
    n_items = num_rows(item_features)
    onehot = jnp.repeat(jnp.eye(positions, dtype=jnp.float32), n_items, axis=0)  # [K A, K]

    def tiled(leaf):
        return jnp.tile(leaf, (positions,) + (1,) * (leaf.ndim - 1))

    if isinstance(item_features, Features):
        dense = jnp.concatenate([tiled(item_features.dense).astype(jnp.float32), onehot], axis=1)
        return Features(dense, {k: tiled(v) for k, v in item_features.ids.items()}, item_features.tables)
    return jnp.concatenate([tiled(jnp.asarray(item_features, jnp.float32)), onehot], axis=1)


def position_rows(
    context: jax.Array | Features, lists: ArrayLike, rewards: ArrayLike, item_features: jax.Array | Features
) -> LoggedData:
    """The ``n K`` (list, position) pairs as single-action rows: row ``i K + k`` is context ``x_i``,
    position-item ``k A + a_ik`` of :func:`position_items` and reward ``r_ik`` (``pscore`` 1, unused)."""
    lists = jnp.asarray(lists)
    n, k = lists.shape
    n_items = num_rows(item_features)
    return LoggedData(
        context=jax.tree.map(lambda leaf: jnp.repeat(leaf, k, axis=0), context),
        action_context=position_items(item_features, k),
        action=(lists + n_items * jnp.arange(k)).reshape(n * k).astype(jnp.int32),
        reward=jnp.asarray(rewards, jnp.float32).reshape(n * k),
        pscore=jnp.ones(n * k, jnp.float32),
    )


@dataclasses.dataclass(frozen=True)
class SlateRewardModel:
    """``q_hat_k(x, b)`` fitted on slate logs, as pure functions; parameters are a plain pytree.

    ``config`` is :class:`~towerjax.reward_model.RewardModelConfig` (``folds`` the cross-fitting folds,
    over lists; ``loss="bce"`` for rewards in ``[0, 1]``).
    """

    config: RewardModelConfig = dataclasses.field(default_factory=RewardModelConfig)

    @property
    def reward_model(self) -> RewardModel:
        """The single-action model on position-items this extends."""
        return RewardModel(self.config)

    def fit(
        self,
        key: jax.Array,
        context: jax.Array | Features,
        lists: ArrayLike,
        rewards: ArrayLike,
        item_features: jax.Array | Features,
    ) -> dict:
        """One model fitted on every (list, position) pair (in-sample; :meth:`cross_fit` for estimates)."""
        return self.reward_model.fit(key, position_rows(context, lists, rewards, item_features))

    def predict(
        self, params: dict, context: jax.Array | Features, item_features: jax.Array | Features, positions: int
    ) -> jax.Array:
        """``[n, K, A]`` ``q_hat_k(x_i, b)`` of every context, position and item."""
        n_items = num_rows(item_features)
        table = self.reward_model.predict(params, context, position_items(item_features, positions))
        return table.reshape(table.shape[0], positions, n_items)

    def fold_fits(
        self,
        key: jax.Array,
        context: jax.Array | Features,
        lists: ArrayLike,
        rewards: ArrayLike,
        item_features: jax.Array | Features,
    ) -> FoldFits:
        """The cross-fitted models and each list's fold ``[n]`` (the ``K`` positions of a list in one fold)."""
        k = jnp.shape(lists)[1]
        fits = self.reward_model.fold_fits(
            key, position_rows(context, lists, rewards, item_features), group_size=k
        )
        return FoldFits(fits.params, fits.fold[::k])

    def cross_fit(
        self,
        key: jax.Array,
        context: jax.Array | Features,
        lists: ArrayLike,
        rewards: ArrayLike,
        item_features: jax.Array | Features,
    ) -> jax.Array:
        """``[n, K, A]`` cross-fitted ``q_hat_k(x_i, b)``: list ``i`` by the model fitted on the other folds' lists.

        Args:
          key: ``jax.random.key`` (folds and fits).
          context: ``[n, d_x]`` contexts (or :class:`~towerjax.features.Features`).
          lists: ``[n, K]`` int logged lists.
          rewards: ``[n, K]`` per-position rewards.
          item_features: ``[A, d_a]`` item features (or :class:`~towerjax.features.Features`).

        Returns:
          ``[n, K, A]``: slate.py's ``q_hat`` (:func:`towerjax.evaluation.slate_estimates`).

        References:
          Kiyohara et al., *Doubly robust off-policy evaluation for ranking policies under the cascade
          behavior model*, WSDM 2022; Chernozhukov et al. 2018 (cross-fitting).
        """
        lists = jnp.asarray(lists)
        if lists.ndim != 2 or jnp.shape(rewards) != lists.shape:
            raise InputError(
                "rewards", f"expected shape {lists.shape} to match lists, got {jnp.shape(rewards)}"
            )
        n, k = lists.shape
        context = jax.tree.map(jnp.asarray, context)
        fits = self.fold_fits(key, context, lists, rewards, item_features)
        listed = LoggedData(
            context=context,
            action_context=position_items(item_features, k),
            action=jnp.zeros(n, jnp.int32),
            reward=jnp.zeros(n, jnp.float32),
            pscore=jnp.ones(n, jnp.float32),
        )
        table, rows = self.reward_model.fold_predictions(fits, listed)
        return table[rows].reshape(n, k, num_rows(item_features))
