"""Synthetic logged bandit feedback with a known reward function (SPEC 5.1, 5.2).

A :class:`ProblemInstance` is one problem instance: the items' features, the reward
function's coefficients and the behaviour policy. Everything about it is fixed by one
key, so a training set and a held-out test set drawn from the same problem share the
reward function and the items and differ only in their contexts. Generation is pure,
``jit``-able and ``vmap``-able over keys.

:class:`SyntheticProblem` is the built-in problem training draws when it is given no logs
of its own: the settings of :func:`blog_problem` (logging policy, ``A``, ``d``) and how many
training and test events to log from it.

Large catalogues: logs of more than :data:`DENSE_LOG_ELEMENTS` (round, item) pairs are drawn
in chunks of rows and carry the problem instance instead of ``[n, A]`` arrays
(:func:`sample_logged_data`), and the z-score constants are computed in closed form, so
nothing ``[rounds, items]`` is ever held (a million items: ``[A, d]`` features and chunks).

Two settings:

* :func:`blog_problem`, the seed study's: uniform ``[0, 1)`` features, ``d_x = d_a = 50``,
  logistic reward, uniform or epsilon-greedy logging (greedy on ``<x, e_a>``).
* :func:`obp_problem`, Open Bandit Pipeline's ``SyntheticBanditDataset``: ``N(0, I)``
  contexts, logistic reward, linear behaviour policy ``softmax(beta * g)``, with two
  documented departures: standardisation constants are fixed per problem (estimated
  once from a reference sample, so ``q(x, a)`` of a row never depends on the rest of
  the batch), and the z-score is ``(f - mean) / std`` (OBP 0.5.7 computes
  ``f - mean / std``, its issue #203).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from towerjax.batching import map_row_chunks, row_chunk
from towerjax.checks import InputError, check_choice, check_positive_int
from towerjax.data import LoggedData

__all__ = [
    "BEHAVIORS",
    "DENSE_LOG_ELEMENTS",
    "ProblemInstance",
    "SyntheticProblem",
    "behavior_policy",
    "blog_problem",
    "expected_reward",
    "logged_reward",
    "obp_problem",
    "sample_contexts",
    "sample_logged_data",
]

BEHAVIORS = ("uniform", "epsilon-greedy", "linear")
_REFERENCE_CONTEXTS = 2048  # contexts used once per problem to fix the z-score constants
# Logs of at most this many (round, item) pairs carry dense [n, A] pi_b and expected_reward
# (sample_logged_data); larger ones are drawn in row chunks and carry the problem instead.
DENSE_LOG_ELEMENTS = 1 << 25


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProblemInstance:
    """One problem instance. Coefficient shapes use ``d~ = d + 1`` (a bias term).

    Attributes:
      action_context: ``[A, d_a]`` item features ``e_a``.
      reward_coef: ``(theta_x [d_x~], theta_a [d_a~], M [d_x~, d_a~])`` of the logistic reward.
      reward_moments: ``(mean, std)`` of the raw reward logit, fixed per problem.
      behavior_coef: the same triple for the linear behaviour policy's logit.
      behavior_moments: ``(mean, std)`` of the raw behaviour logit.
      epsilon: exploration rate of the epsilon-greedy behaviour.
      beta: inverse temperature of the linear behaviour policy.
      context_distribution: ``"uniform"`` (``U[0, 1)``) or ``"normal"`` (``N(0, I)``); static.
      behavior: one of ``BEHAVIORS``; static.
    """

    action_context: jax.Array
    reward_coef: tuple[jax.Array, jax.Array, jax.Array]
    reward_moments: tuple[jax.Array, jax.Array]
    behavior_coef: tuple[jax.Array, jax.Array, jax.Array]
    behavior_moments: tuple[jax.Array, jax.Array]
    epsilon: jax.Array
    beta: jax.Array
    context_dim: int = dataclasses.field(metadata=dict(static=True), default=50)
    context_distribution: str = dataclasses.field(metadata=dict(static=True), default="uniform")
    behavior: str = dataclasses.field(metadata=dict(static=True), default="uniform")

    @property
    def n_actions(self) -> int:
        return self.action_context.shape[-2]

    def expected_reward(self, context: jax.Array) -> jax.Array:
        """``[n, A]`` ``q(x, a)`` of ``[n, d_x]`` contexts (the module's :func:`expected_reward`)."""
        return expected_reward(self, context)

    def behavior_policy(self, context: jax.Array) -> jax.Array:
        """``[n, A]`` ``pi_0(. | x)`` of ``[n, d_x]`` contexts (the module's :func:`behavior_policy`)."""
        return behavior_policy(self, context)


def blog_problem(
    key: jax.Array,
    *,
    n_actions: int = 10,
    dim: int = 50,
    behavior: str = "uniform",
    epsilon: float = 0.1,
) -> ProblemInstance:
    """The seed study's setting (SPEC 5.1).

    Args:
      key: fixes the items, the reward coefficients and the z-score constants.
      n_actions: ``A``.
      dim: ``d_x = d_a``.
      behavior: ``"uniform"`` (``pi_0 = 1/A``) or ``"epsilon-greedy"``
        (``pi_0 = eps/A + (1 - eps) 1[a = argmax_a <x, e_a>]``).
      epsilon: exploration rate in ``[0, 1]`` for epsilon-greedy logging.
    """
    if behavior not in ("uniform", "epsilon-greedy"):
        raise InputError("behavior", f"expected 'uniform' or 'epsilon-greedy', got {behavior!r}")
    _check_epsilon(epsilon)
    key_items, key_coef = jax.random.split(key)
    n_actions, dim = check_positive_int("n_actions", n_actions), check_positive_int("dim", dim)
    items = jax.random.uniform(key_items, (n_actions, dim))
    return _make_problem(key_coef, items, dim, "uniform", behavior, epsilon=epsilon, beta=0.0)


def obp_problem(
    key: jax.Array,
    *,
    n_actions: int = 10,
    dim_context: int = 5,
    beta: float = 1.0,
    action_context: jax.Array | None = None,
) -> ProblemInstance:
    """Open Bandit Pipeline's ``SyntheticBanditDataset`` setting (SPEC 5.2).

    Args:
      key: fixes the reward and behaviour coefficients and the z-score constants.
      n_actions: ``A``.
      dim_context: ``d_x``.
      beta: inverse temperature of ``pi_0 = softmax(beta * g)`` (negative favours low ``g``).
      action_context: optional ``[A, d_a]`` item features; one-hot ``eye(A)`` by default,
        as in OBP.
    """
    n_actions = check_positive_int("n_actions", n_actions)
    if action_context is None:
        action_context = jnp.eye(n_actions)
    action_context = jnp.asarray(action_context, jnp.float32)
    if action_context.ndim != 2 or action_context.shape[0] != n_actions:
        raise InputError("action_context", f"expected shape ({n_actions}, d_a), got {action_context.shape}")
    return _make_problem(
        key, action_context, check_positive_int("dim_context", dim_context), "normal", "linear", 0.0, beta
    )


def sample_contexts(key: jax.Array, problem: ProblemInstance, n: int) -> jax.Array:
    """``[n, d_x]`` fresh contexts from the problem's context distribution."""
    shape = (n, problem.context_dim)
    if problem.context_distribution == "uniform":
        return jax.random.uniform(key, shape)
    return jax.random.normal(key, shape)


def expected_reward(problem: ProblemInstance, context: jax.Array) -> jax.Array:
    """``[n, A]`` ``q(x, a) = sigmoid((f(x, a) - mean) / std)``, row by row."""
    return jax.nn.sigmoid(
        _standardised_logit(problem.reward_coef, problem.reward_moments, context, problem.action_context)
    )


def behavior_policy(problem: ProblemInstance, context: jax.Array) -> jax.Array:
    """``[n, A]`` the logging policy ``pi_0(. | x)``."""
    n, n_actions = context.shape[0], problem.n_actions
    if problem.behavior == "uniform":
        return jnp.full((n, n_actions), 1.0 / n_actions)
    if problem.behavior == "epsilon-greedy":
        greedy = jax.nn.one_hot(jnp.argmax(context @ problem.action_context.T, axis=-1), n_actions)
        return problem.epsilon / n_actions + (1.0 - problem.epsilon) * greedy
    logit = _standardised_logit(
        problem.behavior_coef, problem.behavior_moments, context, problem.action_context
    )
    return jax.nn.softmax(problem.beta * logit, axis=-1)


def sample_logged_data(
    key: jax.Array, problem: ProblemInstance, n_rounds: int, *, dense: bool | None = None
) -> LoggedData:
    """Logs ``n_rounds`` events of the behaviour policy on fresh contexts.

    Contexts, actions and rewards use separate sub-keys; ``pscore == pi_0(action | x)`` and
    ``reward ~ Bernoulli(q(x, action))``.

    ``dense`` (default: when ``n_rounds * A <= DENSE_LOG_ELEMENTS``): the result carries the
    ``[n, A]`` ``pi_b`` and true ``expected_reward`` for evaluation, and the actions are one
    ``jax.random.categorical`` draw over ``[n, A]``. Otherwise nothing ``[n, A]`` is built:
    each row's action is drawn from ``pi_0(. | x_i)`` with its own key
    (``fold_in(key_action, i)``; uniform logging as a uniform integer, epsilon-greedy as the
    mixture, the linear policy as a categorical draw, in row chunks), ``pscore`` and
    ``q(x_i, a_i)`` are computed for the logged item only, and the result carries ``problem``
    (:attr:`LoggedData.problem`) from which values compute ``q`` and ``pi_0`` rows on demand.
    The two paths draw from the same distribution with different random numbers (the
    contexts are the same).
    """
    key_x, key_a, key_r = jax.random.split(key, 3)
    context = sample_contexts(key_x, problem, n_rounds)
    if dense is None:
        dense = n_rounds * problem.n_actions <= DENSE_LOG_ELEMENTS
    if not dense:
        logged = map_row_chunks(
            functools.partial(_logged_rows, key_a, problem),
            {"context": context, "row": jnp.arange(n_rounds)},
            row_chunk(n_rounds, problem.n_actions),
        )
        reward = jax.random.bernoulli(key_r, logged["q"]).astype(jnp.float32)
        return LoggedData(
            context=context,
            action_context=problem.action_context,
            action=logged["action"],
            reward=reward,
            pscore=logged["pscore"],
            problem=problem,
        )
    pi_b = behavior_policy(problem, context)
    q = expected_reward(problem, context)
    action = jax.random.categorical(key_a, jnp.log(pi_b), axis=-1).astype(jnp.int32)
    rows = jnp.arange(n_rounds)
    reward = jax.random.bernoulli(key_r, q[rows, action]).astype(jnp.float32)
    return LoggedData(
        context=context,
        action_context=problem.action_context,
        action=action,
        reward=reward,
        pscore=pi_b[rows, action],
        pi_b=pi_b,
        expected_reward=q,
    )


def logged_reward(problem: ProblemInstance, context: jax.Array, action: jax.Array) -> jax.Array:
    """``[n]`` ``q(x_i, a_i)`` of ``[n, d_x]`` contexts and ``[n]`` items, without ``[n, A]``:
    ``sigmoid((theta_x . x~ + theta_a . a~ + x~^T M a~ - mean) / std)`` with ``a~`` the
    logged item's features."""
    theta_x, theta_a, interaction = problem.reward_coef
    mean, std = problem.reward_moments
    x, a = _with_bias(context), _with_bias(problem.action_context[action])
    logit = jnp.sum((x @ interaction) * a, axis=-1) + x @ theta_x + a @ theta_a
    return jax.nn.sigmoid((logit - mean) / std)


def _logged_rows(key: jax.Array, problem: ProblemInstance, rows: dict) -> dict:
    """A chunk of :func:`sample_logged_data`'s rows drawn without ``[n, A]`` arrays: each
    row's action from ``pi_0(. | x_i)`` with key ``fold_in(key, i)``, its ``pscore`` and
    ``q(x_i, a_i)``."""
    keys = jax.vmap(functools.partial(jax.random.fold_in, key))(rows["row"])
    context, n_actions = rows["context"], problem.n_actions
    if problem.behavior == "linear":
        log_pi = jax.nn.log_softmax(
            problem.beta
            * _standardised_logit(
                problem.behavior_coef, problem.behavior_moments, context, problem.action_context
            ),
            axis=-1,
        )
        action = jax.vmap(jax.random.categorical)(keys, log_pi).astype(jnp.int32)
        pscore = jnp.exp(jnp.take_along_axis(log_pi, action[:, None], axis=-1)[:, 0])
    else:
        explore_key, item_key = jax.vmap(jax.random.split, out_axes=1)(keys)
        uniform = jax.vmap(lambda k: jax.random.randint(k, (), 0, n_actions))(item_key).astype(jnp.int32)
        if problem.behavior == "uniform":
            action, pscore = uniform, jnp.full(uniform.shape, 1.0 / n_actions)
        else:  # epsilon-greedy: a uniform item with probability epsilon, else the greedy one
            greedy = jnp.argmax(context @ problem.action_context.T, axis=-1).astype(jnp.int32)
            explore = jax.vmap(jax.random.uniform)(explore_key) < problem.epsilon
            action = jnp.where(explore, uniform, greedy)
            pscore = problem.epsilon / n_actions + (1.0 - problem.epsilon) * (action == greedy)
    return {"action": action, "pscore": pscore, "q": logged_reward(problem, context, action)}


@dataclasses.dataclass(frozen=True)
class SyntheticProblem:
    """The built-in synthetic problem: :func:`blog_problem`'s settings and how much to log.

    Training draws it when it is given no logs of its own (``make_train(config, problem)``,
    ``train_seeds(config, problem=...)``; the default ``SyntheticProblem()`` without one).
    Each run draws its own instance and logs from its key (:meth:`sample`).

    Attributes:
      behavior: the logging policy, ``"uniform"`` or ``"epsilon-greedy"``.
      epsilon: exploration rate in ``[0, 1]`` of epsilon-greedy logging.
      n_rounds: logged training events ``n`` (a training batch holds at most this many).
      n_test_rounds: held-out test events, whose true values are reported.
      n_actions: items ``A`` (at least 2).
      dim: ``d_x = d_a``.
    """

    behavior: str = "uniform"
    epsilon: float = 0.1
    n_rounds: int = 15000
    n_test_rounds: int = 10000
    n_actions: int = 10
    dim: int = 50

    def __post_init__(self) -> None:
        check_choice("behavior", self.behavior, ("uniform", "epsilon-greedy"))
        if isinstance(self.epsilon, bool) or not 0.0 <= self.epsilon <= 1.0:
            raise InputError("epsilon", f"expected a value in [0, 1], got {self.epsilon}")
        for name in ("n_rounds", "n_test_rounds", "n_actions", "dim"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.n_actions < 2:
            raise InputError("n_actions", f"expected at least 2, got {self.n_actions}")

    def instance(self, key: jax.Array) -> ProblemInstance:
        """The problem instance of ``key`` (:func:`blog_problem` with these settings)."""
        return blog_problem(
            key, n_actions=self.n_actions, dim=self.dim, behavior=self.behavior, epsilon=self.epsilon
        )

    def sample(
        self, key_problem: jax.Array, key_train: jax.Array, key_test: jax.Array, *, dense: bool | None = None
    ) -> tuple[LoggedData, LoggedData]:
        """``(train, test)`` logs: the instance of ``key_problem``, then ``n_rounds`` training
        events from ``key_train`` and ``n_test_rounds`` test events from ``key_test`` on fresh
        contexts of that instance (:func:`sample_logged_data`, ``dense`` as there: large logs
        carry the instance instead of ``[n, A]`` arrays). Jit-able and vmap-able over keys."""
        problem = self.instance(key_problem)
        return (
            sample_logged_data(key_train, problem, self.n_rounds, dense=dense),
            sample_logged_data(key_test, problem, self.n_test_rounds, dense=dense),
        )

    def check_batch_size(self, batch_size: int) -> None:
        """Raises :class:`~towerjax.checks.InputError` naming ``batch_size`` when a batch would
        need more than the ``n_rounds`` logged events."""
        if batch_size > self.n_rounds:
            raise InputError("batch_size", f"expected at most n_rounds={self.n_rounds}, got {batch_size}")

    def to_dict(self) -> dict:
        """JSON-ready: every field."""
        return dataclasses.asdict(self)


def _make_problem(
    key: jax.Array,
    action_context: jax.Array,
    context_dim: int,
    context_distribution: str,
    behavior: str,
    epsilon: float,
    beta: float,
) -> ProblemInstance:
    key_reward, key_behavior, key_reference = jax.random.split(key, 3)
    dim_x, dim_a = context_dim + 1, action_context.shape[1] + 1
    reward_coef = _coefficients(key_reward, dim_x, dim_a, low=-1.0)
    behavior_coef = _coefficients(key_behavior, dim_x, dim_a, low=0.0)
    partial = ProblemInstance(
        action_context=action_context,
        reward_coef=reward_coef,
        reward_moments=(jnp.zeros(()), jnp.ones(())),
        behavior_coef=behavior_coef,
        behavior_moments=(jnp.zeros(()), jnp.ones(())),
        epsilon=jnp.asarray(epsilon, jnp.float32),
        beta=jnp.asarray(beta, jnp.float32),
        context_dim=context_dim,
        context_distribution=context_distribution,
        behavior=behavior,
    )
    reference = sample_contexts(key_reference, partial, _REFERENCE_CONTEXTS)
    return dataclasses.replace(
        partial,
        reward_moments=_logit_moments(reward_coef, reference, action_context),
        behavior_moments=_logit_moments(behavior_coef, reference, action_context),
    )


def _coefficients(key: jax.Array, dim_x: int, dim_a: int, low: float) -> tuple[jax.Array, ...]:
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.uniform(k1, (dim_x,), minval=low, maxval=1.0),
        jax.random.uniform(k2, (dim_a,), minval=low, maxval=1.0),
        jax.random.uniform(k3, (dim_x, dim_a), minval=low, maxval=1.0),
    )


def _with_bias(features: jax.Array) -> jax.Array:
    return jnp.concatenate([jnp.ones((*features.shape[:-1], 1)), features], axis=-1)


def _raw_logit(coef: tuple[jax.Array, ...], context: jax.Array, action_context: jax.Array) -> jax.Array:
    """``[n, A]`` ``f = theta_x . x~ + theta_a . a~ + x~^T M a~``."""
    theta_x, theta_a, interaction = coef
    x, a = _with_bias(context), _with_bias(action_context)
    return (x @ interaction) @ a.T + (x @ theta_x)[:, None] + (a @ theta_a)[None, :]


def _standardised_logit(coef, moments, context, action_context) -> jax.Array:
    mean, std = moments
    return (_raw_logit(coef, context, action_context) - mean) / std


def _moments(logit: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.mean(logit), jnp.maximum(jnp.std(logit), 1e-6)


def _logit_moments(coef, reference: jax.Array, action_context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean, std)`` of the raw logit over every (reference context, item) pair.

    Up to :data:`DENSE_LOG_ELEMENTS` pairs from the ``[R, A]`` logits themselves; beyond, in
    closed form without them. The logit is affine in the item, ``f(x, a) = v_x . a~ + s_x``
    (``v_x = M^T x~ + theta_a``, ``s_x = theta_x . x~``), so over the grid
    ``mean = mean_x m_x`` with ``m_x = v_x . mean_a(a~) + s_x``, and
    ``var = mean_x v_x^T C v_x + var_x(m_x)`` with ``C`` the items' ``[d_a~, d_a~]`` covariance.
    """
    if reference.shape[0] * action_context.shape[0] <= DENSE_LOG_ELEMENTS:
        return _moments(_raw_logit(coef, reference, action_context))
    theta_x, theta_a, interaction = coef
    x, a = _with_bias(reference), _with_bias(action_context)
    v = x @ interaction + theta_a
    a_mean = jnp.mean(a, axis=0)
    centred = a - a_mean
    covariance = centred.T @ centred / a.shape[0]
    m = v @ a_mean + x @ theta_x
    variance = jnp.mean(jnp.sum((v @ covariance) * v, axis=-1)) + jnp.var(m)
    return jnp.mean(m), jnp.maximum(jnp.sqrt(variance), 1e-6)


def _check_epsilon(epsilon: float) -> None:
    if isinstance(epsilon, jax.core.Tracer):
        return
    if not 0.0 <= float(epsilon) <= 1.0:
        raise InputError("epsilon", f"expected a value in [0, 1], got {epsilon}")
