"""What the benchmark scripts share: records, the machine, memory and timing.

Every benchmark prints each result as one JSON object per line on stdout (``"kind"`` says
which; :func:`emit`), its progress on stderr stamped with the seconds since start
(:func:`log`), and with ``--json PATH`` all records as one JSON list (:func:`write_records`).
The first record describes the machine (:func:`environment`).

Memory: :func:`max_rss_bytes` is the process's peak resident set (``VmHWM``), :func:`proc_status`
any process's ``VmRSS``/``VmHWM``, :class:`RssSampler` samples them in the background (and can
stop a child process that grows too large), :func:`xla_memory` is XLA's buffer-assignment plan
of a compiled call. Timing: the machine is shared and noisy, so scripts time their
configurations in interleaved rounds and report :func:`median` s; :func:`seconds_per_call`
times a block of calls, :func:`timed` one call's wall and CPU seconds.

The scripts import it as ``harness`` (Python puts a script's own folder first on ``sys.path``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

GB = 1e9
START = time.perf_counter()  # when the benchmark started (this module is imported first)

__all__ = [
    "GB",
    "START",
    "RssSampler",
    "calls_per_block",
    "child_json",
    "cpu_seconds",
    "emit",
    "environment",
    "log",
    "logged_batch",
    "max_rss_bytes",
    "median",
    "proc_status",
    "scanned_update_steps",
    "seconds_per_call",
    "sig",
    "timed",
    "write_records",
    "xla_cost",
    "xla_memory",
]


# --------------------------------------------------------------------------- records


def log(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since the benchmark started."""
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", file=sys.stderr, flush=True)


def emit(record: dict, records: list[dict]) -> None:
    """Keeps ``record`` and prints it as one JSON line on stdout."""
    records.append(record)
    print(json.dumps(record), flush=True)


def write_records(path: str, records: list[dict]) -> None:
    """Writes every record as one JSON list (``--json PATH``)."""
    with open(path, "w") as handle:
        json.dump(records, handle, indent=2, default=str)


def sig(value: float | None, digits: int = 4) -> float | None:
    """Rounds to ``digits`` significant figures (JSON stays readable at any scale)."""
    return None if value is None else float(f"{value:.{digits}g}")


def median(values: list[float]) -> float | None:
    """The median, or ``None`` for no values."""
    return statistics.median(values) if values else None


def environment(jax: Any = None) -> dict:
    """The ``"environment"`` record: the CPU, cores, load, Python, package versions, XLA flags,
    time and command line; with ``jax`` (the imported module) also its devices and backend."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if "model name" in line), cpu)
    except OSError:
        pass
    record: dict[str, Any] = {"kind": "environment"}
    if jax is not None:
        record.update(
            devices=[str(d) for d in jax.devices()],
            device_count=jax.device_count(),
            backend=jax.default_backend(),
        )
    record.update(
        xla_flags=os.environ.get("XLA_FLAGS", ""),
        cpu=cpu,
        cpu_cores_available=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        load_average_at_start=[round(x, 2) for x in os.getloadavg()],
        python=platform.python_version(),
        versions=_versions(),
        time=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        argv=sys.argv,
    )
    return record


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("towerjax", "jax", "jaxlib", "optax", "flax", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    if "towerjax" in sys.modules:  # the imported code's own version (an editable install may differ)
        out["towerjax"] = getattr(sys.modules["towerjax"], "__version__", out["towerjax"])
    return out


# --------------------------------------------------------------------------- memory


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (bytes) of ``/proc/<pid>/status``; empty once the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return out


def max_rss_bytes() -> int:
    """This process's peak resident set size so far.

    ``VmHWM`` of ``/proc/self/status``, which starts afresh at ``exec``; ``getrusage``'s
    ``ru_maxrss`` is the fallback, but on Linux it survives ``exec``, so a child started
    from a large parent would report the parent's peak.
    """
    peak = proc_status().get("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


class RssSampler(threading.Thread):
    """Samples ``VmRSS`` / ``VmHWM`` of a process every ``interval`` seconds in the background.

    For a child process (an int ``pid``), ``kill_above`` bytes of RSS or ``deadline`` (a
    ``time.perf_counter()`` value) kills it with SIGKILL and records why in ``killed``: the
    machine is shared, and a run that would exhaust its memory is a result, not a crash.
    """

    def __init__(
        self,
        pid: int | str = "self",
        interval: float = 0.02,
        *,
        kill_above: float | None = None,
        deadline: float | None = None,
    ):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.kill_above, self.deadline = kill_above, deadline
        self.max_rss = self.hwm = 0
        self.killed: str | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            status = proc_status(self.pid)
            self.max_rss = max(self.max_rss, status.get("VmRSS", 0))
            self.hwm = max(self.hwm, status.get("VmHWM", 0))
            if isinstance(self.pid, int) and self.killed is None:
                if self.kill_above is not None and self.max_rss > self.kill_above:
                    self.killed = (
                        f"RSS {self.max_rss / GB:.2f} GB over the limit {self.kill_above / GB:.2f} GB"
                    )
                elif self.deadline is not None and time.perf_counter() > self.deadline:
                    self.killed = "over the time limit"
                if self.killed is not None:
                    try:
                        os.kill(self.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def xla_memory(compiled) -> dict:
    """XLA's buffer-assignment sizes of a compiled call (``jax.jit(f).lower(...).compile()``).

    ``xla_peak_bytes = temp + argument + output - alias``: the live buffers XLA plans for one
    call (arguments, outputs and the temporary arena; donated arguments that alias outputs
    counted once), excluding the generated code (``xla_generated_code_bytes``) and the Python
    process. It is known without running the call. ``None`` where the backend has no analysis.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception as error:  # some backends do not implement it
        return {"xla_peak_bytes": None, "xla_memory_error": repr(error)}
    if stats is None:
        return {"xla_peak_bytes": None}
    fields = ("temp", "argument", "output", "alias", "generated_code")
    sizes = {f"xla_{name}_bytes": int(getattr(stats, f"{name}_size_in_bytes", 0)) for name in fields}
    sizes["xla_peak_bytes"] = (
        sizes["xla_temp_bytes"]
        + sizes["xla_argument_bytes"]
        + sizes["xla_output_bytes"]
        - sizes["xla_alias_bytes"]
    )
    return sizes


def xla_cost(compiled) -> dict:
    """``compiled.cost_analysis()`` as one dict (a list of per-module dicts in older JAX)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        merged: dict = {}
        for part in cost:
            for key, value in (part or {}).items():
                if isinstance(value, int | float):
                    merged[key] = merged.get(key, 0.0) + float(value)
        return merged
    return dict(cost or {})


# --------------------------------------------------------------------------- timing


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``(fn(), wall seconds, CPU seconds)`` of one call; ``fn`` blocks on its own result."""
    cpu, start = cpu_seconds(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, cpu_seconds() - cpu


def seconds_per_call(jax: Any, fn: Callable[[], Any], steps: int) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls, blocking on the last result."""
    start = time.perf_counter()
    out = None
    for _ in range(steps):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / steps


def calls_per_block(seconds_one: float, block_seconds: float, cap: int = 200) -> int:
    """Calls per timed block so one block lasts about ``block_seconds`` (at least one)."""
    return max(1, min(cap, int(block_seconds / max(seconds_one, 1e-6))))


# --------------------------------------------------------------------------- child processes


def child_json(
    command: list[str], *, timeout: float = 900, env: dict | None = None, quiet: bool = False
) -> list[dict]:
    """Runs ``command`` (a benchmark in a fresh process) and returns the JSON objects its stdout
    printed, one per line; its stderr passes through unless ``quiet``. Raises
    ``subprocess.CalledProcessError`` or ``TimeoutExpired`` when it fails."""
    out = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
        timeout=timeout,
        check=True,
        env=env,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


# --------------------------------------------------------------------------- update steps


def logged_batch(data: Any, rows: Any, proposal: Any = None) -> Any:
    """The :class:`towerjax.training.Batch` of ``data``'s events ``rows`` ``[B]`` (all real, every item)."""
    import jax.numpy as jnp

    from towerjax.data import LoggedData
    from towerjax.features import take
    from towerjax.training import Batch

    return Batch(
        data=LoggedData(
            context=take(data.context, rows),
            action_context=data.action_context,
            action=data.action[rows],
            reward=data.reward[rows],
            pscore=data.pscore[rows],
        ),
        mask=jnp.ones(rows.shape[0], jnp.float32),
        proposal=proposal,
    )


def scanned_update_steps(update: Callable) -> Callable:
    """``jit((params, opt_state, data, proposal, rows [S, B], key) -> (params, opt_state, loss [S]))``:
    the update step ``update`` (:func:`towerjax.training.make_update_step`) under ``lax.scan`` over
    ``S`` pre-drawn minibatches, as training runs it (one compiled call per block; state donated)."""
    import jax

    def run(params, opt_state, data, proposal, rows, key):
        def body(state, inputs):
            index, step_key = inputs
            params, opt_state, metrics = update(*state, logged_batch(data, index, proposal), step_key)
            return (params, opt_state), metrics["loss"]

        keys = jax.random.split(key, rows.shape[0])
        (params, opt_state), loss = jax.lax.scan(body, (params, opt_state), (rows, keys))
        return params, opt_state, loss

    return jax.jit(run, donate_argnums=(0, 1))
