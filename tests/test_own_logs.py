"""Your own logs end to end: train from CSV and Parquet, evaluate, recommend, export, bad inputs.

The logs carry an integer ``user_id`` column (``--categorical user_id``: an embedded id with a
vocabulary) and string item ids (the item tower embeds each item's id next to its price and
genre). The trainings have the same config and shapes (every user is in the first 480 rows, so
each fit builds the same vocabularies), so with JAX's persistent compilation cache on
(conftest.py's ``compilation_cache`` fixture; towerjax keeps no cache of compiled programs) the
file compiles one training run, one reward model and one OPE table.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from towerjax import own_logs
from towerjax.checks import InputError
from towerjax.cli import main
from towerjax.evaluation import ESTIMATORS
from towerjax.evaluation.selection import estimate_entry
from towerjax.serving import load_model
from towerjax.tables import EncodingOptions
from towerjax.training import TrainConfig, validation_rows
from towerjax.workflow.fit import save_fit

N_ITEMS, N_ROWS, N_USERS = 6, 600, 40
TINY = ["--hidden-sizes", "8", "--embedding-size", "4", "--epochs", "2", "--batch-size", "32", "--seeds", "2"]
TINY_CONFIG = TrainConfig(hidden_sizes=(8,), embedding_size=4, epochs=2, batch_size=32)
IDS = ["--categorical", "user_id", "--embedding-dim", "user_id=4"]
IDS_KWARGS = dict(categorical=["user_id"], embedding_dims={"user_id": 4})


SYNTHETIC_FIELDS = {"behavior", "epsilon", "n_rounds", "n_test_rounds", "n_actions", "dim"}

# A fit of the same config and shapes as an earlier one (CLI or Python) loads the compiled
# training program instead of compiling it again.
pytestmark = pytest.mark.usefixtures("compilation_cache")


def _logs(rng, n):
    """Uniform logging over the items; the click probability depends on the user, age, device
    and price. Row ``i`` is user ``1000 + i % 40``: every user is in the first 480 rows."""
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(N_ITEMS)],
            "price": np.linspace(-1.0, 1.0, N_ITEMS),
            "genre": ["x", "y"] * (N_ITEMS // 2),
        }
    )
    user = np.arange(n) % N_USERS
    taste = rng.normal(size=N_USERS)
    age = rng.normal(size=n).round(3)
    device = rng.choice(["ios", "web", "android"], n)
    action = rng.integers(0, N_ITEMS, n)
    price = items.price.to_numpy()[action]
    logit = 2 * age * price + (device == "ios") * (action % 2) + taste[user] * price - 0.5
    reward = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    logs = pd.DataFrame(
        {
            "user_id": 1000 + user,
            "age": age,
            "device": device,
            "item_id": items.item_id.to_numpy()[action],
            "reward": reward,
            "pscore": np.full(n, 1 / N_ITEMS),
            "position": rng.integers(1, 3, n),
        }
    )
    return logs, items


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("own_logs")
    logs, items = _logs(np.random.default_rng(0), N_ROWS)
    paths = {"root": root, "frame": logs, "items_frame": items}
    for name, frame in (("logs", logs), ("items", items)):
        for suffix in ("csv", "parquet"):
            path = root / f"{name}.{suffix}"
            frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
            paths[f"{name}_{suffix}"] = path
    contexts = logs[["user_id", "age", "device"]].head(20).assign(user=[f"u{i}" for i in range(20)])
    contexts.loc[3, "device"] = "smart-tv"  # a category not seen in training
    contexts.loc[[5, 6], "user_id"] = [99_001, 99_002]  # new users
    paths["contexts"] = root / "contexts.csv"
    contexts.to_csv(paths["contexts"], index=False)
    return paths


@pytest.fixture(scope="module")
def models(files):
    """Two models, from the CSV and from the Parquet files (another root seed)."""
    root = files["root"]
    # One configuration (the search is tested in test_fit_search.py).
    common = ["--position-column", "position", *IDS, *TINY, "--search", "none"]
    csv, parquet = root / "model_csv", root / "model_parquet"
    assert main(["train", "--logs", str(files["logs_csv"]), "--items", str(files["items_csv"]), "--out", str(csv), *common]) == 0  # fmt: skip
    assert main(["train", "--logs", str(files["logs_parquet"]), "--items", str(files["items_parquet"]), "--out", str(parquet), "--seed", "1", *common]) == 0  # fmt: skip
    return csv, parquet


def test_train_writes_the_model_report_and_curves(files, models):
    for directory in models:
        for name in (
            "model.json",
            "params.msgpack",
            "items.npz",
            "encoding.json",
            "report.json",
            "curves.png",
        ):
            assert (directory / name).is_file(), name
        assert (directory / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        report = json.loads((directory / "report.json").read_text())
        logs = files["frame"]
        data = report["data"]
        assert (data["rows"], data["items"], data["training_rows"], data["validation_rows"]) == (
            600,
            6,
            480,
            120,
        )
        assert data["reward_mean"] == pytest.approx(logs.reward.mean())
        assert data["pscore_min"] == pytest.approx(1 / 6) and data["pscore_max"] == pytest.approx(1 / 6)
        assert data["uniform_policy_weights"]["ess"] == pytest.approx(600, rel=1e-4)  # uniform logging
        assert data["positions"] == {
            str(k): int(v) for k, v in logs.position.value_counts().sort_index().items()
        }
        assert report["columns"]["context"] == ["user_id", "age", "device"]  # position left out
        assert data["context_features"] == [
            "age: dense",
            "user_id: 40 values + OOV (min count 2), dim 4 (0 training rows out of vocabulary)",
            "device: 3 values + OOV (min count 2), dim 8 (0 training rows out of vocabulary)",
        ]
        assert data["item_features"] == [
            "item id: 6 items + unknown, dim 10",
            "price: dense",
            "genre: 2 values + OOV (min count 1), dim 8",
        ]
        assert report["epochs"] == [0, 1, 2]  # epoch 0: the initial policy
        assert "search" not in report and report["validation"]["dr"]["skipped"] is None  # --search none
        assert not SYNTHETIC_FIELDS & set(report["config"]), report["config"]  # training settings only
        for name in ("snips", "dr"):
            curve = report["validation"][name]["per_seed"]
            value, low, high = (np.array(curve[k]) for k in ("value", "low", "high"))
            assert value.shape == (2, 3) and np.all(low < value) and np.all(value < high)
            np.testing.assert_allclose(report["validation"][name]["mean"]["value"], value.mean(axis=0))


def test_the_saved_seed_is_the_one_with_the_best_selected_validation_estimate(models):
    report = json.loads((models[0] / "report.json").read_text())
    criteria = [seed["criterion"] for seed in report["per_seed"]]
    chosen = report["selection"]["chosen_seed"]
    assert chosen == int(np.argmax(criteria)) and report["selection"]["seed_criterion"] == "snips"
    for seed in report["per_seed"]:  # SNIPS of the returned parameters = the curve at the selected epoch
        curve = report["validation"]["snips"]["per_seed"]["value"][seed["index"]]
        assert seed["selected"]["snips"]["value"] == pytest.approx(curve[seed["selected_epoch"]], rel=1e-5)
    assert json.loads((models[0] / "model.json").read_text())["metadata"]["chosen_seed"] == chosen


def test_python_fit_reloads_to_the_same_scores_and_obp_action_dist(files, tmp_path):
    logs = files["frame"]
    train, held_out = logs.iloc[:480], logs.iloc[480:].copy()
    held_out.loc[held_out.index[0], "device"] = "smart-tv"
    lines = []
    result = own_logs.fit(
        train,
        files["items_frame"],
        validation=held_out,  # 480 training and 120 validation rows: the shapes of the CLI fits
        position_column="position",
        config=TINY_CONFIG,
        search=None,
        seeds=2,
        out=tmp_path / "model",
        progress=lines.append,
        **IDS_KWARGS,
    )
    assert any("validation: 120 rows" in line for line in lines)
    assert any(line.startswith("  context features: age: dense; user_id: 40 values") for line in lines)
    assert result.report["data"]["validation_unseen_categories"] == {"rows": 1, "columns": {"device": 1}}
    loaded = load_model(tmp_path / "model")
    context = result.data.context
    np.testing.assert_array_equal(
        np.asarray(loaded.scores(context)), np.asarray(result.policy.scores(context))
    )
    assert loaded.item_ids.tolist() == [f"i{j}" for j in range(N_ITEMS)]
    dist = loaded.action_dist(context)
    assert dist.shape == (480, N_ITEMS, 1) and dist.dtype == np.float64
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)
    figure = own_logs.plot_curves(result.report)
    assert len(figure.axes) == 2
    # "the estimate" of the kept seed on the validation rows: the rule towerjax evaluate uses, as by hand
    held_out, estimate = result.validation, result.report["estimate"]
    pi = result.policy.action_dist(held_out.context)[:, :, 0]
    w = pi[np.arange(120), np.asarray(held_out.action)] / np.asarray(held_out.pscore, np.float64)
    by_hand = estimate_entry(w, np.asarray(held_out.reward, np.float64))
    assert (estimate["rows"], estimate["n"]) == ("validation", 120)
    choice, expected = estimate["the_estimate"], by_hand["the_estimate"]
    # training keeps no reward model's predictions for these rows: capped IPS
    assert choice["family"] == "ipw-cap" and choice["rule"] == "slope-mse"
    assert choice["name"] == expected["name"] and choice["reason"] == expected["reason"]
    assert choice["estimate"]["value"] == pytest.approx(expected["estimate"]["value"], rel=1e-5)
    assert estimate["lower_bound"]["value"] == pytest.approx(
        by_hand["lower_bound"]["value"], rel=1e-5, abs=1e-6
    )
    line = (
        f"  the estimate on the 120 validation rows: {choice['name']} = {choice['estimate']['value']:.4f} ["
    )
    assert any(entry.startswith(line) and "empirical Bernstein" in entry for entry in lines)
    assert f"    why: {choice['reason']}" in result.summary()


def test_numbers_stored_as_text_train_when_parsed_and_stay_parsed(files):
    logs = files["frame"].assign(age=files["frame"].age.astype(str))
    result = own_logs.fit(  # the encoding options as one value (the other fits pass its fields)
        logs,
        files["items_frame"],
        position_column="position",
        options=EncodingOptions(numeric_strings="parse", **IDS_KWARGS),
        config=TINY_CONFIG,
        search=None,
        seeds=2,
    )
    assert result.encoding.context_parsed_columns == ("age",)
    # The held-out rows are training's one validation split, drawn with the root seed's key.
    _, held_out = validation_rows(jax.random.key(0), N_ROWS, TINY_CONFIG.validation_fraction)
    np.testing.assert_array_equal(result.validation.reward, logs.reward.to_numpy()[np.asarray(held_out)])
    # The report reads each seed's estimates of its returned parameters from the training result.
    for entry in result.report["per_seed"]:
        for name in ("snips", "dr"):
            recorded = result.result.selected_validation[name][entry["index"]]
            assert entry["selected"][name]["value"] == pytest.approx(float(recorded), rel=1e-6)
    recs = own_logs.recommend(result.policy, logs.head(5), k=2)  # text ages are parsed again
    assert recs.item_ids.shape == (5, 2) and recs.unseen_rows == 0


def test_without_an_item_table_or_validation_each_logged_item_is_its_id_and_seed_0_is_kept(files):
    config = TrainConfig(  # a batch larger than the logs: one batch of all 600 rows
        hidden_sizes=(8,), embedding_size=4, epochs=1, batch_size=16384, validation_fraction=0.0
    )
    lines = []
    result = own_logs.fit(files["frame"], config=config, search=None, seeds=1, progress=lines.append)
    assert any("batch 600, on 600 rows" in line for line in lines)
    assert result.policy.item_ids.tolist() == sorted(files["frame"].item_id.unique())
    items = result.policy.item_features  # the embedded item id alone: no [A, A] matrix
    assert items.dense.shape == (N_ITEMS, 0) and [t.name for t in items.tables] == ["item_id"]
    np.testing.assert_array_equal(items.ids["item_id"], np.arange(1, N_ITEMS + 1))
    # An integer column named like an id is a number unless named categorical: a note says so.
    assert any("'user_id' holds integers and is used as a number" in line for line in lines)
    assert "pass categorical=['user_id']" in result.report["notes"][0]  # the CLI shows --categorical user_id
    assert result.validation is None and result.chosen_seed == 0 and result.policy.config.select is None
    assert result.report["data"]["validation_rows"] == 0 and "no validation rows" in result.report["notes"][1]
    assert np.isnan(np.asarray(result.report["validation"]["snips"]["per_seed"]["value"], float)).all()
    assert own_logs.plot_curves(result.report).axes[0].texts[0].get_text() == "no validation estimates"


def test_evaluate_gives_every_estimator_with_intervals_and_a_paired_difference(
    files, models, tmp_path, capsys
):
    out, plot = tmp_path / "eval.json", tmp_path / "eval.png"
    args = [
        "evaluate",
        "--model",
        str(models[0]),
        "--model",
        str(models[1]),
        "--logs",
        str(files["logs_parquet"]),
    ]
    assert main([*args, "--json", str(out), "--plot", str(plot), "--randomized"]) == 0
    assert "minus" in capsys.readouterr().out and plot.read_bytes()[:4] == b"\x89PNG"
    payload = json.loads(out.read_text())
    assert payload["logs"]["rows"] == 600
    first, second = payload["models"]
    for model in (first, second):
        assert list(model["estimates"]) == [e for e in ESTIMATORS if e != "mips"]
        for est in model["estimates"].values():
            assert est["wald_low"] < est["value"] < est["wald_high"]
            assert est["bootstrap_low"] < est["bootstrap_high"]
        assert model["estimates"]["ipw"]["diagnostics"]["ess"] > 0
        randomized = model["randomized"]  # uniform logs: the unbiased value is IPW's
        assert randomized["value"] == pytest.approx(model["estimates"]["ipw"]["value"], rel=1e-5)
    (difference,) = payload["differences"]
    assert difference["baseline"] == str(models[0]) and difference["model"] == str(models[1])
    for name in ("ipw", "snipw", "dr"):
        d = difference["estimators"][name]
        expected = second["estimates"][name]["value"] - first["estimates"][name]["value"]
        assert d["value"] == pytest.approx(expected, abs=1e-6) and d["low"] < d["value"] < d["high"]
    # The paired IPW standard error is that of the per-row differences w2 r - w1 r.
    logs = files["frame"]
    action = logs.item_id.str[1:].astype(int).to_numpy()
    context = load_model(models[0]).encoding.encode_contexts(logs)
    w = [load_model(m).action_dist(context)[np.arange(600), action, 0] * N_ITEMS for m in models]
    terms = (w[1] - w[0]) * logs.reward.to_numpy()
    assert difference["estimators"]["ipw"]["stderr"] == pytest.approx(
        terms.std(ddof=1) / np.sqrt(600), rel=1e-4
    )
    # Over the model's own item table (encoded again with its encoding) the estimates are the same.
    again = own_logs.evaluate(models[0], files["logs_parquet"], items=files["items_csv"], n_bootstrap=10)
    assert again.estimates[0]["dr"].value == pytest.approx(first["estimates"]["dr"]["value"], abs=1e-6)


def test_recommend_lists_sorted_top_k_and_reports_unseen_categories(files, models, tmp_path, capsys):
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--model", str(models[0]), "--contexts", str(files["contexts"]), "--k", "3",
                 "--out", str(out), "--keep-columns", "user"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "3 row(s) had a value not in the training vocabulary" in printed
    assert "user_id 2, device 1" in printed
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "row",
        "user",
        "item_1",
        "score_1",
        "item_2",
        "score_2",
        "item_3",
        "score_3",
    ]
    assert len(table) == 20 and table.user.tolist() == [f"u{i}" for i in range(20)]
    scores = table[["score_1", "score_2", "score_3"]].to_numpy()
    assert np.all(np.diff(scores, axis=1) <= 0)
    policy = load_model(models[0])
    context = policy.encoding.encode_contexts(pd.read_csv(files["contexts"]), unknown="ignore")
    best = np.argsort(-np.asarray(policy.scores(context)), axis=1, kind="stable")[:, :3]
    assert table[["item_1", "item_2", "item_3"]].to_numpy().tolist() == policy.item_ids[best].tolist()

    recs = own_logs.recommend(models[0], files["contexts"], k=2)
    assert recs.unseen_rows == 3 and recs.unseen_columns == {"user_id": 2, "device": 1}

    slates = tmp_path / "slates.parquet"
    assert main(["recommend", "--model", str(models[0]), "--contexts", str(files["contexts"]), "--k", "4",
                 "--out", str(slates), "--explore", "--seed", "3"]) == 0  # fmt: skip
    drawn = pd.read_parquet(slates)[[f"item_{j}" for j in range(1, 5)]].to_numpy()
    assert drawn.shape == (20, 4) and all(len(set(row)) == 4 for row in drawn)


def test_export_writes_files_numpy_reproduces_the_scores(files, models, tmp_path):
    out = tmp_path / "serving"
    assert main(["export", "--model", str(models[0]), "--out", str(out)]) == 0
    for name in ("item_embeddings.npy", "item_ids.json", "context_tower.npz", "export.json", "README.txt"):
        assert (out / name).is_file(), name
    policy = load_model(models[0])
    x = policy.encoding.encode_contexts(files["frame"].head(50))
    tower = np.load(out / "context_tower.npz")
    tables = json.loads((out / "export.json").read_text())["context_tower"]["tables"]
    assert [t["name"] for t in tables] == ["user_id", "device"]
    layers = len([name for name in tower.files if name.startswith("Dense_")]) // 2
    h = np.concatenate(
        [np.asarray(x.dense)] + [tower[t["embedding"]][np.asarray(x.ids[t["name"]])] for t in tables], axis=1
    )
    for i in range(layers):
        h = h @ tower[f"Dense_{i}/kernel"] + tower[f"Dense_{i}/bias"]
        if i < layers - 1:
            h = np.where(h > 0, h, np.expm1(h))
    scores = h @ np.load(out / "item_embeddings.npy").T
    np.testing.assert_allclose(scores, np.asarray(policy.scores(x)), rtol=1e-5, atol=1e-5)
    assert json.loads((out / "item_ids.json").read_text()) == policy.item_ids.tolist()


@pytest.fixture(scope="module")
def bad_files(files):
    root = files["root"]
    logs = files["frame"]
    paths = {
        "empty": root / "empty.csv",
        "header": root / "header.csv",
        "text": root / "logs.txt",
        "strings": root / "strings.parquet",
        "unknown_item": root / "unknown_item.csv",
        "no_age": root / "no_age.csv",
    }
    paths["empty"].write_text("")
    paths["header"].write_text("age,device,item_id,reward,pscore\n")
    paths["text"].write_text("age,item_id\n1,i0\n")
    logs.assign(age=logs.age.astype(str)).to_parquet(paths["strings"])
    logs.assign(item_id=["zz", *logs.item_id[1:]]).to_csv(paths["unknown_item"], index=False)
    logs.drop(columns="age").to_csv(paths["no_age"], index=False)
    return {name: str(path) for name, path in paths.items()}


@pytest.mark.parametrize(
    "args, flag, words",
    [
        (["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}", "--reward-column", "click"],
         "--reward-column", ["'click'"]),
        (["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}", "--context-columns", "age,city"],
         "--context-columns", ["'city'"]),
        (["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}", "--hash", "user_id"],
         "--hash", ["COL=N"]),
        (["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}", "--hash", "nosuch=10"],
         "--hash", ["'nosuch'"]),
        (["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}", "--embedding-dim", "age=4"],
         "--embedding-dim", ["'age'", "numeric"]),
        (["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}", "--categorical", "city"],
         "--categorical", ["'city'"]),
        (["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}", "--min-count", "0"],
         "--min-count", ["positive"]),
        (["train", "--logs", "{strings}", "--items", "{items_csv}", "--out", "{out}"], "--logs", ["'age'", "numbers stored as text"]),
        (["train", "--logs", "{empty}", "--out", "{out}"], "--logs", ["empty"]),
        (["train", "--logs", "{header}", "--out", "{out}"], "--logs", ["no rows"]),
        (["train", "--logs", "{text}", "--out", "{out}"], "--logs", ["'.txt'"]),
        (["train", "--logs", "{logs_csv}", "--items", "{root}/missing.csv", "--out", "{out}"], "--items", ["no such file"]),
        (["train", "--logs", "{logs_csv}", "--n-rounds", "100", "--out", "{out}"], "--n-rounds", ["--logs"]),
        (["train", "--logs", "{logs_csv}"], "--out", ["required"]),
        (["train", "--items", "{items_csv}"], "--items", ["--logs"]),
        (["train", "--logs", "{logs_csv}", "--out", "{out}", "--validation", "{logs_csv}", "--validation-fraction", "0.1"],
         "--validation-fraction", ["--validation"]),
        (["recommend", "--model", "{root}/model_csv", "--contexts", "{contexts}", "--k", "0", "--out", "{out}.csv"], "--k", ["positive"]),
        (["recommend", "--model", "{root}/model_csv", "--contexts", "{contexts}", "--k", "7", "--out", "{out}.csv"], "--k", ["6 items"]),
        (["recommend", "--model", "{root}/model_csv", "--contexts", "{contexts}", "--k", "2", "--out", "{out}.txt"], "--out", ["'.txt'"]),
        (["recommend", "--model", "{root}/model_csv", "--contexts", "{no_age}", "--k", "2", "--out", "{out}.csv"], "--contexts", ["'age'"]),
        (["evaluate", "--model", "{root}/no_such_model", "--logs", "{logs_csv}"], "--model", ["no such directory"]),
        (["evaluate", "--model", "{root}/model_csv", "--logs", "{unknown_item}"], "--logs", ["'item_id'", "row 0", "'zz'"]),
        (["evaluate", "--model", "{root}/model_csv", "--logs", "{logs_csv}", "--pscore-column", "p"], "--pscore-column", ["'p'"]),
        (["evaluate", "--model", "{root}/model_csv", "--logs", "{logs_csv}", "--plot", "{out}.xyz"], "--plot", ["'.xyz'"]),
        (["export", "--model", "{root}/no_such_model", "--out", "{out}"], "--model", ["no such directory"]),
    ],
)  # fmt: skip
def test_bad_inputs_exit_2_with_one_line_naming_the_flag_or_column(
    args, flag, words, files, bad_files, models, tmp_path, capsys
):
    names = {"root": files["root"], "out": tmp_path / "out", **files, **bad_files}
    with pytest.raises(SystemExit) as exit_:
        main([a.format(**names) for a in args])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"argument {flag}:" in lines[0], lines
    for word in words:
        assert word in lines[0], lines


def test_a_bad_input_from_a_fresh_process_is_one_line_not_a_traceback(files, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "towerjax.cli", "recommend", "--model", str(tmp_path / "none"),
         "--contexts", str(files["contexts"]), "--k", "2", "--out", str(tmp_path / "r.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"towerjax recommend: error: argument --model: {tmp_path / 'none'}: no such directory"
    ]


def test_read_table_passes_tables_through_and_names_the_argument():
    table = {"a": np.arange(3)}
    assert own_logs.read_table(table, argument="logs") is table
    with pytest.raises(InputError, match="logs"):
        own_logs.read_table(3, argument="logs")


# --------------------------------------------------------------------------- output folders


def _files_of(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_train_replaces_a_model_only_with_overwrite_and_keeps_other_files(files, models, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    for path in models[0].iterdir():
        (out / path.name).write_bytes(path.read_bytes())
    (out / "notes.txt").write_text("mine")
    before = _files_of(out)
    args = ["train", "--logs", str(files["logs_csv"]), "--items", str(files["items_csv"]), "--out", str(out)]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--position-column", "position", *IDS, *TINY])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "argument --out:" in lines[0] and "pass --overwrite" in lines[0], lines
    with pytest.raises(InputError, match=r"pass overwrite=True") as err:
        own_logs.fit(files["logs_csv"], files["items_csv"], out=out, config=TINY_CONFIG, search=None)
    assert err.value.argument == "out"
    assert _files_of(out) == before  # refused before any work: nothing touched
    # With overwrite, fit's save (the other model's policy and report; no training here):
    report = json.loads((models[1] / "report.json").read_text())
    save_fit(out, load_model(models[1]), report, overwrite=True)
    after = _files_of(out)
    assert after["notes.txt"] == b"mine" and after["params.msgpack"] != before["params.msgpack"]
    assert after["report.json"] != before["report.json"] and after["curves.png"][:4] == b"\x89PNG"
    assert load_model(out).metadata["chosen_seed"] == report["selection"]["chosen_seed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left


def test_export_replaces_an_export_only_with_overwrite(models, tmp_path, capsys):
    out = tmp_path / "serving"
    assert main(["export", "--model", str(models[0]), "--out", str(out)]) == 0
    before = _files_of(out)
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--model", str(models[1]), "--out", str(out)])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "argument --out:" in lines[-1] and "pass --overwrite" in lines[-1], lines
    assert _files_of(out) == before
    with pytest.raises(InputError, match=r"pass overwrite=True") as err:
        own_logs.export(models[1], out)
    assert err.value.argument == "out"
    assert main(["export", "--model", str(models[1]), "--out", str(out), "--overwrite"]) == 0
    assert _files_of(out)["item_embeddings.npy"] != before["item_embeddings.npy"]


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_an_export_out_that_cannot_be_written_is_one_line_and_exit_2(models, tmp_path, capsys, where):
    if where == "proc" and not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux's /proc")
    (tmp_path / "afile").write_text("")
    out = str(tmp_path / "afile" / "x") if where == "under_a_file" else "/proc/towerjax-export"
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--model", str(models[0]), "--out", out])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("towerjax export: error: argument --out: cannot write")
    assert ("afile' is a file, not a folder" if where == "under_a_file" else "'/proc'") in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--logs", "{logs_csv}", "--items", "{items_csv}", "--out", "{out}/m", "--reward-column", "click"],
        ["train", "--logs", "{root}/missing.csv", "--out", "{out}/m"],
        ["train", "--logs", "{strings}", "--items", "{items_csv}", "--out", "{out}/m"],
        ["train", "--logs", "{logs_csv}", "--out", "{out}/m", "--json", "{out}/r/run.json", "--hash", "nosuch=9"],
        ["recommend", "--model", "{root}/model_csv", "--contexts", "{no_age}", "--k", "2", "--out", "{out}/r.csv"],
        ["evaluate", "--model", "{root}/model_csv", "--logs", "{unknown_item}", "--json", "{out}/e.json",
         "--plot", "{out}/e.png"],
        ["export", "--model", "{root}/no_such_model", "--out", "{out}/e"],
    ],
)  # fmt: skip
def test_an_input_error_leaves_no_output_folder_behind(args, files, bad_files, models, tmp_path, capsys):
    names = {"root": files["root"], "out": tmp_path / "out", **files, **bad_files}
    with pytest.raises(SystemExit) as exit_:
        main([a.format(**names) for a in args])
    assert exit_.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_the_command_line_names_the_flag_where_python_names_the_argument(files, bad_files, tmp_path, capsys):
    with pytest.raises(InputError) as err:
        own_logs.fit(bad_files["strings"], files["items_csv"], config=TINY_CONFIG, search=None)
    assert err.value.argument == "logs"
    assert "numeric_strings='parse'" in err.value.message and "--numeric-strings" not in err.value.message
    with pytest.raises(SystemExit):
        main(["train", "--logs", bad_files["strings"], "--items", str(files["items_csv"]), "--out", str(tmp_path / "m")])  # fmt: skip
    line = capsys.readouterr().err.strip()
    assert "pass --numeric-strings parse" in line and "numeric_strings=" not in line
