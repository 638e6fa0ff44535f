"""The command line: the JSON schema of ``towerjax train``, the main job, bad flags, and flags
built from the fields of the values they set."""

import json
import subprocess
import sys

import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.reward_model import RewardModelConfig
from towerjax.studies.headline import run_headline
from towerjax.synthetic import SyntheticProblem
from towerjax.tables import EncodingOptions
from towerjax.training import TrainConfig


def _cli(*args, tmp_path=None):
    return subprocess.run(
        [sys.executable, "-m", "towerjax.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def test_train_json_has_the_documented_schema(tmp_path):
    out = tmp_path / "run.json"
    proc = _cli(
        "train", "--objective", "snips", "--n-rounds", "60", "--n-test-rounds", "50", "--n-actions", "4",
        "--batch-size", "7", "--epochs", "2", "--seeds", "2", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.read_text())
    for key in ("config", "problem", "seconds_compile", "seconds_train", "seed_steps", "devices"):
        assert key in payload
    assert payload["config"]["objective"]["name"] == "snips" and payload["config"]["batch_size"] == 7
    assert payload["problem"] == SyntheticProblem(n_rounds=60, n_test_rounds=50, n_actions=4).to_dict()
    assert "n_rounds" not in payload["config"]  # training settings only
    assert "selected_value" in proc.stdout and "compile" in proc.stdout
    assert payload["seed_steps"] == 2 * 2 * 7  # seeds * epochs * ceil(48 / 7): 12 of 60 rows validate
    for key in ("initial_value", "test_value", "behavior_value", "optimal_value"):
        assert len(payload[key]) == 2 and all(0 < v < 1 for v in payload[key])
    assert payload["seconds_compile"] > 0 and payload["seconds_train"] > 0


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--objective", "magic"], "--objective"),
        (["--epsilon", "1.5"], "--epsilon"),
        (["--epsilon", "abc"], "--epsilon"),
        (["--learning-rate", "-1"], "--learning-rate"),
        (["--n-rounds", "10", "--batch-size", "11"], "--batch-size"),
        (["--seeds", "0"], "--seeds"),
        (["--behavior", "greedy"], "--behavior"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--clip", "0.1"], "--clip"),
        (["--clip", "2,1"], "--clip"),
        (["--cap", "-1"], "--cap"),
        (["--cap", "2", "--clip", "0.1,5"], "--cap"),
        (["--k", "0"], "--k"),
        (["--objective", "ips", "--k", "3"], "--k"),
        (["--objective", "two-stage", "--cap", "3"], "--cap"),
        (["--objective", "snips", "--no-self-normalize"], "--self-normalize"),
        (["--variance-penalty", "-0.5"], "--variance-penalty"),
        (["--optimizer", "sgd"], "--optimizer"),
        (["--categorical", "user_id"], "--categorical"),  # own-log flags without --logs
        (["--hash", "user_id=1000"], "--hash"),
        (["--min-count", "3"], "--min-count"),
        (["--embedding-dim", "user_id"], "--embedding-dim"),
        (["--embedding-dim", "user_id=0"], "--embedding-dim"),
        (["--no-item-id-embedding"], "--no-item-id-embedding"),
    ],
)
def test_bad_flags_exit_2_with_one_line_naming_the_flag(args, flag, capsys):
    from towerjax.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", *args])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], lines


def test_bare_command_prints_usage_and_help_shows_defaults(capsys):
    from towerjax.cli import main

    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "seed-study: 0.005]" in text and "--unbiased" in text and "0.01,10]" in text
    assert "(default" not in text and "[default 128; seed-study: 10]" in text  # one default style
    problem = text[text.index("the built-in synthetic problem") :].split("\n\n")[0]
    assert all(
        f"--{name}" in problem for name in ("behavior", "epsilon", "n-rounds", "n-test-rounds", "n-actions")
    )


def test_study_chen_writes_learned_and_expected_policies(tmp_path):
    out = tmp_path / "chen.json"
    proc = _cli("study", "chen", "--steps", "300", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["simulation"] for r in rows] == ["a/naive", "a/ips", "b/ips", "b/topk"]
    for row in rows:
        assert len(row["learned_pi"]) == len(row["expected_pi"]) == 10
        assert abs(sum(row["learned_pi"]) - 1) < 1e-4
    assert "expected pi" in proc.stdout


def test_unwritable_output_is_reported_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = _cli("run", "--out", str(blocker / "sub"))
    assert proc.returncode == 2 and "--out" in proc.stderr and "Traceback" not in proc.stderr


def test_main_job_writes_table_csv_json_and_plot(tmp_path):
    # The main job's seed-study settings at tiny sizes (no validation split, an in-sample
    # reward model: the smallest programs to compile, six of them).
    tiny = TrainConfig.seed_study(
        hidden_sizes=(8,), embedding_size=4, batch_size=8, epochs=2,
        reward_model=RewardModelConfig(hidden_sizes=(8,), epochs=1, folds=1),
    )  # fmt: skip
    settings = {"seed-study": tiny}
    problem = SyntheticProblem(n_rounds=40, n_test_rounds=30, n_actions=3, dim=4)
    lines = []
    cells = run_headline(settings, seeds=2, seed=0, out=tmp_path, log=lines.append, problem=problem)
    assert [(c["behavior"], c["learner"]) for c in cells] == [
        (b, learner) for b in ("uniform", "epsilon-greedy") for learner in ("ips", "dr", "regression")
    ]
    assert all(c["config"]["objective"]["entropy"] == 0 for c in cells)  # the seed's learners had none
    assert len(lines) == 7 and lines[-1].startswith("[6/6]")
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["table"].count("\n") == 7 and len(payload["cells"]) == 6
    rows = (tmp_path / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6 * 2 and rows[0].startswith("settings,behavior,learner,seed,test_value")
    assert (tmp_path / "results.png").stat().st_size > 10_000
    np.testing.assert_allclose(cells[0]["test_value"], payload["cells"][0]["test_value"])
    again = []  # the same job in the same folder: every cell is already there
    assert run_headline(settings, seeds=2, seed=0, out=tmp_path, log=again.append, problem=problem) == cells
    assert again == [f"headline: 6 cells (6 already in {tmp_path / 'rows.jsonl'})"]


def test_data_without_a_reachable_registry_says_how_to_place_the_wheel(tmp_path):
    import os

    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "towerjax.cli", "data", "obd", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "obp==0.4.1" in proc.stderr and "copy the .whl" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_that_goes_non_finite_exits_1_naming_seed_epoch_and_objective(monkeypatch, capsys):
    import dataclasses
    from typing import ClassVar

    import jax.numpy as jnp

    from towerjax import cli
    from towerjax.objectives import OBJECTIVES, Objective

    @dataclasses.dataclass(frozen=True)
    class Diverging(Objective):
        name: ClassVar[str] = "diverging"

        def loss(self, *, scores, log_pi, action, reward, pscore, q_hat=None, key=None, mask=None):
            return jnp.sum(scores) * jnp.nan

    monkeypatch.setitem(OBJECTIVES, Diverging.name, Diverging)
    code = cli.main(
        ["train", "--objective", "diverging", "--n-rounds", "20", "--n-test-rounds", "10", "--n-actions", "3",
         "--batch-size", "10", "--epochs", "2", "--seeds", "2", "--validation-fraction", "0", "--select", "none"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "run 0 of root seed 0" in err and "epoch 1" in err and "diverging" in err


def test_scale_flags_reach_the_train_config():
    from towerjax.cli import build_parser
    from towerjax.cli.flags import train_config as _train_config

    args = build_parser().parse_args(
        ["train", "--sampled-softmax", "512", "--proposal", "popularity", "--data-parallel", "2",
         "--embedding-mode", "sum", "--embedding-weight-decay", "0.01"]
    )  # fmt: skip
    config = _train_config(args)
    assert (config.sampled_softmax, config.proposal, config.data_parallel) == (512, "popularity", 2)
    assert (config.embedding_mode, config.embedding_weight_decay) == ("sum", 0.01)
    with pytest.raises(InputError, match="sampled_softmax"):
        _train_config(
            build_parser().parse_args(["train", "--objective", "two-stage", "--sampled-softmax", "64"])
        )


def test_flags_are_built_from_the_fields_of_the_values_they_set():
    import dataclasses

    from towerjax.cli import build_parser
    from towerjax.cli.flags import (
        ENCODING_FLAGS,
        PROBLEM_FLAGS,
        TRAINING_FLAGS,
        encoding_options,
        synthetic_problem,
        train_config,
    )

    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (TrainConfig, SyntheticProblem)}
    assert set(TRAINING_FLAGS) <= fields[TrainConfig] and set(PROBLEM_FLAGS) <= fields[SyntheticProblem]
    assert set(ENCODING_FLAGS) == {f.name for f in dataclasses.fields(EncodingOptions)}  # every option
    parse = build_parser().parse_args
    args = parse(["train"])  # nothing given: the values' own defaults
    assert (train_config(args), synthetic_problem(args)) == (TrainConfig(), SyntheticProblem())
    args = parse(
        ["train", "--preset", "seed-study", "--objective", "dr", "--epochs", "3", "--n-actions", "4"]
    )
    assert train_config(args) == TrainConfig.seed_study(objective="dr", epochs=3)
    assert synthetic_problem(args) == SyntheticProblem(n_actions=4)
    args = parse(["train", "--logs", "l.csv", "--hash", "user=8,city=4", "--embedding-dim", "user=3",
                  "--hash", "device=2", "--no-item-id-embedding", "--numeric-strings", "parse"])  # fmt: skip
    assert encoding_options(args) == EncodingOptions(
        hash_buckets={"user": 8, "city": 4, "device": 2},
        embedding_dims={"user": 3},
        item_id_embedding=False,
        numeric_strings="parse",
    )
    assert encoding_options(parse(["train", "--logs", "l.csv"])) == EncodingOptions()


def test_own_logs_train_with_a_batch_larger_than_the_synthetic_problem(tmp_path):
    """No synthetic-problem limit applies to your own logs: a batch beyond the built-in
    problem's n_rounds uses every training row in one batch."""
    rng = np.random.default_rng(0)
    rows = 40
    lines = ["item_id,reward,pscore,age"] + [
        f"i{rng.integers(3)},{rng.integers(2)},0.3333,{rng.normal():.3f}" for _ in range(rows)
    ]
    (tmp_path / "l.csv").write_text("\n".join(lines) + "\n")
    proc = _cli(
        "train", "--logs", "l.csv", "--out", "model", "--batch-size", "16384", "--epochs", "1",
        "--hidden-sizes", "4", "--embedding-size", "2", "--search", "none", tmp_path=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "model" / "report.json").read_text())
    assert report["config"]["batch_size"] == 16384 and "n_rounds" not in report["config"]
