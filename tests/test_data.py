"""The logged-data container and the synthetic generators."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax import LoggedData
from towerjax.checks import InputError
from towerjax.propensities import rating_logging_policy, rating_pscore
from towerjax.synthetic import (
    behavior_policy,
    blog_problem,
    expected_reward,
    obp_problem,
    sample_contexts,
    sample_logged_data,
)

N, A = 20, 4


def _arrays(**override):
    rng = np.random.default_rng(0)
    arrays = dict(
        context=rng.normal(size=(N, 3)),
        action_context=rng.normal(size=(A, 2)),
        action=rng.integers(0, A, N),
        reward=rng.integers(0, 2, N).astype(float),
        pscore=np.full(N, 1.0 / A),
        pi_b=np.full((N, A), 1.0 / A),
    )
    arrays.update(override)
    return arrays


def test_from_arrays_builds_a_pytree_with_the_right_shapes():
    data = LoggedData.from_arrays(**_arrays())
    assert data.n_rounds == N and data.n_actions == A
    assert data.action.dtype == jnp.int32
    leaves = jax.tree.leaves(data)
    assert len(leaves) == 6  # expected_reward is absent
    doubled = jax.jit(lambda d: jax.tree.map(lambda x: x * 2, d))(data)
    np.testing.assert_allclose(doubled.reward, 2 * data.reward)


@pytest.mark.parametrize(
    "override, argument",
    [
        (dict(action=np.zeros(N - 1, int)), "action"),
        (dict(reward=np.zeros(N + 1)), "reward"),
        (dict(pscore=np.zeros(N)), "pscore"),
        (dict(pscore=np.full(N, 1.5)), "pscore"),
        (dict(pscore=np.full(N, -0.1)), "pscore"),
        (dict(action=np.full(N, A)), "action"),
        (dict(action=np.full(N, -1)), "action"),
        (dict(reward=np.where(np.arange(N) == 3, np.nan, 0.0)), "reward"),
        (dict(context=np.full((N, 3), np.inf)), "context"),
        (dict(context=np.zeros(N)), "context"),
        (dict(pi_b=np.full((N, A), 0.5)), "pi_b"),
        (dict(pi_b=np.full((N, A + 1), 1.0 / (A + 1))), "pi_b"),
    ],
)
def test_bad_inputs_raise_errors_naming_the_argument(override, argument):
    with pytest.raises(ValueError, match=argument):
        LoggedData.from_arrays(**_arrays(**override))


def test_nan_reward_error_names_the_row():
    with pytest.raises(ValueError, match=r"reward: expected finite values, got nan at index \(3,\)"):
        LoggedData.from_arrays(**_arrays(reward=np.where(np.arange(N) == 3, np.nan, 0.0)))


def test_non_integer_actions_are_rejected():
    with pytest.raises(TypeError, match="action"):
        LoggedData.from_arrays(**_arrays(action=np.full(N, 0.5)))


def test_obp_round_trip():
    data = LoggedData.from_arrays(**_arrays(expected_reward=np.full((N, A), 0.3)))
    feedback = data.to_obp()
    assert feedback["pi_b"].shape == (N, A, 1)
    assert feedback["n_rounds"] == N and feedback["n_actions"] == A
    back = LoggedData.from_obp(feedback)
    chex.assert_trees_all_close(back, data)


def test_from_obp_rejects_several_positions():
    feedback = LoggedData.from_arrays(**_arrays()).to_obp()
    feedback["position"] = np.arange(N) % 2
    with pytest.raises(ValueError, match="position"):
        LoggedData.from_obp(feedback)
    feedback["position"] = None
    feedback["pi_b"] = np.full((N, A, 2), 0.5 / A)
    with pytest.raises(ValueError, match="pi_b"):
        LoggedData.from_obp(feedback)


def _three_slot_feedback(n=12, n_actions=4):
    """An Open Bandit Dataset-like dict: rows cycle through slots 0, 1, 2, pi_b is (n, A, 3)."""
    rng = np.random.default_rng(1)
    position = np.arange(n) % 3
    pi_b = rng.dirichlet(np.ones(n_actions), size=(n, 3)).transpose(0, 2, 1)  # (n, A, K)
    action = rng.integers(0, n_actions, n)
    return {
        "n_rounds": n,
        "n_actions": n_actions,
        "context": rng.normal(size=(n, 2)),
        "action_context": np.eye(n_actions),
        "action": action,
        "position": position,
        "reward": rng.integers(0, 2, n),
        "pscore": pi_b[np.arange(n), action, position],
        "pi_b": pi_b,
    }


def test_from_obp_with_three_positions_needs_a_documented_handling():
    feedback = _three_slot_feedback()
    with pytest.raises(InputError, match=r"holds 3 positions \[0, 1, 2\].*'feature'.*'pooled'") as err:
        LoggedData.from_obp(feedback)
    assert err.value.argument == "position_handling"
    with pytest.raises(InputError, match="position_handling: expected one of"):
        LoggedData.from_obp(feedback, position_handling="separate")
    with pytest.raises(InputError, match=r"feedback\['position'\]: position_handling='pooled' needs"):
        LoggedData.from_obp(dict(feedback, position=None), position_handling="pooled")


def test_pooled_positions_keep_each_rows_own_slot():
    feedback = _three_slot_feedback()
    data = LoggedData.from_obp(feedback, position_handling="pooled")
    np.testing.assert_array_equal(data.position, feedback["position"])
    assert data.position.dtype == jnp.int32
    np.testing.assert_allclose(data.context, feedback["context"], rtol=1e-6)
    # pi_b is the row's own slot's distribution, so pscore is its entry at the logged item.
    rows = np.arange(12)
    np.testing.assert_allclose(data.pi_b, feedback["pi_b"][rows, :, feedback["position"]], rtol=1e-6)
    np.testing.assert_allclose(data.pscore, data.pi_b[rows, data.action], rtol=1e-6)
    # One slot alone is a single-slot bandit.
    slot = data.take_rows(data.position == 1)
    assert slot.n_rounds == 4 and np.all(np.asarray(slot.position) == 1)
    np.testing.assert_allclose(slot.pscore, np.asarray(data.pscore)[1::3])


def test_feature_positions_append_a_slot_one_hot():
    feedback = _three_slot_feedback()
    data = LoggedData.from_obp(feedback, position_handling="feature")
    assert data.context.shape == (12, 5)
    np.testing.assert_array_equal(data.context[:, 2:], np.eye(3)[feedback["position"]])
    np.testing.assert_array_equal(data.position, feedback["position"])
    wider = LoggedData.from_obp(feedback, position_handling="feature", n_positions=4)
    np.testing.assert_array_equal(wider.context[:, 2:], np.eye(4)[feedback["position"]])
    with pytest.raises(InputError, match="n_positions: expected at least 3"):
        LoggedData.from_obp(feedback, position_handling="feature", n_positions=2)


def test_position_data_is_a_pytree_that_jits_vmaps_and_exports():
    data = LoggedData.from_obp(dict(_three_slot_feedback(), pi_b=None), position_handling="pooled")
    assert len(jax.tree.leaves(data)) == 6  # context, items, action, reward, pscore, position
    take = jax.jit(lambda d, rows: d.take_rows(rows))
    chex.assert_trees_all_equal(take(data, jnp.arange(3)), data.take_rows(jnp.arange(3)))
    stacked = jax.tree.map(lambda *v: jnp.stack(v), data, data.take_rows(jnp.arange(11, -1, -1)))
    first = jax.vmap(lambda d: d.take_rows(jnp.array([0, 2])))(stacked)
    for s in range(2):
        one = jax.tree.map(lambda v, s=s: v[s], stacked)
        chex.assert_trees_all_equal(
            jax.tree.map(lambda v, s=s: v[s], first), one.take_rows(jnp.array([0, 2]))
        )
    feedback = data.to_obp()
    np.testing.assert_array_equal(feedback["position"], data.position)
    chex.assert_trees_all_equal(LoggedData.from_obp(feedback, position_handling="pooled"), data)
    with_pi_b = LoggedData.from_obp(_three_slot_feedback(), position_handling="pooled")
    with pytest.raises(InputError, match=r"pi_b: a multi-position log .*dataclasses.replace"):
        with_pi_b.to_obp()


def test_single_position_logs_read_as_before():
    feedback = LoggedData.from_arrays(**_arrays()).to_obp()
    assert LoggedData.from_obp(feedback).position is None
    zeros = LoggedData.from_obp(dict(feedback, position=np.zeros(N, int)))
    np.testing.assert_array_equal(zeros.position, np.zeros(N))
    with pytest.raises(InputError, match="position: expected 0-based slots"):
        LoggedData.from_arrays(**_arrays(position=np.full(N, -1)))
    with pytest.raises(TypeError, match="position: expected integer"):
        LoggedData.from_arrays(**_arrays(position=np.full(N, 0.5)))


# --- rating-style logs --------------------------------------------------------------------

P_OBS = np.array([[0.5, 0.25, 0.25, 0.0], [0.1, 0.1, 0.4, 0.4], [0.9, 0.05, 0.05, 0.2]])


def test_rating_pscore_is_observation_propensity_over_the_users_total():
    # User 0: S = 1.0; user 1: S = 1.0; user 2: S = 1.2.
    pscore = rating_pscore(P_OBS, user=[0, 1, 2, 2], item=[1, 3, 0, 3])
    np.testing.assert_allclose(pscore, [0.25, 0.4, 0.9 / 1.2, 0.2 / 1.2])
    policy = rating_logging_policy(P_OBS)
    np.testing.assert_allclose(policy.sum(axis=1), 1.0)
    np.testing.assert_allclose(pscore, policy[[0, 1, 2, 2], [1, 3, 0, 3]])


def test_rating_pscore_makes_ips_estimate_the_activity_weighted_value():
    # O_ui ~ Bernoulli(P_ui), each observed rating one round: E[sum_obs pi r / p] = sum_u S_u V_u.
    rng = np.random.default_rng(0)
    rating = rng.integers(1, 6, P_OBS.shape).astype(float)
    pi = rng.dirichlet(np.ones(4), size=3)
    pi[0, 3] = 0.0  # no mass where the log never looks
    pi /= pi.sum(axis=1, keepdims=True)
    observed = rng.random((4000, *P_OBS.shape)) < P_OBS
    users, items = np.nonzero(P_OBS > 0)
    p = np.ones(P_OBS.shape)  # never divides: pi r is 0 where P is 0
    p[users, items] = rating_pscore(P_OBS, users, items)
    totals = np.sum(observed * pi * rating / p, axis=(1, 2))
    activity = P_OBS.sum(axis=1)
    expected = np.sum(activity * np.sum(pi * rating, axis=1))
    assert abs(totals.mean() - expected) < 4 * totals.std() / np.sqrt(len(totals))
    # And sum_obs w is unbiased for sum_u S_u, so SNIPS estimates the same weighted value.
    weights = np.sum(observed * pi / p, axis=(1, 2))
    assert abs(weights.mean() - activity.sum()) < 4 * weights.std() / np.sqrt(len(weights))


@pytest.mark.parametrize(
    "args, argument",
    [
        ((P_OBS, [0, 3], [0, 0]), "user"),
        ((P_OBS, [0, 0], [0, 4]), "item"),
        ((P_OBS, [0, 0], [0, 3]), "observation_propensity"),  # P = 0 where a rating was observed
        ((P_OBS * 2, [0], [0]), "observation_propensity"),
        ((P_OBS[0], [0], [0]), "observation_propensity"),
        ((P_OBS, [0, 1], [0]), "item"),
    ],
)
def test_rating_pscore_errors_name_the_argument(args, argument):
    with pytest.raises(InputError) as err:
        rating_pscore(*args)
    assert err.value.argument == argument


# --- synthetic data -----------------------------------------------------------------------

PROBLEM = blog_problem(jax.random.key(0), n_actions=6, dim=5, behavior="epsilon-greedy", epsilon=0.2)
sample = jax.jit(sample_logged_data, static_argnums=2)


def test_pscore_is_the_behaviour_probability_of_the_logged_action():
    for problem in (
        PROBLEM,
        blog_problem(jax.random.key(1), n_actions=6, dim=5),
        obp_problem(jax.random.key(2)),
    ):
        data = sample(jax.random.key(3), problem, 500)
        np.testing.assert_allclose(data.pscore, data.pi_b[jnp.arange(500), data.action])
        np.testing.assert_allclose(data.pi_b.sum(-1), 1.0, rtol=1e-5)


def test_epsilon_greedy_structure():
    data = sample(jax.random.key(4), PROBLEM, 2000)
    greedy = np.argmax(np.asarray(data.context @ PROBLEM.action_context.T), axis=-1)
    pi_b = np.asarray(data.pi_b)
    expected = np.full_like(pi_b, 0.2 / 6)
    expected[np.arange(2000), greedy] += 0.8
    np.testing.assert_allclose(pi_b, expected, rtol=1e-5)
    # The logged action is the greedy one about 1 - eps + eps / A of the time.
    share = np.mean(np.asarray(data.action) == greedy)
    assert abs(share - (0.8 + 0.2 / 6)) < 0.04


def test_expected_reward_of_a_row_does_not_depend_on_the_batch():
    x = sample_contexts(jax.random.key(5), PROBLEM, 64)
    whole = expected_reward(PROBLEM, x)
    for i in (0, 17, 63):
        np.testing.assert_allclose(expected_reward(PROBLEM, x[i : i + 1])[0], whole[i], rtol=1e-6)
        np.testing.assert_allclose(expected_reward(PROBLEM, x[: i + 1])[i], whole[i], rtol=1e-6)
    assert np.all((whole > 0) & (whole < 1))


def test_same_key_same_data_and_fresh_test_contexts_share_the_problem():
    a = sample(jax.random.key(6), PROBLEM, 100)
    b = sample(jax.random.key(6), PROBLEM, 100)
    chex.assert_trees_all_equal(a, b)
    c = sample(jax.random.key(7), PROBLEM, 100)
    assert not np.allclose(a.context, c.context)
    np.testing.assert_array_equal(a.action_context, c.action_context)


def test_generation_vmaps_over_keys_like_a_loop():
    keys = jax.random.split(jax.random.key(8), 3)
    make = lambda k: sample_logged_data(k, blog_problem(k, n_actions=4, dim=3), 50)  # noqa: E731
    batched = jax.jit(jax.vmap(make))(keys)
    for i in range(3):
        chex.assert_trees_all_close(jax.tree.map(lambda v, i=i: v[i], batched), make(keys[i]), rtol=1e-5)


def test_obp_linear_behaviour_sharpens_with_beta_and_flips_with_its_sign():
    make = lambda beta: obp_problem(jax.random.key(9), n_actions=5, dim_context=3, beta=beta)  # noqa: E731
    x = sample_contexts(jax.random.key(10), make(1.0), 10)
    entropy = lambda beta: float(  # noqa: E731
        -jnp.mean(jnp.sum(behavior_policy(make(beta), x) * jnp.log(behavior_policy(make(beta), x)), -1))
    )
    assert entropy(8.0) < entropy(1.0) < entropy(0.0)
    np.testing.assert_allclose(entropy(0.0), np.log(5), rtol=1e-5)
    np.testing.assert_array_equal(
        jnp.argmax(behavior_policy(make(-2.0), x), -1), jnp.argmin(behavior_policy(make(2.0), x), -1)
    )
    assert make(1.0).action_context.shape == (5, 5)  # one-hot items, as in OBP


def test_problem_arguments_are_checked():
    with pytest.raises(ValueError, match="behavior"):
        blog_problem(jax.random.key(0), behavior="greedy")
    with pytest.raises(ValueError, match="epsilon"):
        blog_problem(jax.random.key(0), behavior="epsilon-greedy", epsilon=1.5)
    with pytest.raises(ValueError, match="n_actions"):
        blog_problem(jax.random.key(0), n_actions=0)
