"""The MovieLens study's semi-synthetic world: simulator, logging policy, ranker, and each seed's logs and labels.

``docs/studies/movielens.md`` describes the environment and why each choice was made.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from towerjax.checks import InputError, check_positive_int
from towerjax.data import LoggedData
from towerjax.datasets.movielens import MovieLens100K
from towerjax.features import Features, take
from towerjax.studies.movielens.config import MovieLensStudyConfig

__all__ = ["Environment", "SeedInputs", "build_environment", "fit_simulator", "prepare_seeds", "tower_inputs"]


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
    """The simulator, logging policy and ranker of the study (``docs/studies/movielens.md``)."""
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
      train_seed: the integer seed of :func:`towerjax.training.train_seeds` (initialisation and
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
    study, labels). Training keys come from :func:`towerjax.training.train_seeds` seeded by an
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
