"""scssl._json.jsonable: the one conversion to plain JSON values."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from scssl._json import jsonable


def test_plain_values_from_numpy_tuples_paths_and_non_finite_floats():
    value = {
        1: (np.int64(3), np.float32(0.5), np.bool_(True)),
        "array": np.arange(3),
        "nested": {"path": Path("a/b"), "nan": float("nan"), "inf": np.float64(np.inf)},
        "plain": [None, "x", 2, 1.5, False],
    }
    out = jsonable(value)
    assert out == {
        "1": [3, 0.5, True],
        "array": [0, 1, 2],
        "nested": {"path": "a/b", "nan": None, "inf": None},
        "plain": [None, "x", 2, 1.5, False],
    }
    assert type(out["1"][0]) is int and type(out["1"][2]) is bool
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert math.isnan(value["nested"]["nan"])  # the input is not modified


def test_unknown_types_are_refused_clearly():
    with pytest.raises(TypeError, match="A set cannot be written as JSON"):
        jsonable({"ok": 1, "bad": {1, 2}})
    with pytest.raises(TypeError, match="object"):
        jsonable([object()])
