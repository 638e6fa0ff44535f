"""The memory a run on the built-in synthetic problem needs, checked before it starts.

:func:`run_memory` estimates the biggest arrays one run of ``make_train(config, problem)``
holds, by what they grow with; :func:`check_run_memory` refuses a run that would not fit in
the memory available (:func:`available_memory`) with one :class:`~towerjax.checks.InputError`
naming the setting to reduce. An estimate, float32 throughout: it counts arrays, not the
compiler's exact buffer plan.
"""

from __future__ import annotations

import os

import jax

from towerjax.batching import ROW_CHUNK_ELEMENTS
from towerjax.checks import InputError
from towerjax.synthetic import DENSE_LOG_ELEMENTS, SyntheticProblem
from towerjax.training.config import TrainConfig

__all__ = ["RUNTIME_BYTES", "available_memory", "check_run_memory", "run_memory"]

# JAX, XLA and the compiled program before any array (measured: about 0.4 GB on CPU).
RUNTIME_BYTES = 512 << 20
_FLOAT = 4
# Which setting makes each part of run_memory smaller.
_REDUCE = {
    "logs": "n_rounds",
    "items": "n_actions",
    "chunks": "n_actions",
    "step": "sampled_softmax",
    "reward_model": "n_actions",
}
_PARTS = {
    "logs": "logs",
    "items": "item features and tower outputs",
    "chunks": "row chunks",
    "step": "full-softmax update step",
    "reward_model": "reward model predictions",
}


def run_memory(config: TrainConfig, problem: SyntheticProblem) -> dict[str, int]:
    """Bytes of the biggest arrays one run holds, by part (``n`` training and ``t`` test rounds,
    ``A`` items of ``d`` features, hidden sizes ``h``, embedding size ``D``, batch ``B``):

    * ``logs``: contexts ``(n + t) d``; logs with dense ``[n, A]`` ``pi_b`` and
      ``expected_reward`` (at most :data:`~towerjax.synthetic.DENSE_LOG_ELEMENTS` pairs, or
      an objective that reads ``pi_b``) also those, and the sampling's temporaries.
    * ``items``: the item features ``[A, d]`` and the item tower's activations and output
      ``[A, sum(h) + D]`` (evaluation embeds every item).
    * ``chunks``: the per-row work over every item, chunks of ``[rows, A]``.
    * ``step``: without a sampled softmax, the update step's item tower forward and backward
      over all ``A`` items and its ``[B, A]`` scores.
    * ``reward_model``: the cross-fitted ``[n, A]`` predictions of objectives that need one
      (without a sampled softmax).
    """
    n, t, n_items, dim = problem.n_rounds, problem.n_test_rounds, problem.n_actions, problem.dim
    widths = sum(config.hidden_sizes) + config.embedding_size
    batch = min(config.batch_size, n)
    dense = config.objective.needs_pi_b or max(n, t) * n_items <= DENSE_LOG_ELEMENTS
    logs = (n + t) * (dim + 4)
    if dense:  # pi_b and q stored for both logs; log pi_b, noise and logits while sampling
        logs += 2 * (n + t) * n_items + 3 * max(n, t) * n_items
    parts = {
        "logs": logs,
        "items": n_items * (dim + 2 * widths),
        "chunks": 8 * min(max(n, t) * n_items, ROW_CHUNK_ELEMENTS),
        "step": 0,
        "reward_model": 0,
    }
    if config.sampled_softmax is None:
        parts["step"] = 3 * n_items * widths + 4 * batch * n_items
        if config.objective.needs_q_hat:
            parts["reward_model"] = 2 * n * n_items
    return {name: count * _FLOAT for name, count in parts.items()}


def available_memory() -> int:
    """Bytes available to a run: the accelerator's limit (``memory_stats()["bytes_limit"]``)
    when the default device has one, else the host's ``MemAvailable`` (``/proc/meminfo``; or
    free pages times the page size)."""
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_run_memory(
    config: TrainConfig, problem: SyntheticProblem, *, runs: int = 1, available: int | None = None
) -> int:
    """Returns the bytes ``runs`` runs at once need (:func:`run_memory` each, plus
    :data:`RUNTIME_BYTES`).

    Raises:
      InputError: naming the setting to reduce (``n_actions``, ``n_rounds``, or
        ``sampled_softmax`` for a full softmax over many items) when that exceeds
        ``available`` (default :func:`available_memory`).
    """
    parts = run_memory(config, problem)
    needed = runs * sum(parts.values()) + RUNTIME_BYTES
    available = available_memory() if available is None else available
    if needed <= available:
        return needed
    biggest = max(parts, key=parts.get)
    argument = _REDUCE[biggest]
    advice = "set it (e.g. 1024)" if argument == "sampled_softmax" else "reduce it"
    raise InputError(
        argument,
        f"{runs} run(s) of {problem.n_rounds:,} rounds and {problem.n_actions:,} items need about "
        f"{needed / 1e9:.1f} GB ({_PARTS[biggest]} {runs * parts[biggest] / 1e9:.1f} GB), "
        f"{available / 1e9:.1f} GB available; {advice}",
    )
