"""Saved models: a trained policy saved, loaded and served gives the trained policy's numbers."""

import dataclasses
import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from towerjax import jsonio, outputs, retrieval
from towerjax.checks import InputError
from towerjax.features import Features
from towerjax.objectives import DR, IPS, SNIPS, TwoStage, WeightedRegression
from towerjax.reward_model import RewardModelConfig
from towerjax.serving import store
from towerjax.serving.policy import SavedPolicy, search_top_k
from towerjax.serving.store import load_model, save_model
from towerjax.tables import ITEM_ID_FEATURE, logged_data_from_frame
from towerjax.training import TrainConfig, make_train

ITEM_IDS = ["i0", "i1", "i2", "i3", "i4"]
CONFIG = TrainConfig(
    hidden_sizes=(8,),
    embedding_size=4,
    batch_size=16,
    epochs=1,
    reward_model=RewardModelConfig(hidden_sizes=(4,), epochs=1, batch_size=16),
)


def _frame(seed: int, n: int = 80) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "age": rng.normal(size=n),
        "city": rng.choice(["Lima", "Oslo", "Rome"], n),
        "item": rng.choice(ITEM_IDS, n),
        "click": rng.integers(0, 2, n).astype(float),
        "p": np.full(n, 0.2),
    }


ITEM_TABLE = {
    "item_id": np.array(ITEM_IDS),
    "price": np.array([1.0, 2.5, 0.5, 3.0, 1.5]),
    "genre": np.array(["a", "b", "a", "c", "b"]),
}
COLUMNS = dict(
    context_columns=["age", "city"],
    action_column="item",
    reward_column="click",
    pscore_column="p",
    item_table=ITEM_TABLE,
    item_id_column="item_id",
)


@pytest.fixture(scope="module")
def trained():
    """Your own logs, end to end: a table, its encoding (city and genre embedded ids, the
    item id embedded), one epoch of training."""
    data, encoding = logged_data_from_frame(_frame(0), **COLUMNS)
    assert isinstance(data.context, Features) and isinstance(data.action_context, Features)
    result = jax.jit(make_train(CONFIG))(jax.random.key(0), data)
    return result.params, data, encoding


def assert_same_input(a, b):
    if isinstance(a, Features):
        assert a.tables == b.tables
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module")
def model_dir(trained, tmp_path_factory):
    params, data, encoding = trained
    directory = tmp_path_factory.mktemp("models") / "model"
    save_model(
        directory,
        params=params,
        config=CONFIG,
        item_features=data.action_context,
        encoding=encoding,
        metadata={"source": "test", "value": float("nan")},
    )
    return directory


@pytest.fixture(scope="module")
def policy(model_dir):
    return load_model(model_dir)


def _contexts(policy, n=9, seed=1):
    """Contexts of a new table, encoded with the policy's encoding (Features with a city id)."""
    return policy.encoding.encode_contexts(_frame(seed, n))


# --------------------------------------------------------------------------- round trip


def test_a_loaded_model_scores_exactly_as_the_trained_one(trained, model_dir, policy):
    params, data, _ = trained
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "config.json",
        "encoding.json",
        "items.npz",
        "model.json",
        "params.msgpack",
    ]
    jax.tree.map(np.testing.assert_array_equal, policy.params, params)
    assert_same_input(policy.item_features, data.action_context)
    assert policy.context_spec == data.context.spec and policy.item_spec == data.action_context.spec
    manifest = json.loads((model_dir / "model.json").read_text())
    assert manifest["format_version"] == store.FORMAT_VERSION == 2
    assert manifest["shapes"]["context_spec"]["tables"] == [{"name": "city", "size": 4, "dim": 8}]
    np.testing.assert_array_equal(
        policy.scores(data.context), CONFIG.model.scores(params, data.context, data.action_context)
    )
    assert policy.config == CONFIG
    assert policy.item_ids.tolist() == ITEM_IDS
    assert policy.metadata == {"source": "test", "value": None}  # strict JSON: NaN is null


def test_the_saved_encoding_encodes_a_new_table_as_training_did(trained, policy):
    _, _, encoding = trained
    assert policy.encoding == encoding
    frame = _frame(5, n=12)
    expected, _ = logged_data_from_frame(frame, **COLUMNS, encoding=encoding)
    again, _ = logged_data_from_frame(frame, **COLUMNS, encoding=policy.encoding)
    assert_same_input(again.context, expected.context)
    np.testing.assert_array_equal(policy.scores(again.context), policy.scores(expected.context))


def test_scores_in_context_chunks_equal_scores_at_once(policy):
    context = _contexts(policy, n=23)
    whole = policy.scores(context)
    assert whole.shape == (23, 5)
    np.testing.assert_allclose(policy.scores(context, context_chunk_size=5), whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        policy.embed_contexts(context, context_chunk_size=4),
        policy.embed_contexts(context),
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        dataclasses.replace(CONFIG, objective=IPS(cap=10.0, baseline="optimal", variance_penalty=0.1)),
        dataclasses.replace(CONFIG, objective=IPS(clip=(0.1, 5.0), entropy=0.0, kl=0.2)),
        dataclasses.replace(CONFIG, objective=SNIPS()),
        dataclasses.replace(CONFIG, objective=DR(cap=5.0), reward_model=RewardModelConfig((4, 4), folds=1)),
        dataclasses.replace(CONFIG, objective=TwoStage(candidates=3, num_samples=4, unbiased=True)),
        dataclasses.replace(CONFIG, objective=WeightedRegression(clip=(0.1, 10.0), self_normalize=True)),
        dataclasses.replace(CONFIG, select=None, hidden_sizes=(), estimate_propensities=True),
        TrainConfig.seed_study(objective="dr"),
    ],
    ids=[
        "default",
        "ips-options",
        "ips-clip",
        "snips",
        "dr",
        "two-stage",
        "ips-regression",
        "no-select",
        "seed",
    ],
)
def test_a_config_comes_back_from_its_dict_and_its_json(config):
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(json.loads(jsonio.dumps(config.to_dict()))) == config


def test_from_dict_names_an_unknown_field():
    payload = {**CONFIG.to_dict(), "learning_rte": 0.1}
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict(payload)
    assert err.value.argument == "learning_rte"
    payload = CONFIG.to_dict()
    payload["reward_model"]["fold"] = 2
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict(payload)
    assert err.value.argument == "reward_model.fold"


# --------------------------------------------------------------------------- serving


def test_action_dist_is_the_softmax_of_the_scores_over_the_temperature(trained):
    params, data, _ = trained
    config = dataclasses.replace(CONFIG, temperature=0.5)
    policy = SavedPolicy(
        config=config, params=params, item_features=data.action_context, context_spec=data.context.spec
    )
    context = jax.tree.map(lambda a: a[:11], data.context)
    dist = policy.action_dist(context)
    assert dist.shape == (11, 5, 1) and dist.dtype == np.float64
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    logits = np.asarray(policy.scores(context), np.float64) / 0.5
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(dist[:, :, 0], softmax / softmax.sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(np.exp(policy.log_probs(context)), dist[:, :, 0], rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_top_k_is_the_k_highest_scores_and_their_ids(policy, chunk_size):
    context = _contexts(policy, n=13)
    scores = np.asarray(policy.scores(context))
    index, ids, top = policy.top_k(context, 3, chunk_size=chunk_size)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_array_equal(ids, np.asarray(ITEM_IDS)[expected])
    np.testing.assert_allclose(top, np.take_along_axis(scores, expected, axis=1), rtol=1e-6)


@pytest.mark.parametrize("chunk_size, context_chunk_size", [(None, None), (2, None), (2, 4)])
def test_one_top_k_search_serves_the_policy_and_plain_embeddings(policy, chunk_size, context_chunk_size):
    context = _contexts(policy, n=13)
    contexts, items = policy.embed_contexts(context), policy.embed_items()
    scores, index = search_top_k(
        contexts, items, 3, chunk_size=chunk_size, context_chunk_size=context_chunk_size
    )
    expected_scores, expected_index = retrieval.top_k_items(
        contexts, items, 3, chunk_size=chunk_size, context_chunk_size=context_chunk_size
    )
    np.testing.assert_array_equal(index, expected_index)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)
    index_k, ids_k, scores_k = policy.top_k(
        context, 3, chunk_size=chunk_size, context_chunk_size=context_chunk_size
    )
    np.testing.assert_array_equal(index_k, index)
    np.testing.assert_array_equal(scores_k, scores)
    np.testing.assert_array_equal(ids_k, np.asarray(ITEM_IDS)[np.asarray(index)])
    with pytest.raises(InputError) as err:
        search_top_k(contexts, items, 6)
    assert err.value.argument == "k"


def test_an_inner_product_index_over_the_item_embeddings_reproduces_the_scores(policy):
    context = _contexts(policy)
    items, contexts = policy.embed_items(), policy.embed_contexts(context)
    assert items.shape == (5, 4) and contexts.shape == (9, 4)
    np.testing.assert_allclose(contexts @ items.T, policy.scores(context), rtol=1e-6, atol=1e-7)


def test_explore_draws_distinct_items_after_the_deterministic_top(policy):
    context = _contexts(policy, n=6)
    index, ids = policy.explore(jax.random.key(3), context, 3, k_deterministic=1)
    assert index.shape == ids.shape == (6, 3)
    assert all(len(set(row)) == 3 for row in np.asarray(index).tolist())
    np.testing.assert_array_equal(index[:, 0], policy.top_k(context, 1)[0][:, 0])
    np.testing.assert_array_equal(ids, np.asarray(ITEM_IDS)[np.asarray(index)])


def test_items_known_by_their_id_alone_need_no_feature_arrays(tmp_path):
    data, encoding = logged_data_from_frame(_frame(0, n=20), **COLUMNS, item_feature_columns=[])
    params = CONFIG.model.init(jax.random.key(1), encoding.context_spec, encoding.item_spec)
    save_model(tmp_path / "m", params=params, config=CONFIG, encoding=encoding)
    policy = load_model(tmp_path / "m")
    assert_same_input(policy.item_features, data.action_context)
    np.testing.assert_array_equal(policy.item_features.ids[ITEM_ID_FEATURE], [1, 2, 3, 4, 5])
    assert policy.item_ids.tolist() == ITEM_IDS
    with pytest.raises(InputError) as err:
        save_model(tmp_path / "n", params=params, config=CONFIG, item_ids=ITEM_IDS)
    assert err.value.argument == "item_features"


def test_a_dense_model_saves_and_loads_and_so_does_a_format_1_one(tmp_path):
    params = CONFIG.model.init(jax.random.key(1), 3, 2)
    items = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    save_model(tmp_path / "m", params=params, config=CONFIG, item_features=items, item_ids=[10, 20, 30, 40])
    policy = load_model(tmp_path / "m")
    assert policy.context_spec == 3 and policy.item_spec == 2 and policy.context_dim == 3
    assert policy.item_ids.tolist() == [10, 20, 30, 40] and policy.item_ids.dtype == np.int64
    context = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(policy.scores(context), CONFIG.model.scores(params, context, items))
    with pytest.raises(InputError, match="embed no ids") as err:
        policy.scores(Features(dense=jnp.ones((2, 3)), ids={}, tables=()))
    assert err.value.argument == "context"
    # A model saved by the previous format (dense widths in model.json, no specs) loads.
    manifest = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in ("context_spec", "item_spec"):
        del manifest["shapes"][key]
    (tmp_path / "m" / "model.json").write_text(json.dumps({**manifest, "format_version": 1}))
    np.testing.assert_array_equal(load_model(tmp_path / "m").scores(context), policy.scores(context))


def test_towers_with_ids_need_their_context_spec(trained):
    params, data, _ = trained
    with pytest.raises(InputError, match="embeds ids") as err:
        SavedPolicy(config=CONFIG, params=params, item_features=data.action_context)
    assert err.value.argument == "context_spec"
    with pytest.raises(InputError) as err:
        SavedPolicy(config=CONFIG, params=params, item_features=data.action_context, context_spec=7)
    assert err.value.argument == "params"


# --------------------------------------------------------------------------- export


NUMPY_ACTIVATIONS = {
    "elu": lambda h: np.where(h > 0, h, np.expm1(h)),
    "relu": lambda h: np.maximum(h, 0),
    "tanh": np.tanh,
}


def _numpy_context_tower(directory, x):
    """The recipe from the exported files alone: each table's rows of the ids, concatenated
    with the dense columns before the first layer ("concat") or added to its output ("sum"),
    then the layers and their activations as ``export.json`` lists them."""
    spec = json.loads((directory / "export.json").read_text())["context_tower"]
    tower = np.load(directory / "context_tower.npz")
    dense = np.asarray(x.dense, np.float32)
    rows = [tower[table["embedding"]][np.asarray(x.ids[table["name"]])] for table in spec["tables"]]
    summed = spec["embedding_mode"] == "sum"
    h = dense if summed else np.concatenate([dense, *rows], axis=1)
    for i, layer in enumerate(spec["layers"]):
        h = h @ tower[layer["name"] + "/kernel"] + tower[layer["name"] + "/bias"]
        if summed and i == 0:
            h = h + sum(rows, np.zeros_like(h))
        if layer["activation"]:
            h = NUMPY_ACTIVATIONS[layer["activation"]](h)
    return h


def _readme_context_tower(directory, x, monkeypatch):
    """The README's "In numpy" code, run as written in the export directory."""
    readme = (directory / "README.txt").read_text()
    code = textwrap.dedent(readme.split("In numpy:\n", 1)[1])
    monkeypatch.chdir(directory)
    names = {"dense": np.asarray(x.dense), "ids": {k: np.asarray(v) for k, v in x.ids.items()}}
    exec(code, names)
    return names["scores"]


def test_an_export_reproduces_the_scores_with_plain_numpy(policy, tmp_path):
    directory = policy.export(tmp_path / "export")
    assert sorted(p.name for p in directory.iterdir()) == [
        "README.txt",
        "context_tower.msgpack",
        "context_tower.npz",
        "encoding.json",
        "export.json",
        "item_embeddings.npy",
        "item_ids.json",
        "score.py",
    ]
    spec = json.loads((directory / "export.json").read_text())
    assert (spec["n_items"], spec["context_dim"], spec["embedding_size"]) == (5, policy.context_dim, 4)
    assert [t["name"] for t in spec["context_tower"]["tables"]] == ["city"]
    assert spec["temperature"] == 1.0 and "softmax" in spec["policy"]
    context = _contexts(policy)
    items = np.load(directory / "item_embeddings.npy")
    assert items.shape == (5, 4) and items.dtype == np.float32
    scores = _numpy_context_tower(directory, context) @ items.T
    np.testing.assert_allclose(scores, policy.scores(context), rtol=1e-5, atol=1e-6)
    assert json.loads((directory / "item_ids.json").read_text()) == ITEM_IDS
    restored = serialization.msgpack_restore((directory / "context_tower.msgpack").read_bytes())
    jax.tree.map(np.testing.assert_array_equal, restored, policy.params["context"])
    readme = (directory / "README.txt").read_text()
    assert "Dense_0" in readme and "embed_<name>/embedding" in readme and "out-of-vocabulary" in readme


@pytest.mark.parametrize(
    "mode, activation, hidden_sizes",
    [("concat", "elu", (8, 6)), ("sum", "tanh", (8, 6)), ("sum", "relu", ())],
)
def test_the_exported_recipe_reproduces_the_scores_in_either_embedding_mode(
    tmp_path, monkeypatch, mode, activation, hidden_sizes
):
    # "concat": each id's dim-wide row joins the dense columns before the first layer;
    # "sum": tables as wide as the first layer, their rows added to its output.
    rng = np.random.default_rng(0)
    n, n_items = 7, 6
    context = Features.from_arrays(
        ids={"user": rng.integers(0, 9, n), "city": rng.integers(0, 4, n)},
        sizes={"user": 9, "city": 4},
        dense=rng.normal(size=(n, 3)).astype(np.float32),
        dims={"user": 3, "city": 2},
    )
    items = Features.from_arrays(
        ids={"item": np.arange(1, n_items + 1)},
        sizes={"item": n_items + 1},
        dense=rng.normal(size=(n_items, 2)).astype(np.float32),
        dims={"item": 3},
    )
    config = TrainConfig(
        hidden_sizes=hidden_sizes,
        embedding_size=4,
        activation=activation,
        embedding_mode=mode,
        temperature=0.5,
    )
    params = config.model.init(jax.random.key(0), context.spec, items.spec)
    leaves, treedef = jax.tree.flatten(params)  # nonzero biases too
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = treedef.unflatten(
        [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    )
    policy = SavedPolicy(
        config=config, params=params, item_features=items, item_ids=list("abcdef"), context_spec=context.spec
    )
    directory = policy.export(tmp_path / "export")
    spec = json.loads((directory / "export.json").read_text())["context_tower"]
    first_width = (hidden_sizes or (4,))[0]
    widths = {"user": 3, "city": 2} if mode == "concat" else {"user": first_width, "city": first_width}
    assert spec["embedding_mode"] == mode
    assert {t["name"]: t["dim"] for t in spec["tables"]} == widths
    assert len(spec["layers"]) == len(hidden_sizes) + 1
    item_embeddings = np.load(directory / "item_embeddings.npy")
    expected = np.asarray(policy.scores(context))
    np.testing.assert_allclose(
        _numpy_context_tower(directory, context) @ item_embeddings.T, expected, atol=1e-5
    )
    np.testing.assert_allclose(_readme_context_tower(directory, context, monkeypatch), expected, atol=1e-5)


def test_an_export_of_integer_ids_writes_them_as_npy_and_drops_the_old_json(trained, policy, tmp_path):
    params, data, _ = trained
    policy.export(tmp_path / "export")
    numbered = SavedPolicy(
        config=CONFIG,
        params=params,
        item_features=data.action_context,
        item_ids=[7, 3, 9, 1, 5],
        context_spec=data.context.spec,
    )
    directory = numbered.export(tmp_path / "export", overwrite=True)
    np.testing.assert_array_equal(np.load(directory / "item_ids.npy"), [7, 3, 9, 1, 5])
    assert not (directory / "item_ids.json").exists()


# --------------------------------------------------------------------------- errors


def _copy(model_dir, target):
    target.mkdir()
    for path in model_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _load_error(directory) -> str:
    with pytest.raises(InputError) as err:
        load_model(directory)
    assert err.value.argument == "model"
    return str(err.value)


def test_loading_names_the_model_and_what_is_missing_or_wrong(model_dir, tmp_path):
    assert "no such directory" in _load_error(tmp_path / "nowhere")
    assert "model.json is missing" in _load_error(tmp_path)

    missing = _copy(model_dir, tmp_path / "missing")
    (missing / "params.msgpack").unlink()
    assert "params.msgpack is missing" in _load_error(missing)

    newer = _copy(model_dir, tmp_path / "newer")
    manifest = json.loads((newer / "model.json").read_text())
    (newer / "model.json").write_text(json.dumps({**manifest, "format_version": store.FORMAT_VERSION + 1}))
    assert "upgrade towerjax" in _load_error(newer)

    foreign = _copy(model_dir, tmp_path / "foreign")
    (foreign / "model.json").write_text(json.dumps({**manifest, "format": "other"}))
    assert "not a towerjax model" in _load_error(foreign)

    changed = _copy(model_dir, tmp_path / "changed")
    raw = bytearray((changed / "params.msgpack").read_bytes())
    raw[-1] ^= 1
    (changed / "params.msgpack").write_bytes(bytes(raw))
    assert "params.msgpack does not match" in _load_error(changed)


@pytest.mark.parametrize("shape", [(4,), (3, 2), (2, 5, 1)])
def test_a_plain_array_for_a_model_with_ids_names_context(policy, shape):
    with pytest.raises(InputError, match="encode_contexts") as err:
        policy.scores(np.zeros(shape))
    assert err.value.argument == "context"


def test_a_non_finite_context_or_an_id_out_of_range_names_context(policy):
    context = _contexts(policy, n=3)
    bad = dataclasses.replace(context, dense=context.dense.at[1, 0].set(jnp.nan))
    for method in (policy.scores, policy.action_dist, policy.embed_contexts):
        with pytest.raises(InputError, match="row 1") as err:
            method(bad)
        assert err.value.argument == "context"
    out_of_range = dataclasses.replace(context, ids={"city": context.ids["city"].at[2].set(4)})
    with pytest.raises(InputError, match=r"ids\['city'\]: row 2 is 4, expected an id in \[0, 4\)") as err:
        policy.scores(out_of_range)
    assert err.value.argument == "context"


def test_saving_refuses_a_folder_that_holds_something_else(trained, tmp_path):
    params, data, encoding = trained
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError) as err:
        save_model(
            tmp_path, params=params, config=CONFIG, item_features=data.action_context, encoding=encoding
        )
    assert err.value.argument == "directory" and "notes.txt" in str(err.value)
    save_model(
        tmp_path,
        params=params,
        config=CONFIG,
        item_features=data.action_context,
        encoding=encoding,
        overwrite=True,
    )
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert load_model(tmp_path).n_items == 5


def test_saving_names_bad_arguments(trained, tmp_path):
    params, data, encoding = trained
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), params)
    items, spec = data.action_context, data.context.spec
    narrower = dataclasses.replace(items, dense=items.dense[:, :0])
    cases = [
        ("params", dict(params=stacked, item_features=items, encoding=encoding)),
        ("params", dict(params=params, item_features=narrower, context_spec=spec)),
        ("item_ids", dict(params=params, item_features=items, item_ids=["a", "b"], context_spec=spec)),
        (
            "item_ids",
            dict(params=params, item_features=items, item_ids=["a", "b", "c", "d", "a"], context_spec=spec),
        ),
        ("item_ids", dict(params=params, item_features=items, item_ids=["a", 1, 2, 3, 4], context_spec=spec)),
        ("metadata", dict(params=params, item_features=items, metadata={"f": object()}, context_spec=spec)),
        ("context_spec", dict(params=params, item_features=items, encoding=encoding, context_spec=3)),
    ]
    for argument, kwargs in cases:
        with pytest.raises(InputError) as err:
            save_model(tmp_path / "m", config=CONFIG, **kwargs)
        assert err.value.argument == argument, kwargs
    with pytest.raises(InputError, match="leading seed axis"):
        save_model(
            tmp_path / "m",
            config=CONFIG,
            params=stacked,
            item_features=data.action_context,
            encoding=encoding,
        )


# --------------------------------------------------------------------------- interrupted saves


def _interrupt_rename_to(monkeypatch, name):
    """Ctrl-C at the first rename onto ``name`` (the folder's swap, or one file's rename)."""
    original, fired = outputs._rename, []

    def rename(source, target):
        if target.name == name and not fired:
            fired.append(target)
            raise KeyboardInterrupt("interrupted")
        original(source, target)

    monkeypatch.setattr(outputs, "_rename", rename)


def _interrupt_writing(monkeypatch):
    """Ctrl-C after two of the model's files are written."""

    def write_files(folder, files):
        outputs.write_files(folder, dict(list(files.items())[:2]))
        raise KeyboardInterrupt("interrupted")

    monkeypatch.setattr(store, "write_files", write_files)


@pytest.mark.parametrize(
    "at, notes",
    [("writing", False), ("m", False), ("writing", True), ("model.json", True), ("params.msgpack", True)],
)
def test_an_interrupted_save_leaves_the_previous_model_loadable(trained, tmp_path, monkeypatch, at, notes):
    params, data, encoding = trained
    directory = tmp_path / "m"
    other = jax.tree.map(lambda a: a + 1.0, params)
    save_model(directory, params=other, config=CONFIG, item_features=data.action_context, encoding=encoding)
    if notes:  # a file of the user's beside the model: only the model's files are swapped
        (directory / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    if at == "writing":
        _interrupt_writing(monkeypatch)
    else:
        _interrupt_rename_to(monkeypatch, at)
    with pytest.raises(KeyboardInterrupt):
        save_model(
            directory,
            params=params,
            config=CONFIG,
            item_features=data.action_context,
            encoding=encoding,
            overwrite=True,
        )
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder beside it
    np.testing.assert_array_equal(
        load_model(directory).scores(data.context),
        CONFIG.model.scores(other, data.context, data.action_context),
    )
    save_model(
        directory,
        params=params,
        config=CONFIG,
        item_features=data.action_context,
        encoding=encoding,
        overwrite=True,
    )  # a retry
    np.testing.assert_array_equal(
        load_model(directory).scores(data.context),
        CONFIG.model.scores(params, data.context, data.action_context),
    )


def test_a_saved_model_or_export_is_replaced_only_with_overwrite(trained, policy, tmp_path):
    params, data, encoding = trained
    directory = tmp_path / "m"
    kwargs = dict(params=params, config=CONFIG, item_features=data.action_context, encoding=encoding)
    save_model(directory, **kwargs)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    with pytest.raises(InputError, match="overwrite=True") as err:
        save_model(directory, **kwargs)
    assert err.value.argument == "directory"
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before
    save_model(directory, **{**kwargs, "metadata": {"run": 2}}, overwrite=True)
    assert load_model(directory).metadata == {"run": 2}

    export = policy.export(tmp_path / "e")
    with pytest.raises(InputError, match="overwrite=True") as err:
        policy.export(export)
    assert err.value.argument == "directory"
    assert policy.export(export, overwrite=True) == export
    with pytest.raises(InputError, match="is a file, not a folder") as err:
        policy.export(export / "export.json" / "x")
    assert err.value.argument == "directory"
