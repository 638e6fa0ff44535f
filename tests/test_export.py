"""An export folder stands alone: numpy and the folder reproduce recommend's scores of raw rows.

A tiny model trained on own logs (dense, standardised, parsed-text, vocabulary with a min
count, integer-categorical and hashed context columns), and a "sum"-mode policy of the same
encoding, are exported; a separate Python process that cannot import towerjax, jax or pandas encodes raw
context rows (unseen ids, a value rarer than its min count and missing values among them)
with the export's ``score.py`` and scores them.
"""

import dataclasses
import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pandas as pd
import pytest

from towerjax import own_logs
from towerjax.serving import SavedPolicy, recipe
from towerjax.tables import stable_hash
from towerjax.training import TrainConfig

N_ROWS, N_ITEMS, N_USERS = 240, 5, 30

# Raw context rows as a serving stack receives them (JSON-ready: None is a missing value).
ROWS = {
    "age": [0.5, -1.25, 2.0, 0.0, 31.0, -0.3],
    "visits": [3, 0, 7, 1, 12, 2],
    "score_text": ["1.5", " 2", "-0.25", "3e-1", "0", "7"],  # parsed from text in training
    "device": ["ios", "fax", "smart-tv", None, "web", "android"],  # "fax": rarer than min count
    "zip": [101, 102, 999_999, None, 103, 104.0],  # an integer id column; 104.0 is id 104
    "user_id": ["u1", "u29", "brand-new-user", None, "u7", "ünïcode-user"],  # hashed
}
UNSEEN = {"device": 3, "zip": 2, "user_id": 1}  # rows given id 0 (unseen, rare or missing)


def _logs(rng):
    user = np.arange(N_ROWS) % N_USERS
    device = rng.choice(["ios", "web", "android"], N_ROWS).astype(object)
    device[7] = "fax"  # seen once: below the min count of 2, so out of vocabulary
    action = rng.integers(0, N_ITEMS, N_ROWS)
    age = rng.normal(size=N_ROWS).round(3)
    return pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in user],
            "age": age,
            "visits": rng.integers(0, 10, N_ROWS),
            "score_text": [f"{v:.2f}" for v in rng.normal(size=N_ROWS)],
            "device": device,
            "zip": 100 + rng.integers(0, 6, N_ROWS),
            "item_id": action + 10,  # integer item ids (item_ids.npy)
            "reward": (rng.random(N_ROWS) < 1 / (1 + np.exp(-age * (action - 2)))).astype(int),
            "pscore": np.full(N_ROWS, 1 / N_ITEMS),
        }
    )


@pytest.fixture(scope="module")
def fits():
    """``{"concat": FitResult, "sum": SavedPolicy}``: one fit (one epoch, one seed), and a
    policy of the same encoding and items in ``"sum"`` mode with two hidden layers and tanh
    (an activation between layers), its parameters initialised and perturbed (a second
    training compile would double the test's time; the export's arithmetic is the same)."""
    logs = _logs(np.random.default_rng(0))
    config = TrainConfig(
        hidden_sizes=(8,), embedding_size=4, epochs=1, batch_size=64, validation_fraction=0.0
    )
    fit = own_logs.fit(
        logs,
        config=config,
        search=None,
        seeds=1,
        categorical=["zip"],
        min_count={"zip": 1},
        hash_buckets={"user_id": 16},
        numeric_strings={"score_text": "parse"},
        standardize=["age"],
    )
    trained = fit.policy
    summed = dataclasses.replace(config, hidden_sizes=(8, 6), activation="tanh", embedding_mode="sum")
    params = summed.model.init(jax.random.key(0), trained.context_spec, trained.item_spec)
    rng = np.random.default_rng(1)  # nonzero biases too
    params = jax.tree.map(lambda a: np.asarray(a) + 0.3 * rng.normal(size=a.shape).astype(np.float32), params)
    policy = SavedPolicy(
        config=summed, params=params, item_features=trained.item_features, encoding=trained.encoding
    )
    return {"concat": fit, "sum": policy}


SCRIPT = textwrap.dedent(
    """
    import importlib.abc, importlib.util, json, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("towerjax", "jax", "jaxlib", "flax", "pandas"):
                raise ImportError(f"the export must not need {name}")

    sys.meta_path.insert(0, Refuse())
    import numpy as np

    folder, rows_path, out_path = sys.argv[1:]
    spec = importlib.util.spec_from_file_location("score", folder + "/score.py")
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    policy = score.load(folder)
    rows = json.load(open(rows_path))
    encoded = policy.encode(rows)
    index, ids, top = policy.top_k(rows, k=3)
    np.savez(out_path, scores=policy.scores(rows), probabilities=policy.probabilities(rows),
             dense=encoded.dense, index=index, ids=ids, top=top,
             **{"ids_" + name: v for name, v in encoded.ids.items()})
    print(json.dumps({str(k): v for k, v in encoded.unseen.items()}))
    print(sorted(m for m in sys.modules if m.split(".")[0] in ("towerjax", "jax", "pandas")))
    """
)


def _score_alone(folder, tmp_path):
    """The export's score.py run by ``python -I`` in an empty environment, towerjax, jax and
    pandas refused: its encoding, scores and top 3 of :data:`ROWS`."""
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))
    (tmp_path / "alone.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "alone.py"), str(folder), str(tmp_path / "rows.json"),
         str(tmp_path / "out.npz")],
        env={}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    unseen, modules = done.stdout.strip().splitlines()
    assert modules == "[]"
    return dict(np.load(tmp_path / "out.npz")), json.loads(unseen)


@pytest.mark.parametrize("mode", ["concat", "sum"])
def test_numpy_and_the_export_alone_reproduce_recommend_on_raw_rows(fits, mode, tmp_path):
    model = fits[mode]
    folder = own_logs.export(model, tmp_path / "export")
    assert {"encoding.json", "score.py", "context_tower.npz", "item_embeddings.npy", "item_ids.npy"} <= {
        p.name for p in folder.iterdir()
    }
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["encoding"] == "encoding.json" and manifest["recipe"] == "score.py"
    assert set(manifest["files"]) >= {"encoding.json", "score.py"}
    got, unseen = _score_alone(folder, tmp_path)

    policy = model.policy if mode == "concat" else model
    assert policy.config.embedding_mode == mode
    with pytest.warns(UserWarning, match="out-of-vocabulary id 0"):
        expected = policy.encoding.encode_contexts(ROWS)
    # The same tower input: dense features (standardised, parsed) and ids (OOV 0 where unseen).
    np.testing.assert_allclose(got["dense"], np.asarray(expected.dense), rtol=1e-6, atol=1e-6)
    for name, ids in expected.ids.items():
        np.testing.assert_array_equal(got[f"ids_{name}"], np.asarray(ids), err_msg=name)
    assert unseen == UNSEEN
    np.testing.assert_allclose(got["scores"], np.asarray(policy.scores(expected)), atol=1e-5)
    np.testing.assert_allclose(got["probabilities"], np.exp(policy.log_probs(expected)), atol=1e-5)

    recs = own_logs.recommend(model, ROWS, k=3)
    assert recs.unseen_columns == UNSEEN
    np.testing.assert_allclose(got["top"], recs.scores, atol=1e-5)
    # The same items, except where two scores are within float32 noise of each other.
    close = np.abs(np.diff(np.sort(got["scores"], axis=1)[:, ::-1][:, :4], axis=1)) < 1e-5
    ambiguous = close[:, :3] | np.pad(close[:, :2], ((0, 0), (1, 0)))
    assert (got["ids"] == recs.item_ids)[~ambiguous].all()
    assert got["ids"].dtype.kind == "i" and set(got["ids"].ravel()) <= set(policy.item_ids.tolist())


def test_the_readme_tells_how_to_score_raw_rows_with_the_folder_alone(fits, tmp_path):
    folder = own_logs.export(fits["concat"], tmp_path / "export")
    readme = (folder / "README.txt").read_text()
    assert "score.py" in readme and "encoding.json" in readme and "policy.top_k(rows" in readme
    assert "encoded as in training by encoding.json in this folder" in readme
    assert (folder / "score.py").read_text() == open(recipe.__file__).read()
    encoding = json.loads((folder / "encoding.json").read_text())
    assert encoding == json.loads(json.dumps(fits["concat"].policy.encoding.to_dict()))
    hashed = [c for c in encoding["context_categorical"] if c["hash_buckets"]]
    assert [(c["column"], c["hash_buckets"]) for c in hashed] == [("user_id", 16)]


def test_the_recipes_siphash_is_towerjax_stable_hash():
    rng = np.random.default_rng(1)
    alphabet = list("abcxyz019 -_é日本ü🙂")
    words = ["".join(rng.choice(alphabet, size=n)) for n in rng.integers(0, 40, 600)]
    cases = [
        np.asarray(words, dtype=object),
        np.asarray(words),  # a numpy unicode array
        rng.integers(-(10**12), 10**12, 500),
        np.arange(-20, 300),
        np.asarray([0.5, -2.25, 1e-7, 3.0]),  # not all whole: hashed as their text
        np.asarray([3.0, 7.0, -1.0]),  # whole floats: as the integers' text
        np.asarray([True, False]),
        np.asarray([b"", b"\x00\xff" * 9, b"bytes"], dtype=object),
        np.asarray([1, "a", 2.5], dtype=object),  # mixed: every value as its text
    ]
    for values in cases:
        np.testing.assert_array_equal(
            recipe.stable_hash(values), stable_hash(values), err_msg=str(values[:3])
        )
