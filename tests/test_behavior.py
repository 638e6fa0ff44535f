"""Behaviour-policy estimation (Chen et al. 2019, §4.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from towerjax import TwoTower
from towerjax.behavior import behavior_log_probs, behavior_loss, init_behavior_head, logged_propensity
from towerjax.synthetic import SyntheticProblem, obp_problem, sample_logged_data
from towerjax.training import TrainConfig, train_seeds

MODEL = TwoTower(hidden_sizes=(32,), embedding_size=16)


def test_behaviour_loss_has_zero_gradient_wrt_the_context_tower():
    params = MODEL.init(jax.random.key(0), 3, 4)
    head = init_behavior_head(jax.random.key(1), 6, 16)
    x = jax.random.normal(jax.random.key(2), (8, 3))
    action = jnp.arange(8) % 6
    grads = jax.grad(lambda p: behavior_loss(head, MODEL.embed_context(p, x), action))(params)
    for leaf in jax.tree.leaves(grads):
        np.testing.assert_array_equal(leaf, 0.0)
    head_grads = jax.grad(lambda h: behavior_loss(h, MODEL.embed_context(params, x), action))(head)
    assert float(jnp.abs(head_grads["item"]).sum()) > 0
    propensity_grad = jax.grad(
        lambda h: jnp.sum(logged_propensity(h, MODEL.embed_context(params, x), action))
    )(head)
    np.testing.assert_array_equal(propensity_grad["item"], 0.0)


def test_behaviour_head_recovers_a_known_logging_policy():
    problem = obp_problem(jax.random.key(3), n_actions=5, dim_context=4, beta=1.5)
    data = sample_logged_data(jax.random.key(4), problem, 8000)
    params = MODEL.init(jax.random.key(5), 4, 5)
    embedding = MODEL.embed_context(params, data.context)  # a fixed, untrained context tower
    head = init_behavior_head(jax.random.key(6), 5, 16)
    optimizer = optax.adam(0.05)

    @jax.jit
    def fit(head):
        def step(state, _):
            head, opt_state = state
            grads = jax.grad(behavior_loss)(head, embedding, data.action)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(head, updates), opt_state), None

        (head, _), _ = jax.lax.scan(step, (head, optimizer.init(head)), None, length=500)
        return head

    log_beta_hat = behavior_log_probs(fit(head), embedding)
    pi_b = np.asarray(data.pi_b)
    kl = np.mean(np.sum(pi_b * (np.log(pi_b) - np.asarray(log_beta_hat)), axis=-1))
    uniform_kl = np.mean(np.sum(pi_b * (np.log(pi_b) - np.log(1 / 5)), axis=-1))
    assert kl < 0.05 and kl < 0.2 * uniform_kl, (kl, uniform_kl)


def test_training_with_estimated_propensities_learns():
    config = TrainConfig(
        epochs=4,
        batch_size=20,
        learning_rate=0.001,
        estimate_propensities=True,
    )
    problem = SyntheticProblem(n_rounds=2000, n_test_rounds=2000)
    result, _ = train_seeds(config, seeds=4, seed=11, problem=problem)
    assert "behavior" in result.params and result.params["behavior"]["item"].shape == (
        4,
        10,
        config.embedding_size,
    )
    final = result.test_value[:, -1]
    assert final.mean() > result.initial_value.mean() + 0.02
    assert final.mean() > result.behavior_value.mean() + 0.02


def test_behaviour_loss_checks_the_action_shape():
    head = init_behavior_head(jax.random.key(0), 3, 4)
    with pytest.raises(ValueError, match="action"):
        behavior_loss(head, jnp.zeros((5, 4)), jnp.zeros(4, jnp.int32))
