"""The built-in problem at a million items (issue 24): logs drawn in row chunks carry the
problem instead of [n, A] arrays, their true values are computed in chunks, and a run that
would not fit is refused before it starts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax.synthetic
import towerjax.training.loop
from towerjax.checks import InputError
from towerjax.cli import main
from towerjax.synthetic import (
    SyntheticProblem,
    blog_problem,
    obp_problem,
    sample_contexts,
    sample_logged_data,
)
from towerjax.training import TrainConfig, make_train
from towerjax.training.loop import policy_values
from towerjax.training.memory import check_run_memory, run_memory

_CONFIG = TrainConfig(
    hidden_sizes=(8,), embedding_size=4, batch_size=16, epochs=1, validation_fraction=0.0, select=None
)
_sample = jax.jit(sample_logged_data, static_argnums=2, static_argnames="dense")
_PROBLEM = blog_problem(jax.random.key(3), n_actions=7, dim=3, behavior="epsilon-greedy", epsilon=0.2)


def test_chunked_values_equal_the_dense_ones(monkeypatch):
    data = sample_logged_data(jax.random.key(1), _PROBLEM, 90, dense=True)
    test = sample_logged_data(jax.random.key(2), _PROBLEM, 50, dense=True)
    monkeypatch.setattr(towerjax.training.loop, "row_chunk", lambda n, a: 3)  # several chunks of 3 rows

    def without_arrays(logs):  # the same rows with the problem in place of pi_b and expected_reward
        return dataclasses.replace(logs, pi_b=None, expected_reward=None, problem=_PROBLEM)

    result = jax.jit(make_train(_CONFIG))(jax.random.key(0), without_arrays(data), without_arrays(test))
    train_value, _ = policy_values(_CONFIG, result.params, data)
    test_value, top_share = policy_values(_CONFIG, result.params, test)
    q = test.expected_reward
    expected = {
        "train_value": train_value,
        "test_value": test_value,
        "top_share": top_share,
        "behavior_value": jnp.mean(jnp.sum(test.pi_b * q, axis=-1)),
        "optimal_value": jnp.mean(jnp.max(q, axis=-1)),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(np.ravel(getattr(result, name))[-1], value, atol=1e-6, err_msg=name)
    assert np.isfinite(result.behavior_value) and np.isfinite(result.initial_value)


def test_closed_form_moments_equal_those_of_the_logits(monkeypatch):
    dense = blog_problem(jax.random.key(5), n_actions=30, dim=4, behavior="epsilon-greedy")
    monkeypatch.setattr(towerjax.synthetic, "DENSE_LOG_ELEMENTS", 0)  # as for a large catalogue
    closed = blog_problem(jax.random.key(5), n_actions=30, dim=4, behavior="epsilon-greedy")
    for name in ("reward_moments", "behavior_moments"):
        np.testing.assert_allclose(getattr(closed, name), getattr(dense, name), rtol=1e-5)


def test_small_logs_stay_dense_and_identical():
    data = _sample(jax.random.key(1), _PROBLEM, 40)
    dense = _sample(jax.random.key(1), _PROBLEM, 40, dense=True)
    jax.tree.map(np.testing.assert_array_equal, data, dense)
    assert data.pi_b.shape == data.expected_reward.shape == (40, 7) and data.problem is None


@pytest.mark.parametrize(
    "problem",
    [
        blog_problem(jax.random.key(3), n_actions=5, dim=4),
        blog_problem(jax.random.key(3), n_actions=5, dim=4, behavior="epsilon-greedy", epsilon=0.3),
        obp_problem(jax.random.key(3), n_actions=5, beta=2.0),
    ],
    ids=["uniform", "epsilon-greedy", "linear"],
)
def test_chunked_logs_follow_the_logging_policy(monkeypatch, problem):
    n = 8000
    monkeypatch.setattr(towerjax.synthetic, "row_chunk", lambda n, a: 4096)
    data = _sample(jax.random.key(1), problem, n, dense=False)
    assert data.pi_b is None and data.expected_reward is None and data.problem is not None
    contexts = sample_contexts(jax.random.split(jax.random.key(1), 3)[0], problem, n)
    np.testing.assert_array_equal(data.context, contexts)  # those of the dense path
    rows = jnp.arange(n)
    pi_b, q = problem.behavior_policy(data.context), problem.expected_reward(data.context)
    np.testing.assert_allclose(data.pscore, pi_b[rows, data.action], atol=1e-6)
    # The action frequencies match the mean logging probabilities (5 standard errors).
    frequency = np.bincount(np.asarray(data.action), minlength=5) / n
    expected = np.asarray(jnp.mean(pi_b, axis=0))
    assert np.all(np.abs(frequency - expected) < 5 * np.sqrt(expected * (1 - expected) / n))
    # Rewards are Bernoulli(q(x, a)) of the logged item.
    assert abs(float(jnp.mean(data.reward)) - float(jnp.mean(q[rows, data.action]))) < 5 * 0.5 / np.sqrt(n)


def test_a_run_that_does_not_fit_is_refused_naming_the_setting():
    huge = SyntheticProblem(n_actions=10**9, n_rounds=2000, n_test_rounds=500)
    with pytest.raises(InputError) as err:
        check_run_memory(TrainConfig(sampled_softmax=1024), huge, available=4 << 30)
    assert err.value.argument == "n_actions" and "GB available" in err.value.message
    with pytest.raises(InputError) as err:  # a full softmax over a million items: its step
        check_run_memory(TrainConfig(), SyntheticProblem(n_actions=10**6), available=4 << 30)
    assert err.value.argument == "sampled_softmax"
    with pytest.raises(InputError, match="n_actions"):  # the Python path, before any array
        make_train(TrainConfig(sampled_softmax=1024), huge)(jax.random.key(0))
    million = SyntheticProblem(n_actions=10**6, n_rounds=2000, n_test_rounds=500)
    assert (
        check_run_memory(TrainConfig(sampled_softmax=1024, batch_size=100), million, available=4 << 30) < 3e9
    )
    assert run_memory(TrainConfig(), SyntheticProblem())["logs"] > 0


def test_the_command_line_refuses_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--n-actions", str(10**10), "--sampled-softmax", "1024", "--epochs", "1"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "argument --n-actions:" in lines[-1] and "GB available" in lines[-1]
