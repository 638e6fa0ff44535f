"""DR at the cost of IPS: the reward model's predictions per distinct context and per fold.

A rating log's context is its user, so ``n`` rows have ``U << n`` distinct contexts: the
cross-fitted ``q_hat`` is scored once per (fold, distinct context), the validation model's
once per run, and the numbers are those of scoring every row (up to float rounding).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.data import LoggedData
from towerjax.features import Features
from towerjax.reward_model import RewardModel, RewardModelConfig, context_groups, distinct_contexts
from towerjax.training import TrainConfig, make_train
from towerjax.training.loop import estimator_inputs, init_params, prepare_logs

N, A, U = 203, 5, 17
REWARD = RewardModelConfig(hidden_sizes=(8,), epochs=1, batch_size=32)


def _logs(seed: int = 0) -> LoggedData:
    """Contexts are users: an embedded ``user_id`` and a per-user dense column."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, U, N)
    user[:U] = np.arange(U)
    age = rng.normal(size=U).astype(np.float32)
    context = Features.from_arrays(
        ids={"user_id": user}, sizes={"user_id": U}, dense=age[user][:, None], dims={"user_id": 3}
    )
    return LoggedData(
        context=context,
        action_context=jnp.eye(A),
        action=jnp.asarray(rng.integers(0, A, N), jnp.int32),
        reward=jnp.asarray(rng.integers(0, 2, N), jnp.float32),
        pscore=jnp.full(N, 1.0 / A),
    )


def _every_row_by_every_model(model: RewardModel, key: jax.Array, data: LoggedData) -> jax.Array:
    """The reference: each fold's model scores every row, each row keeps its fold's."""
    fits = model.fold_fits(key, data)
    q_hat = jnp.zeros((data.n_rounds, data.n_actions))
    for k in range(jax.tree.leaves(fits.params)[0].shape[0]):
        params = jax.tree.map(lambda v, k=k: v[k], fits.params)
        pred = model.predict(params, data.context, data.action_context)
        q_hat = jnp.where((fits.fold == k)[:, None], pred, q_hat)
    return q_hat


def test_context_groups_are_the_distinct_rows():
    data = _logs()
    assert distinct_contexts(data.context) == U
    stacked = jax.tree.map(lambda v: jnp.stack([v, v[::-1]]), data.context)
    assert distinct_contexts(stacked) == U
    groups = jax.jit(context_groups, static_argnums=1)(data.context, U)
    back = jax.tree.map(lambda v: v[groups.group], groups.context)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(data.context), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("folds", [1, 3])
def test_fold_predictions_equal_every_row_by_every_model(folds):
    data, key = _logs(), jax.random.key(1)
    model = RewardModel(RewardModelConfig(hidden_sizes=(8,), epochs=1, batch_size=32, folds=folds))

    @jax.jit
    def scored(key):
        fits = model.fold_fits(key, data)
        table, rows = model.fold_predictions(fits, data, context_groups(data.context, U))
        return _every_row_by_every_model(model, key, data), model.cross_fit(key, data), table, rows

    want, per_fold, table, rows = scored(key)
    np.testing.assert_allclose(per_fold, want, atol=1e-6)
    assert table.shape == (folds * U, A)  # one row per (fold, user), not per event
    np.testing.assert_allclose(table[rows], want, atol=1e-6)


def test_prepare_logs_scores_users_once_with_the_same_numbers():
    data = _logs()
    config = TrainConfig(
        objective="dr",
        hidden_sizes=(8,),
        embedding_size=4,
        batch_size=32,
        validation_dr=True,
        reward_model=REWARD,
    )
    model = RewardModel(config.reward_model)
    keys = tuple(jax.random.split(jax.random.key(2), 3))

    @jax.jit
    def both(keys):
        plain = prepare_logs(config, model, keys, data, None, None, None)
        grouped = prepare_logs(config, model, keys, data, None, None, None, distinct_contexts=U)
        want = _every_row_by_every_model(model, keys[1], plain.train)
        # The validation model's predictions, once per run, equal those predicted per epoch.
        _, params = init_params(config, jax.random.key(3), keys[1], plain.train)
        every_epoch = estimator_inputs(config, model, plain.validation_fit, params, plain.validation)
        once = [
            estimator_inputs(
                config, model, logs.validation_fit, params, logs.validation, q_hat=logs.validation_q
            )
            for logs in (plain, grouped)
        ]
        qs = [logs.q_hat[logs.q_rows] for logs in (plain, grouped)]
        return want, qs, grouped.q_hat.shape, every_epoch, once

    want, qs, grouped_shape, every_epoch, once = both(keys)
    assert grouped_shape == (2 * U, A)
    for q_hat in qs:
        np.testing.assert_allclose(q_hat, want, atol=1e-6)
    for terms in once:
        for name in ("w", "direct", "q_logged"):
            np.testing.assert_allclose(terms[name], every_epoch[name], atol=1e-6)


def test_dr_training_is_unchanged_by_scoring_users_once():
    data = _logs()
    config = TrainConfig(
        objective="dr", hidden_sizes=(8,), embedding_size=4, epochs=2, batch_size=32, reward_model=REWARD
    )
    runs = [jax.jit(make_train(config, distinct_contexts=d))(jax.random.key(4), data) for d in (None, U)]
    for got, want in zip(jax.tree.leaves(runs[1]), jax.tree.leaves(runs[0]), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
