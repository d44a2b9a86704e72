"""Downstream models started from a pretrained SSLEncoder: its checks and the weight copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS


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
    so that batch-dependent weights (the decoder's batch input) keep their meaning.
    """
    batch_key = encoder.registry_["setup_args"].get("batch_key")
    if batch_key is None or batch_key not in aligned.obs:
        return 1
    values = aligned.obs[batch_key].astype(str)
    state = encoder.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
    known = [str(c) for c in state.categorical_mapping]
    if set(values) <= set(known):
        aligned.obs[batch_key] = pd.Categorical(values, categories=known)
    return values.nunique()


def copy_absent_batch_means(model, encoder) -> None:
    """Batches without cells in ``model``'s data take their mean expression from the encoder.

    Their cells, when embedded later, are then centred as the encoder centred them.
    """
    if not (model.module.batch_centering and encoder.module.batch_centering):
        return
    own, theirs = model.module.batch_means, encoder.module.batch_means
    if own.shape != theirs.shape:
        return
    codes = model.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
    absent = np.bincount(codes.astype(np.int64), minlength=own.shape[0]) == 0
    with torch.no_grad():
        own[torch.as_tensor(absent)] = theirs[torch.as_tensor(absent)].to(own)
