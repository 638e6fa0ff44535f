"""What users read around a model (issue 23): the figures' data (curves from epoch 0 with a band
per estimate, the logging policy's line), the note on rewards that are not 0/1, evaluate's
help listing its estimators, and recommend's policy probabilities. No training runs here: the
reports are built from a made-up training result, the policy from initial parameters."""

import types

import jax
import numpy as np
import pytest

from towerjax.cli import build_parser
from towerjax.data import LoggedData
from towerjax.evaluation import ESTIMATORS, Estimate
from towerjax.reward_model import RewardModelConfig
from towerjax.serving import SavedPolicy
from towerjax.studies.headline import plot_results
from towerjax.tables import logged_data_from_frame
from towerjax.training import TrainConfig
from towerjax.workflow.evaluate import Evaluation, evaluate
from towerjax.workflow.recommend import policy_probabilities, recommend
from towerjax.workflow.report import fit_report, plot_curves, reward_model_loss, reward_note

pytest.importorskip("matplotlib")

SEEDS, EPOCHS = 3, 4


def _report(*, validation=True):
    """A fit report of a made-up run: each seed's validation curves and its initial policy's."""
    rng = np.random.default_rng(0)
    curves, initial = {}, {}
    for name in ("snips", "dr"):
        curves[name] = (
            0.3 + 0.1 * rng.random((SEEDS, EPOCHS)) if validation else np.full((SEEDS, EPOCHS), np.nan)
        )
        curves[name + "_se"] = np.full((SEEDS, EPOCHS), 0.02)
        initial[name] = np.full(SEEDS, 0.25) if validation else np.full(SEEDS, np.nan)
        initial[name + "_se"] = np.full(SEEDS, 0.02)
    result = types.SimpleNamespace(
        validation=curves,
        initial_validation=initial,
        loss=np.zeros((SEEDS, EPOCHS)),
        top_share=np.zeros((SEEDS, EPOCHS)),
        selected_epoch=np.array([0, 2, 4]),
    )
    n, items = 20, 4
    data = LoggedData(
        context=np.zeros((n, 2), np.float32),
        action_context=np.eye(items, dtype=np.float32),
        action=np.arange(n) % items,
        reward=(np.arange(n) % 2).astype(np.float32),
        pscore=np.full(n, 1 / items, np.float32),
    )
    selected = {k: v[:, 0] for k, v in curves.items()} if validation else None
    return fit_report(
        config=TrainConfig(objective="dr"),
        result=result,
        timing={},
        selected=selected,
        criterion="snips" if validation else None,
        chosen=1,
        seeds=SEEDS,
        seed=0,
        data=data,
        features={"context": [], "items": []},
        train_data=data,
        validation_data=data if validation else None,
        sources={"logs": "clicks.csv", "items": None, "validation": "20% of the logs"},
        columns={},
        positions=None,
        unseen=None,
        notes=[],
    )


def test_the_training_curves_start_at_the_initial_policy_with_one_band_per_estimate():
    report = _report()
    assert report["epochs"] == list(range(EPOCHS + 1))  # epoch 0: the initial policy
    for name in ("snips", "dr"):
        value = np.asarray(report["validation"][name]["per_seed"]["value"])
        assert value.shape == (SEEDS, EPOCHS + 1) and np.all(value[:, 0] == 0.25)
    figure = plot_curves(report)
    assert "dr" in figure._suptitle.get_text() and "clicks.csv" in figure._suptitle.get_text()
    assert "± 1 s.e." in figure._supxlabel.get_text() and f"{SEEDS} seeds" in figure._supxlabel.get_text()
    for ax, name in zip(figure.axes, ("snips", "dr"), strict=True):
        assert len(ax.collections) == 1  # one band: the mean over seeds ± 1 s.e.
        band = ax.collections[0].get_paths()[0].vertices
        mean = np.asarray(report["validation"][name]["mean"]["value"])
        stderr = np.asarray(report["validation"][name]["mean"]["stderr"])
        assert band[:, 0].min() == 0 and np.isclose(band[:, 1].max(), np.max(mean + stderr))
        curves = [line for line in ax.lines if line.get_linestyle() == "-"]
        assert len(curves) == SEEDS + 1  # a thin line per seed, then the thick mean
        assert all(list(line.get_xdata()) == report["epochs"] for line in curves)
        np.testing.assert_allclose(curves[-1].get_ydata(), mean)
        assert curves[-1].get_linewidth() > curves[0].get_linewidth()
        kept = [line for line in ax.lines if line.get_marker() == "o"]  # the kept seed's selected epoch
        assert len(kept) == 1 and list(kept[0].get_xdata()) == [2]
        assert any(line.get_linestyle() == ":" for line in ax.lines)  # the logging policy


def test_curves_without_validation_rows_say_so():
    figure = plot_curves(_report(validation=False))
    assert figure.axes[0].texts[0].get_text() == "no validation estimates"
    assert not figure.axes[0].collections


def _estimate(value):
    return Estimate(value, 0.01, value - 0.02, value + 0.02, np.nan, np.nan, None, None)


def test_the_evaluation_plot_draws_the_logging_policys_value():
    summary = {"source": "held_out.csv", "reward_mean": 0.31, "models": [{}, {}]}
    estimates = [{name: _estimate(0.4 + i / 100) for name in ("ipw", "snipw", "dr")} for i in range(2)]
    figure = Evaluation(["a", "b"], estimates, None, [], summary).plot()
    for ax in figure.axes:  # one row per model, each with the logging line at the logs' mean reward
        logging = [line for line in ax.lines if line.get_label() == "logging policy (mean reward)"]
        assert len(logging) == 1 and list(logging[0].get_xdata()) == [0.31, 0.31]
    assert "logging policy" in figure.axes[-1].get_xlabel()


def test_the_study_figure_says_its_bands_are_one_standard_error_over_the_seeds(tmp_path):
    cell = dict(
        settings="defaults",
        learner="ips",
        test_curve=[0.3, 0.4, 0.5],
        test_curve_se=[0.01, 0.02, 0.02],
        test_value=[0.5] * 8,
        behavior_value=[0.3] * 8,
        optimal_value=[0.8] * 8,
        config={"learning_rate": 0.001, "batch_size": 128},
    )
    cells = [dict(cell, behavior=b) for b in ("uniform", "epsilon-greedy")]
    plot_results(cells, tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 0


def test_rewards_that_are_not_0_or_1_get_one_note_on_how_they_are_treated():
    assert reward_note(np.array([0.0, 1.0, 1.0]), "bce") is None
    assert reward_model_loss(np.array([0.0, 0.5, 1.0])) == "bce"
    ratings = np.array([0.0, 3.0, 7.0, 5.0])
    assert reward_model_loss(ratings) == "mse" and reward_model_loss(ratings, "bce") == "mse"
    fit_note = reward_note(ratings, "mse")
    assert fit_note.startswith("rewards are not 0/1 (4 distinct values, 0 to 7)")
    assert "squared error" in fit_note and "ipw-ls" not in fit_note
    evaluate_note = reward_note(ratings, "mse", evaluating=True)
    assert "ipw-ls" in evaluate_note and "left out" in evaluate_note
    assert "binary cross-entropy" in reward_note(np.array([0.0, 0.5, 1.0]), "bce", evaluating=True)


def test_evaluate_help_lists_the_estimators_it_prints(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ESTIMATORS:
        assert (name in text) == (name != "mips"), name  # mips needs the whole logging policy


# --------------------------------------------------------------------------- recommend


@pytest.fixture(scope="module")
def policy():
    frame = {
        "city": np.array(["Oslo", "Rome", "Oslo", "Lima", "Rome", "Lima"], dtype=object),
        "age": np.linspace(-1, 1, 6),
        "item": np.array(list("abcdeb")),
        "click": np.array([1, 0, 0, 1, 0, 1]),
        "p": np.full(6, 0.2),
    }
    items = {"id": np.array(list("abcde")), "price": np.linspace(0, 1, 5)}
    data, encoding = logged_data_from_frame(
        frame, context_columns=["city", "age"], action_column="item", reward_column="click",
        pscore_column="p", item_table=items, item_id_column="id", min_count=1,
    )  # fmt: skip
    reward_model = RewardModelConfig(hidden_sizes=(4,), epochs=1)  # evaluate's, small
    config = TrainConfig(hidden_sizes=(8,), embedding_size=4, temperature=0.5, reward_model=reward_model)
    params = config.model.init(jax.random.key(0), data.context.spec, data.action_context.spec)
    return SavedPolicy(
        config=config,
        params=params,
        item_features=data.action_context,
        item_ids=list(encoding.item_ids),
        encoding=encoding,
    ), frame


def test_recommend_probabilities_are_the_policys_at_the_listed_items(policy):
    policy, _ = policy
    contexts = {"city": np.array(["Rome", "Paris", "Oslo"], dtype=object), "age": np.array([0.0, 0.5, -1.0])}
    plain = recommend(policy, contexts, k=3)
    with_pi = recommend(policy, contexts, k=3, probabilities=True)
    assert plain.probabilities is None and "probability_1" not in plain.table
    assert list(with_pi.table.columns) == [
        "row",
        *(f"{c}_{j}" for j in (1, 2, 3) for c in ("item", "score", "probability")),
    ]
    np.testing.assert_array_equal(
        with_pi.table.drop(columns=["probability_1", "probability_2", "probability_3"]), plain.table
    )
    context = policy.encoding.encode_contexts(contexts, unknown="ignore")
    log_pi = np.asarray(policy.log_probs(context), np.float64)  # softmax(s / 0.5) over all 5 items
    expected = np.exp(np.take_along_axis(log_pi, with_pi.item_index, axis=1))
    np.testing.assert_allclose(with_pi.probabilities, expected, rtol=1e-6)
    np.testing.assert_allclose(with_pi.table["probability_2"], expected[:, 1], rtol=1e-6)
    assert np.all(np.diff(with_pi.probabilities, axis=1) <= 0)  # top-k: decreasing, as the scores
    assert np.all(with_pi.probabilities.sum(axis=1) <= 1 + 1e-9)
    everything = recommend(policy, contexts, k=5, probabilities=True)  # the whole catalogue: 1
    np.testing.assert_allclose(everything.probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_policy_probabilities_in_chunks_equal_all_at_once(policy):
    policy, frame = policy
    context = policy.encoding.encode_contexts(frame, unknown="ignore")
    index = np.tile(np.arange(5), (6, 1))
    whole = policy_probabilities(policy, context, index)
    chunked = policy_probabilities(policy, context, index, max_elements=20)  # 4 rows, then 2
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    np.testing.assert_allclose(whole, np.exp(np.asarray(policy.log_probs(context), np.float64)), rtol=1e-6)


def test_evaluate_on_ratings_says_how_it_treats_them(policy):
    policy, frame = policy
    ratings = dict(frame, click=np.array([0, 3, 7, 5, 1, 2]))  # 0..7: not a click
    evaluation = evaluate(
        policy, ratings, item_column="item", reward_column="click", pscore_column="p", n_bootstrap=2
    )
    (note,) = evaluation.summary["notes"]
    assert note == reward_note(ratings["click"], "mse", evaluating=True)
    assert f"  note: {note}" in evaluation.table().splitlines()
    assert evaluation.summary["models"][0]["reward_model"]["loss"] == "mse"
    assert "ipw-ls" not in evaluation.estimates[0]  # as the note says
