"""Chen et al. (WSDM 2019) stateless simulations, reproduced with towerjax's losses (SPEC 5.3).

A softmax policy over free logits ``theta [A]`` (no context) learns from actions logged by
a fixed behaviour policy ``beta`` with deterministic rewards ``r(a)``:

* (a) ``A = 10``, ``r(a_i) = i``, ``beta(a_i) = (11 - i) / 55``: the naive loss converges to
  ``pi(a_i) ∝ r_i beta_i``; IPS converges to all mass on ``a_10``.
* (b) ``r = (10, 9, 1, ..., 1)``, uniform ``beta``, ``K = 2``: IPS converges to
  ``pi(a_1) ≈ 1``; the top-K correction maximises the slate value ``sum_a alpha(a) r(a)``,
  whose optimum over the simplex is ``pi(a_1) = 0.526, pi(a_2) = 0.474``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from towerjax import losses
from towerjax.checks import check_positive_int
from towerjax.cli.arguments import integer, positive_int, subcommand
from towerjax.studies.runner import Study, check_json, report, run_study

__all__ = [
    "ChenSimulation",
    "ChenStudy",
    "add_parser",
    "chen_simulations",
    "expected_policy",
    "format_chen",
    "run_chen_study",
    "run_simulation",
    "topk_optimum",
]


@dataclasses.dataclass(frozen=True)
class ChenSimulation:
    """One learner in one simulation: rewards, behaviour policy, loss and slate size."""

    name: str
    reward: tuple[float, ...]
    behavior: tuple[float, ...]
    objective: str  # "naive", "ips" or "topk"
    k: int = 1


def chen_simulations() -> list[ChenSimulation]:
    """The four learners of simulations (a) and (b)."""
    r_a = tuple(float(i) for i in range(1, 11))
    beta_a = tuple((11 - i) / 55 for i in range(1, 11))
    r_b = (10.0, 9.0) + (1.0,) * 8
    beta_b = (0.1,) * 10
    return [
        ChenSimulation("a/naive", r_a, beta_a, "naive"),
        ChenSimulation("a/ips", r_a, beta_a, "ips"),
        ChenSimulation("b/ips", r_b, beta_b, "ips"),
        ChenSimulation("b/topk", r_b, beta_b, "topk", k=2),
    ]


def expected_policy(sim: ChenSimulation) -> np.ndarray:
    """The closed-form limit: ``r * beta`` normalised (naive), all mass on the best item
    (IPS), or the slate-value optimum (top-K)."""
    r, beta = np.asarray(sim.reward), np.asarray(sim.behavior)
    if sim.objective == "naive":
        return r * beta / np.sum(r * beta)
    if sim.objective == "ips":
        return np.eye(r.size)[np.argmax(r)]
    return topk_optimum(r, sim.k)


def topk_optimum(reward: np.ndarray, k: int) -> np.ndarray:
    """``argmax_pi sum_a (1 - (1 - pi_a)^K) r_a`` over the simplex, by bisection on the multiplier.

    Stationarity gives ``K r_a (1 - pi_a)^(K-1) = mu`` on the support, so
    ``pi_a = max(0, 1 - (mu / (K r_a))^(1 / (K-1)))``.
    """
    reward = np.asarray(reward, dtype=np.float64)
    if k == 1:
        return np.eye(reward.size)[np.argmax(reward)]

    def pi(mu: float) -> np.ndarray:
        return np.clip(1.0 - (mu / (k * reward)) ** (1.0 / (k - 1)), 0.0, 1.0)

    low, high = 0.0, k * reward.max()
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if pi(mid).sum() > 1 else (low, mid)
    return pi((low + high) / 2)


def run_simulation(
    sim: ChenSimulation,
    key: jax.Array,
    *,
    steps: int = 4000,
    batch_size: int = 1000,
    learning_rate: float = 0.02,
) -> np.ndarray:
    """Trains ``softmax(theta)`` with Adam on minibatches logged by ``beta``; returns ``pi [A]``."""
    reward = jnp.asarray(sim.reward)
    log_beta = jnp.log(jnp.asarray(sim.behavior))
    optimizer = optax.adam(learning_rate)

    def loss(theta, action):
        log_pi = jnp.broadcast_to(jax.nn.log_softmax(theta), (batch_size, theta.size))
        r, p = reward[action], jnp.exp(log_beta[action])
        if sim.objective == "naive":
            return losses.naive_loss(log_pi, action, r)
        if sim.objective == "ips":
            return losses.ips_loss(log_pi, action, r, p)
        return losses.topk_ips_loss(log_pi, action, r, p, k=sim.k)

    def step(state, key):
        theta, opt_state = state
        action = jax.random.categorical(key, log_beta, shape=(batch_size,))
        grads = jax.grad(loss)(theta, action)
        updates, opt_state = optimizer.update(grads, opt_state, theta)
        return (optax.apply_updates(theta, updates), opt_state), None

    @jax.jit
    def train(key):
        theta = jnp.zeros(reward.size)
        (theta, _), _ = jax.lax.scan(step, (theta, optimizer.init(theta)), jax.random.split(key, steps))
        return jax.nn.softmax(theta)

    return np.asarray(train(key))


class ChenStudy(Study):
    """The four learners as cells (their names); each row holds the learned and the closed-form ``pi``."""

    name = "chen"

    def __init__(self, *, seed: int = 0, steps: int = 4000):
        self.seed, self.steps = seed, check_positive_int("steps", steps)
        self.simulations = {sim.name: (index, sim) for index, sim in enumerate(chen_simulations())}

    def manifest(self) -> dict:
        return {"seed": self.seed, "steps": self.steps}

    def cells(self) -> list[str]:
        return list(self.simulations)

    def summary(self, cell: str, rows: list[dict]) -> str:
        return f"L1 to the expected pi {rows[0]['l1_to_expected']:.3f}"

    def run_cell(self, cell: str) -> list[dict]:
        index, sim = self.simulations[cell]
        learned = run_simulation(sim, jax.random.fold_in(jax.random.key(self.seed), index), steps=self.steps)
        expected = expected_policy(sim)
        return [
            {
                "simulation": sim.name,
                "objective": sim.objective,
                "k": sim.k,
                "reward": list(sim.reward),
                "behavior": list(sim.behavior),
                "learned_pi": learned.tolist(),
                "expected_pi": expected.tolist(),
                "l1_to_expected": float(np.abs(learned - expected).sum()),
            }
        ]


def run_chen_study(
    *, seed: int = 0, steps: int = 4000, log: Callable[[str], None] | None = None
) -> list[dict]:
    """Runs the four learners (in memory); each row has the learned and the closed-form ``pi``.

    ``log`` receives one line per finished learner (default: none).
    """
    return run_study(ChenStudy(seed=seed, steps=steps), progress=False, log=log or (lambda line: None))


def format_chen(rows: list[dict]) -> str:
    """Text table of learned vs expected ``pi`` per learner."""
    lines = []
    for row in rows:
        learned = " ".join(f"{p:.3f}" for p in row["learned_pi"])
        expected = " ".join(f"{p:.3f}" for p in row["expected_pi"])
        lines.append(f"{row['simulation']:>8} learned  pi = [{learned}]")
        lines.append(f"{'':>8} expected pi = [{expected}]   L1 = {row['l1_to_expected']:.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """``towerjax study chen``."""
    parser = subcommand(subparsers, "chen", _main, help="Chen et al. 2019 stateless simulations")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--seed", type=integer, default=0, help="root random seed")
    parser.add_argument("--steps", type=positive_int, default=4000, help="optimiser steps per learner")


def _main(args: argparse.Namespace) -> int:
    check_json(args)
    print("Chen et al. (2019) stateless simulations: softmax over free logits, logged by beta", flush=True)
    rows = run_chen_study(seed=args.seed, steps=args.steps, log=lambda line: print(line, flush=True))
    return report(
        args, format_chen(rows), {"study": "chen", "seed": args.seed, "steps": args.steps, "rows": rows}
    )
