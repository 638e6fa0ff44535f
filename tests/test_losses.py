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


# --- gradient identities: every surrogate's gradient is minus the gradient of its estimate,
# the estimate computed by autodiff with no stop_gradient anywhere (SPEC 4 and 7) ------

Q_W = jax.random.uniform(jax.random.key(11), (BW, AW))


def _estimates(logits, action, reward, pscore):
    """Each estimator's value as a differentiable function of the logits (no stop_gradient)."""
    pi = jax.nn.softmax(logits)
    w = pi[jnp.arange(BW), action] / pscore
    dm = jnp.sum(pi * Q_W, axis=-1)
    res = reward - Q_W[jnp.arange(BW), action]
    return {
        "ips": jnp.mean(w * reward),
        "snips": jnp.sum(w * reward) / jnp.sum(w),
        "dr": jnp.mean(dm + w * res),
        "sndr": jnp.mean(dm) + jnp.sum(w * res) / jnp.sum(w),
        "switch-dr": jnp.mean(dm + jnp.where(w <= 2.0, w, 0.0) * res),
        "dr-os": jnp.mean(dm + 3.0 * w / (w**2 + 3.0) * res),
        "ipw-subgauss": jnp.mean(w / (1 - 0.3 + 0.3 * w) * reward),
        "ipw-ls": jnp.mean(jnp.log1p(0.5 * w * reward) / 0.5),
    }


SURROGATES = {
    "ips": lambda lp, a, r, p: towerjax.ips_loss(lp, a, r, p),
    "snips": lambda lp, a, r, p: towerjax.ips_loss(lp, a, r, p, self_normalize=True),
    "dr": lambda lp, a, r, p: towerjax.dr_loss(lp, a, r, p, Q_W),
    "sndr": lambda lp, a, r, p: towerjax.dr_loss(lp, a, r, p, Q_W, self_normalize=True),
    "switch-dr": lambda lp, a, r, p: towerjax.switch_dr_loss(lp, a, r, p, Q_W, threshold=2.0),
    "dr-os": lambda lp, a, r, p: towerjax.dr_os_loss(lp, a, r, p, Q_W, shrinkage=3.0),
    "ipw-subgauss": lambda lp, a, r, p: towerjax.subgaussian_ips_loss(lp, a, r, p, lam=0.3),
    "ipw-ls": lambda lp, a, r, p: towerjax.log_smoothing_ips_loss(lp, a, r, p, lam=0.5),
}


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_gradient_is_minus_the_gradient_of_the_estimate(name):
    logits, action, reward, pscore = _weights_batch(3)
    pscore = pscore / 4  # weights on both sides of the switch threshold and sqrt(shrinkage)
    grad = jax.grad(lambda th: SURROGATES[name](jax.nn.log_softmax(th), action, reward, pscore))(logits)
    exact = jax.grad(lambda th: _estimates(th, action, reward, pscore)[name])(logits)
    np.testing.assert_allclose(grad, -exact, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["snips", "sndr"])
def test_self_normalised_gradients_ignore_a_constant_added_to_every_reward(name):
    logits, action, reward, pscore = _weights_batch(5)
    grad = jax.grad(lambda th, r: SURROGATES[name](jax.nn.log_softmax(th), action, r, pscore))
    np.testing.assert_allclose(grad(logits, reward + 1.0), grad(logits, reward), rtol=1e-4, atol=1e-6)
    if name == "snips":  # at batch size 1 the baseline is the reward itself: no gradient
        one = jax.grad(
            lambda th: SURROGATES[name](jax.nn.log_softmax(th), action[:1], reward[:1], pscore[:1])
        )
        np.testing.assert_allclose(one(logits[:1]), 0.0, atol=1e-7)


def test_baselines_translate_the_reward():
    logits, action, reward, pscore = _weights_batch(6)
    log_pi = jax.nn.log_softmax(logits)
    translated = jax.grad(
        lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward, pscore, baseline=0.4)
    )
    shifted = jax.grad(lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward - 0.4, pscore))
    np.testing.assert_allclose(translated(logits), shifted(logits), rtol=1e-5, atol=1e-7)
    w = np.exp(np.asarray(log_pi))[np.arange(BW), action] / np.asarray(pscore)
    b = np.sum(w**2 * np.asarray(reward)) / np.sum(w**2)
    optimal = jax.grad(
        lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward, pscore, baseline="optimal")
    )
    by_hand = jax.grad(lambda th: towerjax.ips_loss(jax.nn.log_softmax(th), action, reward - b, pscore))
    np.testing.assert_allclose(optimal(logits), by_hand(logits), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        towerjax.ips_loss(log_pi, action, reward, pscore, baseline="best")
    with pytest.raises(ValueError, match="baseline"):
        towerjax.ips_loss(log_pi, action, reward, pscore, baseline=0.5, self_normalize=True)


# --- no NaN from valid input (issue 12): huge logits, tiny propensities, zero weights ----


def _finite_everywhere(name, logits, action, reward, pscore, mask=None):
    def loss(th):
        lp = jax.nn.log_softmax(th)
        if mask is None:
            return SURROGATES[name](lp, action, reward, pscore)
        return _MASKED[name](lp, action, reward, pscore, mask)

    value, grad = jax.jit(jax.value_and_grad(loss))(logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), (name, value, grad)
    return value, grad


_MASKED = {
    "ips": lambda lp, a, r, p, m: towerjax.ips_loss(lp, a, r, p, variance_penalty=0.1, mask=m),
    "snips": lambda lp, a, r, p, m: towerjax.ips_loss(lp, a, r, p, self_normalize=True, cap=10.0, mask=m),
    "dr": lambda lp, a, r, p, m: towerjax.dr_loss(lp, a, r, p, Q_W, variance_penalty=0.1, mask=m),
    "sndr": lambda lp, a, r, p, m: towerjax.dr_loss(lp, a, r, p, Q_W, self_normalize=True, mask=m),
    "switch-dr": lambda lp, a, r, p, m: towerjax.switch_dr_loss(lp, a, r, p, Q_W, threshold=2.0, mask=m),
    "dr-os": lambda lp, a, r, p, m: towerjax.dr_os_loss(lp, a, r, p, Q_W, shrinkage=3.0, mask=m),
    "ipw-subgauss": lambda lp, a, r, p, m: towerjax.subgaussian_ips_loss(lp, a, r, p, lam=0.3, mask=m),
    "ipw-ls": lambda lp, a, r, p, m: towerjax.log_smoothing_ips_loss(lp, a, r, p, lam=0.5, mask=m),
}


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_no_nan_for_extreme_logits_tiny_propensities_zero_weights_and_empty_masks(name):
    logits, action, reward, pscore = _weights_batch(7)
    # Logits of +-1e4 with the logged action on the losing side: every pi(a_i|x_i) underflows to 0.
    huge = jnp.where(jax.nn.one_hot(action, AW) > 0, -1e4, 1e4)
    _, grad = _finite_everywhere(name, huge, action, reward, pscore)
    if name == "snips":
        np.testing.assert_array_equal(grad, 0.0)  # every weight 0: the SNIPS gradient is 0
    # Logits of +-1e4 favouring the logged action, propensities down to 1e-8 (weights 1e8).
    _finite_everywhere(name, -huge, action, reward, jnp.full(BW, 1e-8))
    # An all-zero mask, and a single unmasked event.
    _finite_everywhere(name, logits, action, reward, pscore, mask=jnp.zeros(BW))
    _finite_everywhere(name, logits, action, reward, pscore, mask=jnp.zeros(BW).at[0].set(1.0))


def test_out_of_range_actions_are_an_error_eagerly_and_nan_under_jit():
    logits, action, reward, pscore = _weights_batch(8)
    log_pi = jax.nn.log_softmax(logits)
    bad = action.at[0].set(-1)
    with pytest.raises(ValueError, match="action"):
        towerjax.ips_loss(log_pi, bad, reward, pscore)
    with pytest.raises(ValueError, match="action"):
        towerjax.regression_loss(logits, action.at[1].set(AW), reward)
    assert np.isnan(jax.jit(towerjax.ips_loss)(log_pi, bad, reward, pscore))


def test_variance_penalty_adds_lambda_sqrt_var_over_b_with_gradient_through_pi():
    logits, action, reward, pscore = _weights_batch(4)
    log_pi = jax.nn.log_softmax(logits)
    plain = towerjax.ips_loss(log_pi, action, reward, pscore)
    penalised = towerjax.ips_loss(log_pi, action, reward, pscore, variance_penalty=0.7)
    wr = np.asarray(jnp.exp(log_pi)[jnp.arange(BW), action] / pscore * reward)
    np.testing.assert_allclose(penalised - plain, 0.7 * np.sqrt(wr.var(ddof=1) / BW), rtol=1e-4)

    def penalty_only(th):
        lp = jax.nn.log_softmax(th)
        return towerjax.ips_loss(lp, action, reward, pscore, variance_penalty=1.0) - towerjax.ips_loss(
            lp, action, reward, pscore
        )

    assert float(jnp.abs(jax.grad(penalty_only)(logits)).sum()) > 1e-3  # no stop_gradient on pi here
    dr_plain = towerjax.dr_loss(log_pi, action, reward, pscore, jnp.zeros((BW, AW)))
    dr_penalised = towerjax.dr_loss(log_pi, action, reward, pscore, jnp.zeros((BW, AW)), variance_penalty=0.7)
    np.testing.assert_allclose(dr_penalised - dr_plain, 0.7 * np.sqrt(wr.var(ddof=1) / BW), rtol=1e-4)


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


def test_every_registered_objective_has_a_gradient_identity_test():
    # regression, naive, topk and ips-regression: tests in this file; two-stage: test_two_stage.py.
    others = {"regression", "naive", "topk", "ips-regression", "two-stage"}
    assert set(towerjax.OBJECTIVES) <= set(SURROGATES) | others


# --- against collapse, and propensity-weighted regression (issue 13) --------------------


def test_weighted_regression_gradient_is_the_inverse_propensity_weighted_logistic_gradient():
    logits, action, reward, pscore = _weights_batch(9)
    rows = np.arange(BW)
    c = np.minimum(1.0 / np.asarray(pscore), 5.0)
    residual = np.asarray(jax.nn.sigmoid(logits))[rows, action] - np.asarray(reward)
    for self_normalize, total in ((False, BW), (True, c.sum())):
        grad = jax.grad(
            lambda s, sn=self_normalize: towerjax.weighted_regression_loss(
                s, action, reward, pscore, cap=5.0, self_normalize=sn
            )
        )(logits)
        expected = np.zeros((BW, AW))
        expected[rows, action] = c * residual / total
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    # With every propensity equal it is the regression loss.
    np.testing.assert_allclose(
        towerjax.weighted_regression_loss(logits, action, reward, jnp.full(BW, 0.25), self_normalize=True),
        towerjax.regression_loss(logits, action, reward),
        rtol=1e-6,
    )


def test_entropy_bonus_and_kl_penalty_pull_toward_spread_and_toward_the_logging_policy():
    logits, _, _, _ = _weights_batch(10)
    log_pi = jax.nn.log_softmax(logits)
    uniform = jnp.full((BW, AW), 1.0 / AW)
    # KL to a uniform logging policy is the entropy bonus plus log A, in value and gradient.
    kl = jax.value_and_grad(lambda th: towerjax.kl_to_logging(jax.nn.log_softmax(th), uniform))(logits)
    bonus = jax.value_and_grad(lambda th: towerjax.entropy_bonus(jax.nn.log_softmax(th)))(logits)
    np.testing.assert_allclose(kl[0], bonus[0] + np.log(AW), rtol=1e-5)
    np.testing.assert_allclose(kl[1], bonus[1], rtol=1e-4, atol=1e-7)
    # A gradient step on the bonus raises the entropy; on the KL it lowers the KL to pi_b.
    pi_b = jax.nn.softmax(jax.random.normal(jax.random.key(3), (BW, AW)))
    entropy = lambda th: -towerjax.entropy_bonus(jax.nn.log_softmax(th))  # noqa: E731
    assert entropy(logits - 0.1 * bonus[1]) > entropy(logits)
    kl_b = lambda th: towerjax.kl_to_logging(jax.nn.log_softmax(th), pi_b)  # noqa: E731
    assert kl_b(logits - 0.1 * jax.grad(kl_b)(logits)) < kl_b(logits)
    np.testing.assert_allclose(jax.grad(kl_b)(jnp.log(pi_b)), 0.0, atol=1e-6)  # minimum at pi = pi_b
    assert float(kl_b(jnp.log(pi_b))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="pi_b"):
        towerjax.kl_to_logging(log_pi, pi_b[:, :2])
