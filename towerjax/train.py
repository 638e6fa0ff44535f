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

from towerjax.batching import epoch_batches, num_batches
from towerjax.behavior import behavior_loss, init_behavior_head, logged_propensity
from towerjax.checks import (
    InputError,
    check_choice,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_sizes,
)
from towerjax.data import LoggedData
from towerjax.objectives import IPS, OBJECTIVES, Objective, objective_from_name
from towerjax.policy import log_policy, policy_value
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.synthetic import blog_problem, sample_logged_data
from towerjax.towers import TwoTower, check_activation

__all__ = [
    "OPTIMIZERS",
    "Batch",
    "NonFiniteError",
    "SeedRunner",
    "TrainConfig",
    "TrainResult",
    "check_finite",
    "compile_seeds",
    "expose_cpu_cores",
    "make_optimizer",
    "make_train",
    "make_update_step",
    "objective_loss",
    "seed_sharding",
    "shard_batch",
    "train_seeds",
]

OPTIMIZERS = ("adam", "adamw")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the seed study's (SPEC 6).

    ``objective`` is an objective value (:mod:`towerjax.objectives`, e.g. ``IPS(cap=10)``,
    ``DR()``, ``TwoStage(candidates=20)``) holding its own options; a registry name
    (``"ips"``, ``"dr"``, ...) gives that objective with its defaults.
    The data fields (``behavior`` .. ``dim``) describe the built-in synthetic problem
    (:func:`towerjax.synthetic.blog_problem`); they are ignored when ``train`` is given
    logs of its own. ``optimizer`` is ``"adam"`` (L2 ``weight_decay`` coupled as in PyTorch's
    ``Adam(weight_decay)``) or ``"adamw"`` (decoupled decay, ``optax.adamw``).
    ``estimate_propensities=True`` ignores the logged ``pscore`` and trains a behaviour head
    (:mod:`towerjax.behavior`) alongside, whose ``sg(beta_hat(a_i|x_i))`` replaces it.
    ``evaluate_train=False`` skips the per-epoch true value on the
    training contexts (reported as NaN), which saves a forward pass over them each epoch.
    """

    objective: Objective = dataclasses.field(default_factory=IPS)
    behavior: str = "uniform"
    epsilon: float = 0.1
    n_rounds: int = 15000
    n_test_rounds: int = 10000
    n_actions: int = 10
    dim: int = 50
    hidden_sizes: tuple[int, ...] = (100, 100, 100)
    embedding_size: int = 100
    activation: str = "elu"
    temperature: float = 1.0
    optimizer: str = "adam"
    learning_rate: float = 0.005
    weight_decay: float = 1e-6
    batch_size: int = 10
    epochs: int = 100
    reward_model: RewardModelConfig = dataclasses.field(default_factory=RewardModelConfig)
    estimate_propensities: bool = False
    evaluate_train: bool = True

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
        ):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.n_actions < 2:
            raise InputError("n_actions", f"expected at least 2, got {self.n_actions}")
        if self.batch_size > self.n_rounds:
            raise InputError(
                "batch_size", f"expected at most n_rounds={self.n_rounds}, got {self.batch_size}"
            )
        check_activation(self.activation)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("temperature", "learning_rate"):
            check_positive(name, getattr(self, name))
        check_nonnegative("weight_decay", self.weight_decay)
        object.__setattr__(self, "hidden_sizes", check_sizes("hidden_sizes", self.hidden_sizes))

    @property
    def model(self) -> TwoTower:
        return TwoTower(self.hidden_sizes, self.embedding_size, self.activation)

    def to_dict(self) -> dict:
        """JSON-ready: every field, the objective as ``{"name", **options}``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["objective"] = self.objective.to_dict()
        out["reward_model"] = dataclasses.asdict(self.reward_model)
        out["hidden_sizes"] = list(self.hidden_sizes)
        return out


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Batch:
    """One minibatch: the logged rows, their mask and (for DR) the reward model's ``q_hat``.

    Attributes:
      data: :class:`LoggedData` with ``B`` rows (``action_context`` is all ``A`` items).
      mask: ``[B]`` 1 for real events, 0 for the padding of a final partial batch.
      q_hat: ``[B, A]`` reward-model predictions (DR's model, the two-stage ranker's scores), or ``None``.
    """

    data: LoggedData
    mask: jax.Array
    q_hat: jax.Array | None = None


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
    """

    params: dict
    loss: jax.Array
    train_value: jax.Array
    test_value: jax.Array
    initial_value: jax.Array
    behavior_value: jax.Array
    optimal_value: jax.Array


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


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with L2 decay coupled as in PyTorch's ``Adam(weight_decay)``, or AdamW (decoupled)."""
    if config.optimizer == "adamw":
        return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(config.learning_rate))


def objective_loss(
    config: TrainConfig, params: dict, batch: Batch, key: jax.Array | None = None
) -> jax.Array:
    """The configured objective's surrogate loss of one batch (``key`` drives sampled estimators)."""
    data = batch.data
    context_embedding = config.model.embed_context(params, data.context)
    scores = context_embedding @ config.model.embed_actions(params, data.action_context).T
    pscore, extra = data.pscore, 0.0
    if config.estimate_propensities:
        pscore = logged_propensity(params["behavior"], context_embedding, data.action)
        extra = behavior_loss(params["behavior"], context_embedding, data.action, mask=batch.mask)
    return extra + config.objective.loss(
        scores=scores,
        log_pi=log_policy(scores, config.temperature),
        action=data.action,
        reward=data.reward,
        pscore=pscore,
        q_hat=batch.q_hat,
        key=key,
        mask=batch.mask,
    )


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


def make_train(config: TrainConfig) -> Callable[..., TrainResult]:
    """Returns ``train(key, data=None, test_data=None, q_hat=None) -> TrainResult``, pure in its key.

    Without ``data`` the run draws the built-in synthetic problem and logs
    ``n_rounds`` training and ``n_test_rounds`` test events from it. Given ``data``
    (a :class:`LoggedData`), it trains on those; values are reported where
    ``expected_reward`` is known (test values on ``test_data``, else on ``data``) and are
    NaN otherwise. When the objective needs a reward model (``needs_q_hat``), it is
    cross-fitted on ``data`` (``config.reward_model.folds``, default 2: each row's ``q_hat``
    comes from a model that did not see it) unless ``q_hat`` ``[n, A]`` (predictions for
    ``data``'s rows) is given.
    """
    model = config.model
    optimizer = make_optimizer(config)
    update = make_update_step(config)
    reward_model = RewardModel(config.reward_model)

    def train(
        key: jax.Array,
        data: LoggedData | None = None,
        test_data: LoggedData | None = None,
        q_hat: jax.Array | None = None,
    ):
        key_problem, key_data, key_test, key_init, key_q, key_epochs = jax.random.split(key, 6)
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
        elif test_data is None:
            test_data = data
        n, batch_size = data.n_rounds, min(config.batch_size, data.n_rounds)

        params = model.init(key_init, data.context.shape[-1], data.action_context.shape[-1])
        initial_params = params
        if config.estimate_propensities:
            params = dict(params)
            params["behavior"] = init_behavior_head(
                jax.random.fold_in(key_q, 1), data.n_actions, config.embedding_size
            )
        if not config.objective.needs_q_hat:
            q_hat = None
        elif q_hat is None:
            q_hat = reward_model.cross_fit(key_q, data)

        def value(params, logs: LoggedData) -> jax.Array:
            if logs.expected_reward is None:
                return jnp.full((), jnp.nan)
            scores = model.scores(params, logs.context, logs.action_context)
            return policy_value(log_policy(scores, config.temperature), logs.expected_reward)

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
                ),
                mask=mask,
                q_hat=rows.get("q_hat"),
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

        def epoch(state, key):
            key_order, key_steps = jax.random.split(key)
            index, mask = epoch_batches(key_order, n, batch_size)
            # One gather per epoch: the scan then reads contiguous [B, ...] slices.
            rows = jax.tree.map(lambda a: a[index], per_event)
            step_keys = jax.random.split(key_steps, num_batches(n, batch_size))
            state, weighted = jax.lax.scan(
                batch_step,
                state,
                (rows, mask, step_keys),
            )
            params = state[0]
            train_value = value(params, data) if config.evaluate_train else jnp.full((), jnp.nan)
            metrics = (jnp.sum(weighted) / n, train_value, value(params, test_data))
            return state, metrics

        state = (params, optimizer.init(params))
        (params, _), (loss, train_value, test_value) = jax.lax.scan(
            epoch, state, jax.random.split(key_epochs, config.epochs)
        )
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
            initial_value=value(initial_params, test_data),
            behavior_value=behavior_value,
            optimal_value=optimal_value,
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


def seed_sharding(seeds: int, devices: int | None = None) -> NamedSharding:
    """Shards a leading seed axis of length ``seeds`` over local devices.

    Uses the largest number of devices, at most ``devices`` (all local ones by default),
    that divides ``seeds``; the runs are independent, so each device runs its seeds with
    no communication and the numbers equal a single-device run's.
    """
    local = jax.local_devices()
    limit = len(local) if devices is None else max(1, min(int(devices), len(local)))
    count = max(k for k in range(1, limit + 1) if seeds % k == 0)
    return NamedSharding(Mesh(np.array(local[:count]), ("seed",)), PartitionSpec("seed"))


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
    per_seed_data: bool = False,
) -> SeedRunner:
    """Lowers and compiles ``seeds`` runs of ``make_train(config)`` as one call.

    The ``S`` keys are laid out ``[groups, S / groups]``; the inner axis is ``vmap``ped and
    sharded over devices, the outer one is a ``lax.map`` (sequential), so each device holds
    ``seeds_per_device`` runs at a time (default :data:`SEEDS_PER_DEVICE_GROUP`, or fewer
    when it does not divide the seeds). Every run depends only on its own key (and data),
    so the layout changes speed, not results (up to float rounding).

    ``data``, ``test_data`` and ``q_hat`` are passed to every run (see :func:`make_train`);
    without ``data`` each run draws the built-in synthetic problem from its key. They are
    arguments of the compiled call, not constants folded into it. With
    ``per_seed_data=True`` their arrays carry a leading ``[S]`` axis, one slice per seed,
    laid out and sharded like the keys.
    """
    seeds = check_positive_int("seeds", seeds)
    if data is None and (test_data is not None or q_hat is not None):
        raise InputError("data", "test_data and q_hat need data")
    sharding = seed_sharding(seeds, devices)
    count = len(sharding.mesh.devices.flat)
    per_device = seeds // count
    limit = seeds_per_device or SEEDS_PER_DEVICE_GROUP
    group = max(g for g in range(1, min(limit, per_device) + 1) if per_device % g == 0)
    groups = per_device // group
    layout = NamedSharding(sharding.mesh, PartitionSpec(None, "seed"))
    keys = jax.random.split(jax.random.key(seed), seeds).reshape(groups, group * count)
    keys = jax.device_put(keys, layout)
    inputs = (data, test_data, q_hat)
    if per_seed_data:
        for name, value in zip(("data", "test_data", "q_hat"), inputs, strict=True):
            for leaf in jax.tree.leaves(value):
                if leaf.shape[:1] != (seeds,):
                    raise InputError(name, f"per_seed_data: expected a leading axis of {seeds} seeds")
        inputs = jax.tree.map(
            lambda a: jax.device_put(a.reshape(groups, group * count, *a.shape[1:]), layout), inputs
        )
    train = make_train(config)
    run_group = jax.vmap(train, in_axes=(0, 0, 0, 0) if per_seed_data else (0, None, None, None))

    def run(keys, inputs):
        if per_seed_data:
            return jax.lax.map(lambda args: run_group(args[0], *args[1]), (keys, inputs))
        return jax.lax.map(lambda k: run_group(k, *inputs), keys)

    start = time.perf_counter()
    compiled = jax.jit(run).lower(keys, inputs).compile()
    return SeedRunner(compiled, keys, inputs, seeds, groups, count, time.perf_counter() - start)


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
    per_seed_data: bool = False,
    finite: bool = True,
) -> tuple[TrainResult, dict]:
    """Runs ``seeds`` independent runs of ``config`` as one compiled call (:func:`compile_seeds`).

    ``data``, ``test_data``, ``q_hat`` and ``per_seed_data`` as in :func:`compile_seeds`:
    your own logs, or (without them) the built-in synthetic problem drawn per seed.
    Returns the stacked :class:`TrainResult` (host numpy arrays, leading ``[S]`` axis) and
    timings: ``seconds_compile`` (lowering and compiling), ``seconds_train`` (the compiled
    call on all seeds, to ``block_until_ready``), ``seed_steps`` and ``devices``. A run whose
    loss or parameters became NaN/inf raises :class:`NonFiniteError` (``finite=False``
    returns the result as it is).
    """
    runner = compile_seeds(
        config,
        seeds=seeds,
        seed=seed,
        devices=devices,
        seeds_per_device=seeds_per_device,
        data=data,
        test_data=test_data,
        q_hat=q_hat,
        per_seed_data=per_seed_data,
    )
    start = time.perf_counter()
    result = jax.block_until_ready(runner.run())
    seconds_train = time.perf_counter() - start
    if data is None:
        rounds = config.n_rounds
    else:
        rounds = data.action.shape[-1]
    timing = {
        "seconds_compile": runner.seconds_compile,
        "seconds_train": seconds_train,
        "seed_steps": seeds * config.epochs * num_batches(rounds, min(config.batch_size, rounds)),
        "devices": runner.devices,
    }
    result = jax.device_get(result)
    if finite:
        check_finite(result, config.objective, seed=seed)
    return result, timing
