"""Downstream models started from a pretrained SSLEncoder: its checks and the weight copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from scssl.data import MEASURED_GENES_KEY
from scssl.data._warnings import warn_user

from .base import registered_batches


def checked_encoder(encoder) -> dict:
    """The architecture of a trained SSLEncoder (for the downstream model's constructor)."""
    if not hasattr(encoder, "module") or not hasattr(encoder.module, "architecture"):
        raise TypeError(
            f"encoder must be a trained scssl.model.SSLEncoder, got {type(encoder).__name__}."
        )
    encoder._check_if_trained(warn=True)
    return dict(encoder.module.architecture)


def copy_encoder(model, encoder) -> None:
    """Give ``model`` the encoder's weights and gene vocabulary (the encoder is not changed)."""
    model.module.encoder.load_state_dict(encoder.module.encoder.state_dict())
    model.gene_vocabulary_ = dict(encoder.gene_vocabulary_)


def with_encoder_batches(aligned, encoder) -> int:
    """Code ``aligned``'s batches as the encoder's; return how many of them have cells.

    When the cells hold some of the encoder's batches and no others (fine-tuning on one's own
    dataset after pretraining on several), the batch column gets all the encoder's categories,
    so that batch-dependent weights (the decoder's batch input) keep their meaning. New names,
    as many batches in all as the encoder's, take the codes of its batches without cells here
    (with a warning); another number is refused.
    """
    batch_key = encoder.registry_["setup_args"].get("batch_key")
    if batch_key is None or batch_key not in aligned.obs:
        return 1
    values = aligned.obs[batch_key].astype(str)
    present = set(values)
    known = registered_batches(encoder.registry_)
    if present <= set(known):
        aligned.obs[batch_key] = pd.Categorical(values, categories=known)
    elif encoder.module.n_batch_covariate:
        new = sorted(present - set(known))
        if len(present) != len(known):
            raise ValueError(
                f"The encoder was pretrained on the batches {known[:8]} (obs[{batch_key!r}]); "
                f"these cells also hold others ({new[:5]}), and its decoder takes exactly its own "
                "batches. Name each cell's batch as one of the encoder's (for data united by "
                "scssl.data.concat_datasets: '<dataset>:<batch>', or the dataset name), or "
                "fine-tune on the encoder's own data with these cells added."
            )
        # known names keep their codes; each new name takes the code of a batch without cells
        free = [b for b in known if b not in present]
        pairing = dict(zip(new, free, strict=True))
        slot = {old: name for name, old in pairing.items()}
        aligned.obs[batch_key] = pd.Categorical(values, categories=[slot.get(b, b) for b in known])
        shown = dict(list(pairing.items())[:5])
        warn_user(
            f"These cells' batches include {new[:5]}, which the encoder was not pretrained on "
            f"(its batches: {known[:8]}, obs[{batch_key!r}]); each takes the batch-coded weights "
            f"of a pretrained batch without cells here ({shown}) and fine-tunes them; the "
            "encoder's own batches keep theirs. If they are the encoder's batches under other "
            "names, rename them to match.",
        )
    return len(present)


def with_measured_genes(aligned, adata, encoder) -> None:
    """Give ``aligned`` the genes each batch measured, when the encoder masks unmeasured genes.

    A batch's column comes from ``adata.varm["measured_genes"]`` when it has one (gene by gene,
    through the alignment), otherwise it is the encoder's genes found in ``adata``; batches of
    the encoder without cells here keep the encoder's rows.
    """
    if not getattr(encoder.module, "mask_unmeasured_genes", False):
        return
    batch_key = encoder.registry_["setup_args"].get("batch_key")
    known = registered_batches(encoder.registry_)  # None without a batch_key
    if known is not None and batch_key not in aligned.obs:
        return  # setup_anndata names the missing column
    present = ["0"] if known is None else sorted(set(aligned.obs[batch_key].astype(str)))
    index, _ = encoder.gene_vocabulary.source_index(adata)
    found = index >= 0
    table = adata.varm[MEASURED_GENES_KEY] if MEASURED_GENES_KEY in adata.varm else None
    columns = {}
    for batch in dict.fromkeys([*present, *(known or [])]):
        if table is not None and batch in table.columns.astype(str):
            measured = table.set_axis(table.columns.astype(str), axis=1)[batch].to_numpy(bool)
            columns[batch] = found & measured[np.maximum(index, 0)]
        elif batch in present:
            columns[batch] = found
        else:
            row = encoder.module.measured_genes[known.index(batch)]
            columns[batch] = row.cpu().numpy().astype(bool)
    aligned.varm[MEASURED_GENES_KEY] = pd.DataFrame(columns, index=aligned.var_names)


def copy_absent_batch_means(model, encoder) -> None:
    """Batches without cells in ``model``'s data keep the encoder's centering shift.

    Their cells, when embedded later, are then centred as the encoder centred them.
    """
    if not (model.module.batch_centering and encoder.module.batch_centering):
        return
    own, theirs = model.module, encoder.module
    if own.batch_means.shape != theirs.batch_means.shape:
        return
    codes = model.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
    absent = np.bincount(codes.astype(np.int64), minlength=own.batch_means.shape[0]) == 0
    absent = torch.as_tensor(absent)
    shift = (theirs.batch_means - theirs.reference_mean)[absent].to(own.batch_means)
    with torch.no_grad():
        own.batch_means[absent] = shift + own.reference_mean
