"""``towerjax evaluate --slate``: slate estimates of a saved model's Plackett-Luce list policy, end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from towerjax.cli import main
from towerjax.serving import load_model

N_ITEMS, N_ROWS, K = 5, 120, 2
TINY = ["--hidden-sizes", "4", "--embedding-size", "2", "--epochs", "1", "--batch-size", "40", "--seeds", "1"]


@pytest.fixture(scope="module")
def slate_files(tmp_path_factory):
    """A tiny model trained on single-position logs, and slate logs of a uniform logger over lists of 2."""
    root = tmp_path_factory.mktemp("slate")
    rng = np.random.default_rng(0)
    age = rng.normal(size=N_ROWS).round(3)
    action = rng.integers(0, N_ITEMS, N_ROWS)
    single = pd.DataFrame(
        {
            "age": age,
            "item_id": [f"i{a}" for a in action],
            "reward": (rng.random(N_ROWS) < 0.3 + 0.1 * (action % 2)).astype(int),
            "pscore": np.full(N_ROWS, 1 / N_ITEMS),
        }
    )
    single.to_csv(root / "logs.csv", index=False)
    model = root / "model"
    assert (
        main(["train", "--logs", str(root / "logs.csv"), "--out", str(model), "--search", "none", *TINY]) == 0
    )
    lists = np.stack([rng.permutation(N_ITEMS)[:K] for _ in range(N_ROWS)])
    slate = pd.DataFrame({"age": age})
    for k in range(K):
        slate[f"item_id_{k + 1}"] = [f"i{a}" for a in lists[:, k]]
        slate[f"reward_{k + 1}"] = (rng.random(N_ROWS) < 0.4 / (k + 1)).astype(int)
        slate[f"pscore_{k + 1}"] = 1 / (N_ITEMS - k)  # uniform without replacement
    slate.to_csv(root / "slate.csv", index=False)
    return {"root": root, "model": model, "slate": slate, "lists": lists}


def test_evaluate_slate_prints_the_slate_estimates_of_the_list_policy(slate_files, tmp_path, capsys):
    out, plot = tmp_path / "slate.json", tmp_path / "slate.png"
    args = [
        "evaluate",
        "--slate",
        "--model",
        str(slate_files["model"]),
        "--logs",
        str(slate_files["root"] / "slate.csv"),
    ]
    assert main([*args, "--json", str(out), "--plot", str(plot), "--n-bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    assert "sips" in printed and "lists of 2 items" in printed and plot.read_bytes()[:4] == b"\x89PNG"
    payload = json.loads(out.read_text())
    assert list(payload["estimates"]) == ["sips", "snsips", "rips", "snrips"]
    assert payload["logs"]["positions"] == K and payload["logs"]["rows"] == N_ROWS
    # SIPS by hand: Plackett-Luce on the saved model's scores over the logged list, over the uniform logger's 1/(5*4)
    policy = load_model(slate_files["model"])
    slate = slate_files["slate"]
    scores = (
        np.asarray(policy.scores(policy.encoding.encode_contexts(slate)), np.float64) / policy.temperature
    )
    lists, rows = slate_files["lists"], np.arange(N_ROWS)
    first = np.exp(scores[rows, lists[:, 0]]) / np.exp(scores).sum(1)
    rest = np.exp(scores).sum(1) - np.exp(scores[rows, lists[:, 0]])
    second = np.exp(scores[rows, lists[:, 1]]) / rest
    w = first * second * N_ITEMS * (N_ITEMS - 1)
    total = slate[["reward_1", "reward_2"]].to_numpy().sum(1)
    sips = payload["estimates"]["sips"]
    assert sips["value"] == pytest.approx(np.mean(w * total), rel=1e-4)
    assert sips["stderr"] == pytest.approx(np.std(w * total, ddof=1) / np.sqrt(N_ROWS), rel=1e-3)
    assert sips["bootstrap_low"] < sips["value"] < sips["bootstrap_high"]
    rips = np.mean(first * N_ITEMS * slate.reward_1 + w * slate.reward_2)
    assert payload["estimates"]["rips"]["value"] == pytest.approx(rips, rel=1e-4)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.drop(columns=["reward_2"]), ["'reward_2'", "missing"]),
        (lambda s: s.drop(columns=["item_id_1"]), ["'item_id_1'", "slate log"]),
        (lambda s: s.assign(item_id_2=s.item_id_1), ["row 0", "two positions"]),
        (lambda s: s.assign(pscore_2=0.0), ["'pscore_2'", "row 0", "(0, 1]"]),
        (lambda s: s.assign(item_id_1="zz"), ["'item_id_1'", "'zz'"]),
    ],
)
def test_bad_slate_logs_name_the_column(slate_files, tmp_path, capsys, change, expected):
    path = tmp_path / "bad.csv"
    change(slate_files["slate"]).to_csv(path, index=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--slate", "--model", str(slate_files["model"]), "--logs", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--logs" in err and all(e in err for e in expected), err
