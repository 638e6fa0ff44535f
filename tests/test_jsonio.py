"""Strict JSON: NaN and inf become null; numpy and JAX values become plain numbers."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from towerjax import jsonio


def test_non_finite_values_become_null_and_arrays_lists():
    text = jsonio.dumps(
        {"a": float("nan"), "b": [1.0, float("inf")], "c": np.array([0.5, np.nan]), "d": jnp.float32(2.0),
         "e": (1, 2), "f": np.int64(3), "g": None, "h": True}
    )  # fmt: skip
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "a": None, "b": [1.0, None], "c": [0.5, None], "d": 2.0, "e": [1, 2], "f": 3, "g": None, "h": True
    }  # fmt: skip


def test_unknown_objects_are_an_error_not_a_corrupt_file():
    with pytest.raises(TypeError):
        jsonio.dumps({"x": object()})
