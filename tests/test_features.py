"""Id features as embeddings: the Features pytree, the towers' tables, chunked per-row work."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.batching import map_row_chunks
from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.evaluation import validation_estimates
from towerjax.features import Features, FeatureSpec, Table, default_embedding_dim, feature_spec, nbytes, take
from towerjax.reward_model import RewardModel, RewardModelConfig
from towerjax.towers import TwoTower
from towerjax.training import TrainConfig, is_embedding, make_optimizer

N, USERS, ITEMS = 40, 1000, 7
RNG = np.random.default_rng(0)
USER = RNG.integers(0, USERS, N)
CONTEXT = Features.from_arrays(
    ids={"user": USER, "country": RNG.integers(0, 3, N)},
    sizes={"user": USERS, "country": 3},
    dense=RNG.normal(size=(N, 2)),
    dims={"country": 2},
)
ITEM = Features.from_arrays(ids={"item": np.arange(ITEMS)}, sizes={"item": ITEMS})
MODEL = TwoTower(hidden_sizes=(8,), embedding_size=4)
PARAMS = MODEL.init(jax.random.key(0), feature_spec(CONTEXT), feature_spec(ITEM))


def test_features_hold_integer_ids_not_one_hot_rows():
    # n rows of two int32 id arrays and two floats: O(n), whatever the vocabulary sizes.
    assert nbytes(CONTEXT) == N * (4 + 4 + 2 * 4)
    assert CONTEXT.spec == FeatureSpec(
        2, (Table("user", USERS, default_embedding_dim(USERS)), Table("country", 3, 2))
    )
    assert FeatureSpec.from_dict(CONTEXT.spec.to_dict()) == CONTEXT.spec
    assert take(CONTEXT, np.array([3, 1])).ids["user"].tolist() == [USER[3], USER[1]]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        (dict(ids={"user": [0, 5]}, sizes={"user": 5}), "ids['user']"),
        (dict(ids={"user": [0.0, 1.0]}, sizes={"user": 5}), "ids['user']"),
        (dict(ids={"user": [0, 1]}, sizes={}), "sizes"),
        (dict(ids={"user": [0, 1]}, sizes={"user": 5}, dense=np.zeros((3, 1))), "dense"),
        (dict(ids={"user": [0, 1]}, sizes={"user": 5}, dims={"genre": 2}), "dims"),
    ],
)
def test_features_from_arrays_names_the_bad_argument(kwargs, argument):
    with pytest.raises(InputError) as err:
        Features.from_arrays(**kwargs)
    assert err.value.argument == argument


def test_towers_look_ids_up_in_their_own_tables():
    assert PARAMS["context"]["embed_user"]["embedding"].shape == (USERS, default_embedding_dim(USERS))
    assert PARAMS["action"]["embed_item"]["embedding"].shape == (ITEMS, default_embedding_dim(ITEMS))
    scores = MODEL.scores(PARAMS, CONTEXT, ITEM)
    assert scores.shape == (N, ITEMS)
    # Rows with the same user, country and dense values score alike; the id is what the tower reads.
    same = dataclasses.replace(CONTEXT, ids={**CONTEXT.ids, "user": CONTEXT.ids["user"].at[1].set(USER[0])})
    same = dataclasses.replace(same, dense=same.dense.at[1].set(same.dense[0]))
    same = dataclasses.replace(
        same, ids={**same.ids, "country": same.ids["country"].at[1].set(same.ids["country"][0])}
    )
    again = MODEL.scores(PARAMS, same, ITEM)
    np.testing.assert_allclose(again[1], again[0], rtol=1e-6)
    # jit and vmap over a batch of datasets agree with eager.
    np.testing.assert_allclose(jax.jit(MODEL.scores)(PARAMS, CONTEXT, ITEM), scores, rtol=1e-5, atol=1e-6)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), CONTEXT)
    batched = jax.vmap(MODEL.scores, in_axes=(None, 0, None))(PARAMS, stacked, ITEM)
    np.testing.assert_allclose(batched[1], scores, rtol=1e-5, atol=1e-6)


def test_dense_inputs_keep_the_plain_mlp_parameters():
    params = MODEL.init(jax.random.key(0), 3, 2)
    assert set(params["context"]) == {"Dense_0", "Dense_1"}


def test_reward_model_embeds_ids_and_predicts_every_pair_in_chunks():
    reward = (USER % 2).astype(np.float32)
    data = LoggedData.from_arrays(
        context=CONTEXT,
        action_context=ITEM,
        action=RNG.integers(0, ITEMS, N),
        reward=reward,
        pscore=np.full(N, 1 / ITEMS),
    )
    model = RewardModel(RewardModelConfig(hidden_sizes=(8,), epochs=2, batch_size=16))
    params = model.fit(jax.random.key(1), data)
    assert "context_embed_user" in params and "action_embed_item" in params
    whole = model.predict(params, CONTEXT, ITEM)
    chunked = model.predict(params, CONTEXT, ITEM, chunk_size=7)
    assert whole.shape == (N, ITEMS)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_row_chunks_give_the_unchunked_validation_estimates():
    log_pi = jax.nn.log_softmax(MODEL.scores(PARAMS, CONTEXT, ITEM))
    logs = LoggedData(
        CONTEXT, ITEM, jnp.asarray(RNG.integers(0, ITEMS, N)), jnp.asarray(RNG.random(N)), jnp.full(N, 0.2)
    )
    q_hat = jnp.asarray(RNG.random((N, ITEMS)), jnp.float32)
    whole = validation_estimates(log_pi, logs, q_hat)

    def per_row(rows):
        pi = jnp.exp(rows["log_pi"])
        return {
            "w": jnp.take_along_axis(pi, rows["a"][:, None], 1)[:, 0] / 0.2,
            "d": jnp.sum(pi * rows["q"], -1),
        }

    terms = map_row_chunks(
        per_row, {"log_pi": log_pi, "a": logs.action, "q": q_hat}, chunk=6
    )  # 7 chunks, padded
    assert terms["w"].shape == (N,)
    np.testing.assert_allclose(
        terms["w"], jnp.exp(jnp.take_along_axis(log_pi, logs.action[:, None], 1)[:, 0]) / 0.2, rtol=1e-6
    )
    np.testing.assert_allclose(terms["d"], jnp.sum(jnp.exp(log_pi) * q_hat, -1), rtol=1e-6)
    assert np.isfinite(whole["dr"])


def test_embedding_weight_decay_applies_to_the_tables_only():
    assert is_embedding(PARAMS)["context"]["embed_user"]["embedding"]
    assert not is_embedding(PARAMS)["context"]["Dense_0"]["kernel"]
    config = TrainConfig(learning_rate=1e-3, weight_decay=0.0, embedding_weight_decay=10.0)
    optimizer = make_optimizer(config)
    zero = jax.tree.map(jnp.zeros_like, PARAMS)
    updates, _ = optimizer.update(zero, optimizer.init(PARAMS), PARAMS)
    # With zero gradients only the decayed leaves move.
    assert float(jnp.max(jnp.abs(updates["context"]["embed_user"]["embedding"]))) > 0
    assert float(jnp.max(jnp.abs(updates["context"]["Dense_0"]["kernel"]))) == 0


def test_training_on_ids_reports_the_same_validation_in_row_chunks(monkeypatch):
    """make_train's per-epoch values and validation estimates over row chunks equal the
    one-block computation (the chunking only bounds memory)."""
    import towerjax.training.loop as train_module

    data = LoggedData.from_arrays(
        context=CONTEXT,
        action_context=ITEM,
        action=RNG.integers(0, ITEMS, N),
        reward=(USER % 2).astype(np.float32),
        pscore=np.full(N, 1 / ITEMS),
        expected_reward=RNG.random((N, ITEMS)),
    )
    config = TrainConfig(
        hidden_sizes=(8,), embedding_size=4, batch_size=8, epochs=2, validation_fraction=0.25, select="dr",
        reward_model=RewardModelConfig(hidden_sizes=(8,), epochs=1, batch_size=16),
    )  # fmt: skip
    whole = jax.jit(train_module.make_train(config))(jax.random.key(0), data)
    monkeypatch.setattr(train_module, "row_chunk", lambda rows, items: 3)
    chunked = jax.jit(train_module.make_train(config))(jax.random.key(0), data)
    for name in ("snips", "dr", "dr_se"):
        np.testing.assert_allclose(chunked.validation[name], whole.validation[name], rtol=1e-5)
    np.testing.assert_allclose(chunked.test_value, whole.test_value, rtol=1e-5)
    np.testing.assert_allclose(chunked.top_share, whole.top_share)
    assert np.all(np.isfinite(whole.validation["dr"]))


def test_sum_mode_is_a_one_hot_first_layer_by_lookup():
    """embedding_mode="sum": tables as wide as the first layer, added to its output, equal
    one-hot columns times the first layer's kernel, whatever the table."""
    model = TwoTower(hidden_sizes=(8,), embedding_size=4, embedding_mode="sum")
    params = model.init(jax.random.key(1), feature_spec(CONTEXT), feature_spec(ITEM))
    context = params["context"]
    assert context["embed_user"]["embedding"].shape == (USERS, 8)
    one_hot = jnp.concatenate(
        [
            CONTEXT.dense,
            jax.nn.one_hot(CONTEXT.ids["user"], USERS),
            jax.nn.one_hot(CONTEXT.ids["country"], 3),
        ],
        axis=1,
    )
    kernel = jnp.concatenate(
        [
            context["Dense_0"]["kernel"],
            context["embed_user"]["embedding"],
            context["embed_country"]["embedding"],
        ]
    )
    dense = {"Dense_0": {"kernel": kernel, "bias": context["Dense_0"]["bias"]}, "Dense_1": context["Dense_1"]}
    expected = TwoTower(hidden_sizes=(8,), embedding_size=4).embed_context({"context": dense}, one_hot)
    np.testing.assert_allclose(model.embed_context(params, CONTEXT), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="embedding_mode"):
        TwoTower(embedding_mode="stack")
