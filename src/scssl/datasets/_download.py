"""Download public files once into a local cache."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


def cache_dir() -> Path:
    """``$SCSSL_CACHE_DIR``, else ``~/.cache/scssl``."""
    return Path(os.environ.get("SCSSL_CACHE_DIR", Path.home() / ".cache" / "scssl"))


def download(url: str, filename: str, timeout: float = 60.0) -> Path:
    """Path of ``filename`` in the cache, downloading it from ``url`` when absent.

    The file is written under a temporary name and renamed when complete, so an interrupted
    download never leaves a truncated file in the cache.

    Raises
    ------
    ConnectionError
        When the file is not cached and cannot be downloaded (e.g. offline); the message says
        how to proceed with a local copy.

    """
    target = cache_dir() / filename
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                shutil.copyfileobj(response, tmp)
        Path(tmp.name).replace(target)
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"Could not download {filename} from {url} ({error}). If this machine is offline, "
            f"download the file elsewhere and pass its local path (path=...), or place it at "
            f"{target}."
        ) from error
    return target
