"""Plain JSON values from the results and settings scssl writes (benchmark results, model cards)."""

from __future__ import annotations

import math
from pathlib import PurePath

import numpy as np


def jsonable(value):
    """``value`` with only JSON types: dicts (string keys), lists, str, int, float, bool, None.

    Tuples become lists, numpy scalars and arrays Python values and lists, paths strings, and
    non-finite floats (NaN, infinity) ``None``, which JSON cannot hold.

    Raises
    ------
    TypeError
        For any other type, naming it and the value.

    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(
        f"A {type(value).__name__} cannot be written as JSON: {value!r}. Give plain values "
        "(str, numbers, bool, None, lists, dicts, numpy values or paths)."
    )
