"""List objectives: each surrogate's gradient is the slate estimator's gradient (identity tests)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax import TwoTower
from towerjax.evaluation.slate import slate_estimator_terms
from towerjax.list_objectives import (
    cascade_dr_list_loss,
    iips_list_loss,
    list_objective_loss,
    logged_position_marginals,
    naive_list_loss,
    rips_list_loss,
    sips_list_loss,
)
from towerjax.list_policy import (
    exact_position_marginals,
    list_log_prob,
    next_item_log_probs,
    position_log_probs,
    prefix_log_probs,
)

MODEL = TwoTower(hidden_sizes=(8,), embedding_size=4)
B, A, K, DX, DA = 6, 5, 3, 3, 4
ALPHA = jnp.array([1.0, 0.5, 0.25])
TAU = 0.7


@pytest.fixture(scope="module")
def batch():
    k = jax.random.split(jax.random.key(0), 6)
    params = MODEL.init(k[0], DX, DA)
    x = jax.random.normal(k[1], (B, DX))
    items = jax.random.normal(k[2], (A, DA))
    logger = jax.random.normal(k[3], (B, A))
    lists = towerjax.sample_lists(k[4], logger, K)
    rewards = jax.random.bernoulli(k[5], 0.5, (B, K)).astype(jnp.float32).at[0, 0].set(1.0)
    pscore_cascade = jnp.exp(prefix_log_probs(logger, lists))
    marginals = exact_position_marginals(logger, K)
    pscore_item = jnp.take_along_axis(marginals, lists[..., None], axis=-1)[..., 0]
    return params, x, items, lists, rewards, pscore_cascade[:, -1], pscore_cascade, pscore_item


def _scores(params, x, items):
    return MODEL.scores(params, x, items)


def _estimator_grad(batch, name, weights):
    """``grad_params V_hat``: autodiff of the slate estimator with the policy's weights carrying the gradient."""
    params, x, items, _, rewards, *_ = batch

    def value(p):
        terms = slate_estimator_terms(
            rewards, position_weight=ALPHA, names=name, **weights(_scores(p, x, items))
        )
        return jnp.mean(terms[name])

    return jax.grad(value)(params)


def _assert_negated(grad, estimate):
    chex.assert_trees_all_close(grad, jax.tree.map(jnp.negative, estimate), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("self_normalize", [False, True])
def test_sips_gradient_equals_sips_estimator_gradient(batch, self_normalize):
    params, x, items, lists, rewards, pscore, *_ = batch
    name = "snsips" if self_normalize else "sips"
    grad = jax.grad(
        lambda p: sips_list_loss(
            _scores(p, x, items),
            lists,
            rewards,
            pscore,
            temperature=TAU,
            position_weight=ALPHA,
            self_normalize=self_normalize,
        )
    )(params)
    estimate = _estimator_grad(batch, name, lambda s: {"w": jnp.exp(list_log_prob(s, lists, TAU)) / pscore})
    _assert_negated(grad, estimate)


@pytest.mark.parametrize("self_normalize", [False, True])
def test_rips_gradient_equals_rips_estimator_gradient(batch, self_normalize):
    params, x, items, lists, rewards, _, pscore_cascade, _ = batch
    name = "snrips" if self_normalize else "rips"
    grad = jax.grad(
        lambda p: rips_list_loss(
            _scores(p, x, items),
            lists,
            rewards,
            pscore_cascade,
            temperature=TAU,
            position_weight=ALPHA,
            self_normalize=self_normalize,
        )
    )(params)
    estimate = _estimator_grad(
        batch, name, lambda s: {"w_cascade": jnp.exp(prefix_log_probs(s, lists, TAU)) / pscore_cascade}
    )
    _assert_negated(grad, estimate)


@pytest.mark.parametrize("self_normalize", [False, True])
def test_iips_gradient_equals_iips_estimator_gradient(batch, self_normalize):
    params, x, items, lists, rewards, _, _, pscore_item = batch
    name = "sniips" if self_normalize else "iips"
    grad = jax.grad(
        lambda p: iips_list_loss(
            _scores(p, x, items),
            lists,
            rewards,
            pscore_item,
            temperature=TAU,
            position_weight=ALPHA,
            self_normalize=self_normalize,
        )
    )(params)

    def weights(s):
        marginals = exact_position_marginals(s, K, TAU)
        return {
            "w_item_position": jnp.take_along_axis(marginals, lists[..., None], axis=-1)[..., 0] / pscore_item
        }

    _assert_negated(grad, _estimator_grad(batch, name, weights))


def test_cascade_dr_gradient_equals_cascade_dr_estimator_gradient(batch):
    """Weights in score-function form plus the direct term through ``pi``: autodiff of slate.py's cascade-DR."""
    params, x, items, lists, rewards, _, pscore_cascade, _ = batch
    q_hat = jax.random.uniform(jax.random.key(7), (B, K, A))
    grad = jax.grad(
        lambda p: cascade_dr_list_loss(
            _scores(p, x, items),
            lists,
            rewards,
            pscore_cascade,
            q_hat,
            temperature=TAU,
            position_weight=ALPHA,
        )
    )(params)

    def weights(s):
        return {
            "w_cascade": jnp.exp(prefix_log_probs(s, lists, TAU)) / pscore_cascade,
            "q_logged": jnp.take_along_axis(q_hat, lists[..., None], axis=-1)[..., 0],
            "direct": jnp.sum(jnp.exp(next_item_log_probs(s, lists, TAU)) * q_hat, axis=-1),
        }

    estimate = _estimator_grad(batch, "cascade-dr", weights)
    assert max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(estimate)) > 1e-3  # not trivially 0
    _assert_negated(grad, estimate)


def test_naive_gradient_is_clicked_position_log_likelihood(batch):
    params, x, items, lists, rewards, *_ = batch
    grad = jax.grad(
        lambda p: naive_list_loss(
            _scores(p, x, items), lists, rewards, temperature=TAU, position_weight=ALPHA
        )
    )(params)
    jac = jax.jacrev(lambda p: position_log_probs(_scores(p, x, items), lists, TAU))(
        params
    )  # [B, K] per leaf
    coef = ALPHA * rewards / B
    estimate = jax.tree.map(lambda j: jnp.tensordot(coef, j, axes=([0, 1], [0, 1])), jac)
    _assert_negated(grad, estimate)


def test_sampled_position_marginals_and_their_gradient_are_unbiased():
    """``P_hat`` and ``grad P_hat`` (sampled prefixes, score function) average to the exact marginal and its gradient."""
    scores = jax.random.normal(jax.random.key(3), (2, A))
    lists = jnp.array([[0, 1, 2], [4, 2, 3]])
    coef = jax.random.uniform(jax.random.key(4), (2, K))

    def weighted(s, key=None):
        return jnp.sum(coef * logged_position_marginals(s, lists, TAU, key=key, n_samples=4000))

    exact_value, exact_grad = jax.value_and_grad(weighted)(scores)
    value, grad = jax.jit(jax.value_and_grad(weighted))(scores, jax.random.key(5))
    np.testing.assert_allclose(value, exact_value, atol=0.02)
    np.testing.assert_allclose(grad, exact_grad, atol=0.03)


def test_objective_by_name_jit_and_errors(batch):
    params, x, items, lists, rewards, pscore, pscore_cascade, pscore_item = batch
    scores = _scores(params, x, items)
    given = {"pscore": pscore, "pscore_cascade": pscore_cascade, "pscore_item_position": pscore_item}
    q_hat = jnp.full((B, K, A), 0.3)
    given["q_hat"] = q_hat
    direct = {
        "sips": sips_list_loss(scores, lists, rewards, pscore),
        "cascade-dr": cascade_dr_list_loss(scores, lists, rewards, pscore_cascade, q_hat),
        "snrips": rips_list_loss(scores, lists, rewards, pscore_cascade, self_normalize=True),
        "iips": iips_list_loss(scores, lists, rewards, pscore_item),
        "naive": naive_list_loss(scores, lists, rewards),
    }
    for name, expected in direct.items():
        np.testing.assert_allclose(
            list_objective_loss(name, scores, lists, rewards, **given), expected, rtol=1e-6
        )
        jitted = jax.jit(lambda s, name=name: list_objective_loss(name, s, lists, rewards, **given))
        np.testing.assert_allclose(jitted(scores), expected, rtol=1e-5)
    with pytest.raises(towerjax.checks.InputError, match="pscore_cascade"):
        list_objective_loss("rips", scores, lists, rewards, pscore=pscore)
    with pytest.raises(towerjax.checks.InputError, match="q_hat"):
        list_objective_loss("cascade-dr", scores, lists, rewards, pscore_cascade=pscore_cascade)
    with pytest.raises(towerjax.checks.InputError, match="q_hat"):
        cascade_dr_list_loss(scores, lists, rewards, pscore_cascade, q_hat[:, :, :2])
    with pytest.raises(towerjax.checks.InputError, match="name"):
        list_objective_loss("slope", scores, lists, rewards, **given)
    with pytest.raises(towerjax.checks.InputError, match="rewards"):
        naive_list_loss(scores, lists, rewards[:, :2])
    with pytest.raises(towerjax.checks.InputError, match="pscore"):
        sips_list_loss(scores, lists, rewards, pscore_cascade)
