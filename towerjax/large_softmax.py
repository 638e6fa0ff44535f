"""The softmax policy over a large item catalogue: a chunked normaliser and a sampled softmax.

The policy of SPEC 2 is ``pi(a|x) = softmax(s(x, .) / tau)_a`` with ``s(x, a) = <f(x), g(e_a)>``.
With ``A`` in the millions the ``[B, A]`` score matrix does not fit, but a policy-gradient
loss only needs ``log pi(a_i|x_i)`` of the logged action,

.. math:: \\log \\pi(a_i|x_i) = z_{i a_i} - \\log Z_i, \\quad z_{ia} = s(x_i, a) / \\tau,
    \\quad \\log Z_i = \\mathrm{logsumexp}_a z_{ia}.

Two ways to get it:

- **Exact, chunked** (:func:`chunked_logsumexp`, :func:`chunked_log_prob`): ``log Z`` is a
  streaming log-sum-exp over chunks of items (``jax.lax.scan``), so memory grows with the
  chunk (``[B, chunk_size]``), not with ``A``, in the forward *and* the backward pass (the
  backward pass recomputes each chunk's scores instead of storing them). Cost is still
  ``O(B A D)`` per call, and it needs the embeddings of all items.
- **Sampled softmax with the log-Q correction** (:func:`sampled_log_prob`,
  :func:`sampled_log_prob_from_ids`): ``log Z`` is estimated from ``M`` items drawn from a
  proposal ``q`` (Jean et al. 2015; Bengio & Senécal 2008; Yi et al. 2019), at cost
  ``O(B M D)``; only the sampled items need embeddings, so the item tower can run on
  their features alone.

**Sign convention of the log-Q correction.** Draw ``j_1..j_M`` i.i.d. from ``q`` (shared
by the batch). Each sampled item's logit is corrected by *subtracting* the log of its
expected count, ``log(M q(j))``; the logged item's logit is left *uncorrected*; a sample
equal to the logged item (an "accidental hit") is dropped:

.. math::
    \\hat Z_i = e^{z_{i a_i}} + \\sum_{m:\\, j_m \\ne a_i} e^{z_{i j_m} - \\log(M q(j_m))},
    \\qquad \\log \\hat\\pi(a_i|x_i) = z_{i a_i} - \\log \\hat Z_i .

Since ``E[sum_{m: j_m != a_i} exp(z_{ij_m}) / (M q(j_m))] = Z_i - exp(z_{ia_i})``, ``Z_hat``
is an unbiased estimate of ``Z`` whenever ``q(a) > 0`` for every item, so ``log pi_hat``
and its gradient
``grad z_{ia_i} - sum_c softmax_c(corrected logits) grad z_{ic}`` (a self-normalised
importance-sampling estimate of ``grad z_{ia_i} - E_pi[grad z_i]``) converge to the full
softmax's as ``M`` grows (bias ``O(1/M)``); ``log pi_hat <= 0`` always. Without the
correction (``correct=False``) the negatives are weighted by ``q`` as well as by ``pi`` and
the gradient stays biased towards popular items however large ``M`` is.

**Use with the losses of** :mod:`towerjax.losses`. ``ips_loss`` (and SNIPS, capping,
clipping, the POEM penalty), ``topk_ips_loss`` and ``naive_loss`` read ``log_pi [B, A]``
only at the logged action, so a ``[B]`` log-probability is passed as a one-column matrix
with :func:`logged_column`; ``regression_loss`` likewise takes the ``[B]`` logged scores.
:func:`towerjax.two_stage.two_stage_ips_loss` needs whole rows ``[B, A]`` (candidate
sets are drawn from the full policy) and cannot use a sampled log-probability. ``dr_loss``
(and SN-DR, Switch-DR, DR-OS) sums over all items only in its direct-method term; on the
sampled row of :func:`sampled_log_softmax_from_ids` (``[B, 1 + M]``: the logged item in
column 0, then the samples, with ``q_hat`` of the same items) that term becomes the
self-normalised importance-sampling estimate over the samples. The importance weight
``w_i = sg(pi(a_i|x_i)) / p_i`` is a *value*, and a sampled ``pi_hat`` would make it noisy
and biased; :func:`exact_value_sampled_grad` builds a log-probability whose value is the
exact (chunked, no-gradient) one and whose gradient is the sampled one, so the weight stays
exact while the backward pass costs ``O(B M D)`` (the exact value is still a forward pass
over all items; where even that is too costly, use the sampled log-probability alone and
accept its ``O(1/M)`` bias in the weight)::

    ids, log_q_ids = sample_items(key, log_q, num_samples)        # item ids [M]
    b = action.shape[0]
    items = model.embed_actions(params, action_context[jnp.concatenate([action, ids])])
    sampled = sampled_log_prob_from_ids(
        ctx, action, items[:b], ids, items[b:], log_q_ids, temperature=tau)
    exact = chunked_log_prob(jax.lax.stop_gradient(ctx), item_table, action,
                             chunk_size=65536, temperature=tau)   # e.g. a cached g(E)
    log_pi, column = logged_column(exact_value_sampled_grad(exact, sampled))
    loss = ips_loss(log_pi, column, reward, pscore, cap=10.0)

where ``ctx = model.embed_context(params, context)`` and ``item_table [A, D]`` is any
(possibly slightly stale) table of all item embeddings, held out of the gradient.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from towerjax.checks import (
    InputError,
    check_embeddings,
    check_nonnegative,
    check_positive,
    check_positive_int,
    check_temperature,
)

__all__ = [
    "ItemProposal",
    "chunked_log_prob",
    "chunked_log_softmax",
    "chunked_logsumexp",
    "exact_value_sampled_grad",
    "item_proposal",
    "logged_column",
    "popularity_log_q",
    "sample_items",
    "sampled_entropy",
    "sampled_log_prob",
    "sampled_log_prob_from_ids",
    "sampled_log_softmax_from_ids",
    "uniform_log_q",
]


# --------------------------------------------------------------------------- exact, chunked


def chunked_logsumexp(
    context_emb: ArrayLike, item_emb: ArrayLike, *, chunk_size: int, temperature: float = 1.0
) -> jax.Array:
    """Streaming log-normaliser ``log Z_i = logsumexp_a <f(x_i), g(e_a)> / tau`` over item chunks.

    .. math:: \\log Z_i = \\log \\sum_{c} \\sum_{a \\in c} \\exp(z_{ia}),
        \\quad z_{ia} = \\langle f(x_i), g(e_a) \\rangle / \\tau

    computed with ``jax.lax.scan`` over chunks of ``chunk_size`` items, combining each
    chunk's log-sum-exp with ``logaddexp``; the last chunk is padded and its padding masked
    with ``-inf``, so ``chunk_size`` need not divide ``A``. Besides ``O(A D)`` for the padded
    item table (and its gradient), peak memory is ``[B, chunk_size]`` scores in both
    passes: the gradient (a custom VJP, equal to that of
    ``jax.nn.logsumexp``: ``d log Z_i / d z_ia = pi(a|x_i)``) recomputes each chunk's scores.
    Reverse mode only (``jax.grad``, ``jax.vjp``); ``jax.jvp`` is not defined.

    Args:
      context_emb: ``[B, D]`` context embeddings ``f(x)``.
      item_emb: ``[A, D]`` item embeddings ``g(e_a)``.
      chunk_size: items per chunk, a positive integer (values above ``A`` act as ``A``).
      temperature: ``tau > 0``.

    Returns:
      ``[B]`` log-normalisers.

    Example:
      >>> import jax.numpy as jnp
      >>> ctx, items = jnp.ones((1, 2)), jnp.zeros((5, 2))
      >>> float(chunked_logsumexp(ctx, items, chunk_size=2)[0])  # log 5
      1.6094...
    """
    context_emb, item_emb = check_embeddings(context_emb, item_emb)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    check_temperature(temperature)
    return _streaming_logsumexp(context_emb / temperature, item_emb, min(chunk_size, item_emb.shape[0]))


def chunked_log_prob(
    context_emb: ArrayLike,
    item_emb: ArrayLike,
    action: ArrayLike,
    *,
    chunk_size: int,
    temperature: float = 1.0,
) -> jax.Array:
    """Exact ``log pi(a_i|x_i) = <f(x_i), g(e_{a_i})> / tau - log Z_i`` with a chunked normaliser.

    This is what the policy-gradient losses need; ``[B, A]`` is never built (see
    :func:`chunked_logsumexp` for memory and gradients).

    Args:
      context_emb: ``[B, D]`` context embeddings.
      item_emb: ``[A, D]`` item embeddings.
      action: ``[B]`` int actions ``a_i``.
      chunk_size: items per chunk of the normaliser.
      temperature: ``tau > 0``.

    Returns:
      ``[B]`` log-probabilities of the given actions.
    """
    context_emb, item_emb = check_embeddings(context_emb, item_emb)
    action = _check_action(action, context_emb.shape[0])
    chunk_size = check_positive_int("chunk_size", chunk_size)
    check_temperature(temperature)
    scaled = context_emb / temperature
    logit = jnp.sum(scaled * item_emb[action], axis=-1)
    return logit - _streaming_logsumexp(scaled, item_emb, min(chunk_size, item_emb.shape[0]))


def chunked_log_softmax(
    context_emb: ArrayLike, item_emb: ArrayLike, *, chunk_size: int, temperature: float = 1.0
) -> jax.Array:
    """The full ``[B, A]`` ``log pi(.|x_i)``, with the normaliser computed chunk by chunk.

    For evaluation where the ``[B, A]`` result fits: the output is the only ``[B, A]``
    array, and the normaliser's gradient streams as in :func:`chunked_logsumexp`. Equal to
    :func:`towerjax.policy.log_policy` of ``context_emb @ item_emb.T``.

    Args:
      context_emb: ``[B, D]`` context embeddings.
      item_emb: ``[A, D]`` item embeddings.
      chunk_size: items per chunk of the normaliser.
      temperature: ``tau > 0``.

    Returns:
      ``[B, A]`` log-probabilities.
    """
    context_emb, item_emb = check_embeddings(context_emb, item_emb)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    check_temperature(temperature)
    scaled = context_emb / temperature
    log_z = _streaming_logsumexp(scaled, item_emb, min(chunk_size, item_emb.shape[0]))
    return scaled @ item_emb.T - log_z[:, None]


def _item_chunks(item_emb: jax.Array, chunk_size: int) -> tuple[jax.Array, jax.Array]:
    """``[A, D] -> [n, C, D]`` zero-padded chunks and their ``[n]`` first item indices."""
    num_items, dim = item_emb.shape
    num_chunks = -(-num_items // chunk_size)
    padded = jnp.pad(item_emb, ((0, num_chunks * chunk_size - num_items), (0, 0)))
    return padded.reshape(num_chunks, chunk_size, dim), jnp.arange(num_chunks) * chunk_size


def _chunk_logits(scaled: jax.Array, chunk: jax.Array, start: jax.Array, num_items: int) -> jax.Array:
    """``[B, C]`` logits of one chunk, ``-inf`` at the padding past item ``num_items - 1``."""
    valid = start + jnp.arange(chunk.shape[0]) < num_items
    return jnp.where(valid, scaled @ chunk.T, -jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _streaming_logsumexp(scaled: jax.Array, item_emb: jax.Array, chunk_size: int) -> jax.Array:
    return _streaming_logsumexp_fwd(scaled, item_emb, chunk_size)[0]


def _streaming_logsumexp_fwd(scaled, item_emb, chunk_size):
    chunks, starts = _item_chunks(item_emb, chunk_size)
    num_items = item_emb.shape[0]

    def step(log_z, xs):
        chunk, start = xs
        chunk_log_z = jax.nn.logsumexp(_chunk_logits(scaled, chunk, start, num_items), axis=-1)
        return jnp.logaddexp(log_z, chunk_log_z), None

    dtype = jnp.result_type(scaled, item_emb)
    init = jnp.full(scaled.shape[:1], -jnp.inf, dtype)
    log_z, _ = jax.lax.scan(step, init, (chunks, starts))
    return log_z, (scaled, item_emb, log_z)


def _streaming_logsumexp_bwd(chunk_size, residuals, cotangent):
    scaled, item_emb, log_z = residuals
    chunks, starts = _item_chunks(item_emb, chunk_size)
    num_items = item_emb.shape[0]

    def step(d_scaled, xs):
        chunk, start = xs
        # d log Z_i / d z_ia = pi(a|x_i); padding has logit -inf, hence weight 0.
        weight = jnp.exp(_chunk_logits(scaled, chunk, start, num_items) - log_z[:, None]) * cotangent[:, None]
        return d_scaled + weight @ chunk, weight.T @ scaled

    d_scaled, d_chunks = jax.lax.scan(step, jnp.zeros_like(scaled), (chunks, starts))
    d_items = d_chunks.reshape(-1, item_emb.shape[1])[:num_items]
    return d_scaled.astype(scaled.dtype), d_items.astype(item_emb.dtype)


_streaming_logsumexp.defvjp(_streaming_logsumexp_fwd, _streaming_logsumexp_bwd)


# --------------------------------------------------------------------------- sampled softmax


def uniform_log_q(num_items: int) -> jax.Array:
    """``[A]`` log-probabilities ``-log A`` of the uniform proposal over ``num_items`` items."""
    num_items = check_positive_int("num_items", num_items)
    return jnp.full((num_items,), -jnp.log(float(num_items)))


def popularity_log_q(counts: ArrayLike, *, smoothing: float = 1.0, power: float = 1.0) -> jax.Array:
    """``[A]`` log-probabilities of a popularity proposal ``q(a) ∝ (count_a + smoothing)^power``.

    ``counts`` are e.g. how often each item was logged (``jnp.bincount(action, length=A)``).
    ``smoothing > 0`` keeps every item reachable, which the sampled softmax needs to be
    consistent (an item with ``q(a) = 0`` is never drawn and drops out of ``Z_hat``);
    ``power < 1`` flattens the distribution (word2vec uses 0.75).

    Args:
      counts: ``[A]`` non-negative counts.
      smoothing: pseudo-count added to every item, ``>= 0``.
      power: exponent ``> 0`` applied to the smoothed counts.

    Returns:
      ``[A]`` normalised log-probabilities (``logsumexp = 0``).

    Example:
      >>> import jax.numpy as jnp
      >>> jnp.exp(popularity_log_q(jnp.array([3, 1, 0]), smoothing=0.0)).round(2).tolist()
      [0.75, 0.25, 0.0]
    """
    counts = jnp.asarray(counts)
    if counts.ndim != 1 or counts.shape[0] < 1:
        raise InputError("counts", f"expected shape [A] with A >= 1, got {counts.shape}")
    check_nonnegative("smoothing", smoothing)
    check_positive("power", power)
    log_weight = power * jnp.log(counts.astype(jnp.result_type(float)) + smoothing)
    return log_weight - jax.nn.logsumexp(log_weight)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ItemProposal:
    """A sampling proposal ``q`` over ``A`` items, prepared once by :func:`item_proposal`.

    Items are grouped in ``n`` blocks of ``b ~ sqrt(A)``; a draw picks a block by its
    mass, then an item within it, each by a binary search, so a draw costs
    ``O(log A)`` and the float32 cumulative sums stay short (a single cumulative sum over
    a million items would lose the small items' probabilities to rounding).

    Attributes:
      log_q: ``[A]`` normalised ``log q``.
      block_cdf: ``[n]`` cumulative mass of the blocks.
      within_cdf: ``[n, b]`` cumulative mass within each block (padding has mass 0).
    """

    log_q: jax.Array
    block_cdf: jax.Array
    within_cdf: jax.Array


def item_proposal(proposal_log_q: ArrayLike) -> ItemProposal:
    """Prepares ``q`` (``[A]`` log-probabilities or unnormalised log-weights) for :func:`sample_items`."""
    log_q = _check_log_q(proposal_log_q)
    num_items = log_q.shape[0]
    block = max(1, math.isqrt(num_items - 1) + 1)
    blocks = -(-num_items // block)
    q = jnp.pad(jnp.exp(log_q), (0, blocks * block - num_items)).reshape(blocks, block)
    within = jnp.cumsum(q, axis=1)
    return ItemProposal(log_q, jnp.cumsum(within[:, -1]), within)


def sample_items(
    key: jax.Array, proposal_log_q: ArrayLike | ItemProposal, num_samples: int
) -> tuple[jax.Array, jax.Array]:
    """Draws ``M`` item ids i.i.d. (with replacement) from the proposal ``q``.

    Give an :class:`ItemProposal` (from :func:`item_proposal`, built once outside the
    training step) and a draw costs ``O(M log A)``, whatever the catalogue size; given the
    ``[A]`` log-probabilities (or unnormalised log-weights) it is prepared on every call
    (``O(A)``). Zero-probability items are never drawn; nothing of size ``[M, A]`` is built.

    Returns:
      ``ids [M]`` (int32) and ``log_q [M]``: the *normalised* ``log q(ids)``, as
      :func:`sampled_log_prob_from_ids` needs them.
    """
    proposal = proposal_log_q if isinstance(proposal_log_q, ItemProposal) else item_proposal(proposal_log_q)
    num_samples = check_positive_int("num_samples", num_samples)
    key_block, key_item = jax.random.split(key)
    blocks, block = proposal.within_cdf.shape
    u = jax.random.uniform(key_block, (num_samples,)) * proposal.block_cdf[-1]
    chosen = jnp.minimum(jnp.searchsorted(proposal.block_cdf, u, side="right"), blocks - 1)
    rows = proposal.within_cdf[chosen]  # [M, b]
    v = jax.random.uniform(key_item, (num_samples,)) * rows[:, -1]
    offset = jax.vmap(lambda row, x: jnp.searchsorted(row, x, side="right"))(rows, v)
    ids = (chosen * block + jnp.minimum(offset, block - 1)).astype(jnp.int32)
    return ids, proposal.log_q[ids]


def sampled_log_prob(
    key: jax.Array,
    context_emb: ArrayLike,
    item_emb: ArrayLike,
    action: ArrayLike,
    *,
    num_samples: int,
    proposal_log_q: ArrayLike | None = None,
    temperature: float = 1.0,
    correct: bool = True,
) -> jax.Array:
    """Sampled-softmax estimate of ``log pi(a_i|x_i)`` with the log-Q correction.

    .. math::
        \\log \\hat\\pi(a_i|x_i) = z_{i a_i} - \\log\\Big( e^{z_{i a_i}}
          + \\sum_{m:\\, j_m \\ne a_i} e^{z_{i j_m} - \\log(M q(j_m))} \\Big),
        \\quad j_1..j_M \\sim q \\text{ i.i.d., shared by the batch}

    (see the module docstring for why this is consistent, and the sign convention:
    sampled logits *minus* ``log(M q)``, the logged item's logit uncorrected, accidental
    hits dropped). Gathers ``item_emb[ids]`` so the cost is ``[B, M]``; to run the item
    tower only on the sampled items, use :func:`sample_items` and
    :func:`sampled_log_prob_from_ids` (this function is exactly that composition).

    Args:
      key: a ``jax.random`` key for the ``M`` negatives.
      context_emb: ``[B, D]`` context embeddings.
      item_emb: ``[A, D]`` item embeddings.
      action: ``[B]`` int logged actions.
      num_samples: ``M``, a positive integer.
      proposal_log_q: ``[A]`` log-probabilities of the proposal (e.g.
        :func:`popularity_log_q`); ``None`` is uniform.
      temperature: ``tau > 0``.
      correct: apply the log-Q correction; ``False`` gives the biased, uncorrected sampled
        softmax (for comparison only).

    Returns:
      ``[B]`` estimates of ``log pi(a_i|x_i)``, each ``<= 0``.
    """
    context_emb, item_emb = check_embeddings(context_emb, item_emb)
    action = _check_action(action, context_emb.shape[0])
    if proposal_log_q is None:
        proposal_log_q = uniform_log_q(item_emb.shape[0])
    proposal_log_q = jnp.asarray(proposal_log_q)
    if proposal_log_q.shape != item_emb.shape[:1]:
        raise InputError(
            "proposal_log_q",
            f"expected shape {item_emb.shape[:1]} to match item_emb, got {proposal_log_q.shape}",
        )
    ids, log_q_ids = sample_items(key, proposal_log_q, num_samples)
    return sampled_log_prob_from_ids(
        context_emb,
        action,
        item_emb[action],
        ids,
        item_emb[ids],
        log_q_ids,
        temperature=temperature,
        correct=correct,
    )


def sampled_log_prob_from_ids(
    context_emb: ArrayLike,
    action: ArrayLike,
    action_emb: ArrayLike,
    sampled_ids: ArrayLike,
    sampled_emb: ArrayLike,
    sampled_log_q: ArrayLike,
    *,
    temperature: float = 1.0,
    correct: bool = True,
) -> jax.Array:
    """The sampled-softmax estimate of :func:`sampled_log_prob` from embeddings of sampled items only.

    The caller draws ``ids, log_q_ids = sample_items(key, log_q, M)`` and embeds only the
    logged items and the sampled ones (the item tower on ``B + M`` rows, never ``A``).
    ``action`` and ``sampled_ids`` serve only to drop accidental hits (a sample equal to
    the row's logged item), which keeps ``Z_hat`` unbiased.

    Args:
      context_emb: ``[B, D]`` context embeddings ``f(x_i)``.
      action: ``[B]`` int logged actions ``a_i``.
      action_emb: ``[B, D]`` their embeddings ``g(e_{a_i})``.
      sampled_ids: ``[M]`` int ids of the sampled items.
      sampled_emb: ``[M, D]`` their embeddings.
      sampled_log_q: ``[M]`` normalised ``log q`` of the sampled items (as returned by
        :func:`sample_items`).
      temperature: ``tau > 0``.
      correct: subtract ``log(M q(j))`` from the sampled logits (the log-Q correction).

    Returns:
      ``[B]`` estimates of ``log pi(a_i|x_i)``, each ``<= 0``.
    """
    context_emb, action, action_emb, sampled_ids, sampled_emb, sampled_log_q = _check_sampled(
        context_emb, action, action_emb, sampled_ids, sampled_emb, sampled_log_q
    )
    check_temperature(temperature)
    scaled = context_emb / temperature
    positive = jnp.sum(scaled * action_emb, axis=-1)  # [B], uncorrected
    negatives = scaled @ sampled_emb.T  # [B, M]
    if correct:
        negatives = negatives - (jnp.log(float(sampled_emb.shape[0])) + sampled_log_q)
    negatives = jnp.where(sampled_ids[None, :] == action[:, None], -jnp.inf, negatives)
    log_z = jax.nn.logsumexp(jnp.concatenate([positive[:, None], negatives], axis=-1), axis=-1)
    return positive - log_z


def sampled_log_softmax_from_ids(
    context_emb: ArrayLike,
    action: ArrayLike,
    action_emb: ArrayLike,
    sampled_ids: ArrayLike,
    sampled_emb: ArrayLike,
    sampled_log_q: ArrayLike,
    *,
    temperature: float = 1.0,
) -> jax.Array:
    """``[B, 1 + M]`` log self-normalised weights ``log p_hat`` of each row's sampled row.

    Row ``i``'s candidates are its logged item ``c_0 = a_i`` and the ``M`` samples
    ``c_m = j_m ~ q``; their log-Q corrected logits (the logged one uncorrected, accidental
    hits ``j_m = a_i`` dropped, as in :func:`sampled_log_prob_from_ids`) are normalised:

    .. math::
        u_{i0} = z_{i a_i}, \\quad u_{im} = z_{i j_m} - \\log(M q(j_m)), \\quad
        \\log \\hat p_{ic} = u_{ic} - \\log \\sum_{c'} e^{u_{ic'}} .

    Column 0 is :func:`sampled_log_prob_from_ids` (``log pi_hat(a_i|x_i)``); ``p_hat_i`` is
    the importance-sampling approximation of ``pi(.|x_i)`` that :func:`sampled_entropy`
    uses, so ``sum_c p_hat_ic f(c)`` estimates ``E_pi[f]`` (self-normalised, bias ``O(1/M)``)
    and ``sum_c sg(p_hat_ic) f(c) log p_hat_ic`` has the gradient
    ``sum_c p_hat_ic (f(c) - sum_c' p_hat_ic' f(c')) grad z_ic``, the self-normalised
    estimate of ``grad sum_a pi(a|x_i) f(a)``: DR's direct term on ``B + M`` items
    (:class:`towerjax.objectives.DR` with ``TrainConfig.sampled_softmax``). An accidental
    hit's entry is the most negative finite float (``p_hat = 0`` exactly, and ``0 * log p_hat``
    is 0, not NaN). Shapes as in :func:`sampled_log_prob_from_ids`.
    """
    context_emb, action, action_emb, sampled_ids, sampled_emb, sampled_log_q = _check_sampled(
        context_emb, action, action_emb, sampled_ids, sampled_emb, sampled_log_q
    )
    check_temperature(temperature)
    scaled = context_emb / temperature
    positive = jnp.sum(scaled * action_emb, axis=-1)[:, None]  # [B, 1], uncorrected
    negatives = scaled @ sampled_emb.T - (jnp.log(float(sampled_emb.shape[0])) + sampled_log_q)
    hit = sampled_ids[None, :] == action[:, None]
    corrected = jnp.concatenate([positive, jnp.where(hit, -jnp.inf, negatives)], axis=-1)
    log_p = corrected - jax.nn.logsumexp(corrected, axis=-1, keepdims=True)
    dropped = jnp.concatenate([jnp.zeros_like(positive, bool), hit], axis=-1)
    return jnp.where(dropped, jnp.finfo(log_p.dtype).min, log_p)


def _check_sampled(context_emb, action, action_emb, sampled_ids, sampled_emb, sampled_log_q) -> tuple:
    """The checked arrays of :func:`sampled_log_prob_from_ids` (``InputError`` naming the bad one)."""
    context_emb, action_emb = jnp.asarray(context_emb), jnp.asarray(action_emb)
    sampled_emb, sampled_log_q = jnp.asarray(sampled_emb), jnp.asarray(sampled_log_q)
    sampled_ids = jnp.asarray(sampled_ids)
    if context_emb.ndim != 2:
        raise InputError("context_emb", f"expected shape [B, D], got {context_emb.shape}")
    batch, dim = context_emb.shape
    action = _check_action(action, batch)
    if action_emb.shape != (batch, dim):
        raise InputError(
            "action_emb", f"expected shape {(batch, dim)} to match context_emb, got {action_emb.shape}"
        )
    if sampled_emb.ndim != 2 or sampled_emb.shape[1] != dim or sampled_emb.shape[0] < 1:
        raise InputError("sampled_emb", f"expected shape [M, {dim}] with M >= 1, got {sampled_emb.shape}")
    num_samples = sampled_emb.shape[0]
    if sampled_ids.shape != (num_samples,) or not jnp.issubdtype(sampled_ids.dtype, jnp.integer):
        raise InputError(
            "sampled_ids",
            f"expected integer ids of shape ({num_samples},), got {sampled_ids.dtype} {sampled_ids.shape}",
        )
    if sampled_log_q.shape != (num_samples,):
        raise InputError("sampled_log_q", f"expected shape ({num_samples},), got {sampled_log_q.shape}")
    return context_emb, action, action_emb, sampled_ids, sampled_emb, sampled_log_q


def sampled_entropy(
    context_emb: jax.Array,
    action: jax.Array,
    action_emb: jax.Array,
    sampled_ids: jax.Array,
    sampled_emb: jax.Array,
    sampled_log_q: jax.Array,
    *,
    temperature: float = 1.0,
) -> jax.Array:
    """``[B]`` estimates of the policy's entropy ``H(pi(.|x_i))`` from the sampled items.

    The logged item (exact term) and the samples (corrected logits, accidental hits
    dropped) define the self-normalised distribution ``p_hat`` of
    :func:`sampled_log_prob_from_ids`, an importance-sampling approximation of ``pi``; the
    estimate is ``-sum_c p_hat_c log pi_hat(c|x_i)`` with ``log pi_hat(c) = z_ic - log Z_hat``,
    consistent as ``M`` grows (bias ``O(1/M)``). Gradients flow through both factors, as
    in :func:`towerjax.losses.entropy_bonus`. Shapes as in :func:`sampled_log_prob_from_ids`.
    """
    scaled = context_emb / temperature
    positive = jnp.sum(scaled * action_emb, axis=-1)[:, None]  # [B, 1]
    logits = jnp.concatenate([positive, scaled @ sampled_emb.T], axis=-1)  # [B, 1 + M] uncorrected
    correction = jnp.concatenate([jnp.zeros(1), jnp.log(float(sampled_ids.shape[0])) + sampled_log_q])
    hit = jnp.concatenate(
        [jnp.zeros((action.shape[0], 1), bool), sampled_ids[None, :] == action[:, None]], axis=-1
    )
    corrected = jnp.where(hit, -jnp.inf, logits - correction)
    log_z = jax.nn.logsumexp(corrected, axis=-1, keepdims=True)
    weight = jnp.exp(corrected - log_z)  # p_hat over the logged item and the samples
    return -jnp.sum(jnp.where(hit, 0.0, weight * (logits - log_z)), axis=-1)


# --------------------------------------------------------------------------- loss adapters


def exact_value_sampled_grad(exact_log_prob: ArrayLike, sampled_log_prob: ArrayLike) -> jax.Array:
    """A ``[B]`` log-probability with the exact value and the sampled gradient.

    .. math:: \\ell = \\mathrm{sg}(\\log \\pi) + \\log \\hat\\pi - \\mathrm{sg}(\\log \\hat\\pi)

    Its value is ``exact_log_prob`` (so the importance weight ``sg(exp(l)) / p_i`` that
    the losses compute from it is exact, from the chunked normaliser), its gradient is that
    of ``sampled_log_prob`` (``O(B M D)``). No gradient flows into ``exact_log_prob``; compute
    it from ``stop_gradient`` embeddings (e.g. a periodically refreshed item table).

    Args:
      exact_log_prob: ``[B]`` e.g. :func:`chunked_log_prob` of the logged actions.
      sampled_log_prob: ``[B]`` e.g. :func:`sampled_log_prob` of the same actions.
    """
    exact, sampled = jnp.asarray(exact_log_prob), jnp.asarray(sampled_log_prob)
    if exact.shape != sampled.shape:
        raise InputError(
            "sampled_log_prob", f"expected shape {exact.shape} to match exact_log_prob, got {sampled.shape}"
        )
    return jax.lax.stop_gradient(exact) + sampled - jax.lax.stop_gradient(sampled)


def logged_column(values: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``[B]`` values at the logged actions -> (``[B, 1]`` matrix, ``[B]`` zero actions).

    The losses of :mod:`towerjax.losses` that read ``log_pi`` (or ``scores``) only at the
    logged action (``ips_loss`` with all its weight options, ``topk_ips_loss``,
    ``naive_loss``, ``regression_loss``) then give exactly what they give on the full
    ``[B, A]`` matrix::

        log_pi, action0 = logged_column(log_pi_a)
        ips_loss(log_pi, action0, reward, pscore)

    Not for ``dr_loss`` or the two-stage loss, which need whole rows.

    Example:
      >>> import jax.numpy as jnp
      >>> matrix, column = logged_column(jnp.array([-0.5, -1.0]))
      >>> matrix.shape, column.tolist()
      ((2, 1), [0, 0])
    """
    values = jnp.asarray(values)
    if values.ndim != 1:
        raise InputError("values", f"expected shape [B], got {values.shape}")
    return values[:, None], jnp.zeros(values.shape, jnp.int32)


# --------------------------------------------------------------------------- checks


def _check_action(action: ArrayLike, batch: int) -> jax.Array:
    action = jnp.asarray(action)
    if action.shape != (batch,):
        raise InputError("action", f"expected shape ({batch},) to match context_emb, got {action.shape}")
    if not jnp.issubdtype(action.dtype, jnp.integer):
        raise TypeError(f"action: expected integer indices, got dtype {action.dtype}")
    return action


def _check_log_q(proposal_log_q: ArrayLike) -> jax.Array:
    log_q = jnp.asarray(proposal_log_q)
    if log_q.ndim != 1 or log_q.shape[0] < 1:
        raise InputError("proposal_log_q", f"expected shape [A] with A >= 1, got {log_q.shape}")
    return log_q - jax.nn.logsumexp(log_q)
