"""The position-aware reward model of cascade-DR: cross-fitted over whole lists, and what it predicts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.features import Features, Table
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.slate_reward_model import SlateRewardModel, position_items, position_rows
from towerjax.slate_synthetic import position_click_probs, sample_slate_logs, slate_problem

CONFIG = RewardModelConfig(hidden_sizes=(16,), epochs=4, batch_size=64, folds=3)
MODEL = SlateRewardModel(CONFIG)


@pytest.fixture(scope="module")
def slate():
    """A tiny slate log, its cross-fitted ``q_hat`` for two keys (one ``vmap``) and key 2's fold fits."""
    problem = slate_problem(jax.random.key(0), n_items=5, list_size=2, context_dim=3, item_dim=3)
    logs = sample_slate_logs(jax.random.key(1), problem, 600)
    keys = jnp.stack([jax.random.key(2), jax.random.key(9)])
    cross_fit = jax.jit(jax.vmap(MODEL.cross_fit, in_axes=(0, None, None, None, None)))
    q_hat = cross_fit(keys, logs.context, logs.lists, logs.rewards, problem.item_features)
    fits = jax.jit(MODEL.fold_fits)(keys[0], logs.context, logs.lists, logs.rewards, problem.item_features)
    return problem, logs, keys, cross_fit, q_hat, fits


def test_position_items_and_rows_layout():
    items = jnp.arange(6.0).reshape(3, 2)
    table = position_items(items, 2)
    np.testing.assert_array_equal(table[4], [2.0, 3.0, 0.0, 1.0])  # item 1 at position 2: row 1 * 3 + 1
    rows = position_rows(jnp.ones((2, 1)), jnp.array([[2, 0], [1, 2]]), jnp.array([[1, 0], [0, 1]]), items)
    np.testing.assert_array_equal(rows.action, [2, 3, 1, 5])  # row i K + k: position-item k A + a_ik
    np.testing.assert_array_equal(rows.reward, [1, 0, 0, 1])
    ids = Features(jnp.zeros((3, 0)), {"item": jnp.arange(3, dtype=jnp.int32)}, (Table("item", 3, 2),))
    tiled = position_items(ids, 2)
    assert tiled.dense.shape == (6, 2)
    np.testing.assert_array_equal(tiled.ids["item"], [0, 1, 2, 0, 1, 2])


def test_a_lists_q_hat_never_sees_that_lists_rewards(slate):
    """Flipping every reward of list 0 leaves its ``q_hat`` (all positions) as it was, and moves other folds'."""
    problem, logs, keys, cross_fit, q_hat, fits = slate
    flipped = logs.rewards.at[0].set(1.0 - logs.rewards[0])
    again = cross_fit(keys, logs.context, logs.lists, flipped, problem.item_features)[0]
    same_fold = np.asarray(fits.fold) == int(fits.fold[0])
    np.testing.assert_array_equal(again[same_fold], q_hat[0][same_fold])
    assert not np.allclose(again[~same_fold], q_hat[0][~same_fold])
    counts = np.bincount(np.asarray(fits.fold), minlength=3)
    assert counts.max() - counts.min() <= 1  # balanced folds of lists


def test_q_hat_is_its_folds_model_at_the_item_and_position(slate):
    """``q_hat[i, k, b]`` (under ``vmap``) is fold ``f(i)``'s model on ``concat(x_i, e_b, onehot(k))``;
    it learns the position-based truth ``theta_k rho(x, b)``."""
    problem, logs, _, _, q_hat, fits = slate
    q_hat = q_hat[0]
    for i, k, b in ((5, 1, 3), (17, 0, 0)):
        params = jax.tree.map(lambda leaf, i=i: leaf[fits.fold[i]], fits.params)
        features = jnp.concatenate([problem.item_features[b], jax.nn.one_hot(k, 2)])
        expected = RewardModel(CONFIG).predict_logged(params, logs.context[i], features)
        np.testing.assert_allclose(q_hat[i, k, b], expected, rtol=1e-5)
    truth = position_click_probs(problem, logs.context)
    assert float(jnp.corrcoef(q_hat.ravel(), truth.ravel())[0, 1]) > 0.4
    assert float(q_hat[:, 0].mean()) > float(q_hat[:, 1].mean())  # examined less further down


def test_bad_shapes_name_the_argument(slate):
    problem, logs, keys, *_ = slate
    with pytest.raises(InputError, match="rewards"):
        MODEL.cross_fit(keys[0], logs.context, logs.lists, logs.rewards[:, :1], problem.item_features)
    rows = position_rows(logs.context, logs.lists, logs.rewards, problem.item_features)
    with pytest.raises(InputError, match="group_size"):
        RewardModel(CONFIG).fold_fits(keys[0], rows, group_size=7)
