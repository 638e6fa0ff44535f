"""The list policy that two-tower scores define: ``K`` items without replacement, Plackett-Luce (SPEC 10).

A list ``a = (a_1, ..., a_K)`` of distinct items is drawn one position at a time, each item from
the softmax of the scores over the items not yet shown:

.. math::
  \\pi(a | x) = \\prod_{k=1}^K \\frac{\\exp(s(x, a_k) / \\tau)}{\\sum_{b \\notin \\{a_1, \\ldots, a_{k-1}\\}}
  \\exp(s(x, b) / \\tau)}

(Plackett 1975; Luce 1959). Adding independent Gumbel noise to ``s / tau`` and taking the top ``K``
samples it exactly (:func:`sample_lists`); ``tau -> 0`` gives the deterministic top-``K`` list
(:func:`top_k_lists`). Position marginals ``P(a_k = b | x)`` have no closed form beyond ``k = 1``:
:func:`exact_position_marginals` enumerates every list (small ``A`` and ``K``),
:func:`prefix_position_marginals` sums over the ``A^(K-1)`` prefixes only (``A = 80, K = 3``) and
:func:`position_marginals` averages Gumbel-top-``K`` samples. The single-action policy is
:mod:`towerjax.policy`; the estimators that use these quantities are :mod:`towerjax.evaluation.slate`.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from towerjax.checks import InputError, check_positive_int, check_temperature

__all__ = [
    "MAX_ENUMERATED_LISTS",
    "all_lists",
    "exact_position_marginals",
    "list_log_prob",
    "next_item_log_probs",
    "position_log_probs",
    "position_marginals",
    "prefix_log_probs",
    "prefix_position_marginals",
    "sample_lists",
    "top_k_lists",
]

MAX_ENUMERATED_LISTS = 200_000
"""The most lists :func:`all_lists` enumerates (``A! / (A - K)!``)."""


def _check_scores(scores: ArrayLike) -> jax.Array:
    scores = jnp.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise InputError("scores", f"expected shape [B, A] with A >= 1, got {scores.shape}")
    return scores


def _check_k(k: int, n_items: int) -> int:
    k = check_positive_int("k", k)
    if k > n_items:
        raise InputError("k", f"expected a list length 1 <= k <= {n_items} (the number of items), got {k}")
    return k


def _check_lists(scores: jax.Array, lists: ArrayLike) -> jax.Array:
    lists = jnp.asarray(lists)
    batch, n_items = scores.shape
    if lists.ndim != 2 or lists.shape[0] != batch or not 1 <= lists.shape[1] <= n_items:
        raise InputError(
            "lists",
            f"expected shape ({batch}, K) with 1 <= K <= {n_items} to match scores, got {lists.shape}",
        )
    if not jnp.issubdtype(lists.dtype, jnp.integer):
        raise InputError("lists", f"expected integer item indices, got dtype {lists.dtype}")
    return lists


def next_item_log_probs(scores: ArrayLike, lists: ArrayLike, temperature: float = 1.0) -> jax.Array:
    """``log pi(b | x, a_1..a_{k-1})``: each position's softmax over the items not yet shown.

    .. math::
      \\log \\pi_k(b | x) = s(x, b) / \\tau - \\log \\sum_{c \\notin \\{a_1..a_{k-1}\\}} \\exp(s(x, c) / \\tau),
      \\quad -\\infty \\text{ for } b \\in \\{a_1..a_{k-1}\\}

    The evaluation policy's next-item distribution that cascade-DR averages its reward model over
    (OBP's ``evaluation_policy_action_dist``, as ``exp`` of this). Memory ``[B, K, A]``.

    Args:
      scores: ``[B, A]`` scores ``s(x, a)``.
      lists: ``[B, K]`` int lists of distinct items in ``[0, A)`` (the logged lists).
      temperature: ``tau > 0``.

    Returns:
      ``[B, K, A]`` log-probabilities; row ``[i, k]`` is a distribution over the ``A - k`` remaining items.
    """
    scores = _check_scores(scores)
    lists = _check_lists(scores, lists)
    check_temperature(temperature)
    n_items = scores.shape[1]
    shown = jax.nn.one_hot(lists, n_items, dtype=bool)  # [B, K, A]: b is a_k
    # above[i, k, b]: b is one of a_1..a_{k-1} (an exclusive running "or" down the positions)
    above = jnp.cumsum(shown, axis=1, dtype=jnp.int32) - shown > 0
    logits = jnp.where(above, -jnp.inf, scores[:, None, :] / temperature)
    return jax.nn.log_softmax(logits, axis=-1)


def position_log_probs(scores: ArrayLike, lists: ArrayLike, temperature: float = 1.0) -> jax.Array:
    """``[B, K]`` conditional log-probabilities ``log pi(a_k | x, a_1..a_{k-1})`` of each position's item.

    Args:
      scores: ``[B, A]`` scores.
      lists: ``[B, K]`` int lists of distinct items in ``[0, A)``.
      temperature: ``tau > 0``.
    """
    log_next = next_item_log_probs(scores, lists, temperature)
    return jnp.take_along_axis(log_next, jnp.asarray(lists)[..., None], axis=-1)[..., 0]


def prefix_log_probs(scores: ArrayLike, lists: ArrayLike, temperature: float = 1.0) -> jax.Array:
    """``[B, K]`` log-probabilities of each list's top-``k`` prefix, ``log pi(a_1..a_k | x)``.

    .. math:: \\log \\pi(a_{1:k} | x) = \\sum_{j \\le k} \\log \\pi(a_j | x, a_1..a_{j-1})

    The cascade propensities of the reward-interaction estimators (OBP's ``pscore_cascade``, as ``exp``);
    the last column is :func:`list_log_prob`.
    """
    return jnp.cumsum(position_log_probs(scores, lists, temperature), axis=-1)


def list_log_prob(scores: ArrayLike, lists: ArrayLike, temperature: float = 1.0) -> jax.Array:
    """``[B]`` Plackett-Luce log-probability ``log pi(a_1..a_K | x)`` of each whole list (SPEC 10).

    .. math::
      \\log \\pi(a | x) = \\sum_{k=1}^K \\Big[ s(x, a_k) / \\tau
      - \\log \\sum_{b \\notin \\{a_1..a_{k-1}\\}} \\exp(s(x, b) / \\tau) \\Big]

    Args:
      scores: ``[B, A]`` scores ``s(x, a)``.
      lists: ``[B, K]`` int lists of distinct items in ``[0, A)``; a list with a repeated item has
        probability 0 (``-inf``).
      temperature: ``tau > 0``.

    >>> scores = jnp.log(jnp.array([[3.0, 2.0, 1.0]]))
    >>> round(float(jnp.exp(list_log_prob(scores, jnp.array([[0, 2]])))[0]), 4)  # 3/6 * 1/3
    0.1667
    """
    return jnp.sum(position_log_probs(scores, lists, temperature), axis=-1)


def sample_lists(key: jax.Array, scores: ArrayLike, k: int, temperature: float = 1.0) -> jax.Array:
    """``[B, K]`` lists drawn from the Plackett-Luce policy by Gumbel-top-``K``.

    ``a = top_K(s(x, .) / tau + G)`` with ``G`` i.i.d. standard Gumbel is an exact draw of ``K``
    items without replacement (Yellott 1977; Kool et al., ICML 2019).

    Args:
      key: ``jax.random.key``.
      scores: ``[B, A]`` scores.
      k: list length ``1 <= K <= A``.
      temperature: ``tau > 0``.
    """
    scores = _check_scores(scores)
    k = _check_k(k, scores.shape[1])
    check_temperature(temperature)
    gumbel = jax.random.gumbel(key, scores.shape, dtype=jnp.result_type(scores.dtype, float))
    return jax.lax.top_k(scores / temperature + gumbel, k)[1]


def top_k_lists(scores: ArrayLike, k: int) -> jax.Array:
    """``[B, K]`` the ``K`` highest-scoring items in order: the Plackett-Luce policy's ``tau -> 0`` limit.

    Ties go to the lower index (``jax.lax.top_k``).
    """
    scores = _check_scores(scores)
    k = _check_k(k, scores.shape[1])
    return jax.lax.top_k(scores, k)[1]


def position_marginals(
    key: jax.Array, scores: ArrayLike, k: int, n_samples: int, temperature: float = 1.0
) -> jax.Array:
    """Monte-Carlo position marginals ``P(a_k = b | x)`` ``[B, K, A]`` from Gumbel-top-``K`` samples.

    .. math:: \\hat P(a_k = b | x) = \\frac1S \\sum_{s=1}^S 1[a^{(s)}_k = b], \\quad a^{(s)} \\sim \\pi(\\cdot | x)

    Unbiased for every entry, so an importance weight with this numerator keeps IIPS unbiased
    (SPEC 10); the standard error of an entry is ``sqrt(P (1 - P) / S)``. The samples are drawn one
    at a time in a ``jax.lax.scan`` (memory ``[B, K, A]``).

    Args:
      key: ``jax.random.key``.
      scores: ``[B, A]`` scores.
      k: list length ``1 <= K <= A``.
      n_samples: ``S >= 1`` lists per row.
      temperature: ``tau > 0``.
    """
    scores = _check_scores(scores)
    k = _check_k(k, scores.shape[1])
    n_samples = check_positive_int("n_samples", n_samples)
    check_temperature(temperature)
    n_items = scores.shape[1]
    dtype = jnp.result_type(scores.dtype, float)

    def add_sample(counts, sample_key):
        lists = sample_lists(sample_key, scores, k, temperature)
        return counts + jax.nn.one_hot(lists, n_items, dtype=dtype), None

    counts = jnp.zeros((scores.shape[0], k, n_items), dtype)
    counts, _ = jax.lax.scan(add_sample, counts, jax.random.split(key, n_samples))
    return counts / n_samples


def all_lists(n_items: int, k: int) -> np.ndarray:
    """Every list of ``K`` distinct items out of ``A``: ``[A! / (A - K)!, K]`` int32, in lexicographic order.

    Raises:
      InputError: when there are more than :data:`MAX_ENUMERATED_LISTS` lists.
    """
    n_items = check_positive_int("n_items", n_items)
    k = _check_k(k, n_items)
    count = math.perm(n_items, k)
    if count > MAX_ENUMERATED_LISTS:
        raise InputError(
            "k",
            f"expected at most {MAX_ENUMERATED_LISTS} lists to enumerate, got {n_items}!/({n_items}-{k})! = {count}",
        )
    return np.array(list(itertools.permutations(range(n_items), k)), dtype=np.int32).reshape(count, k)


def exact_position_marginals(scores: ArrayLike, k: int, temperature: float = 1.0) -> jax.Array:
    """Exact position marginals ``P(a_k = b | x)`` ``[B, K, A]`` by enumerating every list.

    .. math:: P(a_k = b | x) = \\sum_{a: a_k = b} \\pi(a | x)

    over the ``A! / (A - K)!`` lists of :func:`all_lists` (for small ``A`` and ``K``; memory
    ``[B, A! / (A - K)!]``). ``P(a_1 = b | x)`` is the softmax; each ``[i, k]`` row sums to 1.

    >>> p = exact_position_marginals(jnp.zeros((1, 4)), 2)
    >>> [round(float(v), 4) for v in p[0, 1]]
    [0.25, 0.25, 0.25, 0.25]
    """
    scores = _check_scores(scores)
    batch, n_items = scores.shape
    lists = jnp.asarray(all_lists(n_items, k))  # [L, K]

    def list_probs(one_list):  # [K] -> [B]: pi(one_list | x_i) for every row
        return jnp.exp(list_log_prob(scores, jnp.broadcast_to(one_list, (batch, k)), temperature))

    probs = jax.vmap(list_probs, out_axes=1)(lists)  # [B, L]
    return jnp.einsum("bl,lka->bka", probs, jax.nn.one_hot(lists, n_items, dtype=probs.dtype))


def prefix_position_marginals(scores: ArrayLike, k: int, temperature: float = 1.0) -> jax.Array:
    """Exact position marginals ``P(a_k = b | x)`` ``[B, K, A]`` by summing over the prefixes before ``k``.

    With ``p = softmax(s / tau)`` and a prefix ``c = (c_1..c_{j})`` of distinct items, Plackett-Luce
    puts ``b`` next with probability ``p_b / (1 - p_{c_1} - ... - p_{c_j})``, so

    .. math:: P(a_{j+1} = b | x) = p_b \\sum_{c \\not\\ni b} \\frac{\\pi(c | x)}{1 - \\sum_i p_{c_i}}
        = p_b \\Big(T - \\sum_{i \\le j} \\sum_{c: c_i = b} f(c)\\Big), \\quad f(c) = \\frac{\\pi(c | x)}{1 - \\sum_i p_{c_i}}

    with ``T = sum_c f(c)``: a prefix holds ``b`` at most once, so the prefixes holding ``b`` split by
    the position that holds it. Memory and time ``[B, A^(K-1)]`` (``A = 80, K = 3``: 6,400 a row),
    against ``[B, A! / (A - K)!]`` for :func:`exact_position_marginals`; differentiable. Exact up to
    rounding: the difference ``T - ...`` loses about ``eps * T`` in absolute terms (float32: ~1e-6 for an
    item that nearly always fills an earlier position), and ``1 - sum_i p_{c_i}`` loses precision as it
    nears 0 (a policy nearly deterministic over its top items): compute in float64 there.

    Args:
      scores: ``[B, A]`` scores.
      k: list length ``1 <= K <= A`` with ``A^(K-1) <=`` :data:`MAX_ENUMERATED_LISTS`.
      temperature: ``tau > 0``.

    >>> p = prefix_position_marginals(jnp.log(jnp.array([[2.0, 1.0, 1.0]])), 2)
    >>> [round(float(v), 4) for v in p[0, 1]]  # b = 0: 1/4 * 2/3 + 1/4 * 2/3
    [0.3333, 0.3333, 0.3333]
    """
    scores = _check_scores(scores)
    n_items = scores.shape[1]
    k = _check_k(k, n_items)
    check_temperature(temperature)
    if n_items ** (k - 1) > MAX_ENUMERATED_LISTS:
        raise InputError(
            "k",
            f"expected at most {MAX_ENUMERATED_LISTS} prefixes to sum over, got {n_items}^({k}-1) = {n_items ** (k - 1)}",
        )
    p = jax.nn.softmax(scores / temperature, axis=-1)  # [B, A]
    floor = jnp.finfo(p.dtype).eps  # 1 - sum_i p_{c_i} below it is rounding
    other = 1 - jnp.eye(n_items, dtype=p.dtype)  # other[c, b]: c != b
    marginals = [p]
    # [B, A^j] (axes 1..j for c_1..c_j): pi(c | x), sum_i p_{c_i}, and [1, A^j] whether c is distinct
    prefix, shown, distinct = p, p, jnp.ones((1, n_items), bool)
    for j in range(1, k):
        axes = tuple(range(1, j + 1))
        f = prefix / jnp.where(distinct, jnp.maximum(1 - shown, floor), 1)  # no 0/0 in the gradient
        total = jnp.sum(f, axis=axes)  # [B]
        holding = sum(jnp.sum(f, axis=tuple(a for a in axes if a != i)) for i in axes)  # [B, A]
        marginals.append(p * jnp.maximum(total[:, None] - holding, 0))  # >= 0 despite rounding
        if j + 1 < k:  # extend every prefix by one item it does not hold
            new = p.reshape((p.shape[0],) + (1,) * j + (n_items,))
            differs = math.prod(
                jnp.expand_dims(other, tuple(a for a in range(j + 1) if a != i)) for i in axes
            )  # [1] + [A]*j + [A]: the new item differs from every c_i
            distinct = distinct[..., None] & (differs > 0)
            prefix = f[..., None] * new * differs
            shown = shown[..., None] + new
    return jnp.stack(marginals, axis=1)
