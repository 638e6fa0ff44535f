"""Estimators from the wider literature (SPEC 4): weight transforms, variance penalty, top-K,
slates, and the Chen et al. simulations (SPEC 5.3)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax.losses import topk_ips_loss, transform_weights
from towerjax.studies.chen import chen_simulations, expected_policy, run_chen_study, topk_optimum

B, A = 8, 5


def _batch(seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    logits = jax.random.normal(k[0], (B, A))
    action = jax.random.randint(k[1], (B,), 0, A)
    reward = jax.random.bernoulli(k[2], 0.6, (B,)).astype(jnp.float32)
    pscore = jax.random.uniform(k[3], (B,), minval=0.05, maxval=1.0)
    return logits, action, reward, pscore


def _grad_log_pi_a(logits, action):
    """``[B, B, A]``: gradient of ``log pi(a_i|x_i)`` w.r.t. all logits (one row per event)."""
    return jax.vmap(lambda i: jax.grad(lambda th: jax.nn.log_softmax(th)[i, action[i]])(logits))(
        jnp.arange(B)
    )


def test_topk_gradient_equals_the_topk_corrected_estimator():
    logits, action, reward, pscore = _batch()
    grad = jax.grad(lambda th: topk_ips_loss(jax.nn.log_softmax(th), action, reward, pscore, k=3))(logits)
    pi_a = np.asarray(jax.nn.softmax(logits))[np.arange(B), action]
    coef = pi_a / np.asarray(pscore) * 3 * (1 - pi_a) ** 2 * np.asarray(reward) / B
    estimate = -jnp.tensordot(jnp.asarray(coef), _grad_log_pi_a(logits, action), axes=1)
    np.testing.assert_allclose(grad, estimate, rtol=1e-5, atol=1e-7)


def test_topk_with_k_1_is_exactly_ips():
    logits, action, reward, pscore = _batch(1)
    topk = jax.value_and_grad(lambda th: topk_ips_loss(jax.nn.log_softmax(th), action, reward, pscore, k=1))
    ips = jax.value_and_grad(lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward, pscore))
    chex.assert_trees_all_close(topk(logits), ips(logits), rtol=1e-6)


def test_topk_cap_bounds_the_product_weight():
    logits, action, reward, pscore = _batch(2)
    log_pi = jax.nn.log_softmax(logits)
    log_pi_a = np.asarray(log_pi)[np.arange(B), action]
    pi_a = np.exp(log_pi_a)
    product = pi_a / np.asarray(pscore) * 2 * (1 - pi_a)
    assert product.max() > 0.5  # the cap binds on this batch
    expected = -np.mean(np.minimum(product, 0.5) * np.asarray(reward) * log_pi_a)
    np.testing.assert_allclose(
        topk_ips_loss(log_pi, action, reward, pscore, k=2, cap=0.5), expected, rtol=1e-5
    )


def test_snips_weights_average_one_and_caps_and_clips_hold():
    w = jnp.array([0.01, 0.5, 3.0, 20.0, 2.0, 0.2])
    mask = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
    np.testing.assert_allclose(jnp.mean(transform_weights(w, self_normalize=True)), 1.0, rtol=1e-6)
    snips = transform_weights(w, self_normalize=True, mask=mask)
    np.testing.assert_allclose(jnp.sum(snips * mask) / jnp.sum(mask), 1.0, rtol=1e-6)
    assert float(jnp.max(transform_weights(w, cap=5.0))) == 5.0
    clipped = transform_weights(w, clip=(0.1, 10.0))
    assert float(clipped.min()) == pytest.approx(0.1) and float(clipped.max()) == pytest.approx(10.0)
    # Caps apply before self-normalisation.
    both = transform_weights(w, cap=5.0, self_normalize=True)
    np.testing.assert_allclose(both, jnp.minimum(w, 5.0) / jnp.mean(jnp.minimum(w, 5.0)), rtol=1e-6)


def test_snips_gradient_uses_self_normalised_weights():
    logits, action, reward, pscore = _batch(3)
    grad = jax.grad(
        lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward, pscore, self_normalize=True)
    )(logits)
    pi_a = np.asarray(jax.nn.softmax(logits))[np.arange(B), action]
    w = pi_a / np.asarray(pscore)
    coef = w / w.mean() * np.asarray(reward) / B
    estimate = -jnp.tensordot(jnp.asarray(coef), _grad_log_pi_a(logits, action), axes=1)
    np.testing.assert_allclose(grad, estimate, rtol=1e-5, atol=1e-7)


def test_variance_penalty_adds_lambda_sqrt_var_over_b_with_gradient_through_pi():
    logits, action, reward, pscore = _batch(4)
    log_pi = jax.nn.log_softmax(logits)
    plain = towerjax.ips_loss(log_pi, action, reward, pscore)
    penalised = towerjax.ips_loss(log_pi, action, reward, pscore, variance_penalty=0.7)
    wr = np.asarray(jnp.exp(log_pi)[jnp.arange(B), action] / pscore * reward)
    np.testing.assert_allclose(penalised - plain, 0.7 * np.sqrt(wr.var() / B), rtol=1e-4)

    def penalty_only(th):
        lp = jax.nn.log_softmax(th)
        return towerjax.ips_loss(lp, action, reward, pscore, variance_penalty=1.0) - towerjax.ips_loss(
            lp, action, reward, pscore
        )

    assert float(jnp.abs(jax.grad(penalty_only)(logits)).sum()) > 1e-3  # no stop_gradient on pi here
    dr_plain = towerjax.dr_loss(log_pi, action, reward, pscore, jnp.zeros((B, A)))
    dr_penalised = towerjax.dr_loss(log_pi, action, reward, pscore, jnp.zeros((B, A)), variance_penalty=0.7)
    np.testing.assert_allclose(dr_penalised - dr_plain, 0.7 * np.sqrt(wr.var() / B), rtol=1e-4)


@pytest.mark.parametrize(
    "options, argument",
    [
        (dict(cap=0.0), "cap"),
        (dict(cap=2.0, clip=(0.1, 3.0)), "cap"),
        (dict(clip=(2.0, 1.0)), "clip"),
        (dict(clip=(-1.0, 1.0)), "clip"),
        (dict(clip=3.0), "clip"),
    ],
)
def test_bad_weight_options_name_the_argument(options, argument):
    logits, action, reward, pscore = _batch()
    with pytest.raises(ValueError, match=argument):
        towerjax.ips_loss(jax.nn.log_softmax(logits), action, reward, pscore, **options)


def test_topk_rejects_bad_k():
    logits, action, reward, pscore = _batch()
    with pytest.raises(ValueError, match="k"):
        topk_ips_loss(jax.nn.log_softmax(logits), action, reward, pscore, k=0)


# --- slates ---------------------------------------------------------------------------------


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


# --- Chen et al. simulations ------------------------------------------------------------------


def test_topk_optimum_is_the_stationary_point():
    pi = topk_optimum(np.array([10.0, 9.0] + [1.0] * 8), 2)
    np.testing.assert_allclose(pi[:2], [0.5263, 0.4737], atol=1e-3)
    assert pi.sum() == pytest.approx(1.0) and np.all(pi[2:] == 0)


def test_chen_simulations_reach_their_published_outcomes():
    rows = {row["simulation"]: row for row in run_chen_study(seed=0, steps=3000)}
    naive = np.array(rows["a/naive"]["learned_pi"])
    r, beta = np.arange(1, 11), (11 - np.arange(1, 11)) / 55
    assert np.abs(naive - r * beta / np.sum(r * beta)).sum() < 0.05
    assert rows["a/ips"]["learned_pi"][9] > 0.9
    assert rows["b/ips"]["learned_pi"][0] > 0.9
    assert rows["b/topk"]["learned_pi"][1] >= 0.2
    for sim in chen_simulations():
        np.testing.assert_allclose(rows[sim.name]["expected_pi"], expected_policy(sim))
