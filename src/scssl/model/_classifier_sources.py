"""Where an SSLClassifier starts from: a pretrained SSLEncoder or a published classifier."""

from __future__ import annotations

import logging
from typing import Self

from anndata import AnnData

from scssl.checkpoints import read_ssl_in_scg_classifier
from scssl.data import DEFAULT_MIN_OVERLAP, align_to_vocabulary, check_obs_column

from ._from_encoder import (
    checked_encoder,
    copy_absent_batch_means,
    with_encoder_batches,
    with_measured_genes,
)
from ._published import provenance, published_classifier_setup
from .base import load_module_state

logger = logging.getLogger(__name__)

#: Label of cells without a cell type (the query's).
DEFAULT_UNLABELED = "Unknown"
#: Batch adversary weight while fine-tuning on several batches (chosen on Kang, see docs).
DEFAULT_FINETUNE_ADVERSARY = 0.3
#: Keys of an SSLEncoder's module state a classifier does not take over.
_DATA_BUFFERS = (
    "batch_means",
    "reference_mean",
    "gene_inclusion",
    "gene_loss_weight",
    "measured_genes",
)


class ClassifierSourcesMixin:
    """:class:`scssl.model.SSLClassifier`'s constructors from pretrained weights."""

    @classmethod
    def from_encoder(
        cls,
        encoder,
        adata: AnnData,
        labels_key: str,
        *,
        unlabeled_category: str = DEFAULT_UNLABELED,
        batch_adversary_weight: float = DEFAULT_FINETUNE_ADVERSARY,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        **classifier_kwargs,
    ) -> Self:
        """A classifier whose encoder, pretext and batch handling start from an SSLEncoder.

        ``adata`` holds the labelled reference cells and, for semi-supervised fine-tuning, the
        unlabelled query cells (label ``unlabeled_category``); it needs the encoder's
        ``batch_key`` column when the encoder has one. It is aligned to the encoder's genes
        (missing genes zero-filled, extra ones dropped) in a new AnnData; ``adata`` and the
        encoder are left unchanged. An encoder that masks unmeasured genes
        (:func:`scssl.data.concat_datasets`) keeps doing so: genes missing from ``adata`` (or
        unmeasured in its ``varm["measured_genes"]``) leave the loss. Cells of some of the
        encoder's batches (one of the datasets it was pretrained on) keep the encoder's batch
        coding, and its other batches the encoder's centering.

        Parameters
        ----------
        encoder
            A trained :class:`scssl.model.SSLEncoder`.
        adata
            Reference (and query) cells with raw counts where the encoder expects them.
        labels_key
            Column of ``adata.obs`` with the cell types.
        unlabeled_category
            Label value of cells without a label.
        batch_adversary_weight
            With several batches (the encoder's ``batch_key``, e.g. reference and query): weight
            of the batch adversary during fine-tuning, which keeps the classifier from reading
            the batch (see :class:`scssl.nn.BatchAdversary`); 0 turns it off.
        min_overlap
            Smallest share of the encoder's genes that must be found in ``adata``.
        **classifier_kwargs
            Options of :class:`scssl.model.SSLClassifier` (``class_balance``, ``pretext_weight``,
            ``freeze_encoder``, ``head_dropout_rate``, ``dropout_rate`` ...).

        """
        checked_encoder(encoder)
        if labels_key not in adata.obs:
            check_obs_column(adata, labels_key, "labels_key")
        setup_args = encoder.registry_["setup_args"]
        # a new AnnData (sharing the matrix): registering it never touches the user's object
        aligned, report = align_to_vocabulary(
            adata, encoder.gene_vocabulary, layer=setup_args["layer"], min_overlap=min_overlap
        )
        logger.info("from_encoder: %s", report)
        n_batches = with_encoder_batches(aligned, encoder)
        with_measured_genes(aligned, adata, encoder)
        cls.setup_anndata(
            aligned,
            labels_key=labels_key,
            unlabeled_category=unlabeled_category,
            layer=setup_args["layer"],
            batch_key=setup_args["batch_key"],
            log_normalized=setup_args["log_normalized"],
        )
        options = {**encoder.init_params, **classifier_kwargs}
        options["batch_adversary_weight"] = batch_adversary_weight if n_batches > 1 else 0.0
        model = cls(aligned, **options)
        own = encoder.module.state_dict()
        state = {k: v for k, v in own.items() if not k.startswith(_DATA_BUFFERS)}
        state = {k: v for k, v in state.items() if k in model.module.state_dict()}
        load_module_state(model.module, state, strict=False, source="the encoder")
        copy_absent_batch_means(model, encoder)
        model.gene_vocabulary_ = dict(encoder.gene_vocabulary_)
        model.pretrained_from_ = getattr(encoder, "pretrained_from_", None)
        return model

    @classmethod
    def from_ssl_in_scg(
        cls,
        checkpoint,
        genes,
        adata: AnnData,
        labels=None,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        layer: str | None = None,
    ) -> Self:
        """A fine-tuned classifier of Richter et al. (ssl_in_scg), ready to predict.

        The checkpoint is read safely (``torch.load(weights_only=True)``) by
        :func:`scssl.io.read_ssl_in_scg_classifier`; its ReLU encoder and its head become this
        model's, with the class names given. ``adata`` (cells to annotate, no labels needed) is
        aligned to the checkpoint's genes by Ensembl ID or symbol.

        Parameters
        ----------
        checkpoint
            The fine-tuned classifier file (``classifier.{0..15}`` weights).
        genes
            Its gene list (``var.parquet``: ``feature_id``, ``feature_name``).
        adata
            Cells with raw counts.
        labels
            Class names in the checkpoint's order (a list, or a parquet/csv file such as the
            study's ``cell_type.parquet``, whose index gives each name's output); ``None``
            names them ``class_0 ...``.
        min_overlap
            Smallest share of the checkpoint's genes ``adata`` must have.
        layer
            Layer of ``adata`` with the counts; ``None`` for ``adata.X``.

        """
        parsed = read_ssl_in_scg_classifier(checkpoint, genes, labels=labels)
        data, init_params, setup_args = published_classifier_setup(
            parsed, adata, layer, min_overlap
        )
        ckpt = parsed.checkpoint
        model = cls.from_state_dict(
            parsed.state_dict,
            parsed.gene_vocabulary,
            data,
            init_params=init_params,
            setup_args=setup_args,
            strict=False,
            source=ckpt.path,
        )
        model.pretrained_from_ = provenance(ckpt, model, list(parsed.state_dict), ckpt.unmapped)
        return model
