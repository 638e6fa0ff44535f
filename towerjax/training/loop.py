"""One training run: ``make_train(config, problem)`` returns ``train(key)``, pure in its key (SPEC 6).

``train`` is a short composition of the functions below: the run's logs (drawn from the
synthetic problem, or given; the validation rows held out, :func:`validation_rows`; the
reward models fitted, :func:`prepare_logs`), the initial parameters, then ``epochs`` of
:func:`train_epoch` under ``jax.lax.scan``: shuffled minibatches through one optax update
step (:func:`minibatch_step`), the policy's values (:func:`policy_values`), its validation
estimates (:func:`validation_estimates_of`) and the epoch kept by the selection criterion
(:func:`selection_score`, :func:`keep_best`, :func:`returned_epoch`). Seeds are a ``vmap``::

    results = jax.jit(jax.vmap(make_train(TrainConfig())))(jax.random.split(key, 8))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from towerjax.batching import epoch_batches, map_row_chunks, num_batches, row_chunk
from towerjax.behavior import init_behavior_head
from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.evaluation import Z_95, estimates_from_terms
from towerjax.features import feature_spec
from towerjax.large_softmax import ItemProposal, item_proposal, popularity_log_q, uniform_log_q
from towerjax.policy import log_policy
from towerjax.reward_model import FoldFits, RewardModel, context_groups
from towerjax.rows import take_logged
from towerjax.synthetic import SyntheticProblem
from towerjax.training.config import VALIDATION_DR_PAIRS, TrainConfig, with_traced
from towerjax.training.memory import check_run_memory
from towerjax.training.parallel import batch_mesh
from towerjax.training.step import Batch, make_optimizer, make_update_step

__all__ = [
    "ESTIMATE_NAMES",
    "RunLogs",
    "TrainResult",
    "estimator_inputs",
    "init_params",
    "initial_best",
    "item_embeddings",
    "keep_best",
    "make_train",
    "minibatch_step",
    "policy_values",
    "prepare_logs",
    "returned_epoch",
    "selection_score",
    "train_epoch",
    "validates_dr",
    "validation_estimates_of",
    "validation_rows",
]

# The validation estimates of an epoch (TrainResult.validation, .selected_validation).
ESTIMATE_NAMES = ("snips", "snips_se", "dr", "dr_se")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run returns; under ``vmap`` every field gains a leading ``[S]`` axis.

    Attributes:
      params: final tower parameters.
      loss: ``[E]`` mean training loss of each epoch.
      train_value: ``[E]`` true value of the policy on the training contexts after each epoch.
      test_value: ``[E]`` true value on the held-out test contexts after each epoch.
      initial_value: test value of the untrained policy.
      behavior_value: test value of the logging policy.
      optimal_value: test value of the best policy, ``mean_i max_a q(x_i, a)``.
      top_share: ``[E]`` share of the test contexts whose top-scored item is the single most
        common one (1.0: the policy sends everyone to one item, a collapse); for logs with no
        true values and no ``test_data``, of the validation contexts.
      validation: ``{"snips", "snips_se", "dr", "dr_se"}`` each ``[E]``: the off-policy
        estimates on the validation logs after each epoch (NaN without validation logs).
      selected_epoch: the epoch whose parameters ``params`` are (``config.select``; 0 is the
        initial policy), else ``epochs``.
      selected_value: the test value of that epoch.
      selected_validation: ``{"snips", "snips_se", "dr", "dr_se"}`` scalars: the validation
        estimates of the returned ``params`` (of the initial policy when ``selected_epoch``
        is 0; NaN without validation logs).
      initial_validation: ``{"snips", "snips_se", "dr", "dr_se"}`` scalars: the validation
        estimates of the initial policy (epoch 0 of the curves; NaN without validation logs).
    """

    params: dict
    loss: jax.Array
    train_value: jax.Array
    test_value: jax.Array
    initial_value: jax.Array
    behavior_value: jax.Array
    optimal_value: jax.Array
    top_share: jax.Array
    validation: dict
    selected_epoch: jax.Array
    selected_value: jax.Array
    selected_validation: dict
    initial_validation: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RunLogs:
    """One run's logs once split and fitted (:func:`prepare_logs`).

    Attributes:
      train: the ``n`` training rows.
      test: where values and the top-item share are reported (``test_data``; else the
        training logs before the split, or for logs without true values the validation rows).
      validation: the validation logs, or ``None``.
      q_hat: ``[m, A]`` the reward model's predictions for the training rows (objectives that
        need one), or ``None``: training row ``i``'s are ``q_hat[q_rows[i]]``
        (:meth:`~towerjax.reward_model.RewardModel.fold_predictions`: one row per distinct
        context and fold, or per row).
      validation_fit: a reward model fitted on the training rows that scores the validation
        rows for the DR estimate (:func:`validates_dr`), or ``None``.
      proposal: the sampled softmax's item proposal, or ``None``.
      reward_fits: with a sampled softmax, instead of ``q_hat``: the cross-fitted reward models
        and each training row's fold (the minibatches score their rows on the sampled items),
        or ``None``.
      q_rows: ``[n]`` int32 row of ``q_hat`` of each training row; ``None``: row ``i``'s is ``i``.
      validation_q: ``(table [m, A], rows [n_val])``: ``validation_fit``'s predictions for the
        validation rows, ``table[rows[j]]``, computed once per run (the fit is fixed); ``None``
        where they would hold more than :data:`~towerjax.training.config.VALIDATION_DR_PAIRS`
        pairs (each epoch then predicts them in chunks).
    """

    train: LoggedData
    test: LoggedData
    validation: LoggedData | None
    q_hat: jax.Array | None
    validation_fit: Any
    proposal: ItemProposal | None
    reward_fits: FoldFits | None = None
    q_rows: jax.Array | None = None
    validation_q: tuple[jax.Array, jax.Array] | None = None


def validation_rows(key: jax.Array, n: int, fraction: float) -> tuple[jax.Array, jax.Array]:
    """``(train_rows, validation_rows)``: a random ``round(fraction * n)`` of ``n`` rows held out.

    One permutation of the rows by ``key`` (``jax.random.permutation``): the validation rows
    are its last ``round(fraction * n)`` entries, the training rows the rest, in that order.

    Raises:
      InputError: naming ``validation_fraction`` unless at least 2 rows are held out and at
        least one is left for training.
    """
    n_validation = round(fraction * n)
    if not 2 <= n_validation <= n - 1:
        raise InputError(
            "validation_fraction",
            f"{fraction} of {n} rows leaves {n_validation} for "
            "validation; expected at least 2 and at least one training row",
        )
    order = jax.random.permutation(key, n)
    return order[: n - n_validation], order[n - n_validation :]


def validates_dr(config: TrainConfig, validation: LoggedData, n_rows: int | None = None) -> bool:
    """Whether the DR validation estimate is computed (``TrainConfig.validation_dr``) on
    ``validation``'s items and its rows (or ``n_rows`` of them, before the split is drawn)."""
    if config.validation_dr is not None:
        return config.validation_dr
    needed = config.select is not None and config.select.startswith("dr")
    n_rows = validation.n_rounds if n_rows is None else n_rows
    return needed or n_rows * validation.n_actions <= VALIDATION_DR_PAIRS


def prepare_logs(
    config: TrainConfig,
    reward_model: RewardModel,
    keys: tuple[jax.Array, jax.Array, jax.Array],
    data: LoggedData,
    test_data: LoggedData | None,
    q_hat: jax.Array | None,
    validation: LoggedData | None,
    *,
    distinct_contexts: int | None = None,
) -> RunLogs:
    """The run's logs: ``config.validation_fraction`` of ``data`` held out (unless
    ``validation`` is given), the objective's reward model cross-fitted on the training rows
    (unless ``q_hat`` is given) and the DR validation model fitted on them.

    ``keys`` are ``(key_split, key_q, key_validation_q)``: the split, the objective's reward
    model and the validation reward model. ``distinct_contexts`` (static, at least the number
    of distinct context rows of ``data``, :func:`~towerjax.reward_model.distinct_contexts`):
    the reward models score each distinct context once
    (:func:`~towerjax.reward_model.context_groups`), the same numbers up to float rounding.
    """
    key_split, key_q, key_validation_q = keys
    objective = config.objective
    own_test = test_data is None
    if own_test:
        test_data = data
    if objective.needs_pi_b and data.pi_b is None and not config.estimate_propensities:
        raise InputError(
            "kl",
            "the KL penalty needs the logging policy's distribution: logs with pi_b, "
            "or estimate_propensities=True (the behaviour head)",
        )
    groups = validation_groups = None
    if distinct_contexts is not None:
        groups = context_groups(data.context, distinct_contexts)
    if validation is None and config.validation_fraction > 0:
        train_rows, held_out = validation_rows(key_split, data.n_rounds, config.validation_fraction)
        if q_hat is not None and not objective.needs_q_hat:
            q_hat = None
        data, validation = data.take_rows(train_rows), data.take_rows(held_out)
        q_hat = None if q_hat is None else q_hat[train_rows]
        if groups is not None:
            groups, validation_groups = groups.take_rows(train_rows), groups.take_rows(held_out)
    batch_size = min(config.batch_size, data.n_rounds)
    if batch_size % config.data_parallel:
        raise InputError(
            "data_parallel",
            f"the {data.n_rounds} training rows give batches of {batch_size}, not a multiple of "
            f"{config.data_parallel}",
        )
    reward_fits = q_rows = None
    if not objective.needs_q_hat:
        q_hat = None
    elif q_hat is None and config.sampled_softmax is not None:
        # No [n, A] predictions: each minibatch scores its rows on the sampled items.
        reward_fits = reward_model.fold_fits(key_q, data)
    elif q_hat is None:  # cross_fit's predictions, each fold's model on its rows' contexts
        fits = reward_model.fold_fits(key_q, data)
        q_hat, q_rows = reward_model.fold_predictions(fits, data, groups)
    if own_test and not test_data.has_true_values and validation is not None:
        # Own logs: no true values to report, only the top-item share; the validation
        # rows show it without scoring every training row against every item each epoch.
        test_data = validation
    validation_fit = validation_q = None
    if validation is not None and validates_dr(config, validation):
        validation_fit = reward_model.fit(key_validation_q, data)
        table_rows = reward_model.table_rows(validation.n_rounds, validation_groups)
        if table_rows * validation.n_actions <= VALIDATION_DR_PAIRS:  # else predicted every epoch
            validation_q = reward_model.predict_rows(validation_fit, validation, validation_groups)
    proposal = None
    if config.sampled_softmax is not None:
        if config.proposal == "popularity":
            log_q = popularity_log_q(jnp.bincount(data.action, length=data.n_actions))
        else:
            log_q = uniform_log_q(data.n_actions)
        proposal = item_proposal(log_q)
    return RunLogs(
        data, test_data, validation, q_hat, validation_fit, proposal, reward_fits, q_rows, validation_q
    )


def init_params(config: TrainConfig, key_init: jax.Array, key_q: jax.Array, logs: LoggedData) -> tuple:
    """``(towers, params)``: the towers' initial parameters for ``logs``' features, and with
    ``config.estimate_propensities`` the same plus a behaviour head under ``"behavior"``."""
    towers = config.model.init(key_init, feature_spec(logs.context), feature_spec(logs.action_context))
    if not config.estimate_propensities:
        return towers, towers
    head = init_behavior_head(jax.random.fold_in(key_q, 1), logs.n_actions, config.embedding_size)
    return towers, {**towers, "behavior": head}


def item_embeddings(config: TrainConfig, params: dict, *tables) -> tuple:
    """``g(e_a)`` ``[A, D]`` of each item table (``None`` stays ``None``), run once per distinct
    table object (the training, validation and test logs share one; the item tower over a
    large catalogue is the costly part of an evaluation)."""
    done = {}
    for table in tables:
        if table is not None and id(table) not in done:
            done[id(table)] = config.model.embed_actions(params, table)
    return tuple(None if table is None else done[id(table)] for table in tables)


def _value_rows(config: TrainConfig, params: dict, items: jax.Array, problem: Any, rows: dict) -> dict:
    """Per row: the top-scored item and (with ``q``, or a ``problem`` that computes the chunk's
    ``q`` rows) the policy's value ``sum_a pi(a|x) q(x, a)``."""
    scores = config.model.embed_context(params, rows["context"]) @ items.T
    out = {"top": jnp.argmax(scores, axis=-1)}
    q = rows["q"] if "q" in rows else None if problem is None else problem.expected_reward(rows["context"])
    if q is not None:
        out["value"] = jnp.sum(jnp.exp(log_policy(scores, config.temperature)) * q, axis=-1)
    return out


def policy_values(
    config: TrainConfig, params: dict, logs: LoggedData, items: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """True value (NaN without true values, :attr:`LoggedData.has_true_values`) and the top-item
    share on ``logs``, over chunks of rows (:func:`~towerjax.batching.map_row_chunks`; ``q`` from
    ``expected_reward``, else computed chunk by chunk by ``logs.problem``); ``items`` are the
    logs' item embeddings (:func:`item_embeddings`, computed here when not given)."""
    if items is None:
        (items,) = item_embeddings(config, params, logs.action_context)
    rows = {"context": logs.context}
    if logs.expected_reward is not None:
        rows["q"] = logs.expected_reward
    problem = logs.problem if logs.expected_reward is None else None
    per_row = functools.partial(_value_rows, config, params, items, problem)
    out = map_row_chunks(per_row, rows, row_chunk(logs.n_rounds, logs.n_actions))
    top_share = jnp.max(jnp.bincount(out["top"], length=logs.n_actions)) / logs.n_rounds
    if "value" not in out:
        return jnp.full((), jnp.nan), top_share
    return jnp.mean(out["value"]), top_share


def _estimator_rows(config, reward_model, fit, params, items, action_context, q_table, rows: dict) -> dict:
    """Per validation row: ``w = pi(a|x) / p``, and with a reward model ``fit`` DR's
    ``direct = sum_a pi(a|x) q_hat(x, a)`` and ``q_logged = q_hat(x, a)`` (``q_hat`` read from
    ``q_table`` at ``rows["q_row"]`` when given, else predicted)."""
    scores = config.model.embed_context(params, rows["context"]) @ items.T
    pi = jnp.exp(log_policy(scores, config.temperature))
    out = {"w": take_logged(pi, rows["action"]) / rows["pscore"]}
    if fit is not None:
        if q_table is None:
            q_hat = reward_model.predict(fit, rows["context"], action_context)
        else:
            q_hat = q_table[rows["q_row"]]
        out["direct"] = jnp.sum(pi * q_hat, axis=-1)
        out["q_logged"] = take_logged(q_hat, rows["action"])
    return out


def estimator_inputs(
    config: TrainConfig,
    reward_model: RewardModel,
    fit: Any,
    params: dict,
    logs: LoggedData,
    items: jax.Array | None = None,
    *,
    q_hat: tuple[jax.Array, jax.Array] | None = None,
) -> dict[str, jax.Array]:
    """The per-row inputs of the off-policy estimators for the policy ``params`` on ``logs``,
    in chunks of rows: ``{"w"}`` ``[n]`` (``w_i = pi(a_i|x_i) / p_i``), and with a reward
    model ``fit`` (of ``reward_model``, fitted on other rows) also ``"direct"``
    (``sum_a pi(a|x_i) q_hat(x_i, a)``) and ``"q_logged"`` (``q_hat(x_i, a_i)``). ``q_hat``
    ``(table [m, A], rows [n])``: ``fit``'s predictions computed beforehand (row ``i``'s are
    ``table[rows[i]]``, :attr:`RunLogs.validation_q`), read instead of predicted."""
    if items is None:
        (items,) = item_embeddings(config, params, logs.action_context)
    rows = {"context": logs.context, "action": logs.action, "pscore": logs.pscore}
    q_table = None
    if fit is not None and q_hat is not None:
        q_table, rows["q_row"] = q_hat
    per_row = functools.partial(
        _estimator_rows, config, reward_model, fit, params, items, logs.action_context, q_table
    )
    return map_row_chunks(per_row, rows, row_chunk(logs.n_rounds, logs.n_actions))


def validation_estimates_of(
    config: TrainConfig,
    reward_model: RewardModel,
    params: dict,
    logs: RunLogs,
    items: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """SNIPS and DR estimates with standard errors of the policy ``params`` on the validation
    logs (:func:`towerjax.evaluation.estimates_from_terms` of :func:`estimator_inputs`);
    NaN without validation logs, DR NaN without ``logs.validation_fit``."""
    validation = logs.validation
    if validation is None:
        return {k: jnp.full((), jnp.nan) for k in ESTIMATE_NAMES}
    terms = estimator_inputs(
        config, reward_model, logs.validation_fit, params, validation, items, q_hat=logs.validation_q
    )
    return estimates_from_terms(terms["w"], validation.reward, terms.get("direct"), terms.get("q_logged"))


def selection_score(select: str | None, estimates: dict[str, jax.Array]) -> jax.Array:
    """The selection criterion of an epoch, higher is better: the estimate ``select`` names
    (``"snips"``, ``"dr"``), or its lower 95% bound (``"snips-lower"``, ``"dr-lower"``);
    ``-inf`` where it is NaN, 0 without a criterion."""
    if select is None:
        return jnp.zeros(())
    name = select.removesuffix("-lower")
    value = estimates[name]
    if select.endswith("-lower"):
        value = value - Z_95 * estimates[name + "_se"]
    return jnp.where(jnp.isnan(value), -jnp.inf, value)


def keep_best(
    select: str, best: dict, epoch: jax.Array, params: dict, test_value: jax.Array, estimates: dict
) -> dict:
    """``best`` (``{"score", "epoch", "params", "test_value", "estimates"}``) replaced by this
    epoch's when its :func:`selection_score` is strictly higher."""
    score = selection_score(select, estimates)
    better = score > best["score"]
    return {
        "score": jnp.where(better, score, best["score"]),
        "epoch": jnp.where(better, epoch, best["epoch"]),
        "params": jax.tree.map(lambda b, p: jnp.where(better, p, b), best["params"], params),
        "test_value": jnp.where(better, test_value, best["test_value"]),
        "estimates": jax.tree.map(lambda b, e: jnp.where(better, e, b), best["estimates"], estimates),
    }


def minibatch_step(
    update: Callable,
    action_context,
    proposal: ItemProposal | None,
    state: tuple,
    inputs: tuple,
    *,
    reward_fits: FoldFits | None = None,
    q_table: jax.Array | None = None,
) -> tuple[tuple, jax.Array]:
    """One update on one minibatch: ``(params, opt_state)`` and ``(rows, mask, key)`` in, the
    new state and the batch's summed loss (mean loss times its real events) out. With
    ``reward_fits`` the rows carry their ``"fold"``; with ``q_table`` (``RunLogs.q_hat``) their
    ``"q_row"``, and the batch's ``q_hat`` ``[B, A]`` is ``q_table[q_row]``."""
    params, opt_state = state
    rows, mask, key = inputs
    q_hat = rows.get("q_hat") if q_table is None else q_table[rows["q_row"]]
    batch = Batch(
        data=LoggedData(
            context=rows["context"],
            action_context=action_context,
            action=rows["action"],
            reward=rows["reward"],
            pscore=rows["pscore"],
            pi_b=rows.get("pi_b"),
        ),
        mask=mask,
        q_hat=q_hat,
        proposal=proposal,
        reward_fits=None if reward_fits is None else dataclasses.replace(reward_fits, fold=rows["fold"]),
    )
    params, opt_state, metrics = update(params, opt_state, batch, key)
    return (params, opt_state), metrics["loss"] * jnp.sum(mask)


def _per_event(config: TrainConfig, logs: RunLogs) -> dict:
    """The training rows' arrays a minibatch reads, each ``[n, ...]``."""
    data = logs.train
    out = {"context": data.context, "action": data.action, "reward": data.reward, "pscore": data.pscore}
    if logs.q_hat is not None:  # an [n] index per epoch, not an [n, A] copy
        rows = jnp.arange(data.n_rounds, dtype=jnp.int32) if logs.q_rows is None else logs.q_rows
        out["q_row"] = rows
    if logs.reward_fits is not None:
        out["fold"] = logs.reward_fits.fold
    if config.objective.needs_pi_b and data.pi_b is not None:
        out["pi_b"] = data.pi_b
    return out


def train_epoch(
    config: TrainConfig,
    update: Callable,
    reward_model: RewardModel,
    logs: RunLogs,
    mesh: Mesh | None,
    on_epoch: Callable[[int], None] | None,
    carry: tuple,
    inputs: tuple,
) -> tuple[tuple, tuple]:
    """One epoch, the body of the run's ``lax.scan``: ``((state, best), (key, epoch_index))`` to
    the new carry and the epoch's ``(loss, train_value, test_value, top_share, estimates)``.

    The training rows in a fresh random order, reshaped to ``[n_batches, B]`` and scanned
    through :func:`minibatch_step`; with ``config.patience`` the parameters stay where they
    were once that many epochs passed without improvement. Then the values on the training
    and test logs, the validation estimates, and :func:`keep_best`.
    """
    state, best = carry
    key, index_epoch = inputs
    data = logs.train
    n, batch_size = data.n_rounds, min(config.batch_size, data.n_rounds)
    key_order, key_steps = jax.random.split(key)
    index, mask = epoch_batches(key_order, n, batch_size)
    # One gather per epoch: the scan then reads contiguous [B, ...] slices.
    rows = jax.tree.map(lambda a: a[index], _per_event(config, logs))
    if config.data_parallel > 1:  # events of every batch spread over the "batch" devices
        events = NamedSharding(mesh, PartitionSpec(None, "batch"))
        rows, mask = jax.lax.with_sharding_constraint((rows, mask), events)
    step_keys = jax.random.split(key_steps, num_batches(n, batch_size))
    step = functools.partial(
        minibatch_step,
        update,
        data.action_context,
        logs.proposal,
        reward_fits=logs.reward_fits,
        q_table=logs.q_hat,
    )
    new_state, weighted = jax.lax.scan(step, state, (rows, mask, step_keys))
    if config.patience is not None:  # stopped early: the parameters stay where they were
        stopped = index_epoch - best["epoch"] > config.patience
        new_state = jax.tree.map(lambda old, new: jnp.where(stopped, old, new), state, new_state)
    params = new_state[0]
    train_items, test_items, validation_items = item_embeddings(
        config,
        params,
        data.action_context,
        logs.test.action_context,
        None if logs.validation is None else logs.validation.action_context,
    )
    if config.evaluate_train and data.has_true_values:
        train_value = policy_values(config, params, data, train_items)[0]
    else:
        train_value = jnp.full((), jnp.nan)
    test_value, top_share = policy_values(config, params, logs.test, test_items)
    estimates = validation_estimates_of(config, reward_model, params, logs, validation_items)
    if config.select is not None:
        best = keep_best(config.select, best, index_epoch + 1, params, test_value, estimates)
    if on_epoch is not None:
        jax.debug.callback(lambda e: on_epoch(int(e)), index_epoch + 1)
    return (new_state, best), (jnp.sum(weighted) / n, train_value, test_value, top_share, estimates)


def initial_best(config: TrainConfig, estimates: dict, params: dict, initial_value: jax.Array) -> dict:
    """The selection's starting point, :func:`keep_best`'s ``best``: the initial policy (epoch 0,
    its test value and validation ``estimates``) when ``config.select`` chooses an epoch; else
    nothing to compare against."""
    best = {"score": jnp.full((), -jnp.inf), "epoch": jnp.zeros((), jnp.int32)}
    best.update(params=None, test_value=None, estimates=None)
    if config.select is not None:
        score = selection_score(config.select, estimates)
        best.update(score=score, params=params, test_value=initial_value, estimates=estimates)
    return best


def returned_epoch(
    config: TrainConfig, params: dict, best: dict, test_value: jax.Array, estimates: dict
) -> tuple[dict, jax.Array, jax.Array, dict]:
    """``(params, selected_epoch, selected_value, selected_validation)`` of the parameters a run
    returns: the best epoch's (``config.select``), else the last epoch's ``params``, with the
    test value and the validation estimates of the ``[E]`` curves' last entry."""
    if config.select is not None:
        return best["params"], best["epoch"], best["test_value"], best["estimates"]
    last = {name: curve[-1] for name, curve in estimates.items()}
    return params, jnp.asarray(config.epochs, jnp.int32), test_value[-1], last


def _logging_and_best_values(test: LoggedData) -> tuple[jax.Array, jax.Array]:
    """Test values of the logging policy, ``mean_i sum_a pi_0(a|x_i) q(x_i, a)``, and of the best
    policy, ``mean_i max_a q(x_i, a)`` (NaN without true values); from ``expected_reward`` and
    ``pi_b``, else computed in chunks of rows by ``test.problem``."""
    if test.expected_reward is None and test.problem is not None:
        out = map_row_chunks(
            functools.partial(_true_value_rows, test.problem),
            test.context,
            row_chunk(test.n_rounds, test.n_actions),
        )
        return jnp.mean(out["behavior"]), jnp.mean(out["best"])
    if test.expected_reward is None:
        return jnp.full((), jnp.nan), jnp.full((), jnp.nan)
    q = test.expected_reward
    behavior_value = jnp.full((), jnp.nan) if test.pi_b is None else jnp.mean(jnp.sum(test.pi_b * q, -1))
    return behavior_value, jnp.mean(jnp.max(q, axis=-1))


def _true_value_rows(problem: Any, context: jax.Array) -> dict:
    """Per row of a chunk: the logging policy's value and the best item's ``q``."""
    q = problem.expected_reward(context)
    return {"behavior": jnp.sum(problem.behavior_policy(context) * q, -1), "best": jnp.max(q, axis=-1)}


def make_train(
    config: TrainConfig,
    problem: SyntheticProblem | None = None,
    *,
    on_epoch: Callable[[int], None] | None = None,
    mesh: Mesh | None = None,
    distinct_contexts: int | None = None,
) -> Callable[..., TrainResult]:
    """Returns ``train(key, data=None, test_data=None, q_hat=None, validation=None,
    hyperparameters=None) -> TrainResult``, pure in its key.

    ``distinct_contexts`` (static): at least the number of distinct context rows of the
    ``data`` the runs are given (:func:`~towerjax.reward_model.distinct_contexts`); the reward
    models then score each distinct context once (:func:`prepare_logs`), the same numbers up
    to float rounding. :func:`~towerjax.training.compile_seeds` passes it for given logs.

    ``hyperparameters`` ``{name: scalar}`` replaces those settings of ``config`` inside the run
    (names from :data:`~towerjax.training.config.TRACED_FIELDS`: learning rate, weight decay,
    temperature, entropy bonus; :func:`~towerjax.training.config.with_traced`); they may be
    traced, so ``vmap`` over them trains a grid of candidates as one compiled call
    (:mod:`towerjax.training.search`). The optimiser then reads its learning rate and decay
    from those values (the traced equivalent of ``optax.inject_hyperparams``).

    Without ``data`` the run draws ``problem`` (default :class:`~towerjax.synthetic.SyntheticProblem()`)
    from its key and logs its ``n_rounds`` training and ``n_test_rounds`` test events
    (``config.batch_size`` may not exceed ``n_rounds``). Given ``data``
    (a :class:`LoggedData`), it trains on those; values are reported where
    ``expected_reward`` is known (test values on ``test_data``, else on ``data``) and are
    NaN otherwise. When the objective needs a reward model (``needs_q_hat``), it is
    cross-fitted on ``data`` (``config.reward_model.folds``, default 2: each row's ``q_hat``
    comes from a model that did not see it) unless ``q_hat`` ``[n, A]`` (predictions for
    ``data``'s rows) is given.

    Validation by off-policy evaluation: with ``validation`` logs, or
    ``config.validation_fraction > 0`` (that share of the training rows held out at
    random, :func:`validation_rows`), each epoch records the SNIPS and DR estimates of the
    policy on the validation logs with their standard errors
    (:func:`towerjax.evaluation.estimates_from_terms`; DR's reward model is fitted on the
    training rows only). ``config.select`` then returns the parameters of the best epoch by
    that estimate (or by its lower 95% bound), and ``config.patience`` stops updating after
    that many epochs without improvement.

    ``on_epoch(epoch)``, if given, is called on the host with the epoch number (an int) after
    every epoch (``jax.debug.callback``; under ``vmap`` once for the batch of seeds), e.g. to
    drive a progress bar.

    With ``config.data_parallel > 1`` each minibatch's event axis is constrained to the
    ``"batch"`` axis of ``mesh`` (default: a 1-d mesh of the first ``data_parallel``
    devices, :func:`~towerjax.training.parallel.batch_mesh`); :func:`compile_seeds` passes
    its ``seed x batch`` mesh.
    """
    if config.data_parallel > 1 and mesh is None:
        mesh = batch_mesh(config.data_parallel)
    problem = problem or SyntheticProblem()
    reward_model = RewardModel(config.reward_model)
    static_config = config

    def train(
        key: jax.Array,
        data: LoggedData | None = None,
        test_data: LoggedData | None = None,
        q_hat: jax.Array | None = None,
        validation: LoggedData | None = None,
        hyperparameters: dict[str, jax.Array] | None = None,
    ) -> TrainResult:
        config = static_config if not hyperparameters else with_traced(static_config, hyperparameters)
        optimizer = make_optimizer(config)
        update = make_update_step(config)
        key_problem, key_data, key_test, key_init, key_q, key_epochs = jax.random.split(key, 6)
        key_split, key_validation_q = jax.random.split(jax.random.fold_in(key, 7))
        distinct = None if data is None else distinct_contexts  # of the given logs
        if data is None:
            problem.check_batch_size(config.batch_size)
            check_run_memory(config, problem)
            # The KL penalty reads pi_b rows in its minibatches: those logs stay dense.
            dense = True if config.objective.needs_pi_b else None
            data, test_data = problem.sample(key_problem, key_data, key_test, dense=dense)
        keys = (key_split, key_q, key_validation_q)
        logs = prepare_logs(
            config, reward_model, keys, data, test_data, q_hat, validation, distinct_contexts=distinct
        )
        initial_params, params = init_params(config, key_init, key_q, logs.train)

        initial_value = policy_values(config, initial_params, logs.test)[0]
        initial_validation = validation_estimates_of(config, reward_model, params, logs)
        best = initial_best(config, initial_validation, params, initial_value)

        epoch = functools.partial(train_epoch, config, update, reward_model, logs, mesh, on_epoch)
        state = (params, optimizer.init(params))
        epochs = (jax.random.split(key_epochs, config.epochs), jnp.arange(config.epochs, dtype=jnp.int32))
        ((params, _), best), curves = jax.lax.scan(epoch, (state, best), epochs)
        loss, train_value, test_value, top_share, estimates = curves

        params, selected_epoch, selected_value, selected_validation = returned_epoch(
            config, params, best, test_value, estimates
        )
        behavior_value, optimal_value = _logging_and_best_values(logs.test)
        return TrainResult(
            params=params,
            loss=loss,
            train_value=train_value,
            test_value=test_value,
            initial_value=initial_value,
            behavior_value=behavior_value,
            optimal_value=optimal_value,
            top_share=top_share,
            validation=estimates,
            selected_epoch=selected_epoch,
            selected_value=selected_value,
            selected_validation=selected_validation,
            initial_validation=initial_validation,
        )

    return train
