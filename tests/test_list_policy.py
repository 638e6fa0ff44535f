"""The Plackett-Luce list policy: probabilities of lists, their positions and prefixes, sampling, marginals."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax import list_policy

B, A, K = 3, 5, 3
SCORES = jax.random.normal(jax.random.key(0), (B, A))
ALL = jnp.asarray(list_policy.all_lists(A, K))  # [60, 3]


def _all_list_probs(scores, k, temperature=1.0):
    """``[B, L]`` probabilities of every list, one list at a time (a plain loop over lists)."""
    lists = list_policy.all_lists(scores.shape[1], k)
    return np.stack(
        [
            np.exp(
                np.asarray(towerjax.list_log_prob(scores, np.tile(row, (scores.shape[0], 1)), temperature))
            )
            for row in lists
        ],
        axis=1,
    )


def test_list_log_prob_matches_a_hand_computation():
    scores = jnp.log(jnp.array([[4.0, 3.0, 2.0, 1.0]]))
    lists = jnp.array([[2, 0, 3]])
    # tau = 1: 2/10 * 4/8 * 1/4; tau = 0.5 squares the weights: 4/30 * 16/26 * 1/10
    np.testing.assert_allclose(np.exp(towerjax.list_log_prob(scores, lists)), [0.2 * 0.5 * 0.25], rtol=1e-6)
    expected = 4 / 30 * 16 / 26 * 1 / 10
    np.testing.assert_allclose(np.exp(towerjax.list_log_prob(scores, lists, 0.5)), [expected], rtol=1e-5)
    np.testing.assert_allclose(
        np.exp(towerjax.position_log_probs(scores, lists)), [[0.2, 0.5, 0.25]], rtol=1e-6
    )
    np.testing.assert_allclose(
        np.exp(towerjax.prefix_log_probs(scores, lists)), [[0.2, 0.1, 0.025]], rtol=1e-6
    )


@pytest.mark.parametrize(("n_items", "k", "temperature"), [(5, 3, 1.0), (4, 4, 0.7), (5, 1, 2.0)])
def test_probabilities_of_all_lists_sum_to_one(n_items, k, temperature):
    scores = jax.random.normal(jax.random.key(n_items + k), (B, n_items))
    probs = _all_list_probs(scores, k, temperature)
    assert probs.shape == (B, math.perm(n_items, k))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_positions_prefixes_and_next_item_distributions_agree():
    lists = ALL[:B] + 0  # three distinct lists
    log_next = towerjax.next_item_log_probs(SCORES, lists)
    assert log_next.shape == (B, K, A)
    np.testing.assert_allclose(jnp.exp(log_next).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(log_next[:, 0], jax.nn.log_softmax(SCORES), rtol=1e-6)
    for k in range(1, K):  # no mass on the items already shown above position k
        shown = np.asarray(jnp.exp(log_next[jnp.arange(B)[:, None], k, lists[:, :k]]))
        assert np.all(shown == 0)
    prefix = towerjax.prefix_log_probs(SCORES, lists)
    np.testing.assert_allclose(prefix[:, -1], towerjax.list_log_prob(SCORES, lists), rtol=1e-6)
    np.testing.assert_allclose(jnp.cumsum(towerjax.position_log_probs(SCORES, lists), 1), prefix, rtol=1e-6)


def test_exact_marginals_are_sums_over_lists_and_monte_carlo_is_near_them():
    exact = towerjax.exact_position_marginals(SCORES, K)
    assert exact.shape == (B, K, A)
    np.testing.assert_allclose(exact.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(exact[:, 0], jax.nn.softmax(SCORES), rtol=1e-5)
    probs = _all_list_probs(SCORES, K)
    by_hand = np.einsum("bl,lka->bka", probs, np.eye(A)[np.asarray(ALL)])
    np.testing.assert_allclose(exact, by_hand, atol=1e-6)
    n_samples = 20_000
    mc = jax.jit(towerjax.position_marginals, static_argnums=(2, 3))(jax.random.key(1), SCORES, K, n_samples)
    # 4.5 standard errors of a proportion, sqrt(P (1 - P) / S) <= 0.0035
    np.testing.assert_allclose(mc, exact, atol=4.5 * math.sqrt(0.25 / n_samples))


def test_sampled_lists_are_distinct_and_low_temperature_gives_the_top_k():
    lists = towerjax.sample_lists(jax.random.key(2), jnp.tile(SCORES, (100, 1)), K)
    assert lists.shape == (300, K)
    assert all(len(set(row)) == K for row in np.asarray(lists).tolist())
    top = towerjax.top_k_lists(SCORES, K)
    np.testing.assert_array_equal(top, np.argsort(-np.asarray(SCORES), axis=1)[:, :K])
    np.testing.assert_array_equal(towerjax.sample_lists(jax.random.key(3), SCORES, K, 1e-4), top)


def test_under_jit_and_vmap_as_in_a_loop():
    lists = jnp.stack([ALL[:B], ALL[7 : 7 + B]])  # [2, B, K]: two batches of lists
    scores = jnp.stack([SCORES, 2 * SCORES])
    eager = [towerjax.list_log_prob(s, lst, 0.8) for s, lst in zip(scores, lists, strict=True)]
    batched = jax.vmap(jax.jit(towerjax.list_log_prob), in_axes=(0, 0, None))(scores, lists, 0.8)
    np.testing.assert_allclose(batched, np.stack(eager), rtol=1e-6)
    key = jax.random.key(4)
    sampled = jax.jit(towerjax.sample_lists, static_argnums=2)(key, SCORES, K)
    np.testing.assert_array_equal(sampled, towerjax.sample_lists(key, SCORES, K))
    np.testing.assert_array_equal(
        jax.jit(towerjax.top_k_lists, static_argnums=1)(SCORES, K), towerjax.top_k_lists(SCORES, K)
    )


def test_gradient_of_a_list_log_prob_is_finite_and_shift_invariant():
    lists = ALL[:B] + 0
    grad = jax.grad(lambda s: towerjax.list_log_prob(s, lists).sum())(SCORES)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(
        grad.sum(1), 0.0, atol=1e-6
    )  # adding a constant to a row's scores changes nothing
    # d log pi / d s(a_1) at position 1 alone is 1 - softmax(a_1); the later positions add their own terms
    first = jax.grad(lambda s: towerjax.position_log_probs(s, lists)[:, 0].sum())(SCORES)
    np.testing.assert_allclose(first, jax.nn.one_hot(lists[:, 0], A) - jax.nn.softmax(SCORES), atol=1e-6)


def test_errors_name_the_argument():
    with pytest.raises(towerjax.InputError, match=r"^k: "):
        towerjax.sample_lists(jax.random.key(0), SCORES, A + 1)
    with pytest.raises(towerjax.InputError, match=r"^scores: "):
        towerjax.top_k_lists(SCORES[0], 2)
    with pytest.raises(towerjax.InputError, match=r"^lists: "):
        towerjax.list_log_prob(SCORES, ALL[:2])
    with pytest.raises(towerjax.InputError, match=r"^lists: .*integer"):
        towerjax.list_log_prob(SCORES, jnp.zeros((B, 2)))
    with pytest.raises(towerjax.InputError, match=r"^temperature: "):
        towerjax.list_log_prob(SCORES, ALL[:B], 0.0)
    with pytest.raises(towerjax.InputError, match=r"^n_samples: "):
        towerjax.position_marginals(jax.random.key(0), SCORES, 2, 0)
    with pytest.raises(towerjax.InputError, match=r"^k: expected at most"):
        list_policy.all_lists(20, 6)
