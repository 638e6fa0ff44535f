"""The surrogate losses: gradient identities, unbiasedness, jit/vmap agreement, input checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax import TwoTower
from towerjax.losses import topk_ips_loss, transform_weights

MODEL = TwoTower(hidden_sizes=(8,), embedding_size=4)
B, A, DX, DA = 6, 5, 3, 4


def _batch(seed=0):
    k = jax.random.split(jax.random.key(seed), 6)
    params = MODEL.init(k[0], DX, DA)
    x = jax.random.normal(k[1], (B, DX))
    items = jax.random.normal(k[2], (A, DA))
    action = jax.random.randint(k[3], (B,), 0, A)
    reward = jax.random.bernoulli(k[4], 0.6, (B,)).astype(jnp.float32)
    pscore = jax.random.uniform(k[5], (B,), minval=0.1, maxval=1.0)
    q_hat = jax.random.uniform(k[5], (B, A))
    return params, x, items, action, reward, pscore, q_hat


def _log_pi(params, x, items):
    return towerjax.log_policy(MODEL.scores(params, x, items), 1.0)


def _per_example_grad_log_pi(params, x, items):
    """``[B, A]`` pytree of ``grad log pi(a|x_i)`` for every example and action."""
    return jax.vmap(jax.jacrev(lambda p, xi: _log_pi(p, xi[None], items)[0]), in_axes=(None, 0))(params, x)


def _combine(jac, coef):
    """``sum_{i,a} coef[i, a] * jac[i, a]`` over a per-example, per-action jacobian pytree."""
    return jax.tree.map(lambda j: jnp.tensordot(coef, j, axes=([0, 1], [0, 1])), jac)


def test_ips_gradient_equals_ips_policy_gradient_estimate():
    params, x, items, action, reward, pscore, _ = _batch()
    grad = jax.grad(lambda p: towerjax.ips_loss(_log_pi(p, x, items), action, reward, pscore))(params)
    pi = np.exp(np.asarray(_log_pi(params, x, items)))
    w = pi[np.arange(B), action] / np.asarray(pscore)
    coef = np.zeros((B, A))
    coef[np.arange(B), action] = w * np.asarray(reward) / B
    estimate = _combine(_per_example_grad_log_pi(params, x, items), jnp.asarray(coef))
    chex.assert_trees_all_close(grad, jax.tree.map(jnp.negative, estimate), atol=1e-5, rtol=1e-4)


def test_dr_gradient_equals_dr_policy_gradient_estimate():
    params, x, items, action, reward, pscore, q_hat = _batch(1)
    grad = jax.grad(lambda p: towerjax.dr_loss(_log_pi(p, x, items), action, reward, pscore, q_hat))(params)
    pi = np.exp(np.asarray(_log_pi(params, x, items)))
    q = np.asarray(q_hat)
    rows = np.arange(B)
    w = pi[rows, action] / np.asarray(pscore)
    coef = pi * q  # direct-method term: sum_a pi(a|x) q_hat(x, a) grad log pi(a|x)
    coef[rows, action] += w * (np.asarray(reward) - q[rows, action])
    estimate = _combine(_per_example_grad_log_pi(params, x, items), jnp.asarray(coef / B))
    chex.assert_trees_all_close(grad, jax.tree.map(jnp.negative, estimate), atol=1e-5, rtol=1e-4)


def test_naive_gradient_is_reward_weighted_log_likelihood():
    params, x, items, action, reward, _, _ = _batch(2)
    grad = jax.grad(lambda p: towerjax.naive_loss(_log_pi(p, x, items), action, reward))(params)
    coef = np.zeros((B, A))
    coef[np.arange(B), action] = np.asarray(reward) / B
    estimate = _combine(_per_example_grad_log_pi(params, x, items), jnp.asarray(coef))
    chex.assert_trees_all_close(grad, jax.tree.map(jnp.negative, estimate), atol=1e-5, rtol=1e-4)


def test_regression_gradient_is_logistic_regression_gradient():
    params, x, items, action, reward, _, _ = _batch(3)
    grad = jax.grad(lambda p: towerjax.regression_loss(MODEL.scores(p, x, items), action, reward))(params)
    scores = np.asarray(MODEL.scores(params, x, items))
    rows = np.arange(B)
    residual = 1 / (1 + np.exp(-scores[rows, action])) - np.asarray(reward)  # d BCE / d logit
    jac = jax.vmap(jax.jacrev(lambda p, xi: MODEL.scores(p, xi[None], items)[0]), in_axes=(None, 0))(
        params, x
    )
    coef = np.zeros((B, A))
    coef[rows, action] = residual / B
    chex.assert_trees_all_close(grad, _combine(jac, jnp.asarray(coef)), atol=1e-5, rtol=1e-4)


def test_importance_weight_carries_no_gradient():
    log_pi_a = jnp.log(jnp.array([0.2, 0.5]))
    grad = jax.grad(lambda lp: jnp.sum(towerjax.importance_weight(lp, jnp.array([0.5, 0.5]))))(log_pi_a)
    np.testing.assert_array_equal(grad, 0.0)


def test_mask_drops_padded_events_exactly():
    params, x, items, action, reward, pscore, q_hat = _batch(4)
    log_pi = _log_pi(params, x, items)
    mask = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
    full = towerjax.ips_loss(log_pi[:4], action[:4], reward[:4], pscore[:4])
    masked = towerjax.ips_loss(log_pi, action, reward, pscore, mask=mask)
    np.testing.assert_allclose(masked, full, rtol=1e-6)
    full = towerjax.dr_loss(log_pi[:4], action[:4], reward[:4], pscore[:4], q_hat[:4])
    masked = towerjax.dr_loss(log_pi, action, reward, pscore, q_hat, mask=mask)
    np.testing.assert_allclose(masked, full, rtol=1e-6)


LOSSES = {
    "ips": lambda lp, s, a, r, p, q: towerjax.ips_loss(lp, a, r, p),
    "dr": lambda lp, s, a, r, p, q: towerjax.dr_loss(lp, a, r, p, q),
    "naive": lambda lp, s, a, r, p, q: towerjax.naive_loss(lp, a, r),
    "regression": lambda lp, s, a, r, p, q: towerjax.regression_loss(s, a, r),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_jit_matches_eager_and_vmap_matches_loop(name):
    loss = LOSSES[name]
    batches = [_batch(seed) for seed in range(3)]

    def value_and_grad(scores, action, reward, pscore, q_hat):
        f = lambda s: loss(towerjax.log_policy(s), s, action, reward, pscore, q_hat)  # noqa: E731
        return jax.value_and_grad(f)(scores)

    args = [(MODEL.scores(b[0], b[1], b[2]), *b[3:]) for b in batches]
    eager = [value_and_grad(*a) for a in args]
    jitted = [jax.jit(value_and_grad)(*a) for a in args]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *args)
    vmapped = jax.vmap(value_and_grad)(*stacked)
    for i in range(3):
        chex.assert_trees_all_close(jitted[i], eager[i], rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(
            jax.tree.map(lambda v, i=i: v[i], vmapped), eager[i], rtol=1e-5, atol=1e-6
        )


# --- unbiasedness on a tiny problem with known q and uniform logging --------------------

K, ACTIONS, EVENTS, DATASETS = 3, 4, 50, 4000
TRUE_Q = jnp.array([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.4, 0.6], [0.5, 0.5, 0.1, 0.9]])
LOGITS = jnp.array([[0.5, -0.2, 0.1, 0.0], [0.0, 0.3, -0.5, 0.2], [-0.1, 0.0, 0.4, -0.3]])


def _exact_gradient():
    return jax.grad(lambda th: jnp.mean(jnp.sum(jax.nn.softmax(th) * TRUE_Q, -1)))(LOGITS)


@jax.jit
def _gradient_estimates(keys):
    """``[N, K, A]`` IPS and DR (with ``q_hat = q``) gradient estimates on ``N`` logged datasets."""

    def one(key):
        kx, ka, kr = jax.random.split(key, 3)
        x = jax.random.randint(kx, (EVENTS,), 0, K)
        a = jax.random.randint(ka, (EVENTS,), 0, ACTIONS)
        r = jax.random.bernoulli(kr, TRUE_Q[x, a]).astype(jnp.float32)
        p = jnp.full((EVENTS,), 1.0 / ACTIONS)
        ips = -jax.grad(lambda th: towerjax.ips_loss(jax.nn.log_softmax(th[x]), a, r, p))(LOGITS)
        dr = -jax.grad(lambda th: towerjax.dr_loss(jax.nn.log_softmax(th[x]), a, r, p, TRUE_Q[x]))(LOGITS)
        return ips, dr

    return jax.vmap(one)(keys)


def test_ips_and_dr_gradients_are_unbiased_and_dr_has_lower_variance():
    exact = np.asarray(_exact_gradient())
    ips, dr = (np.asarray(g) for g in _gradient_estimates(jax.random.split(jax.random.key(7), DATASETS)))
    for estimates in (ips, dr):
        mean = estimates.mean(axis=0)
        se = estimates.std(axis=0, ddof=1) / np.sqrt(DATASETS)
        assert np.all(np.abs(mean - exact) < 4 * se + 1e-4), (mean, exact, se)
    assert dr.var(axis=0).sum() < 0.5 * ips.var(axis=0).sum()


# --- input checks -----------------------------------------------------------------------


def test_losses_reject_mismatched_shapes_naming_the_argument():
    log_pi = jnp.zeros((4, 3))
    ok = dict(action=jnp.zeros(4, jnp.int32), reward=jnp.zeros(4), pscore=jnp.ones(4))
    with pytest.raises(ValueError, match="action"):
        towerjax.ips_loss(log_pi, jnp.zeros(3, jnp.int32), ok["reward"], ok["pscore"])
    with pytest.raises(ValueError, match="reward"):
        towerjax.ips_loss(log_pi, ok["action"], jnp.zeros(5), ok["pscore"])
    with pytest.raises(ValueError, match="pscore"):
        towerjax.ips_loss(log_pi, ok["action"], ok["reward"], jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="q_hat"):
        towerjax.dr_loss(log_pi, ok["action"], ok["reward"], ok["pscore"], jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="log_pi"):
        towerjax.naive_loss(jnp.zeros(4), ok["action"], ok["reward"])
    with pytest.raises(TypeError, match="action"):
        towerjax.ips_loss(log_pi, jnp.zeros(4), ok["reward"], ok["pscore"])
    with pytest.raises(ValueError, match="mask"):
        towerjax.ips_loss(log_pi, ok["action"], ok["reward"], ok["pscore"], mask=jnp.ones(3))


# --- weight transforms, variance penalty and the top-K correction (SPEC 4) ---------------

BW, AW = 8, 5


def _weights_batch(seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    logits = jax.random.normal(k[0], (BW, AW))
    action = jax.random.randint(k[1], (BW,), 0, AW)
    reward = jax.random.bernoulli(k[2], 0.6, (BW,)).astype(jnp.float32)
    pscore = jax.random.uniform(k[3], (BW,), minval=0.05, maxval=1.0)
    return logits, action, reward, pscore


def _grad_log_pi_a(logits, action):
    """``[BW, BW, AW]``: gradient of ``log pi(a_i|x_i)`` w.r.t. all logits (one row per event)."""
    return jax.vmap(lambda i: jax.grad(lambda th: jax.nn.log_softmax(th)[i, action[i]])(logits))(
        jnp.arange(BW)
    )


def test_topk_gradient_equals_the_topk_corrected_estimator():
    logits, action, reward, pscore = _weights_batch()
    grad = jax.grad(lambda th: topk_ips_loss(jax.nn.log_softmax(th), action, reward, pscore, k=3))(logits)
    pi_a = np.asarray(jax.nn.softmax(logits))[np.arange(BW), action]
    coef = pi_a / np.asarray(pscore) * 3 * (1 - pi_a) ** 2 * np.asarray(reward) / BW
    estimate = -jnp.tensordot(jnp.asarray(coef), _grad_log_pi_a(logits, action), axes=1)
    np.testing.assert_allclose(grad, estimate, rtol=1e-5, atol=1e-7)


def test_topk_with_k_1_is_exactly_ips():
    logits, action, reward, pscore = _weights_batch(1)
    topk = jax.value_and_grad(lambda th: topk_ips_loss(jax.nn.log_softmax(th), action, reward, pscore, k=1))
    ips = jax.value_and_grad(lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward, pscore))
    chex.assert_trees_all_close(topk(logits), ips(logits), rtol=1e-6)


def test_topk_cap_bounds_the_product_weight():
    logits, action, reward, pscore = _weights_batch(2)
    log_pi = jax.nn.log_softmax(logits)
    log_pi_a = np.asarray(log_pi)[np.arange(BW), action]
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
    logits, action, reward, pscore = _weights_batch(3)
    grad = jax.grad(
        lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward, pscore, self_normalize=True)
    )(logits)
    pi_a = np.asarray(jax.nn.softmax(logits))[np.arange(BW), action]
    w = pi_a / np.asarray(pscore)
    coef = w / w.mean() * np.asarray(reward) / BW
    estimate = -jnp.tensordot(jnp.asarray(coef), _grad_log_pi_a(logits, action), axes=1)
    np.testing.assert_allclose(grad, estimate, rtol=1e-5, atol=1e-7)


def test_variance_penalty_adds_lambda_sqrt_var_over_b_with_gradient_through_pi():
    logits, action, reward, pscore = _weights_batch(4)
    log_pi = jax.nn.log_softmax(logits)
    plain = towerjax.ips_loss(log_pi, action, reward, pscore)
    penalised = towerjax.ips_loss(log_pi, action, reward, pscore, variance_penalty=0.7)
    wr = np.asarray(jnp.exp(log_pi)[jnp.arange(BW), action] / pscore * reward)
    np.testing.assert_allclose(penalised - plain, 0.7 * np.sqrt(wr.var() / BW), rtol=1e-4)

    def penalty_only(th):
        lp = jax.nn.log_softmax(th)
        return towerjax.ips_loss(lp, action, reward, pscore, variance_penalty=1.0) - towerjax.ips_loss(
            lp, action, reward, pscore
        )

    assert float(jnp.abs(jax.grad(penalty_only)(logits)).sum()) > 1e-3  # no stop_gradient on pi here
    dr_plain = towerjax.dr_loss(log_pi, action, reward, pscore, jnp.zeros((BW, AW)))
    dr_penalised = towerjax.dr_loss(log_pi, action, reward, pscore, jnp.zeros((BW, AW)), variance_penalty=0.7)
    np.testing.assert_allclose(dr_penalised - dr_plain, 0.7 * np.sqrt(wr.var() / BW), rtol=1e-4)


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
    logits, action, reward, pscore = _weights_batch()
    with pytest.raises(ValueError, match=argument):
        towerjax.ips_loss(jax.nn.log_softmax(logits), action, reward, pscore, **options)


def test_topk_rejects_bad_k():
    logits, action, reward, pscore = _weights_batch()
    with pytest.raises(ValueError, match="k"):
        topk_ips_loss(jax.nn.log_softmax(logits), action, reward, pscore, k=0)
