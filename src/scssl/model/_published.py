"""The study's published checkpoints (ssl_in_scg) as scssl models: what loads, and from where."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from scssl.checkpoints import (
    SslInScgCheckpoint,
    check_genes,
    read_gene_list,
    read_ssl_in_scg,
)
from scssl.data import GeneVocabulary, align_to_vocabulary, warn_ambiguous_symbols

from .base import load_module_state

logger = logging.getLogger(__name__)


def read_published(
    checkpoint, genes, kind: str, adata
) -> tuple[SslInScgCheckpoint, GeneVocabulary]:
    """The checkpoint (read safely) and its gene list, checked against each other."""
    ckpt = checkpoint if isinstance(checkpoint, SslInScgCheckpoint) else None
    if ckpt is None:
        ckpt = read_ssl_in_scg(checkpoint, kind=kind)
    vocabulary = read_gene_list(genes)
    check_genes(ckpt, vocabulary, genes)
    if adata is not None:
        warn_ambiguous_symbols(vocabulary, adata)
    return ckpt, vocabulary


def load_whole_groups(module: torch.nn.Module, extra: dict, source: str) -> tuple[list, list]:
    """Load each group of ``extra`` (decoder, projector, ...) whole where it fits, else none.

    A group is the weights sharing a first name component; it fits when the module has exactly
    those tensors, of the same shapes. Returns the names loaded and those skipped.
    """
    own = module.state_dict()
    groups: dict[str, list[str]] = {}
    for name in extra:
        groups.setdefault(name.split(".")[0], []).append(name)
    loaded, skipped = [], []
    for group, names in groups.items():
        module_names = {k for k in own if k.split(".")[0] == group}
        fits = set(names) == module_names and all(
            tuple(extra[n].shape) == tuple(own[n].shape)
            and extra[n].is_floating_point() == own[n].is_floating_point()
            for n in names
        )
        (loaded if fits else skipped).extend(names)
    load_module_state(module, {n: extra[n] for n in loaded}, strict=False, source=source)
    if skipped:
        logger.info("Weights without a matching scssl parameter (not loaded): %s", skipped[:10])
    return loaded, skipped


def provenance(ckpt: SslInScgCheckpoint, model, loaded: list, not_loaded: list) -> dict:
    """Where the weights came from, for ``model.pretrained_from_`` and model cards."""
    return {
        "source": "ssl_in_scg",
        "file": Path(ckpt.path).name,
        "kind": ckpt.kind,
        "loaded": loaded,
        "not_loaded": not_loaded,
        "notes": ckpt.notes,
        "alignment": model.adata.uns.get("scssl_alignment"),
    }


def published_classifier_setup(parsed, adata, layer: str | None, min_overlap: float):
    """``adata`` aligned to a published classifier's genes, and the model's options.

    Returns the aligned AnnData (a new object; every cell unlabelled, as the published
    classifier comes without labelled cells), the ``init_params`` and the ``setup_args``.
    """
    warn_ambiguous_symbols(parsed.gene_vocabulary, adata)
    data, report = align_to_vocabulary(
        adata, parsed.gene_vocabulary, layer=layer, min_overlap=min_overlap
    )
    logger.info("from_ssl_in_scg: %s", report)
    data.uns["scssl_alignment"] = report.as_dict()
    unlabeled, labels_key = "__unlabeled__", "_ssl_in_scg_label"
    data.obs[labels_key] = pd.Categorical(
        [unlabeled] * data.n_obs, categories=[*parsed.labels, unlabeled]
    )
    ckpt = parsed.checkpoint
    init_params = {
        **ckpt.architecture,
        "head_activation": "relu",
        "head_dropout_rate": ckpt.dropout_rate,
        "class_names": parsed.labels,
        "gene_sample_size": None,
    }
    setup_args = {
        "labels_key": labels_key,
        "unlabeled_category": unlabeled,
        "layer": layer,
        "batch_key": None,
        "log_normalized": False,
    }
    return data, init_params, setup_args
