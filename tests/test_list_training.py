"""The synthetic slate problem's exact value, and training a list policy on its logs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.list_policy import sample_lists
from towerjax.list_training import ListTrainConfig, list_model, make_list_train
from towerjax.reward_model import RewardModelConfig
from towerjax.slate_synthetic import (
    best_list_value,
    exact_list_value,
    logging_scores,
    position_click_probs,
    sample_contexts,
    sample_slate_logs,
    slate_problem,
    top_k_list_value,
)

ALPHA = jnp.array([1.0, 0.5])


@pytest.fixture(scope="module")
def problem():
    return slate_problem(jax.random.key(0), n_items=5, list_size=2, context_dim=3, item_dim=3)


def test_exact_value_matches_monte_carlo_clicks(problem):
    """``V`` by exact marginals equals the mean of simulated ``sum_k alpha_k r_k`` within 4 s.e."""
    n = 20_000
    k_x, k_s, k_list, k_click = jax.random.split(jax.random.key(1), 4)
    context = sample_contexts(k_x, problem, n)
    scores = jax.random.normal(k_s, (n, problem.n_items))
    lists = sample_lists(k_list, scores, problem.list_size, 0.8)
    q = jnp.take_along_axis(position_click_probs(problem, context), lists[..., None], axis=-1)[..., 0]
    clicks = jax.random.bernoulli(k_click, q).astype(jnp.float32) @ ALPHA
    exact = float(exact_list_value(problem, context, scores, 0.8, position_weight=ALPHA, chunk=1000))
    se = float(jnp.std(clicks)) / np.sqrt(n)
    assert abs(exact - float(jnp.mean(clicks))) < 4 * se


def test_logs_propensities_and_value(problem):
    logs = sample_slate_logs(jax.random.key(2), problem, 4000)
    np.testing.assert_allclose(logs.pscore, logs.pscore_cascade[:, -1], rtol=1e-6)
    np.testing.assert_allclose(logs.pscore_item_position[:, 0], logs.pscore_cascade[:, 0], rtol=1e-5)
    v_log = float(exact_list_value(problem, logs.context, logging_scores(problem, logs.context)))
    reward = logs.rewards.sum(axis=1)
    assert abs(float(reward.mean()) - v_log) < 4 * float(reward.std()) / np.sqrt(4000)
    best = float(best_list_value(problem, logs.context))
    truth = jnp.log(position_click_probs(problem, logs.context)[:, 0])
    assert best == pytest.approx(float(top_k_list_value(problem, logs.context, truth)), rel=1e-6)
    assert best > v_log


def test_a_tiny_training_run_beats_the_logging_policy(problem):
    """Loose: SNIIPS-trained list policy's exact value exceeds the logger's on held-out contexts; params finite."""
    logs = sample_slate_logs(jax.random.key(3), problem, 2048)
    config = ListTrainConfig(objective="sniips", epochs=10)  # 16 batches of 128 an epoch
    params = jax.jit(make_list_train(config, problem.item_features))(jax.random.key(4), logs)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))
    context = sample_contexts(jax.random.key(5), problem, 2000)
    scores = list_model(config).scores(params, context, problem.item_features)
    v_learned = float(exact_list_value(problem, context, scores, config.temperature))
    v_log = float(exact_list_value(problem, context, logging_scores(problem, context)))
    v_best = float(best_list_value(problem, context))
    assert v_log < v_learned <= v_best
    print(f"gap closed {(v_learned - v_log) / (v_best - v_log):.2f}")


def test_cascade_dr_training_beats_the_logging_policy(problem):
    """Loose: cascade-DR (its position-aware q_hat cross-fitted before the epochs) beats the logger."""
    logs = sample_slate_logs(jax.random.key(3), problem, 1024)
    small = RewardModelConfig(hidden_sizes=(16,), epochs=3, batch_size=64)
    config = ListTrainConfig(objective="cascade-dr", epochs=10, batch_size=64, reward_model=small)
    params = jax.jit(make_list_train(config, problem.item_features))(jax.random.key(4), logs)
    context = sample_contexts(jax.random.key(5), problem, 2000)
    scores = list_model(config).scores(params, context, problem.item_features)
    v_learned = float(exact_list_value(problem, context, scores, config.temperature))
    v_log = float(exact_list_value(problem, context, logging_scores(problem, context)))
    assert v_log < v_learned <= float(best_list_value(problem, context))
