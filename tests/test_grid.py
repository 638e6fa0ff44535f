"""benchmarks/grid.py: every task's logs have the seed axis, distributions that sum to one,
propensities read off ``pi_b`` at the logged action, rewards in {0, 1} and seed-determined draws;
the MovieLens pieces (binning, Schnabel's propensities, the factorisation, random exposure) and
the ranking metrics on a hand-computed example."""

import importlib.util
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _grid():
    if "benchmarks_grid" not in sys.modules:
        spec = importlib.util.spec_from_file_location("benchmarks_grid", ROOT / "benchmarks" / "grid.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks_grid"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["benchmarks_grid"]


def _check_logs(logs, seeds, n, n_actions, *, with_q=True):
    """The seed axis, ``pi_b`` rows summing to one, ``pscore = pi_b[i, a_i]``, rewards in {0, 1}."""
    pi_b, action = np.asarray(logs.pi_b), np.asarray(logs.action)
    assert action.shape == (seeds, n) and logs.reward.shape == (seeds, n) and logs.pscore.shape == (seeds, n)
    assert pi_b.shape == (seeds, n, n_actions)
    assert logs.n_actions == n_actions and action.min() >= 0 and action.max() < n_actions
    np.testing.assert_allclose(pi_b.sum(-1), 1.0, atol=1e-5)
    assert pi_b.min() > 0
    np.testing.assert_array_equal(np.take_along_axis(pi_b, action[..., None], -1)[..., 0], logs.pscore)
    assert set(np.unique(np.asarray(logs.reward))) <= {0.0, 1.0}
    if with_q:
        assert logs.expected_reward.shape == (seeds, n, n_actions)
    else:
        assert logs.expected_reward is None


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_every_task_has_provenance_and_sizes():
    grid = _grid()
    assert set(grid.PROVENANCE) == set(grid.SIZES) == set(grid.TASKS)
    for name, sizes in grid.SIZES.items():
        assert {"n_train", "n_actions", "logger", "noise"} <= set(sizes), name
        assert grid.PROVENANCE[name].endswith("."), name
    n_train = [s["n_train"] for s in grid.SIZES.values()]
    n_actions = [s["n_actions"] for s in grid.SIZES.values()]
    assert min(n_train) <= 1200 and max(n_train) >= 100_000
    assert min(n_actions) == 10 and max(n_actions) == 1000
    assert {s["logger"] for s in grid.SIZES.values()} >= {"uniform", "competent", "misleading"}


def test_digits_competent_logs_and_a_logger_between_uniform_and_best():
    pytest.importorskip("sklearn")
    grid = _grid()
    train, test = grid.TASKS["digits-competent-1k"](2, 0)
    _check_logs(train, 2, 1200, 10)
    _check_logs(test, 2, 597, 10)
    assert train.context.shape == (2, 1200, 64) and train.action_context.shape == (2, 10, 10)
    q = np.asarray(train.expected_reward)
    np.testing.assert_allclose(np.sort(q, -1)[..., -2:], np.broadcast_to([0.1, 0.9], (2, 1200, 2)), rtol=1e-6)
    v = grid.values(test)
    np.testing.assert_allclose(v["uniform"], 0.18, rtol=1e-5)
    np.testing.assert_allclose(v["best"], 0.9, rtol=1e-5)
    assert np.all(v["logging"] > v["uniform"] + 0.2) and np.all(v["logging"] < v["best"] - 0.2)


def test_reduction_draws_are_fixed_by_the_seed_and_repeats_multiply_the_log():
    pytest.importorskip("sklearn")
    task = _grid().TASKS["digits-misleading-6k"]
    train, test = task(1, 3)
    _check_logs(train, 1, 6000, 10)
    assert _equal((train, test), task(1, 3))
    assert not np.array_equal(train.action, task(1, 4)[0].action)
    two, _ = task(2, 3)
    assert _equal(jax.tree.map(lambda x: x[:1], two), train)  # seed s of a build is the same draw
    # the misleading logger: 0.5 on the near miss, 0.1 on the right class, and q's near miss 0.3
    pi_b, q = np.asarray(train.pi_b[0]), np.asarray(train.expected_reward[0])
    right = q.argmax(-1)
    np.testing.assert_allclose(pi_b[np.arange(6000), right], 0.1, rtol=1e-6)
    np.testing.assert_allclose(pi_b[np.arange(6000), (right + 1) % 10], 0.5, rtol=1e-6)
    np.testing.assert_allclose(q[np.arange(6000), (right + 1) % 10], 0.3, rtol=1e-6)


def test_competent_logger_reaches_the_halfway_value_with_floored_probabilities():
    pytest.importorskip("sklearn")
    grid = _grid()
    rng = np.random.default_rng(0)
    y = rng.integers(5, size=600)
    x = np.eye(5)[y] + 0.3 * rng.standard_normal((600, 5))
    q = grid.class_reward(y, 5, "clean")
    logger = grid.fit_competent_logger(x[:60], y[:60], 5, x, q)
    pi_b = logger(x)
    np.testing.assert_allclose(pi_b.sum(-1), 1.0)
    assert pi_b.min() >= 1e-3 / (1 + 5e-3)
    target = q.mean() + 0.5 * (q.max(-1).mean() - q.mean())
    np.testing.assert_allclose(np.sum(pi_b * q, -1).mean(), target, atol=1e-3)


def test_synthetic_task_keeps_pi_b_but_not_q_on_the_training_logs():
    grid = _grid()
    task = grid.SyntheticTask(n_actions=20, n_train=1000, n_test=500, chunk=500)
    train, test = task(2, 0)
    _check_logs(train, 2, 1000, 20, with_q=False)
    _check_logs(test, 2, 500, 20)
    assert train.context.shape == (2, 1000, 5) and train.action_context.shape == (2, 20, 10)
    np.testing.assert_array_equal(train.action_context, test.action_context)
    assert not np.array_equal(train.action_context[0], train.action_context[1])  # a problem per seed
    assert _equal((train, test), task(2, 0))
    with pytest.raises(ValueError, match="n_train"):
        grid.SyntheticTask(n_actions=20, n_train=1001, n_test=500, chunk=500)(1, 0)


def test_bin_to_marginal_gives_the_target_shares():
    grid = _grid()
    ratings = grid.bin_to_marginal(np.random.default_rng(0).permutation(1000).reshape(10, 100))
    np.testing.assert_array_equal(np.bincount(ratings.ravel(), minlength=6)[1:], [520, 240, 140, 70, 30])
    assert ratings.shape == (10, 100)


def test_schnabel_policy_weighs_ratings_by_alpha_and_popularity_by_gamma():
    grid = _grid()
    ratings = np.array([[5, 4, 3, 2, 1, 4]])
    popularity = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.25])
    pi_b = grid.schnabel_policy(ratings, popularity, alpha=0.25, gamma=0.5)
    np.testing.assert_allclose(pi_b.sum(), 1.0)
    ratio = pi_b[0] / pi_b[0, 0]
    np.testing.assert_allclose(ratio, [1.0, 1.0, 0.25, 0.0625, 0.015625, 0.5])


def test_complete_ratings_recovers_a_low_rank_matrix_with_biases():
    grid = _grid()
    rng = np.random.default_rng(0)
    truth = (
        3
        + rng.normal(size=(30, 1))
        + rng.normal(size=(1, 40))
        + rng.normal(size=(30, 2)) @ rng.normal(size=(2, 40))
    )
    observed = rng.random((30, 40)) < 0.7
    user, item = np.nonzero(observed)
    completed = grid.complete_ratings(user, item, truth[observed], 30, 40, rank=2, l2=1e-3, iterations=50)
    assert completed.shape == (30, 40)
    assert np.sqrt(np.mean((completed - truth) ** 2)) < 0.05


def test_movielens_task_when_cached():
    from towerjax.datasets import default_cache_dir
    from towerjax.datasets._wheel import RECBOLE_WHEEL

    if not (default_cache_dir() / RECBOLE_WHEEL.filename).is_file():
        pytest.skip("the MovieLens wheel is not in the cache")
    grid = _grid()
    train, test = grid.TASKS["movielens-schnabel"](1, 0)
    _check_logs(train, 1, 50_000, 1000)
    _check_logs(test, 1, 943, 1000)
    np.testing.assert_array_equal(test.context.ids["user_id"][0], np.arange(943))
    world = grid.schnabel_world()
    np.testing.assert_allclose(test.pi_b[0], world.pi_b, rtol=1e-6)
    user = np.asarray(train.context.ids["user_id"][0, :500])
    np.testing.assert_array_equal(train.expected_reward[0, :500], world.q[user].astype(np.float32))
    np.testing.assert_array_equal(train.pi_b[0, :500], world.pi_b[user].astype(np.float32))
    shares = np.bincount(world.ratings.ravel(), minlength=6)[1:] / world.ratings.size
    np.testing.assert_allclose(shares, grid.SCHNABEL_MARGINAL, atol=1e-3)
    v = grid.values(test)
    assert v["uniform"][0] < v["logging"][0] < v["best"][0]


def test_random_exposure_shows_each_user_the_same_number_of_items():
    grid = _grid()
    exposed = grid.random_exposure(0, 50, 30, per_user=7)
    assert exposed.shape == (50, 30) and exposed.dtype == bool
    np.testing.assert_array_equal(exposed.sum(1), 7)
    np.testing.assert_array_equal(exposed, grid.random_exposure(0, 50, 30, per_user=7))
    assert not np.array_equal(exposed, grid.random_exposure(1, 50, 30, per_user=7))
    with pytest.raises(ValueError, match="per_user"):
        grid.random_exposure(0, 5, 3, per_user=4)


def test_ranking_metrics_on_a_hand_computed_example():
    grid = _grid()
    scores = np.array(
        [
            [0.9, 0.8, 0.3, 0.1, 0.0, 0.0, 0.0],  # AUC 3/4; NDCG (1 + 1/2) / (1 + 1/log2 3)
            [0.0, 0.5, 0.4, 0.0, 0.0, 0.0, 0.0],  # no relevant exposed item: left out of both
            [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0],  # ties: AUC 1/2; the relevant item 4th: 1/log2 5
            [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # AUC 1/6; the relevant item 6th, past @5: NDCG 0
            [0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0],  # only relevant exposed items: no AUC, NDCG 1
        ]
    )
    relevance = np.array(
        [
            [1, 0, 1, 0, 1, 1, 1],
            [1, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 1, 0],
            [1, 1, 0, 0, 0, 0, 0],
        ]
    )
    exposed = np.array(
        [
            [1, 1, 1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 1],
            [1, 1, 0, 0, 0, 0, 0],
        ]
    )
    metrics = grid.ranking_metrics(scores, relevance, exposed)
    np.testing.assert_allclose(metrics["auc"], np.mean([0.75, 0.5, 1 / 6]))
    ndcg = [1.5 / (1 + 1 / np.log2(3)), 1 / np.log2(5), 0.0, 1.0]
    np.testing.assert_allclose(metrics["ndcg5"], np.mean(ndcg))
    assert (metrics["auc_users"], metrics["ndcg_users"]) == (3, 4)
    with pytest.raises(ValueError, match="same"):
        grid.ranking_metrics(scores, relevance[:, :3], exposed)
