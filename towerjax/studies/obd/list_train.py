"""Plackett-Luce list policies learned from OBD position rows (:mod:`towerjax.studies.obd.lists`).

``make_position_row_train(config, items, n_slots)`` returns ``train(key, rows) -> params`` (purejaxrl's
pattern, as :func:`towerjax.list_training.make_list_train` for whole lists): the two-tower scorer of
:class:`towerjax.towers.TwoTower`, Adam from :func:`towerjax.training.make_optimizer`, epochs and
shuffled minibatches as ``jax.lax.scan`` (a permutation reshaped to ``[n_batches, batch]``; the last
``n mod batch`` rows of each shuffle sit that epoch out), the loss
:func:`towerjax.position_rows.position_row_loss` with exact position marginals. Seeds are
``jax.jit(jax.vmap(train, (0, None)))(keys, rows)``. :func:`list_marginals` reads a trained policy's
position marginals on evaluation rows.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_choice, check_positive, check_positive_int
from towerjax.data import LoggedData
from towerjax.position_rows import POSITION_ROW_OBJECTIVES, position_row_loss, position_row_marginals
from towerjax.towers import TwoTower
from towerjax.training import TrainConfig
from towerjax.training.step import make_optimizer

__all__ = ["ListLearnerConfig", "PositionRows", "list_marginals", "make_position_row_train"]


class PositionRows(NamedTuple):
    """Position rows: ``context [N, D]``, ``item [N]`` int, ``slot [N]`` int, ``reward [N]``, ``pscore [N]``
    (the logger's ``pi_0(item at slot | x)``)."""

    context: jax.Array
    item: jax.Array
    slot: jax.Array
    reward: jax.Array
    pscore: jax.Array

    @classmethod
    def from_logged(cls, data: LoggedData) -> PositionRows:
        """The rows of a multi-position :class:`~towerjax.data.LoggedData` (``position`` required)."""
        if data.position is None:
            raise InputError("data", "expected a log with each row's position (slot)")
        return cls(
            context=jnp.asarray(data.context, jnp.float32),
            item=jnp.asarray(data.action, jnp.int32),
            slot=jnp.asarray(data.position, jnp.int32),
            reward=jnp.asarray(data.reward, jnp.float32),
            pscore=jnp.asarray(data.pscore, jnp.float32),
        )

    def take(self, rows: ArrayLike) -> PositionRows:
        """The rows ``rows`` (indices or a boolean mask)."""
        rows = np.asarray(rows)
        return PositionRows(*(column[rows] for column in self))

    @property
    def n_rows(self) -> int:
        return int(self.item.shape[0])


@dataclasses.dataclass(frozen=True)
class ListLearnerConfig:
    """A position-row list learner: its objective (:data:`~towerjax.position_rows.POSITION_ROW_OBJECTIVES`),
    weight ``cap`` (``None``: none), Plackett-Luce ``temperature`` and the towers' and optimiser's settings
    (:class:`~towerjax.training.TrainConfig`'s fields of the same names)."""

    objective: str = "iips"
    cap: float | None = 10.0
    temperature: float = 1.0
    hidden_sizes: tuple[int, ...] = (32,)
    embedding_size: int = 16
    activation: str = "elu"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 100
    epochs: int = 10

    def __post_init__(self) -> None:
        check_choice("objective", self.objective, POSITION_ROW_OBJECTIVES)
        if self.cap is not None:
            check_positive("cap", self.cap)
        check_positive("temperature", self.temperature)
        for name in ("batch_size", "epochs", "embedding_size"):
            check_positive_int(name, getattr(self, name))
        check_positive("learning_rate", self.learning_rate)

    def train_config(self) -> TrainConfig:
        """The :class:`~towerjax.training.TrainConfig` whose towers and optimiser this uses."""
        return TrainConfig(
            hidden_sizes=tuple(self.hidden_sizes),
            embedding_size=self.embedding_size,
            activation=self.activation,
            temperature=self.temperature,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            epochs=self.epochs,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _batch_loss(params, config: ListLearnerConfig, model: TwoTower, rows: PositionRows, items, n_slots: int):
    scores = model.scores(params, rows.context, items)
    return position_row_loss(
        config.objective,
        scores,
        rows.item,
        rows.slot,
        rows.reward,
        rows.pscore,
        n_slots=n_slots,
        temperature=config.temperature,
        cap=config.cap,
    )


def make_position_row_train(
    config: ListLearnerConfig, items: ArrayLike, n_slots: int
) -> Callable[[jax.Array, PositionRows], dict]:
    """``train(key, rows) -> params``: ``config.epochs`` epochs of minibatch Adam on the position-row loss.

    Args:
      config: the learner.
      items: ``[A, da]`` the item tower's inputs.
      n_slots: ``K``, the list length the policy is trained for.
    """
    items = jnp.asarray(items, jnp.float32)
    model = config.train_config().model
    optimizer = make_optimizer(config.train_config())
    grad_fn = jax.grad(_batch_loss)

    def train(key: jax.Array, rows: PositionRows) -> dict:
        n = rows.item.shape[0]
        if n < config.batch_size:
            raise InputError("rows", f"expected at least batch_size = {config.batch_size} rows, got {n}")
        n_batches = n // config.batch_size

        def minibatch(carry, batch_rows):
            params, opt_state = carry
            batch = jax.tree.map(lambda column: column[batch_rows], rows)
            grads = grad_fn(params, config, model, batch, items, n_slots)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (jax.tree.map(jnp.add, params, updates), opt_state), None

        def epoch(carry, epoch_key):
            order = jax.random.permutation(epoch_key, n)[: n_batches * config.batch_size]
            carry, _ = jax.lax.scan(minibatch, carry, order.reshape(n_batches, config.batch_size))
            return carry, None

        init_key, shuffle_key = jax.random.split(key)
        params = model.init(init_key, rows.context.shape[1], items.shape[1])
        carry = (params, optimizer.init(params))
        (params, _), _ = jax.lax.scan(epoch, carry, jax.random.split(shuffle_key, config.epochs))
        return params

    return train


@functools.partial(jax.jit, static_argnames=("model", "n_slots", "temperature"))
def _chunk_marginals(params, context, item, slot, items, *, model, n_slots, temperature):
    def one_seed(p):
        scores = model.scores(p, context, items).astype(jnp.float64)  # exact marginals in float64
        marginal = position_row_marginals(scores, item, slot, n_slots, temperature)
        return marginal, jnp.max(jax.nn.softmax(scores / temperature, axis=-1), axis=-1)

    return jax.lax.map(one_seed, params)


def list_marginals(
    model: TwoTower,
    params,
    rows: PositionRows,
    items: ArrayLike,
    n_slots: int,
    temperature: float,
    chunk: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """``[S, N]`` each seed's ``P_pi(item_i at slot_i | x_i)`` (exact), for params stacked ``[S, ...]``,
    and ``[S]`` the mean over rows of each policy's largest first-slot probability.

    Rows are scored ``chunk`` at a time (memory ``[chunk, A^(K-1)]``; the last chunk padded, so one
    compiled call serves every chunk); the marginals are computed in float64.
    """
    items = jnp.asarray(items, jnp.float32)
    n = rows.n_rows
    chunk = min(chunk, n)
    pad = -n % chunk
    padded = PositionRows(*(jnp.concatenate([c, jnp.repeat(c[:1], pad, axis=0)]) for c in rows))
    marginals, top = [], []
    for start in range(0, n + pad, chunk):
        part = slice(start, start + chunk)
        with jax.enable_x64(True):
            m, t = _chunk_marginals(
                params,
                padded.context[part],
                padded.item[part],
                padded.slot[part],
                items,
                model=model,
                n_slots=n_slots,
                temperature=float(temperature),
            )
        marginals.append(np.asarray(m, np.float64))
        top.append(np.asarray(t, np.float64))
    return np.concatenate(marginals, axis=1)[:, :n], np.concatenate(top, axis=1)[:, :n].mean(axis=1)
