"""scssl's own model files: weights plus plain attributes, readable with ``weights_only=True``.

scvi-tools saves a model as ``model.pt`` holding the state dict, the gene names and the model's
attributes (registry, constructor parameters, training history), pickled as they are: numpy
object arrays and pandas DataFrames, which only an unrestricted unpickler can rebuild. scssl
writes the same three entries with every attribute encoded as plain containers, strings and
numbers (tagged so that arrays and tables come back exactly), so the file loads with
``torch.load(weights_only=True)`` and scvi-hub still finds its registry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ._safe_load import (
    UnsafeCheckpointError,
    _allowed,
    load_torch_weights,
    pickle_globals,
    pickled_strings,
)

#: Version of the attribute encoding; files without it were written by scvi-tools' pickler.
MODEL_FILE_FORMAT = 2
_ARRAY, _TABLE = "__ndarray__", "__dataframe__"


def encode_attributes(value, where: str = "attributes"):
    """Plain containers, strings and numbers for ``value``; arrays and tables tagged."""
    if isinstance(value, dict):
        return {str(k): encode_attributes(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [encode_attributes(v, where) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, np.ndarray):
        return {
            _ARRAY: value.tolist(),
            "dtype": value.dtype.str if value.dtype.kind != "O" else "O",
        }
    if isinstance(value, pd.DataFrame):
        return {
            _TABLE: {str(c): encode_attributes(value[c].to_numpy()) for c in value.columns},
            "index": encode_attributes(value.index.to_numpy()),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool | torch.Tensor):
        return value
    raise TypeError(
        f"{where} is a {type(value).__name__}, which an scssl model file cannot hold; model "
        "attributes must be plain values, arrays or tables."
    )


def decode_attributes(value):
    """Inverse of :func:`encode_attributes`."""
    if isinstance(value, dict):
        if _ARRAY in value:
            dtype = value["dtype"]
            return np.array(value[_ARRAY], dtype=object if dtype == "O" else np.dtype(dtype))
        if _TABLE in value:
            columns = {c: decode_attributes(v) for c, v in value[_TABLE].items()}
            return pd.DataFrame(columns, index=decode_attributes(value["index"]))
        return {k: decode_attributes(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [decode_attributes(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def write_model_file(path: str | Path, state_dict: dict, var_names, attributes: dict) -> None:
    """Write ``model.pt``: state dict, gene names and encoded attributes."""
    torch.save(
        {
            "model_state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
            "var_names": encode_attributes(var_names),
            "attr_dict": encode_attributes(attributes),
            "scssl_model_file": MODEL_FILE_FORMAT,
        },
        str(path),
    )


#: Globals that scvi-tools' pickled model files ask for (pandas tables, numpy arrays, plain
#: containers); a file asking for anything else is reported as it is.
_SCVI_PICKLE_PREFIXES = (
    "pandas._libs.internals.",
    "pandas._libs.tslibs.",
    "pandas.core.frame.",
    "pandas.core.series.",
    "pandas.core.indexes.",
    "pandas.core.arrays.",
    "pandas.core.dtypes.",
    "pandas.core.internals.",
    "numpy.core.multiarray.",
    "numpy._core.multiarray.",
    "numpy.dtypes.",
)
_SCVI_PICKLE_NAMES = {
    "numpy.dtype",
    "numpy.ndarray",
    "collections.defaultdict",
    "collections.OrderedDict",
    *(
        f"{module}.{name}"
        for module in ("__builtin__", "builtins")
        for name in ("bytes", "bytearray", "dict", "list", "set", "frozenset", "slice", "tuple")
    ),
}


def _pickled_model_name(path: Path) -> str | None:
    """The class of a model file pickled by scvi-tools, if it asks for nothing else.

    The file is only scanned: its ``model_name`` registry entry is read from the pickle's
    strings, and every global it would import must be one scvi-tools' files use.
    """
    requested = [g for g in pickle_globals(path) if not _allowed(g)]
    if not requested or not all(
        g in _SCVI_PICKLE_NAMES or g.startswith(_SCVI_PICKLE_PREFIXES) for g in requested
    ):
        return None
    strings = pickled_strings(path)
    for position, value in enumerate(strings[:-1]):
        if value == "model_name":
            return strings[position + 1]
    return None


def read_model_file(path: str | Path) -> tuple[dict, dict]:
    """State dict and decoded attributes of a ``model.pt`` written by :func:`write_model_file`.

    Raises
    ------
    FileNotFoundError
        When there is no such file.
    scssl.checkpoints.UnsafeCheckpointError
        For a file that would run code when loaded (e.g. a model saved by scvi-tools or by
        scssl 0.1 through scvi-tools' pickler, or a tampered file).
    ValueError
        For a truncated or unreadable file, or one that is not a model file.

    """
    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise FileNotFoundError(
            f"{path} does not exist: {path.parent} holds no saved scssl model (save one with "
            "model.save(dir_path))."
        )
    try:
        content = load_torch_weights(path)
    except UnsafeCheckpointError as error:
        name = _pickled_model_name(path)
        if name is None:
            raise
        raise UnsafeCheckpointError(
            f"Refused to load {path}: it holds a {name} saved through scvi-tools' pickler "
            f"(scvi-tools, or scssl before model files became weights-only), whose attributes "
            "only an unrestricted unpickler, one that can run code from the file, would "
            "rebuild. scssl never runs code from a model file. "
            + (
                f"Load a scvi-tools model with scvi.model.{name}.load(...)."
                if not name.startswith("SSL")
                else "Save the model again with this version of scssl (model.save), from a "
                "source you trust."
            )
        ) from error
    missing = [k for k in ("model_state_dict", "attr_dict") if k not in content]
    if missing:
        raise ValueError(
            f"{path} is not an scssl model file: it lacks {missing} (keys: {list(content)[:8]}). "
            "Save models with model.save(dir_path); published checkpoints load with "
            "from_ssl_in_scg."
        )
    state, attributes = content["model_state_dict"], content["attr_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{path} is not an scssl model file: its weights are not tensors. Save models with "
            "model.save(dir_path)."
        )
    try:
        attributes = decode_attributes(attributes) if isinstance(attributes, dict) else None
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(
            f"{path}: the model's attributes cannot be decoded ({error}); the file is damaged "
            "or was written by another scssl version."
        ) from error
    registry = (attributes or {}).get("registry_")
    if (
        not isinstance(registry, dict)
        or not isinstance(registry.get("setup_args"), dict)
        or not isinstance((attributes or {}).get("gene_vocabulary_"), dict)
    ):
        raise ValueError(
            f"{path} is not an scssl model file: it holds no scvi-tools registry or gene "
            "vocabulary. Save the model with model.save(dir_path)."
        )
    return state, attributes
