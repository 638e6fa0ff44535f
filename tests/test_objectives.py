"""Objectives as values: each one's loss is the loss function it names, options are checked by
name, the registry drives TrainConfig and the command line, and a new objective needs only its
class and one registry entry."""

import dataclasses
import json
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax import losses
from towerjax.checks import InputError
from towerjax.objectives import (
    DR,
    DROS,
    IPS,
    OBJECTIVES,
    SNDR,
    SNIPS,
    LogSmoothingIPS,
    Naive,
    Objective,
    Regression,
    SubGaussianIPS,
    SwitchDR,
    TopK,
    TwoStage,
    WeightedRegression,
    objective_from_name,
)
from towerjax.synthetic import SyntheticProblem
from towerjax.training import Batch, TrainConfig, make_train, objective_loss
from towerjax.two_stage import two_stage_ips_loss

B, A = 5, 4
SCORES = jax.random.normal(jax.random.key(0), (B, A))
ACTION = jnp.array([0, 2, 3, 1, 2])
REWARD = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0])
PSCORE = jnp.array([0.3, 0.2, 0.5, 0.25, 0.1])
Q_HAT = jax.random.uniform(jax.random.key(1), (B, A))
MASK = jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])
KEY = jax.random.key(2)


def _objective_loss(objective, scores):
    return objective.loss(
        scores=scores,
        log_pi=jax.nn.log_softmax(scores),
        action=ACTION,
        reward=REWARD,
        pscore=PSCORE,
        q_hat=Q_HAT,
        key=KEY,
        mask=MASK,
    )


CASES = [
    (IPS(), lambda s: losses.ips_loss(jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, mask=MASK)),
    (
        IPS(cap=2.0, variance_penalty=0.3),
        lambda s: losses.ips_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, cap=2.0, variance_penalty=0.3, mask=MASK
        ),
    ),
    (
        SNIPS(clip=(0.1, 3.0)),
        lambda s: losses.ips_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, clip=(0.1, 3.0), self_normalize=True, mask=MASK
        ),
    ),
    (DR(), lambda s: losses.dr_loss(jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, Q_HAT, mask=MASK)),
    (
        IPS(baseline="optimal"),
        lambda s: losses.ips_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, baseline="optimal", mask=MASK
        ),
    ),
    (
        SNDR(cap=3.0),
        lambda s: losses.dr_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, Q_HAT, cap=3.0, self_normalize=True, mask=MASK
        ),
    ),
    (
        SwitchDR(threshold=4.0),
        lambda s: losses.switch_dr_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, Q_HAT, threshold=4.0, mask=MASK
        ),
    ),
    (
        DROS(shrinkage=2.0),
        lambda s: losses.dr_os_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, Q_HAT, shrinkage=2.0, mask=MASK
        ),
    ),
    (
        SubGaussianIPS(correction=0.2),
        lambda s: losses.subgaussian_ips_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, lam=0.2, mask=MASK
        ),
    ),
    (
        LogSmoothingIPS(smoothing=0.5),
        lambda s: losses.log_smoothing_ips_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, lam=0.5, mask=MASK
        ),
    ),
    (Regression(), lambda s: losses.regression_loss(s, ACTION, REWARD, mask=MASK)),
    (
        WeightedRegression(clip=(0.5, 4.0), self_normalize=True),
        lambda s: losses.weighted_regression_loss(
            s, ACTION, REWARD, PSCORE, clip=(0.5, 4.0), self_normalize=True, mask=MASK
        ),
    ),
    (
        IPS(entropy=0.2),
        lambda s: losses.ips_loss(jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, mask=MASK),
    ),
    (Naive(), lambda s: losses.naive_loss(jax.nn.log_softmax(s), ACTION, REWARD, mask=MASK)),
    (
        TopK(k=3, cap=4.0),
        lambda s: losses.topk_ips_loss(
            jax.nn.log_softmax(s), ACTION, REWARD, PSCORE, k=3, cap=4.0, mask=MASK
        ),
    ),
    (
        TwoStage(candidates=3, num_samples=5),
        lambda s: two_stage_ips_loss(
            KEY,
            jax.nn.log_softmax(s),
            ACTION,
            REWARD,
            PSCORE,
            Q_HAT,
            k=3,
            num_samples=5,
            alpha=1e-3,
            clip=(0.01, 10.0),
            self_normalize=True,
            mask=MASK,
        ),
    ),
    (
        TwoStage(candidates=3, num_samples=5, unbiased=True, clip=None, self_normalize=False),
        lambda s: two_stage_ips_loss(
            KEY,
            jax.nn.log_softmax(s),
            ACTION,
            REWARD,
            PSCORE,
            Q_HAT,
            k=3,
            num_samples=5,
            unbiased=True,
            mask=MASK,
        ),
    ),
]


@pytest.mark.parametrize("objective, expected", CASES, ids=[repr(c[0]) for c in CASES])
def test_objective_loss_and_gradient_are_its_loss_functions(objective, expected):
    # The loss function, plus the objective's entropy bonus (0.05 by default on the
    # policy-gradient objectives, 0 on the others).
    def total(s):
        return expected(s) + objective.entropy * losses.entropy_bonus(jax.nn.log_softmax(s), mask=MASK)

    got = jax.value_and_grad(lambda s: _objective_loss(objective, s))(SCORES)
    chex.assert_trees_all_close(got, jax.value_and_grad(total)(SCORES), rtol=1e-5, atol=1e-8)
    jitted = jax.jit(jax.value_and_grad(lambda s: _objective_loss(objective, s)))(SCORES)
    chex.assert_trees_all_close(jitted, got, rtol=1e-5, atol=1e-7)


def test_registry_names_every_objective_and_builds_it_by_name():
    assert set(OBJECTIVES) == {
        "ips", "snips", "dr", "sndr", "switch-dr", "dr-os", "ipw-subgauss", "ipw-ls",
        "regression", "ips-regression", "naive", "topk", "two-stage",
    }  # fmt: skip
    for name, cls in OBJECTIVES.items():
        assert cls.name == name and objective_from_name(name) == cls()
    assert objective_from_name("topk", k=3) == TopK(k=3)
    assert objective_from_name("ipw") == IPS() and objective_from_name("snipw") == SNIPS()  # OBP's names
    assert TrainConfig(objective="dr").objective == DR()
    assert DR.needs_q_hat and TwoStage.needs_key and not IPS.needs_q_hat


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: objective_from_name("magic"), "objective"),
        (lambda: objective_from_name("ips", k=2), "k"),
        (lambda: IPS(cap=-1.0), "cap"),
        (lambda: IPS(cap=2.0, clip=(0.1, 3.0)), "cap"),
        (lambda: DR(clip=(3.0, 1.0)), "clip"),
        (lambda: IPS(clip=True), "clip"),
        (lambda: IPS(variance_penalty=-0.5), "variance_penalty"),
        (lambda: SNIPS(self_normalize=False), "self_normalize"),
        (lambda: SNDR(self_normalize=False), "self_normalize"),
        (lambda: SNIPS(baseline=0.5), "baseline"),
        (lambda: IPS(baseline="best"), "baseline"),
        (lambda: IPS(baseline=float("nan")), "baseline"),
        (lambda: SwitchDR(threshold=0.0), "threshold"),
        (lambda: DROS(shrinkage=-1.0), "shrinkage"),
        (lambda: SubGaussianIPS(correction=1.5), "correction"),
        (lambda: LogSmoothingIPS(smoothing=0.0), "smoothing"),
        (lambda: IPS(entropy=-0.1), "entropy"),
        (lambda: DR(kl=-1.0), "kl"),
        (lambda: WeightedRegression(cap=0.0), "cap"),
        (lambda: TopK(k=0), "k"),
        (lambda: TwoStage(candidates=0), "candidates"),
        (lambda: TwoStage(alpha=-1.0), "alpha"),
        (lambda: TwoStage(cap=3.0), "cap"),  # Ma et al.'s clip is on by default: give clip=None
        (lambda: TrainConfig(objective=3), "objective"),
    ],
)
def test_bad_options_raise_input_error_naming_the_field(build, argument):
    with pytest.raises(InputError) as err:
        build()
    assert err.value.argument == argument and str(err.value).startswith(f"{argument}: ")


def test_objectives_that_need_a_reward_model_or_key_say_so():
    call = dict(scores=SCORES, log_pi=jax.nn.log_softmax(SCORES), action=ACTION, reward=REWARD, pscore=PSCORE)
    with pytest.raises(InputError, match="q_hat"):
        DR().loss(**call)
    with pytest.raises(InputError, match="key"):
        TwoStage().loss(**call, q_hat=Q_HAT)


def test_two_stage_defaults_are_ma_et_al_clip_then_self_normalise():
    assert TwoStage().clip == (0.01, 10.0) and TwoStage().self_normalize
    assert TwoStage(cap=3.0, clip=None).cap == 3.0
    assert SNIPS().self_normalize and not IPS().self_normalize
    assert IPS(clip=[0.1, 2]).clip == (0.1, 2.0)  # stored as a hashable tuple


def test_objectives_are_static_values_and_serialise():
    config = TrainConfig(objective=TwoStage(candidates=7, clip=None, cap=2.0))
    assert hash(config.objective) == hash(TwoStage(candidates=7, clip=None, cap=2.0))
    payload = json.loads(json.dumps(config.to_dict()))
    assert payload["objective"] == {
        "name": "two-stage", "entropy": 0.0, "kl": 0.0, "candidates": 7, "num_samples": 100, "alpha": 1e-3, "unbiased": False,
        "cap": 2.0, "clip": None, "self_normalize": True,
    }  # fmt: skip
    assert payload["hidden_sizes"] == [64]


def test_objective_loss_inside_training_uses_the_configured_objective():
    config = TrainConfig(objective=TopK(k=3), hidden_sizes=(4,), embedding_size=3)
    data = _logs()
    params = config.model.init(jax.random.key(9), 2, 2)
    loss = objective_loss(config, params, Batch(data, MASK, Q_HAT), KEY)
    scores = config.model.scores(params, data.context, data.action_context)
    expected = losses.topk_ips_loss(jax.nn.log_softmax(scores), ACTION, REWARD, PSCORE, k=3, mask=MASK)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def _logs():
    from towerjax.data import LoggedData

    return LoggedData(
        context=jax.random.normal(jax.random.key(7), (B, 2)),
        action_context=jax.random.normal(jax.random.key(8), (A, 2)),
        action=ACTION,
        reward=REWARD,
        pscore=PSCORE,
    )


@dataclasses.dataclass(frozen=True)
class _Scaled(Objective):
    """A new objective made the documented way: a class over a loss function, one registry line."""

    name: ClassVar[str] = "scaled-ips"
    scale: float = dataclasses.field(default=0.5, metadata={"help": "multiplies the IPS loss"})

    def surrogate(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
        return self.scale * losses.ips_loss(log_pi, action, reward, pscore, mask=mask)


def test_a_new_objective_needs_only_its_class_and_a_registry_line(monkeypatch, capsys):
    from towerjax import cli

    monkeypatch.setitem(OBJECTIVES, _Scaled.name, _Scaled)
    config = TrainConfig(objective="scaled-ips", hidden_sizes=(4,), embedding_size=2, batch_size=5, epochs=1)
    assert config.objective == _Scaled()
    problem = SyntheticProblem(n_rounds=20, n_test_rounds=10, n_actions=3, dim=2)
    result = make_train(config, problem)(jax.random.key(0))
    assert np.isfinite(result.loss).all()
    args = cli.build_parser().parse_args(["train", "--objective", "scaled-ips", "--scale", "0.25"])
    assert cli.flags.train_config(args).objective == _Scaled(scale=0.25)
    with pytest.raises(InputError, match="scale"):
        cli.flags.train_config(cli.build_parser().parse_args(["train", "--objective", "ips", "--scale", "2"]))


def test_the_kl_penalty_reads_the_logging_distribution_and_says_when_it_is_missing():
    pi_b = jax.nn.softmax(jax.random.normal(jax.random.key(4), (B, A)))
    call = dict(log_pi=jax.nn.log_softmax(SCORES), action=ACTION, reward=REWARD, pscore=PSCORE, mask=MASK)
    got = IPS(kl=0.3, entropy=0.0).loss(scores=SCORES, pi_b=pi_b, **call)
    expected = losses.ips_loss(**call) + 0.3 * losses.kl_to_logging(call["log_pi"], pi_b, mask=MASK)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert IPS(kl=0.3).needs_pi_b and not IPS().needs_pi_b
    with pytest.raises(InputError, match="kl"):
        IPS(kl=0.3).loss(scores=SCORES, **call)
    with pytest.raises(InputError, match="kl"):  # own logs without pi_b and no behaviour head
        make_train(TrainConfig(objective=IPS(kl=0.1), epochs=1, batch_size=5))(KEY, _logs())
