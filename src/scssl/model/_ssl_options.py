"""The SSL module of a model (encoder, pretext, batch handling) from its constructor options.

Shared by :class:`~scssl.model.SSLEncoder` and :class:`~scssl.model.SSLClassifier`, whose
module is an :class:`~scssl.module.SSLModule` (or a subclass of it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scssl.data import GeneVocabulary, pretext_programmes
from scssl.module._ssl_module import MASKED_PRETEXTS, PRETEXTS

from ._statistics import (
    gene_moments,
    measured_genes_table,
    set_adversary_batches,
    set_batch_means,
    set_measured_genes,
)


def options_in_weights(state_dict: dict, init_params: dict) -> dict:
    """BYOL's ``projection_hidden`` of files saved when its default was the study's 4096."""
    weight = state_dict.get("projector.0.weight")
    if init_params.get("pretext") == "byol" and weight is not None:
        return {"projection_hidden": int(weight.shape[0])}
    return {}


def resolve_gene_mask(adata, mask_unmeasured_genes: bool | None) -> bool:
    """``mask_unmeasured_genes``; ``None``: whether ``adata.varm`` has a measured-genes table.

    Models store the resolved value, so that a saved model rebuilds the same module.
    """
    if mask_unmeasured_genes is None:
        return measured_genes_table(adata) is not None
    return bool(mask_unmeasured_genes)


def set_gene_statistics(module, model) -> None:
    """The per-gene loss weights and the genes' sampling importance of a masked pretext."""
    weighted = module.reconstruction_gene_weights != "uniform"
    if not (weighted or module._samples_genes()):
        return
    mean, mean_square = gene_moments(model)  # float64: the variance is a difference
    importance = mean_square.sqrt().float()
    if weighted:
        module.set_gene_spread((mean_square - mean**2).clamp(min=0).sqrt().float())
        importance = importance * module.gene_loss_weight
    module.set_gene_importance(importance)


def build_ssl_module(
    model,
    module_cls,
    *,
    pretext: str,
    gene_sets: str | Path | dict[str, list[str]] | None,
    likelihood: str,
    n_latent: int,
    n_hidden: Sequence[int],
    dropout_rate: float | None,
    activation: str,
    mask_rate: float | None,
    min_targets: int,
    batch_centering: bool,
    gene_sample_size: int | None,
    mask_unmeasured_genes: bool = False,
    module_kwargs: dict | None = None,
    **pretext_kwargs,
) -> tuple[str, dict | None]:
    """Set ``model.module`` (an ``SSLModule`` of ``module_cls``) and its data statistics.

    The options are :class:`~scssl.model.SSLEncoder`'s (its signature holds their defaults).
    Pretext defaults follow the study: dropout 0.1 for masked pretexts and 0.0 for contrastive
    ones, mask rate 0.5 of genes or 0.25 of gene programmes. ``module_kwargs`` go to the module
    too (a subclass's own options). Returns a summary of the options for the model's string,
    and the gene sets as a plain dict (for the model's ``init_params_``, so that a saved model
    loads without the GMT file).
    """
    if pretext not in PRETEXTS:
        raise ValueError(f"pretext={pretext!r} is not known; choose one of {list(PRETEXTS)}.")
    vocabulary = GeneVocabulary.from_adata(model.adata)
    gene_sets, programmes = pretext_programmes(pretext, gene_sets, vocabulary, min_targets)
    masked = pretext in MASKED_PRETEXTS
    if dropout_rate is None:
        dropout_rate = 0.1 if masked else 0.0
    if mask_rate is None:
        mask_rate = 0.25 if pretext == "gene_programme_mask" else 0.5
    model.module = module_cls(
        model.summary_stats.n_vars,
        n_batch=model.summary_stats.n_batch,
        pretext=pretext,
        likelihood=likelihood,
        n_latent=n_latent,
        n_hidden=tuple(n_hidden),
        dropout_rate=dropout_rate,
        activation=activation,
        mask_rate=mask_rate,
        log_normalized=model.registry_["setup_args"]["log_normalized"],
        programme_members=None if programmes is None else programmes.members,
        tf_index=None if programmes is None else programmes.anchors,
        batch_centering=batch_centering,
        gene_sample_size=gene_sample_size,
        mask_unmeasured_genes=mask_unmeasured_genes,
        **(module_kwargs or {}),
        **pretext_kwargs,
    )
    model.gene_vocabulary_ = vocabulary.to_dict()
    model.programme_names_ = None if programmes is None else programmes.names
    details = f"mask_rate={mask_rate}, likelihood={likelihood}, " if masked else ""
    if mask_unmeasured_genes:
        set_measured_genes(model)
        details += "unmeasured genes masked, "
    if model.module.has_decoder:
        set_gene_statistics(model.module, model)
    if model.module.batch_adversary_weight:
        set_adversary_batches(model)
    if model.module.batch_centering:
        set_batch_means(model)
        details += "batch centering, "
    if programmes is not None:
        details += f"{len(programmes.names)} programmes, "
    summary = (
        f"pretext={pretext}, {model.summary_stats.n_vars} genes, hidden={list(n_hidden)}, "
        f"n_latent={n_latent}, activation={activation}, {details}dropout_rate={dropout_rate}"
    )
    return summary, gene_sets
