"""Two-stage IPS (Ma et al. 2020) and the two-stage policy."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax.two_stage import candidate_sets, two_stage_ips_loss, two_stage_policy, two_stage_value

B, A = 3, 4
THETA = jnp.array([[0.5, -0.3, 0.2, 0.0], [0.1, 0.4, -0.6, 0.3], [-0.2, 0.0, 0.7, -0.4]])
ACTION = jnp.array([0, 2, 3])
REWARD = jnp.array([1.0, 1.0, 0.5])
PSCORE = jnp.array([0.25, 0.4, 0.2])
RANKER = jnp.array([[1.0, 0.0, 2.0, -1.0], [0.5, 1.5, 0.0, 0.2], [0.0, -0.5, 1.0, 2.0]])


def test_with_a_ranker_that_ranks_the_logged_item_first_and_alpha_0_it_is_ips():
    ranker = 1e4 * jax.nn.one_hot(ACTION, A)
    two_stage = jax.value_and_grad(
        lambda th: two_stage_ips_loss(
            jax.random.key(0),
            jax.nn.log_softmax(th),
            ACTION,
            REWARD,
            PSCORE,
            ranker,
            k=3,
            num_samples=8,
            alpha=0.0,
        )
    )
    ips = jax.value_and_grad(lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), ACTION, REWARD, PSCORE))
    chex.assert_trees_all_close(two_stage(THETA), ips(THETA), rtol=1e-5)


def test_k_1_is_ips_for_any_ranker():
    loss = two_stage_ips_loss(
        jax.random.key(1), jax.nn.log_softmax(THETA), ACTION, REWARD, PSCORE, RANKER, k=1, num_samples=4
    )
    np.testing.assert_allclose(
        loss, towerjax.ips_loss(jax.nn.log_softmax(THETA), ACTION, REWARD, PSCORE), rtol=1e-6
    )


def test_self_normalised_two_stage_with_a_first_ranked_logged_item_is_the_snips_gradient():
    ranker = 1e4 * jax.nn.one_hot(ACTION, A)

    def grads(reward):
        two_stage = jax.grad(
            lambda th: two_stage_ips_loss(
                jax.random.key(0), jax.nn.log_softmax(th), ACTION, reward, PSCORE, ranker,
                k=3, num_samples=8, alpha=0.0, self_normalize=True,
            )
        )  # fmt: skip
        snips = jax.grad(
            lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), ACTION, reward, PSCORE, self_normalize=True)
        )
        return two_stage(THETA), snips(THETA)

    two_stage, snips = grads(REWARD)
    np.testing.assert_allclose(two_stage, snips, rtol=1e-5, atol=1e-7)
    # The baseline makes it ignore a constant added to every reward.
    np.testing.assert_allclose(grads(REWARD + 2.0)[0], two_stage, rtol=1e-4, atol=1e-6)


def _enumerated_surrogate(theta, k, alpha):
    """The estimator's expectation over candidate sets, by enumerating every (k-1)-tuple."""
    log_p = jax.nn.log_softmax(theta)
    p = jax.lax.stop_gradient(jnp.exp(log_p))
    total = jnp.zeros(B)
    for tup in itertools.product(range(A), repeat=k - 1):
        items = jnp.array(tup)
        prob = jnp.prod(p[:, items], axis=-1)  # [B]
        first = np.array([tup[j] not in tup[:j] for j in range(k - 1)])
        member = jnp.asarray(first)[None, :] & (items[None, :] != ACTION[:, None])  # [B, k-1]
        logits = jnp.concatenate(
            [RANKER[jnp.arange(B), ACTION][:, None], jnp.where(member, RANKER[:, items], -jnp.inf)], -1
        )
        q_rank = jnp.exp(jax.nn.log_softmax(logits, -1)[:, 0])
        others = jnp.sum(jnp.where(member, log_p[:, items], 0.0), -1)
        total = total + prob * q_rank * (log_p[jnp.arange(B), ACTION] + alpha * others)
    w = towerjax.importance_weight(log_p[jnp.arange(B), ACTION], PSCORE)
    return -jnp.mean(w * REWARD * total)


def test_monte_carlo_gradient_matches_the_enumerated_expectation():
    k, alpha = 3, 0.5
    exact = jax.grad(_enumerated_surrogate)(THETA, k, alpha)
    mc = jax.jit(
        jax.grad(
            lambda th: two_stage_ips_loss(
                jax.random.key(2), jax.nn.log_softmax(th), ACTION, REWARD, PSCORE, RANKER,
                k=k, num_samples=40000, alpha=alpha,
            )
        )
    )(THETA)  # fmt: skip
    np.testing.assert_allclose(mc, exact, atol=0.01 * float(jnp.abs(exact).max()))
    assert float(jnp.abs(exact).max()) > 0.05


def _two_stage_value_by_enumeration(theta, q, k):
    """``V(pi_2) = mean_x sum_a pi_2(a|x) q(x, a)`` for the sampled two-stage policy: ``k``
    i.i.d. draws from ``p``, deduplicated, the ranker's softmax among them; every k-tuple."""
    p = jax.nn.softmax(theta)
    pi_2 = jnp.zeros((B, A))
    for tup in itertools.product(range(A), repeat=k):
        candidate = np.zeros(A, bool)
        candidate[list(tup)] = True
        prob = jnp.prod(p[:, jnp.array(tup)], axis=-1)  # [B]
        pick = jax.nn.softmax(jnp.where(candidate, RANKER, -jnp.inf), axis=-1)
        pi_2 = pi_2 + prob[:, None] * pick
    return jnp.mean(jnp.sum(pi_2 * q, -1)), pi_2


def test_unbiased_monte_carlo_gradient_matches_the_exact_gradient_of_the_two_stage_value():
    """Logs with every action once under uniform logging make the IPS expectation over
    actions exact, so only the candidate sets are sampled."""
    k, q = 3, jax.random.uniform(jax.random.key(5), (B, A))
    _, pi_2 = _two_stage_value_by_enumeration(THETA, q, k)
    np.testing.assert_allclose(pi_2.sum(-1), 1.0, rtol=1e-6)
    exact = jax.grad(lambda th: _two_stage_value_by_enumeration(th, q, k)[0])(THETA)
    action = jnp.tile(jnp.arange(A), B)
    pscore = jnp.full(B * A, 1.0 / A)

    def loss(th, unbiased):
        options = {"unbiased": True} if unbiased else {"alpha": 1e-3}
        log_p = jax.nn.log_softmax(jnp.repeat(th, A, axis=0))
        return two_stage_ips_loss(
            jax.random.key(6), log_p, action, q.reshape(-1), pscore, jnp.repeat(RANKER, A, axis=0),
            k=k, num_samples=40000, **options,
        )  # fmt: skip

    mc = -jax.jit(jax.grad(loss), static_argnums=1)(THETA, True)
    scale = float(jnp.abs(exact).max())
    assert scale > 0.02
    np.testing.assert_allclose(mc, exact, atol=0.05 * scale)  # MC error ~0.02 * scale
    ma = -jax.jit(jax.grad(loss), static_argnums=1)(THETA, False)
    assert float(jnp.abs(ma - exact).max()) > 0.3 * scale  # Ma et al.'s surrogate is biased


def test_candidate_sets_follow_p():
    p = jnp.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.05, 0.1, 0.8]])
    items, _ = candidate_sets(jax.random.key(0), jnp.log(p), jnp.array([0, 3]), k=4, num_samples=4000)
    assert items.shape == (2, 4000, 3)
    for row in range(2):
        freq = np.bincount(np.asarray(items[row]).ravel(), minlength=4) / items[row].size
        np.testing.assert_allclose(freq, p[row], atol=0.01)


def test_candidate_sets_hold_the_logged_item_and_unique_others():
    items, member = candidate_sets(jax.random.key(3), jax.nn.log_softmax(THETA), ACTION, k=4, num_samples=50)
    items, member = np.asarray(items), np.asarray(member)
    for i in range(B):
        for t in range(50):
            chosen = items[i, t][member[i, t]]
            assert len(set(chosen)) == len(chosen) and ACTION[i] not in chosen
            assert set(chosen) | {int(ACTION[i])} == set(items[i, t]) | {int(ACTION[i])}


def test_two_stage_policy_picks_among_the_generators_top_k():
    log_p = jax.nn.log_softmax(THETA)
    pi = two_stage_policy(log_p, RANKER, k=2)
    np.testing.assert_allclose(pi.sum(-1), 1.0, rtol=1e-6)
    top2 = np.argsort(-np.asarray(log_p), axis=-1)[:, :2]
    for i in range(B):
        outside = np.setdiff1d(np.arange(A), top2[i])
        np.testing.assert_array_equal(np.asarray(pi)[i, outside], 0.0)
    np.testing.assert_allclose(two_stage_policy(log_p, RANKER, k=A), jax.nn.softmax(RANKER, -1), rtol=1e-6)
    q = jax.random.uniform(jax.random.key(4), (B, A))
    np.testing.assert_allclose(
        two_stage_value(log_p, RANKER, q, k=2), jnp.mean(jnp.sum(pi * q, -1)), rtol=1e-6
    )


def test_bad_arguments_name_themselves():
    log_p = jax.nn.log_softmax(THETA)
    with pytest.raises(ValueError, match="ranker_scores"):
        two_stage_ips_loss(
            jax.random.key(0), log_p, ACTION, REWARD, PSCORE, RANKER[:, :2], k=2, num_samples=2
        )
    with pytest.raises(ValueError, match="num_samples"):
        two_stage_ips_loss(jax.random.key(0), log_p, ACTION, REWARD, PSCORE, RANKER, k=2, num_samples=0)
    with pytest.raises(ValueError, match="k"):
        two_stage_policy(log_p, RANKER, k=A + 1)
    with pytest.raises(ValueError, match="alpha"):
        two_stage_ips_loss(
            jax.random.key(0), log_p, ACTION, REWARD, PSCORE, RANKER, k=2, num_samples=2, alpha=0.1,
            unbiased=True,
        )  # fmt: skip
