"""EncodingOptions: one value for how tables are encoded; the same encoding whether given as
``options=`` or as keywords; bad values name their field; both at once is an error."""

import dataclasses
import json

import jax
import numpy as np
import pandas as pd
import pytest

import towerjax
from towerjax.checks import InputError
from towerjax.tables import (
    CONTEXT_MIN_COUNT,
    EncodingOptions,
    is_dataframe,
    is_missing,
    logged_data_from_frame,
)


def frame():
    return {
        "age": np.array([20.0, 30.0, 40.0, 50.0, 60.0]),
        "user": np.array([7, 8, 7, 9, 7]),
        "city": np.array(["Oslo", "Rome", "Oslo", "Lima", "Rome"], dtype=object),
        "score": np.array(["1.5", "2", "n/a", "4", "5"], dtype=object),
        "item": np.array(["b", "c", "a", "b", "c"]),
        "click": np.array([1, 0, 0, 1, 0]),
        "p": np.array([0.5, 0.25, 0.2, 0.5, 1.0]),
    }


ITEMS = {"id": np.array(["a", "b", "c"]), "price": np.array([1.0, 2.5, 4.0])}
ROLES = dict(
    context_columns=["age", "user", "city", "score"],
    action_column="item",
    reward_column="click",
    pscore_column="p",
    item_table=ITEMS,
    item_id_column="id",
)
FIELDS = dict(
    categorical=["user"],
    min_count={"user": 1, "city": 2},
    hash_buckets={"city": 11},
    embedding_dims={"user": 3, "id": 5},
    item_id_embedding=True,
    numeric_strings={"score": "categorical"},
    standardize=["age", "price"],
)


def test_fields_round_trip_and_lists_become_tuples():
    options = EncodingOptions(**FIELDS)
    fields = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    assert EncodingOptions(**fields) == options
    assert options.categorical == ("user",) and options.standardize == ("age", "price")
    assert options.min_count == {"user": 1, "city": 2} and options.hash_buckets == {"city": 11}
    assert EncodingOptions() == EncodingOptions(min_count=CONTEXT_MIN_COUNT, standardize=False)
    assert dataclasses.replace(options, standardize=True).standardize is True
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.min_count = 3


def test_options_are_copies_of_the_callers_mappings():
    dims = {"user": 3}
    options = EncodingOptions(embedding_dims=dims)
    dims["user"] = 99
    assert options.embedding_dims == {"user": 3}


def test_options_value_and_keywords_build_the_same_data_and_encoding():
    by_keywords, encoding_k = logged_data_from_frame(frame(), **ROLES, **FIELDS)
    by_value, encoding_v = logged_data_from_frame(frame(), **ROLES, options=EncodingOptions(**FIELDS))
    assert json.dumps(encoding_k.to_dict()) == json.dumps(encoding_v.to_dict())
    for a, b in zip(jax.tree.leaves(by_keywords), jax.tree.leaves(by_value), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert encoding_v.context_categorical[1].hash_buckets == 11
    assert encoding_v.item_spec.tables[0].dim == 5


@pytest.mark.parametrize(
    "fields, field",
    [
        (dict(categorical="user"), "categorical"),
        (dict(categorical=7), "categorical"),
        (dict(min_count=0), "min_count"),
        (dict(min_count=True), "min_count"),
        (dict(min_count={"user": 1.5}), "min_count"),
        (dict(hash_buckets=[("city", 3)]), "hash_buckets"),
        (dict(hash_buckets={"city": 0}), "hash_buckets"),
        (dict(embedding_dims={"user": -1}), "embedding_dims"),
        (dict(item_id_embedding="no"), "item_id_embedding"),
        (dict(numeric_strings="float"), "numeric_strings"),
        (dict(numeric_strings={"score": "float"}), "numeric_strings"),
        (dict(standardize="age"), "standardize"),
    ],
)
def test_bad_values_name_their_field_when_the_options_are_made(fields, field):
    with pytest.raises(InputError) as err:
        EncodingOptions(**fields)
    assert err.value.argument == field
    with pytest.raises(InputError) as err:  # the same through the keywords
        logged_data_from_frame(frame(), **ROLES, **fields)
    assert err.value.argument == field


@pytest.mark.parametrize(
    "field", ["categorical", "standardize", "min_count", "hash_buckets", "embedding_dims"]
)
def test_columns_that_are_not_features_name_their_field(field):
    value = ["height"] if field in ("categorical", "standardize") else {"height": 2}
    options = EncodingOptions(**{field: value})
    with pytest.raises(InputError, match=rf"^{field}: names 'height', which is not a feature column") as err:
        options.check_columns(["age", "city"])
    assert err.value.argument == field
    with pytest.raises(InputError) as err:
        logged_data_from_frame(frame(), **ROLES, options=options)
    assert err.value.argument == field


def test_options_and_option_keywords_together_are_an_error():
    with pytest.raises(
        InputError, match=r"options: given with the encoding options \['standardize'\]"
    ) as err:
        logged_data_from_frame(frame(), **ROLES, options=EncodingOptions(), standardize=True)
    assert err.value.argument == "options"
    with pytest.raises(InputError, match="options: expected an EncodingOptions, got dict"):
        logged_data_from_frame(frame(), **ROLES, options={"standardize": True})
    with pytest.raises(TypeError, match="unexpected keyword argument 'standardise'"):
        logged_data_from_frame(frame(), **ROLES, standardise=True)


def test_the_public_api_lists_the_options_and_the_table_tests():
    assert towerjax.EncodingOptions is EncodingOptions
    assert is_dataframe(pd.DataFrame({"a": [1]})) and not is_dataframe({"a": [1]})
    assert all(is_missing(v) for v in (None, float("nan"), np.float32("nan"), pd.NA, pd.NaT))
    assert not any(is_missing(v) for v in (0, "", "n/a", 0.0))
