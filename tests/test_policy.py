"""The softmax policy: slate inclusion probabilities, slate sampling and slate value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax

B, A = 8, 5


def _batch(seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    logits = jax.random.normal(k[0], (B, A))
    action = jax.random.randint(k[1], (B,), 0, A)
    reward = jax.random.bernoulli(k[2], 0.6, (B,)).astype(jnp.float32)
    pscore = jax.random.uniform(k[3], (B,), minval=0.05, maxval=1.0)
    return logits, action, reward, pscore


def test_slate_inclusion_matches_sampled_slates():
    log_pi = jax.nn.log_softmax(jnp.array([[2.0, 1.0, 0.0, -1.0]]))
    items, unique = jax.jit(towerjax.sample_slate, static_argnums=2)(
        jax.random.key(0), jnp.repeat(log_pi, 20000, 0), 3
    )
    assert items.shape == (20000, 3) and unique[:, 0].all()
    included = np.zeros((20000, 4))
    for j in range(3):
        included[np.arange(20000), np.asarray(items[:, j])] = 1
    np.testing.assert_allclose(included.mean(0), towerjax.slate_inclusion(log_pi, 3)[0], atol=0.015)
    # unique marks exactly the first occurrence of each item in a slate
    distinct = np.array([len(set(row)) for row in np.asarray(items)])
    np.testing.assert_array_equal(np.asarray(unique).sum(1), distinct)


def test_slate_value_with_k_1_is_the_policy_value():
    log_pi = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (6, 4)))
    q = jax.random.uniform(jax.random.key(2), (6, 4))
    np.testing.assert_allclose(
        towerjax.slate_value(log_pi, q, 1), towerjax.policy_value(log_pi, q), rtol=1e-6
    )
    assert float(towerjax.slate_value(log_pi, q, 3)) > float(towerjax.policy_value(log_pi, q))


def test_slate_inclusion_is_exact_and_its_gradient_finite_from_tiny_pi_to_pi_1():
    log_pi = jnp.log(jnp.array([[1.0, 0.0, 0.0], [1e-9, 0.5, 0.5 - 1e-9], [0.7, 0.2, 0.1]]))
    log_pi = jnp.maximum(log_pi, -1e4)  # log(0) = -inf is not a valid input; -1e4 is its finite stand-in
    alpha = np.asarray(towerjax.slate_inclusion(log_pi, 3))
    pi = np.exp(np.asarray(log_pi, np.float64))
    np.testing.assert_allclose(alpha, 1 - (1 - pi) ** 3, rtol=1e-5, atol=1e-12)
    assert alpha[1, 0] == pytest.approx(3e-9, rel=1e-4)  # no cancellation for small pi
    q = jnp.array([[1.0, 0.0, 0.5]] * 3)
    grad = jax.grad(lambda lp: towerjax.slate_value(lp, q, 3))(log_pi)
    assert np.all(np.isfinite(grad))
