"""MovieLens-100K two-stage study (Ma et al., WWW 2020 protocol, SPEC 4 and 8).

Compares three two-tower candidate generators trained on simulated logged feedback:
CE (the naive loss, no off-policy correction), 1-IPS (one-stage IPS) and 2-IPS (the
two-stage IPS of Ma et al.), with Precision/Recall/NDCG@{5, 10} in a one-stage
evaluation (the generator's own top-k) and a two-stage one (a fixed ranker re-ranks the
generator's top-30 candidates), over many seeds, mean ± standard error.

The semi-synthetic environment (fixed for a given ``seed``; the same for every method)
-------------------------------------------------------------------------------------

* **Labels.** A rating above 3 is positive (55.4% of the 100,000 ratings).
* **Simulator.** Logistic matrix factorisation on the *observed* (user, item) pairs:
  ``z(u, i) = <P_u, Q_i> + b_u + b_i + b``, dimension 16, fitted by full-batch Adam
  (learning rate 0.05, 500 steps) on the binary labels with an L2 penalty
  ``5 (|P|^2 + |Q|^2 + 0.1 |b_u|^2 + 0.1 |b_i|^2) / n``. The dimension and penalty were
  chosen once by the held-out log-loss of a 90/10 split of the ratings (0.546 for
  ``l2 = 5``, against 0.565 for 20 and 0.731 for 1; dimension 32 was no better); the
  simulator itself is fitted on all ratings. Its probabilities ``q(u, i) = sigmoid(z)``
  over all 943 x 1682 pairs are the ground truth: rewards are ``Bernoulli(q)``. (On
  ML-100K ``q`` averages 0.48 over all pairs; the best 5 items of a user average 0.90.)
* **Logging candidate generator** (deliberately imperfect): ``p0(.|u) =
  softmax((z_r(u, .) + sigma_0 eps(u, .)) / tau_0)`` where ``z_r`` is the rank-2 truncated
  SVD of the simulator's logit matrix (its two leading singular values carry ~83% of the
  spectrum: item quality and one taste axis), ``eps`` is i.i.d. standard normal per pair,
  ``sigma_0 = 1`` and ``tau_0 = 1``. Its value ``E_{p0} q`` is about 0.63 (uniform: 0.48),
  it spreads over ~700 effective items per user and its largest propensity is ~0.16.
  *Simplification:* Ma et al. log feedback on what the whole two-stage system showed; here
  the logs come from this single-item softmax policy, so the logged propensity is exactly
  ``p0(a|u)``.
* **Logs.** ``events_per_user`` events for every user (20: 18,860 events), action
  ``a ~ p0(.|u)``, reward ``r ~ Bernoulli(q(u, a))``, propensity ``p0(a|u)``. Fresh logs
  for every seed.
* **Ranker** (fixed, close to the ground truth): scores ``z(u, i) + sigma_r eps'(u, i)``
  with ``sigma_r = 0.25``, an independent noise draw. Within a candidate set ``A`` its
  policy is ``q_rank(a|u, A) = softmax(scores restricted to A)``, as in
  :func:`towerjax.two_stage_policy`; in evaluation it orders the candidates by score. The
  premise of a two-stage system (and of Ma et al.'s table, where every method's two-stage
  precision exceeds its one-stage one) is a ranker more accurate than the generators.
  With ``sigma_r = 1`` or ``0.5`` the ranker's own top 5 (80% / 86% precision) was worse
  than a well-regularised CE generator's (~88%), so re-ranking lowered precision;
  ``sigma_r = 0.25`` (88.5%, the oracle's 90.1%) restores the premise. (The first value
  tried was 1; early trials with it and weak regularisation also ran 1-IPS and 2-IPS and
  already ordered two-stage Precision@5 as 2-IPS > CE > 1-IPS. No later choice was made
  on an IPS method's result.)

The candidate generators
------------------------

The towers read :class:`towerjax.features.Features` (:func:`tower_inputs`): the user
tower looks up the user id (943 ids), gender (2) and occupation (21) and reads the
standardised age; the item tower looks up the item id (1682) and reads the multi-hot genres
and release year (21 dense columns); the policy is ``softmax(s(u, .))`` over all 1682
items. The towers are linear by default (``hidden_sizes=()``, ``D = 32``). Each id is
looked up into the first layer (:data:`EMBEDDING_MODE`, ``embedding_mode="sum"`` of
:class:`towerjax.towers.Tower`): every table is as wide as that layer (``D`` here) and its
row is added to the layer's output, ``W x_dense + b + sum_t E_t[id_t]``. That is a one-hot
input times the first layer's kernel, by lookup: the parameters are those of the one-hot
towers of earlier versions of the study (a ``[967, 32]`` user and a ``[1703, 32]`` item
kernel, split by rows into the tables and the dense columns' kernel), with the same decay
and the same initial distribution: the table rows and the dense columns' kernel rows alike
are drawn as those kernel rows were (lecun-normal over the whole one-hot fan-in, 967 or
1703: standard deviation 0.032 and 0.024).

*Why not concatenated tables.* The first id version of the study concatenated tables
``min(size, D)`` wide (32 for the ids, 2 and 21 for gender and occupation) with the dense
columns before a ``[56, 32]`` (users) or ``[53, 32]`` (items) layer
(``embedding_mode="concat"``): the same functions as the one-hot towers, but each side's
embedding a product of a table and a layer, both decayed. CE did not move, the IPS
generators collapsed. Precision@5 in percent, mean ± se over 10 seeds (base seed 0), the
concatenated tables against the one-hot towers on the same code: one-stage CE
87.55 ± 0.32 / 87.66 ± 0.24, 1-IPS 65.89 ± 3.63 / 70.95 ± 2.56, 2-IPS 66.35 ± 2.47 /
87.45 ± 0.25; two-stage CE 88.75 ± 0.22 / 88.84 ± 0.19, 1-IPS 79.41 ± 1.45 / 82.85 ± 1.50,
2-IPS 81.41 ± 0.85 / 87.73 ± 0.23. Their mean training loss swung to -163 (1-IPS) and -77
(2-IPS), and on the tuning seeds (base seed 100) both ended with scores constant over
items (a uniform policy) where the one-hot towers' scores spread with a standard deviation
of 1.1 to 1.9 per user. The likely cause: a score ``<E_u K_x, E_i K_a>`` is a product of
four decayed factors, not two, so the same decoupled decay shrinks it about twice as fast
per step, and the weak, self-normalised IPS gradient no longer holds it away from zero.
Looking ids up into the first layer keeps the one-hot parameterisation, so the
hyperparameters below, chosen with the one-hot towers, carry over unchanged.

The batch is large (1024, 19 steps per epoch, 15 epochs), chosen when the one-hot matmul
cost the same every step whatever the batch; it keeps the 30 runs (3 methods x 10 seeds)
to minutes on two CPU cores.

The optimiser is AdamW (``optax.adamw``: learning rate 0.03, decoupled weight decay 3.0),
not the seed study's Adam with coupled L2 (:func:`towerjax.train.make_optimizer`): the
2-IPS loss is scaled by ``q_rank`` (about ``1/k``), so a coupled penalty would regularise
2-IPS ~30 times more strongly than CE and 1-IPS, while Adam's update, and so AdamW's, does
not depend on the loss's scale. The decay applies to every parameter
(``TrainConfig.embedding_weight_decay`` is ``None``): each id's table row decays at 3.0, as
the one-hot kernel row it stands for did. Strong regularisation matters: with 20 events
per user and ~11 per item the id parameters overfit (one-hot towers: CE's one-stage
Precision@5 was 67% with weight decay 1e-6, 88% with 3.0). The learning rate, weight decay
and epochs were chosen on **CE alone** (one-stage Precision@5, 2 seeds of a different base
seed, 100), from decays {1e-6 .. 3e-2} coupled and {0.1, 1, 3, 10} decoupled, with the
one-hot towers; the IPS methods reuse them. (Re-checked the same way for the concatenated
tables: decoupled decay 1 / 3 / 10 gave CE one-stage Precision@5 79.3 / 86.6 / 86.3, the
one-hot towers on the same seeds and code 82.5 / 87.2 / 86.0.)
Every method of a seed sees the same logs and the same initialisation.

Each method is one :func:`train_method` call: :func:`towerjax.train.train_seeds` with a
:class:`towerjax.TrainConfig` holding the method's objective (:func:`method_objective`) and
the seeds' logs as a :class:`towerjax.LoggedData` with a leading seed axis
(``per_seed_data=True``), the seeds sharded over local devices.

* **CE**: :class:`towerjax.objectives.Naive` (:func:`towerjax.naive_loss`),
  ``-(1/B) sum r log p(a|u)``.
* **1-IPS**: :class:`towerjax.objectives.IPS` (:func:`towerjax.ips_loss`) with the weights
  ``sg(p(a|u)) / p0(a|u)`` clipped to ``[0.01, 10]`` then self-normalised over the batch
  (Ma et al.'s treatment).
* **2-IPS**: :class:`towerjax.objectives.TwoStage`, Ma et al.'s two-stage surrogate
  (:func:`towerjax.two_stage_ips_loss`, SPEC 4) with ``k = 30``, ``T = 20`` sampled
  candidate sets per event (Ma et al.: 100), ``alpha = 1e-3``, the ranker's scores of each
  event's user as ``q_hat`` and the same clipped, self-normalised weights. The candidate
  sets are drawn by inverse CDF, ``O(B A + B T k log A)`` per batch.

Evaluation
----------

For every user (all 943; the generators never see ``q`` or the labels), relevance labels
``y(u, i) ~ Bernoulli(q(u, i))`` are drawn from the simulator, fresh for each seed and
shared by all methods of the seed (Ma et al. also evaluate on labels drawn from their
simulator). *One-stage*: the generator's top-k items. *Two-stage*: the generator's top 30
candidates re-ranked by the ranker's scores, top-k of that. With ``R_u`` the user's
relevant items and ``y_j`` the label of the item at rank ``j``:
``Precision@k = (1/k) sum_{j<=k} y_j``; ``Recall@k = sum_{j<=k} y_j / |R_u|``;
``NDCG@k = sum_{j<=k} y_j / log2(j + 1)`` divided by the ideal DCG with ``min(k, |R_u|)``
relevant items; Recall and NDCG are 0 for a user without relevant items. Each seed's
metric is the mean over users; the tables give mean ± standard error (``ddof=1``) over
seeds, in percent. Since ``q`` is dense (~800 relevant items per user), Recall@k is small
for every method; it is reported for completeness. Reference rows evaluate fixed score
matrices the same way: the logging policy's logits, the ranker alone (its top-k over all
items, identical in both evaluations) and the simulator itself (the oracle).

The metrics are :mod:`towerjax.metrics`.

Reference run
-------------

``run_movielens_study(seeds=10, seed=0)`` with the defaults (``towerjax study movielens``),
on two CPU cores shared with other jobs: 507 s, 363 s of CPU time (CE 102 s, 1-IPS 97 s,
2-IPS 275 s, environment 27 s), peak 4.6 GB resident. Precision@5 in percent, mean ± se
over 10 seeds: one-stage CE 87.72 ± 0.22, 1-IPS 69.55 ± 3.53, 2-IPS 87.31 ± 0.21 (oracle
89.64); two-stage CE 88.80 ± 0.18, 1-IPS 83.62 ± 1.58, 2-IPS 87.70 ± 0.28 (oracle 88.79).
The one-hot towers, run on the same code just before the switch to ids (1245 s, 475 s of
CPU time): one-stage 87.66 ± 0.24, 70.95 ± 2.56, 87.45 ± 0.25; two-stage 88.84 ± 0.19,
82.85 ± 1.50, 87.73 ± 0.23. Every method is within one standard error of its one-hot value
(the two runs share logs, labels and minibatch order and the initial distribution, not the
initial draws; paired by seed, CE and 2-IPS differ from the one-hot run by at most
0.14 ± 0.09 points, 1-IPS by −1.41 ± 2.76 one-stage). The order is CE > 2-IPS > 1-IPS in
both evaluations (Ma et al.: 2-IPS first in both); the paired 2-IPS − CE is −0.41 ± 0.30
one-stage (a tie) and −1.10 ± 0.30 two-stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from towerjax import arguments, jsonio, losses
from towerjax.checks import InputError, check_nonnegative, check_positive, check_positive_int, check_sizes
from towerjax.data import LoggedData
from towerjax.datasets import DatasetFileError, FetchError
from towerjax.datasets.movielens import MovieLens100K, load_movielens_100k
from towerjax.evaluation import mean_se
from towerjax.features import Features, take
from towerjax.metrics import metric_names, ranking_metrics
from towerjax.objectives import IPS, Naive, Objective, TwoStage
from towerjax.towers import TwoTower, check_activation
from towerjax.train import TrainConfig, train_seeds

__all__ = [
    "EMBEDDING_MODE",
    "METHODS",
    "MINIATURE",
    "PAPER_PRECISION_AT_5",
    "Environment",
    "MovieLensStudyConfig",
    "SeedInputs",
    "add_parser",
    "build_environment",
    "compare_with_paper",
    "evaluate_references",
    "fit_simulator",
    "format_movielens",
    "method_objective",
    "prepare_seeds",
    "run_movielens_study",
    "tower_inputs",
    "train_method",
]

METHODS = ("CE", "1-IPS", "2-IPS")
EVALUATIONS = ("one-stage", "two-stage")
REFERENCES = ("logging", "ranker", "oracle")
# The towers add each id's table row to the first layer's output: a one-hot input's first
# layer, by lookup (towerjax.towers.Tower; the module docstring says why not "concat").
EMBEDDING_MODE = "sum"

# Ma et al. (WWW 2020), MovieLens-1M, Precision@5 in percent (SPEC 8).
PAPER_PRECISION_AT_5 = {
    "two-stage": {"CE": 95.8, "1-IPS": 95.1, "2-IPS": 98.1},
    "one-stage": {"CE": 86.3, "1-IPS": 90.1, "2-IPS": 95.7},
}


@dataclasses.dataclass(frozen=True)
class MovieLensStudyConfig:
    """Every setting of the study; the defaults are the reported run (see the module docstring).

    Simulator: ``simulator_dim``, ``simulator_l2``, ``simulator_steps``,
    ``simulator_learning_rate``. Logging policy: ``logging_rank``, ``logging_noise``
    (``sigma_0``), ``logging_temperature`` (``tau_0``), ``events_per_user``. Ranker:
    ``ranker_noise`` (``sigma_r``). Generators: ``hidden_sizes``, ``embedding_size``,
    ``activation``, ``learning_rate``, ``weight_decay``, ``batch_size``, ``epochs``; the
    weights of 1-IPS and 2-IPS: ``clip`` (``None`` for none) then ``self_normalize``;
    2-IPS: ``candidates`` (``k``), ``num_samples`` (``T``), ``alpha``. Evaluation: the
    two-stage candidate set is the generator's top ``candidates``; metrics at ``ks``.
    A bad value raises :class:`towerjax.checks.InputError` naming the field.
    """

    simulator_dim: int = 16
    simulator_l2: float = 5.0
    simulator_steps: int = 500
    simulator_learning_rate: float = 0.05
    logging_rank: int = 2
    logging_noise: float = 1.0
    logging_temperature: float = 1.0
    events_per_user: int = 20
    ranker_noise: float = 0.25
    hidden_sizes: tuple[int, ...] = ()
    embedding_size: int = 32
    activation: str = "elu"
    learning_rate: float = 0.03
    weight_decay: float = 3.0
    batch_size: int = 1024
    epochs: int = 15
    clip: tuple[float, float] | None = (0.01, 10.0)
    self_normalize: bool = True
    candidates: int = 30
    num_samples: int = 20
    alpha: float = 1e-3
    ks: tuple[int, ...] = (5, 10)
    methods: tuple[str, ...] = METHODS

    def __post_init__(self) -> None:
        for name in (
            "simulator_dim",
            "simulator_steps",
            "logging_rank",
            "events_per_user",
            "embedding_size",
            "batch_size",
            "epochs",
            "candidates",
            "num_samples",
        ):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        for name in ("simulator_learning_rate", "logging_temperature", "learning_rate"):
            check_positive(name, getattr(self, name))
        for name in ("simulator_l2", "logging_noise", "ranker_noise", "weight_decay", "alpha"):
            check_nonnegative(name, getattr(self, name))
        object.__setattr__(self, "hidden_sizes", check_sizes("hidden_sizes", self.hidden_sizes))
        check_activation(self.activation)
        object.__setattr__(self, "clip", losses.check_weight_options(None, self.clip))
        object.__setattr__(self, "ks", _cutoffs(self.ks, self.candidates))
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        if not methods or any(m not in METHODS for m in methods) or len(set(methods)) != len(methods):
            raise InputError("methods", f"expected distinct names from {METHODS}, got {self.methods!r}")
        object.__setattr__(self, "methods", methods)

    @property
    def model(self) -> TwoTower:
        return TwoTower(self.hidden_sizes, self.embedding_size, self.activation, EMBEDDING_MODE)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for name in ("hidden_sizes", "ks", "methods", "clip"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out


def _cutoffs(value, candidates: int) -> tuple[int, ...]:
    ks = (value,) if isinstance(value, int) else tuple(value)
    if not ks:
        raise InputError("ks", "expected at least one cut-off")
    ks = tuple(check_positive_int("ks", k) for k in ks)
    if max(ks) > candidates:
        raise InputError("ks", f"expected cut-offs <= candidates={candidates}, got {ks}")
    return tuple(sorted(set(ks)))


# Tiny sizes for tests and smoke runs (use with a small dataset or the real one).
MINIATURE = {
    "simulator_dim": 4,
    "simulator_steps": 50,
    "events_per_user": 4,
    "embedding_size": 8,
    "batch_size": 32,
    "epochs": 2,
    "candidates": 12,
    "num_samples": 4,
}


# --------------------------------------------------------------------------- evaluation


def _rankings(scores: jax.Array, ranker: jax.Array, candidates: int, k_max: int) -> dict[str, jax.Array]:
    """One-stage: the top ``k_max`` by ``scores``; two-stage: its top ``candidates`` re-ranked by ``ranker``."""
    _, top = jax.lax.top_k(scores, candidates)
    _, order = jax.lax.top_k(jnp.take_along_axis(ranker, top, axis=1), k_max)
    return {"one-stage": top[:, :k_max], "two-stage": jnp.take_along_axis(top, order, axis=1)}


def _evaluate(scores, ranker, labels, config: MovieLensStudyConfig) -> dict[str, dict[str, jax.Array]]:
    """``{evaluation: {metric: scalar}}`` of one score matrix ``[U, I]`` against ``labels [U, I]``."""
    ranked = _rankings(scores, ranker, config.candidates, max(config.ks))
    return {name: ranking_metrics(items, labels, config.ks) for name, items in ranked.items()}


@functools.cache
def _generator_evaluator(config: MovieLensStudyConfig) -> Callable:
    """``(params [S], labels [S, U, I], env) -> {evaluation: {metric: [S]}}``, jitted once per config."""
    model = config.model

    def evaluate(params, labels, env):
        scores = model.scores(params, env["user_context"], env["item_context"])
        return _evaluate(scores, env["ranker"], labels, config)

    return jax.jit(jax.vmap(evaluate, in_axes=(0, 0, None)))


@functools.cache
def _reference_evaluator(config: MovieLensStudyConfig) -> Callable:
    """``(labels [S, U, I], env) -> {reference: {evaluation: {metric: [S]}}}`` for the fixed score matrices."""

    def evaluate(labels, env):
        fields = {"logging": "logging_log_p", "ranker": "ranker", "oracle": "q"}
        return {name: _evaluate(env[field], env["ranker"], labels, config) for name, field in fields.items()}

    return jax.jit(jax.vmap(evaluate, in_axes=(0, None)))


# --------------------------------------------------------------------------- environment


@dataclasses.dataclass(frozen=True)
class Environment:
    """The fixed semi-synthetic world: features, ground truth, logging policy and ranker.

    Attributes:
      user_context: the user tower's :class:`~towerjax.features.Features` of the ``U``
        users (:func:`tower_inputs`).
      item_context: the item tower's :class:`~towerjax.features.Features` of the ``I`` items.
      simulator_logits: ``[U, I]`` ``z``; ``q = sigmoid(z)`` is the click probability.
      logging_logits: ``[U, I]``; ``p0 = softmax(logging_logits)``.
      ranker_scores: ``[U, I]``.
      summary: facts about the environment (sizes, the simulator's fit, policy values).
    """

    user_context: Features
    item_context: Features
    simulator_logits: np.ndarray
    logging_logits: np.ndarray
    ranker_scores: np.ndarray
    summary: dict

    @property
    def expected_reward(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.simulator_logits))


def fit_simulator(
    key: jax.Array, data: MovieLens100K, config: MovieLensStudyConfig, *, rows: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Logistic MF on the observed ratings (label ``rating > 3``); returns ``[U, I]`` logits
    and the final training log-loss. ``rows`` restricts the fit to some ratings."""
    rows = np.arange(data.n_ratings) if rows is None else np.asarray(rows)
    user, item = jnp.asarray(data.user[rows]), jnp.asarray(data.item[rows])
    label = jnp.asarray(data.rating[rows] > 3, jnp.float32)
    n, dim, l2 = len(rows), config.simulator_dim, config.simulator_l2
    key_u, key_i = jax.random.split(key)
    params = {
        "user": 0.1 * jax.random.normal(key_u, (data.n_users, dim)),
        "item": 0.1 * jax.random.normal(key_i, (data.n_items, dim)),
        "user_bias": jnp.zeros(data.n_users),
        "item_bias": jnp.zeros(data.n_items),
        "bias": jnp.zeros(()),
    }

    def loss(p):
        z = jnp.sum(p["user"][user] * p["item"][item], -1) + p["user_bias"][user] + p["item_bias"][item]
        nll = jnp.mean(optax.sigmoid_binary_cross_entropy(z + p["bias"], label))
        penalty = jnp.sum(p["user"] ** 2) + jnp.sum(p["item"] ** 2)
        penalty += 0.1 * (jnp.sum(p["user_bias"] ** 2) + jnp.sum(p["item_bias"] ** 2))
        return nll + l2 * penalty / n, nll

    optimizer = optax.adam(config.simulator_learning_rate)

    @jax.jit
    def fit(params):
        def step(state, _):
            params, opt_state = state
            (_, nll), grads = jax.value_and_grad(loss, has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), nll

        (params, _), nll = jax.lax.scan(step, (params, optimizer.init(params)), None, config.simulator_steps)
        logits = params["user"] @ params["item"].T + params["user_bias"][:, None] + params["item_bias"]
        return logits + params["bias"], nll[-1]

    logits, nll = fit(params)
    return np.asarray(logits, np.float64), float(nll)


def build_environment(key: jax.Array, data: MovieLens100K, config: MovieLensStudyConfig) -> Environment:
    """The simulator, logging policy and ranker of the study (see the module docstring)."""
    n_users, n_items = data.n_users, data.n_items
    if config.candidates > n_items:
        raise InputError("candidates", f"expected at most the {n_items} items, got {config.candidates}")
    if config.logging_rank > min(n_users, n_items):
        raise InputError(
            "logging_rank", f"expected at most {min(n_users, n_items)}, got {config.logging_rank}"
        )
    key_sim, key_log, key_rank = jax.random.split(key, 3)
    logits, nll = fit_simulator(key_sim, data, config)
    u, s, vt = np.linalg.svd(logits, full_matrices=False)
    r = config.logging_rank
    low_rank = (u[:, :r] * s[:r]) @ vt[:r]
    noise = np.asarray(jax.random.normal(key_log, (n_users, n_items)), np.float64)
    logging_logits = (low_rank + config.logging_noise * noise) / config.logging_temperature
    ranker_noise = np.asarray(jax.random.normal(key_rank, (n_users, n_items)), np.float64)
    ranker_scores = logits + config.ranker_noise * ranker_noise
    q = 1.0 / (1.0 + np.exp(-logits))
    p0 = np.exp(logging_logits - logging_logits.max(1, keepdims=True))
    p0 /= p0.sum(1, keepdims=True)
    summary = {
        "n_users": n_users,
        "n_items": n_items,
        "n_ratings": data.n_ratings,
        "positive_rate": float(np.mean(data.rating > 3)),
        "simulator_train_logloss": nll,
        "mean_q": float(q.mean()),
        "oracle_top5_q": float(np.sort(q, axis=1)[:, -5:].mean()),
        "logging_value": float(np.sum(p0 * q, axis=1).mean()),
        "logging_effective_items": float(np.exp(-np.sum(p0 * np.log(np.maximum(p0, 1e-300)), 1)).mean()),
        "logging_max_propensity": float(p0.max()),
        "logging_rank_share": float(s[:r].sum() / s.sum()),
    }
    user_context, item_context = tower_inputs(data)
    return Environment(user_context, item_context, logits, logging_logits, ranker_scores, summary)


def tower_inputs(data: MovieLens100K) -> tuple[Features, Features]:
    """The towers' inputs: ``(users, items)`` as :class:`~towerjax.features.Features`.

    Users: ids ``user_id`` (``U``), ``gender`` and ``occupation`` (categories sorted), dense
    the standardised age ``[U, 1]``. Items: id ``item_id`` (``I``), dense the dataset's item
    features ``[I, d_i]`` (multi-hot genres, standardised release year, year missing).
    The towers (:data:`EMBEDDING_MODE` ``"sum"``) make every table as wide as their first
    layer, so the tables' own widths (``Table.dim``, the default here) are not used.
    """
    gender, n_genders = _codes(data.gender)
    occupation, n_occupations = _codes(data.occupation)
    users = Features.from_arrays(
        ids={"user_id": np.arange(data.n_users), "gender": gender, "occupation": occupation},
        sizes={"user_id": data.n_users, "gender": n_genders, "occupation": n_occupations},
        dense=data.user_features[:, [data.user_feature_names.index("age")]],
    )
    items = Features.from_arrays(
        ids={"item_id": np.arange(data.n_items)},
        sizes={"item_id": data.n_items},
        dense=data.item_features,
    )
    return users, items


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """``([n] ids, number of categories)`` of a categorical column, categories sorted."""
    categories, codes = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return codes.reshape(-1), len(categories)


def _sample_logs(key: jax.Array, env: dict, events_per_user: int) -> dict[str, jax.Array]:
    """``events_per_user`` events per user: ``a ~ p0(.|u)`` (inverse CDF), ``r ~ Bernoulli(q(u, a))``."""
    log_p0 = env["logging_log_p"]
    n_users, n_items = log_p0.shape
    key_action, key_reward = jax.random.split(key)
    p0 = jnp.exp(log_p0)
    cdf = jnp.cumsum(p0, axis=-1)
    u = jax.random.uniform(key_action, (n_users, events_per_user)) * cdf[:, -1:]
    action = jnp.minimum(jax.vmap(jnp.searchsorted)(cdf, u), n_items - 1).reshape(-1)
    users = jnp.repeat(jnp.arange(n_users), events_per_user)
    reward = jax.random.bernoulli(key_reward, env["q"][users, action]).astype(jnp.float32)
    return {"user": users, "action": action, "reward": reward, "pscore": p0[users, action]}


# --------------------------------------------------------------------------- the seeds' logs and labels


@dataclasses.dataclass(frozen=True)
class SeedInputs:
    """What every method of the study shares for ``S`` seeds: the environment and each seed's draws.

    Attributes:
      env: the environment on the device: ``user_context`` and ``item_context``
        (:class:`~towerjax.features.Features` of ``U`` users and ``I`` items), ``q [U, I]``,
        ``logging_log_p [U, I]`` (``log p0``) and ``ranker [U, I]``.
      logs: :class:`towerjax.LoggedData` with a leading ``[S]`` axis: ``context`` the
        event's user's row of ``user_context`` (ids ``[S, n]``, dense ``[S, n, 1]``),
        ``action_context`` ``item_context`` on every seed (ids ``[S, I]``, dense
        ``[S, I, d_i]``), ``action``, ``reward``, ``pscore [S, n]``; ``n = U * events_per_user``.
      user: ``[S, n]`` the user (row of ``env``'s arrays) of each logged event.
      labels: ``[S, U, I]`` the evaluation's relevance labels ``y ~ Bernoulli(q)``.
      train_seed: the integer seed of :func:`towerjax.train.train_seeds` (initialisation and
        minibatch order; the same for every method).
    """

    env: dict[str, jax.Array]
    logs: LoggedData
    user: jax.Array
    labels: jax.Array
    train_seed: int

    @property
    def seeds(self) -> int:
        return int(self.user.shape[0])


def prepare_seeds(
    environment: Environment, config: MovieLensStudyConfig, *, seeds: int, seed: int
) -> SeedInputs:
    """Draws each seed's logs and labels (fresh per seed, shared by the methods of a seed).

    The seeds' keys are ``split(fold_in(key(seed), 1), S)``; each is split into four
    (logs, two unused slots kept so that the logs and labels match earlier versions of the
    study, labels). Training keys come from :func:`towerjax.train.train_seeds` seeded by an
    integer drawn from ``fold_in(key(seed), 2)``, so they share no key with the environment
    (``fold_in(key(seed), 0)``) or the logs.
    """
    seeds = check_positive_int("seeds", seeds)
    root = jax.random.key(seed)
    env = _device_env(environment)
    keys = jax.vmap(_seed_keys)(jax.random.split(jax.random.fold_in(root, 1), seeds))
    sample = jax.jit(jax.vmap(_sample_logs, in_axes=(0, None, None)), static_argnums=2)
    logs = sample(keys["logs"], env, config.events_per_user)
    data = LoggedData(
        context=take(env["user_context"], logs["user"]),
        action_context=jax.tree.map(lambda a: jnp.broadcast_to(a, (seeds, *a.shape)), env["item_context"]),
        action=logs["action"].astype(jnp.int32),
        reward=logs["reward"],
        pscore=logs["pscore"],
    )
    labels = jax.jit(jax.vmap(_labels, in_axes=(0, None)))(keys["labels"], env)
    train_seed = int(jax.random.bits(jax.random.fold_in(root, 2), dtype=jnp.uint32) >> 1)
    return SeedInputs(env=env, logs=data, user=logs["user"], labels=labels, train_seed=train_seed)


def _device_env(environment: Environment) -> dict[str, jax.Array]:
    logging = jnp.asarray(environment.logging_logits, jnp.float32)
    return {
        "user_context": environment.user_context,
        "item_context": environment.item_context,
        "q": jnp.asarray(environment.expected_reward, jnp.float32),
        "logging_log_p": jax.nn.log_softmax(logging, axis=-1),
        "ranker": jnp.asarray(environment.ranker_scores, jnp.float32),
    }


def _seed_keys(key: jax.Array) -> dict[str, jax.Array]:
    """A seed's sub-keys: ``logs`` and ``labels`` (``init`` and ``train`` are no longer used)."""
    names = ("logs", "init", "train", "labels")
    return dict(zip(names, jax.random.split(key, len(names)), strict=True))


def _labels(key: jax.Array, env: dict) -> jax.Array:
    return jax.random.bernoulli(key, env["q"])


# --------------------------------------------------------------------------- training


def method_objective(method: str, config: MovieLensStudyConfig) -> Objective:
    """The objective of a method: CE is :class:`~towerjax.objectives.Naive`, 1-IPS
    :class:`~towerjax.objectives.IPS` and 2-IPS :class:`~towerjax.objectives.TwoStage`, the
    IPS weights clipped and self-normalised as ``config`` says."""
    if method == "CE":
        return Naive()
    if method == "1-IPS":
        return IPS(clip=config.clip, self_normalize=config.self_normalize, entropy=0.0)
    if method == "2-IPS":
        return TwoStage(
            candidates=config.candidates,
            num_samples=config.num_samples,
            alpha=config.alpha,
            clip=config.clip,
            self_normalize=config.self_normalize,
        )
    raise InputError("method", f"expected one of {METHODS}, got {method!r}")


def _train_config(method: str, config: MovieLensStudyConfig, n_events: int) -> TrainConfig:
    return TrainConfig(
        objective=method_objective(method, config),
        n_rounds=n_events,
        hidden_sizes=config.hidden_sizes,
        embedding_size=config.embedding_size,
        activation=config.activation,
        temperature=1.0,
        optimizer="adamw",
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        embedding_weight_decay=None,  # the id tables decay at weight_decay too
        embedding_mode=EMBEDDING_MODE,
        batch_size=min(config.batch_size, n_events),
        epochs=config.epochs,
        evaluate_train=False,
        validation_fraction=0.0,
        select=None,
    )


def train_method(
    method: str, inputs: SeedInputs, config: MovieLensStudyConfig, *, devices: int | None = None
) -> dict:
    """Trains one method's generator on every seed's logs and evaluates it: one study cell.

    One :func:`towerjax.train.train_seeds` call over the ``S`` seeds (sharded over local
    devices, at most ``devices``), then the one- and two-stage evaluation of each seed's
    generator against that seed's labels. 2-IPS reads the ranker's scores of each event's
    user as ``q_hat [S, n, I]``.

    Memory: the seeds' logs are materialised, per seed ``4 n (4 + I)`` bytes (three ids and
    the age per event, 0.3 MB; ``q_hat`` 127 MB at the default sizes; the items' features
    0.15 MB), and ``train_seeds`` holds a second, re-laid-out copy. The whole default study
    peaked at 4.6 GB resident (the one-hot towers of earlier versions: 6.3 GB).

    Returns:
      A JSON-ready dict: ``metrics[evaluation][metric]`` (``[S]`` floats, one per seed),
      ``loss`` (``[S][E]``, the mean training loss of each epoch), ``seconds_compile`` and
      ``seconds_train``.
    """
    n_events = inputs.logs.n_rounds
    train_config = _train_config(method, config, n_events)
    q_hat = None
    if train_config.objective.needs_q_hat:
        q_hat = inputs.env["ranker"][inputs.user]
    result, timing = train_seeds(
        train_config,
        seeds=inputs.seeds,
        seed=inputs.train_seed,
        devices=devices,
        data=inputs.logs,
        q_hat=q_hat,
        per_seed_data=True,
    )
    del q_hat  # free it before the evaluation
    metrics = _generator_evaluator(config)(result.params, inputs.labels, inputs.env)
    return {
        "metrics": jax.tree.map(lambda a: np.asarray(a, np.float64).tolist(), jax.device_get(metrics)),
        "loss": np.asarray(result.loss, np.float64).tolist(),
        "seconds_compile": timing["seconds_compile"],
        "seconds_train": timing["seconds_train"],
    }


def evaluate_references(inputs: SeedInputs, config: MovieLensStudyConfig) -> dict:
    """``{reference: {evaluation: {metric: [S] floats}}}`` for the logging policy's logits,
    the ranker's scores and the simulator's ``q`` (the oracle), against each seed's labels."""
    metrics = _reference_evaluator(config)(inputs.labels, inputs.env)
    return jax.tree.map(lambda a: np.asarray(a, np.float64).tolist(), jax.device_get(metrics))


# --------------------------------------------------------------------------- the study


def run_movielens_study(
    *,
    seeds: int = 10,
    seed: int = 0,
    config: MovieLensStudyConfig | None = None,
    miniature: bool = False,
    data: MovieLens100K | None = None,
    wheel: str | None = None,
    cache_dir: str | None = None,
    devices: int | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Runs the study: the environment, the seeds' logs, then one :func:`train_method` per method.

    Args:
      seeds: number of seeds ``S`` (at least 2 for a standard error).
      seed: base seed; it fixes the environment (simulator, logging noise, ranker noise)
        and the seeds' keys.
      config: the study's settings (default :class:`MovieLensStudyConfig`).
      miniature: apply :data:`MINIATURE`'s tiny sizes on top of ``config`` (tests, smoke runs).
      data: a :class:`MovieLens100K` to use instead of loading it.
      wheel, cache_dir: passed to :func:`towerjax.datasets.load_movielens_100k`.
      devices: shard the seeds over at most this many local devices (default: all).
      log: progress lines (``None`` for silence).

    Returns:
      A JSON-serialisable dict: ``config``, ``seeds``, ``seed``, ``environment`` (the
      environment's summary), ``methods[method][evaluation][metric]`` and
      ``references[name][evaluation][metric]`` as ``{"mean", "se", "values"}`` (fractions,
      not percent), ``loss[method]`` (mean training loss per epoch, averaged over seeds),
      ``comparison`` (ordering against Ma et al.) and ``seconds``.

    Raises:
      InputError: naming the argument or config field, for a bad option.
      FetchError, DatasetFileError: when MovieLens-100K cannot be fetched or read.
    """
    seeds, seed, config = _check_run_options(seeds, seed, config, miniature)
    say = log or (lambda _: None)
    start = time.perf_counter()
    if data is None:
        data = load_movielens_100k(wheel=wheel, cache_dir=cache_dir)
    environment = build_environment(jax.random.fold_in(jax.random.key(seed), 0), data, config)
    inputs = prepare_seeds(environment, config, seeds=seeds, seed=seed)
    seconds = {"environment": time.perf_counter() - start}
    summary = environment.summary
    say(
        f"MovieLens-100K: {summary['n_users']} users, {summary['n_items']} items; simulator mean q "
        f"{summary['mean_q']:.3f}, logging value {summary['logging_value']:.3f} "
        f"({seconds['environment']:.1f} s)"
    )
    references = evaluate_references(inputs, config)
    methods, loss = {}, {}
    for method in config.methods:
        t0 = time.perf_counter()
        cell = train_method(method, inputs, config, devices=devices)
        seconds[method] = time.perf_counter() - t0
        methods[method] = _summarise(cell["metrics"])
        loss[method] = np.mean(cell["loss"], axis=0).tolist()
        p5 = methods[method]["two-stage"][f"precision@{config.ks[0]}"]
        say(
            f"{method}: {seeds} seeds in {seconds[method]:.1f} s (compile {cell['seconds_compile']:.1f} s); "
            f"two-stage precision@{config.ks[0]} {100 * p5['mean']:.1f} ± {100 * p5['se']:.1f}"
        )
    seconds["total"] = time.perf_counter() - start
    result = {
        "study": "movielens",
        "config": config.to_dict(),
        "seeds": seeds,
        "seed": seed,
        "environment": summary,
        "methods": methods,
        "references": {name: _summarise(references[name]) for name in REFERENCES},
        "loss": loss,
        "seconds": seconds,
    }
    result["comparison"] = compare_with_paper(result)
    return result


def _check_run_options(seeds, seed, config, miniature: bool) -> tuple[int, int, MovieLensStudyConfig]:
    """``(seeds, seed, config)`` checked, with :data:`MINIATURE` applied when asked."""
    seeds = check_positive_int("seeds", seeds)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputError("seed", f"expected an integer, got {seed!r}")
    config = MovieLensStudyConfig() if config is None else config
    if not isinstance(config, MovieLensStudyConfig):
        raise InputError("config", f"expected a MovieLensStudyConfig, got {type(config).__name__}")
    if miniature:
        config = dataclasses.replace(config, **MINIATURE)
    return seeds, int(seed), config


def _stats(values) -> dict:
    """``{"mean", "se", "values"}`` of per-seed values (``se`` NaN for one seed)."""
    mean, se = mean_se(values)
    return {"mean": mean, "se": se, "values": np.asarray(values, np.float64).reshape(-1).tolist()}


def _summarise(per_seed: dict) -> dict:
    return {
        evaluation: {metric: _stats(values) for metric, values in per_seed[evaluation].items()}
        for evaluation in EVALUATIONS
    }


# --------------------------------------------------------------------------- report


def _order(values: dict[str, float]) -> str:
    names = sorted(values, key=lambda m: -values[m])
    return " > ".join(names)


def compare_with_paper(result: dict) -> dict:
    """Our Precision@5 ordering of the methods against Ma et al.'s ML-1M table, per evaluation,
    with each pair's paired difference (mean ± se over seeds)."""
    methods = result["methods"]
    if "precision@5" not in next(iter(methods.values()))["one-stage"]:
        return {}
    out = {}
    for evaluation in EVALUATIONS:
        ours = {m: methods[m][evaluation]["precision@5"]["mean"] for m in methods}
        paper = {m: PAPER_PRECISION_AT_5[evaluation][m] for m in methods}
        pairs = {}
        names = list(methods)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                diff = np.subtract(
                    methods[b][evaluation]["precision@5"]["values"],
                    methods[a][evaluation]["precision@5"]["values"],
                )
                mean, se = mean_se(diff)
                pairs[f"{b} - {a}"] = {"mean": mean, "se": se}
        out[evaluation] = {
            "ours": _order(ours),
            "paper": _order(paper),
            "same_order": _order(ours) == _order(paper),
            "paired_differences": pairs,
        }
    return out


def _cell(stats: dict) -> str:
    se = stats["se"]
    return (
        f"{100 * stats['mean']:.2f} ± {100 * se:.2f}" if not math.isnan(se) else f"{100 * stats['mean']:.2f}"
    )


def format_movielens(result: dict) -> str:
    """Markdown: the environment, one table per evaluation (percent, mean ± se over seeds),
    and the comparison with Ma et al.'s MovieLens-1M Precision@5."""
    config = result["config"]
    names = metric_names(tuple(config["ks"]))
    env = result["environment"]
    lines = [
        f"MovieLens-100K two-stage study (Ma et al. 2020 protocol): {result['seeds']} seeds (seed "
        f"{result['seed']}), {env['n_users']} users x {env['n_items']} items, "
        f"{config['events_per_user'] * env['n_users']} logged events per seed; candidates k = "
        f"{config['candidates']}, 2-IPS T = {config['num_samples']}, alpha = {config['alpha']}.",
        f"Simulator mean q {env['mean_q']:.3f} (best 5 per user {env['oracle_top5_q']:.3f}); logging "
        f"value {env['logging_value']:.3f}, ~{env['logging_effective_items']:.0f} effective items, max "
        f"propensity {env['logging_max_propensity']:.3f}. Values in percent, mean ± standard error.",
    ]
    header = "| method | " + " | ".join(names) + " |"
    rule = "|---" * (len(names) + 1) + "|"
    for evaluation in EVALUATIONS:
        title = (
            "generator's top-k"
            if evaluation == "one-stage"
            else (f"ranker re-ranks the generator's top {config['candidates']}")
        )
        lines += ["", f"### {evaluation} ({title})", "", header, rule]
        for method, stats in result["methods"].items():
            lines.append(f"| {method} | " + " | ".join(_cell(stats[evaluation][m]) for m in names) + " |")
        for ref, stats in result["references"].items():
            lines.append(f"| *{ref}* | " + " | ".join(_cell(stats[evaluation][m]) for m in names) + " |")
    comparison = result.get("comparison") or {}
    if comparison:
        lines += [
            "",
            "### Precision@5 against Ma et al. (MovieLens-1M)",
            "",
            "| evaluation | "
            + " | ".join(f"{m} (ours / paper)" for m in result["methods"])
            + " | our order | paper's order |",
            "|---" * (len(result["methods"]) + 3) + "|",
        ]
        for evaluation, comp in comparison.items():
            cells = [
                f"{_cell(result['methods'][m][evaluation]['precision@5'])} / {PAPER_PRECISION_AT_5[evaluation][m]}"
                for m in result["methods"]
            ]
            lines.append(f"| {evaluation} | " + " | ".join(cells) + f" | {comp['ours']} | {comp['paper']} |")
        lines += ["", "Paired differences of Precision@5 (percentage points, mean ± se over seeds):"]
        for evaluation, comp in comparison.items():
            diffs = ", ".join(f"{pair} {_cell(stats)}" for pair, stats in comp["paired_differences"].items())
            lines.append(f"- {evaluation}: {diffs}")
    seconds = result.get("seconds", {})
    if seconds:
        timing = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
        lines += ["", f"Time: {timing}."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> None:
    """Declares ``towerjax study movielens`` (``--seeds``, ``--seed``, ``--devices``, ``--quick``, ``--json``)."""
    parser = arguments.subcommand(
        subparsers,
        "movielens",
        _main,
        help="MovieLens-100K two-stage study (Ma et al. 2020): CE, 1-IPS, 2-IPS generators",
    )
    arguments.add_seed_arguments(parser, seeds=10)
    parser.add_argument("--quick", action="store_true", help="miniature sizes: a smoke test")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")


def _main(args: argparse.Namespace) -> int:
    """Runs the study and prints its tables; a dataset that cannot be fetched or read is one
    line on stderr and exit status 1 (bad options raise InputError, reported by the CLI)."""
    if args.json is not None:
        arguments.check_out_dir(args.subparser, "--json", args.json.parent)
    try:
        result = run_movielens_study(
            seeds=args.seeds,
            seed=args.seed,
            miniature=args.quick,
            devices=args.devices,
            log=lambda line: print(line, flush=True),
        )
    except (FetchError, DatasetFileError) as err:
        print(f"towerjax study movielens: error: {err}", file=sys.stderr)
        return 1
    print(format_movielens(result))
    if args.json is not None:
        args.json.write_text(jsonio.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0
