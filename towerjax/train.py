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

from towerjax import losses
from towerjax.batching import epoch_batches, num_batches
from towerjax.behavior import behavior_loss, init_behavior_head, logged_propensity
from towerjax.data import LoggedData
from towerjax.policy import log_policy, policy_value
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.synthetic import blog_problem, sample_logged_data
from towerjax.towers import TwoTower, check_activation
from towerjax.two_stage import two_stage_ips_loss

__all__ = [
    "OBJECTIVES",
    "Batch",
    "SeedRunner",
    "TrainConfig",
    "TrainResult",
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

OBJECTIVES = ("ips", "dr", "regression", "naive", "snips", "topk", "two-stage")
TWO_STAGE_CLIP = (0.01, 10.0)  # Ma et al. 2020's weight clipping (then self-normalised)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the seed study's (SPEC 6).

    The data fields (``behavior`` .. ``dim``) describe the built-in synthetic problem
    (:func:`towerjax.synthetic.blog_problem`); they are ignored when ``train`` is given
    logs of its own. ``cap``, ``clip``, ``self_normalize`` and ``variance_penalty`` shape the
    importance weights of ``ips``, ``snips`` (self-normalised IPS), ``dr`` and ``two-stage``
    (``cap`` also bounds ``topk``'s weight); :meth:`weight_options` resolves them. ``clip=None``
    and ``self_normalize=None`` take the objective's default: Ma et al.'s clip to
    ``(0.01, 10)`` then self-normalisation for ``two-stage``, self-normalisation for ``snips``,
    neither otherwise; ``clip=False`` turns clipping off. ``topk`` is the slate size ``K`` of
    the top-K correction. ``two-stage`` (Ma et al. 2020) samples ``num_samples`` candidate
    sets of ``candidates`` items (at most ``A``) with weight ``alpha`` on the other
    candidates; its fixed ranker is the reward model fitted on the logs (as for ``dr``),
    scoring items by ``q_hat``.
    ``estimate_propensities=True`` ignores the logged ``pscore`` and trains a behaviour head
    (:mod:`towerjax.behavior`) alongside, whose ``sg(beta_hat(a_i|x_i))`` replaces it.
    ``evaluate_train=False`` skips the per-epoch true value on the
    training contexts (reported as NaN), which saves a forward pass over them each epoch.
    """

    objective: str = "ips"
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
    learning_rate: float = 0.005
    weight_decay: float = 1e-6
    batch_size: int = 10
    epochs: int = 100
    reward_model: RewardModelConfig = dataclasses.field(default_factory=RewardModelConfig)
    cap: float | None = None
    clip: tuple[float, float] | bool | None = None
    self_normalize: bool | None = None
    variance_penalty: float = 0.0
    topk: int = 2
    candidates: int = 30
    num_samples: int = 100
    alpha: float = 1e-3
    estimate_propensities: bool = False
    evaluate_train: bool = True

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {OBJECTIVES}, got {self.objective!r}")
        if self.behavior not in ("uniform", "epsilon-greedy"):
            raise ValueError(f"behavior: expected 'uniform' or 'epsilon-greedy', got {self.behavior!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon: expected a value in [0, 1], got {self.epsilon}")
        for name in (
            "n_rounds",
            "n_test_rounds",
            "n_actions",
            "dim",
            "embedding_size",
            "batch_size",
            "epochs",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.n_actions < 2:
            raise ValueError(f"n_actions: expected at least 2, got {self.n_actions}")
        if self.batch_size > self.n_rounds:
            raise ValueError(f"batch_size: expected at most n_rounds={self.n_rounds}, got {self.batch_size}")
        check_activation(self.activation)
        if self.clip is True:
            raise ValueError("clip: expected a pair (c_min, c_max), None (the objective's default) or False")
        if self.clip not in (None, False):
            object.__setattr__(self, "clip", tuple(self.clip))
        if self.self_normalize is False and self.objective == "snips":
            raise ValueError("self_normalize: the snips objective always self-normalises")
        options = self.weight_options()
        losses.check_weight_options(options["cap"], options["clip"])
        if not self.variance_penalty >= 0:
            raise ValueError(f"variance_penalty: expected >= 0, got {self.variance_penalty}")
        for name in ("topk", "candidates", "num_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha: expected >= 0, got {self.alpha}")
        for name in ("temperature", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay}")
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))

    @property
    def model(self) -> TwoTower:
        return TwoTower(self.hidden_sizes, self.embedding_size, self.activation)

    def weight_options(self) -> dict:
        """``{"cap", "clip", "self_normalize"}`` as the objective applies them (defaults resolved)."""
        clip, self_normalize = self.clip, self.self_normalize
        if clip is None:
            clip = TWO_STAGE_CLIP if self.objective == "two-stage" and self.cap is None else None
        if self_normalize is None:
            self_normalize = self.objective in ("snips", "two-stage")
        return {"cap": self.cap, "clip": clip or None, "self_normalize": self_normalize}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam with L2 decay coupled as in PyTorch's ``Adam(weight_decay)``."""
    return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(config.learning_rate))


def objective_loss(
    config: TrainConfig, params: dict, batch: Batch, key: jax.Array | None = None
) -> jax.Array:
    """The configured surrogate loss of one batch (``key`` drives sampled estimators)."""
    data = batch.data
    context_embedding = config.model.embed_context(params, data.context)
    scores = context_embedding @ config.model.embed_actions(params, data.action_context).T
    pscore, extra = data.pscore, 0.0
    if config.estimate_propensities:
        pscore = logged_propensity(params["behavior"], context_embedding, data.action)
        extra = behavior_loss(params["behavior"], context_embedding, data.action, mask=batch.mask)
    return extra + _policy_loss(config, scores, data, pscore, batch, key)


def _policy_loss(config: TrainConfig, scores, data: LoggedData, pscore, batch: Batch, key) -> jax.Array:
    if config.objective == "regression":
        return losses.regression_loss(scores, data.action, data.reward, mask=batch.mask)
    log_pi = log_policy(scores, config.temperature)
    logged = (log_pi, data.action, data.reward, pscore)
    weights = config.weight_options()
    if config.objective in ("ips", "snips"):
        return losses.ips_loss(*logged, variance_penalty=config.variance_penalty, mask=batch.mask, **weights)
    if config.objective == "dr":
        return losses.dr_loss(
            *logged, batch.q_hat, variance_penalty=config.variance_penalty, mask=batch.mask, **weights
        )
    if config.objective == "topk":
        return losses.topk_ips_loss(*logged, k=config.topk, cap=config.cap, mask=batch.mask)
    if config.objective == "two-stage":
        if key is None:
            raise ValueError("key: the two-stage objective samples candidate sets and needs a key")
        return two_stage_ips_loss(
            key,
            *logged,
            batch.q_hat,
            k=min(config.candidates, scores.shape[-1]),
            num_samples=config.num_samples,
            alpha=config.alpha,
            mask=batch.mask,
            **weights,
        )
    return losses.naive_loss(log_pi, data.action, data.reward, mask=batch.mask)


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
    """Returns ``train(key, data=None, test_data=None) -> TrainResult``, pure in its key.

    Without ``data`` the run draws the built-in synthetic problem and logs
    ``n_rounds`` training and ``n_test_rounds`` test events from it. Given ``data``
    (a :class:`LoggedData`), it trains on those; values are reported where
    ``expected_reward`` is known (test values on ``test_data``, else on ``data``) and are
    NaN otherwise.
    """
    model = config.model
    optimizer = make_optimizer(config)
    update = make_update_step(config)
    reward_model = RewardModel(config.reward_model)

    def train(key: jax.Array, data: LoggedData | None = None, test_data: LoggedData | None = None):
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
        q_hat = None
        if config.objective in ("dr", "two-stage"):
            q_params = reward_model.fit(key_q, data)
            q_hat = reward_model.predict(q_params, data.context, data.action_context, chunk_size=4096)

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
    seeds: int
    groups: int
    devices: int
    seconds_compile: float

    def run(self) -> TrainResult:
        out = self.compiled(self.keys)
        return jax.tree.map(lambda a: a.reshape(self.seeds, *a.shape[2:]), out)


def compile_seeds(
    config: TrainConfig,
    *,
    seeds: int,
    seed: int = 0,
    devices: int | None = None,
    seeds_per_device: int | None = None,
) -> SeedRunner:
    """Lowers and compiles ``seeds`` runs of ``make_train(config)`` as one call.

    The ``S`` keys are laid out ``[groups, S / groups]``; the inner axis is ``vmap``ped and
    sharded over devices, the outer one is a ``lax.map`` (sequential), so each device holds
    ``seeds_per_device`` runs at a time (default :data:`SEEDS_PER_DEVICE_GROUP`, or fewer
    when it does not divide the seeds). Every run depends only on its own key, so the
    layout changes speed, not results (up to float rounding).
    """
    if isinstance(seeds, bool) or int(seeds) != seeds or seeds < 1:
        raise ValueError(f"seeds: expected a positive integer, got {seeds!r}")
    sharding = seed_sharding(seeds, devices)
    count = len(sharding.mesh.devices.flat)
    per_device = seeds // count
    limit = seeds_per_device or SEEDS_PER_DEVICE_GROUP
    group = max(g for g in range(1, min(limit, per_device) + 1) if per_device % g == 0)
    groups = per_device // group
    keys = jax.random.split(jax.random.key(seed), seeds).reshape(groups, group * count)
    keys = jax.device_put(keys, NamedSharding(sharding.mesh, PartitionSpec(None, "seed")))
    train = jax.vmap(make_train(config))
    start = time.perf_counter()
    compiled = jax.jit(lambda k: jax.lax.map(train, k)).lower(keys).compile()
    return SeedRunner(compiled, keys, seeds, groups, count, time.perf_counter() - start)


def train_seeds(
    config: TrainConfig,
    *,
    seeds: int = 8,
    seed: int = 0,
    devices: int | None = None,
    seeds_per_device: int | None = None,
) -> tuple[TrainResult, dict]:
    """Runs ``seeds`` independent runs of ``config`` as one compiled call (:func:`compile_seeds`).

    Returns the stacked :class:`TrainResult` (host numpy arrays, leading ``[S]`` axis) and
    timings: ``seconds_compile`` (lowering and compiling), ``seconds_train`` (the compiled
    call on all seeds, to ``block_until_ready``), ``seed_steps`` and ``devices``.
    """
    runner = compile_seeds(config, seeds=seeds, seed=seed, devices=devices, seeds_per_device=seeds_per_device)
    start = time.perf_counter()
    result = jax.block_until_ready(runner.run())
    seconds_train = time.perf_counter() - start
    timing = {
        "seconds_compile": runner.seconds_compile,
        "seconds_train": seconds_train,
        "seed_steps": seeds * config.epochs * num_batches(config.n_rounds, config.batch_size),
        "devices": runner.devices,
    }
    return jax.device_get(result), timing
