"""Many seeds of one configuration as one compiled call: :func:`compile_seeds` lays the seeds'
keys out over the devices (``vmap`` within a device group, ``lax.map`` across groups) and
:func:`train_seeds` runs them, timed, with the results on the host and checked to be finite.

While :func:`train_seeds` runs, Ctrl-C (SIGINT) is checked after every epoch and stops the run
with :class:`TrainingInterrupted`; progress is a bar on a terminal or :class:`EpochLines`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from towerjax.batching import num_batches
from towerjax.checks import InputError, check_positive_int
from towerjax.data import LoggedData
from towerjax.objectives import Objective
from towerjax.reward_model import distinct_contexts
from towerjax.synthetic import SyntheticProblem
from towerjax.training.config import TRACED_FIELDS, TrainConfig
from towerjax.training.loop import TrainResult, make_train, validates_dr
from towerjax.training.parallel import put_sharded, seed_sharding, to_host

__all__ = [
    "SEEDS_PER_DEVICE_GROUP",
    "STOP_GRACE_SECONDS",
    "EpochLines",
    "NonFiniteError",
    "SeedRunner",
    "TrainingInterrupted",
    "candidate_values",
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


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped :func:`train_seeds`; the run returns nothing.

    ``epoch`` is the last epoch the run reached (0: stopped while tracing or compiling) of
    ``epochs``; with several sequential groups of seeds, in ``group`` of ``groups``. A
    ``KeyboardInterrupt``, so code that stops on Ctrl-C stops on it too.
    """

    def __init__(self, *, epoch: int, epochs: int, group: int = 1, groups: int = 1):
        self.epoch, self.epochs, self.group, self.groups = epoch, epochs, group, groups
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.epoch == 0:
            return "interrupted while compiling"
        where = f" (seed group {self.group} of {self.groups})" if self.groups > 1 else ""
        return f"interrupted at epoch {self.epoch} of {self.epochs}{where}"

    def __reduce__(self):
        return (_rebuild_interrupted, (self.epoch, self.epochs, self.group, self.groups))


def _rebuild_interrupted(epoch, epochs, group, groups):
    return TrainingInterrupted(epoch=epoch, epochs=epochs, group=group, groups=groups)


class EpochLines:
    """Progress of :func:`train_seeds` as plain lines, for logs and pipes (a bar on a terminal).

    ``say`` receives ``"epoch 10 of 30, 12 s elapsed, ~24 s left"`` every ``every`` epochs
    (default: about ten lines a run), at least every ``seconds`` and after the last epoch,
    and first a line saying the run is compiled. Default ``say``: a line on stderr.
    """

    def __init__(
        self, say: Callable[[str], None] | None = None, *, every: int | None = None, seconds: float = 30.0
    ):
        self.say = say or _say_on_stderr
        self.every, self.seconds = every, seconds
        self.epochs, self.groups, self.done = 1, 1, 0
        self.start_time = self.last_time = time.perf_counter()

    def start(self, *, epochs: int, groups: int, label: str, seconds_compile: float) -> None:
        """Called by :func:`train_seeds` once the run is compiled, before its first epoch."""
        self.epochs, self.groups, self.done = epochs, groups, 0
        self.start_time = self.last_time = time.perf_counter()
        self.say(f"{label}: compiled in {seconds_compile:.1f} s; training {epochs} epochs ...")

    def __call__(self, epoch: int) -> None:
        self.done += 1
        total = self.epochs * self.groups
        every = self.every or max(1, math.ceil(self.epochs / 10))
        now = time.perf_counter()
        if epoch % every and self.done < total and now - self.last_time < self.seconds:
            return
        self.last_time = now
        elapsed = now - self.start_time
        left = elapsed / self.done * (total - self.done)
        group = (self.done - 1) // self.epochs + 1
        where = f" (seed group {group} of {self.groups})" if self.groups > 1 else ""
        self.say(f"epoch {epoch} of {self.epochs}{where}, {elapsed:.0f} s elapsed, ~{left:.0f} s left")


def _say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _StopRequested(Exception):
    """Raised in the epoch callback to abort the compiled run (XLA reports it as its own error)."""


class _EpochHook:
    """The ``on_epoch`` of a :func:`train_seeds` run: remembers the epoch reached, reports
    progress, and raises :class:`_StopRequested` once ``stop`` is set (by Ctrl-C, or by a
    ``report`` that raises ``KeyboardInterrupt``); ``stopped`` is when it first raised."""

    def __init__(self, report: Callable[[int], None] | None):
        self.report = report
        self.stop = False
        self.stopped: float | None = None
        self.epoch, self.group = 0, 1

    def __call__(self, epoch: int) -> None:
        if epoch < self.epoch:  # the next sequential group of seeds started
            self.group += 1
        self.epoch = epoch
        if not self.stop and self.report is not None:
            try:
                self.report(epoch)
            except KeyboardInterrupt:
                self.stop = True
        if self.stop:
            self.stopped = self.stopped or time.perf_counter()
            raise _StopRequested


def _drop_stop_records(record: logging.LogRecord) -> bool:
    """A log filter: JAX logs every exception raised in a callback; ours is not an error."""
    return not (record.exc_info and record.exc_info[0] is _StopRequested)


@contextlib.contextmanager
def _stop_on_sigint(hook: _EpochHook, interrupted: Callable[[], TrainingInterrupted]) -> Iterator[None]:
    """While the block runs, the first Ctrl-C sets ``hook.stop`` (the run stops after its
    epoch) and a second raises at once; the previous handler is restored afterwards. Only
    the main thread receives signals: elsewhere, and where SIGINT is ignored, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return

    def handler(signum, frame):
        if hook.stop:
            raise interrupted()
        hook.stop = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


# After the epoch check stopped the run on the first device, how long to wait for the rest.
STOP_GRACE_SECONDS = 0.5


def _run_interruptibly(runner: SeedRunner, hook: _EpochHook, interrupted: Callable[[], TrainingInterrupted]):
    """``runner.run()`` to ``block_until_ready``, in a worker thread while the main thread
    waits: the compiled call holds the thread that starts it until it ends, and a signal
    handler runs only when the main thread runs Python. Once ``hook.stop`` is set, the next
    epoch's callback raises, XLA aborts the run, and this raises ``interrupted()``.

    The epoch callback runs on the first device only (XLA places a host callback of
    unsharded values there), so runs of seeds on other devices go on to their end: after
    :data:`STOP_GRACE_SECONDS` this raises without waiting for them: they finish in the
    worker thread, which the interpreter waits for at exit (the command line ends the
    process at once)."""
    box = {}

    def work():
        try:
            box["result"] = jax.block_until_ready(runner.run())
        except BaseException as err:  # handed to the main thread
            box["error"] = err

    debugging = logging.getLogger("jax._src.debugging")
    debugging.addFilter(_drop_stop_records)
    told = False
    try:
        with _stop_on_sigint(hook, interrupted):
            worker = threading.Thread(target=work, name="towerjax-train")
            worker.start()
            requested = None
            while worker.is_alive():
                worker.join(0.1)
                now = time.perf_counter()
                if hook.stop and requested is None:
                    requested = now
                if hook.stopped is not None and now - hook.stopped > STOP_GRACE_SECONDS:
                    raise interrupted()
                if requested is not None and hook.stopped is None and now - requested > 2 and not told:
                    told = True
                    _say_on_stderr("stopping at the end of this epoch (Ctrl-C again to stop now)")
    finally:
        debugging.removeFilter(_drop_stop_records)
    if hook.stop:  # also after the last epoch's check: Ctrl-C was asked for, nothing is returned
        raise interrupted() from None
    if "error" in box:
        raise box["error"]
    return box["result"]


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
    In one process the ``[groups, S / groups]`` layout is flattened on the host: flattening
    it on the devices is a cross-device all-gather, a separate program whose rendezvous XLA's
    CPU backend aborts after 40 s when one device's thread is held elsewhere (seen in
    ``towerjax run``'s seed-study DR cell on 2 CPU devices).
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
        if jax.process_count() == 1:
            out = jax.device_get(out)
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
    hyperparameters: dict[str, Any] | None = None,
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

    ``hyperparameters`` ``{name: [C] values}`` (:data:`~towerjax.training.config.TRACED_FIELDS`)
    trains ``C`` candidates per seed: inside each seed's run a ``vmap`` over the candidates
    (``make_train``'s ``hyperparameters``), which share the seed's key (initialisation, batch
    order, validation split: common random numbers, so candidates differ by their settings
    only) and its data. The result then has leading axes ``[S, C]``.
    """
    seeds = check_positive_int("seeds", seeds)
    hyper = candidate_values(hyperparameters)
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
    train = make_train(
        config,
        problem,
        on_epoch=on_epoch,
        mesh=sharding.mesh if parallel else None,
        distinct_contexts=_distinct_contexts(config, data, validation),
    )
    in_axes = (0, 0, 0, 0, 0) if per_seed_data else (0, None, None, None, None)
    if hyper is not None:  # the candidates: an inner vmap, sharing the seed's key and data
        train = _over_candidates(train)
        inputs, in_axes = (*inputs, hyper), (*in_axes, None)
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


def _distinct_contexts(config: TrainConfig, data: LoggedData | None, validation: LoggedData | None):
    """The number of distinct contexts of ``data`` (on the host) where a reward model will score
    its rows against every item (the objective's, or the DR validation estimate's); else ``None``."""
    if data is None:
        return None
    scored = config.objective.needs_q_hat and config.sampled_softmax is None
    split = validation is None and config.validation_fraction > 0  # validation rows of data
    validated = split and validates_dr(config, data, round(config.validation_fraction * data.n_rounds))
    return distinct_contexts(data.context) if scored or validated else None


def candidate_values(hyperparameters: dict[str, Any] | None) -> dict[str, jax.Array] | None:
    """``{name: [C] float32}`` checked (names from :data:`TRACED_FIELDS`, one length ``C >= 1``),
    or ``None``."""
    if not hyperparameters:
        return None
    unknown = sorted(set(hyperparameters) - set(TRACED_FIELDS))
    if unknown:
        raise InputError(
            "hyperparameters", f"{unknown} cannot be traced; expected names from {TRACED_FIELDS}"
        )
    values = {name: np.asarray(v, np.float32).reshape(-1) for name, v in hyperparameters.items()}
    lengths = {v.shape[0] for v in values.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise InputError(
            "hyperparameters",
            f"expected one value per candidate, the same number for each name, got {lengths}",
        )
    return {
        name: jax.numpy.asarray(v, jax.numpy.int32 if name == "choice" else None)
        for name, v in values.items()
    }


def _over_candidates(train: Callable) -> Callable:
    """``train`` of one key and its data, ``vmap``ped over ``[C]`` hyperparameters (the last argument)."""

    def train_candidates(key, data, test_data, q_hat, validation, hyperparameters):
        def one(values):
            return train(key, data, test_data, q_hat, validation, values)

        return jax.vmap(one)(hyperparameters)

    return train_candidates


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
    hyperparameters: dict[str, Any] | None = None,
    finite: bool = True,
    progress: bool | EpochLines | Callable[[int], None] = False,
    label: str | None = None,
) -> tuple[TrainResult, dict]:
    """Runs ``seeds`` independent runs of ``config`` as one compiled call (:func:`compile_seeds`).

    ``problem``, ``data``, ``test_data``, ``q_hat``, ``validation``, ``per_seed_data`` and
    ``hyperparameters`` (``C`` candidates per seed, results ``[S, C]``) as in
    :func:`compile_seeds`: your own logs, or (without them) the synthetic problem drawn per seed.
    Returns the stacked :class:`TrainResult` (host numpy arrays, leading ``[S]`` axis) and
    timings: ``seconds_compile`` (lowering and compiling), ``seconds_train`` (the compiled
    call on all seeds, to ``block_until_ready``), ``seed_steps`` and ``devices``. A run whose
    loss or parameters became NaN/inf raises :class:`NonFiniteError` (``finite=False``
    returns the result as it is).

    Progress: ``progress=True`` shows a bar of epochs with the time elapsed and left when
    stderr is a terminal, else an :class:`EpochLines` line every few epochs on stderr; an
    :class:`EpochLines` sends its lines where it says; a callable is called with the epoch
    number after every epoch (once per sequential group of seeds).

    Ctrl-C: after compiling, the run checks for SIGINT after every epoch (on the main
    thread; the previous handler is restored afterwards) and stops within that epoch,
    raising :class:`TrainingInterrupted` with the epoch reached; so does a ``progress``
    callable that raises ``KeyboardInterrupt``. Ctrl-C while tracing or compiling raises it
    once the step in progress returns (epoch 0). With seeds on several devices the check
    reaches the first device's runs only: the call returns at once and the others finish
    in a background thread (which the interpreter waits for at exit).
    """
    if progress is True and not sys.stderr.isatty():
        progress = EpochLines()
    bars = []  # the bar is made once the number of sequential seed groups is known
    if progress is True:
        report = lambda _epoch: bars and bars[0].update(1)  # noqa: E731
    else:
        report = progress or None
    hook = _EpochHook(report)
    try:
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
            hyperparameters=hyperparameters,
            on_epoch=hook,
        )
    except KeyboardInterrupt:
        raise TrainingInterrupted(epoch=0, epochs=config.epochs) from None
    candidates = 1 if hyperparameters is None else len(next(iter(hyperparameters.values())))
    if label is None:
        label = f"{config.objective.name} x {seeds} seed{'s' if seeds > 1 else ''}"
        if hyperparameters is not None:
            label += f" x {candidates} candidate{'s' if candidates > 1 else ''}"
    if progress is True:
        from tqdm.auto import tqdm

        total = runner.groups * config.epochs
        bars.append(tqdm(total=total, unit="epoch", leave=False, desc=label))
    elif isinstance(progress, EpochLines):
        progress.start(
            epochs=config.epochs, groups=runner.groups, label=label, seconds_compile=runner.seconds_compile
        )

    def interrupted() -> TrainingInterrupted:
        return TrainingInterrupted(
            epoch=hook.epoch, epochs=config.epochs, group=hook.group, groups=runner.groups
        )

    start = time.perf_counter()
    try:
        result = _run_interruptibly(runner, hook, interrupted)
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
        "seed_steps": seeds
        * candidates
        * config.epochs
        * num_batches(rounds, min(config.batch_size, rounds)),
        "devices": runner.devices,
    }
    result = to_host(result)
    if finite:
        check_finite(result, config.objective, seed=seed)
    return result, timing
