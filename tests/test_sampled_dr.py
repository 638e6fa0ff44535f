"""DR with a sampled softmax: the direct term estimated on the proposal's samples (self-normalised),
the reward model scored on the logged and sampled items only (issue 24)."""

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.large_softmax import (
    item_proposal,
    popularity_log_q,
    sampled_log_prob_from_ids,
    sampled_log_softmax_from_ids,
)
from towerjax.objectives import DR, DROS, IPS, SNDR, OneOf, SwitchDR, TwoStage
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.synthetic import SyntheticProblem, blog_problem, sample_logged_data
from towerjax.training import Batch, TrainConfig, make_train, objective_loss
from towerjax.training.step import tower_inputs

A, B, DIM = 12, 32, 4


@pytest.fixture(scope="module")
def setting():
    """A small logged batch, tower parameters and a cross-fitted ``q_hat`` for its rows."""
    problem = blog_problem(jax.random.key(0), n_actions=A, dim=DIM)
    data = sample_logged_data(jax.random.key(1), problem, B)
    data = dataclasses.replace(data, pi_b=None, expected_reward=None)
    base = TrainConfig(objective=DR(entropy=0.0), hidden_sizes=(8,), embedding_size=4)
    params = base.model.init(jax.random.key(2), DIM, DIM)
    model = RewardModel(RewardModelConfig(hidden_sizes=(8,), epochs=2, batch_size=8))
    fits = jax.jit(model.fold_fits)(jax.random.key(3), data)
    q_hat = jax.jit(model.cross_fit)(jax.random.key(3), data)
    proposal = item_proposal(popularity_log_q(jnp.arange(A, dtype=jnp.float32)))
    return base, params, data, fits, q_hat, proposal


def _grad(config, params, batch, key=None):
    return jax.grad(objective_loss, argnums=1)(config, params, batch, key)


def _distance(a, b):
    return float(
        jnp.sqrt(
            sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
        )
    )


def test_sampled_row_normalises_over_the_logged_item_and_the_samples_and_drops_hits():
    ctx = jax.random.normal(jax.random.key(0), (3, 2))
    items = jax.random.normal(jax.random.key(1), (4, 2))
    action, ids = jnp.array([0, 1, 2]), jnp.array([1, 3, 3])
    log_q = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    args = (ctx, action, items[action], ids, items[ids], log_q)
    log_p = sampled_log_softmax_from_ids(*args, temperature=0.7)
    assert log_p.shape == (3, 4) and bool(jnp.all(jnp.isfinite(log_p)))
    np.testing.assert_allclose(jnp.exp(log_p).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(log_p[:, 0], sampled_log_prob_from_ids(*args, temperature=0.7), rtol=1e-6)
    assert float(jnp.exp(log_p[1, 1])) == 0.0  # sample 1 is row 1's logged item: dropped
    logits = ctx @ items.T / 0.7
    u = jnp.concatenate([logits[0, :1], logits[0, ids] - jnp.log(3 * jnp.exp(log_q))])
    np.testing.assert_allclose(log_p[0], jax.nn.log_softmax(u), rtol=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_sampled_dr_gradient_is_minus_the_gradient_of_the_sampled_dr_estimate(setting, jit):
    """For one draw, the loss's gradient is minus that of the estimate it samples,
    ``mean_i [sum_c p_hat_ic q_hat_ic + (p_hat_i0 / p_i) (r_i - q_hat_ia_i)]``."""
    base, params, data, _, q_hat, proposal = setting
    config = dataclasses.replace(base, sampled_softmax=16)
    batch, key = Batch(data, jnp.ones(B), q_hat=q_hat, proposal=proposal), jax.random.key(5)
    inputs = tower_inputs(config, batch, key)
    row_q = jnp.concatenate(
        [jnp.take_along_axis(q_hat, data.action[:, None], 1), q_hat[:, inputs.sampled]], -1
    )

    def estimate(p):
        items = config.model.embed_actions(p, inputs.items)
        context = config.model.embed_context(p, data.context)
        log_p = sampled_log_softmax_from_ids(
            context, data.action, items[:B], inputs.sampled, items[B:], inputs.log_q
        )
        p_hat = jnp.exp(log_p)
        return jnp.mean(jnp.sum(p_hat * row_q, -1) + p_hat[:, 0] / data.pscore * (data.reward - row_q[:, 0]))

    grad = jax.jit(_grad, static_argnums=0) if jit else _grad
    got = grad(config, params, batch, key)
    want = jax.tree.map(jnp.negative, jax.grad(estimate)(params))
    assert _distance(got, want) < 1e-5 * max(1.0, _distance(want, jax.tree.map(jnp.zeros_like, want)))


def test_sampled_dr_gradient_approaches_the_exact_dr_gradient_as_m_grows(setting):
    """Averaged over draws, the sampled DR gradient nears the full-softmax DR gradient on the
    same batch and the same q_hat as M grows (bias O(1/M)), as the sampled IPS one does."""
    base, params, data, _, q_hat, proposal = setting
    batch = Batch(data, jnp.ones(B), q_hat=q_hat, proposal=proposal)
    exact = _grad(base, params, batch)
    keys = jax.random.split(jax.random.key(6), 400)

    def error(m):
        config = dataclasses.replace(base, sampled_softmax=m)
        grads = jax.vmap(lambda k: _grad(config, params, batch, k))(keys)
        return _distance(jax.tree.map(lambda g: jnp.mean(g, 0), grads), exact)

    scale = _distance(exact, jax.tree.map(jnp.zeros_like, exact))
    small, large = error(4), error(256)
    assert large < 0.5 * small, (small, large)
    assert large < 0.1 * scale, (large, scale)


def test_fold_fits_score_each_row_as_cross_fitting_does(setting):
    """Scoring each row on the sampled items with the model not fitted on it gives the loss
    that the cross-fitted [n, A] q_hat gives."""
    base, params, data, fits, q_hat, proposal = setting
    reward_model = RewardModelConfig(hidden_sizes=(8,), epochs=2, batch_size=8)  # the fits' architecture
    config = dataclasses.replace(
        base, objective=SNDR(entropy=0.05), sampled_softmax=8, reward_model=reward_model
    )
    key = jax.random.key(7)
    from_q_hat = jax.value_and_grad(objective_loss, argnums=1)(
        config, params, Batch(data, jnp.ones(B), q_hat=q_hat, proposal=proposal), key
    )
    from_fits = jax.value_and_grad(objective_loss, argnums=1)(
        config, params, Batch(data, jnp.ones(B), proposal=proposal, reward_fits=fits), key
    )
    assert bool(jnp.all(fits.fold < 2)) and len(set(np.asarray(fits.fold).tolist())) == 2
    np.testing.assert_allclose(from_fits[0], from_q_hat[0], rtol=1e-5)
    assert _distance(from_fits[1], from_q_hat[1]) < 1e-5


def test_the_config_takes_the_doubly_robust_objectives_with_a_sampled_softmax():
    for objective in (DR(), SNDR(), SwitchDR(), DROS(), OneOf(choices=(IPS(), DR()))):
        assert TrainConfig(objective=objective, sampled_softmax=64).sampled_softmax == 64
    for objective in ("two-stage", OneOf(choices=(TwoStage(), DR()))):
        with pytest.raises(InputError, match="sampled_softmax"):
            TrainConfig(objective=objective, sampled_softmax=64)
    with pytest.raises(InputError, match="sampled_softmax"):
        TrainConfig(objective=DR(kl=0.1), sampled_softmax=64)


def test_a_tiny_dr_run_with_a_sampled_softmax_has_finite_losses():
    config = TrainConfig(
        objective="dr", sampled_softmax=8, hidden_sizes=(4,), embedding_size=4, batch_size=16, epochs=2,
        validation_fraction=0.0, select=None, evaluate_train=False,
        reward_model=RewardModelConfig(hidden_sizes=(4,), epochs=1),
    )  # fmt: skip
    problem = SyntheticProblem(n_rounds=48, n_test_rounds=16, n_actions=20, dim=4)
    result = jax.jit(make_train(config, problem))(jax.random.key(0))
    assert result.loss.shape == (2,) and bool(jnp.all(jnp.isfinite(result.loss)))
    assert bool(jnp.all(jnp.isfinite(result.test_value)))


def test_cli_trains_dr_with_a_sampled_softmax(tmp_path):
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "towerjax.cli", "train", "--objective", "dr", "--sampled-softmax", "8",
         "--n-rounds", "40", "--n-test-rounds", "20", "--n-actions", "16", "--batch-size", "10",
         "--epochs", "1", "--seeds", "1", "--hidden-sizes", "4", "--embedding-size", "4",
         "--validation-fraction", "0", "--select", "none", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.read_text())
    assert payload["config"]["objective"]["name"] == "dr" and payload["config"]["sampled_softmax"] == 8
    assert all(np.isfinite(v) for v in payload["test_value"])
