"""A synthetic slate problem with a known value: position-based clicks on lists of ``K`` items (SPEC 10).

Contexts ``x ~ N(0, I_dx)``; ``A`` items with features ``e_a ~ N(0, I_da)``. The click model is the
position-based model (Craswell et al., WSDM 2008; the one IIPS assumes): the item at position ``k`` is
examined with probability ``theta_k`` and clicked, independently of the other positions, with its
relevance ``rho(x, a)``,

.. math::
  q(x, a, k) = P(r_k = 1 | x, a_k = a) = \\theta_k \\rho(x, a), \\quad
  \\rho(x, a) = \\sigma\\big(c\\, x^\\top W e_a / \\sqrt{d_x d_a} + b_a\\big)

so a list's expected reward is ``sum_k alpha_k q(x, a_k, k)`` and the value of a list policy is
``V(pi) = E_x sum_k alpha_k sum_a P_pi(a at k | x) q(x, a, k)``. Under this model SIPS, IIPS and RIPS
are all unbiased. :func:`exact_list_value` computes ``V`` of a Plackett-Luce policy on a set of contexts
with the exact position marginals (every list enumerated, small ``A`` and ``K``), in chunks of contexts;
the only error is the contexts' sample, common to every policy compared on the same set. The best
list puts the items of highest ``rho`` at the positions of highest ``alpha_k theta_k``
(:func:`best_list_value`).

The logger is Plackett-Luce on a noisy score (:func:`logging_scores`): the true relevance logit plus
``sigma`` times a second bilinear form in ``x`` and ``e_a`` it cannot tell from the truth, times
``beta``. Logs (:func:`sample_slate_logs`) hold the list, the per-position clicks and the logger's
list, prefix and position-marginal propensities.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int
from towerjax.list_policy import exact_position_marginals, prefix_log_probs, sample_lists, top_k_lists

__all__ = [
    "SlateLogs",
    "SlateProblem",
    "best_list_value",
    "exact_list_value",
    "logging_scores",
    "position_click_probs",
    "relevance",
    "sample_contexts",
    "sample_slate_logs",
    "slate_problem",
    "top_k_list_value",
]


@dataclasses.dataclass(frozen=True)
class SlateProblem:
    """A position-based slate problem (module docstring); build it with :func:`slate_problem`.

    Fields: ``item_features [A, da]``, ``relevance_matrix [dx, da]`` (``W``), ``noise_matrix [dx, da]``,
    ``item_bias [A]`` (``b_a``), ``examination [K]`` (``theta_k``), ``scale`` (``c``),
    ``logging_beta`` (``beta``), ``logging_noise`` (``sigma``).
    """

    item_features: jax.Array
    relevance_matrix: jax.Array
    noise_matrix: jax.Array
    item_bias: jax.Array
    examination: jax.Array
    scale: float
    logging_beta: float
    logging_noise: float

    @property
    def n_items(self) -> int:
        return self.item_features.shape[0]

    @property
    def list_size(self) -> int:
        return self.examination.shape[0]

    @property
    def context_dim(self) -> int:
        return self.relevance_matrix.shape[0]


class SlateLogs(NamedTuple):
    """Logged lists: ``context [n, dx]``, ``lists [n, K]`` int, ``rewards [n, K]`` clicks, and the logger's
    ``pscore [n]`` (whole list), ``pscore_cascade [n, K]`` (prefixes) and ``pscore_item_position [n, K]``
    (position marginals) of the logged lists."""

    context: jax.Array
    lists: jax.Array
    rewards: jax.Array
    pscore: jax.Array
    pscore_cascade: jax.Array
    pscore_item_position: jax.Array


def slate_problem(
    key: jax.Array,
    *,
    n_items: int = 10,
    list_size: int = 3,
    context_dim: int = 5,
    item_dim: int = 5,
    examination: tuple[float, ...] | None = None,
    scale: float = 2.0,
    mean_bias: float = -1.0,
    logging_beta: float = 0.5,
    logging_noise: float = 1.0,
) -> SlateProblem:
    """Draws a :class:`SlateProblem`: item features, ``W``, the logger's noise form and item biases.

    ``examination`` defaults to ``theta_k = 1 / k``; ``b_a ~ N(mean_bias, 0.5^2)``.
    """
    n_items = check_positive_int("n_items", n_items)
    list_size = check_positive_int("list_size", list_size)
    if list_size > n_items:
        raise InputError("list_size", f"expected 1 <= list_size <= n_items = {n_items}, got {list_size}")
    if examination is None:
        examination = tuple(1.0 / (k + 1) for k in range(list_size))
    theta = jnp.asarray(examination, jnp.float32)
    if theta.shape != (list_size,) or not bool(jnp.all((theta >= 0) & (theta <= 1))):
        raise InputError("examination", f"expected {list_size} probabilities in [0, 1], got {examination}")
    k_items, k_w, k_noise, k_bias = jax.random.split(key, 4)
    dx, da = check_positive_int("context_dim", context_dim), check_positive_int("item_dim", item_dim)
    return SlateProblem(
        item_features=jax.random.normal(k_items, (n_items, da)),
        relevance_matrix=jax.random.normal(k_w, (dx, da)),
        noise_matrix=jax.random.normal(k_noise, (dx, da)),
        item_bias=mean_bias + 0.5 * jax.random.normal(k_bias, (n_items,)),
        examination=theta,
        scale=float(scale),
        logging_beta=float(logging_beta),
        logging_noise=float(logging_noise),
    )


def sample_contexts(key: jax.Array, problem: SlateProblem, n: int) -> jax.Array:
    """``[n, dx]`` contexts ``x ~ N(0, I)``."""
    return jax.random.normal(key, (check_positive_int("n", n), problem.context_dim))


def _bilinear(problem: SlateProblem, context: jax.Array, matrix: jax.Array) -> jax.Array:
    """``[n, A]`` ``c x^T M e_a / sqrt(dx da)``."""
    dx, da = matrix.shape
    return problem.scale * (context @ matrix @ problem.item_features.T) / math.sqrt(dx * da)


def relevance(problem: SlateProblem, context: ArrayLike) -> jax.Array:
    """``[n, A]`` click probability of an examined item, ``rho(x, a)``."""
    return jax.nn.sigmoid(
        _bilinear(problem, jnp.asarray(context), problem.relevance_matrix) + problem.item_bias
    )


def position_click_probs(problem: SlateProblem, context: ArrayLike) -> jax.Array:
    """``[n, K, A]`` ``q(x, a, k) = theta_k rho(x, a)``: the expected reward of item ``a`` at position ``k``."""
    return problem.examination[:, None] * relevance(problem, context)[:, None, :]


def logging_scores(problem: SlateProblem, context: ArrayLike) -> jax.Array:
    """``[n, A]`` the logger's Plackett-Luce scores ``beta (logit rho(x, a) + sigma c x^T N e_a / sqrt(dx da))``."""
    context = jnp.asarray(context)
    truth = _bilinear(problem, context, problem.relevance_matrix) + problem.item_bias
    return problem.logging_beta * (
        truth + problem.logging_noise * _bilinear(problem, context, problem.noise_matrix)
    )


def _alpha(problem: SlateProblem, position_weight: ArrayLike | None) -> jax.Array:
    k = problem.list_size
    alpha = jnp.ones(k) if position_weight is None else jnp.asarray(position_weight, jnp.float32)
    if alpha.shape != (k,):
        raise InputError("position_weight", f"expected shape ({k},), got {alpha.shape}")
    return alpha


def sample_slate_logs(key: jax.Array, problem: SlateProblem, n: int) -> SlateLogs:
    """``n`` logged lists of the logger, with per-position Bernoulli clicks and every propensity.

    The position marginals are exact (enumeration, :func:`~towerjax.list_policy.exact_position_marginals`).
    """
    k_x, k_list, k_click = jax.random.split(key, 3)
    context = sample_contexts(k_x, problem, n)
    scores = logging_scores(problem, context)
    k = problem.list_size
    lists = sample_lists(k_list, scores, k)
    q = position_click_probs(problem, context)  # [n, K, A]
    click_prob = jnp.take_along_axis(q, lists[..., None], axis=-1)[..., 0]
    rewards = jax.random.bernoulli(k_click, click_prob).astype(jnp.float32)
    log_prefix = prefix_log_probs(scores, lists)
    marginals = _chunked(lambda s: exact_position_marginals(s, k), scores)
    pscore_item_position = jnp.take_along_axis(marginals, lists[..., None], axis=-1)[..., 0]
    return SlateLogs(
        context, lists, rewards, jnp.exp(log_prefix[:, -1]), jnp.exp(log_prefix), pscore_item_position
    )


def _chunked(fn, rows: jax.Array, chunk: int = 256) -> jax.Array:
    """``fn`` over the rows of ``rows`` in chunks of ``chunk`` (``lax.map``), padding the last."""
    n = rows.shape[0]
    n_chunks = -(-n // chunk)
    padded = jnp.concatenate([rows, jnp.zeros((n_chunks * chunk - n, *rows.shape[1:]), rows.dtype)])
    out = jax.lax.map(fn, padded.reshape(n_chunks, chunk, *rows.shape[1:]))
    return out.reshape(n_chunks * chunk, *out.shape[2:])[:n]


def exact_list_value(
    problem: SlateProblem,
    context: ArrayLike,
    scores: ArrayLike,
    temperature: float = 1.0,
    *,
    position_weight: ArrayLike | None = None,
    chunk: int = 256,
) -> jax.Array:
    """``V(pi) = mean_i sum_k alpha_k sum_a P_pi(a at k | x_i) q(x_i, a, k)`` of Plackett-Luce on ``scores``.

    Exact for each context (every list enumerated; memory ``[chunk, A! / (A - K)!]``), in chunks of
    ``chunk`` contexts.

    Args:
      problem: the slate problem.
      context: ``[n, dx]`` contexts.
      scores: ``[n, A]`` the policy's scores on them.
      temperature: Plackett-Luce ``tau``.
      position_weight: ``[K]`` ``alpha_k``; default 1.
    """
    context, scores = jnp.asarray(context), jnp.asarray(scores)
    if scores.shape != (context.shape[0], problem.n_items):
        raise InputError(
            "scores", f"expected shape ({context.shape[0]}, {problem.n_items}), got {scores.shape}"
        )
    alpha = _alpha(problem, position_weight)
    k = problem.list_size

    def chunk_value(rows):  # [chunk, dx + A] -> [chunk]
        x, s = rows[:, : problem.context_dim], rows[:, problem.context_dim :]
        marginals = exact_position_marginals(s, k, temperature)
        return jnp.einsum("k,nka,nka->n", alpha, marginals, position_click_probs(problem, x))

    return jnp.mean(_chunked(chunk_value, jnp.concatenate([context, scores], axis=1), chunk))


def top_k_list_value(
    problem: SlateProblem, context: ArrayLike, scores: ArrayLike, *, position_weight: ArrayLike | None = None
) -> jax.Array:
    """The value of the deterministic top-``K`` lists of ``scores`` (the ``tau -> 0`` limit)."""
    alpha = _alpha(problem, position_weight)
    lists = top_k_lists(scores, problem.list_size)
    q = position_click_probs(problem, context)
    return jnp.mean(jnp.take_along_axis(q, lists[..., None], axis=-1)[..., 0] @ alpha)


def best_list_value(
    problem: SlateProblem, context: ArrayLike, *, position_weight: ArrayLike | None = None
) -> jax.Array:
    """The best list's value: the highest ``rho`` items at the positions of highest ``alpha_k theta_k``."""
    alpha = _alpha(problem, position_weight)
    gains = jnp.sort(alpha * problem.examination)[::-1]
    top_rho = jax.lax.top_k(relevance(problem, context), problem.list_size)[0]  # descending
    return jnp.mean(top_rho @ gains)
