"""Sparse (lazy) updates of embedding tables: lazy Adam on the rows a batch looks up (SPEC 6)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax.checks import InputError
from towerjax.data import LoggedData
from towerjax.features import Features, feature_spec
from towerjax.large_softmax import item_proposal, uniform_log_q
from towerjax.training import Batch, TrainConfig, make_optimizer, make_update_step, train_seeds
from towerjax.training.sparse import compact, gather_rows, lazy_update
from towerjax.training.step import objective_loss, tower_inputs

B1, B2, EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults
USERS, ITEMS, B = 5, 6, 8
RNG = np.random.default_rng(0)
ITEM = Features.from_arrays(
    ids={"item": np.arange(ITEMS), "genre": np.arange(ITEMS) % 2},
    sizes={"item": ITEMS, "genre": 2},
    dense=RNG.normal(size=(ITEMS, 1)),
)


def batch_of(users, mask=None, actions=None, countries=None, proposal=None) -> Batch:
    users = np.asarray(users)
    n = users.shape[0]
    rng = np.random.default_rng(int(users.sum()))
    context = Features.from_arrays(
        ids={"user": users, "country": rng.integers(0, 3, n) if countries is None else countries},
        sizes={"user": USERS, "country": 3},
        dense=rng.normal(size=(n, 2)),
        dims={"user": 3, "country": 2},
    )
    data = LoggedData(
        context=context,
        action_context=ITEM,
        action=jnp.asarray(rng.integers(0, ITEMS, n) if actions is None else actions, jnp.int32),
        reward=jnp.asarray(rng.random(n), jnp.float32),
        pscore=jnp.asarray(rng.uniform(0.1, 1.0, n), jnp.float32),
    )
    mask = jnp.ones(n, jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
    return Batch(data=data, mask=mask, proposal=proposal)


# Every user id in every batch (0..4 and duplicates), and every item logged: dense Adam's rows.
FULL = [
    batch_of([0, 1, 2, 3, 4, 0, 1, 2], actions=[0, 1, 2, 3, 4, 5, 0, 1], countries=[0, 1, 2, 0, 0, 1, 1, 1]),
    batch_of([4, 3, 2, 1, 0, 4, 4, 4], actions=[5, 4, 3, 2, 1, 0, 5, 5], countries=[2, 2, 1, 0, 2, 2, 1, 0]),
]
# A sparse stream: users 3 and 4 are never looked up; user 2 only by a padded (masked) event.
SPARSE = [
    batch_of([0, 0, 1, 0, 1, 1, 0, 2], mask=[1, 1, 1, 1, 1, 1, 1, 0]),
    batch_of([1, 1, 1, 0, 0, 1, 0, 1]),
    batch_of([0, 1, 0, 0, 2, 0, 1, 1], mask=[1, 1, 1, 1, 0, 1, 1, 1]),
]


def config_of(**overrides) -> TrainConfig:
    settings = dict(objective="ips", hidden_sizes=(4,), embedding_size=3, batch_size=B, learning_rate=0.05)
    return TrainConfig(**{**settings, **overrides})


def init(config: TrainConfig, batch: Batch) -> tuple:
    params = config.model.init(jax.random.key(1), feature_spec(batch.data.context), feature_spec(ITEM))
    return params, make_optimizer(config).init(params)


@functools.cache
def compiled_step(config: TrainConfig):
    return jax.jit(make_update_step(config))


def run(config: TrainConfig, batches) -> tuple:
    step = compiled_step(config)
    params, opt_state = init(config, batches[0])
    for i, batch in enumerate(batches):
        params, opt_state, _ = step(params, opt_state, batch, jax.random.key(i))
    return params, opt_state


def adam_moments(opt_state) -> tuple:
    """``(mu, nu)`` of the optimiser state (Adam's per-parameter trees)."""
    (state,) = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "mu")) if hasattr(s, "mu")]
    return state.mu, state.nu


def close(a, b, atol=1e-6):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=atol), a, b)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(optimizer="adamw", weight_decay=0.1),
        dict(optimizer="adam", weight_decay=0.01, embedding_weight_decay=0.2, embedding_mode="sum"),
    ],
)
def test_lazy_adam_equals_dense_adam_when_every_row_is_looked_up(overrides):
    config = config_of(**overrides)
    batches = FULL * 2  # four steps
    sparse = run(config, batches)
    dense = run(dataclasses.replace(config, sparse_embeddings=False), batches)
    close(sparse, dense)
    assert int(jax.tree.leaves(sparse[1])[0]) == 4  # one global step count


def lazy_reference(config: TrainConfig, batches) -> dict:
    """Numpy lazy Adam with coupled L2: dense leaves updated every step, the context tables'
    rows only where a real event looks them up (gradients by autodiff of the dense loss);
    with ``embedding_optimizer="row-adagrad"`` the tables by row-wise Adagrad (SPEC 6)."""
    params, _ = init(config, batches[0])
    grad = jax.jit(jax.grad(objective_loss, argnums=1), static_argnums=0)
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    m, v = jax.tree.map(np.zeros_like, p), jax.tree.map(np.zeros_like, p)
    accumulator = jax.tree.map(lambda x: np.zeros(x.shape[:1]), p)  # row-wise Adagrad's G
    wd, lr = config.weight_decay, config.learning_rate
    for t, batch in enumerate(batches, start=1):
        g = jax.tree.map(np.asarray, grad(config, jax.tree.map(jnp.asarray, p), batch, jax.random.key(0)))
        real = np.asarray(batch.mask) > 0
        for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
            tower, module, name = (k.key for k in path)
            g_leaf, m_leaf, v_leaf, acc = (tree[tower][module][name] for tree in (g, m, v, accumulator))
            rows, table = slice(None), module.startswith("embed_")
            if tower == "context" and table:
                rows = np.unique(np.asarray(batch.data.context.ids[module.removeprefix("embed_")])[real])
            gj = g_leaf[rows] + wd * leaf[rows]
            if table and config.embedding_optimizer == "row-adagrad":
                acc[rows] += np.mean(gj**2, axis=-1)
                leaf[rows] -= lr * gj / np.sqrt(acc[rows] + 1e-8)[:, None]
                continue
            m_leaf[rows] = B1 * m_leaf[rows] + (1 - B1) * gj
            v_leaf[rows] = B2 * v_leaf[rows] + (1 - B2) * gj**2
            leaf[rows] -= lr * (m_leaf[rows] / (1 - B1**t)) / (np.sqrt(v_leaf[rows] / (1 - B2**t)) + EPS)
    return p, m, v


def test_rows_not_looked_up_keep_their_values_and_moments_and_the_rest_is_lazy_adam():
    config = config_of(optimizer="adam", weight_decay=0.05)
    params, opt_state = run(config, SPARSE)
    table = params["context"]["embed_user"]["embedding"]
    initial, _ = init(config, SPARSE[0])
    mu, nu = adam_moments(opt_state)
    # Users 3 and 4 are never looked up, user 2 only by padded events: bitwise unchanged, zero moments.
    np.testing.assert_array_equal(table[2:], initial["context"]["embed_user"]["embedding"][2:])
    assert not np.any(mu["context"]["embed_user"]["embedding"][2:])
    assert not np.any(nu["context"]["embed_user"]["embedding"][2:])
    want, want_m, want_v = lazy_reference(config, SPARSE)
    close(params, want, atol=2e-6)
    close((mu, nu), (want_m, want_v), atol=1e-7)
    # Dense Adam moves the rows no event looked up (momentum and decay): lazy Adam does not.
    dense, _ = run(dataclasses.replace(config, sparse_embeddings=False), SPARSE)
    assert np.any(dense["context"]["embed_user"]["embedding"][3:] != table[3:])


def test_row_wise_adagrad_keeps_one_accumulator_per_row_and_updates_the_looked_up_rows():
    config = config_of(optimizer="adam", weight_decay=0.05, embedding_optimizer="row-adagrad")
    params, opt_state = run(config, SPARSE)
    initial, _ = init(config, SPARSE[0])
    np.testing.assert_array_equal(
        params["context"]["embed_user"]["embedding"][2:], initial["context"]["embed_user"]["embedding"][2:]
    )
    close(params, lazy_reference(config, SPARSE)[0], atol=2e-6)
    accumulators = opt_state.inner_states["tables"].inner_state[1]  # after the coupled decay
    assert accumulators["context"]["embed_user"]["embedding"].shape == (USERS,)


def test_duplicate_ids_sum_their_gradients():
    features = Features.from_arrays(ids={"user": [3, 1, 3, 3, 0]}, sizes={"user": USERS}, dims={"user": 2})
    compacted, rows = compact(features)
    assert rows["user"].tolist() == [0, 1, 3, USERS, USERS]
    assert compacted.ids["user"].tolist() == [2, 1, 2, 2, 0]
    assert compacted.tables[0].size == 5
    table = jnp.asarray(RNG.normal(size=(USERS, 2)), jnp.float32)
    weights = jnp.asarray(RNG.normal(size=(5, 2)), jnp.float32)

    def loss(e, ids):
        return jnp.sum(weights * jnp.tanh(e[ids]))

    dense = jax.grad(loss)(table, features.ids["user"])
    sub = jax.grad(loss)(
        jnp.take(table, rows["user"], axis=0, mode="fill", fill_value=0), compacted.ids["user"]
    )
    np.testing.assert_allclose(sub[:3], dense[np.array([0, 1, 3])], rtol=1e-6)
    assert not np.any(sub[3:])


def test_a_lazy_step_under_jit_equals_it_eager():
    config = config_of(optimizer="adamw", weight_decay=0.01)
    optimizer = make_optimizer(config)
    features = Features.from_arrays(ids={"user": [3, 1, 3, 0]}, sizes={"user": USERS}, dims={"user": 2})
    params = {"context": {"embed_user": {"embedding": jnp.asarray(RNG.normal(size=(USERS, 2)), jnp.float32)}}}
    params["context"]["Dense_0"] = {"kernel": jnp.ones((2, 1))}

    def lazy_step(params, opt_state, features):
        compacted, rows = compact(features, jnp.asarray([1.0, 1.0, 1.0, 0.0]))
        sub = gather_rows(params, {"context": rows})

        def loss(p):
            e = p["context"]["embed_user"]["embedding"][compacted.ids["user"]]
            return jnp.sum(jnp.tanh(e @ p["context"]["Dense_0"]["kernel"]) ** 2)

        return lazy_update(optimizer, jax.grad(loss)(sub), opt_state, params, sub, {"context": rows})

    eager = jitted = (params, optimizer.init(params))
    for _ in range(2):
        eager = lazy_step(*eager, features)
        jitted = jax.jit(lazy_step)(*jitted, features)
    close(eager, jitted, atol=1e-7)
    # Users 2, 4 and (looked up by a masked event only) 0 are untouched.
    untouched = np.array([0, 2, 4])
    np.testing.assert_array_equal(
        eager[0]["context"]["embed_user"]["embedding"][untouched],
        params["context"]["embed_user"]["embedding"][untouched],
    )


def test_sampled_softmax_updates_the_logged_and_sampled_item_rows_only():
    proposal = item_proposal(uniform_log_q(ITEMS))
    config = config_of(optimizer="adam", weight_decay=0.0, sampled_softmax=2)
    batches = [
        batch_of([0, 1, 2, 3, 4, 0, 1, 2], actions=[0, 0, 1, 0, 1, 0, 1, 0], proposal=proposal),
        batch_of([0, 1, 2, 3, 4, 0, 1, 2], actions=[1, 1, 0, 0, 1, 1, 0, 0], proposal=proposal),
    ]
    params, opt_state = run(config, batches)
    looked_up = {0, 1}
    for i, batch in enumerate(batches):
        looked_up |= set(np.asarray(tower_inputs(config, batch, jax.random.key(i)).sampled).tolist())
    untouched = np.array(sorted(set(range(ITEMS)) - looked_up))
    assert untouched.size  # a draw of 2 x 2 items leaves some of the 6
    initial, _ = init(config, batches[0])
    table = params["action"]["embed_item"]["embedding"]
    np.testing.assert_array_equal(table[untouched], initial["action"]["embed_item"]["embedding"][untouched])
    assert not np.any(adam_moments(opt_state)[0]["action"]["embed_item"]["embedding"][untouched])
    # One step from a fresh state without decay: the rows no one looks up get a zero dense
    # update too, so lazy and dense Adam agree everywhere.
    one = [batches[0]]
    close(run(config, one), run(dataclasses.replace(config, sparse_embeddings=False), one))


def test_the_switch_is_validated_and_survives_to_dict():
    assert TrainConfig().sparse_embeddings
    config = TrainConfig(sparse_embeddings=False)
    assert not TrainConfig.from_dict(config.to_dict()).sparse_embeddings
    with pytest.raises(InputError, match="sparse_embeddings"):
        TrainConfig(sparse_embeddings="yes")


@pytest.mark.parametrize("sparse", [True, False])
def test_training_with_id_features_lowers_the_loss_with_traced_learning_rates(sparse):
    n, users = 256, 50
    rng = np.random.default_rng(3)
    user = rng.integers(0, users, n)
    action = rng.integers(0, ITEMS, n)
    data = LoggedData.from_arrays(
        context=Features.from_arrays(ids={"user": user}, sizes={"user": users}, dims={"user": 4}),
        action_context=ITEM,
        action=action,
        reward=(action == user % ITEMS).astype(np.float32),
        pscore=np.full(n, 1 / ITEMS),
    )
    config = config_of(
        epochs=4,
        batch_size=32,
        validation_fraction=0.0,
        select=None,
        evaluate_train=False,
        sparse_embeddings=sparse,
    )
    # Two learning rates as one compiled call (traced): the tables take theirs too.
    rates = {"learning_rate": [0.05, 0.1]}
    result, _ = train_seeds(config, seeds=1, data=data, test_data=data, hyperparameters=rates)
    loss = np.asarray(result.loss)[0]  # [C, epochs]
    assert np.all(loss[:, -1] < loss[:, 0])
    tables = np.asarray(result.params["context"]["embed_user"]["embedding"])[0]
    assert not np.allclose(tables[0], tables[1])
