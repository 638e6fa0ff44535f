"""The seed study's figures: resumable cells, tables and plots, and options checked first."""

import json
import shutil

import pytest

from towerjax import cli
from towerjax.checks import InputError
from towerjax.studies.blog import FIGURES, StudyOptions, read_rows, run_blog_study

# Two cells of figure 1 (training rounds 40 and 300), the regression learner, two seeds.
TINY = StudyOptions(figures=(1,), seeds=2, epochs=1, quick=True, values=(40, 300), learners=("regression",))


def _values(rows):
    return [{k: v for k, v in row.items() if k != "seconds_cell"} for row in rows]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """``TINY`` run without interruption, shared by the tests that read it: ``(rows, folder)``."""
    out = tmp_path_factory.mktemp("whole")
    return run_blog_study(TINY, out, progress=False, log=lambda s: None), out


def test_an_interrupted_study_resumes_to_the_rows_of_an_uninterrupted_one(tmp_path, whole):
    whole, whole_dir = whole
    assert [(r["x"], r["seed"]) for r in whole] == [(40, 0), (40, 1), (300, 0), (300, 1)]

    out = tmp_path / "resumed"
    first = run_blog_study(TINY, out, progress=False, log=lambda s: None, max_cells=1)
    assert _values(first) == _values(whole[:2])
    assert not (out / "figure1.md").exists()  # no table for an unfinished figure
    with open(out / "rows.jsonl", "a") as handle:  # a kill in the middle of a write
        handle.write('{"cell": [1, 300, "regression"], "rows": [{"figure": 1, "x": 300, "learner": "regr')
    logged = []
    resumed = run_blog_study(TINY, out, progress=False, log=logged.append)
    assert "1 already in" in logged[0]
    assert _values(resumed) == _values(whole)
    assert _values(read_rows(out / "rows.jsonl")) == _values(whole)  # no duplicates, torn line gone
    assert (out / "figure1.md").read_text() == (whole_dir / "figure1.md").read_text()
    assert (out / "figure1.png").stat().st_size > 0

    again = []
    run_blog_study(TINY, out, progress=False, log=again.append)  # nothing left to do
    assert "2 already in" in again[0] and len(again) == 1
    assert _values(read_rows(out / "rows.jsonl")) == _values(whole)


def test_identical_cells_of_other_figures_reuse_the_finished_runs(tmp_path, monkeypatch, whole):
    batch = StudyOptions(
        figures=(4,), seeds=2, epochs=1, quick=True, values=(10,), learners=("regression",)
    )  # quick: 300 rounds, so figure 4's batch 10 is figure 1's 300 rounds
    fig1 = StudyOptions(figures=(1,), seeds=2, epochs=1, quick=True, values=(300,), learners=("regression",))
    assert batch.setup(*_cell(batch)) == fig1.setup(*_cell(fig1))
    shutil.copytree(whole[1], tmp_path, dirs_exist_ok=True)  # figure 1 finished, its 300 rounds among them

    def no_training(*args, **kwargs):
        raise AssertionError("the finished figure-1 cell should have been reused")

    monkeypatch.setattr("towerjax.studies.blog.train_seeds", no_training)
    rows = run_blog_study(batch, tmp_path, progress=False, log=lambda s: None)
    reference = [r for r in read_rows(tmp_path / "rows.jsonl") if r["figure"] == 1 and r["x"] == 300]
    assert [r["test_value"] for r in rows] == [r["test_value"] for r in reference]


def _cell(options):
    figure = FIGURES[options.figures[0]]
    return figure, options.values[0], options.learners[0]


def test_a_folder_with_another_studys_rows_is_refused(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"study": "blog", **TINY.to_dict(), "seeds": 5}))
    with pytest.raises(InputError, match=r"^out: .*seeds"):
        run_blog_study(TINY, tmp_path, progress=False, log=lambda s: None)


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--figure", "7"], "--figure"),
        (["--seeds", "0"], "--seeds"),
        (["--epochs", "-3"], "--epochs"),
        (["--values", "10,x"], "--values"),
        (["--values", "10,20"], "--values"),  # with --figure all
        (["--figure", "4", "--values", "100000"], "--values"),  # batch larger than the data
        (["--figure", "1", "--bogus"], "--bogus"),
    ],
)
def test_bad_study_options_fail_with_one_line_before_any_work(tmp_path, capsys, args, flag):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", "blog", "--out", str(out), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err
    assert not out.exists()


def test_an_unwritable_out_dir_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", "blog", "--quick", "--out", str(blocker / "out")])
    assert exit_info.value.code == 2
    assert "--out" in capsys.readouterr().err


def test_a_folder_of_the_older_csv_format_resumes_without_training(tmp_path, monkeypatch):
    # Written before rows.jsonl: rows.csv one line per seed, study.json without the study's name.
    (tmp_path / "study.json").write_text(json.dumps(TINY.to_dict()))
    header = (
        "figure,x,learner,seed,test_value,train_value,initial_value,behavior_value,optimal_value,seconds_cell"
    )
    lines = [f"1,{x},regression,{s},0.{x}{s},0.5,0.4,0.3,0.9,2.5" for x in TINY.values for s in (0, 1)]
    (tmp_path / "rows.csv").write_text("\n".join([header, *lines[:3]]) + "\n" + lines[3][:9])  # torn
    monkeypatch.setattr("towerjax.studies.blog.train_seeds", lambda *a, **k: pytest.fail("x=40 was finished"))
    rows = run_blog_study(TINY, tmp_path, progress=False, log=lambda s: None, max_cells=0)
    assert [(r["x"], r["seed"], r["test_value"]) for r in rows] == [(40, 0, 0.400), (40, 1, 0.401)]
    assert json.loads((tmp_path / "study.json").read_text())["study"] == "blog"
