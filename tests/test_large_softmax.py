"""Large action spaces: chunked normaliser, sampled softmax with log-Q correction, top-k retrieval, slates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax.large_softmax import (
    chunked_log_prob,
    chunked_log_softmax,
    chunked_logsumexp,
    exact_value_sampled_grad,
    item_proposal,
    logged_column,
    popularity_log_q,
    sample_items,
    sampled_log_prob,
    sampled_log_prob_from_ids,
    uniform_log_q,
)
from towerjax.retrieval import approx_top_k_items, boltzmann_slate, recall_at_k, top_k_items

B, A, D = 5, 37, 4
TAU = 0.7


def _problem(seed=0, batch=B, num_items=A, dim=D, scale=1.0):
    k = jax.random.split(jax.random.key(seed), 3)
    ctx = scale * jax.random.normal(k[0], (batch, dim))
    items = scale * jax.random.normal(k[1], (num_items, dim))
    action = jax.random.randint(k[2], (batch,), 0, num_items)
    return ctx, items, action


def _exact_log_prob(ctx, items, action, temperature=1.0):
    return jnp.take_along_axis(jax.nn.log_softmax(ctx @ items.T / temperature), action[:, None], 1)[:, 0]


# --------------------------------------------------------------------------- chunked


@functools.partial(jax.jit, static_argnames="chunk_size")
def _chunked_all(ctx, items, action, cotangent, chunk_size):
    def objective(c, e):
        return jnp.sum(cotangent * chunked_log_prob(c, e, action, chunk_size=chunk_size, temperature=TAU))

    return (
        chunked_logsumexp(ctx, items, chunk_size=chunk_size, temperature=TAU),
        chunked_log_prob(ctx, items, action, chunk_size=chunk_size, temperature=TAU),
        chunked_log_softmax(ctx, items, chunk_size=chunk_size, temperature=TAU),
        jax.grad(objective, argnums=(0, 1))(ctx, items),
        jax.grad(lambda c: jnp.sum(cotangent * chunked_logsumexp(c, items, chunk_size=chunk_size)))(ctx),
    )


@pytest.mark.parametrize("chunk_size", [1, 5, 8, 37, 64])
def test_chunked_log_probs_and_gradients_equal_direct_log_softmax(chunk_size):
    ctx, items, action = _problem()
    cotangent = jax.random.normal(jax.random.key(9), (B,))
    lse, log_prob, log_softmax, (d_ctx, d_items), d_lse = _chunked_all(
        ctx, items, action, cotangent, chunk_size
    )
    logits = ctx @ items.T / TAU
    np.testing.assert_allclose(lse, jax.nn.logsumexp(logits, axis=-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_prob, _exact_log_prob(ctx, items, action, TAU), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(log_softmax, towerjax.log_policy(ctx @ items.T, TAU), rtol=1e-5, atol=1e-5)

    def direct(c, e):
        return jnp.sum(cotangent * _exact_log_prob(c, e, action, TAU))

    want_ctx, want_items = jax.grad(direct, argnums=(0, 1))(ctx, items)
    np.testing.assert_allclose(d_ctx, want_ctx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_items, want_items, rtol=1e-5, atol=1e-5)
    want_lse = jax.grad(lambda c: jnp.sum(cotangent * jax.nn.logsumexp(c @ items.T, axis=-1)))(ctx)
    np.testing.assert_allclose(d_lse, want_lse, rtol=1e-5, atol=1e-5)


def test_chunked_log_prob_under_vmap_and_with_large_scores():
    ctx, items, action = _problem(1, scale=6.0)  # logits in the hundreds: no overflow
    stacked = jnp.stack([items, -items])

    @jax.jit
    @jax.vmap
    def both(e):
        chunked = jax.value_and_grad(lambda e: jnp.sum(chunked_log_prob(ctx, e, action, chunk_size=8)))
        direct = jax.value_and_grad(lambda e: jnp.sum(_exact_log_prob(ctx, e, action)))
        return (
            chunked_log_prob(ctx, e, action, chunk_size=8),
            _exact_log_prob(ctx, e, action),
            chunked(e)[1],
            direct(e)[1],
        )

    got, want, grads, want_grads = both(stacked)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads, want_grads, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- sampled softmax

SB, SA, SD = 8, 300, 6


def _sampled_problem():
    ctx, items, action = _problem(2, SB, SA, SD, scale=0.7)
    counts = jax.random.permutation(jax.random.key(3), jnp.floor(2000.0 / (1.0 + jnp.arange(SA))))
    return ctx, items, action, popularity_log_q(counts)  # Zipf-like popularity, q from 0.16 to 5e-4


@functools.partial(jax.jit, static_argnames=("num_samples", "correct"))
def _mean_sampled_grad(keys, ctx, items, action, log_q, num_samples, correct):
    """Average over keys of ``grad_ctx sum_i log pi_hat(a_i|x_i)``, and of ``log pi_hat``."""

    def one(key):
        def objective(c):
            values = sampled_log_prob(
                key, c, items, action, num_samples=num_samples, proposal_log_q=log_q, correct=correct
            )
            return jnp.sum(values), values

        return jax.grad(objective, has_aux=True)(ctx)

    grads, values = jax.vmap(one)(keys)
    return grads.mean(0), values


def test_sampled_softmax_gradient_with_log_q_correction_approaches_full_softmax():
    ctx, items, action, log_q = _sampled_problem()
    exact = jax.grad(lambda c: jnp.sum(_exact_log_prob(c, items, action)))(ctx)
    keys = jax.random.split(jax.random.key(4), 200)

    def error(num_samples, correct=True):
        grad, _ = _mean_sampled_grad(keys, ctx, items, action, log_q, num_samples, correct)
        return float(jnp.linalg.norm(grad - exact) / jnp.linalg.norm(exact))

    errors = [error(m) for m in (10, 100, 1000)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.03, errors
    uncorrected = error(1000, correct=False)  # popularity-biased negatives, however many
    assert uncorrected > 0.15 and uncorrected > 10 * errors[2], (uncorrected, errors)


def test_sampled_log_prob_value_is_consistent_and_at_most_zero():
    ctx, items, action, log_q = _sampled_problem()
    keys = jax.random.split(jax.random.key(5), 200)
    _, values = _mean_sampled_grad(keys, ctx, items, action, log_q, 1000, True)
    assert np.all(np.asarray(values) <= 0)
    np.testing.assert_allclose(values.mean(0), _exact_log_prob(ctx, items, action), atol=0.02)


def test_sampled_log_prob_from_ids_is_the_gathered_composition():
    @jax.jit
    def compare(key, ctx, items, action, log_q):
        ids, log_q_ids = sample_items(key, log_q + 3.0, 50)  # unnormalised log-weights are normalised
        got = sampled_log_prob_from_ids(
            ctx, action, items[action], ids, items[ids], log_q_ids, temperature=TAU
        )
        want = sampled_log_prob(
            key, ctx, items, action, num_samples=50, proposal_log_q=log_q, temperature=TAU
        )
        uniform = sampled_log_prob(key, ctx, items, action, num_samples=50)
        explicit = sampled_log_prob(key, ctx, items, action, num_samples=50, proposal_log_q=uniform_log_q(SA))
        return (log_q_ids, log_q[ids]), (got, want), (uniform, explicit)

    for got, want in compare(jax.random.key(6), *_sampled_problem()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_sampled_log_prob_drops_accidental_hits():
    """A proposal that only ever draws the logged item leaves ``Z_hat = exp(z_a)``: ``log pi_hat = 0``."""
    ctx, items, _, _ = _sampled_problem()
    action = jnp.full((SB,), 7)
    log_q = jnp.where(jnp.arange(SA) == 7, 0.0, -jnp.inf)
    draw = jax.jit(functools.partial(sampled_log_prob, num_samples=20))
    values = draw(jax.random.key(0), ctx, items, action, proposal_log_q=log_q)
    np.testing.assert_allclose(values, 0.0, atol=1e-6)


def test_sample_items_follows_the_proposal_and_popularity_log_q_normalises():
    counts = jnp.array([6, 3, 0, 1])
    log_q = popularity_log_q(counts, smoothing=0.0)
    np.testing.assert_allclose(jnp.exp(log_q), [0.6, 0.3, 0.0, 0.1], atol=1e-6)
    smoothed = popularity_log_q(counts, smoothing=1.0, power=0.5)
    np.testing.assert_allclose(jax.nn.logsumexp(smoothed), 0.0, atol=1e-6)
    want = np.sqrt([7.0, 4.0, 1.0, 2.0])
    np.testing.assert_allclose(jnp.exp(smoothed), want / want.sum(), rtol=1e-5)
    ids, _ = sample_items(jax.random.key(0), log_q, 20000)
    freq = np.bincount(np.asarray(ids), minlength=4) / 20000
    assert freq[2] == 0
    np.testing.assert_allclose(freq, [0.6, 0.3, 0.0, 0.1], atol=0.015)
    np.testing.assert_allclose(uniform_log_q(4), np.log(0.25), rtol=1e-6)


def test_a_prepared_proposal_draws_items_with_their_probabilities():
    weights = np.where(np.arange(1000) % 7 == 3, 0.0, 1.0 / np.arange(1, 1001))  # Zipf, some zeros
    proposal = item_proposal(jnp.log(weights))  # 32 blocks of 32, the last one padded
    assert proposal.within_cdf.shape == (32, 32)
    ids, log_q_ids = jax.jit(sample_items, static_argnums=2)(jax.random.key(1), proposal, 400_000)
    ids = np.asarray(ids)
    q = weights / weights.sum()
    np.testing.assert_allclose(np.exp(log_q_ids), q[ids], rtol=1e-5)
    assert not np.any(weights[ids] == 0) and ids.max() < 1000
    freq = np.bincount(ids, minlength=1000) / ids.size
    head = slice(0, 20)  # items with enough mass for a tight check, then the tail in groups
    np.testing.assert_allclose(freq[head], q[head], rtol=0.05)
    np.testing.assert_allclose(freq[500:].sum(), q[500:].sum(), rtol=0.02)


def test_a_million_item_uniform_proposal_keeps_every_region_of_the_catalogue():
    """A single float32 cumulative sum would misplace the draws of late items."""
    proposal = item_proposal(uniform_log_q(1_000_000))
    ids, _ = sample_items(jax.random.key(2), proposal, 200_000)
    deciles = np.bincount(np.asarray(ids) // 100_000, minlength=10) / 200_000
    np.testing.assert_allclose(deciles, 0.1, atol=0.004)


# --------------------------------------------------------------------------- losses


LOSSES = ("ips", "snips", "topk", "naive", "regression")


def _loss(name, log_pi, action, reward, pscore):
    if name == "ips":
        return towerjax.ips_loss(log_pi, action, reward, pscore, cap=3.0, variance_penalty=0.1)
    if name == "snips":
        return towerjax.ips_loss(log_pi, action, reward, pscore, self_normalize=True)
    if name == "topk":
        return towerjax.topk_ips_loss(log_pi, action, reward, pscore, k=3)
    if name == "naive":
        return towerjax.naive_loss(log_pi, action, reward)
    return towerjax.regression_loss(log_pi, action, reward)  # log_pi holds scores here


@jax.jit
def _full_and_column_losses(ctx, items, action, reward, pscore):
    """Each loss on the full ``[B, A]`` matrix and on :func:`logged_column`, with its gradient."""

    def full(c, name):
        scores = c @ items.T
        matrix = scores if name == "regression" else towerjax.log_policy(scores, TAU)
        return _loss(name, matrix, action, reward, pscore)

    def column(c, name):
        if name == "regression":
            values = jnp.sum(c * items[action], axis=-1)
        else:
            values = chunked_log_prob(c, items, action, chunk_size=8, temperature=TAU)
        return _loss(name, *logged_column(values), reward, pscore)

    return {
        name: (jax.value_and_grad(full)(ctx, name), jax.value_and_grad(column)(ctx, name)) for name in LOSSES
    }


def test_logged_column_gives_the_losses_their_full_matrix_values_and_gradients():
    ctx, items, action = _problem(7)
    k = jax.random.split(jax.random.key(8), 2)
    reward = jax.random.bernoulli(k[0], 0.6, (B,)).astype(jnp.float32)
    pscore = jax.random.uniform(k[1], (B,), minval=0.05, maxval=0.5)
    results = _full_and_column_losses(ctx, items, action, reward, pscore)
    for name, ((want, want_grad), (got, got_grad)) in results.items():
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-4, atol=1e-6, err_msg=name)


def test_exact_value_sampled_grad_keeps_the_weight_exact_and_the_gradient_sampled():
    ctx, items, action, log_q = _sampled_problem()
    k = jax.random.split(jax.random.key(10), 3)
    reward = jax.random.bernoulli(k[0], 0.6, (SB,)).astype(jnp.float32)
    pscore = jax.random.uniform(k[1], (SB,), minval=0.05, maxval=0.5)
    exact = _exact_log_prob(ctx, items, action)
    w = jnp.exp(exact) / pscore  # exact weights, not exp(sampled) / pscore

    def sampled(c):
        return sampled_log_prob(k[2], c, items, action, num_samples=30, proposal_log_q=log_q)

    def loss(c):
        exact = chunked_log_prob(jax.lax.stop_gradient(c), items, action, chunk_size=64)
        log_pi, zero = logged_column(exact_value_sampled_grad(exact, sampled(c)))
        return towerjax.ips_loss(log_pi, zero, reward, pscore)

    @jax.jit
    def both(c):
        return jax.value_and_grad(loss)(c), jax.grad(lambda c: -jnp.mean(w * reward * sampled(c)))(c)

    (value, grad), want_grad = both(ctx)
    np.testing.assert_allclose(value, -jnp.mean(w * reward * exact), rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- retrieval


@pytest.mark.parametrize(
    ("chunk_size", "context_chunk_size"), [(None, None), (1, None), (5, 2), (8, None), (37, 3), (64, None)]
)
def test_top_k_items_matches_a_full_sort(chunk_size, context_chunk_size):
    ctx, items, _ = _problem(11, batch=7)
    scores, ids = top_k_items(ctx, items, 6, chunk_size=chunk_size, context_chunk_size=context_chunk_size)
    full = np.asarray(ctx @ items.T)
    want = np.argsort(-full, axis=-1)[:, :6]
    assert ids.shape == (7, 6) and ids.dtype == jnp.int32
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_allclose(scores, np.take_along_axis(full, want, -1), rtol=1e-5, atol=1e-6)


def test_top_k_items_breaks_ties_towards_the_smaller_id_in_every_mode():
    items = jnp.array([[1.0], [2.0], [2.0], [0.0], [2.0], [1.0]])
    for chunk_size in (None, 1, 2, 4):
        assert top_k_items(jnp.ones((1, 1)), items, 4, chunk_size=chunk_size)[1].tolist() == [[1, 2, 4, 0]]


def test_approx_top_k_recall_is_measured_against_exact():
    ctx, items, _ = _problem(12, batch=16, num_items=2000, dim=8)

    @jax.jit
    def recalls(ctx, items):
        _, exact = top_k_items(ctx, items, 10, chunk_size=512)
        _, approx = approx_top_k_items(ctx, items, 10, recall_target=0.95)
        assert approx.shape == (16, 10)
        others = (exact[:, ::-1], exact[:, :5], jnp.full_like(exact, 2001))
        return recall_at_k(approx, exact), [recall_at_k(ids, exact) for ids in others]

    approx, others = recalls(ctx, items)
    assert float(approx) >= 0.9
    np.testing.assert_allclose(others, [1.0, 0.5, 0.0])


def test_boltzmann_slate_structure():
    ctx, items, _ = _problem(13, batch=6, num_items=50)

    @jax.jit
    def draw(key, ctx, items):
        return (
            top_k_items(ctx, items, 10)[1],
            boltzmann_slate(key, ctx, items, m=10, k=6, k_deterministic=2, chunk_size=16),
            boltzmann_slate(key, ctx, items, m=10, k=4, k_deterministic=4),
            boltzmann_slate(key, ctx, items, m=50, k=50, k_deterministic=0),
        )

    top, slates, greedy, anywhere = (np.asarray(v) for v in draw(jax.random.key(0), ctx, items))
    assert slates.shape == (6, 6)
    np.testing.assert_array_equal(slates[:, :2], top[:, :2])
    for row, candidates in zip(slates, top, strict=True):
        assert len(set(row.tolist())) == 6
        assert set(row.tolist()) <= set(candidates.tolist())
    np.testing.assert_array_equal(greedy, top[:, :4])
    np.testing.assert_array_equal(np.sort(anywhere, -1), np.tile(np.arange(50), (6, 1)))


def test_boltzmann_slate_draws_follow_the_softmax_without_replacement():
    """Top-1 fixed, then 2 ordered draws from softmax(s / tau) over the next 4 of the top 5."""
    items = jnp.array([[3.0], [0.2], [1.0], [-5.0], [0.6], [0.0]])  # ranks: 0, 2, 4, 1, 5, (3)
    ctx, tau, n = jnp.ones((1, 1)), 0.8, 20000
    draw = jax.jit(
        jax.vmap(
            lambda key: boltzmann_slate(key, ctx, items, m=5, k=3, k_deterministic=1, temperature=tau)[0]
        )
    )
    slates = np.asarray(draw(jax.random.split(jax.random.key(0), n)))
    assert np.all(slates[:, 0] == 0)
    rest = [2, 4, 1, 5]
    p = np.exp(np.asarray(items)[rest, 0] / tau)
    p /= p.sum()
    observed, expected = [], []
    for i, a in enumerate(rest):
        for j, b in enumerate(rest):
            if i != j:
                observed.append(np.sum((slates[:, 1] == a) & (slates[:, 2] == b)))
                expected.append(n * p[i] * p[j] / (1 - p[i]))
    observed, expected = np.array(observed), np.array(expected)
    assert observed.sum() == n  # every slate's draws are two distinct items of the rest
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert chi2 < 40.0, chi2  # 11 degrees of freedom; the 0.999 quantile is 31.3


# --------------------------------------------------------------------------- errors


def test_bad_arguments_name_the_argument():
    ctx, items, action = _problem()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_logsumexp(ctx, items, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_log_prob(ctx, items, action, chunk_size=2.5)
    with pytest.raises(ValueError, match="temperature"):
        chunked_log_softmax(ctx, items, chunk_size=4, temperature=0.0)
    with pytest.raises(ValueError, match="item_emb"):
        chunked_logsumexp(ctx, items[:, :3], chunk_size=4)
    with pytest.raises(ValueError, match="context_emb"):
        chunked_logsumexp(ctx[0], items, chunk_size=4)
    with pytest.raises(TypeError, match="action"):
        chunked_log_prob(ctx, items, action.astype(jnp.float32), chunk_size=4)
    with pytest.raises(ValueError, match="action"):
        sampled_log_prob(key, ctx, items, action[:2], num_samples=4)
    with pytest.raises(ValueError, match="num_samples"):
        sampled_log_prob(key, ctx, items, action, num_samples=0)
    with pytest.raises(ValueError, match="proposal_log_q"):
        sampled_log_prob(key, ctx, items, action, num_samples=4, proposal_log_q=jnp.zeros(A - 1))
    with pytest.raises(ValueError, match="sampled_log_q"):
        sampled_log_prob_from_ids(ctx, action, items[action], jnp.arange(3), items[:3], jnp.zeros(2))
    with pytest.raises(ValueError, match="sampled_ids"):
        sampled_log_prob_from_ids(ctx, action, items[action], jnp.zeros(3), items[:3], jnp.zeros(3))
    with pytest.raises(ValueError, match="action_emb"):
        sampled_log_prob_from_ids(ctx, action, items[:2], jnp.arange(3), items[:3], jnp.zeros(3))
    with pytest.raises(ValueError, match="counts"):
        popularity_log_q(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="smoothing"):
        popularity_log_q(jnp.ones(3), smoothing=-1.0)
    with pytest.raises(ValueError, match="num_items"):
        uniform_log_q(0)
    with pytest.raises(ValueError, match="sampled_log_prob"):
        exact_value_sampled_grad(jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="values"):
        logged_column(jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="k"):
        top_k_items(ctx, items, 0)
    with pytest.raises(ValueError, match="k: expected at most"):
        top_k_items(ctx, items, A + 1)
    with pytest.raises(ValueError, match="context_chunk_size"):
        top_k_items(ctx, items, 3, context_chunk_size=0)
    with pytest.raises(ValueError, match="recall_target"):
        approx_top_k_items(ctx, items, 3, recall_target=0.0)
    with pytest.raises(ValueError, match="approx_ids"):
        recall_at_k(jnp.zeros((2, 3), jnp.int32), jnp.zeros((3, 3), jnp.int32))
    with pytest.raises(ValueError, match="m: expected at most"):
        boltzmann_slate(key, ctx, items, m=A + 1, k=2, k_deterministic=1)
    with pytest.raises(ValueError, match="k: expected at most m"):
        boltzmann_slate(key, ctx, items, m=3, k=4, k_deterministic=1)
    with pytest.raises(ValueError, match="k_deterministic"):
        boltzmann_slate(key, ctx, items, m=5, k=3, k_deterministic=4)
    with pytest.raises(ValueError, match="k_deterministic"):
        boltzmann_slate(key, ctx, items, m=5, k=3, k_deterministic=-1)
    with pytest.raises(ValueError, match="temperature"):
        boltzmann_slate(key, ctx, items, m=5, k=3, k_deterministic=1, temperature=-1.0)


def test_sampled_softmax_training_gradient_approaches_the_exact_one_as_m_grows():
    """The trainer's sampled objective (IPS and its sampled entropy bonus): averaged over
    draws, its gradient nears the exact-softmax objective's as M grows (bias O(1/M))."""
    import dataclasses

    from towerjax.objectives import IPS
    from towerjax.synthetic import blog_problem, sample_logged_data
    from towerjax.training import Batch, TrainConfig, objective_loss

    problem = blog_problem(jax.random.key(0), n_actions=12, dim=4)
    data = sample_logged_data(jax.random.key(1), problem, 32)
    data = dataclasses.replace(data, pi_b=None, expected_reward=None)
    base = TrainConfig(objective=IPS(entropy=0.05), hidden_sizes=(8,), embedding_size=4)
    params = base.model.init(jax.random.key(2), 4, 4)
    proposal = item_proposal(popularity_log_q(jnp.arange(12.0)))
    batch = Batch(data, jnp.ones(32), proposal=proposal)
    exact = jax.grad(objective_loss, argnums=1)(base, params, batch)

    def error(m):
        config = dataclasses.replace(base, sampled_softmax=m)
        grad = jax.jit(jax.vmap(lambda k: jax.grad(objective_loss, argnums=1)(config, params, batch, k)))
        mean = jax.tree.map(lambda g: jnp.mean(g, 0), grad(jax.random.split(jax.random.key(3), 400)))
        diff = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), mean, exact))
        return float(jnp.sqrt(sum(diff)))

    scale = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(exact))))
    small, large = error(4), error(256)
    assert large < 0.5 * small
    assert large < 0.1 * scale


def test_sampled_softmax_refuses_objectives_that_need_whole_rows():
    from towerjax.checks import InputError
    from towerjax.training import TrainConfig

    with pytest.raises(InputError, match="sampled_softmax"):
        TrainConfig(objective="two-stage", sampled_softmax=64)
    with pytest.raises(InputError, match="proposal"):
        TrainConfig(sampled_softmax=64, proposal="zipf")
