"""logged_data_from_frame: dict-of-arrays and DataFrame input, categorical columns as embedded
ids (vocabularies, the out-of-vocabulary id, hashing), serving encodings, and errors."""

import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from towerjax import LoggedData
from towerjax.checks import InputError
from towerjax.features import Features, FeatureSpec, Table, default_embedding_dim, nbytes
from towerjax.tables import (
    ITEM_ID_FEATURE,
    CategoricalColumn,
    FrameEncoding,
    FrameValidationError,
    UnseenCategoryWarning,
    logged_data_from_frame,
    stable_hash_ids,
)


def frame(**override):
    columns = {
        "age": np.array([20.0, 30.0, 40.0, 50.0, 60.0]),
        "city": np.array(["Oslo", "Rome", "Oslo", "Lima", "Rome"], dtype=object),
        "item": np.array(["b", "c", "a", "b", "c"]),
        "click": np.array([1, 0, 0, 1, 0]),
        "p": np.array([0.5, 0.25, 0.2, 0.5, 1.0]),
    }
    columns.update(override)
    return columns


def items(**override):
    columns = {
        "id": np.array(["a", "b", "c"]),
        "price": np.array([1.0, 2.5, 4.0]),
        "kind": np.array(["book", "film", "book"]),
    }
    columns.update(override)
    return columns


def build(events=None, table=None, **kwargs):
    args = dict(
        context_columns=["age", "city"],
        action_column="item",
        reward_column="click",
        pscore_column="p",
        item_table=items() if table is None else table,
        item_id_column="id",
    )
    args.update(kwargs)
    return logged_data_from_frame(frame() if events is None else events, **args)


def assert_same_input(a, b):
    """The same tower input: equal arrays, or Features with equal tables, dense and ids."""
    assert type(a) is type(b) or (
        isinstance(a, np.ndarray | jax.Array) and isinstance(b, np.ndarray | jax.Array)
    )
    if isinstance(a, Features):
        assert a.tables == b.tables
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_dict_of_arrays_round_trip_into_logged_data():
    data, info = build()
    assert isinstance(data, LoggedData) and isinstance(info, FrameEncoding)
    assert data.n_rounds == 5 and data.n_actions == 3
    # Action ids map to rows of the item table: a -> 0, b -> 1, c -> 2.
    np.testing.assert_array_equal(data.action, [1, 2, 0, 1, 2])
    assert data.action.dtype == jnp.int32
    assert info.item_ids == ("a", "b", "c")
    # Context: numeric age dense; city one id per row, never a one-hot. Sorted vocabulary of
    # the values seen at least twice (min_count 2): Lima (once) shares id 0 with unseen values.
    assert info.context_feature_names == ("age",)
    assert info.context_vocabularies == {"city": ("Oslo", "Rome")}
    assert isinstance(data.context, Features)
    np.testing.assert_allclose(data.context.dense, [[20], [30], [40], [50], [60]])
    np.testing.assert_array_equal(data.context.ids["city"], [1, 2, 1, 0, 2])
    assert data.context.ids["city"].dtype == jnp.int32
    assert data.context.tables == (Table("city", 3, default_embedding_dim(3)),)
    assert info.context_spec == data.context.spec == FeatureSpec(1, data.context.tables)
    # Items: the item id embedded (ids 1..A), price dense, kind ids (every value kept: min count 1).
    assert info.item_feature_columns == ("price", "kind")
    assert info.item_feature_names == ("price",)
    assert info.item_vocabularies == {"kind": ("book", "film")}
    np.testing.assert_allclose(data.action_context.dense, [[1.0], [2.5], [4.0]])
    np.testing.assert_array_equal(data.action_context.ids[ITEM_ID_FEATURE], [1, 2, 3])
    np.testing.assert_array_equal(data.action_context.ids["kind"], [1, 2, 1])
    assert [t.name for t in data.action_context.tables] == [ITEM_ID_FEATURE, "kind"]
    assert info.item_spec == data.action_context.spec
    np.testing.assert_allclose(data.reward, [1, 0, 0, 1, 0])
    np.testing.assert_allclose(data.pscore, [0.5, 0.25, 0.2, 0.5, 1.0])
    assert info.describe()["context"] == ["age: dense", "city: 2 values + OOV (min count 2), dim 8"]


def test_plain_lists_2d_columns_and_positional_item_ids():
    events = {
        "emb": np.arange(6.0).reshape(3, 2),
        "a": [2, 0, 1],
        "r": [1.0, 0.0, 0.5],
        "p": [0.1, 0.2, 0.3],
    }
    table = {"f": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]}
    data, info = logged_data_from_frame(
        events,
        context_columns=["emb"],
        action_column="a",
        reward_column="r",
        pscore_column="p",
        item_table=table,
        item_id_embedding=False,
    )
    assert info.context_feature_names == ("emb[0]", "emb[1]")
    assert info.item_ids == (0, 1, 2)  # a dict item table without an id column: row positions
    np.testing.assert_array_equal(data.action, [2, 0, 1])
    np.testing.assert_allclose(data.context, events["emb"])  # no categorical column: a plain array
    np.testing.assert_allclose(data.action_context, table["f"])
    assert info.context_spec == 2 and info.item_spec == 2 and info.item_id_dim is None


def test_items_without_feature_columns_are_their_embedded_id():
    data, info = build(item_feature_columns=[])
    features = data.action_context
    assert features.dense.shape == (3, 0) and features.tables == (
        Table(ITEM_ID_FEATURE, 4, info.item_id_dim),
    )
    np.testing.assert_array_equal(features.ids[ITEM_ID_FEATURE], [1, 2, 3])
    data, info = build(item_feature_columns=[], embedding_dims={"id": 5})
    assert info.item_id_dim == 5 and data.action_context.tables[0].dim == 5


def test_encoding_is_reused_for_a_test_frame():
    _, info = build()
    test = frame(
        age=np.array([25.0, 35.0]),
        city=np.array(["Rome", "Rome"], dtype=object),  # only one of the cities
        item=np.array(["c", "a"]),
        click=np.array([0, 1]),
        p=np.array([0.5, 0.5]),
    )
    data, info2 = build(test, encoding=info)
    assert info2.context_categorical == info.context_categorical
    np.testing.assert_allclose(data.context.dense, [[25], [35]])
    np.testing.assert_array_equal(data.context.ids["city"], [2, 2])
    np.testing.assert_array_equal(data.action, [2, 0])

    # Without the encoding the same frame would get a vocabulary of its own.
    assert build(test, min_count=1)[1].context_vocabularies == {"city": ("Rome",)}

    unseen = dict(test, city=np.array(["Rome", "Paris"], dtype=object))
    with pytest.raises(
        FrameValidationError, match=r"context column 'city': row 1 is 'Paris', a value not in the encoding"
    ):
        build(unseen, encoding=info, unknown="error")
    data, _ = build(unseen, encoding=info, unknown="ignore")
    np.testing.assert_array_equal(data.context.ids["city"], [2, 0])

    with pytest.raises(ValueError, match=r"encoding: built for context_columns \['age', 'city'\]"):
        build(test, encoding=info, context_columns=["age"])


@pytest.mark.parametrize(
    "events, table, message",
    [
        (frame(p=np.array([0.5, 0.25, 0.2, 1.5, 1.0])), None,
         "pscore column 'p': row 3 is 1.5, expected a value in (0, 1]"),
        (frame(p=np.array([0.5, 0.0, 0.2, 0.5, 1.0])), None,
         "pscore column 'p': row 1 is 0.0, expected a value in (0, 1]"),
        (frame(p=np.array([0.5, 0.25, np.nan, 0.5, 1.0])), None,
         "pscore column 'p': row 2 is missing (NaN), expected a value in (0, 1]"),
        (frame(p=[0.5, 0.25, None, 0.5, 1.0]), None,
         "pscore column 'p': row 2 is missing (NaN), expected a value in (0, 1]"),
        (frame(item=np.array(["b", "c", "a", "b", "zz"])), None,
         "action column 'item': row 4 is 'zz', which is not an item id in the item table id column 'id'"),
        (frame(item=np.array(["b", None, "a", "b", "c"], dtype=object)), None,
         "action column 'item': row 1 is missing, expected an item id from the item table"),
        (frame(age=np.array([20.0, np.nan, 40.0, 50.0, 60.0])), None,
         "context column 'age': row 1 is missing (NaN), expected a finite number"),
        (frame(age=np.array([20.0, 30.0, 40.0, np.inf, 60.0])), None,
         "context column 'age': row 3 is inf, expected a finite number"),
        (frame(city=np.array([["a"], "b", "c", "d", "e"], dtype=object)), None,
         "context column 'city': row 0 is ['a'], which is not hashable"),
        (frame(click=np.array([1.0, 0.0, np.nan, 1.0, 0.0])), None,
         "reward column 'click': row 2 is missing (NaN), expected a finite number"),
        (None, items(price=np.array([1.0, np.nan, 4.0])),
         "item table column 'price': row 1 is missing (NaN), expected a finite number"),
        (None, items(id=np.array(["a", "b", "a"])),
         "item table id column 'id': item id 'a' appears at row 0 and row 2"),
        (frame(age=np.array([20.0, 30.0, 40.0])), None,
         "context column 'age': has 3 rows, expected 5 (the frame's length)"),
        (frame(p=np.array(["0.5", "x", "0.2", "0.5", "1"])), None,
         "pscore column 'p': row 1 is 'x', expected a number"),
    ],
)  # fmt: skip
def test_each_bad_input_names_column_and_row(events, table, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        build(events, table)
    assert isinstance(err.value, FrameValidationError)


def test_several_rows_and_problems_are_all_reported():
    events = frame(
        p=np.array([1.5, 0.25, 2.0, 0.5, -1.0]),
        item=np.array(["b", "c", "a", "q", "c"]),
    )
    with pytest.raises(FrameValidationError) as err:
        build(events, items(price=np.array([1.0, np.nan, 4.0])))
    problems = err.value.problems
    assert len(problems) == 3
    assert "action column 'item': row 3 is 'q'" in problems[0]
    assert (
        problems[1] == "pscore column 'p': row 0 is 1.5, expected a value in (0, 1] (and 2 more: rows 2, 4)"
    )
    assert problems[2].startswith("item table column 'price': row 1")
    assert str(err.value).startswith("3 problems in the logged data:\n- ")


def test_problems_carry_their_columns_as_input_errors():
    events = frame(p=np.array([1.5, 0.25, 0.2, 0.5, 1.0]), item=np.array(["b", "c", "a", "q", "c"]))
    with pytest.raises(InputError) as err:
        build(events)
    assert isinstance(err.value, FrameValidationError)
    assert err.value.columns == ["item", "p"] and err.value.argument == "item"
    assert err.value.message == str(err.value)
    with pytest.raises(InputError) as err:
        build(categorical="onehot")
    assert err.value.argument == "categorical"


def test_missing_columns_are_named():
    with pytest.raises(FrameValidationError, match=r"frame: missing column 'p' \(named by pscore_column\)"):
        build({k: v for k, v in frame().items() if k != "p"})
    with pytest.raises(
        FrameValidationError, match=r"frame: missing column 'height' \(named by context_columns\)"
    ):
        build(context_columns=["age", "height"])
    with pytest.raises(
        FrameValidationError, match=r"item table: missing column 'ident' \(named by item_id_column\)"
    ):
        build(item_id_column="ident", item_feature_columns=["price"])
    with pytest.raises(
        FrameValidationError, match=r"item table: missing column 'colour' \(named by item_feature_columns\)"
    ):
        build(item_feature_columns=["price", "colour"])


def test_item_id_type_mismatch_gets_a_hint():
    events = frame(item=np.array([1, 2, 0, 1, 2]))
    with pytest.raises(
        FrameValidationError,
        match=r"row 0 is 1, which is not an item id .*\(action values are int, item ids are str\)",
    ):
        build(events)


def test_a_test_log_over_another_item_table_keeps_the_training_item_ids():
    _, info = build()
    table = items(id=np.array(["c", "new", "a"]), kind=np.array(["film", "book", "book"]))
    test = frame(item=np.array(["new", "c", "a", "c", "a"]))
    with pytest.warns(UnseenCategoryWarning, match="item table id column 'id': 1 row"):
        data, again = build(test, table, encoding=info)
    np.testing.assert_array_equal(data.action, [1, 0, 2, 0, 2])  # rows of this table
    np.testing.assert_array_equal(data.action_context.ids[ITEM_ID_FEATURE], [3, 0, 1])  # training ids
    assert again.item_ids == ("c", "new", "a") and again.item_catalogue == ("a", "b", "c")
    assert again.item_spec == data.action_context.spec == info.item_spec
    assert FrameEncoding.from_dict(json.loads(json.dumps(again.to_dict()))) == again
    with pytest.warns(UnseenCategoryWarning):
        assert_same_input(again.encode_items(table), data.action_context)


def test_missing_and_rare_values_get_the_out_of_vocabulary_id():
    city = np.array(["Oslo", None, "Oslo", "Lima", np.nan], dtype=object)
    data, info = build(frame(city=city))
    assert info.context_vocabularies == {"city": ("Oslo",)}  # Lima seen once, under min_count 2
    np.testing.assert_array_equal(data.context.ids["city"], [1, 0, 1, 0, 0])
    data, info = build(frame(city=city), min_count=1)
    assert info.context_vocabularies == {"city": ("Lima", "Oslo")}
    np.testing.assert_array_equal(data.context.ids["city"], [2, 0, 2, 1, 0])
    data, info = build(min_count={"city": 3})  # per column; no city is seen 3 times
    assert info.context_categorical[0].size == 1 and not np.asarray(data.context.ids["city"]).any()
    # Item-table columns keep every value unless a mapping says otherwise.
    _, info = build(min_count=5)
    assert info.item_vocabularies == {"kind": ("book", "film")}
    _, info = build(min_count={"kind": 2})
    assert info.item_vocabularies == {"kind": ("book",)}


def test_integer_id_columns_named_categorical_become_ids_with_their_widths():
    events = frame(user=np.array([10**15 + 7, 3, 10**15 + 7, 3, 3]), age=np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    data, info = build(
        events, context_columns=["age", "user"], categorical=["user"], embedding_dims={"user": 3}
    )
    (user,) = info.context_categorical
    assert user.vocabulary == (3, 10**15 + 7)  # exact integers, not floats
    assert user.dim == 3 and data.context.tables == (Table("user", 3, 3),)
    np.testing.assert_array_equal(data.context.ids["user"], [2, 1, 2, 1, 1])
    # Read back as floats (a CSV column with a hole) the same ids are found.
    new = {"age": np.array([0.0, 0.0]), "user": np.array([3.0, np.nan])}
    with pytest.warns(UnseenCategoryWarning):
        encoded = info.encode_contexts(new)
    np.testing.assert_array_equal(encoded.ids["user"], [1, 0])
    # Without categorical= an integer column is a number.
    assert build(events, context_columns=["age", "user"])[1].context_feature_names == ("age", "user")


def test_hashed_columns_are_stable_and_need_no_vocabulary():
    ids = np.array(["u1", "u2", "u3"], dtype=object)
    # Fixed values: the same in every process and on every machine (no salted hash()).
    np.testing.assert_array_equal(stable_hash_ids(ids, 1000), [870, 422, 374])
    np.testing.assert_array_equal(stable_hash_ids(np.array([7, 123456789012]), 1000), [353, 675])
    np.testing.assert_array_equal(stable_hash_ids(np.array([7.0]), 1000), [353])  # 7, 7.0 and "7" agree
    events = frame(user=np.array(["u1", "u2", "u3", "u1", None], dtype=object))
    data, info = build(events, context_columns=["age", "user"], hash_buckets={"user": 1000})
    (user,) = info.context_categorical
    assert user.vocabulary is None and user.hash_buckets == 1000 and user.size == 1001
    np.testing.assert_array_equal(data.context.ids["user"], [870, 422, 374, 870, 0])  # missing: 0
    # Another encoding of other rows gives each value the same id; nothing is unseen.
    again, _ = build(frame(user=np.array(["u3", "u9", "u1", "u1", "u2"], dtype=object)),
                     context_columns=["age", "user"], hash_buckets={"user": 1000})  # fmt: skip
    np.testing.assert_array_equal(np.asarray(again.context.ids["user"])[[0, 2, 4]], [374, 870, 422])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        served = info.encode_contexts(
            {"age": np.zeros(2), "user": np.array(["u2", "never-seen"], dtype=object)}
        )
    assert served.ids["user"][0] == 422 and 1 <= served.ids["user"][1] <= 1000


def test_a_high_cardinality_id_column_costs_o_n_bytes_never_a_one_hot_matrix():
    n, users = 30_000, 20_000
    rng = np.random.default_rng(0)
    user = rng.integers(0, users, n)
    events = {
        "user_id": np.array([f"u{u}" for u in range(users)], dtype=object)[user],
        "user_num": user * 7,
        "age": rng.normal(size=n),
        "item": rng.choice(["a", "b", "c"], n),
        "click": rng.integers(0, 2, n),
        "p": np.full(n, 1 / 3),
    }
    data, info = build(events, context_columns=["user_id", "user_num", "age"], categorical=["user_num"])
    id_columns, dense_bytes = 2, data.context.dense.nbytes
    assert nbytes(data.context) <= 4 * n * id_columns + dense_bytes < 16 * n * id_columns + 8 * n
    sizes = {t.name: t.size for t in data.context.tables}
    distinct = len(np.unique(user))
    assert sizes["user_id"] == sizes["user_num"] == 1 + np.count_nonzero(np.bincount(user) >= 2) <= distinct
    # The ids index the vocabulary: id k of user_id is the k-th kept value, sorted.
    vocabulary = np.asarray(info.context_vocabularies["user_id"], dtype=object)
    kept = np.asarray(data.context.ids["user_id"]) > 0
    np.testing.assert_array_equal(
        vocabulary[np.asarray(data.context.ids["user_id"])[kept] - 1], events["user_id"][kept]
    )


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="categorical: expected a sequence of column names, got 'onehot'"):
        build(categorical="onehot")
    with pytest.raises(TypeError, match="context_columns: expected a sequence"):
        build(context_columns="age")
    with pytest.raises(TypeError, match="item table: expected a pandas DataFrame or a dict"):
        build(table=[1, 2, 3])


def test_pandas_dataframe_path():
    pd = pytest.importorskip("pandas")
    events = pd.DataFrame(
        {
            "age": pd.array([20, 30, 40], dtype="Int64"),
            "city": pd.Categorical(["Rome", "Oslo", "Rome"], categories=["Rome", "Oslo", "Lima"]),
            "device": ["web", "ios", "web"],
            "item": [11, 13, 12],
            "click": [1, 0, 1],
            "p": [0.5, 0.5, 0.25],
        },
        index=["e1", "e2", "e3"],
    )
    table = pd.DataFrame(
        {"price": [1.0, 2.0, 3.0], "kind": ["x", "y", "x"]}, index=pd.Index([11, 12, 13], name="id")
    )
    data, info = logged_data_from_frame(
        events,
        context_columns=["age", "city", "device"],
        action_column="item",
        reward_column="click",
        pscore_column="p",
        item_table=table,
        min_count=1,
    )
    # Declared categories keep their order (those seen at least min_count times); text is sorted.
    assert info.context_vocabularies == {"city": ("Rome", "Oslo"), "device": ("ios", "web")}
    np.testing.assert_allclose(data.context.dense, [[20], [30], [40]])
    np.testing.assert_array_equal(data.context.ids["city"], [1, 2, 1])
    np.testing.assert_array_equal(data.context.ids["device"], [2, 1, 2])
    np.testing.assert_array_equal(data.action, [0, 2, 1])  # item ids from the table's index
    assert info.item_ids == (11, 12, 13)
    np.testing.assert_array_equal(data.action_context.ids["kind"], [1, 2, 1])

    bad = events.assign(p=[0.5, 1.5, 0.25], age=pd.array([20, None, 40], dtype="Int64"))
    with pytest.raises(FrameValidationError) as err:
        logged_data_from_frame(
            bad,
            context_columns=["age"],
            action_column="item",
            reward_column="click",
            pscore_column="p",
            item_table=table.reset_index(),
            item_id_column="id",
        )
    assert err.value.problems == [
        "pscore column 'p': row 1 (index 'e2') is 1.5, expected a value in (0, 1]",
        "context column 'age': row 1 (index 'e2') is missing (NaN), expected a finite number",
    ]


# --- numbers stored as text ---------------------------------------------------------------

AGE_TEXT = np.array(["20", "30", "40", "50", "60"], dtype=object)
AGE_NA = np.array(["20", "30", "n/a", "50", "60"], dtype=object)


@pytest.mark.parametrize(
    "events, table, column, message",
    [
        (frame(age=AGE_TEXT), None, "age",
         "context column 'age': holds numbers stored as text (row 0 is '20'), "),
        (frame(age=AGE_NA), None, "age",
         "context column 'age': row 2 is 'n/a', expected a number; its other values are numbers stored as text (row 0 is '20')"),
        (frame(age=np.array([20.0, 30.0, "n/a", 50.0, 60.0], dtype=object)), None, "age",
         "context column 'age': row 2 is 'n/a', expected a number; its other values are numbers (row 0 is 20.0)"),
        (frame(age=np.array([" 2e1", "30", "x", "50", "60"])), None, "age",
         "context column 'age': row 2 is 'x', expected a number; its other values are numbers stored as text (row 0 is ' 2e1')"),
        (None, items(price=np.array(["1.0", "2.5", "4"])), "price",
         "item table column 'price': holds numbers stored as text (row 0 is '1.0')"),
    ],
)  # fmt: skip
def test_numbers_stored_as_text_are_one_error_naming_the_column(events, table, column, message):
    with pytest.raises(FrameValidationError) as err:
        build(events, table)
    assert err.value.problems == [str(err.value)] and err.value.argument == column
    assert str(err.value).startswith(message)
    assert "numeric_strings='parse'" in str(err.value) and "numeric_strings='categorical'" in str(err.value)
    assert "one-hot" not in str(err.value)


def test_text_that_is_not_numeric_stays_categorical():
    # One number among sizes is a size, not a number: the column is categorical as before.
    data, info = build(frame(city=np.array(["S", "M", "L", "10", "M"], dtype=object)), min_count=1)
    assert info.context_vocabularies == {"city": ("10", "L", "M", "S")}
    np.testing.assert_array_equal(data.context.ids["city"], [4, 3, 2, 1, 3])


def test_numeric_strings_parse_reads_numbers_and_reports_what_is_not_one():
    numeric, _ = build()
    data, info = build(frame(age=AGE_TEXT), numeric_strings="parse")
    assert_same_input(data.context, numeric.context)
    assert info.context_parsed_columns == ("age",) and info.item_parsed_columns == ()
    with pytest.raises(FrameValidationError) as err:
        build(frame(age=AGE_NA), numeric_strings={"age": "parse"})
    assert str(err.value).startswith("context column 'age': row 2 is 'n/a', expected a number")
    assert err.value.argument == "age"
    # A test frame read with the encoding parses the column again, with no option.
    test, again = build(frame(age=np.array(["25", "35", "45", "55", "65"])), encoding=info, unknown="ignore")
    np.testing.assert_allclose(test.context.dense[:, 0], [25, 35, 45, 55, 65])
    assert again == info
    assert build(encoding=info, unknown="ignore")[1].context_parsed_columns == (
        "age",
    )  # numeric, still parsed


def test_numeric_strings_categorical_embeds_the_values_on_request():
    data, info = build(frame(age=AGE_NA), numeric_strings={"age": "categorical"}, min_count=1)
    assert info.context_vocabularies["age"] == ("20", "30", "50", "60", "n/a")
    assert info.context_feature_names == ()  # no dense column left: dense is [n, 0]
    assert data.context.dense.shape == (5, 0)
    np.testing.assert_array_equal(data.context.ids["age"], [1, 2, 5, 3, 4])


def test_numeric_strings_from_a_pandas_frame():
    pd = pytest.importorskip("pandas")
    events = pd.DataFrame(frame(age=np.array(["20", "30", "n/a", "50", "60"])))
    with pytest.raises(
        FrameValidationError, match=r"^context column 'age': row 2 is 'n/a', expected a number"
    ):
        build(events)
    data, _ = build(events.assign(age=events["age"].replace("n/a", "40")), numeric_strings="parse")
    np.testing.assert_allclose(data.context.dense[:, 0], [20, 30, 40, 50, 60])


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(numeric_strings="yes"), "numeric_strings"),
        (dict(numeric_strings={"height": "parse"}), "numeric_strings"),
        (dict(numeric_strings={"age": "float"}), "numeric_strings"),
        (dict(standardize="age"), "standardize"),
        (dict(standardize=["height"]), "standardize"),
        (dict(unknown="drop"), "unknown"),
        (dict(categorical="city"), "categorical"),
        (dict(categorical=["height"]), "categorical"),
        (dict(min_count=0), "min_count"),
        (dict(min_count={"city": 0}), "min_count"),
        (dict(hash_buckets={"height": 10}), "hash_buckets"),
        (dict(hash_buckets={"city": 0}), "hash_buckets"),
        (dict(embedding_dims={"city": 2.5}), "embedding_dims"),
        (dict(embedding_dims={"age": 4}), "embedding_dims"),  # a dense column has no table
        (dict(item_feature_columns=[], item_id_embedding=False), "item_id_embedding"),
    ],
)
def test_bad_options_name_their_argument(kwargs, argument):
    with pytest.raises(InputError) as err:
        build(**kwargs)
    assert err.value.argument == argument


# --- empty tables -------------------------------------------------------------------------


def test_empty_tables_are_one_clear_error():
    empty = {k: v[:0] for k, v in frame().items()}
    with pytest.raises(FrameValidationError) as err:
        build(empty)
    assert err.value.problems == ["frame: has no rows, expected at least one logged event"]
    assert err.value.argument == "frame"
    with pytest.raises(FrameValidationError, match=r"^item table: has 0 rows, expected at least 2 items$"):
        build(table={k: v[:0] for k, v in items().items()})
    with pytest.raises(FrameValidationError, match=r"^item table: has 1 row, expected at least 2 items$"):
        build(table={k: v[:1] for k, v in items().items()}, events=frame(item=np.array(["a"] * 5)))
    _, info = build()
    with pytest.raises(
        FrameValidationError, match=r"^frame: has no rows, expected at least one row to encode"
    ):
        info.encode_contexts(empty)


def test_empty_pandas_frame_is_the_same_error():
    pd = pytest.importorskip("pandas")
    with pytest.raises(
        FrameValidationError, match=r"^frame: has no rows, expected at least one logged event$"
    ):
        build(pd.DataFrame(frame()).iloc[:0])


# --- standardisation ----------------------------------------------------------------------


def test_standardize_stores_mean_and_std_and_applies_them_to_new_frames():
    data, info = build(standardize=True)
    age_mean, age_std = 40.0, np.sqrt(200.0)  # ages 20..60: population std sqrt(200)
    assert info.context_standardization == {"age": ((age_mean,), (pytest.approx(age_std),))}
    price = np.array([1.0, 2.5, 4.0])
    assert info.item_standardization == {"price": ((2.5,), (pytest.approx(price.std()),))}
    np.testing.assert_allclose(data.context.dense[:, 0], (frame()["age"] - age_mean) / age_std, rtol=1e-6)
    np.testing.assert_array_equal(data.context.ids["city"], build()[0].context.ids["city"])  # ids untouched
    np.testing.assert_allclose(data.action_context.dense[:, 0], (price - 2.5) / price.std(), rtol=1e-6)
    # A test frame uses the training statistics, never its own.
    test = frame(age=np.array([25.0, 25.0, 25.0, 25.0, 25.0]))
    np.testing.assert_allclose(
        build(test, encoding=info, unknown="ignore")[0].context.dense[:, 0],
        (25 - age_mean) / age_std,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        info.encode_contexts(test, unknown="ignore").dense[:, 0], (25 - age_mean) / age_std, rtol=1e-6
    )


def test_standardize_named_columns_constant_columns_and_categorical_ones():
    data, info = build(standardize=["price"], table=items(price=np.array([3.0, 3.0, 3.0])))
    assert info.context_standardization == {}
    assert info.item_standardization == {"price": ((3.0,), (1.0,))}  # constant: centred only
    np.testing.assert_allclose(data.action_context.dense[:, 0], 0.0)
    np.testing.assert_allclose(data.context.dense[:, 0], frame()["age"])
    with pytest.raises(FrameValidationError, match=r"context column 'city': is categorical .* standardised"):
        build(standardize=["age", "city"])


# --- saving and serving -------------------------------------------------------------------


def rich_events():
    events = frame(
        age=AGE_TEXT,
        emb=np.arange(10.0).reshape(5, 2),
        band=np.array([b"lo", b"hi", b"lo", b"lo", b"hi"]),
    )
    events[("geo", 1)] = np.array(["x", "y", "x", "x", "y"], dtype=object)
    events[7] = np.array([1.5, 2.5, 3.5, 4.5, 5.5])
    events["user"] = np.array([5, 6, 5, 9, 6])
    events["url"] = np.array(["/a", "/b", "/a", None, "/c"], dtype=object)
    return events


def rich_build():
    """Parsed, standardised, categorical, hashed, 2-d, bytes, tuple and int column names, int ids."""
    return build(
        rich_events(),
        context_columns=["age", "city", "emb", "band", ("geo", 1), 7, "user", "url"],
        numeric_strings={"age": "parse"},
        standardize=["age", "emb", "price"],
        categorical=["user"],
        hash_buckets={"url": 16},
        embedding_dims={("geo", 1): 2},
    )


def test_encoding_to_dict_round_trips_exactly_through_json():
    _, info = rich_build()
    saved = info.to_dict()
    text = json.dumps(saved, allow_nan=False)
    back = FrameEncoding.from_dict(json.loads(text))
    assert back == info
    assert back.context_columns == ("age", "city", "emb", "band", ("geo", 1), 7, "user", "url")
    assert back.context_vocabularies["band"] == (b"hi", b"lo")
    assert back.context_vocabularies["user"] == (5, 6)
    assert [c.name for c in back.context_categorical] == ["city", "band", "geo_1", "user", "url"]
    assert back.context_categorical[2] == CategoricalColumn(("geo", 1), "geo_1", 2, ("x", "y"), None, 2)
    assert back.context_categorical[-1] == CategoricalColumn(
        "url", "url", default_embedding_dim(17), None, 16
    )
    assert back.context_spec == info.context_spec and back.item_spec == info.item_spec
    assert back.context_standardization == info.context_standardization  # floats exactly
    assert back.context_parsed_columns == ("age",) and back.item_id_column == "id"
    with pytest.raises(InputError, match=r"encoding: expected a dict written by FrameEncoding\.to_dict"):
        FrameEncoding.from_dict({"context_columns": []})
    with pytest.raises(InputError, match=r"encoding: missing keys \['item_ids'\]"):
        FrameEncoding.from_dict({k: v for k, v in saved.items() if k != "item_ids"})
    with pytest.raises(
        InputError, match=r"expected version 2, got 1: .*older towerjax.*one-hot.*train the model again"
    ):
        FrameEncoding.from_dict({**saved, "version": 1})
    odd = FrameEncoding(**{**info.__dict__, "item_ids": (1.5, object())})
    with pytest.raises(TypeError, match=r"item_ids\[1\]: <object .*cannot be saved as JSON"):
        odd.to_dict()


def test_encoding_new_frames_reproduces_the_training_features():
    data, info = rich_build()
    reloaded = FrameEncoding.from_dict(json.loads(json.dumps(info.to_dict())))
    events = rich_events()
    for encoding in (info, reloaded):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # Lima (under min_count) and the missing url get id 0, as in training.
            assert_same_input(encoding.encode_contexts(events, unknown="ignore"), data.context)
            assert_same_input(encoding.encode_items(items()), data.action_context)
        # Row by row (a serving request of one user) gives the same rows.
        one = {k: v[3:4] for k, v in events.items()}
        expected = jax.tree.map(lambda a: a[3:4], data.context)
        assert_same_input(encoding.encode_contexts(one, unknown="ignore"), expected)
    assert info.encode_contexts(events, unknown="ignore").dense.dtype == jnp.float32
    missing = {k: v for k, v in events.items() if k != "emb"}
    with pytest.raises(FrameValidationError, match=r"frame: missing column 'emb' \(a context column"):
        info.encode_contexts(missing)


def test_unseen_values_get_id_0_and_are_counted():
    _, info = build()
    new = {"age": np.array([20.0, 30.0, 40.0]), "city": np.array(["Rome", "Paris", None], dtype=object)}
    with pytest.warns(UnseenCategoryWarning, match=r"2 rows had a value not in the encoding") as record:
        context = info.encode_contexts(new)
    assert record[0].message.counts == {"city": 2} and record[0].message.n_rows == 2
    np.testing.assert_array_equal(context.ids["city"], [2, 0, 0])
    np.testing.assert_allclose(context.dense[:, 0], [20, 30, 40])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_input(info.encode_contexts(new, unknown="ignore"), context)
    with pytest.raises(
        FrameValidationError, match=r"context column 'city': row 1 is 'Paris', a value not in the encoding"
    ):
        info.encode_contexts(new, unknown="error")
    test = frame(city=np.array(["Rome", "Paris", "Oslo", "Oslo", "Rome"], dtype=object))
    with pytest.warns(UnseenCategoryWarning, match="1 row had"):
        build(test, encoding=info)


def test_items_are_encoded_by_id_and_unseen_items_get_id_0():
    data, info = build()
    assert_same_input(info.encode_items(items()), data.action_context)
    new = items(id=np.array(["c", "zz", "a"]), kind=np.array(["film", "book", "tv"]))
    with pytest.warns(UnseenCategoryWarning) as record:
        encoded = info.encode_items(new)
    assert record[0].message.counts == {"id": 1, "kind": 1} and record[0].message.n_rows == 2
    np.testing.assert_array_equal(encoded.ids[ITEM_ID_FEATURE], [3, 0, 1])
    np.testing.assert_array_equal(encoded.ids["kind"], [2, 1, 0])
    data, info = build(item_feature_columns=[])
    with pytest.warns(UnseenCategoryWarning):
        encoded = info.encode_items({"id": np.array(["c", "zz", "a"])})
    np.testing.assert_array_equal(encoded.ids[ITEM_ID_FEATURE], [3, 0, 1])
    with pytest.raises(
        FrameValidationError, match=r"item table id column 'id': row 1 is 'zz', an item id not in"
    ):
        info.encode_items({"id": np.array(["c", "zz", "a"])}, unknown="error")


# --- the exact row and value of text in a numeric column (issue 23) -----------------------

# Text in a column of numbers: every value is text (as pandas reads such a CSV column), one is
# not a number. The message names that row and value (not row 0), and counts the others.
P_TEXT = np.array(["0.5", "0.25", "0.2", "abc", "1.0"], dtype=object)
CLICK_TEXT = np.array(["1", "0", "yes", "1", "no"], dtype=object)


@pytest.mark.parametrize("numeric_strings", ["error", "parse"])
@pytest.mark.parametrize(
    "events, message",
    [
        (frame(p=P_TEXT), "pscore column 'p': row 3 is 'abc', expected a number"),
        (frame(p=[0.5, 0.25, "abc", 0.5, 1.0]), "pscore column 'p': row 2 is 'abc', expected a number"),
        (frame(click=CLICK_TEXT), "reward column 'click': row 2 is 'yes', expected a number (and 1 more: row 4)"),
        (frame(age=np.array(["20", "30", "40", "x", "60"], dtype=object)), "context column 'age': row 3 is 'x', expected a number"),
    ],
)  # fmt: skip
def test_text_in_a_numeric_column_names_its_row_and_value(events, message, numeric_strings):
    with pytest.raises(FrameValidationError) as err:
        build(events, numeric_strings=numeric_strings)
    assert str(err.value).startswith(message)
    assert "row 0" not in str(err.value).split(";")[0]


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_text_in_a_numeric_column_of_a_file_names_its_row_and_value(tmp_path, suffix):
    pd = pytest.importorskip("pandas")
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
    events = pd.concat([pd.DataFrame(frame())] * 4, ignore_index=True).astype({"p": str})
    events.loc[5, "p"], events.loc[11, "p"] = "abc", "?x"
    path = tmp_path / f"logs.{suffix}"
    events.to_csv(path, index=False) if suffix == "csv" else events.to_parquet(path)
    read = pd.read_csv(path) if suffix == "csv" else pd.read_parquet(path)
    assert not pd.api.types.is_numeric_dtype(read["p"])  # text, as a user's file gives it
    for numeric_strings in ("error", "parse"):
        with pytest.raises(FrameValidationError) as err:
            build(read, numeric_strings=numeric_strings)
        assert str(err.value) == "pscore column 'p': row 5 is 'abc', expected a number (and 1 more: row 11)"


def test_numbers_stored_as_text_in_the_reward_and_pscore_columns_are_read_as_numbers():
    # They can only be numbers: numeric_strings decides what a feature column becomes, not these.
    numeric, _ = build()
    text = frame(p=np.array(["0.5", "0.25", "0.2", "0.5", "1"]), click=np.array(["1", "0", "0", "1", "0"]))
    data, _ = build(text)
    np.testing.assert_array_equal(data.pscore, numeric.pscore)
    np.testing.assert_array_equal(data.reward, numeric.reward)
    with pytest.raises(FrameValidationError, match=r"^pscore column 'p': row 2 is missing \(NaN\)"):
        build(frame(p=np.array(["0.5", "0.25", "n/a", "0.5", "1"])))
