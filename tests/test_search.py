"""The search (towerjax.training.search): candidates as a vmap axis, chosen and reported honestly (SPEC 9)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.objectives import SNIPS, Naive, OneOf
from towerjax.synthetic import SyntheticProblem
from towerjax.training import Candidate, Search, TrainConfig, split_three, train_search, train_seeds
from towerjax.training.config import with_traced

# Runs of the same objective and shapes (the fixture's naive baseline, the budget test's, ...)
# load their compiled program from JAX's persistent cache.
pytestmark = pytest.mark.usefixtures("compilation_cache")

PROBLEM = SyntheticProblem(n_rounds=400, n_test_rounds=200, n_actions=6)
BASE = TrainConfig(epochs=2, batch_size=64, hidden_sizes=(8,), embedding_size=4)
TINY = Search(
    objectives=("snips",), learning_rate=(0.01,), entropy=(0.05,), temperature=(1.0,), min_report_ess=10.0
)


@pytest.fixture(scope="module")
def logs():
    return PROBLEM.sample(*jax.random.split(jax.random.key(3), 3))


@pytest.fixture(scope="module")
def searched(logs):
    data, test = logs
    lines = []
    result = train_search(TINY, BASE, data, seed=1, test_data=test, progress=lines.append)
    return result, lines


def test_candidates_vmapped_equal_each_configuration_trained_alone():
    # Two candidates in one call: naive and SNIPS (a OneOf objective), each with its own
    # learning rate, entropy and temperature; the second equals SNIPS trained alone.
    config = dataclasses.replace(BASE, objective=OneOf(choices=(Naive(), SNIPS(entropy=0.0))))
    hyper = {
        "learning_rate": [0.01, 0.002],
        "entropy": [0.0, 0.2],
        "temperature": [1.0, 0.5],
        "choice": [0, 1],
    }
    together, _ = train_seeds(config, seeds=1, problem=PROBLEM, hyperparameters=hyper)
    assert together.loss.shape == (1, 2, BASE.epochs)
    alone = dataclasses.replace(BASE, learning_rate=0.002, temperature=0.5, objective=SNIPS(entropy=0.2))
    result, _ = train_seeds(alone, seeds=1, problem=PROBLEM)
    np.testing.assert_allclose(together.loss[:, 1], result.loss, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(together.test_value[:, 1], result.test_value, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(together.selected_epoch[:, 1], result.selected_epoch)
    assert not np.allclose(together.loss[:, 0], result.loss)


def test_traced_settings_name_the_unknown_field():
    with pytest.raises(InputError, match=r"hyperparameters.*batch_size"):
        with_traced(BASE, {"batch_size": 3})
    with pytest.raises(InputError, match="hyperparameters"):
        train_seeds(
            BASE, seeds=1, problem=PROBLEM, hyperparameters={"learning_rate": [0.1], "entropy": [0.1, 0.2]}
        )


def test_three_way_split_is_a_partition():
    train, select, report = split_three(jax.random.key(0), 50, 0.2, 0.3)
    assert (len(train), len(select), len(report)) == (25, 10, 15)
    assert sorted(np.concatenate([train, select, report]).tolist()) == list(range(50))
    with pytest.raises(InputError, match=r"report_fraction.*at least 2"):
        split_three(jax.random.key(0), 6, 0.1, 0.1)


@pytest.mark.parametrize(
    "fields, argument",
    [
        ({"criterion": "ips"}, "criterion"),
        ({"select_fraction": 0.5, "report_fraction": 0.5}, "report_fraction"),
        ({"learning_rate": ()}, "learning_rate"),
        ({"entropy": (-1.0,)}, "entropy"),
        ({"objectives": ("nope",)}, "objective"),
        ({"budget_seconds": 0}, "budget_seconds"),
    ],
)
def test_search_values_are_checked(fields, argument):
    with pytest.raises(InputError, match=argument):
        Search(**fields)


def test_candidates_of_every_objective_train_as_one_call_and_baselines_join():
    ((config, values),) = TINY.groups(BASE)
    assert isinstance(config.objective, OneOf) and config.select == "snips-lower"
    assert [Candidate(config, v).objective.name for v in values] == ["naive", "regression", "snips"]
    assert Candidate(config, values[2]).config.objective == SNIPS(entropy=0.05)
    # naive 2 learning rates, regression and ips-regression x 2 temperatures, snips and dr x 3 entropies
    ((config, values),) = Search().groups(BASE)
    assert len(values) == 2 + 4 + 4 + 6 + 6
    assert {v["temperature"] for v in values if Candidate(config, v).objective.name == "regression"} == {
        1.0,
        0.1,
    }
    assert {v["temperature"] for v in values if Candidate(config, v).objective.name == "dr"} == {1.0}
    per_objective = dataclasses.replace(TINY, budget_seconds=10.0).groups(BASE)
    assert [config.objective.name for config, _ in per_objective] == ["naive", "regression", "snips"]


def test_report_rows_are_apart_and_the_table_is_honest(searched, logs):
    result, lines = searched
    data = logs[0]
    assert result.rows == {"train": 240, "select": 80, "report": 80}
    assert sum(result.rows.values()) == data.n_rounds
    names = [row["objective"] for row in result.table]
    assert result.table[0]["name"].startswith("chosen: ")
    assert names[-2:] == ["popularity", "logging"]
    assert {"naive", "regression", "snips"} <= set(names)
    # The logging row is the report rows' mean reward; each difference is paired on those rows.
    logging = result.table[-1]["snips"]
    *_, report_rows = split_three(
        jax.random.split(jax.random.fold_in(jax.random.key(1), 0x5EA))[0], data.n_rounds, 0.2, 0.2
    )
    assert logging["value"] == pytest.approx(float(np.mean(np.asarray(data.reward)[report_rows])))
    for row in result.table[:-1]:
        assert row["difference"]["value"] == pytest.approx(row["snips"]["value"] - logging["value"], abs=1e-6)
    # The chosen candidate has the highest selection bound of the candidates whose policy's
    # ESS on the selection rows reaches min(min_report_ess, a quarter of them).
    eligible = [c for c in result.candidates if c["eligible"]]
    assert all(c["select_ess"] >= min(TINY.min_report_ess, 80 / 4) for c in eligible) and eligible
    best = max(c["lower"] for c in eligible)
    assert result.table[0]["select_lower"] == best
    assert result.run.selected_validation["snips"] - 1.645 * result.run.selected_validation["snips_se"] == (
        pytest.approx(best, abs=1e-6)
    )
    assert np.isfinite(result.run.selected_value)
    assert any("candidates done" in line for line in lines)


def test_verdict_lines(searched):
    result, _ = searched
    d = result.report["difference"]
    assert result.verdict == ("better" if d["value"] - 2 * d["stderr"] > 0 else "not better")
    text = " ".join(result.lines)
    assert ("not better than the logging policy" in text) == (result.verdict == "not better")
    assert result.summary().splitlines()[0].startswith("policy")


def test_no_reward_keeps_the_initial_policy_and_says_so(logs):
    data = dataclasses.replace(logs[0], reward=jnp.zeros_like(logs[0].reward))
    search = dataclasses.replace(TINY, objectives=("naive",), min_report_ess=1e9)
    result = train_search(search, BASE, data)
    assert result.verdict == "initial"
    assert any("initial (untrained) policy" in line for line in result.lines)
    assert any("effective sample size" in line for line in result.lines)  # below min_report_ess


def test_budget_skips_the_rest_and_says_so(logs):
    lines = []
    search = dataclasses.replace(TINY, budget_seconds=1e-3)
    result = train_search(search, BASE, logs[0], progress=lines.append)
    assert result.skipped == ["regression", "snips"]  # the budget: one call per objective
    assert any("skipping snips" in line for line in lines)
