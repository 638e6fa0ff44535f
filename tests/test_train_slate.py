"""``towerjax train --slate``: a Plackett-Luce list policy from slate log files, end to end."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from towerjax.cli import build_parser, main
from towerjax.cli.slate import slate_note
from towerjax.list_policy import position_log_probs, sample_lists
from towerjax.list_training import ListTrainConfig
from towerjax.serving import load_model
from towerjax.slate_synthetic import (
    logging_scores,
    position_click_probs,
    sample_contexts,
    slate_problem,
)
from towerjax.training import validation_rows

N_ROWS = 300
TINY = ["--epochs", "1", "--seeds", "2", "--batch-size", "64", "--hidden-sizes", "8", "--embedding-size", "4"]


@functools.cache
def slate_table(n: int) -> pd.DataFrame:
    """Slate logs of :mod:`towerjax.slate_synthetic`'s logger (10 items, lists of 3) as a table: five
    numeric contexts, a text column (an embedded id) and per position the item, click and conditional
    pscore ``pi_0(a_k | x, a_1..a_k-1)``."""
    problem = slate_problem(jax.random.key(0))

    @jax.jit
    def draw(key):
        k_x, k_list, k_click = jax.random.split(key, 3)
        context = sample_contexts(k_x, problem, n)
        scores = logging_scores(problem, context)
        lists = sample_lists(k_list, scores, problem.list_size)
        clicked = jnp.take_along_axis(position_click_probs(problem, context), lists[..., None], -1)[..., 0]
        rewards = jax.random.bernoulli(k_click, clicked)
        return context, lists, rewards, jnp.exp(position_log_probs(scores, lists))

    context, lists, rewards, conditional = (np.asarray(v) for v in draw(jax.random.key(1)))
    frame = pd.DataFrame(np.asarray(context), columns=[f"x{j}" for j in range(problem.context_dim)])
    frame["country"] = [f"c{i % 3}" for i in range(n)]
    for k in range(problem.list_size):
        frame[f"item_id_{k + 1}"] = [f"i{a}" for a in np.asarray(lists[:, k])]
        frame[f"reward_{k + 1}"] = rewards[:, k].astype(np.float64)
        frame[f"pscore_{k + 1}"] = conditional[:, k].astype(np.float64)
    return frame


def slate_frame(n: int) -> pd.DataFrame:
    """The first ``n`` rows of :func:`slate_table` (a copy)."""
    return slate_table(N_ROWS).head(n).copy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``towerjax train --logs slate.csv`` (no --slate: detected), 2 seeds of 1 epoch, what it printed."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("train_slate")
    frame = slate_frame(N_ROWS)
    frame.to_csv(root / "slate.csv", index=False)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(
            [
                "train",
                "--logs",
                str(root / "slate.csv"),
                "--out",
                str(root / "model"),
                "--json",
                str(root / "report.json"),
                *TINY,
            ]
        )
    assert status == 0
    report = json.loads((root / "report.json").read_text())
    return {"root": root, "frame": frame, "printed": printed.getvalue(), "report": report}


def test_train_slate_detects_slate_logs_and_reports_against_the_logging_policy(trained):
    printed, report = trained["printed"], trained["report"]
    assert "has item_id_1 and no item_id column: training a list policy" in printed.splitlines()[0]
    assert "epoch 1/1: snrips" in printed
    assert report["verdict"] in ("better", "not distinguishable", "worse")
    assert report["verdict_line"] in printed and "logging policy (mean of sum_k reward_k)" in printed
    held_out = report["data"]["validation_lists"]
    logged = trained["frame"][["reward_1", "reward_2", "reward_3"]].to_numpy().sum(1)
    _, rows = validation_rows(jax.random.key(0), N_ROWS, 0.2)
    assert held_out == rows.shape[0] == 60
    assert report["logging"]["value"] == pytest.approx(logged[np.asarray(rows)].mean())
    assert report["config"]["objective"] == "snrips" and "one configuration" in printed


def test_the_kept_seed_has_the_best_lower_bound_and_is_the_saved_model(trained, tmp_path):
    report = trained["report"]
    per_seed = report["selection"]["per_seed"]
    chosen = report["selection"]["chosen_seed"]
    assert len(per_seed) == 2 and chosen == int(np.argmax([s["wald_low"] for s in per_seed]))
    assert report["estimates"]["snrips"]["value"] == pytest.approx(per_seed[chosen]["value"], rel=1e-6)
    # evaluate --slate's estimate of the saved model on the held-out rows is the kept seed's
    _, rows = validation_rows(jax.random.key(0), N_ROWS, 0.2)
    held_out = tmp_path / "held_out.csv"
    trained["frame"].iloc[np.asarray(rows)].to_csv(held_out, index=False)
    model = trained["root"] / "model"
    assert load_model(model).temperature == ListTrainConfig().temperature
    out = tmp_path / "estimates.json"
    assert (
        main(["evaluate", "--slate", "--model", str(model), "--logs", str(held_out), "--json", str(out)]) == 0
    )
    again = json.loads(out.read_text())["estimates"]["snrips"]
    assert again["value"] == pytest.approx(per_seed[chosen]["value"], rel=1e-4)


def test_recommend_and_export_work_on_the_saved_list_policy(trained, tmp_path):
    model = str(trained["root"] / "model")
    frame = trained["frame"]
    contexts = frame.drop(columns=[c for c in frame if c.startswith(("item_", "reward_", "pscore_"))])
    contexts.to_csv(tmp_path / "contexts.csv", index=False)
    out = tmp_path / "top3.csv"
    recommend = ["recommend", "--model", model, "--contexts", str(tmp_path / "contexts.csv"), "--k", "3"]
    assert main([*recommend, "--out", str(out)]) == 0
    top = pd.read_csv(out)
    assert len(top) == N_ROWS and {"item_1", "item_2", "item_3"} <= set(top.columns)
    assert main(["export", "--model", model, "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "score.py").is_file()


def test_the_detection_line_is_only_printed_without_slate():
    parser = build_parser()
    explicit = parser.parse_args(["train", "--logs", "s.csv", "--out", "m", "--slate"])
    detected = parser.parse_args(["train", "--logs", "s.csv", "--out", "m"])
    assert slate_note(explicit) is None
    line = (
        "s.csv has item_id_1 and no item_id column: training a list policy from slate logs (as --slate does)"
    )
    assert slate_note(detected) == line


@pytest.mark.parametrize(
    "change, flags, expected",
    [
        (
            lambda f: f.assign(pscore_2=np.where(np.arange(len(f)) == 3, 0.0, f.pscore_2)),
            [],
            "column 'pscore_2' row 3",
        ),
        (lambda f: f.drop(columns="reward_3"), ["--slate"], "column 'reward_3' is missing"),
        (lambda f: f, ["--sampled-softmax", "4"], "argument --sampled-softmax: not used with --slate"),
        (lambda f: f, ["--objective", "sniips"], "columns marginal_pscore_1..3 are not in the logs"),
    ],
)
def test_bad_slate_input_is_one_line_naming_the_column_or_flag(tmp_path, capsys, change, flags, expected):
    path = tmp_path / "slate.csv"
    change(slate_frame(40)).to_csv(path, index=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--logs", str(path), "--out", str(tmp_path / "model"), *flags])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_a_list_objective_without_slate_logs_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--objective", "snrips"])
    assert "argument --objective: 'snrips' is a list objective" in capsys.readouterr().err
