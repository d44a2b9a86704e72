"""Portable model files: safetensors weights plus a JSON model card, and scvi-hub directories."""

from __future__ import annotations

import json
import logging
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import torch

from scssl._json import jsonable
from scssl._version import __version__
from scssl.checkpoints import load_safetensors
from scssl.data import DEFAULT_MIN_OVERLAP
from scssl.model import SSLClassifier, SSLEncoder, SSLProteinPredictor

logger = logging.getLogger(__name__)

MODEL_CLASSES = {cls.__name__: cls for cls in (SSLEncoder, SSLClassifier, SSLProteinPredictor)}
#: Model attributes a card carries besides the constructor's parameters.
CARD_ATTRIBUTES = ("class_names_", "protein_names_", "calibration_", "query_batches_")
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model_card.json"
FORMAT = "scssl-safetensors"
FORMAT_VERSION = 1


def _versions() -> dict:
    import scvi

    return {
        "scssl": __version__,
        "scvi-tools": scvi.__version__,
        "torch": torch.__version__.split("+")[0],
        "anndata": version("anndata"),
    }


def model_card(model) -> dict:
    """What is needed to rebuild ``model`` and to judge what it was trained on.

    Architecture (constructor parameters), setup arguments, gene vocabulary, pretext, a
    summary of the training data, provenance of published weights and package versions.
    """
    from scvi import REGISTRY_KEYS

    kwargs = model.init_params
    setup_args = dict(model.registry_["setup_args"])
    batch_state = model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
    batch_key = setup_args.get("batch_key")
    adata = model.adata
    placeholder = bool(adata is not None and adata.uns.get("scssl_placeholder", False))
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "model_module": "scssl.model",
        "init_params": jsonable(kwargs),
        "setup_args": jsonable(setup_args),
        "batch_categories": (
            jsonable(list(batch_state.categorical_mapping)) if batch_key is not None else None
        ),
        "pretext": kwargs.get("pretext"),
        "gene_vocabulary": jsonable(model.gene_vocabulary_),
        "training_data": {
            "n_cells": None if placeholder else int(model.summary_stats.n_cells),
            "n_genes": int(model.summary_stats.n_vars),
            "n_batches": int(model.summary_stats.n_batch),
            "is_trained": bool(model.is_trained_),
            "history_epochs": (
                len(model.history_["train_loss_epoch"])
                if getattr(model, "history_", None) and "train_loss_epoch" in model.history_
                else None
            ),
        },
        "pretrained_from": jsonable(getattr(model, "pretrained_from_", None)),
        "attributes": jsonable(
            {k: getattr(model, k) for k in CARD_ATTRIBUTES if getattr(model, k, None) is not None}
        ),
        "versions": _versions(),
    }


def export_safetensors(model, dir_path: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` as ``model.safetensors`` plus ``model_card.json`` into ``dir_path``.

    The weights file holds tensors only (no pickle: safe to share and to load anywhere); the
    card is plain JSON. Read back with :func:`import_safetensors`.

    Returns
    -------
    The directory written.

    """
    from safetensors.torch import save_file

    dir_path = Path(dir_path)
    weights = dir_path / WEIGHTS_FILE
    if weights.exists() and not overwrite:
        raise FileExistsError(f"{weights} exists; pass overwrite=True to replace it.")
    dir_path.mkdir(parents=True, exist_ok=True)
    card = model_card(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    save_file(state, str(weights), metadata={"format": FORMAT, "model_class": card["model_class"]})
    (dir_path / CARD_FILE).write_text(json.dumps(card, indent=2))
    return dir_path


#: Entries every model card has; a card without them cannot rebuild a model.
CARD_KEYS = ("model_class", "init_params", "setup_args", "gene_vocabulary", "training_data")


def read_model_card(dir_path: str | Path) -> dict:
    """The JSON model card of an exported model directory, checked.

    Raises
    ------
    FileNotFoundError
        When the directory holds no card.
    ValueError
        For a file that is not JSON, not an scssl card, from a newer format version, or
        lacking the entries a model is rebuilt from.

    """
    dir_path = Path(dir_path)
    path = dir_path / CARD_FILE
    if not path.is_file():
        hint = "export the model with scssl.io.export_safetensors"
        if (dir_path / "model.pt").is_file():
            hint = (
                "the directory holds a model saved with model.save: load it with "
                "scssl.model.<ModelClass>.load(dir_path)"
            )
        raise FileNotFoundError(f"{path} does not exist; {hint}.")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); the model card is damaged. Export the model "
            "again with scssl.io.export_safetensors."
        ) from error
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ValueError(
            f"{path} is not an scssl model card (format={found!r}, expected {FORMAT!r}); it "
            "belongs to another tool or was edited. Export the model with "
            "scssl.io.export_safetensors."
        )
    if card.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {card['format_version']}; this scssl reads up to "
            f"{FORMAT_VERSION}. Update scssl."
        )
    missing = [
        key
        for key in CARD_KEYS
        if not isinstance(card.get(key), str if key == "model_class" else dict)
    ]
    if missing:
        raise ValueError(
            f"{path} lacks {missing} (or holds them in another form); a model cannot be rebuilt "
            "from it. The card is damaged or was edited: export the model again with "
            "scssl.io.export_safetensors."
        )
    return card


def _weights_model_class(weights: Path) -> str | None:
    """The model class recorded in the safetensors file's metadata by :func:`export_safetensors`."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        return (handle.metadata() or {}).get("model_class")


def import_safetensors(
    dir_path: str | Path,
    adata: ad.AnnData | None = None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
):
    """Rebuild a model exported with :func:`export_safetensors`.

    Parameters
    ----------
    dir_path
        Directory with ``model.safetensors`` and ``model_card.json``.
    adata
        Data to set the model up on; its genes are aligned to the model's vocabulary (missing
        genes zero-filled, the report logged). ``None``: a one-cell placeholder with the
        vocabulary genes; embed any data later with ``model.get_latent_representation(adata)``.
        For an :class:`~scssl.model.SSLProteinPredictor`, a MuData with its RNA modality (and
        proteins) or ``None``.
    min_overlap
        Smallest share of the model's genes that must be found.

    Raises
    ------
    FileNotFoundError
        When the card or the weights are missing.
    ValueError
        For a damaged or foreign card, a card and weights of different models, or weights
        whose dtypes or shapes do not fit the model the card describes.

    """
    dir_path = Path(dir_path)
    card = read_model_card(dir_path)
    cls = MODEL_CLASSES.get(card["model_class"])
    if cls is None:
        raise ValueError(
            f"{dir_path / CARD_FILE} names the model class {card['model_class']!r}, which "
            f"scssl does not have (it has {list(MODEL_CLASSES)})."
        )
    weights = dir_path / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} does not exist; the export is incomplete. Copy the whole directory, "
            "or export the model again with scssl.io.export_safetensors."
        )
    state = load_safetensors(weights)
    exported_as = _weights_model_class(weights)
    if exported_as is not None and exported_as != card["model_class"]:
        raise ValueError(
            f"{dir_path / CARD_FILE} describes a {card['model_class']}, but {weights} holds the "
            f"weights of a {exported_as}: the card and the weights come from different exports. "
            "Export the model again with scssl.io.export_safetensors."
        )
    attributes = dict(card.get("attributes") or {})
    if card.get("pretrained_from") is not None:
        attributes["pretrained_from_"] = card["pretrained_from"]
    attributes["is_trained_"] = bool(card["training_data"].get("is_trained", True))
    return cls.from_state_dict(
        state,
        card["gene_vocabulary"],
        adata,
        init_params=card["init_params"],
        setup_args=card["setup_args"],
        batch_categories=card.get("batch_categories"),
        attributes=attributes,
        min_overlap=min_overlap,
        source=str(weights),
        exact_dtype=True,
    )


def save_scvi_hub(
    model,
    dir_path: str | Path,
    overwrite: bool = False,
    save_anndata: bool = True,
    training_data_url: str | None = None,
    description: str | None = None,
):
    """Save ``model`` as an scvi-hub model directory (loadable with :class:`scvi.hub.HubModel`).

    Writes the scvi-tools save files (``model.pt``, and ``adata.h5ad`` when ``save_anndata``),
    ``_scvi_required_metadata.json`` with ``model_parent_module="scssl.model"``, a ``README.md``
    model card (scvi-tools' card helper knows only its own classes) and the JSON card of
    :func:`model_card`. Needs ``huggingface_hub`` (``pip install scssl[hub]``); no network.

    Returns
    -------
    A :class:`scvi.hub.HubModel` for the directory (``.model`` loads it back).

    """
    try:
        from huggingface_hub import ModelCard
        from scvi.hub import HubMetadata, HubModel
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "scvi-hub directories need huggingface_hub: pip install 'scssl[hub]'"
        ) from error

    dir_path = Path(dir_path)
    model.save(str(dir_path), overwrite=overwrite, save_anndata=save_anndata)
    card = model_card(model)
    (dir_path / CARD_FILE).write_text(json.dumps(card, indent=2))
    metadata = HubMetadata.from_dir(
        str(dir_path),
        anndata_version=version("anndata"),
        training_data_url=training_data_url,
        model_parent_module="scssl.model",
    )
    vocabulary = card["gene_vocabulary"]
    init = card["init_params"]
    text = f"""---
library_name: scvi-tools
tags:
- scssl
- single-cell
- self-supervised-learning
- model_cls_name:{card["model_class"]}
- scvi_version:{card["versions"]["scvi-tools"]}
- anndata_version:{card["versions"]["anndata"]}
---

# {card["model_class"]} ({card["pretext"]})

{description or "A self-supervised cell encoder trained with scssl."}

- Architecture: {len(vocabulary["symbols"])} genes -> {init.get("n_hidden")} -> \
{init.get("n_latent")}, activation {init.get("activation")}
- Pretext: {card["pretext"]}
- Training data: {card["training_data"]}
- Published weights: {card["pretrained_from"]["file"] if card["pretrained_from"] else "no"}
- Versions: {card["versions"]}

Load with `scvi.hub.HubModel(local_dir).model` (needs `scssl` installed) or
`scssl.model.{card["model_class"]}.load(local_dir, adata)`; the full card is in `{CARD_FILE}`.
"""
    hub_model = HubModel(str(dir_path), metadata=metadata, model_card=ModelCard(text))
    hub_model.save(overwrite=True)
    return hub_model
