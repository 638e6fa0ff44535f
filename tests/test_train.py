"""Training runs: minibatching, jit/vmap agreement, learning, the reward model, evaluation.

Compiling a run takes seconds and running a tiny one milliseconds, so the tests share compiled
programs: JAX's persistent compilation cache is on for this module (conftest.py's
``compilation_cache``), so a ``jax.jit(make_train(...))`` of a config and shapes compiled by an
earlier test loads instead of compiling again, and the seed-layout tests share one module
fixture (``train_seeds`` runs carry the epoch callback, which the cache cannot store).
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import towerjax
from towerjax.batching import epoch_batches
from towerjax.checks import InputError
from towerjax.objectives import DR, IPS, SNIPS, TwoStage
from towerjax.synthetic import SyntheticProblem, blog_problem, sample_logged_data
from towerjax.training import TrainConfig, make_train, seed_sharding, train_seeds, validation_rows

pytestmark = pytest.mark.usefixtures("compilation_cache")

PROBLEM = SyntheticProblem(n_rounds=53, n_test_rounds=40, n_actions=3, dim=4)
TINY = TrainConfig(
    hidden_sizes=(8,),
    embedding_size=4,
    batch_size=7,
    epochs=2,
    reward_model=towerjax.RewardModelConfig(hidden_sizes=(8,), epochs=2, batch_size=16),
)
# One objective per path through the trainer: a plain loss, a reward model's q_hat, a
# per-step key. (The other objectives' losses run on the first path; tests/test_objectives.py
# checks each under jit.)
OBJECTIVES = [IPS(), DR(), TwoStage(num_samples=4)]


@pytest.mark.parametrize("n, batch_size", [(53, 7), (53, 1), (53, 53), (50, 10)])
def test_epoch_batches_cover_every_event_once(n, batch_size):
    index, mask = epoch_batches(jax.random.key(0), n, batch_size)
    assert index.shape == mask.shape == (-(-n // batch_size), batch_size)
    real = np.sort(np.asarray(index)[np.asarray(mask) == 1])
    np.testing.assert_array_equal(real, np.arange(n))


@pytest.mark.parametrize("objective", OBJECTIVES, ids=lambda o: o.name)
def test_vmapped_training_matches_a_loop_over_seeds(objective):
    config = dataclasses.replace(TINY, objective=objective)
    train = make_train(config, PROBLEM)
    keys = jax.random.split(jax.random.key(1), 2)
    batched = jax.jit(jax.vmap(train))(keys)
    looped = [jax.jit(train)(k) for k in keys]
    for i in range(2):
        _assert_same_run(jax.tree.map(lambda v, i=i: v[i], batched), looped[i])
    assert np.all(np.isfinite(batched.loss))


def _assert_same_run(a, b):
    """Equal up to float rounding. Batched and single matmuls sum in different orders, and
    Adam turns a gradient that is zero up to rounding (softmax is shift-invariant, so some
    directions have none) into a full +-lr step of either sign, so parameters are compared
    at the scale of a few steps and the metrics tightly."""
    np.testing.assert_allclose(a.loss[0], b.loss[0], rtol=1e-4)
    for name in ("train_value", "test_value", "initial_value", "behavior_value", "optimal_value"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=2e-3, err_msg=name)
    chex.assert_trees_all_close(a.params, b.params, rtol=0, atol=6 * TINY.learning_rate)


def test_jitted_training_matches_eager():
    # The config of test_vmapped_training_matches_a_loop_over_seeds[dr]: its compiled loop is reused.
    config = dataclasses.replace(TINY, objective=DR())
    train = make_train(config, PROBLEM)
    key = jax.random.key(2)
    _assert_same_run(jax.jit(train)(key), train(key))


def test_training_on_given_logs_and_unknown_values():
    problem = blog_problem(jax.random.key(3), n_actions=3, dim=4)
    data = sample_logged_data(jax.random.key(4), problem, 30)
    train = jax.jit(make_train(TINY))
    result = train(jax.random.key(5), data)
    assert result.test_value.shape == (TINY.epochs,) and np.all(np.isfinite(result.test_value))
    blind = dataclasses.replace(data, expected_reward=None, pi_b=None)
    result = train(jax.random.key(5), blind)
    assert np.all(np.isnan(result.test_value)) and np.isnan(result.optimal_value)


def test_train_seeds_on_your_own_logs_equals_a_loop_of_make_train():
    problem = blog_problem(jax.random.key(3), n_actions=3, dim=4)
    data = sample_logged_data(jax.random.key(4), problem, 30)
    test = sample_logged_data(jax.random.key(6), problem, 20)
    config = dataclasses.replace(TINY, objective=DR())
    q_hat = jax.random.uniform(jax.random.key(7), (30, 3))
    result, timing = train_seeds(config, seeds=2, seed=1, data=data, test_data=test, q_hat=q_hat)
    assert timing["seed_steps"] == 2 * TINY.epochs * 4  # ceil(24 / 7): 6 of the 30 rows validate
    train = jax.jit(make_train(config))
    for s, key in enumerate(jax.random.split(jax.random.key(1), 2)):
        _assert_same_run(jax.tree.map(lambda v, s=s: v[s], result), train(key, data, test, q_hat))
    # A given q_hat is the reward model: another one gives another run.
    other = train(jax.random.split(jax.random.key(1), 2)[0], data, test, 1.0 - q_hat)
    assert not np.allclose(other.test_value, result.test_value[0])


def test_per_seed_data_gives_each_seed_its_own_logs():
    problem = blog_problem(jax.random.key(3), n_actions=3, dim=4)
    logs = [sample_logged_data(jax.random.key(10 + s), problem, 30) for s in range(2)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *logs)
    result, _ = train_seeds(TINY, seeds=2, seed=2, data=stacked, per_seed_data=True)
    train = jax.jit(make_train(TINY))
    for s, key in enumerate(jax.random.split(jax.random.key(2), 2)):
        _assert_same_run(jax.tree.map(lambda v, s=s: v[s], result), train(key, logs[s]))
    with pytest.raises(InputError, match="data"):
        train_seeds(TINY, seeds=3, data=stacked, per_seed_data=True)


@pytest.fixture(scope="module")
def four_seeds():
    """Four seeds of ``TINY`` laid out three ways, one compiled call each, for the tests that
    compare layouts: ``together`` (two seeds ``vmap``ped on each of the tests' devices),
    ``single`` (all on one device, two at a time) and ``grouped`` (one seed per device at a
    time, in sequential groups, its progress calls recorded). Each is ``(result, timing)``."""
    calls = []
    together = train_seeds(TINY, seeds=4, seed=3, seeds_per_device=4, problem=PROBLEM)
    single = train_seeds(TINY, seeds=4, seed=3, devices=1, problem=PROBLEM)
    grouped = train_seeds(TINY, seeds=4, seed=3, seeds_per_device=1, problem=PROBLEM, progress=calls.append)
    return {"together": together, "single": single, "grouped": grouped, "calls": calls}


def test_sharded_seeds_equal_a_single_device_run(four_seeds):
    (sharded, timing), (single, _) = four_seeds["together"], four_seeds["single"]
    chex.assert_trees_all_close(sharded, single, rtol=1e-5, atol=1e-6)
    assert timing["devices"] == len(seed_sharding(4).mesh.devices.flat)
    assert timing["seed_steps"] == 4 * TINY.epochs * 6  # ceil(42 / 7): 11 of the 53 rows validate


def test_seed_layout_changes_speed_not_results(four_seeds):
    (grouped, _), (together, _) = four_seeds["grouped"], four_seeds["together"]
    for i in range(4):
        _assert_same_run(
            jax.tree.map(lambda v, i=i: v[i], grouped), jax.tree.map(lambda v, i=i: v[i], together)
        )


def test_skipping_the_train_value_leaves_the_rest_unchanged():
    key = jax.random.key(4)
    full = jax.jit(make_train(TINY, PROBLEM))(key)
    lean = jax.jit(make_train(dataclasses.replace(TINY, evaluate_train=False), PROBLEM))(key)
    assert np.all(np.isnan(lean.train_value)) and np.all(np.isfinite(full.train_value))
    np.testing.assert_allclose(lean.test_value, full.test_value, rtol=1e-5)


def test_config_and_problem_reject_bad_values_naming_the_field():
    for settings, field, value in [
        (TINY, "objective", "magic"),
        (PROBLEM, "behavior", "greedy"),
        (PROBLEM, "epsilon", 1.5),
        (TINY, "batch_size", 0),
        (PROBLEM, "n_rounds", -3),
        (PROBLEM, "n_actions", 1),
        (TINY, "temperature", 0.0),
        (TINY, "activation", "swish"),
        (TINY, "optimizer", "sgd"),
        (TINY, "hidden_sizes", (8, 0)),
    ]:
        with pytest.raises(InputError, match=field) as err:
            dataclasses.replace(settings, **{field: value})
        assert err.value.argument == field
    # A batch may not exceed the synthetic problem's logs; your own logs use all of them at once.
    for run in (
        lambda: make_train(dataclasses.replace(TINY, batch_size=54), PROBLEM)(jax.random.key(0)),
        lambda: train_seeds(dataclasses.replace(TINY, batch_size=54), seeds=1, problem=PROBLEM),
    ):
        with pytest.raises(InputError, match="expected at most n_rounds=53, got 54") as err:
            run()
        assert err.value.argument == "batch_size"
    with pytest.raises(InputError, match="problem"):
        train_seeds(TINY, seeds=1, problem=PROBLEM, data=_LOGS)


def test_the_problem_draws_the_seed_studys_logs_and_old_configs_still_load():
    keys = jax.random.split(jax.random.key(0), 3)
    problem = SyntheticProblem(
        behavior="epsilon-greedy", epsilon=0.2, n_rounds=30, n_test_rounds=20, n_actions=4
    )
    train, test = problem.sample(*keys)
    instance = blog_problem(keys[0], n_actions=4, dim=50, behavior="epsilon-greedy", epsilon=0.2)
    chex.assert_trees_all_equal(train, sample_logged_data(keys[1], instance, 30))
    chex.assert_trees_all_equal(test, sample_logged_data(keys[2], instance, 20))
    assert SyntheticProblem(**problem.to_dict()) == problem
    legacy = {**TINY.to_dict(), "behavior": "uniform", "n_rounds": 53, "n_actions": 3, "dim": 4}
    assert TrainConfig.from_dict(legacy) == TINY and "n_rounds" not in TINY.to_dict()


def test_validation_rows_hold_out_a_random_share_once():
    train_rows, held_out = jax.jit(validation_rows, static_argnums=(1, 2))(jax.random.key(3), 50, 0.2)
    assert train_rows.shape == (40,) and held_out.shape == (10,)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_rows, held_out])), np.arange(50))
    order = jax.random.permutation(jax.random.key(3), 50)
    np.testing.assert_array_equal(np.concatenate([train_rows, held_out]), order)
    with pytest.raises(InputError, match="leaves 1 for validation") as err:
        validation_rows(jax.random.key(3), 5, 0.2)
    assert err.value.argument == "validation_fraction"


# --- learning works on the seed study's setting -------------------------------------------

LEARN = TrainConfig(epochs=4, batch_size=20, learning_rate=0.001)


@pytest.mark.parametrize(
    ("objective", "behavior"),
    [("ips", "uniform"), ("ips", "epsilon-greedy"), ("dr", "uniform"), ("regression", "epsilon-greedy")],
)
def test_learners_beat_the_initial_and_logging_policies(objective, behavior):
    config = dataclasses.replace(LEARN, objective=objective)
    problem = SyntheticProblem(behavior=behavior, n_rounds=2000, n_test_rounds=2000)
    result, _ = train_seeds(config, seeds=4, seed=11, problem=problem)
    final = result.test_value[:, -1]
    assert final.mean() > result.initial_value.mean() + 0.02, (final, result.initial_value)
    if behavior == "uniform":
        assert final.mean() > result.behavior_value.mean() + 0.02, (final, result.behavior_value)
    assert np.all(final <= result.optimal_value + 1e-6)


# --- reward model and off-policy evaluation -----------------------------------------------


def test_reward_model_learns_q_and_predicts_every_pair_consistently():
    problem = blog_problem(jax.random.key(6), n_actions=5, dim=6)
    data = sample_logged_data(jax.random.key(7), problem, 3000)
    model = towerjax.RewardModel(towerjax.RewardModelConfig(hidden_sizes=(32, 32), epochs=20))
    params = jax.jit(model.fit)(jax.random.key(8), data)
    q_hat = model.predict(params, data.context, data.action_context)
    assert q_hat.shape == (3000, 5)
    chunked = jax.jit(lambda p, x, e: model.predict(p, x, e, chunk_size=512))(
        params, data.context, data.action_context
    )
    np.testing.assert_allclose(chunked, q_hat, rtol=1e-5, atol=1e-6)
    logged = model.predict_logged(params, data.context, data.action_context[data.action])
    np.testing.assert_allclose(logged, q_hat[jnp.arange(3000), data.action], rtol=1e-5, atol=1e-6)
    truth = np.asarray(data.expected_reward)
    error = np.mean(np.abs(np.asarray(q_hat) - truth))
    baseline = np.mean(np.abs(truth.mean() - truth))
    assert error < 0.6 * baseline, (error, baseline)


def test_cross_fitted_q_hat_of_a_row_never_sees_that_rows_reward():
    problem = blog_problem(jax.random.key(6), n_actions=4, dim=3)
    data = sample_logged_data(jax.random.key(7), problem, 61)
    flipped = dataclasses.replace(data, reward=data.reward.at[5].set(1.0 - data.reward[5]))
    config = towerjax.RewardModelConfig(hidden_sizes=(8,), epochs=3, batch_size=8)
    for folds in (2, 3):
        model = towerjax.RewardModel(dataclasses.replace(config, folds=folds))
        cross_fit = jax.jit(model.cross_fit)
        q_hat, q_flipped = cross_fit(jax.random.key(8), data), cross_fit(jax.random.key(8), flipped)
        assert q_hat.shape == (61, 4) and np.all(np.isfinite(q_hat))
        np.testing.assert_array_equal(q_flipped[5], q_hat[5])  # row 5's model never saw row 5
        assert np.abs(np.asarray(q_flipped) - np.asarray(q_hat)).max() > 1e-4  # the other fold's did
    in_sample = jax.jit(towerjax.RewardModel(dataclasses.replace(config, folds=1)).cross_fit)
    assert (
        np.abs(in_sample(jax.random.key(8), flipped)[5] - in_sample(jax.random.key(8), data)[5]).max() > 1e-4
    )
    with pytest.raises(InputError, match="folds"):
        towerjax.RewardModelConfig(folds=0)


def test_off_policy_estimates_match_the_true_value():
    problem = blog_problem(jax.random.key(9), n_actions=5, dim=6)
    data = sample_logged_data(jax.random.key(10), problem, 20000)
    pi = jax.nn.softmax(3.0 * data.expected_reward, axis=-1)  # a policy that prefers good items
    truth = float(towerjax.policy_value(jnp.log(pi), data.expected_reward))
    estimates = towerjax.off_policy_estimates(pi, data.action, data.reward, data.pscore, data.expected_reward)
    for name, estimate in estimates.items():
        value, se = estimate.value, estimate.stderr
        assert abs(float(value) - truth) < 4 * float(se) + 1e-3, (name, value, se, truth)
    assert estimates["dr"].stderr < estimates["ips"].stderr
    with pytest.raises(ValueError, match="pscore"):
        towerjax.off_policy_estimates(pi, data.action, data.reward, data.pscore[:10])


def test_check_finite_names_the_first_bad_run_and_epoch():
    loss = np.zeros((3, 4))
    loss[2, 2:] = np.nan
    result = towerjax.TrainResult(
        params={"w": np.ones((3, 2))}, loss=loss, train_value=loss, test_value=loss,
        initial_value=np.zeros(3), behavior_value=np.zeros(3), optimal_value=np.zeros(3),
        top_share=loss, validation={}, selected_epoch=np.zeros(3), selected_value=np.zeros(3),
        selected_validation={},
    )  # fmt: skip
    with pytest.raises(towerjax.NonFiniteError, match="run 2 of root seed 5, objective snips") as err:
        towerjax.check_finite(result, SNIPS(), seed=5)
    assert (err.value.seed, err.value.epoch, err.value.objective) == (2, 3, "snips")
    result = dataclasses.replace(
        result, loss=np.zeros((3, 4)), params={"w": np.array([[1, 1], [1, np.inf], [1, 1.0]])}
    )
    with pytest.raises(towerjax.NonFiniteError, match=r"run 1 .* final parameters"):
        towerjax.check_finite(result, SNIPS())


# --- validation by off-policy evaluation, selection, early stopping (issue 13) -----------

_PROBLEM = blog_problem(jax.random.key(20), n_actions=3, dim=4)
_LOGS = sample_logged_data(jax.random.key(21), _PROBLEM, 80)
_TEST = sample_logged_data(jax.random.key(22), _PROBLEM, 40)
_VALIDATION = sample_logged_data(jax.random.key(23), _PROBLEM, 60)


def test_validation_estimates_are_the_off_policy_estimates_snipw_and_dr():
    log_pi = jax.nn.log_softmax(2.0 * _VALIDATION.expected_reward)
    q_hat = 0.8 * _VALIDATION.expected_reward
    got = towerjax.validation_estimates(log_pi, _VALIDATION, q_hat)
    ref = towerjax.off_policy_estimates(
        jnp.exp(log_pi), _VALIDATION.action, _VALIDATION.reward, _VALIDATION.pscore, q_hat
    )
    for name, key in (("snips", "snipw"), ("dr", "dr")):
        np.testing.assert_allclose(got[name], ref[key].value, rtol=1e-5)
        np.testing.assert_allclose(got[name + "_se"], ref[key].stderr, rtol=1e-4)


def test_select_returns_the_best_validated_epochs_parameters():
    config = dataclasses.replace(TINY, epochs=4, select="snips", learning_rate=0.05)
    result = jax.jit(make_train(config))(jax.random.key(3), _LOGS, _TEST, None, _VALIDATION)
    snips = np.asarray(result.validation["snips"])
    assert snips.shape == (4,) and np.all(np.isfinite(snips)) and np.all(np.isfinite(result.validation["dr"]))
    epoch = int(result.selected_epoch)
    scores = config.model.scores(result.params, _TEST.context, _TEST.action_context)
    value = towerjax.policy_value(towerjax.log_policy(scores), _TEST.expected_reward)
    np.testing.assert_allclose(value, result.selected_value, rtol=1e-5)
    log_pi = towerjax.log_policy(
        config.model.scores(result.params, _VALIDATION.context, _VALIDATION.action_context)
    )
    # The returned parameters' estimates: the selected epoch's (or the initial policy's).
    np.testing.assert_allclose(
        result.selected_validation["snips"],
        towerjax.validation_estimates(log_pi, _VALIDATION, None)["snips"],
        rtol=1e-5,
    )
    # Epoch 0, the initial policy, starts the curves (initial_validation): the best of them all is kept.
    assert epoch == int(np.argmax(np.concatenate([[float(result.initial_validation["snips"])], snips])))
    if epoch > 0:
        assert epoch - 1 == int(np.argmax(snips))
        np.testing.assert_allclose(result.selected_value, result.test_value[epoch - 1], rtol=1e-6)
        for name, curve in result.validation.items():
            np.testing.assert_array_equal(result.selected_validation[name], curve[epoch - 1], err_msg=name)


def test_patience_stops_updating_after_epochs_without_improvement():
    # No reward anywhere: SNIPS is 0 for every epoch, never better than the initial policy,
    # so with patience 1 the parameters freeze after the second epoch (only weight decay moves them).
    silent = dataclasses.replace(_LOGS, reward=jnp.zeros_like(_LOGS.reward))
    config = dataclasses.replace(TINY, epochs=5, select="snips", patience=1, validation_fraction=0.25)
    stopped = jax.jit(make_train(config))(jax.random.key(4), silent, _TEST)
    assert int(stopped.selected_epoch) == 0
    np.testing.assert_allclose(stopped.selected_value, stopped.initial_value, rtol=1e-6)
    assert float(stopped.selected_validation["snips"]) == 0.0  # the initial policy's estimate
    np.testing.assert_array_equal(stopped.test_value[2:], stopped.test_value[1])
    moving = jax.jit(make_train(dataclasses.replace(config, patience=None, select=None)))(
        jax.random.key(4), silent, _TEST
    )
    assert np.unique(np.asarray(moving.test_value)).size > 1
    for name, curve in moving.validation.items():  # no selection: the last epoch's parameters
        np.testing.assert_array_equal(moving.selected_validation[name], curve[-1], err_msg=name)


def test_validation_options_are_checked_and_the_seed_preset_is_the_seed_studys():
    with pytest.raises(InputError, match="validation_fraction"):
        TrainConfig(validation_fraction=1.0)
    with pytest.raises(InputError, match="select"):
        TrainConfig(select="best")
    with pytest.raises(InputError, match="patience"):
        TrainConfig(patience=3, select=None)
    with pytest.raises(InputError, match="validation_fraction"):
        make_train(dataclasses.replace(TINY, validation_fraction=0.01))(jax.random.key(0), _LOGS)
    seed = TrainConfig.seed_study()
    assert (seed.optimizer, seed.learning_rate, seed.weight_decay, seed.batch_size, seed.epochs) == (
        "adam",
        0.005,
        1e-6,
        10,
        100,
    )
    assert (seed.hidden_sizes, seed.embedding_size, seed.activation, seed.temperature) == (
        (100, 100, 100),
        100,
        "elu",
        1.0,
    )
    assert seed.reward_model.folds == 1 and seed.validation_fraction == 0 and seed.select is None
    assert TrainConfig.seed_study(epochs=3, objective="dr").epochs == 3


def test_progress_is_called_after_every_epoch_of_every_seed(four_seeds):
    calls, (_, timing) = four_seeds["calls"], four_seeds["grouped"]
    # once per epoch of each sequential group of vmapped seeds (4 seeds, one per device at a time)
    groups = 4 // timing["devices"]
    assert all(isinstance(c, int) for c in calls) and calls == [1, 2] * groups
