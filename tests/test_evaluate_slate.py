"""``towerjax evaluate --slate``: slate estimates of a saved model's Plackett-Luce list policy, end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from towerjax.cli import main
from towerjax.list_policy import exact_position_marginals
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
        slate[f"marginal_pscore_{k + 1}"] = 1 / N_ITEMS  # its position marginals
    marginal = [f"marginal_pscore_{k + 1}" for k in range(K)]
    slate.drop(columns=marginal).to_csv(root / "slate.csv", index=False)
    slate.drop(columns=[f"pscore_{k + 1}" for k in range(K)]).to_csv(root / "marginal.csv", index=False)
    return {"root": root, "model": model, "slate": slate, "lists": lists}


def _scores(slate_files):
    """``[n, A]`` the saved model's scores over temperature on the slate log's contexts (float64)."""
    policy = load_model(slate_files["model"])
    scores = policy.scores(policy.encoding.encode_contexts(slate_files["slate"]))
    return np.asarray(scores, np.float64) / policy.temperature


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
    assert list(payload["estimates"]) == ["sips", "snsips", "rips", "snrips", "cascade-dr"]
    assert payload["logs"]["positions"] == K and payload["logs"]["rows"] == N_ROWS
    assert payload["logs"]["reward_model"]["folds"] >= 2 and "cascade-dr: q_hat_k" in printed
    # SIPS by hand: Plackett-Luce on the saved model's scores over the logged list, over the uniform logger's 1/(5*4)
    slate = slate_files["slate"]
    scores = _scores(slate_files)
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
    cascade_dr = payload["estimates"]["cascade-dr"]
    assert cascade_dr["wald_low"] < cascade_dr["value"] < cascade_dr["wald_high"]


def test_evaluate_slate_on_position_marginals_gives_the_iips_family(slate_files, tmp_path, capsys):
    """Only marginal_pscore_k: iips, sniips and pseudo-inverse, with the policy's exact position marginals."""
    out = tmp_path / "marginal.json"
    args = ["evaluate", "--slate", "--model", str(slate_files["model"]), "--n-bootstrap", "20"]
    assert main([*args, "--logs", str(slate_files["root"] / "marginal.csv"), "--json", str(out)]) == 0
    assert "exact (every list enumerated)" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert list(payload["estimates"]) == ["iips", "sniips", "pseudo-inverse"]
    marginals = np.asarray(exact_position_marginals(_scores(slate_files), K), np.float64)  # tau folded in
    lists = slate_files["lists"]
    w = np.take_along_axis(marginals, lists[..., None], axis=-1)[..., 0] * N_ITEMS  # [n, K]
    reward = slate_files["slate"][["reward_1", "reward_2"]].to_numpy()
    assert payload["estimates"]["iips"]["value"] == pytest.approx(np.mean(np.sum(w * reward, 1)), rel=1e-4)
    sniips = np.sum(np.sum(w * reward, 0) / np.sum(w, 0))
    assert payload["estimates"]["sniips"]["value"] == pytest.approx(sniips, rel=1e-4)


def test_sampled_policy_marginals_when_enumeration_is_too_costly(slate_files, tmp_path, monkeypatch, capsys):
    """Above EXACT_MARGINAL_PAIRS the policy's marginals are sampled: iips close to the exact one."""
    from towerjax.workflow import evaluate_slate

    monkeypatch.setattr(evaluate_slate, "EXACT_MARGINAL_PAIRS", 0)
    out = tmp_path / "sampled.json"
    args = ["evaluate", "--slate", "--model", str(slate_files["model"]), "--n-bootstrap", "20"]
    assert main([*args, "--logs", str(slate_files["root"] / "marginal.csv"), "--json", str(out)]) == 0
    assert "Monte-Carlo, 256 sampled lists a row" in capsys.readouterr().out
    marginals = np.asarray(exact_position_marginals(_scores(slate_files), K), np.float64)
    w = np.take_along_axis(marginals, slate_files["lists"][..., None], axis=-1)[..., 0] * N_ITEMS
    reward = slate_files["slate"][["reward_1", "reward_2"]].to_numpy()
    iips = json.loads(out.read_text())["estimates"]["iips"]
    assert iips["value"] == pytest.approx(np.mean(np.sum(w * reward, 1)), abs=0.2 * iips["stderr"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.drop(columns=["reward_2"]), ["'reward_2'", "missing"]),
        (lambda s: s.drop(columns=["item_id_1"]), ["'item_id_1'", "slate log"]),
        (lambda s: s.assign(item_id_2=s.item_id_1), ["row 0", "two positions"]),
        (lambda s: s.assign(pscore_2=0.0), ["'pscore_2'", "row 0", "(0, 1]"]),
        (lambda s: s.assign(item_id_1="zz"), ["'item_id_1'", "'zz'"]),
        (
            lambda s: s.drop(columns=["pscore_1", "pscore_2", "marginal_pscore_1", "marginal_pscore_2"]),
            ["'pscore_1'", "'marginal_pscore_1'", "neither"],
        ),
        (lambda s: s.drop(columns=["marginal_pscore_2"]), ["'marginal_pscore_2'", "missing"]),
        (lambda s: s.assign(marginal_pscore_2=1.5), ["'marginal_pscore_2'", "row 0", "(0, 1]"]),
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
