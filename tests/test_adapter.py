"""logged_data_from_frame: dict-of-arrays and DataFrame input, one-hot encoding, and errors."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from towerjax import LoggedData
from towerjax.adapter import FrameEncoding, FrameValidationError, logged_data_from_frame
from towerjax.checks import InputError


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


def test_dict_of_arrays_round_trip_into_logged_data():
    data, info = build()
    assert isinstance(data, LoggedData) and isinstance(info, FrameEncoding)
    assert data.n_rounds == 5 and data.n_actions == 3
    # Action ids map to rows of the item table: a -> 0, b -> 1, c -> 2.
    np.testing.assert_array_equal(data.action, [1, 2, 0, 1, 2])
    assert data.action.dtype == jnp.int32
    assert info.item_ids == ("a", "b", "c")
    # Context: numeric age, then city one-hot in sorted order (Lima, Oslo, Rome).
    assert info.context_feature_names == ("age", "city=Lima", "city=Oslo", "city=Rome")
    assert info.context_categories == {"city": ("Lima", "Oslo", "Rome")}
    np.testing.assert_allclose(
        data.context,
        [[20, 0, 1, 0], [30, 0, 0, 1], [40, 0, 1, 0], [50, 1, 0, 0], [60, 0, 0, 1]],
    )
    # Item features: every non-id column; kind one-hot.
    assert info.item_feature_columns == ("price", "kind")
    assert info.item_feature_names == ("price", "kind=book", "kind=film")
    np.testing.assert_allclose(data.action_context, [[1.0, 1, 0], [2.5, 0, 1], [4.0, 1, 0]])
    np.testing.assert_allclose(data.reward, [1, 0, 0, 1, 0])
    np.testing.assert_allclose(data.pscore, [0.5, 0.25, 0.2, 0.5, 1.0])


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
    )
    assert info.context_feature_names == ("emb[0]", "emb[1]")
    assert info.item_ids == (0, 1, 2)  # a dict item table without an id column: row positions
    np.testing.assert_array_equal(data.action, [2, 0, 1])
    np.testing.assert_allclose(data.context, events["emb"])
    np.testing.assert_allclose(data.action_context, table["f"])


def test_no_item_features_means_item_identity():
    data, info = build(item_feature_columns=[])
    np.testing.assert_array_equal(data.action_context, np.eye(3))
    assert info.item_feature_names == ("item='a'", "item='b'", "item='c'")


def test_encoding_is_reused_for_a_test_frame():
    _, info = build()
    test = frame(
        age=np.array([25.0, 35.0]),
        city=np.array(["Rome", "Rome"], dtype=object),  # only one of the three cities
        item=np.array(["c", "a"]),
        click=np.array([0, 1]),
        p=np.array([0.5, 0.5]),
    )
    data, info2 = build(test, encoding=info)
    assert info2.context_feature_names == info.context_feature_names
    np.testing.assert_allclose(data.context, [[25, 0, 0, 1], [35, 0, 0, 1]])
    np.testing.assert_array_equal(data.action, [2, 0])

    # Without the encoding the same frame would get a single city column.
    assert build(test)[1].context_feature_names == ("age", "city=Rome")

    unseen = dict(test, city=np.array(["Rome", "Paris"], dtype=object))
    with pytest.raises(
        FrameValidationError, match=r"context column 'city': row 1 is 'Paris', a category not in the encoding"
    ):
        build(unseen, encoding=info)
    data, _ = build(unseen, encoding=info, unknown="ignore")
    np.testing.assert_allclose(data.context[1], [35, 0, 0, 0])

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
        (frame(city=np.array(["Oslo", None, "Oslo", "Lima", "Rome"], dtype=object)), None,
         "context column 'city': row 1 is missing, expected a category"),
        (frame(click=np.array([1.0, 0.0, np.nan, 1.0, 0.0])), None,
         "reward column 'click': row 2 is missing (NaN), expected a finite number"),
        (None, items(price=np.array([1.0, np.nan, 4.0])),
         "item table column 'price': row 1 is missing (NaN), expected a finite number"),
        (None, items(id=np.array(["a", "b", "a"])),
         "item table id column 'id': item id 'a' appears at row 0 and row 2"),
        (frame(age=np.array([20.0, 30.0, 40.0])), None,
         "context column 'age': has 3 rows, expected 5 (the frame's length)"),
        (frame(p=np.array(["0.5", "x", "0.2", "0.5", "1"])), None,
         "pscore column 'p': row 0 is '0.5', expected a number"),
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
        build(categorical="ordinal")
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


def test_categorical_error_mode_and_bad_arguments():
    with pytest.raises(
        FrameValidationError, match=r"context column 'city': is categorical .*categorical='onehot'"
    ):
        build(categorical="error")
    with pytest.raises(ValueError, match="categorical: expected 'onehot' or 'error'"):
        build(categorical="ordinal")
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
            "device": ["ios", "web", "web"],
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
    )
    # Declared categories keep their order, unused ones included; strings are sorted.
    assert info.context_feature_names == (
        "age",
        "city=Rome",
        "city=Oslo",
        "city=Lima",
        "device=ios",
        "device=web",
    )
    np.testing.assert_allclose(data.context, [[20, 1, 0, 0, 1, 0], [30, 0, 1, 0, 0, 1], [40, 1, 0, 0, 0, 1]])
    np.testing.assert_array_equal(data.action, [0, 2, 1])  # item ids from the table's index
    np.testing.assert_allclose(data.action_context, [[1, 1, 0], [2, 0, 1], [3, 1, 0]])

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
