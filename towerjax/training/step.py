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
from towerjax.features import Features, take
from towerjax.large_softmax import (
    ItemProposal,
    sample_items,
    sampled_entropy,
    sampled_log_prob_from_ids,
    sampled_log_softmax_from_ids,
)
from towerjax.policy import log_policy
from towerjax.reward_model import FoldFits, RewardModel
from towerjax.rows import masked_mean
from towerjax.training.config import TrainConfig
from towerjax.training.sparse import compact, gather_rows, lazy_update, scale_by_row_adagrad

__all__ = [
    "Batch",
    "TowerInputs",
    "compact_inputs",
    "is_embedding",
    "make_optimizer",
    "make_update_step",
    "objective_loss",
    "sampled_objective_loss",
    "sampled_row_q_hat",
    "tower_inputs",
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
      reward_fits: instead of ``q_hat``, with a sampled softmax: the cross-fitted reward
        models and the ``B`` rows' folds (``fold [B]``), which score each row on the logged
        and sampled items only (:func:`sampled_row_q_hat`), or ``None``.
    """

    data: LoggedData
    mask: jax.Array
    q_hat: jax.Array | None = None
    proposal: ItemProposal | None = None
    reward_fits: FoldFits | None = None


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TowerInputs:
    """What the towers read in one step (:func:`tower_inputs`), drawn before differentiating.

    Attributes:
      context: ``[B, ...]`` the context tower's input: the batch's contexts, or with sparse
        tables their ids renumbered into the rows looked up (:func:`compact_inputs`).
      items: with a sampled softmax, ``[B + M, ...]`` the item tower's input (the logged
        items, then the sampled ones); ``None`` for the full softmax (every item,
        ``batch.data.action_context``).
      sampled: ``[M]`` the sampled softmax's item ids, or ``None``.
      log_q: ``[M]`` their normalised ``log q``, or ``None``.
    """

    context: jax.Array | Features
    items: jax.Array | Features | None = None
    sampled: jax.Array | None = None
    log_q: jax.Array | None = None


def tower_inputs(config: TrainConfig, batch: Batch, key: jax.Array | None = None) -> TowerInputs:
    """The towers' inputs of ``batch``: its contexts and, with ``config.sampled_softmax = M``,
    ``M`` items drawn from the batch's proposal with ``key`` (deterministic in ``key``) and the
    ``[B + M]`` item rows the item tower runs on."""
    data = batch.data
    if config.sampled_softmax is None:
        return TowerInputs(context=data.context)
    if key is None or batch.proposal is None:
        raise InputError("key", "the sampled softmax needs a key and the batch's item proposal")
    ids, log_q = sample_items(jax.random.fold_in(key, 0x5A), batch.proposal, config.sampled_softmax)
    items = take(data.action_context, jnp.concatenate([data.action, ids]))
    return TowerInputs(context=data.context, items=items, sampled=ids, log_q=log_q)


def compact_inputs(inputs: TowerInputs, mask: jax.Array) -> tuple[TowerInputs, dict]:
    """``inputs`` with the ids of every embedding table renumbered into the rows the step looks
    up (:func:`towerjax.training.sparse.compact`), and those rows ``{tower: {name: [n]}}``.

    The context tables always; the item tables with a sampled softmax (its ``B + M`` item
    rows). Under the full softmax every item row is looked up every step, so the item tables
    stay whole (dense Adam is exact there). Rows of events with ``mask`` 0 look nothing up.
    """
    rows, context, items = {}, inputs.context, inputs.items
    if isinstance(context, Features) and context.tables:
        context, rows["context"] = compact(context, mask)
    if isinstance(items, Features) and items.tables:
        sampled = jnp.ones(items.n_rows - mask.shape[-1], mask.dtype)
        items, rows["action"] = compact(items, jnp.concatenate([mask, sampled]))
    return dataclasses.replace(inputs, context=context, items=items), rows


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

    With ``config.sparse_embeddings`` :func:`make_update_step` runs this same optimiser lazily
    on the embedding tables (:mod:`towerjax.training.sparse`): lazy Adam, TensorFlow Addons'
    ``LazyAdam`` (the rows looked up in the batch and their moments are updated, with the bias
    corrections of the global step; the other rows and moments stay), and the tables' decay
    lazy too (coupled L2 adds ``wd * E_j`` to the gradient of the looked-up rows only; AdamW
    decays the looked-up rows only). Lazy Adam is the default rather than row-wise Adagrad: it
    equals dense Adam when every row is looked up every step, so the library's tuned defaults
    carry over. The state's layout is the dense one either way.

    ``config.embedding_optimizer="row-adagrad"`` gives the tables row-wise Adagrad instead
    (:func:`~towerjax.training.sparse.scale_by_row_adagrad`: one accumulator per row,
    ``G_j <- G_j + mean(g_j^2)``, ``E_j <- E_j - lr g_j / sqrt(G_j + eps)``, at
    ``learning_rate``; decayed coupled or decoupled as the others) and Adam the rest
    (``optax.partition`` by :func:`is_embedding`).
    """
    if config.embedding_optimizer == "row-adagrad":
        return _row_adagrad_tables(config)
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


def _row_adagrad_tables(config: TrainConfig) -> optax.GradientTransformation:
    """Row-wise Adagrad for the embedding tables, the configured Adam for the other parameters."""
    table_decay = (
        config.weight_decay if config.embedding_weight_decay is None else config.embedding_weight_decay
    )
    lr = config.learning_rate
    if config.optimizer == "adamw":
        dense = optax.adamw(lr, weight_decay=config.weight_decay)
        tables = optax.chain(scale_by_row_adagrad(), optax.add_decayed_weights(table_decay), optax.scale(-lr))
    else:
        dense = optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(lr))
        tables = optax.chain(optax.add_decayed_weights(table_decay), scale_by_row_adagrad(), optax.scale(-lr))

    def labels(params):
        return jax.tree.map(lambda e: "tables" if e else "dense", is_embedding(params))

    return optax.partition({"dense": dense, "tables": tables}, labels)


def objective_loss(
    config: TrainConfig,
    params: dict,
    batch: Batch,
    key: jax.Array | None = None,
    inputs: TowerInputs | None = None,
) -> jax.Array:
    """The configured objective's surrogate loss of one batch (``key`` drives sampled estimators
    and the sampled softmax; ``inputs``, default :func:`tower_inputs`, what the towers read)."""
    if config.sampled_softmax is not None:
        return sampled_objective_loss(config, params, batch, key, inputs)
    data = batch.data
    context = data.context if inputs is None else inputs.context
    context_embedding = config.model.embed_context(params, context)
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


def sampled_objective_loss(
    config: TrainConfig, params: dict, batch: Batch, key: jax.Array, inputs: TowerInputs | None = None
) -> jax.Array:
    """The objective on a sampled softmax: the item tower runs on the ``B`` logged and ``M``
    sampled items ``j_1..j_M ~ q``; the objective reads ``log pi_hat(a_i|x_i)`` as a ``[B, 1]``
    column.

    DR and its variants (``objective.sampled_row``) read the sampled row ``[B, 1 + M]``
    instead (:func:`~towerjax.large_softmax.sampled_log_softmax_from_ids`: the logged item
    ``c_0 = a_i``, then ``c_m = j_m``, self-normalised weights ``p_hat_ic``) with ``q_hat`` of
    the same items (:func:`sampled_row_q_hat`); DR's surrogate is then

    .. math::
        L = -\\frac1B \\sum_i \\Big[ \\hat w_i (r_i - \\hat q(x_i, a_i)) \\log \\hat p_{i0}
            + \\sum_c \\mathrm{sg}(\\hat p_{ic}) \\hat q(x_i, c) \\log \\hat p_{ic} \\Big],
        \\quad \\hat w_i = \\mathrm{sg}(\\hat p_{i0}) / p_i ,

    whose direct part estimates ``sum_a pi(a|x_i) q_hat(x_i, a)`` by
    ``sum_c p_hat_ic q_hat(x_i, c) = (e^{z_{ia_i}} q_hat_{ia_i} + sum_{m: j_m != a_i}
    e^{z_{ij_m}} q_hat_{ij_m} / (M q(j_m))) / Z_hat_i``: numerator and ``Z_hat_i`` are unbiased
    (the logged item exact, accidental hits dropped), so the ratio and its gradient
    ``sum_c p_hat_ic (q_hat_ic - dm_hat_i) grad z_ic`` are consistent, bias ``O(1/M)``. The
    logged item is in the row because the residual term's ``log pi_hat(a_i|x_i)`` and the
    entropy estimate normalise over it: one sampled policy ``p_hat`` for every term.
    """
    inputs = tower_inputs(config, batch, key) if inputs is None else inputs  # the draw, the towers' rows
    data, objective, model = batch.data, config.objective, config.model
    b = data.action.shape[0]
    ids, log_q = inputs.sampled, inputs.log_q
    items = model.embed_actions(params, inputs.items)
    context = model.embed_context(params, inputs.context)
    parts = (context, data.action, items[:b], ids, items[b:], log_q)
    column = jnp.zeros(b, jnp.int32)
    if objective.sampled_row:
        log_pi = sampled_log_softmax_from_ids(*parts, temperature=config.temperature)
        scores = jnp.concatenate([jnp.sum(context * items[:b], axis=-1)[:, None], context @ items[b:].T], -1)
        # The reward model reads the items' own features (inputs.items may be renumbered ids).
        item_features = take(data.action_context, jnp.concatenate([data.action, ids]))
        q_hat = sampled_row_q_hat(config, batch, ids, item_features)
    else:
        log_pi = sampled_log_prob_from_ids(*parts, temperature=config.temperature)[:, None]
        scores, q_hat = jnp.sum(context * items[:b], axis=-1)[:, None], None
    loss = dataclasses.replace(objective, entropy=0.0).loss(
        scores=scores,
        log_pi=log_pi,
        action=column,
        reward=data.reward,
        pscore=data.pscore,
        q_hat=q_hat,
        key=key,
        mask=batch.mask,
    )
    if isinstance(objective.entropy, jax.core.Tracer) or objective.entropy:
        entropy = sampled_entropy(*parts, temperature=config.temperature)
        loss = loss - objective.entropy * masked_mean(entropy, batch.mask)
    return loss


def sampled_row_q_hat(config: TrainConfig, batch: Batch, ids: jax.Array, item_features) -> jax.Array:
    """``[B, 1 + M]`` ``q_hat(x_i, c)`` on row ``i``'s sampled row: its logged item, then the samples.

    From ``batch.q_hat`` ``[B, A]`` when given (gathered), else scored by the reward models of
    ``batch.reward_fits``: row ``i`` by ``params[fold_i]``, the model not fitted on it (what
    :meth:`~towerjax.RewardModel.cross_fit` predicts, on these items only; nothing ``[B, A]``).
    ``item_features`` are the ``B + M`` items' features (``action_context`` rows
    ``concat(action, ids)``).
    """
    action = batch.data.action
    if batch.q_hat is not None:
        return jnp.concatenate(
            [jnp.take_along_axis(batch.q_hat, action[:, None], 1), batch.q_hat[:, ids]], -1
        )
    if batch.reward_fits is None:
        raise InputError(
            "q_hat", f"the {config.objective.name} objective needs q_hat [B, A] or the batch's reward_fits"
        )
    reward_model, fits, context = RewardModel(config.reward_model), batch.reward_fits, batch.data.context
    b = action.shape[0]
    logged, sampled = (
        jax.tree.map(lambda v: v[:b], item_features),
        jax.tree.map(lambda v: v[b:], item_features),
    )

    def row(params, context, logged):  # one model on [n] rows: [n, 1 + M]
        on_logged = reward_model.predict_logged(params, context, logged)[:, None]
        return jnp.concatenate([on_logged, reward_model.predict(params, context, sampled)], axis=-1)

    if jax.tree.leaves(fits.params)[0].shape[0] == 1:  # in-sample: one model for every row
        return row(jax.tree.map(lambda v: v[0], fits.params), context, logged)
    # Each row by its own fold's model only (the B (1 + M) pairs once, not once per fold).
    own = jax.tree.map(lambda v: v[fits.fold], fits.params)
    one = jax.tree.map(lambda v: v[:, None], (context, logged))
    return jax.vmap(row)(own, *one)[:, 0]


def make_update_step(config: TrainConfig) -> Callable:
    """``(params, opt_state, batch, key) -> (params, opt_state, metrics)``: one optax update.

    ``key`` drives sampled estimators (the two-stage candidate sets) and the sampled softmax's
    draw. ``opt_state`` is ``make_optimizer(config).init(params)``'s. With
    ``config.sparse_embeddings`` (the default) the embedding tables a step looks up a part of
    (the context tables; the item tables under a sampled softmax) update lazily: the loss is
    differentiated w.r.t. the rows looked up and the optimiser updates those rows and their
    moments only (:mod:`towerjax.training.sparse`), ``O(rows looked up)`` per step; without
    tables this is the dense update, op for op.
    """
    optimizer = make_optimizer(config)

    def step(params, opt_state, batch: Batch, key: jax.Array):
        inputs, rows = tower_inputs(config, batch, key), {}
        if config.sparse_embeddings:
            inputs, rows = compact_inputs(inputs, batch.mask)
        sub_params = gather_rows(params, rows)
        loss, grads = jax.value_and_grad(objective_loss, argnums=1)(config, sub_params, batch, key, inputs)
        params, opt_state = lazy_update(optimizer, grads, opt_state, params, sub_params, rows)
        return params, opt_state, {"loss": loss}

    return step
