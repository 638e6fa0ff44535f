"""The search as the default of ``towerjax train --logs`` and ``own_logs.fit`` (SPEC 9).

Two tiny searches, each trained once for the module: the command line's (``--search-objectives
snips`` at one learning rate and entropy bonus: with the naive baseline and the regression one
at the default's two temperatures, four candidates in one compiled call) and Python's with a
time budget that leaves room for the first objective only. A third fit, Python's with
validation logs, has the shapes and settings of the second, so with JAX's persistent
compilation cache on (conftest.py's ``compilation_cache`` fixture) it loads the second's
programs that JAX caches (those that took a second or more to compile) instead of compiling
them again. The one-configuration path (``--search none``) is tested in test_own_logs.py.
"""

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from towerjax import jsonio, own_logs
from towerjax.checks import InputError
from towerjax.cli import build_parser, flags, main
from towerjax.serving import load_model
from towerjax.training import Search, TrainConfig
from towerjax.workflow.train import ignored_settings

N_ROWS, N_ITEMS = 300, 4
TINY = ["--hidden-sizes", "8", "--embedding-size", "4", "--epochs", "2", "--batch-size", "32"]
TINY_CONFIG = TrainConfig(hidden_sizes=(8,), embedding_size=4, epochs=2, batch_size=32)
ONE_SNIPS = ["--search-objectives", "snips", "--learning-rate", "0.003", "--entropy", "0.05"]
# One snips candidate and a budget that only the first objective (naive: the baselines run
# first) fits in.
BUDGETED = Search(objectives=("snips",), learning_rate=(0.003,), entropy=(0.05,), budget_seconds=1e-3)

pytestmark = pytest.mark.usefixtures("compilation_cache")


def _logs(n: int = N_ROWS) -> pd.DataFrame:
    """Uniform logging over 4 items; the click probability depends on age and the item."""
    rng = np.random.default_rng(0)
    age = rng.normal(size=n).round(3)
    action = rng.integers(0, N_ITEMS, n)
    logit = 1.5 * age * (action - 1.5) - 0.3
    return pd.DataFrame(
        {
            "age": age,
            "device": rng.choice(["ios", "web"], n),
            "item_id": [f"i{a}" for a in action],
            "reward": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
            "pscore": np.full(n, 1 / N_ITEMS),
        }
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """``(model folder, stdout, report)`` of ``towerjax train --logs`` searching, with the DR
    pair limit lowered to 100 so the DR validation estimate is skipped (60 selection rows x 4
    items) and the report must say why."""
    root = tmp_path_factory.mktemp("search")
    _logs().to_csv(root / "logs.csv", index=False)
    out, stdout = root / "model", io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr("towerjax.training.loop.VALIDATION_DR_PAIRS", 100)
        patch.setattr("towerjax.workflow.report.VALIDATION_DR_PAIRS", 100)
        code = main(["train", "--logs", str(root / "logs.csv"), "--out", str(out), "--search", "default", *ONE_SNIPS, *TINY])  # fmt: skip
    assert code == 0
    return out, stdout.getvalue(), json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def budgeted():
    """``(FitResult, progress lines)`` of ``own_logs.fit`` with the :data:`BUDGETED` search."""
    lines = []
    result = own_logs.fit(_logs(), config=TINY_CONFIG, search=BUDGETED, progress=lines.append)
    return result, lines


def test_report_json_has_the_search_table_with_the_logging_and_popularity_baselines(searched):
    _, _, report = searched
    search = report["search"]
    table = search["table"]
    assert [row["objective"] for row in table][-2:] == ["popularity", "logging"]
    assert {row["objective"] for row in table[:-2]} == {"naive", "regression", "snips"}
    assert table[0]["name"].startswith("chosen: ") and table[0]["name"].endswith(search["chosen"]["label"])
    assert search["verdict"] in ("better", "not better", "initial") and search["lines"][0].startswith(
        "chosen: "
    )
    assert report["config"] == search["chosen"]["config"]  # the saved policy is the chosen candidate
    assert len(search["candidates"]) == 4 and search["criterion"] == "snips"
    regression = [c["values"]["temperature"] for c in search["candidates"] if c["objective"] == "regression"]
    assert sorted(regression) == [0.1, 1.0]  # the regression baseline at each temperature of the grid
    data = report["data"]
    assert (data["training_rows"], data["selection_rows"], data["report_rows"]) == (180, 60, 60)
    logging = table[-1]["snips"]  # on-policy: the report rows' mean reward
    assert logging["wald_low"] < logging["value"] < logging["wald_high"]
    for row in table[:-1]:
        d = row["difference"]
        assert d["stderr"] > 0 and d["value"] == pytest.approx(
            row["snips"]["value"] - logging["value"], abs=1e-5
        )
    # the chosen run's curves (on the selection rows): DR skipped, and report.json says why
    assert np.array(report["validation"]["snips"]["per_seed"]["value"], float).shape == (1, 3)
    why = report["validation"]["dr"]["skipped"]
    assert "60 validation rows x 4 items = 240 (row, item) pairs, above the limit of 100" in why
    assert why in report["notes"] and report["validation"]["snips"]["skipped"] is None
    # "the estimate" of the chosen policy on the report rows: SLOPE-MSE within dr-os (the search's
    # reward model), whose lambda = inf member is the table's DR estimate of the chosen policy
    estimate = report["estimate"]
    assert (estimate["rows"], estimate["n"]) == ("report", 60)
    widest = estimate["the_estimate"]["candidates"][0]
    assert estimate["the_estimate"]["family"] == "dr-os" and widest["lambda"] == "inf"
    assert widest["value"] == pytest.approx(table[0]["dr"]["value"], rel=1e-5, abs=1e-7)
    assert set(estimate["lower_bound"]) == {"value", "clip", "delta", "method"}


def test_the_command_line_prints_the_table_the_verdict_and_why_dr_was_skipped(searched):
    _, stdout, report = searched
    assert "searching 4 candidates" in stdout and "vs logging" in stdout
    for line in report["search"]["lines"]:
        assert line in stdout
    assert "logging policy (on-policy mean reward)" in stdout and "popularity (item" in stdout
    assert "--validation-dr computes it anyway" in stdout  # the note's setting, named as the flag
    assert "note: training one configuration" not in stdout
    assert f"the estimate on the 60 report rows: {report['estimate']['the_estimate']['name']} = " in stdout


def test_the_saved_model_is_the_chosen_candidate_and_loads_and_recommends(searched):
    out, _, report = searched
    policy = load_model(out)
    assert json.loads(jsonio.dumps(policy.config.to_dict())) == report["config"]
    assert policy.metadata["search"]["chosen"] == report["search"]["chosen"]["label"]
    assert policy.metadata["search"]["verdict"] == report["search"]["verdict"]
    recs = own_logs.recommend(out, _logs(5), k=2)
    assert recs.item_ids.shape == (5, 2) and set(recs.item_ids.ravel()) <= {f"i{j}" for j in range(N_ITEMS)}
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    figure = own_logs.plot_curves(report)  # from report.json read back
    assert (
        figure.axes[0].get_title() == "selection SNIPS" and "DR skipped" in figure.axes[1].texts[0].get_text()
    )


def test_a_budget_skips_objectives_and_says_so(budgeted):
    result, lines = budgeted
    assert result.search.skipped == ["regression", "snips"]
    assert any("skipping regression" in line for line in lines)
    assert result.report["search"]["skipped"] == ["regression", "snips"]
    assert "skipped by the search's time budget: regression, snips" in result.summary()
    assert result.summary().count("\n") > 5 and "vs logging" in result.summary()
    # FitResult keeps its meaning: the chosen run with a leading axis of 1, seed 0 kept.
    assert result.chosen_seed == 0 and np.shape(result.result.selected_epoch) == (1,)
    assert (
        result.policy.config == result.search.chosen.config and result.policy.config.objective.name == "naive"
    )


def test_fit_result_data_and_validation_are_the_search_training_and_selection_rows(budgeted):
    result, _ = budgeted
    split, reward = result.search.split, _logs().reward.to_numpy()
    assert split["of"] == "data"
    parts = np.concatenate([split["train"], split["select"], split["report"]])
    np.testing.assert_array_equal(np.sort(parts), np.arange(N_ROWS))  # three parts of the logs' rows
    assert (result.data.n_rounds, result.validation.n_rounds) == (180, 60)
    np.testing.assert_array_equal(result.data.reward, reward[split["train"]])
    np.testing.assert_array_equal(result.validation.reward, reward[split["select"]])


def test_with_validation_logs_the_search_trains_on_every_row_and_chooses_on_half_of_them():
    rows = _logs()  # 180 rows of logs and 120 validation rows: the budgeted fit's shapes and settings
    logs, held_out = rows.iloc[:180], rows.iloc[180:]
    result = own_logs.fit(logs, config=TINY_CONFIG, search=BUDGETED, validation=held_out, progress=[].append)
    split = result.search.split
    assert split["of"] == "validation" and result.search.rows == {"train": 180, "select": 60, "report": 60}
    np.testing.assert_array_equal(split["train"], np.arange(180))
    parts = np.concatenate([split["select"], split["report"]])
    np.testing.assert_array_equal(np.sort(parts), np.arange(120))  # the validation logs, halved
    np.testing.assert_array_equal(result.data.reward, logs.reward.to_numpy())
    np.testing.assert_array_equal(result.validation.reward, held_out.reward.to_numpy()[split["select"]])


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--search", "all"], "--search"),
        (["--search-budget", "0"], "--search-budget"),
        (["--search-criterion", "ips"], "--search-criterion"),
        (["--search-objectives", "snips,magic"], "--search-objectives"),
        (["--search", "none", "--search-budget", "60"], "--search-budget"),
        (["--search", "default", "--select", "dr"], "--select"),
        (["--search", "default", "--validation-fraction", "0"], "--validation-fraction"),
        (["--search", "default", "--cap", "3"], "--cap"),
        (["--objective", "dr", "--search-objectives", "snips"], "--objective"),
        (["--search", "default", "--learning-rate", "0"], "--learning-rate"),
    ],
)
def test_bad_search_flags_exit_2_with_one_line_naming_the_flag(args, flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--logs", str(tmp_path / "logs.csv"), "--out", str(tmp_path / "m"), *args])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"argument {flag}:" in lines[0], lines


def test_one_configuration_flags_without_search_keep_their_meaning():
    parse = build_parser().parse_args
    base = ["train", "--logs", "l.csv", "--out", "m"]
    args = parse([*base, "--objective", "dr"])  # as before the search: one configuration
    assert flags.search_mode(args) == "none" and flags.fit_arguments(args)["search"] is None
    assert "--objective given" in flags.search_note(args) and "--search default" in flags.search_note(args)
    assert flags.fit_arguments(parse(base))["search"] == Search()  # nothing given: the search
    fixed = flags.fit_arguments(parse([*base, "--search", "default", *ONE_SNIPS, "--search-budget", "9"]))
    assert fixed["search"] == Search(
        objectives=("snips",), learning_rate=(0.003,), entropy=(0.05,), budget_seconds=9
    )
    assert fixed["config"] == TrainConfig()  # the base: the searched settings are the search's
    (note,) = ignored_settings(TrainConfig(objective="dr", learning_rate=0.01))  # Python: said, not silent
    assert "objective='dr', learning_rate=0.01 are not used" in note and "search=None" in note


def test_fit_refuses_a_search_without_held_out_rows(tmp_path):
    for kwargs, argument in (
        (dict(validation=0), "validation"),
        (dict(config=TrainConfig(validation_fraction=0.0)), "validation_fraction"),
        (dict(search="default"), "search"),
    ):
        with pytest.raises(InputError) as err:
            own_logs.fit(tmp_path / "not-read.csv", **kwargs)
        assert err.value.argument == argument and ("search=None" in err.value.message or argument == "search")
