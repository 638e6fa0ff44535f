"""The logged-data container and the synthetic generators."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax import LoggedData
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
