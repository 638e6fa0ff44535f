"""The learning benchmark's task grid: log sizes, action counts, loggers and reward noise (issue 22).

Every task is a builder ``build(seeds, seed) -> (train, test)`` of :class:`towerjax.LoggedData`
with a leading ``[S]`` seed axis, in the format of ``benchmarks/learning.py``'s ``TASKS``. Both
logs carry the logging policy ``pi_b [n, A]`` and the true ``q(x, a)`` as ``expected_reward
[n, A]`` (one exception below), ``pscore = pi_b[i, a_i]`` and rewards ``r ~ Bernoulli(q)`` in
``{0, 1}``; the test rows are held-out examples or fresh contexts of the same distribution, so
a policy's true value on them is ``mean_i sum_a pi(a | x_i) q(x_i, a)``.

Tasks (:data:`PROVENANCE` says the same in one or two sentences each, :data:`SIZES` tabulates):

- Supervised-to-bandit reductions in the POEM protocol (Swaminathan and Joachims, ICML 2015):
  a labelled example ``(x, y)`` becomes a context ``x`` whose action ``a`` (a class) earns
  ``r ~ Bernoulli(q)``, ``q = 0.9`` for the right class and ``0.1`` otherwise (``clean``),
  ``0.6`` and ``0.4`` (``noisy``), or ``0.9``, ``0.3`` for the near miss ``(y + 1) mod A`` and
  ``0.1`` otherwise (``near-miss``). Loggers: ``uniform`` (``1/A``); ``competent``, a
  logistic regression fitted on 5% of the training examples, softened to ``softmax(logits /
  T)`` with ``T`` set so that its true value on the training examples lies halfway between
  the uniform policy's and the best, each probability floored at ``1e-3`` and renormalised;
  ``misleading``, 0.5 on the near miss, 0.1 on the right class and the rest spread evenly,
  so the uncorrected limit ``pi ∝ q pi_0`` prefers the near miss. Each training example is
  logged ``repeats`` times.

  - ``digits-competent-1k``, ``digits-uniform-6k``, ``digits-misleading-6k``,
    ``digits-noisy-6k``: scikit-learn's bundled digits (1,797 images, 10 classes); per seed
    1,200 training and 597 test images.
  - ``classes100-competent-20k``, ``classes100-uniform-20k``, ``classes100-misleading-20k``:
    ``sklearn.datasets.make_classification`` with 100 classes (25,000 examples, 40 features,
    30 informative, ``class_sep = 2.5``, one cluster per class, fixed ``random_state=0``); per
    seed 20,000 training and 5,000 test examples.

- ``obp1000-100k``: Open Bandit Pipeline's synthetic semantics (:func:`towerjax.synthetic.obp_problem`,
  SPEC 5.2) with 1,000 actions described by 10 ``N(0, I)`` features (not OBP's default
  one-hot, whose ``[n, A] x [A, A]`` product makes the logit 100 times dearer), 5 context
  dimensions and the linear logger ``softmax(g)`` (``beta = 1``, independent of ``q``);
  100,000 logged events, 5,000 test contexts, a fresh problem per seed. To keep three seeds
  under 2 GB the training logs carry ``pi_b`` (the KL penalty reads it) but not
  ``expected_reward`` (``None``; training's own true values on the training logs are then NaN).

- ``movielens-schnabel``: semi-synthetic MovieLens-100K in the protocol of Schnabel et al.,
  *Recommendations as Treatments*, ICML 2016, section 6.2 (:func:`schnabel_world`): the 943 x
  1,000 matrix of the 1,000 most-rated items is completed by a rank-10 matrix factorisation
  (ALS with user and item biases, L2) fitted on their observed ratings, then binned so the
  ratings 1..5 have Schnabel's marginal ``(0.52, 0.24, 0.14, 0.07, 0.03)`` (Yahoo! R3's random
  set). ``q(u, i) = 0.95`` if the rating is at least 4, else ``0.05``. A logged event is a user
  drawn uniformly choosing item ``i`` with ``pi_b(i | u) ∝ alpha^max(0, 4 - r_ui) pop_i^gamma``
  (``alpha = 0.25``, ``pop_i`` the item's real rating count over the largest, ``gamma = 0.5``);
  50,000 events. Context: the user id (embedded) with the user table's standardised age and
  one-hot gender and occupation; items: the item id (embedded) with the genres and release
  year. Test: one row per user with ``q(u, .)`` and ``pi_b(. | u)``. :func:`random_exposure`
  and :func:`ranking_metrics` give the ranking evaluation on randomly shown items (AUC and
  NDCG@5 against ``rating >= 4``).

Run ``python benchmarks/grid.py [--tasks a,b] [--seeds 1]`` to print, per task, one JSON line
with the sizes, the true values of the logging, uniform and best policies on the test rows and
the build time.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from towerjax.data import LoggedData
from towerjax.features import Features
from towerjax.synthetic import (
    ProblemInstance,
    behavior_policy,
    expected_reward,
    obp_problem,
    sample_contexts,
)

__all__ = [
    "PROVENANCE",
    "SCHNABEL_MARGINAL",
    "SIZES",
    "TASKS",
    "MovieLensTask",
    "ReductionTask",
    "SchnabelWorld",
    "SoftmaxLogger",
    "SyntheticTask",
    "bin_to_marginal",
    "class_reward",
    "complete_ratings",
    "fit_competent_logger",
    "misleading_logger",
    "random_exposure",
    "ranking_metrics",
    "schnabel_policy",
    "schnabel_world",
    "values",
]

LOGGERS = ("uniform", "competent", "misleading")
# q for (the right class, the near miss (y + 1) mod A, any other class); None: the near miss is "other".
REWARDS = {"clean": (0.9, None, 0.1), "noisy": (0.6, None, 0.4), "near-miss": (0.9, 0.3, 0.1)}
# Schnabel et al. 2016, 6.2: p(r = 1..5) of Yahoo! R3's randomly selected ratings.
SCHNABEL_MARGINAL = (0.52, 0.24, 0.14, 0.07, 0.03)
PROBABILITY_FLOOR = 1e-3


def _stack(logs: list[LoggedData]) -> LoggedData:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *logs)


def _rng(seed: int, s: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, s, salt])


def _sample_actions(rng: np.random.Generator, pi_b: np.ndarray) -> np.ndarray:
    """``[n]`` actions ``a_i ~ pi_b[i]`` of an ``[n, A]`` distribution (inverse CDF)."""
    cdf = np.cumsum(pi_b, axis=1)
    u = rng.random((pi_b.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), pi_b.shape[1] - 1)


def _logs(
    rng: np.random.Generator, context: np.ndarray, action_context: np.ndarray, pi_b: np.ndarray, q: np.ndarray
) -> LoggedData:
    """One log of ``pi_b [n, A]``: ``a ~ pi_b``, ``r ~ Bernoulli(q[a])``, with ``pi_b`` and ``q`` kept."""
    rows = np.arange(pi_b.shape[0])
    action = _sample_actions(rng, pi_b)
    reward = (rng.random(rows.size) < q[rows, action]).astype(np.float32)
    return LoggedData(
        context=jnp.asarray(context, jnp.float32),
        action_context=jnp.asarray(action_context, jnp.float32),
        action=jnp.asarray(action, jnp.int32),
        reward=jnp.asarray(reward),
        pscore=jnp.asarray(pi_b[rows, action], jnp.float32),
        pi_b=jnp.asarray(pi_b, jnp.float32),
        expected_reward=jnp.asarray(q, jnp.float32),
    )


# --------------------------------------------------------------------------- supervised-to-bandit


def class_reward(y: np.ndarray, n_classes: int, kind: str) -> np.ndarray:
    """``[n, A]`` ``q(x_i, a)`` of labels ``y [n]``: :data:`REWARDS` ``[kind]`` for the right class,
    the near miss ``(y + 1) mod A`` and the rest."""
    right, near, other = REWARDS[kind]
    rows = np.arange(y.size)
    q = np.full((y.size, n_classes), other)
    if near is not None:
        q[rows, (y + 1) % n_classes] = near
    q[rows, y] = right
    return q


def misleading_logger(y: np.ndarray, n_classes: int, *, near: float = 0.5, right: float = 0.1) -> np.ndarray:
    """``[n, A]``: ``near`` on the near miss ``(y + 1) mod A``, ``right`` on ``y``, the rest spread evenly."""
    rows = np.arange(y.size)
    pi_b = np.full((y.size, n_classes), (1.0 - near - right) / (n_classes - 2))
    pi_b[rows, (y + 1) % n_classes] = near
    pi_b[rows, y] = right
    return pi_b


@dataclasses.dataclass(frozen=True)
class SoftmaxLogger:
    """``pi_b(. | x) = floor(softmax((x W + b) / T))``: each probability at least ``floor``, renormalised.

    Attributes:
      weight: ``[d, A]``; bias: ``[A]`` (``-inf`` for a class the fit never saw).
      temperature: ``T > 0``.
    """

    weight: np.ndarray
    bias: np.ndarray
    temperature: float
    floor: float = PROBABILITY_FLOOR

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``[n, A]`` the distribution of the contexts ``x [n, d]``."""
        return _floored_softmax((x @ self.weight + self.bias) / self.temperature, self.floor)


def _floored_softmax(logits: np.ndarray, floor: float) -> np.ndarray:
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = np.maximum(p / p.sum(axis=1, keepdims=True), floor)
    return p / p.sum(axis=1, keepdims=True)


def fit_competent_logger(
    x_fit: np.ndarray,
    y_fit: np.ndarray,
    n_classes: int,
    x_pool: np.ndarray,
    q_pool: np.ndarray,
    *,
    share: float = 0.5,
) -> SoftmaxLogger:
    """A logistic regression fitted on ``(x_fit, y_fit)``, its temperature set by bisection on ``log T``
    so that its true value on ``x_pool [n, d]`` (``q_pool [n, A]``) is ``V_unif + share (V_best - V_unif)``.

    When even ``T = 0.01`` falls short of that value, ``T = 0.01``.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000).fit(x_fit, y_fit)
    weight = np.zeros((x_fit.shape[1], n_classes))
    bias = np.full(n_classes, -np.inf)
    weight[:, model.classes_] = model.coef_.T
    bias[model.classes_] = model.intercept_
    uniform, best = q_pool.mean(), q_pool.max(axis=1).mean()
    target = uniform + share * (best - uniform)
    logits = x_pool @ weight + bias
    low, high = np.log(0.01), np.log(100.0)  # the value falls as T grows
    for _ in range(20):
        middle = 0.5 * (low + high)
        value = np.sum(_floored_softmax(logits / np.exp(middle), PROBABILITY_FLOOR) * q_pool, axis=1).mean()
        low, high = (middle, high) if value > target else (low, middle)
    return SoftmaxLogger(weight, bias, float(np.exp(low)))


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data / 16.0
    return (x - x.mean(0)) / (x.std(0) + 1e-6), digits.target.astype(np.int64)


@functools.cache
def _classes100() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=25_000,
        n_features=40,
        n_informative=30,
        n_redundant=0,
        n_classes=100,
        n_clusters_per_class=1,
        class_sep=2.5,
        flip_y=0.0,
        random_state=0,
    )
    return (x - x.mean(0)) / x.std(0), y.astype(np.int64)


DATASETS = {"digits": _digits, "classes100": _classes100}


@dataclasses.dataclass(frozen=True)
class ReductionTask:
    """A supervised-to-bandit task: ``build(seeds, seed)`` via ``__call__``.

    Per seed the examples are shuffled; the first ``n_pool`` are the training examples (each
    logged ``repeats`` times, so ``n_train = n_pool * repeats``), the next ``n_test`` the test
    rows. The competent logger is fitted on the first ``logger_share`` of the training examples.
    """

    dataset: str
    logger: str
    reward: str
    n_pool: int
    n_test: int
    repeats: int = 1
    logger_share: float = 0.05

    def __post_init__(self) -> None:
        for name, choices in (("dataset", DATASETS), ("logger", LOGGERS), ("reward", REWARDS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: expected one of {tuple(choices)}, got {getattr(self, name)!r}")

    @property
    def n_train(self) -> int:
        return self.n_pool * self.repeats

    def __call__(self, seeds: int, seed: int) -> tuple[LoggedData, LoggedData]:
        x, y = DATASETS[self.dataset]()
        n_classes = int(y.max()) + 1
        train, test = [], []
        for s in range(seeds):
            rng = _rng(seed, s, 1)
            order = rng.permutation(y.size)
            pool, held = order[: self.n_pool], order[self.n_pool : self.n_pool + self.n_test]
            q_pool, q_test = (class_reward(y[rows], n_classes, self.reward) for rows in (pool, held))
            if self.logger == "uniform":
                pi_pool, pi_test = (np.full(q.shape, 1.0 / n_classes) for q in (q_pool, q_test))
            elif self.logger == "misleading":
                pi_pool, pi_test = (misleading_logger(y[rows], n_classes) for rows in (pool, held))
            else:
                fit = pool[: max(1, round(self.logger_share * self.n_pool))]
                logger = fit_competent_logger(x[fit], y[fit], n_classes, x[pool], q_pool)
                pi_pool, pi_test = logger(x[pool]), logger(x[held])
            eye = np.eye(n_classes)
            repeat = functools.partial(np.repeat, repeats=self.repeats, axis=0)
            train.append(_logs(rng, repeat(x[pool]), eye, repeat(pi_pool), repeat(q_pool)))
            test.append(_logs(rng, x[held], eye, pi_test, q_test))
        return _stack(train), _stack(test)

    def provenance(self) -> str:
        source = {
            "digits": "scikit-learn's bundled digits (1,797 8x8 images, 10 classes)",
            "classes100": "sklearn.datasets.make_classification (100 classes, 25,000 examples, "
            "40 features of which 30 informative, class_sep 2.5, random_state 0)",
        }[self.dataset]
        logger = {
            "uniform": "the uniform logger",
            "competent": f"a competent logger (logistic regression on {self.logger_share:.0%} of the training examples, "
            "softmax temperature set so its value is halfway from uniform to best, probabilities "
            "floored at 1e-3)",
            "misleading": "a misleading logger (0.5 on the near miss (y + 1) mod A, 0.1 on the right "
            "class, the rest spread)",
        }[self.logger]
        right, near, other = REWARDS[self.reward]
        reward = f"q = {right} for the right class" + (f", {near} for the near miss" if near else "")
        return (
            f"POEM-style supervised-to-bandit reduction of {source}; per seed {self.n_pool:,} training "
            f"examples logged {self.repeats}x ({self.n_train:,} events) by {logger}, and {self.n_test:,} "
            f"held-out test examples. Rewards Bernoulli({reward}, {other} otherwise)."
        )

    def sizes(self) -> dict:
        right, near, other = REWARDS[self.reward]
        noise = f"Bernoulli {right}/{near}/{other}" if near else f"Bernoulli {right}/{other}"
        n_actions = 10 if self.dataset == "digits" else 100
        return {
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_actions": n_actions,
            "logger": self.logger,
            "noise": noise,
        }


# --------------------------------------------------------------------------- large synthetic


@dataclasses.dataclass(frozen=True)
class SyntheticTask:
    """Open Bandit Pipeline's synthetic problem (SPEC 5.2) with ``N(0, I)`` item features
    ``[A, dim_action]``, a fresh instance per seed; logs sampled in chunks of ``chunk`` rows
    (``n_train`` and ``n_test`` multiples of it) by :func:`_synthetic_rows`.

    The training logs keep ``pi_b`` but drop ``expected_reward`` (``None``), for memory.
    """

    n_actions: int
    n_train: int
    n_test: int
    dim_context: int = 5
    dim_action: int = 10
    beta: float = 1.0
    chunk: int = 5000

    def __call__(self, seeds: int, seed: int) -> tuple[LoggedData, LoggedData]:
        for name in ("n_train", "n_test"):
            if getattr(self, name) % self.chunk:
                raise ValueError(
                    f"{name}: expected a multiple of chunk={self.chunk}, got {getattr(self, name)}"
                )
        keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(seed + 2000), s))(jnp.arange(seeds))
        return _synthetic_build(self, keys)

    def _seed(self, key: jax.Array) -> tuple[LoggedData, LoggedData]:
        key_items, key_problem, key_train, key_test = jax.random.split(key, 4)
        items = jax.random.normal(key_items, (self.n_actions, self.dim_action))
        problem = obp_problem(
            key_problem,
            n_actions=self.n_actions,
            dim_context=self.dim_context,
            beta=self.beta,
            action_context=items,
        )
        train = self._logs(key_train, problem, self.n_train, with_q=False)
        return train, self._logs(key_test, problem, self.n_test, with_q=True)

    def _logs(self, key: jax.Array, problem: ProblemInstance, n: int, with_q: bool) -> LoggedData:
        """``n`` rows in chunks of ``chunk`` (``lax.map``), ``expected_reward`` only ``with_q``."""

        def chunk(k):
            rows = _synthetic_rows(k, problem, self.chunk)
            return rows if with_q else {**rows, "expected_reward": None}

        chunks = jax.lax.map(chunk, jax.random.split(key, n // self.chunk))
        rows = jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), chunks)
        return LoggedData(action_context=problem.action_context, **rows)

    def provenance(self) -> str:
        return (
            f"Open Bandit Pipeline's synthetic semantics (SPEC 5.2): {self.n_actions:,} actions with "
            f"{self.dim_action} N(0, I) features, {self.dim_context} N(0, I) context dimensions, logistic q, "
            f"the linear logger softmax(beta g), beta = {self.beta:g}, g independent of q; a fresh problem per seed, "
            f"{self.n_train:,} logged events and {self.n_test:,} test contexts. Rewards Bernoulli(q)."
        )

    def sizes(self) -> dict:
        return {
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_actions": self.n_actions,
            "logger": f"linear softmax (beta={self.beta:g})",
            "noise": "Bernoulli(logistic q)",
        }


@functools.partial(jax.jit, static_argnums=0)
def _synthetic_build(task: SyntheticTask, keys: jax.Array) -> tuple[LoggedData, LoggedData]:
    """``task``'s logs of each of the ``[S]`` keys, the seeds in turn (``lax.map``: the memory of one)."""
    return jax.lax.map(task._seed, keys)


def _synthetic_rows(key: jax.Array, problem: ProblemInstance, n: int) -> dict[str, jax.Array]:
    """``n`` logged rows of ``problem``: :func:`towerjax.synthetic.sample_logged_data`'s fields (no
    ``action_context``), the action drawn by inverse CDF (one uniform a row, not ``A`` Gumbels)."""
    key_x, key_a, key_r = jax.random.split(key, 3)
    context = sample_contexts(key_x, problem, n)
    pi_b, q = behavior_policy(problem, context), expected_reward(problem, context)
    cdf = jnp.cumsum(pi_b, axis=1)
    u = jax.random.uniform(key_a, (n, 1)) * cdf[:, -1:]
    action = jnp.minimum(jnp.sum(cdf < u, axis=1), problem.n_actions - 1).astype(jnp.int32)
    rows = jnp.arange(n)
    reward = jax.random.bernoulli(key_r, q[rows, action]).astype(jnp.float32)
    return {
        "context": context,
        "action": action,
        "reward": reward,
        "pscore": pi_b[rows, action],
        "pi_b": pi_b,
        "expected_reward": q,
    }


# --------------------------------------------------------------------------- MovieLens (Schnabel)


def complete_ratings(
    user: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    rank: int = 10,
    l2: float = 10.0,
    iterations: int = 15,
    seed: int = 0,
) -> np.ndarray:
    """``[U, I]`` completed ratings ``mu + b_u + c_i + p_u . q_i``: alternating least squares on
    the observed ``(user, item, rating)`` triples (``[n]`` each), ridge ``l2`` on every coefficient."""
    from scipy import sparse

    rng = np.random.default_rng(seed)
    mu = rating.mean()
    p = np.hstack([0.1 * rng.standard_normal((n_users, rank)), np.zeros((n_users, 1))])  # [p_u, b_u]
    q = np.hstack([0.1 * rng.standard_normal((n_items, rank)), np.zeros((n_items, 1))])  # [q_i, c_i]
    by_user = sparse.csr_matrix((np.ones(user.size), (user, np.arange(user.size))), (n_users, user.size))
    by_item = sparse.csr_matrix((np.ones(item.size), (item, np.arange(item.size))), (n_items, item.size))

    def solve(rows, design, target):
        """Ridge regression per row of ``rows`` ([R, n] sums over its observations)."""
        k = design.shape[1]
        gram = (rows @ (design[:, :, None] * design[:, None, :]).reshape(-1, k * k)).reshape(-1, k, k)
        rhs = rows @ (design * target[:, None])
        return np.linalg.solve(gram + l2 * np.eye(k), rhs[..., None])[..., 0]

    for _ in range(iterations):
        design = np.hstack([q[item, :rank], np.ones((item.size, 1))])
        p = solve(by_user, design, rating - mu - q[item, rank])
        design = np.hstack([p[user, :rank], np.ones((user.size, 1))])
        q = solve(by_item, design, rating - mu - p[user, rank])
    return mu + p[:, rank : rank + 1] + q[:, rank] + p[:, :rank] @ q[:, :rank].T


def bin_to_marginal(scores: np.ndarray, marginal=SCHNABEL_MARGINAL) -> np.ndarray:
    """Integer ratings ``1..K`` of ``scores`` (any shape) by their quantiles, so that rating ``k``
    has share ``marginal[k - 1]`` (``K = len(marginal)``; higher scores, higher ratings)."""
    marginal = np.asarray(marginal, np.float64)
    thresholds = np.quantile(scores, np.cumsum(marginal)[:-1] / marginal.sum())
    return 1 + np.searchsorted(thresholds, scores, side="right")


def schnabel_policy(
    ratings: np.ndarray, popularity: np.ndarray, *, alpha: float = 0.25, gamma: float = 0.5
) -> np.ndarray:
    """``[U, I]`` ``pi_b(i | u) ∝ alpha^max(0, 4 - r_ui) pop_i^gamma`` of ratings ``[U, I]`` and ``pop [I]``."""
    weight = alpha ** np.maximum(0, 4 - ratings) * popularity**gamma
    return weight / weight.sum(axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class SchnabelWorld:
    """The semi-synthetic MovieLens world (:func:`schnabel_world`).

    Attributes:
      ratings: ``[U, I]`` the completed ratings, integers ``1..5``.
      relevance: ``[U, I]`` bool, ``ratings >= 4``.
      q: ``[U, I]`` the click probability.
      pi_b: ``[U, I]`` the logging policy.
      users: :class:`~towerjax.features.Features` of the ``U`` users (``user_id`` and dense
        standardised age, one-hot gender and occupation).
      items: :class:`~towerjax.features.Features` of the ``I`` items (``item_id`` and dense genres,
        release year, year missing).
      item_rows: ``[I]`` each item's row in :func:`~towerjax.datasets.load_movielens_100k`'s items.
      summary: the fit's RMSE on the observed ratings and the marginals.
    """

    ratings: np.ndarray
    relevance: np.ndarray
    q: np.ndarray
    pi_b: np.ndarray
    users: Features
    items: Features
    item_rows: np.ndarray
    summary: dict


@functools.cache
def schnabel_world(
    n_items: int = 1000, alpha: float = 0.25, gamma: float = 0.5, noise: float = 0.05, rank: int = 10
) -> SchnabelWorld:
    """MovieLens-100K completed and binned as in Schnabel et al. 2016, 6.2 (cached per process).

    The ``n_items`` most-rated items; :func:`complete_ratings` on their observed ratings;
    :func:`bin_to_marginal` to :data:`SCHNABEL_MARGINAL`; ``q = noise + (1 - 2 noise) 1[r >= 4]``;
    :func:`schnabel_policy` with ``pop_i`` = the item's real rating count over the largest.
    """
    from towerjax.datasets.movielens import load_movielens_100k

    data = load_movielens_100k()
    counts = np.bincount(data.item, minlength=data.n_items)
    item_rows = np.sort(np.argsort(-counts, kind="stable")[:n_items])
    column = np.full(data.n_items, -1)
    column[item_rows] = np.arange(n_items)
    kept = column[data.item] >= 0
    user, item, rating = data.user[kept], column[data.item[kept]], data.rating[kept]
    completed = complete_ratings(user, item, rating, data.n_users, n_items, rank=rank)
    ratings = bin_to_marginal(completed)
    relevance = ratings >= 4
    popularity = counts[item_rows] / counts[item_rows].max()
    users = Features.from_arrays(
        ids={"user_id": np.arange(data.n_users)}, sizes={"user_id": data.n_users}, dense=data.user_features
    )
    items = Features.from_arrays(
        ids={"item_id": np.arange(n_items)}, sizes={"item_id": n_items}, dense=data.item_features[item_rows]
    )
    summary = {
        "observed_ratings": int(kept.sum()),
        "fit_rmse": float(np.sqrt(np.mean((completed[user, item] - rating) ** 2))),
        "rating_shares": np.bincount(ratings.ravel(), minlength=6)[1:].tolist(),
        "users_without_relevant_items": int((~relevance.any(axis=1)).sum()),
    }
    return SchnabelWorld(
        ratings=ratings.astype(np.int8),
        relevance=relevance,
        q=noise + (1.0 - 2.0 * noise) * relevance,
        pi_b=schnabel_policy(ratings, popularity, alpha=alpha, gamma=gamma),
        users=users,
        items=items,
        item_rows=item_rows,
        summary=summary,
    )


@dataclasses.dataclass(frozen=True)
class MovieLensTask:
    """``movielens-schnabel``: ``n_events`` logged events of users drawn uniformly; the test is one
    row per user. The world (:func:`schnabel_world`) is the same for every seed; seeds differ in
    the logged events and rewards."""

    n_events: int = 50_000
    n_items: int = 1000
    alpha: float = 0.25
    gamma: float = 0.5
    noise: float = 0.05

    def world(self) -> SchnabelWorld:
        return schnabel_world(self.n_items, self.alpha, self.gamma, self.noise)

    def __call__(self, seeds: int, seed: int) -> tuple[LoggedData, LoggedData]:
        world = self.world()
        n_users = world.pi_b.shape[0]
        rngs = [_rng(seed, s, 3) for s in range(seeds)]
        user = np.stack([rng.integers(n_users, size=self.n_events) for rng in rngs])  # [S, n]
        everyone = np.broadcast_to(np.arange(n_users), (seeds, n_users))
        return self._logs(world, rngs, user), self._logs(world, rngs, everyone)

    @staticmethod
    def _logs(world: SchnabelWorld, rngs: list[np.random.Generator], user: np.ndarray) -> LoggedData:
        """``[S, n]`` logs of the users ``user [S, n]``: one gather of ``pi_b`` and ``q`` for all seeds."""
        action = np.stack([_sample_items(rng, world.pi_b, u) for rng, u in zip(rngs, user, strict=True)])
        q_logged = world.q[user, action]
        reward = np.stack([rng.random(q.shape) < q for rng, q in zip(rngs, q_logged, strict=True)])
        seeds = user.shape[0]
        users, items = world.users, world.items
        context = Features(
            dense=jnp.asarray(np.asarray(users.dense)[user]),
            ids={"user_id": jnp.asarray(user, jnp.int32)},
            tables=users.tables,
        )
        action_context = jax.tree.map(lambda leaf: jnp.asarray(np.stack([leaf] * seeds)), items)
        index = jnp.asarray(user)  # one jax gather for pi_b and q: no [S, n, I] copy on the host
        return LoggedData(
            context=context,
            action_context=action_context,
            action=jnp.asarray(action, jnp.int32),
            reward=jnp.asarray(reward, jnp.float32),
            pscore=jnp.asarray(world.pi_b[user, action], jnp.float32),
            pi_b=jnp.asarray(world.pi_b, jnp.float32)[index],
            expected_reward=jnp.asarray(world.q, jnp.float32)[index],
        )

    def provenance(self) -> str:
        return (
            "Semi-synthetic MovieLens-100K after Schnabel et al. (ICML 2016, 6.2): the 943 x "
            f"{self.n_items:,} rating matrix of the {self.n_items:,} most-rated items completed by rank-10 "
            "ALS matrix factorisation, binned to the rating marginal (0.52, 0.24, 0.14, 0.07, 0.03); "
            f"q = {1 - self.noise:g} for ratings >= 4, else {self.noise:g}. {self.n_events:,} events of "
            f"uniformly drawn users choosing items with pi_b ∝ {self.alpha:g}^max(0, 4 - r) x "
            f"popularity^{self.gamma:g}; the test is one row per user (943)."
        )

    def sizes(self) -> dict:
        return {
            "n_train": self.n_events,
            "n_test": 943,
            "n_actions": self.n_items,
            "logger": f"Schnabel MNAR (alpha={self.alpha:g}, pop^{self.gamma:g})",
            "noise": f"Bernoulli {1 - self.noise:g}/{self.noise:g}",
        }


def _sample_items(rng: np.random.Generator, pi_b: np.ndarray, user: np.ndarray) -> np.ndarray:
    """``[n]`` items ``i ~ pi_b[user_j]`` (``pi_b [U, I]``) by one search in the users' stacked CDFs
    (row ``u`` shifted by ``u``), without an ``[n, I]`` copy of the users' rows."""
    n_users, n_items = pi_b.shape
    cdf = np.cumsum(pi_b, axis=1)
    stacked = (cdf / cdf[:, -1:] + np.arange(n_users)[:, None]).ravel()
    found = np.searchsorted(stacked, user + rng.random(user.size), side="right") - user * n_items
    return np.clip(found, 0, n_items - 1)


def random_exposure(seed: int, n_users: int, n_items: int, per_user: int = 20) -> np.ndarray:
    """``[U, A]`` bool: ``per_user`` items shown to each user, drawn uniformly without replacement."""
    if not 0 < per_user <= n_items:
        raise ValueError(f"per_user: expected a count in [1, {n_items}], got {per_user}")
    rng = np.random.default_rng(seed)
    shown = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :per_user]
    exposed = np.zeros((n_users, n_items), bool)
    np.put_along_axis(exposed, shown, True, axis=1)
    return exposed


def ranking_metrics(scores: np.ndarray, relevance: np.ndarray, exposed: np.ndarray, *, k: int = 5) -> dict:
    """Ranking quality on each user's exposed items, ``[U, A]`` arrays each.

    ``auc``: the mean over users with both relevant and irrelevant exposed items of the share of
    (relevant, irrelevant) pairs the scores order correctly (ties count one half).
    ``ndcg5``: the mean over users with a relevant exposed item of
    ``DCG@k / ideal DCG@k``, ``DCG@k = sum_{j <= k} rel_j / log2(j + 1)`` over the exposed items
    ranked by score (ties by item index).
    """
    from scipy.stats import rankdata

    scores, relevance, exposed = np.asarray(scores), np.asarray(relevance, bool), np.asarray(exposed, bool)
    if not scores.shape == relevance.shape == exposed.shape or scores.ndim != 2:
        raise ValueError(
            f"scores, relevance, exposed: expected the same [U, A] shape, got {scores.shape}, "
            f"{relevance.shape}, {exposed.shape}"
        )
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    aucs, ndcgs = [], []
    for u in range(scores.shape[0]):
        s, rel = scores[u, exposed[u]], relevance[u, exposed[u]]
        n_pos = int(rel.sum())
        n_neg = rel.size - n_pos
        if n_pos and n_neg:
            ranks = rankdata(s)  # midranks: ties count one half
            aucs.append((ranks[rel].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        if n_pos:
            top = rel[np.argsort(-s, kind="stable")][:k]
            ndcgs.append(np.sum(top * discount[: top.size]) / discount[: min(n_pos, k)].sum())
    return {"auc": _mean(aucs), "ndcg5": _mean(ndcgs), "auc_users": len(aucs), "ndcg_users": len(ndcgs)}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


# --------------------------------------------------------------------------- the grid


TASKS: dict[str, Callable[[int, int], tuple[LoggedData, LoggedData]]] = {
    "digits-competent-1k": ReductionTask("digits", "competent", "clean", n_pool=1200, n_test=597),
    "digits-uniform-6k": ReductionTask("digits", "uniform", "clean", n_pool=1200, n_test=597, repeats=5),
    "digits-misleading-6k": ReductionTask(
        "digits", "misleading", "near-miss", n_pool=1200, n_test=597, repeats=5
    ),
    "digits-noisy-6k": ReductionTask("digits", "competent", "noisy", n_pool=1200, n_test=597, repeats=5),
    "classes100-competent-20k": ReductionTask("classes100", "competent", "clean", n_pool=20_000, n_test=5000),
    "classes100-uniform-20k": ReductionTask("classes100", "uniform", "clean", n_pool=20_000, n_test=5000),
    "classes100-misleading-20k": ReductionTask(
        "classes100", "misleading", "near-miss", n_pool=20_000, n_test=5000
    ),
    "obp1000-100k": SyntheticTask(n_actions=1000, n_train=100_000, n_test=5000),
    "movielens-schnabel": MovieLensTask(),
}
PROVENANCE: dict[str, str] = {name: task.provenance() for name, task in TASKS.items()}
SIZES: dict[str, dict] = {name: task.sizes() for name, task in TASKS.items()}


def values(test: LoggedData) -> dict[str, np.ndarray]:
    """``[S]`` true values on the test rows: ``logging`` (``mean_i sum_a pi_b q``), ``uniform``
    (``mean_i mean_a q``) and ``best`` (``mean_i max_a q``)."""
    q, pi_b = np.asarray(test.expected_reward, np.float64), np.asarray(test.pi_b, np.float64)
    return {
        "logging": np.sum(pi_b * q, axis=-1).mean(-1),
        "uniform": q.mean(axis=(-2, -1)),
        "best": q.max(axis=-1).mean(-1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.tasks.split(","):
        if name not in TASKS:
            parser.error(f"--tasks: expected some of {tuple(TASKS)}, got {name!r}")
        start = time.perf_counter()
        train, test = TASKS[name](args.seeds, args.seed)
        jax.block_until_ready((train, test))
        seconds = time.perf_counter() - start
        row = {"task": name, **SIZES[name], "seconds": round(seconds, 2)}
        row.update({k: np.round(v, 4).tolist() for k, v in values(test).items()})
        row["train_mean_reward"] = np.round(np.asarray(train.reward).mean(-1), 4).tolist()
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
