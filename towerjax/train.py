"""Training a two-tower softmax policy from logged feedback (SPEC 6).

``make_train(config)`` returns ``train(key)``, a pure function of one key: it draws a
synthetic problem and its logs (or takes the logs it is given), fits the reward model
when the objective needs one, and runs ``epochs`` of shuffled minibatches through one
optax update step with ``jax.lax.scan``. Seeds are a ``vmap``::

    results = jax.jit(jax.vmap(make_train(TrainConfig())))(jax.random.split(key, 8))
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from towerjax.batching import epoch_batches, map_row_chunks, num_batches, row_chunk
from towerjax.behavior import behavior_log_probs, behavior_loss, init_behavior_head, logged_propensity
from towerjax.checks import (
    InputError,
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_sizes,
    masked_mean,
    take_logged,
)
from towerjax.data import LoggedData
from towerjax.evaluation import Z_95
from towerjax.features import feature_spec, take
from towerjax.large_softmax import (
    ItemProposal,
    item_proposal,
    popularity_log_q,
    sample_items,
    sampled_entropy,
    sampled_log_prob_from_ids,
    uniform_log_q,
)
from towerjax.objectives import IPS, OBJECTIVES, Objective, objective_from_name
from towerjax.policy import log_policy
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.synthetic import blog_problem, sample_logged_data
from towerjax.towers import EMBEDDING_MODES, TwoTower, check_activation

__all__ = [
    "OPTIMIZERS",
    "PROPOSALS",
    "SELECTIONS",
    "VALIDATION_DR_PAIRS",
    "Batch",
    "NonFiniteError",
    "SeedRunner",
    "TrainConfig",
    "TrainResult",
    "batch_mesh",
    "check_finite",
    "compile_seeds",
    "estimates_from_terms",
    "expose_cpu_cores",
    "is_embedding",
    "make_optimizer",
    "make_train",
    "make_update_step",
    "objective_loss",
    "seed_sharding",
    "shard_batch",
    "train_seeds",
    "validation_estimates",
]

OPTIMIZERS = ("adam", "adamw")
PROPOSALS = ("uniform", "popularity")  # TrainConfig.proposal of the sampled softmax
# Above this many (validation row, item) pairs the DR validation estimate is skipped unless
# asked for (TrainConfig.validation_dr): its reward model scores every pair every epoch.
VALIDATION_DR_PAIRS = 50_000_000
# Validation criteria of TrainConfig.select: an estimate, or its lower 95% bound.
SELECTIONS = ("snips", "dr", "snips-lower", "dr-lower")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. The defaults are the library's, chosen by ``benchmarks/learning.py``
    across tasks (benchmarks/RESULTS.md): one hidden layer of 64, ``D = 32``, Adam 1e-3,
    batch 128, 30 epochs, 20% of the logs held out for validation and the epoch with the best
    SNIPS estimate returned. :meth:`seed_study` gives the seed study's settings (SPEC 6).

    ``objective`` is an objective value (:mod:`towerjax.objectives`, e.g. ``IPS(cap=10)``,
    ``DR()``, ``TwoStage(candidates=20)``) holding its own options; a registry name
    (``"ips"``, ``"dr"``, ...) gives that objective with its defaults.
    The data fields (``behavior`` .. ``dim``) describe the built-in synthetic problem
    (:func:`towerjax.synthetic.blog_problem`); they are ignored when ``train`` is given
    logs of its own. ``optimizer`` is ``"adam"`` (L2 ``weight_decay`` coupled as in PyTorch's
    ``Adam(weight_decay)``) or ``"adamw"`` (decoupled decay, ``optax.adamw``).
    ``estimate_propensities=True`` ignores the logged ``pscore`` and trains a behaviour head
    (:mod:`towerjax.behavior`) alongside, whose ``sg(beta_hat(a_i|x_i))`` replaces it.
    ``batch_size`` may not exceed ``n_rounds``; with logs of your own a batch larger than
    the (training) logs uses all of them in one batch.
    ``evaluate_train=False`` skips the per-epoch true value on the
    training contexts (reported as NaN), which saves a forward pass over them each epoch.
    ``validation_dr`` records the DR estimate on the validation logs (its reward model
    scores every validation row against every item); ``None`` (default) does so when the
    validation logs have at most :data:`VALIDATION_DR_PAIRS` (row, item) pairs or ``select``
    needs it, and reports NaN otherwise. ``embedding_weight_decay`` is the L2 decay of the
    embedding tables of id features (:mod:`towerjax.features`; ``optax.masked`` by
    parameter name); ``None`` uses ``weight_decay``. ``embedding_mode`` places the tables
    in the towers (:class:`towerjax.towers.Tower`): ``"concat"`` (each table's rows
    concatenated with the dense columns) or ``"sum"`` (tables as wide as the first layer,
    added to its output: a one-hot input's first layer, by lookup). ``data_parallel`` shards every
    minibatch's events over that many devices (one run, SPMD: each device computes its
    rows' part of the loss and the compiler sums the gradients), composable with the seed
    axis (:func:`compile_seeds` lays devices out as ``seed x batch``); ``batch_size`` must
    be a multiple of it.

    ``sampled_softmax=M`` trains with a sampled softmax over ``M`` items drawn per step
    from ``proposal`` (``"uniform"``, or ``"popularity"``: the training logs' item counts
    plus one), with the log-Q correction (:mod:`towerjax.large_softmax`): the item tower
    runs on the batch's logged items and the ``M`` samples only, so a step's cost does not
    grow with the catalogue. The objective then sees ``log pi_hat(a_i|x_i)`` as a ``[B, 1]``
    column (its importance weight uses ``pi_hat``, biased ``O(1/M)``), and the entropy
    bonus its sampled estimate (:func:`towerjax.large_softmax.sampled_entropy`); objectives
    that sum over all items (DR and its variants, two-stage) and the KL penalty need whole
    rows and are refused. Validation and reported values use the exact softmax, in chunks.
    """

    objective: Objective = dataclasses.field(default_factory=IPS)
    behavior: str = "uniform"
    epsilon: float = 0.1
    n_rounds: int = 15000
    n_test_rounds: int = 10000
    n_actions: int = 10
    dim: int = 50
    hidden_sizes: tuple[int, ...] = (64,)
    embedding_size: int = 32
    activation: str = "elu"
    temperature: float = 1.0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 128
    epochs: int = 30
    reward_model: RewardModelConfig = dataclasses.field(default_factory=RewardModelConfig)
    estimate_propensities: bool = False
    evaluate_train: bool = True
    validation_fraction: float = 0.2
    select: str | None = "snips"
    patience: int | None = None
    validation_dr: bool | None = None
    embedding_weight_decay: float | None = None
    embedding_mode: str = "concat"
    data_parallel: int = 1
    sampled_softmax: int | None = None
    proposal: str = "uniform"

    def __post_init__(self) -> None:
        if isinstance(self.objective, str):
            object.__setattr__(self, "objective", objective_from_name(self.objective))
        if not isinstance(self.objective, Objective):
            raise InputError(
                "objective",
                f"expected an objective value or one of {tuple(OBJECTIVES)}, got {self.objective!r}",
            )
        check_choice("behavior", self.behavior, ("uniform", "epsilon-greedy"))
        if isinstance(self.epsilon, bool) or not 0.0 <= self.epsilon <= 1.0:
            raise InputError("epsilon", f"expected a value in [0, 1], got {self.epsilon}")
        for name in (
            "n_rounds",
            "n_test_rounds",
            "n_actions",
            "dim",
            "embedding_size",
            "batch_size",
            "epochs",
            "data_parallel",
        ):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.n_actions < 2:
            raise InputError("n_actions", f"expected at least 2, got {self.n_actions}")
        if self.batch_size > self.n_rounds:  # the built-in problem's logs; own logs use min(B, n)
            raise InputError(
                "batch_size", f"expected at most n_rounds={self.n_rounds}, got {self.batch_size}"
            )
        if self.batch_size % self.data_parallel:
            raise InputError(
                "data_parallel",
                f"expected a divisor of batch_size={self.batch_size} (each device takes an equal share "
                f"of a batch's events), got {self.data_parallel}",
            )
        check_choice("proposal", self.proposal, PROPOSALS)
        if self.sampled_softmax is not None:
            object.__setattr__(
                self, "sampled_softmax", check_positive_int("sampled_softmax", self.sampled_softmax)
            )
            if not self.objective.logged_only:
                raise InputError(
                    "sampled_softmax",
                    f"objective {self.objective.name!r} sums over every item (it needs whole [B, A] rows); "
                    "a sampled softmax trains objectives that read the logged item only: ips, snips, "
                    "ipw-subgauss, ipw-ls, topk, naive, regression, ips-regression",
                )
            if self.objective.kl or self.estimate_propensities:
                raise InputError(
                    "sampled_softmax",
                    "the KL penalty and the behaviour head need whole [B, A] rows; not with a sampled softmax",
                )
        check_activation(self.activation)
        check_choice("embedding_mode", self.embedding_mode, EMBEDDING_MODES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("temperature", "learning_rate"):
            check_positive(name, getattr(self, name))
        check_nonnegative("weight_decay", self.weight_decay)
        if self.embedding_weight_decay is not None:
            check_nonnegative("embedding_weight_decay", self.embedding_weight_decay)
        object.__setattr__(self, "hidden_sizes", check_sizes("hidden_sizes", self.hidden_sizes))
        if isinstance(self.validation_fraction, bool) or not 0.0 <= self.validation_fraction < 1.0:
            raise InputError(
                "validation_fraction", f"expected a value in [0, 1), got {self.validation_fraction}"
            )
        if self.select is not None:
            check_choice("select", self.select, SELECTIONS)
        if self.patience is not None:
            object.__setattr__(self, "patience", check_positive_int("patience", self.patience))
            if self.select is None:
                raise InputError("patience", "early stopping needs a selection criterion (select)")

    @classmethod
    def seed_study(cls, **overrides) -> TrainConfig:
        """The seed study's settings (SPEC 6), as its reproduction uses them.

        Adam 0.005 with coupled L2 1e-6, batch 10, 100 epochs, towers (100, 100, 100), D = 100,
        elu, ``tau = 1``, no validation split, and the reward model fitted and used on the same
        rows as the seed did (``folds=1``, in-sample); an objective given by name has no
        entropy bonus (the library's policy-gradient objectives have one by default).
        ``overrides`` replace any field.
        """
        settings = dict(
            optimizer="adam",
            learning_rate=0.005,
            weight_decay=1e-6,
            batch_size=10,
            epochs=100,
            hidden_sizes=(100, 100, 100),
            embedding_size=100,
            activation="elu",
            temperature=1.0,
            reward_model=RewardModelConfig(folds=1),
            validation_fraction=0.0,
            select=None,
            patience=None,
        )
        objective = overrides.pop("objective", "ips")
        if isinstance(objective, str):  # by name: the seed's learners, with no entropy bonus
            objective = dataclasses.replace(objective_from_name(objective), entropy=0.0)
        return cls(objective=objective, **{**settings, **overrides})

    @property
    def model(self) -> TwoTower:
        return TwoTower(self.hidden_sizes, self.embedding_size, self.activation, self.embedding_mode)

    def to_dict(self) -> dict:
        """JSON-ready: every field, the objective as ``{"name", **options}``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["objective"] = self.objective.to_dict()
        out["reward_model"] = dataclasses.asdict(self.reward_model)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out

    @classmethod
    def from_dict(cls, payload: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict` (also after a JSON round trip): the objective is
        rebuilt from its name and options (:func:`~towerjax.objectives.objective_from_name`),
        lists become tuples again and ``reward_model`` a :class:`RewardModelConfig`.

        Missing fields take their defaults; an unknown field raises
        :class:`~towerjax.checks.InputError` naming it.
        """
        if not isinstance(payload, dict):
            raise InputError("config", f"expected a dict of TrainConfig fields, got {type(payload).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for name in payload:
            if name not in known:
                raise InputError(str(name), f"not a TrainConfig field (fields are {sorted(known)})")

        def tuples(options: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}

        fields = tuples(payload)
        objective = fields.get("objective")
        if isinstance(objective, dict):
            options = tuples(objective)
            if not isinstance(options.get("name"), str):
                raise InputError("objective", f"expected {{'name': ..., **options}}, got {objective!r}")
            fields["objective"] = objective_from_name(options.pop("name"), **options)
        reward_model = fields.get("reward_model")
        if isinstance(reward_model, dict):
            model_fields = {f.name for f in dataclasses.fields(RewardModelConfig)}
            for name in reward_model:
                if name not in model_fields:
                    raise InputError(
                        f"reward_model.{name}",
                        f"not a RewardModelConfig field (fields are {sorted(model_fields)})",
                    )
            fields["reward_model"] = RewardModelConfig(**tuples(reward_model))
        return cls(**fields)


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


class NonFiniteError(RuntimeError):
    """A training run produced NaN or inf (loss or parameters); the message names where."""

    def __init__(self, message: str, *, seed: int, epoch: int | None, objective: str):
        super().__init__(message)
        self.seed, self.epoch, self.objective = seed, epoch, objective

    def __reduce__(self):
        return (_rebuild_non_finite, (str(self), self.seed, self.epoch, self.objective))


def _rebuild_non_finite(message, seed, epoch, objective):
    return NonFiniteError(message, seed=seed, epoch=epoch, objective=objective)


def check_finite(result: TrainResult, objective: Objective, *, seed: int = 0) -> None:
    """Raises :class:`NonFiniteError` naming the first seed and epoch whose loss or final
    parameters are NaN/inf, for a stacked ``[S]`` result of :func:`train_seeds` (root ``seed``)."""
    loss = np.asarray(result.loss, dtype=np.float64)
    loss = loss.reshape(-1, loss.shape[-1])
    params_ok = np.ones(loss.shape[0], bool)
    for leaf in jax.tree.leaves(result.params):
        leaf = np.asarray(leaf)
        params_ok &= np.isfinite(leaf.reshape(loss.shape[0], -1)).all(axis=1)
    bad = ~np.isfinite(loss)
    for index in range(loss.shape[0]):
        if bad[index].any() or not params_ok[index]:
            epoch = int(np.argmax(bad[index])) + 1 if bad[index].any() else None
            where = f"epoch {epoch}" if epoch is not None else "the final parameters"
            raise NonFiniteError(
                f"run {index} of root seed {seed}, objective {objective.name}: the training loss "
                f"became NaN/inf at {where} ({objective.to_dict()}); lower the learning rate, cap "
                "the weights, or check the logs for extreme propensities",
                seed=index,
                epoch=epoch,
                objective=objective.name,
            )


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
        return _sampled_objective_loss(config, params, batch, key)
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


def _sampled_objective_loss(config: TrainConfig, params: dict, batch: Batch, key: jax.Array) -> jax.Array:
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
    if objective.entropy:
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


def validation_estimates(
    log_pi: jax.Array, logs: LoggedData, q_hat: jax.Array | None
) -> dict[str, jax.Array]:
    """SNIPS and DR estimates of ``pi`` on validation logs, with delta-method standard errors.

    ``log_pi [n, A]`` the policy on the logs' contexts; ``q_hat [n, A]`` a reward model that
    did not see these rows (DR is NaN without it). Jit-able; the same definitions as
    :func:`towerjax.evaluation.off_policy_estimates`' ``snipw`` and ``dr``.
    """
    pi = jnp.exp(log_pi)
    w = take_logged(pi, logs.action) / logs.pscore
    if q_hat is None:
        return estimates_from_terms(w, logs.reward)
    return estimates_from_terms(w, logs.reward, jnp.sum(pi * q_hat, axis=-1), take_logged(q_hat, logs.action))


def estimates_from_terms(
    w: jax.Array, reward: jax.Array, direct: jax.Array | None = None, q_logged: jax.Array | None = None
) -> dict[str, jax.Array]:
    """:func:`validation_estimates` from per-row terms ``[n]``: ``w_i = pi(a_i|x_i) / p_i``,
    ``r_i``, and for DR ``direct_i = sum_a pi(a|x_i) q_hat(x_i, a)`` and ``q_hat(x_i, a_i)``.

    .. math::

        \\hat V_{SNIPS} = \\frac{\\sum_i w_i r_i}{\\sum_i w_i}, \\qquad
        \\hat V_{DR} = \\frac{1}{n} \\sum_i \\Big[\\text{direct}_i + w_i (r_i - \\hat q(x_i, a_i))\\Big].
    """
    n = w.shape[0]
    mean_w = jnp.mean(w)
    positive = mean_w > 0
    snips = jnp.where(positive, jnp.mean(w * reward) / jnp.where(positive, mean_w, 1.0), 0.0)
    influence = jnp.where(positive, w * (reward - snips) / jnp.where(positive, mean_w, 1.0), 0.0)
    out = {"snips": snips, "snips_se": jnp.std(influence, ddof=1) / jnp.sqrt(n)}
    if direct is None:
        out["dr"] = out["dr_se"] = jnp.full((), jnp.nan)
    else:
        terms = direct + w * (reward - q_logged)
        out["dr"], out["dr_se"] = jnp.mean(terms), jnp.std(terms, ddof=1) / jnp.sqrt(n)
    return out


def _validates_dr(config: TrainConfig, validation: LoggedData) -> bool:
    """Whether the DR validation estimate is computed (``TrainConfig.validation_dr``)."""
    if config.validation_dr is not None:
        return config.validation_dr
    needed = config.select is not None and config.select.startswith("dr")
    return needed or validation.n_rounds * validation.n_actions <= VALIDATION_DR_PAIRS


def _split_rows(key: jax.Array, data: LoggedData, q_hat, n_validation: int):
    """Random rows of ``data`` (and ``q_hat``) for training, and ``n_validation`` held out."""
    order = jax.random.permutation(key, data.n_rounds)
    train_rows, validation_rows = order[: data.n_rounds - n_validation], order[data.n_rounds - n_validation :]
    return (
        data.take_rows(train_rows),
        None if q_hat is None else q_hat[train_rows],
        data.take_rows(validation_rows),
    )


def make_train(
    config: TrainConfig, *, on_epoch: Callable[[int], None] | None = None, mesh: Mesh | None = None
) -> Callable[..., TrainResult]:
    """Returns ``train(key, data=None, test_data=None, q_hat=None, validation=None) -> TrainResult``,
    pure in its key.

    Without ``data`` the run draws the built-in synthetic problem and logs
    ``n_rounds`` training and ``n_test_rounds`` test events from it. Given ``data``
    (a :class:`LoggedData`), it trains on those; values are reported where
    ``expected_reward`` is known (test values on ``test_data``, else on ``data``) and are
    NaN otherwise. When the objective needs a reward model (``needs_q_hat``), it is
    cross-fitted on ``data`` (``config.reward_model.folds``, default 2: each row's ``q_hat``
    comes from a model that did not see it) unless ``q_hat`` ``[n, A]`` (predictions for
    ``data``'s rows) is given.

    Validation by off-policy evaluation: with ``validation`` logs, or
    ``config.validation_fraction > 0`` (that share of the training rows held out at
    random), each epoch records the SNIPS and DR estimates of the policy on the validation
    logs with their standard errors (:func:`validation_estimates`; DR's reward model is
    fitted on the training rows only). ``config.select`` then returns the parameters of
    the best epoch by that estimate (or by its lower 95% bound), and ``config.patience``
    stops updating after that many epochs without improvement.

    ``on_epoch(epoch)``, if given, is called on the host with the epoch number (an int) after
    every epoch (``jax.debug.callback``; under ``vmap`` once for the batch of seeds), e.g. to
    drive a progress bar.

    With ``config.data_parallel > 1`` each minibatch's event axis is constrained to the
    ``"batch"`` axis of ``mesh`` (default: a 1-d mesh of the first ``data_parallel``
    devices, :func:`batch_mesh`); :func:`compile_seeds` passes its ``seed x batch`` mesh.
    """
    if config.data_parallel > 1 and mesh is None:
        mesh = batch_mesh(config.data_parallel)
    model = config.model
    optimizer = make_optimizer(config)
    update = make_update_step(config)
    reward_model = RewardModel(config.reward_model)
    objective = config.objective

    def train(
        key: jax.Array,
        data: LoggedData | None = None,
        test_data: LoggedData | None = None,
        q_hat: jax.Array | None = None,
        validation: LoggedData | None = None,
    ):
        key_problem, key_data, key_test, key_init, key_q, key_epochs = jax.random.split(key, 6)
        key_split, key_validation_q = jax.random.split(jax.random.fold_in(key, 7))
        if data is None:
            problem = blog_problem(
                key_problem,
                n_actions=config.n_actions,
                dim=config.dim,
                behavior=config.behavior,
                epsilon=config.epsilon,
            )
            data = sample_logged_data(key_data, problem, config.n_rounds)
            test_data = sample_logged_data(key_test, problem, config.n_test_rounds)
        own_test = test_data is None
        if own_test:
            test_data = data
        if objective.needs_pi_b and data.pi_b is None and not config.estimate_propensities:
            raise InputError(
                "kl",
                "the KL penalty needs the logging policy's distribution: logs with pi_b, "
                "or estimate_propensities=True (the behaviour head)",
            )
        if validation is None and config.validation_fraction > 0:
            n_validation = round(config.validation_fraction * data.n_rounds)
            if not 2 <= n_validation <= data.n_rounds - 1:
                raise InputError(
                    "validation_fraction",
                    f"{config.validation_fraction} of {data.n_rounds} rows leaves {n_validation} for "
                    "validation; expected at least 2 and at least one training row",
                )
            if q_hat is not None and not objective.needs_q_hat:
                q_hat = None
            data, q_hat, validation = _split_rows(key_split, data, q_hat, n_validation)
        n, batch_size = data.n_rounds, min(config.batch_size, data.n_rounds)
        if batch_size % config.data_parallel:
            raise InputError(
                "data_parallel",
                f"the {n} training rows give batches of {batch_size}, not a multiple of {config.data_parallel}",
            )

        params = model.init(key_init, feature_spec(data.context), feature_spec(data.action_context))
        initial_params = params
        if config.estimate_propensities:
            params = dict(params)
            params["behavior"] = init_behavior_head(
                jax.random.fold_in(key_q, 1), data.n_actions, config.embedding_size
            )
        if not objective.needs_q_hat:
            q_hat = None
        elif q_hat is None:
            q_hat = reward_model.cross_fit(key_q, data)
        if own_test and test_data.expected_reward is None and validation is not None:
            # Own logs: no true values to report, only the top-item share; the validation
            # rows show it without scoring every training row against every item each epoch.
            test_data = validation
        validation_fit = None
        if validation is not None and _validates_dr(config, validation):
            validation_fit = reward_model.fit(key_validation_q, data)

        def item_embeddings(params) -> Callable:
            """``g(e_a)`` of a logs' items, run once per parameters for each distinct item
            table (the training, validation and test logs share one; the item tower over a
            large catalogue is the costly part of an evaluation)."""
            cache = {}

            def of(action_context):
                key = id(action_context)
                if key not in cache:
                    cache[key] = (action_context, model.embed_actions(params, action_context))
                return cache[key][1]

            return of

        def values(params, logs: LoggedData, items=None) -> tuple[jax.Array, jax.Array]:
            """True value (NaN without ``expected_reward``) and the top-item share on ``logs``,
            over chunks of rows (:func:`~towerjax.batching.map_row_chunks`)."""
            items = (items or item_embeddings(params))(logs.action_context)
            rows = {"context": logs.context}
            if logs.expected_reward is not None:
                rows["q"] = logs.expected_reward

            def per_row(rows):
                scores = model.embed_context(params, rows["context"]) @ items.T
                out = {"top": jnp.argmax(scores, axis=-1)}
                if "q" in rows:
                    out["value"] = jnp.sum(
                        jnp.exp(log_policy(scores, config.temperature)) * rows["q"], axis=-1
                    )
                return out

            out = map_row_chunks(per_row, rows, row_chunk(logs.n_rounds, logs.n_actions))
            top_share = jnp.max(jnp.bincount(out["top"], length=logs.n_actions)) / logs.n_rounds
            if "value" not in out:
                return jnp.full((), jnp.nan), top_share
            return jnp.mean(out["value"]), top_share

        def validate(params, items=None) -> dict[str, jax.Array]:
            if validation is None:
                return {k: jnp.full((), jnp.nan) for k in ("snips", "snips_se", "dr", "dr_se")}
            items = (items or item_embeddings(params))(validation.action_context)
            rows = {"context": validation.context, "action": validation.action, "pscore": validation.pscore}

            def per_row(rows):
                scores = model.embed_context(params, rows["context"]) @ items.T
                pi = jnp.exp(log_policy(scores, config.temperature))
                out = {"w": take_logged(pi, rows["action"]) / rows["pscore"]}
                if validation_fit is not None:
                    q_hat = reward_model.predict(validation_fit, rows["context"], validation.action_context)
                    out["direct"] = jnp.sum(pi * q_hat, axis=-1)
                    out["q_logged"] = take_logged(q_hat, rows["action"])
                return out

            terms = map_row_chunks(per_row, rows, row_chunk(validation.n_rounds, validation.n_actions))
            return estimates_from_terms(
                terms["w"], validation.reward, terms.get("direct"), terms.get("q_logged")
            )

        def score(estimates: dict[str, jax.Array]) -> jax.Array:
            """The selection criterion of an epoch (higher is better)."""
            if config.select is None:
                return jnp.zeros(())
            name = config.select.removesuffix("-lower")
            value = estimates[name]
            if config.select.endswith("-lower"):
                value = value - Z_95 * estimates[name + "_se"]
            return jnp.where(jnp.isnan(value), -jnp.inf, value)

        proposal = None
        if config.sampled_softmax is not None:
            if config.proposal == "popularity":
                log_q = popularity_log_q(jnp.bincount(data.action, length=data.n_actions))
            else:
                log_q = uniform_log_q(data.n_actions)
            proposal = item_proposal(log_q)

        def batch_step(state, inputs):
            params, opt_state = state
            rows, mask, key = inputs
            batch = Batch(
                data=LoggedData(
                    context=rows["context"],
                    action_context=data.action_context,
                    action=rows["action"],
                    reward=rows["reward"],
                    pscore=rows["pscore"],
                    pi_b=rows.get("pi_b"),
                ),
                mask=mask,
                q_hat=rows.get("q_hat"),
                proposal=proposal,
            )
            params, opt_state, metrics = update(params, opt_state, batch, key)
            return (params, opt_state), metrics["loss"] * jnp.sum(mask)

        per_event = {
            "context": data.context,
            "action": data.action,
            "reward": data.reward,
            "pscore": data.pscore,
        }
        if q_hat is not None:
            per_event["q_hat"] = q_hat
        if objective.needs_pi_b and data.pi_b is not None:
            per_event["pi_b"] = data.pi_b

        def epoch(carry, inputs):
            state, best = carry
            key, index_epoch = inputs
            key_order, key_steps = jax.random.split(key)
            index, mask = epoch_batches(key_order, n, batch_size)
            # One gather per epoch: the scan then reads contiguous [B, ...] slices.
            rows = jax.tree.map(lambda a: a[index], per_event)
            if config.data_parallel > 1:  # events of every batch spread over the "batch" devices
                events = NamedSharding(mesh, PartitionSpec(None, "batch"))
                rows, mask = jax.lax.with_sharding_constraint((rows, mask), events)
            step_keys = jax.random.split(key_steps, num_batches(n, batch_size))
            new_state, weighted = jax.lax.scan(batch_step, state, (rows, mask, step_keys))
            if config.patience is not None:  # stopped early: the parameters stay where they were
                stopped = index_epoch - best["epoch"] > config.patience
                new_state = jax.tree.map(lambda old, new: jnp.where(stopped, old, new), state, new_state)
            params = new_state[0]
            items = item_embeddings(params)
            if config.evaluate_train and data.expected_reward is not None:
                train_value = values(params, data, items)[0]
            else:
                train_value = jnp.full((), jnp.nan)
            test_value, top_share = values(params, test_data, items)
            estimates = validate(params, items)
            if config.select is not None:
                better = score(estimates) > best["score"]
                best = {
                    "score": jnp.where(better, score(estimates), best["score"]),
                    "epoch": jnp.where(better, index_epoch + 1, best["epoch"]),
                    "params": jax.tree.map(lambda b, p: jnp.where(better, p, b), best["params"], params),
                    "test_value": jnp.where(better, test_value, best["test_value"]),
                }
            metrics = (jnp.sum(weighted) / n, train_value, test_value, top_share, estimates)
            if on_epoch is not None:
                jax.debug.callback(lambda e: on_epoch(int(e)), index_epoch + 1)
            return (new_state, best), metrics

        initial_test_value = values(initial_params, test_data)[0]
        best = {
            "score": jnp.full((), -jnp.inf),
            "epoch": jnp.zeros((), jnp.int32),
            "params": None,
            "test_value": None,
        }
        if config.select is not None:
            best.update(score=score(validate(params)), params=params, test_value=initial_test_value)
        state = (params, optimizer.init(params))
        epochs = (jax.random.split(key_epochs, config.epochs), jnp.arange(config.epochs, dtype=jnp.int32))
        ((params, _), best), (loss, train_value, test_value, top_share, estimates) = jax.lax.scan(
            epoch, (state, best), epochs
        )
        if config.select is not None:
            params, selected_epoch, selected_value = best["params"], best["epoch"], best["test_value"]
        else:
            selected_epoch, selected_value = jnp.asarray(config.epochs, jnp.int32), test_value[-1]
        if test_data.expected_reward is None:
            behavior_value = optimal_value = jnp.full((), jnp.nan)
        else:
            q = test_data.expected_reward
            behavior_value = (
                jnp.full((), jnp.nan) if test_data.pi_b is None else jnp.mean(jnp.sum(test_data.pi_b * q, -1))
            )
            optimal_value = jnp.mean(jnp.max(q, axis=-1))
        return TrainResult(
            params=params,
            loss=loss,
            train_value=train_value,
            test_value=test_value,
            initial_value=initial_test_value,
            behavior_value=behavior_value,
            optimal_value=optimal_value,
            top_share=top_share,
            validation=estimates,
            selected_epoch=selected_epoch,
            selected_value=selected_value,
        )

    return train


def expose_cpu_cores(count: int | None = None) -> None:
    """Asks XLA for one CPU device per core (or ``count``), so seeds run in parallel.

    Only takes effect before JAX starts its backend, and never overrides a
    ``--xla_force_host_platform_device_count`` already in ``XLA_FLAGS``.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={max(1, count or 1)}".strip()


def _devices() -> list:
    """The devices runs are laid out on: this process's, or every process's after
    ``jax.distributed.initialize`` (:mod:`towerjax.distributed`)."""
    return jax.devices() if jax.process_count() > 1 else jax.local_devices()


def batch_mesh(data_parallel: int) -> Mesh:
    """A 1-d ``("batch",)`` mesh of the first ``data_parallel`` devices."""
    devices = _devices()
    if data_parallel > len(devices):
        raise InputError(
            "data_parallel", f"expected at most the {len(devices)} available devices, got {data_parallel}"
        )
    return Mesh(np.array(devices[:data_parallel]), ("batch",))


def seed_sharding(seeds: int, devices: int | None = None, data_parallel: int = 1) -> NamedSharding:
    """Shards a leading seed axis of length ``seeds`` over the devices.

    Uses the largest number of seed slots ``k``, with ``k * data_parallel`` at most
    ``devices`` (all devices by default), such that ``k`` divides ``seeds``; the runs are
    independent, so each slot runs its seeds with no communication and the numbers equal a
    single-device run's. With ``data_parallel > 1`` the mesh is ``("seed", "batch")`` of
    shape ``(k, data_parallel)``: each run's minibatches are spread over its slot's
    ``data_parallel`` devices.
    """
    available = _devices()
    limit = len(available) if devices is None else max(1, min(int(devices), len(available)))
    if data_parallel > limit:
        raise InputError("data_parallel", f"expected at most the {limit} devices in use, got {data_parallel}")
    count = max(k for k in range(1, limit // data_parallel + 1) if seeds % k == 0)
    if data_parallel == 1:
        return NamedSharding(Mesh(np.array(available[:count]), ("seed",)), PartitionSpec("seed"))
    grid = np.array(available[: count * data_parallel]).reshape(count, data_parallel)
    return NamedSharding(Mesh(grid, ("seed", "batch")), PartitionSpec("seed"))


def shard_batch(batch: Batch, devices: int | None = None) -> Batch:
    """Places a :class:`Batch`'s event axis across local devices; the items are replicated.

    Data parallelism for large batches: the jitted update step then runs as one SPMD
    program, each device computing its rows' part of the loss and XLA summing the
    gradients across devices, so the numbers equal a single-device step up to the order of
    summation. Uses the largest number of devices, at most ``devices``, dividing ``B``.
    """
    size = batch.data.action.shape[0]
    local = jax.local_devices()
    limit = len(local) if devices is None else max(1, min(int(devices), len(local)))
    count = max(k for k in range(1, limit + 1) if size % k == 0)
    mesh = Mesh(np.array(local[:count]), ("batch",))
    rows, replicated = NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())
    data = jax.tree.map(
        lambda a: jax.device_put(a, rows), dataclasses.replace(batch.data, action_context=None)
    )
    return Batch(
        data=dataclasses.replace(data, action_context=jax.device_put(batch.data.action_context, replicated)),
        mask=jax.device_put(batch.mask, rows),
        q_hat=None if batch.q_hat is None else jax.device_put(batch.q_hat, rows),
    )


# Seeds each device trains at once. At batch 10 a step's matmuls are tiny, so more seeds per
# op help, but every seed adds its parameters and Adam moments (0.85 MB for the seed-study
# towers) to the working set of every step; past two per CPU core they spill out of the
# core's L2 cache and each seed-step gets slower (benchmarks/RESULTS.md).
SEEDS_PER_DEVICE_GROUP = 2


@dataclasses.dataclass(frozen=True)
class SeedRunner:
    """A compiled ``train`` over ``S`` seeds: ``groups`` sequential groups, each ``vmap``ped
    over ``S / groups`` seeds sharded across ``devices`` devices.

    ``run()`` returns the :class:`TrainResult` with a leading ``[S]`` axis, in key order.
    """

    compiled: Callable
    keys: jax.Array
    inputs: tuple
    seeds: int
    groups: int
    devices: int
    seconds_compile: float

    def run(self) -> TrainResult:
        out = self.compiled(self.keys, self.inputs)
        return jax.tree.map(lambda a: a.reshape(self.seeds, *a.shape[2:]), out)


def _put(value, sharding: NamedSharding) -> jax.Array:
    """``jax.device_put(value, sharding)``; across processes (``jax.distributed``), where
    every process holds the same ``value``, each puts its own devices' part of it."""
    if sharding.is_fully_addressable:
        return jax.device_put(value, sharding)
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        data = _put(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _to_host(tree):
    """Host numpy copies; across processes every process gets every array whole."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def compile_seeds(
    config: TrainConfig,
    *,
    seeds: int,
    seed: int = 0,
    devices: int | None = None,
    seeds_per_device: int | None = None,
    data: LoggedData | None = None,
    test_data: LoggedData | None = None,
    q_hat: jax.Array | None = None,
    validation: LoggedData | None = None,
    per_seed_data: bool = False,
    on_epoch: Callable[[int], None] | None = None,
) -> SeedRunner:
    """Lowers and compiles ``seeds`` runs of ``make_train(config)`` as one call.

    The ``S`` keys are laid out ``[groups, S / groups]``; the inner axis is ``vmap``ped and
    sharded over devices, the outer one is a ``lax.map`` (sequential), so each device holds
    ``seeds_per_device`` runs at a time (default :data:`SEEDS_PER_DEVICE_GROUP`, or fewer
    when it does not divide the seeds). Every run depends only on its own key (and data),
    so the layout changes speed, not results (up to float rounding).

    ``data``, ``test_data``, ``q_hat`` and ``validation`` are passed to every run (see :func:`make_train`);
    without ``data`` each run draws the built-in synthetic problem from its key. They are
    arguments of the compiled call, not constants folded into it. With
    ``per_seed_data=True`` their arrays carry a leading ``[S]`` axis, one slice per seed,
    laid out and sharded like the keys.
    """
    seeds = check_positive_int("seeds", seeds)
    if data is None and (test_data is not None or q_hat is not None or validation is not None):
        raise InputError("data", "test_data, q_hat and validation need data")
    sharding = seed_sharding(seeds, devices, config.data_parallel)
    count = sharding.mesh.shape["seed"]
    if jax.process_count() > 1 and sharding.mesh.size != jax.device_count():
        raise InputError(
            "data_parallel",
            f"across {jax.process_count()} processes the runs use all {jax.device_count()} devices, "
            f"expected seed slots x data_parallel = {jax.device_count()}, got {count} x {config.data_parallel}",
        )
    per_device = seeds // count
    limit = seeds_per_device or SEEDS_PER_DEVICE_GROUP
    group = max(g for g in range(1, min(limit, per_device) + 1) if per_device % g == 0)
    groups = per_device // group
    layout = NamedSharding(sharding.mesh, PartitionSpec(None, "seed"))
    keys = jax.random.split(jax.random.key(seed), seeds).reshape(groups, group * count)
    keys = _put(keys, layout)
    inputs = (data, test_data, q_hat, validation)
    if per_seed_data:
        for name, value in zip(("data", "test_data", "q_hat", "validation"), inputs, strict=True):
            for leaf in jax.tree.leaves(value):
                if leaf.shape[:1] != (seeds,):
                    raise InputError(name, f"per_seed_data: expected a leading axis of {seeds} seeds")
        inputs = jax.tree.map(lambda a: _put(a.reshape(groups, group * count, *a.shape[1:]), layout), inputs)
    parallel = config.data_parallel > 1
    train = make_train(config, on_epoch=on_epoch, mesh=sharding.mesh if parallel else None)
    in_axes = (0, 0, 0, 0, 0) if per_seed_data else (0, None, None, None, None)
    if group * count == 1:
        # One run at a time: no vmap. A batch axis of one still costs: XLA's CPU backend
        # runs the batched gathers and scatter-adds of embedding tables 2-2.5x slower
        # (benchmarks/embeddings.py, a 10^5-row table at batch 1024).
        def run_group(keys, *args):
            args = [
                a if axis is None else jax.tree.map(lambda v: v[0], a)
                for a, axis in zip(args, in_axes[1:], strict=True)
            ]
            return jax.tree.map(lambda v: v[None], train(keys[0], *args))
    else:
        run_group = jax.vmap(train, in_axes=in_axes, spmd_axis_name="seed" if parallel else None)

    def run(keys, inputs):
        if per_seed_data:
            return jax.lax.map(lambda args: run_group(args[0], *args[1]), (keys, inputs))
        return jax.lax.map(lambda k: run_group(k, *inputs), keys)

    start = time.perf_counter()
    compiled = jax.jit(run).lower(keys, inputs).compile()
    seconds = time.perf_counter() - start
    return SeedRunner(compiled, keys, inputs, seeds, groups, count * config.data_parallel, seconds)


def train_seeds(
    config: TrainConfig,
    *,
    seeds: int = 8,
    seed: int = 0,
    devices: int | None = None,
    seeds_per_device: int | None = None,
    data: LoggedData | None = None,
    test_data: LoggedData | None = None,
    q_hat: jax.Array | None = None,
    validation: LoggedData | None = None,
    per_seed_data: bool = False,
    finite: bool = True,
    progress: bool | Callable[[int], None] = False,
) -> tuple[TrainResult, dict]:
    """Runs ``seeds`` independent runs of ``config`` as one compiled call (:func:`compile_seeds`).

    ``data``, ``test_data``, ``q_hat``, ``validation`` and ``per_seed_data`` as in :func:`compile_seeds`:
    your own logs, or (without them) the built-in synthetic problem drawn per seed.
    Returns the stacked :class:`TrainResult` (host numpy arrays, leading ``[S]`` axis) and
    timings: ``seconds_compile`` (lowering and compiling), ``seconds_train`` (the compiled
    call on all seeds, to ``block_until_ready``), ``seed_steps`` and ``devices``. A run whose
    loss or parameters became NaN/inf raises :class:`NonFiniteError` (``finite=False``
    returns the result as it is). ``progress=True`` shows a progress bar of epochs on stderr
    while the compiled call runs (a callable is called with the epoch number after every
    epoch instead, once per sequential group of seeds).
    """
    bars = []  # the bar is made once the number of sequential seed groups is known
    if progress is True:
        on_epoch = lambda _epoch: bars and bars[0].update(1)  # noqa: E731
    else:
        on_epoch = progress or None
    runner = compile_seeds(
        config,
        seeds=seeds,
        seed=seed,
        devices=devices,
        seeds_per_device=seeds_per_device,
        data=data,
        test_data=test_data,
        q_hat=q_hat,
        validation=validation,
        per_seed_data=per_seed_data,
        on_epoch=on_epoch,
    )
    if progress is True:
        from tqdm.auto import tqdm

        total = runner.groups * config.epochs
        bars.append(
            tqdm(total=total, unit="epoch", leave=False, desc=f"{config.objective.name} x {seeds} seeds")
        )
    start = time.perf_counter()
    try:
        result = jax.block_until_ready(runner.run())
    finally:
        for bar in bars:
            bar.close()
    seconds_train = time.perf_counter() - start
    if data is None:
        rounds = config.n_rounds
    else:
        rounds = data.action.shape[-1]
    if validation is None and config.validation_fraction > 0:
        rounds -= round(config.validation_fraction * rounds)  # the rows held out for validation
    timing = {
        "seconds_compile": runner.seconds_compile,
        "seconds_train": seconds_train,
        "seed_steps": seeds * config.epochs * num_batches(rounds, min(config.batch_size, rounds)),
        "devices": runner.devices,
    }
    result = _to_host(result)
    if finite:
        check_finite(result, config.objective, seed=seed)
    return result, timing
