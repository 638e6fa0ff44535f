"""One optimisation step: a minibatch (:class:`Batch`), the configured objective's loss on it
(full softmax, or a sampled softmax over ``M`` items), the optimiser and the update
``(params, opt_state, batch, key) -> (params, opt_state, metrics)``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from towerjax.behavior import behavior_log_probs, behavior_loss, logged_propensity
from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.features import take
from towerjax.large_softmax import ItemProposal, sample_items, sampled_entropy, sampled_log_prob_from_ids
from towerjax.policy import log_policy
from towerjax.rows import masked_mean
from towerjax.training.config import TrainConfig

__all__ = [
    "Batch",
    "is_embedding",
    "make_optimizer",
    "make_update_step",
    "objective_loss",
    "sampled_objective_loss",
]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Batch:
    """One minibatch: the logged rows, their mask and (for DR) the reward model's ``q_hat``.

    Attributes:
      data: :class:`LoggedData` with ``B`` rows (``action_context`` is all ``A`` items).
      mask: ``[B]`` 1 for real events, 0 for the padding of a final partial batch.
      q_hat: ``[B, A]`` reward-model predictions (DR's model, the two-stage ranker's scores), or ``None``.
      proposal: the sampled softmax's item proposal (``TrainConfig.sampled_softmax``), or ``None``.
    """

    data: LoggedData
    mask: jax.Array
    q_hat: jax.Array | None = None
    proposal: ItemProposal | None = None


def is_embedding(params: dict) -> dict:
    """A pytree of bools like ``params``: ``True`` for the leaves of embedding tables
    (``embed_<name>`` modules of :func:`towerjax.towers.embed_inputs`)."""

    def leaf(path, _):
        return any(
            str(getattr(k, "key", "")).startswith(("embed_", "context_embed_", "action_embed_")) for k in path
        )

    return jax.tree_util.tree_map_with_path(leaf, params)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with L2 decay coupled as in PyTorch's ``Adam(weight_decay)``, or AdamW (decoupled).

    With ``config.embedding_weight_decay`` the embedding tables decay at that rate and the
    other parameters at ``weight_decay`` (two ``optax.add_decayed_weights`` with complementary
    masks, :func:`is_embedding`).
    """
    if config.embedding_weight_decay is None:
        if config.optimizer == "adamw":
            return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
        return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(config.learning_rate))

    def others(params):
        return jax.tree.map(lambda e: not e, is_embedding(params))

    decay = optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=others),
        optax.add_decayed_weights(config.embedding_weight_decay, mask=is_embedding),
    )
    if config.optimizer == "adamw":
        return optax.chain(optax.scale_by_adam(), decay, optax.scale(-config.learning_rate))
    return optax.chain(decay, optax.adam(config.learning_rate))


def objective_loss(
    config: TrainConfig, params: dict, batch: Batch, key: jax.Array | None = None
) -> jax.Array:
    """The configured objective's surrogate loss of one batch (``key`` drives sampled estimators
    and the sampled softmax)."""
    if config.sampled_softmax is not None:
        return sampled_objective_loss(config, params, batch, key)
    data = batch.data
    context_embedding = config.model.embed_context(params, data.context)
    scores = context_embedding @ config.model.embed_actions(params, data.action_context).T
    pscore, pi_b, extra = data.pscore, data.pi_b, 0.0
    if config.estimate_propensities:
        pscore = logged_propensity(params["behavior"], context_embedding, data.action)
        extra = behavior_loss(params["behavior"], context_embedding, data.action, mask=batch.mask)
        if config.objective.needs_pi_b:
            pi_b = jnp.exp(behavior_log_probs(params["behavior"], context_embedding))
    extras = {"pi_b": pi_b} if config.objective.needs_pi_b else {}
    return extra + config.objective.loss(
        scores=scores,
        log_pi=log_policy(scores, config.temperature),
        action=data.action,
        reward=data.reward,
        pscore=pscore,
        q_hat=batch.q_hat,
        key=key,
        mask=batch.mask,
        **extras,
    )


def sampled_objective_loss(config: TrainConfig, params: dict, batch: Batch, key: jax.Array) -> jax.Array:
    """The objective on a sampled softmax: the item tower runs on the ``B`` logged and ``M``
    sampled items; the objective reads ``log pi_hat(a_i|x_i)`` as a ``[B, 1]`` column."""
    if key is None or batch.proposal is None:
        raise InputError("key", "the sampled softmax needs a key and the batch's item proposal")
    data, objective, model = batch.data, config.objective, config.model
    b = data.action.shape[0]
    ids, log_q = sample_items(jax.random.fold_in(key, 0x5A), batch.proposal, config.sampled_softmax)
    items = model.embed_actions(params, take(data.action_context, jnp.concatenate([data.action, ids])))
    context = model.embed_context(params, data.context)
    parts = (context, data.action, items[:b], ids, items[b:], log_q)
    log_pi = sampled_log_prob_from_ids(*parts, temperature=config.temperature)
    column = jnp.zeros(b, jnp.int32)
    loss = dataclasses.replace(objective, entropy=0.0).loss(
        scores=jnp.sum(context * items[:b], axis=-1)[:, None],
        log_pi=log_pi[:, None],
        action=column,
        reward=data.reward,
        pscore=data.pscore,
        key=key,
        mask=batch.mask,
    )
    if isinstance(objective.entropy, jax.core.Tracer) or objective.entropy:
        entropy = sampled_entropy(*parts, temperature=config.temperature)
        loss = loss - objective.entropy * masked_mean(entropy, batch.mask)
    return loss


def make_update_step(config: TrainConfig) -> Callable:
    """``(params, opt_state, batch, key) -> (params, opt_state, metrics)``: one optax update.

    ``key`` drives sampled estimators (the two-stage candidate sets).
    """
    optimizer = make_optimizer(config)

    def step(params, opt_state, batch: Batch, key: jax.Array):
        loss, grads = jax.value_and_grad(objective_loss, argnums=1)(config, params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    return step
