"""logged_data_from_frame: dict-of-arrays and DataFrame input, one-hot encoding, and errors."""

import json
import re
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from towerjax import LoggedData
from towerjax.adapter import (
    FrameEncoding,
    FrameValidationError,
    UnseenCategoryWarning,
    logged_data_from_frame,
)
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


# --- numbers stored as text ---------------------------------------------------------------

AGE_TEXT = np.array(["20", "30", "40", "50", "60"], dtype=object)
AGE_NA = np.array(["20", "30", "n/a", "50", "60"], dtype=object)


@pytest.mark.parametrize(
    "events, table, column, message",
    [
        (frame(age=AGE_TEXT), None, "age",
         "context column 'age': holds numbers stored as text (row 0 is '20'), "),
        (frame(age=AGE_NA), None, "age",
         "context column 'age': holds numbers stored as text (row 0 is '20'; row 2 is 'n/a', not a number)"),
        (frame(age=np.array([20.0, 30.0, "n/a", 50.0, 60.0], dtype=object)), None, "age",
         "context column 'age': holds numbers mixed with text (row 0 is 20.0; row 2 is 'n/a', not a number)"),
        (frame(age=np.array([" 2e1", "30", "x", "50", "60"])), None, "age",
         "context column 'age': holds numbers stored as text (row 0 is ' 2e1'; row 2 is 'x', not a number)"),
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


def test_text_that_is_not_numeric_stays_categorical():
    # One number among sizes is a size, not a number: the column is one-hot as before.
    data, info = build(frame(city=np.array(["S", "M", "L", "10", "M"], dtype=object)))
    assert info.context_categories == {"city": ("10", "L", "M", "S")}
    assert data.context.shape == (5, 5)


def test_numeric_strings_parse_reads_numbers_and_reports_what_is_not_one():
    numeric, _ = build()
    data, info = build(frame(age=AGE_TEXT), numeric_strings="parse")
    np.testing.assert_array_equal(data.context, numeric.context)
    assert info.context_parsed_columns == ("age",) and info.item_parsed_columns == ()
    with pytest.raises(FrameValidationError) as err:
        build(frame(age=AGE_NA), numeric_strings={"age": "parse"})
    assert str(err.value).startswith("context column 'age': row 2 is 'n/a', expected a number")
    assert err.value.argument == "age"
    # A test frame read with the encoding parses the column again, with no option.
    test, again = build(frame(age=np.array(["25", "35", "45", "55", "65"])), encoding=info)
    np.testing.assert_allclose(test.context[:, 0], [25, 35, 45, 55, 65])
    assert again == info
    assert build(encoding=info)[1].context_parsed_columns == ("age",)  # numeric here, still parsed


def test_numeric_strings_categorical_one_hot_encodes_on_request():
    data, info = build(frame(age=AGE_NA), numeric_strings={"age": "categorical"})
    assert info.context_categories["age"] == ("20", "30", "50", "60", "n/a")
    assert info.context_feature_names[:2] == ("age=20", "age=30")
    np.testing.assert_allclose(data.context[2, :5], [0, 0, 0, 0, 1])


def test_numeric_strings_from_a_pandas_frame():
    pd = pytest.importorskip("pandas")
    events = pd.DataFrame(frame(age=np.array(["20", "30", "n/a", "50", "60"])))
    with pytest.raises(FrameValidationError, match=r"^context column 'age': holds numbers stored as text"):
        build(events)
    data, _ = build(events.assign(age=events["age"].replace("n/a", "40")), numeric_strings="parse")
    np.testing.assert_allclose(data.context[:, 0], [20, 30, 40, 50, 60])


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(numeric_strings="yes"), "numeric_strings"),
        (dict(numeric_strings={"height": "parse"}), "numeric_strings"),
        (dict(numeric_strings={"age": "float"}), "numeric_strings"),
        (dict(standardize="age"), "standardize"),
        (dict(standardize=["height"]), "standardize"),
        (dict(unknown="drop"), "unknown"),
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
    np.testing.assert_allclose(data.context[:, 0], (frame()["age"] - age_mean) / age_std, rtol=1e-6)
    np.testing.assert_allclose(data.context[:, 1:], build()[0].context[:, 1:])  # one-hots untouched
    np.testing.assert_allclose(data.action_context[:, 0], (price - 2.5) / price.std(), rtol=1e-6)
    # A test frame uses the training statistics, never its own.
    test = frame(age=np.array([25.0, 25.0, 25.0, 25.0, 25.0]))
    np.testing.assert_allclose(
        build(test, encoding=info)[0].context[:, 0], (25 - age_mean) / age_std, rtol=1e-6
    )
    np.testing.assert_allclose(info.encode_contexts(test)[:, 0], (25 - age_mean) / age_std, rtol=1e-6)


def test_standardize_named_columns_constant_columns_and_categorical_ones():
    data, info = build(standardize=["price"], table=items(price=np.array([3.0, 3.0, 3.0])))
    assert info.context_standardization == {}
    assert info.item_standardization == {"price": ((3.0,), (1.0,))}  # constant: centred only
    np.testing.assert_allclose(data.action_context[:, 0], 0.0)
    np.testing.assert_allclose(data.context[:, 0], frame()["age"])
    with pytest.raises(FrameValidationError, match=r"context column 'city': is categorical .* standardised"):
        build(standardize=["age", "city"])


# --- saving and serving -------------------------------------------------------------------


def rich_build():
    """Parsed, standardised, categorical, 2-d, bytes, tuple and int column names, int categories."""
    events = frame(
        age=AGE_TEXT,
        emb=np.arange(10.0).reshape(5, 2),
        band=np.array([b"lo", b"hi", b"lo", b"lo", b"hi"]),
    )
    events[("geo", 1)] = np.array(["x", "y", "x", "x", "y"], dtype=object)
    events[7] = np.array([1.5, 2.5, 3.5, 4.5, 5.5])
    return build(
        events,
        context_columns=["age", "city", "emb", "band", ("geo", 1), 7],
        numeric_strings={"age": "parse"},
        standardize=["age", "emb", "price"],
    )


def test_encoding_to_dict_round_trips_exactly_through_json():
    _, info = rich_build()
    saved = info.to_dict()
    text = json.dumps(saved, allow_nan=False)
    back = FrameEncoding.from_dict(json.loads(text))
    assert back == info
    assert back.context_columns == ("age", "city", "emb", "band", ("geo", 1), 7)
    assert back.context_categories["band"] == (b"hi", b"lo")
    assert back.context_standardization == info.context_standardization  # floats exactly
    assert back.context_parsed_columns == ("age",) and back.item_id_column == "id"
    with pytest.raises(InputError, match=r"encoding: expected a dict written by FrameEncoding\.to_dict"):
        FrameEncoding.from_dict({"context_columns": []})
    with pytest.raises(InputError, match=r"encoding: missing keys \['item_ids'\]"):
        FrameEncoding.from_dict({k: v for k, v in saved.items() if k != "item_ids"})
    odd = FrameEncoding(**{**info.__dict__, "item_ids": (1.5, object())})
    with pytest.raises(TypeError, match=r"item_ids\[1\]: <object .*cannot be saved as JSON"):
        odd.to_dict()


def test_encoding_new_frames_reproduces_the_training_features():
    data, info = rich_build()
    reloaded = FrameEncoding.from_dict(json.loads(json.dumps(info.to_dict())))
    events = frame(
        age=AGE_TEXT, emb=np.arange(10.0).reshape(5, 2), band=np.array([b"lo", b"hi", b"lo", b"lo", b"hi"])
    )
    events[("geo", 1)] = np.array(["x", "y", "x", "x", "y"], dtype=object)
    events[7] = np.array([1.5, 2.5, 3.5, 4.5, 5.5])
    for encoding in (info, reloaded):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(encoding.encode_contexts(events), data.context)
            np.testing.assert_array_equal(encoding.encode_items(items()), data.action_context)
        # Row by row (a serving request of one user) gives the same rows.
        one = {k: v[3:4] for k, v in events.items()}
        np.testing.assert_array_equal(encoding.encode_contexts(one), data.context[3:4])
    assert info.encode_contexts(events).dtype == np.float32
    missing = {k: v for k, v in events.items() if k != "emb"}
    with pytest.raises(FrameValidationError, match=r"frame: missing column 'emb' \(a context column"):
        info.encode_contexts(missing)


def test_unseen_categories_encode_as_zeros_and_are_counted():
    _, info = build()
    new = {"age": np.array([20.0, 30.0, 40.0]), "city": np.array(["Rome", "Paris", "Kyiv"], dtype=object)}
    with pytest.warns(UnseenCategoryWarning, match=r"2 rows had a category not in the encoding") as record:
        context = info.encode_contexts(new)
    assert record[0].message.counts == {"city": 2} and record[0].message.n_rows == 2
    np.testing.assert_array_equal(context, [[20, 0, 0, 1], [30, 0, 0, 0], [40, 0, 0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(info.encode_contexts(new, unknown="ignore"), context)
    with pytest.raises(
        FrameValidationError, match=r"context column 'city': row 1 is 'Paris', a category not"
    ):
        info.encode_contexts(new, unknown="error")
    test = frame(city=np.array(["Rome", "Paris", "Oslo", "Oslo", "Rome"], dtype=object))
    with pytest.warns(UnseenCategoryWarning, match="1 row had"):
        build(test, encoding=info, unknown="warn")


def test_identity_items_are_encoded_by_id():
    data, info = build(item_feature_columns=[])
    np.testing.assert_array_equal(info.encode_items(items()), data.action_context)
    with pytest.warns(UnseenCategoryWarning) as record:
        encoded = info.encode_items({"id": np.array(["c", "zz", "a"])})
    assert record[0].message.counts == {"id": 1}
    np.testing.assert_array_equal(encoded, [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
