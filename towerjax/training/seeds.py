"""Many seeds of one configuration as one compiled call: :func:`compile_seeds` lays the seeds'
keys out over the devices (``vmap`` within a device group, ``lax.map`` across groups) and
:func:`train_seeds` runs them, timed, with the results on the host and checked to be finite."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from towerjax.batching import num_batches
from towerjax.checks import InputError, check_positive_int
from towerjax.data import LoggedData
from towerjax.objectives import Objective
from towerjax.synthetic import SyntheticProblem
from towerjax.training.config import TrainConfig
from towerjax.training.loop import TrainResult, make_train
from towerjax.training.parallel import put_sharded, seed_sharding, to_host

__all__ = [
    "SEEDS_PER_DEVICE_GROUP",
    "NonFiniteError",
    "SeedRunner",
    "check_finite",
    "compile_seeds",
    "train_seeds",
]


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
    problem: SyntheticProblem | None = None,
    data: LoggedData | None = None,
    test_data: LoggedData | None = None,
    q_hat: jax.Array | None = None,
    validation: LoggedData | None = None,
    per_seed_data: bool = False,
    on_epoch: Callable[[int], None] | None = None,
) -> SeedRunner:
    """Lowers and compiles ``seeds`` runs of ``make_train(config, problem)`` as one call.

    The ``S`` keys are laid out ``[groups, S / groups]``; the inner axis is ``vmap``ped and
    sharded over devices, the outer one is a ``lax.map`` (sequential), so each device holds
    ``seeds_per_device`` runs at a time (default :data:`SEEDS_PER_DEVICE_GROUP`, or fewer
    when it does not divide the seeds). Every run depends only on its own key (and data),
    so the layout changes speed, not results (up to float rounding).

    ``data``, ``test_data``, ``q_hat`` and ``validation`` are passed to every run (see :func:`make_train`);
    without ``data`` each run draws ``problem`` (default
    :class:`~towerjax.synthetic.SyntheticProblem()`) from its key. They are
    arguments of the compiled call, not constants folded into it. With
    ``per_seed_data=True`` their arrays carry a leading ``[S]`` axis, one slice per seed,
    laid out and sharded like the keys.
    """
    seeds = check_positive_int("seeds", seeds)
    if data is None and (test_data is not None or q_hat is not None or validation is not None):
        raise InputError("data", "test_data, q_hat and validation need data")
    if data is None:
        (problem or SyntheticProblem()).check_batch_size(config.batch_size)
    elif problem is not None:
        raise InputError("problem", "the synthetic problem is drawn only without data (your own logs)")
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
    keys = put_sharded(keys, layout)
    inputs = (data, test_data, q_hat, validation)
    if per_seed_data:
        for name, value in zip(("data", "test_data", "q_hat", "validation"), inputs, strict=True):
            for leaf in jax.tree.leaves(value):
                if leaf.shape[:1] != (seeds,):
                    raise InputError(name, f"per_seed_data: expected a leading axis of {seeds} seeds")
        inputs = jax.tree.map(
            lambda a: put_sharded(a.reshape(groups, group * count, *a.shape[1:]), layout), inputs
        )
    parallel = config.data_parallel > 1
    train = make_train(config, problem, on_epoch=on_epoch, mesh=sharding.mesh if parallel else None)
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
    problem: SyntheticProblem | None = None,
    data: LoggedData | None = None,
    test_data: LoggedData | None = None,
    q_hat: jax.Array | None = None,
    validation: LoggedData | None = None,
    per_seed_data: bool = False,
    finite: bool = True,
    progress: bool | Callable[[int], None] = False,
) -> tuple[TrainResult, dict]:
    """Runs ``seeds`` independent runs of ``config`` as one compiled call (:func:`compile_seeds`).

    ``problem``, ``data``, ``test_data``, ``q_hat``, ``validation`` and ``per_seed_data`` as in
    :func:`compile_seeds`: your own logs, or (without them) the synthetic problem drawn per seed.
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
        problem=problem,
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
        rounds = (problem or SyntheticProblem()).n_rounds
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
    result = to_host(result)
    if finite:
        check_finite(result, config.objective, seed=seed)
    return result, timing
