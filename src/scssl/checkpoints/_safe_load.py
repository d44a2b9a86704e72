"""Load weight files without ever running code from them.

A ``.ckpt``/``.pt`` file is a pickle. Unpickling an untrusted pickle can run arbitrary code, so
scssl reads such files only through :func:`torch.load` with ``weights_only=True`` (an unpickler
that rebuilds tensors and plain containers and refuses anything else) or through safetensors
(no pickle at all).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import torch

# Plain numpy values that Lightning checkpoints may hold (e.g. a numpy scalar in a callback
# state). Rebuilding them cannot run code: they only reconstruct numbers and dtypes.
_SAFE_NUMPY_GLOBALS: list = [np.dtype, np.ndarray]
for _module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
    try:
        _module = __import__(_module_name, fromlist=["scalar", "_reconstruct"])
    except ImportError:  # pragma: no cover - depends on the numpy version
        continue
    _SAFE_NUMPY_GLOBALS += [_module.scalar, _module._reconstruct]
    break
_SAFE_NUMPY_GLOBALS += [
    type(np.dtype(name))
    for name in ("float16", "float32", "float64", "int32", "int64", "bool", "uint8", "int8")
]

# Classes Lightning stores by reference in ``hyper_parameters`` (e.g. ``activation=nn.SELU``);
# naming a class does not run code, and these classes do nothing harmful when constructed.
_SAFE_TORCH_GLOBALS: list = [
    torch.nn.SELU,
    torch.nn.ReLU,
    torch.nn.GELU,
    torch.nn.Sigmoid,
    torch.nn.Softplus,
    torch.nn.Identity,
    torch.optim.AdamW,
    torch.optim.Adam,
    torch.optim.SGD,
    torch.optim.lr_scheduler.StepLR,
]


class UnsafeCheckpointError(ValueError):
    """A weight file would need to run code (pickled objects other than tensors) to load."""


def _pickle_streams(path: Path) -> tuple[list[bytes], bool] | None:
    """The pickled bytes of a file and whether they are a :func:`torch.save` zip's streams.

    ``None`` when the file cannot be read.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith(".pkl")]
                return [archive.read(n) for n in names], True
        return [path.read_bytes()], False
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None


def _scan_pickles(path: Path) -> tuple[list[str], list[str], bool]:
    """Globals and strings the pickles of ``path`` name, and whether they parse.

    The opcodes are only scanned (:mod:`pickletools`), never executed. A plain file may hold
    several pickles one after the other (the legacy :func:`torch.save` format, followed by raw
    tensor bytes): they are scanned in turn, and the file parses when its first pickle does.
    """
    read = _pickle_streams(path)
    if read is None:
        return [], [], False
    streams, zipped = read
    found: list[str] = []
    strings: list[str] = []
    complete = bool(streams)
    for data in streams:
        buffer = io.BytesIO(data)
        first = True
        while buffer.tell() < len(data):
            start = len(strings)
            try:
                for opcode, arg, _ in pickletools.genops(buffer):
                    if opcode.name in (
                        "SHORT_BINUNICODE",
                        "BINUNICODE",
                        "UNICODE",
                        "BINUNICODE8",
                    ):
                        strings.append(str(arg))
                    elif opcode.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) - start >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
            except Exception:  # a damaged stream, or raw bytes after the pickles
                if first or zipped:
                    complete = False
                break
            first = False
            if zipped:
                break
    return sorted(set(found)), strings, complete


def pickle_globals(path: str | Path) -> list[str]:
    """The ``module.name`` references a pickle-based file would import when unpickled.

    The pickle opcodes are only scanned (:mod:`pickletools`), never executed. Works on the zip
    format of :func:`torch.save` and on plain pickle files.
    """
    return _scan_pickles(Path(path))[0]


def pickled_strings(path: str | Path) -> list[str]:
    """The strings in a pickle-based file, in order (scanned, never executed)."""
    return _scan_pickles(Path(path))[1]


def _allowed(name: str) -> bool:
    """Whether torch's weights-only unpickler (or our allowlist) accepts a global."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - private torch API
        allowed = set()
    ours = {f"{g.__module__}.{g.__qualname__}" for g in _SAFE_NUMPY_GLOBALS + _SAFE_TORCH_GLOBALS}
    storage = name.startswith("torch.") and name.endswith("Storage")
    return name in allowed or name in ours or storage or name.startswith("torch._utils._rebuild")


def _reason(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    detail = next((line for line in lines if "Unsupported" in line or "Can only" in line), None)
    return detail or "objects torch's weights-only loader does not accept"


def load_torch_weights(path: str | Path) -> dict:
    """Read a ``torch.save`` file (e.g. a Lightning ``.ckpt``) with ``weights_only=True``.

    Nothing in the file is executed. Files that hold pickled objects other than tensors, plain
    containers and numbers are refused.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    UnsafeCheckpointError
        When loading the file would require running code from it; the message names the
        Python objects the file asks for.

    """
    path = Path(path)
    _check_file(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    try:
        with torch.serialization.safe_globals(_SAFE_NUMPY_GLOBALS + _SAFE_TORCH_GLOBALS):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found, _, complete = _scan_pickles(path)
        requested = [g for g in found if not _allowed(g)]
        if not requested and not complete:
            raise ValueError(_damaged(path, "its pickle stream is malformed")) from error
        raise UnsafeCheckpointError(
            f"Refused to load {path}: it contains pickled Python objects beyond tensors and "
            f"plain containers ({', '.join(requested[:8]) or _reason(error)}), which only an "
            "unrestricted unpickler, one that can run code from the file, would rebuild. "
            "scssl loads checkpoints with torch.load(weights_only=True) and never executes code "
            "from a downloaded file. If the file is not what you expected, delete it; if you "
            "made it yourself, save only tensors (model.state_dict()) or use safetensors."
        ) from error
    except Exception as error:  # truncated zip, wrong format, unreadable storage ...
        raise ValueError(_damaged(path, f"{type(error).__name__}: {error}")) from error
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} holds a {type(content).__name__}, not a dictionary of weights (a state "
            "dict or a Lightning checkpoint with 'state_dict')."
        )
    return content


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a directory; pass the checkpoint file inside it (e.g. {path / 'model.pt'})."
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint file {path} does not exist; check the path (a training run with "
            "checkpoint_dir=... writes <checkpoint_dir>/last.ckpt; published files must be "
            "downloaded first)."
        )


def _damaged(path: Path, detail: str) -> str:
    detail = " ".join(detail.split())
    if len(detail) > 160:
        detail = detail[:157] + "..."
    return (
        f"{path} is not a readable PyTorch checkpoint: the file is damaged, truncated or of "
        f"another format ({detail}). Is the download or copy complete? Download or save it "
        "again."
    )


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file (a format without pickle).

    Raises
    ------
    UnsafeCheckpointError
        When the file is a pickle (e.g. written by :func:`torch.save`) under a safetensors name;
        it is not unpickled.
    ValueError
        For a damaged or truncated file.

    """
    from safetensors.torch import load_file

    path = Path(path)
    _check_file(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(b"PK") or head[:1] == b"\x80":
        raise UnsafeCheckpointError(
            f"Refused to load {path}: it is named .safetensors but holds a pickle (a torch.save "
            "file), which can run code when loaded. Use the model.safetensors written by "
            "scssl.io.export_safetensors; if you made this file yourself, write it with "
            "safetensors.torch.save_file."
        )
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors' own error type, or an OSError
        raise ValueError(
            f"{path} is not a readable safetensors file: it is damaged, truncated or of another "
            f"format ({' '.join(str(error).split())[:160]}). Is the download or copy complete? "
            "Export the model again with scssl.io.export_safetensors."
        ) from error
