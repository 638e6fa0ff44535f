"""Devices: seeds and minibatches laid out over them, and several processes joined into one run.

One process: :func:`expose_cpu_cores` (one XLA CPU device per core), :func:`seed_sharding`
(a ``seed`` or ``seed x batch`` mesh for :func:`~towerjax.training.seeds.compile_seeds`),
:func:`batch_mesh` and :func:`shard_batch` (a minibatch's events over devices),
:func:`put_sharded` and :func:`to_host` (arrays onto a mesh and back).

Several processes, one run: JAX's own multi-controller runtime (``jax.distributed``).
Each process runs the same program on its own devices (its CPU cores, its GPUs) and reads
only its share of the logs; JAX's coordinator lets the processes find each other and the
compiled step's collectives (``all-reduce`` of the gradients, NCCL on GPUs, Gloo over TCP
on CPUs) join them into one SPMD run. There is no transport of towerjax's own.

Start every process with the same program and the same three settings, as arguments of
:func:`initialize` or in the environment:

- ``TOWERJAX_COORDINATOR``: ``host:port`` of process 0, where it listens for the others;
- ``TOWERJAX_NUM_PROCESSES``: the number of processes ``P``;
- ``TOWERJAX_PROCESS_ID``: this process's index, ``0 .. P - 1``.

Then, in every process::

    import jax
    import towerjax
    from towerjax.training import parallel

    parallel.initialize()                       # before any other JAX call
    n = ...                                     # rows of the whole log (P divides it)
    rows = parallel.process_rows(n)             # this process's contiguous share
    local = read_my_rows(rows)                  # a LoggedData of those rows only
    data = parallel.global_logged_data(local)
    config = towerjax.TrainConfig(data_parallel=jax.device_count())
    result, _ = towerjax.train_seeds(config, seeds=1, data=data)   # the same on every process

The run equals one process's run on the same devices and the whole log (up to the order in
which the collectives sum). :func:`~towerjax.training.seeds.train_seeds` lays its ``seed x batch``
mesh over every process's devices, and with several processes it must use all of them
(seed slots times ``data_parallel`` equal to ``jax.device_count()``); it returns host numpy
results, gathered, on every process. With nothing configured :func:`initialize` does nothing
and everything runs in one process as before. Under Slurm, Open MPI or on Cloud TPUs,
calling ``jax.distributed.initialize()`` yourself (it detects those clusters) works as well.

References:
  JAX, *Introduction to multi-controller JAX* and ``jax.distributed.initialize``.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.training.step import Batch

__all__ = [
    "COORDINATOR",
    "NUM_PROCESSES",
    "PROCESS_ID",
    "batch_mesh",
    "expose_cpu_cores",
    "global_logged_data",
    "initialize",
    "initialize_from_environment",
    "process_rows",
    "put_sharded",
    "run_devices",
    "seed_sharding",
    "shard_batch",
    "to_host",
]

COORDINATOR = "TOWERJAX_COORDINATOR"
NUM_PROCESSES = "TOWERJAX_NUM_PROCESSES"
PROCESS_ID = "TOWERJAX_PROCESS_ID"


def _setting(value, argument: str, variable: str) -> tuple[object, str]:
    """``value``, or the environment variable's; and the name to report it under."""
    if value is not None:
        return value, argument
    return os.environ.get(variable) or None, variable


def _int_setting(value, name: str, low: int) -> int:
    try:
        number = int(value)
        ok = number == float(value) and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok or number < low:
        raise InputError(name, f"expected an integer >= {low}, got {value!r}")
    return number


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_seconds: int = 300,
) -> bool:
    """Joins this process to a multi-process run (``jax.distributed.initialize``).

    Each argument not given is read from its environment variable (:data:`COORDINATOR`,
    :data:`NUM_PROCESSES`, :data:`PROCESS_ID`). With none of the three set this is a no-op
    (one process), as it is with one process; otherwise all three are needed. Call it
    before any other JAX call (JAX's rule: the runtime starts with the first one). On CPU
    the processes' collectives use Gloo (``jax_cpu_collectives_implementation``) unless
    another implementation was chosen. Calling it again after it succeeded does nothing.

    Args:
      coordinator_address: ``host:port`` of process 0 (the same on every process).
      num_processes: the number of processes ``P``.
      process_id: this process's index in ``[0, P)``.
      timeout_seconds: how long to wait for the other processes to join.

    Returns:
      Whether JAX runs several processes now.

    Raises:
      InputError: a setting missing or malformed, naming the argument or variable.
    """
    coordinator, coordinator_name = _setting(coordinator_address, "coordinator_address", COORDINATOR)
    processes, processes_name = _setting(num_processes, "num_processes", NUM_PROCESSES)
    index, index_name = _setting(process_id, "process_id", PROCESS_ID)
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    settings = {coordinator_name: coordinator, processes_name: processes, index_name: index}
    if all(value is None for value in settings.values()):
        return False
    for name, value in settings.items():
        if value is None:
            given = ", ".join(n for n, v in settings.items() if v is not None)
            raise InputError(name, f"needed for a multi-process run (given: {given})")
    processes = _int_setting(processes, processes_name, 1)
    index = _int_setting(index, index_name, 0)
    if index >= processes:
        raise InputError(index_name, f"expected a process index below the {processes} processes, got {index}")
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(coordinator_name, f"expected host:port of process 0, got {coordinator!r}")
    if processes == 1:
        return False
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=str(coordinator),
        num_processes=processes,
        process_id=index,
        initialization_timeout=int(timeout_seconds),
    )
    return True


def initialize_from_environment() -> bool:
    """:func:`initialize` from the ``TOWERJAX_*`` environment only (what the CLI calls first)."""
    return initialize()


def process_rows(n: int, process_id: int | None = None, num_processes: int | None = None) -> slice:
    """This process's rows of a log of ``n`` rows: ``slice(p * n / P, (p + 1) * n / P)``.

    Equal contiguous shares in process order (``p`` is ``jax.process_index()`` and ``P``
    ``jax.process_count()`` unless given); ``P`` must divide ``n`` (drop or add rows to
    make it so: no padding is invented). One process gets ``slice(0, n)``.
    """
    index = jax.process_index() if process_id is None else process_id
    count = jax.process_count() if num_processes is None else num_processes
    if n % count:
        raise InputError("n_rounds", f"{n} rows do not split equally over {count} processes")
    share = n // count
    return slice(index * share, (index + 1) * share)


def _rows_sharding(mesh_or_devices: Mesh | Sequence | None) -> NamedSharding:
    if isinstance(mesh_or_devices, Mesh):
        mesh = mesh_or_devices
    else:
        devices = jax.devices() if mesh_or_devices is None else list(mesh_or_devices)
        mesh = Mesh(np.array(devices), ("rows",))
    return NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))


def _checksum(tree) -> int:
    crc = 0
    for leaf in jax.tree.leaves(tree):
        crc = zlib.crc32(np.ascontiguousarray(np.asarray(leaf)).tobytes(), crc)
    return crc


def global_logged_data(local: LoggedData, mesh_or_devices: Mesh | Sequence | None = None) -> LoggedData:
    """The whole log as global arrays, built from every process's own rows.

    Every process passes its rows ``local`` (``[n / P]`` rows: :func:`process_rows` of the
    whole log) and the same items; the result's per-row arrays (``context``, ``action``,
    ``reward``, ``pscore``, ``pi_b``, ``expected_reward``, ``position``) have the global
    ``[n]`` rows sharded over the devices (``jax.make_array_from_process_local_data``), and
    ``action_context`` ``[A, d_a]`` is replicated on all of them.

    Args:
      local: this process's rows of the log; ``action_context`` the whole item table.
      mesh_or_devices: where the rows go: a :class:`jax.sharding.Mesh` (rows over all its
        axes, e.g. the mesh of :func:`seed_sharding`), a sequence of
        devices, or ``None`` for ``jax.devices()``, every process's devices in order.

    Raises:
      InputError: processes with different numbers of rows or different items, rows not
        divisible by the devices, or devices not ordered by process.
    """
    sharding = _rows_sharding(mesh_or_devices)
    replicated = NamedSharding(sharding.mesh, PartitionSpec())
    n_local = local.n_rounds
    if jax.process_count() > 1:  # one small collective: every process's rows and items' checksum
        check = np.array([n_local, _checksum(local.action_context) & 0x7FFFFFFF], dtype=np.int32)
        seen = np.asarray(multihost_utils.process_allgather(check)).reshape(-1, 2)
        if np.any(seen[:, 0] != n_local):
            raise InputError(
                "local", f"expected the same number of rows on every process, got {seen[:, 0].tolist()}"
            )
        if np.any(seen[:, 1] != seen[0, 1]):
            raise InputError("local.action_context", "expected the same item table on every process")
    n = n_local * jax.process_count()
    local_devices = len(sharding.addressable_devices)
    if n % sharding.num_devices or n_local % max(local_devices, 1):
        raise InputError(
            "local",
            f"{n} rows ({n_local} per process) do not split equally over the {sharding.num_devices} devices",
        )
    held = sorted(
        index[0].indices(n)[:2] for index in sharding.addressable_devices_indices_map((n,)).values()
    )
    mine = process_rows(n)
    if not held:
        raise InputError("mesh_or_devices", "expected devices of every process, this one has none there")
    if held[0][0] != mine.start or held[-1][1] != mine.stop:
        raise InputError(
            "mesh_or_devices",
            f"this process's devices hold rows {held[0][0]}:{held[-1][1]}, not its share {mine.start}:{mine.stop}; "
            "order the devices by process (as jax.devices() does)",
        )

    def rows(value):
        return jax.tree.map(
            lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a), (n, *np.shape(a)[1:])),
            value,
        )

    def items(value):
        return jax.tree.map(
            lambda a: jax.make_array_from_process_local_data(replicated, np.asarray(a), np.shape(a)), value
        )

    fields = {field.name: getattr(local, field.name) for field in dataclasses.fields(local)}
    return LoggedData(
        **{name: items(v) if name == "action_context" else rows(v) for name, v in fields.items()}
    )


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


def run_devices() -> list:
    """The devices runs are laid out on: this process's, or every process's after
    ``jax.distributed.initialize`` (:func:`initialize`)."""
    return jax.devices() if jax.process_count() > 1 else jax.local_devices()


def batch_mesh(data_parallel: int) -> Mesh:
    """A 1-d ``("batch",)`` mesh of the first ``data_parallel`` devices."""
    devices = run_devices()
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
    available = run_devices()
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


def put_sharded(value, sharding: NamedSharding) -> jax.Array:
    """``jax.device_put(value, sharding)``; across processes (``jax.distributed``), where
    every process holds the same ``value``, each puts its own devices' part of it."""
    if sharding.is_fully_addressable:
        return jax.device_put(value, sharding)
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        data = put_sharded(jax.random.key_data(value), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(tree):
    """Host numpy copies; across processes every process gets every array whole."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)
