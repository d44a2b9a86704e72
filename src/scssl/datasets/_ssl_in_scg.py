"""Published checkpoints of Richter et al. (Hugging Face repository ``TillR/sc_pretrained``)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ._download import cache_dir as default_cache_dir

REPO_ID = "TillR/sc_pretrained"
FOLDERS = ("Pretrained Models", "Finetuned Models")
GENES_FILE = "var.parquet"


class SslInScgFiles(NamedTuple):
    """Local paths of a published checkpoint and of its gene list."""

    checkpoint: Path
    genes: Path


def _hub():
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError(
            "Downloading the published weights needs huggingface_hub: "
            "pip install 'scssl[hub]'. Without it, download the files from "
            f"https://huggingface.co/{REPO_ID} and pass their paths to "
            "SSLEncoder.from_ssl_in_scg."
        ) from error
    return huggingface_hub


def _candidates(name: str) -> list[str]:
    name = name.strip("/")
    if "/" in name:
        return [name]
    return [f"{folder}/{name}" for folder in FOLDERS] + [name]


def ssl_in_scg_weights(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    repo_id: str = REPO_ID,
    revision: str | None = None,
) -> SslInScgFiles:
    """Download a published ssl_in_scg checkpoint and its gene list (once; then cached).

    Parameters
    ----------
    name
        File in the repository: a path such as ``"Pretrained Models/<file>.ckpt"``, or a bare
        file name, looked up in ``"Pretrained Models"`` then ``"Finetuned Models"``. See
        :func:`list_ssl_in_scg_weights` or https://huggingface.co/TillR/sc_pretrained.
    cache_dir
        Where to keep the files; default ``$SCSSL_CACHE_DIR/ssl_in_scg`` (``~/.cache/scssl``).
        Files already there are not downloaded again (also offline, ``HF_HUB_OFFLINE=1``).
    repo_id, revision
        Hugging Face repository and revision (branch, tag or commit; pin a commit for
        reproducible results).

    Returns
    -------
    Paths of the checkpoint and of ``var.parquet`` (the gene order of every checkpoint),
    ready for :meth:`scssl.model.SSLEncoder.from_ssl_in_scg`.

    Raises
    ------
    ImportError
        When ``huggingface_hub`` is not installed (``pip install 'scssl[hub]'``).
    FileNotFoundError
        When the repository has no such file.
    ConnectionError
        When a file is not cached and cannot be downloaded.

    """
    hub = _hub()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "ssl_in_scg"
    cache.mkdir(parents=True, exist_ok=True)

    def fetch(filename: str) -> Path:
        return Path(
            hub.hf_hub_download(
                repo_id=repo_id, filename=filename, cache_dir=str(cache), revision=revision
            )
        )

    not_found = _not_found_errors(hub)
    checkpoint = None
    tried = []
    for candidate in _candidates(name):
        tried.append(candidate)
        try:
            checkpoint = fetch(candidate)
            break
        except Exception as error:  # not in the repository, or network/offline/server errors
            offline = type(error).__name__ == "LocalEntryNotFoundError"
            if isinstance(error, not_found) and not offline:
                continue
            raise ConnectionError(_offline_message(candidate, repo_id, cache, error)) from error
    if checkpoint is None:
        raise FileNotFoundError(
            f"{repo_id} has no file {name!r} (tried {tried}). List the files with "
            "scssl.datasets.list_ssl_in_scg_weights() or on "
            f"https://huggingface.co/{repo_id}/tree/main."
        )
    try:
        genes = fetch(GENES_FILE)
    except Exception as error:
        raise ConnectionError(_offline_message(GENES_FILE, repo_id, cache, error)) from error
    return SslInScgFiles(checkpoint=checkpoint, genes=genes)


def list_ssl_in_scg_weights(*, repo_id: str = REPO_ID, revision: str | None = None) -> list[str]:
    """The checkpoint files of the repository (needs network).

    Raises
    ------
    ConnectionError
        When the repository cannot be reached (e.g. offline); the message says what to do.

    """
    hub = _hub()
    try:
        files = hub.list_repo_files(repo_id, revision=revision)
    except Exception as error:  # offline, network or server errors; a wrong name stays itself
        names = {cls.__name__ for cls in type(error).__mro__}
        if names & {"RepositoryNotFoundError", "RevisionNotFoundError"} or isinstance(
            error, ValueError
        ):
            raise
        raise ConnectionError(
            f"Could not list the files of {repo_id} ({type(error).__name__}: {error}). If this "
            f"machine is offline, see https://huggingface.co/{repo_id}/tree/main on a connected "
            "machine, download the checkpoint and var.parquet there and pass their local paths "
            "to SSLEncoder.from_ssl_in_scg."
        ) from error
    return sorted(f for f in files if f.endswith((".ckpt", ".pt", ".pth", ".safetensors")))


def _not_found_errors(hub) -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = []
    for module in (hub, getattr(hub, "errors", None), getattr(hub, "utils", None)):
        for attr in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
            error = getattr(module, attr, None) if module is not None else None
            if isinstance(error, type) and issubclass(error, BaseException):
                errors.append(error)
    return tuple(errors) or (FileNotFoundError,)


def _offline_message(filename: str, repo_id: str, cache: Path, error: Exception) -> str:
    return (
        f"Could not download {filename!r} from {repo_id} ({type(error).__name__}: {error}). If "
        "this machine is offline, download the checkpoint and var.parquet from "
        f"https://huggingface.co/{repo_id} elsewhere and pass their local paths to "
        f"SSLEncoder.from_ssl_in_scg, or fill the cache {cache} on a connected machine."
    )
