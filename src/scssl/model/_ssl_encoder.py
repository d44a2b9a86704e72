"""SSLEncoder: a self-supervised pretrained cell encoder behind the scvi-tools model API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField

from scssl.checkpoints import read_model_file
from scssl.data import (
    DEFAULT_MIN_OVERLAP,
    GeneVocabulary,
    align_to_vocabulary,
    check_expression,
    check_obs_column,
    check_unique_var_names,
    read_shards,
)
from scssl.module import SSLModule
from scssl.module._masked import DEFAULT_GENE_SAMPLE_SIZE
from scssl.module._ssl_module import Likelihood, Pretext
from scssl.nn import DEFAULT_N_HIDDEN, DEFAULT_N_LATENT
from scssl.train import TargetNetworkUpdate, ddp_trainer_kwargs, default_precision

from ._published import load_whole_groups, provenance, read_published
from ._ssl_options import build_ssl_module, options_in_weights, resolve_gene_mask
from ._statistics import centering_table
from .base import (
    MinibatchStep,
    SSLModelBase,
    adamw_plan,
    batch_codes,
    fit_options,
    fitting,
    validation_cells,
)

logger = logging.getLogger(__name__)

#: Pretraining minibatch size, chosen on Kang (all genes, 2 CPU cores) by quality per minute:
#: kNN macro F1 0.770 after 2.5 minutes at 512 against 0.732 at 128, each step's fixed costs
#: (optimiser, sampled decoder) spread over more cells; lr 2e-3 at 512 scored lower (0.670).
DEFAULT_PRETRAIN_BATCH_SIZE = 512
#: A reference model for query data: a model, or the directory it was saved to.
Reference: TypeAlias = "SSLEncoder | str | Path"


class SSLEncoder(SSLModelBase):
    """A cell encoder pretrained by self-supervision, as in Richter et al. (ssl_in_scg).

    An MLP (512-512-256-256-64, SELU, no normalisation layers by default) maps counts, normalised
    on the fly (``normalize_total`` to 1e4 then ``log1p``), to an embedding. It is pretrained with
    a pretext task on unlabelled cells; its embedding feeds neighbours, UMAP, clustering and label
    transfer (see :func:`scssl.tl.embed`).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`. Its genes become the model's gene
        vocabulary; other data are aligned to it by symbol or Ensembl ID.
    pretext
        Self-supervised task (see the *Pretext tasks* docs page):

        - ``"random_mask"``: hide each gene with probability ``mask_rate`` (0.5), reconstruct the
          hidden entries.
        - ``"gene_programme_mask"``: hide whole gene programmes of ``gene_sets``
          (``int(n_programmes * mask_rate)`` per minibatch, ``mask_rate`` 0.25), reconstruct them.
        - ``"programme_to_tf"``: show only the targets of one TF programme of ``gene_sets``
          (TF -> targets) per cell, predict the TF (and, weighted by ``tf_rest_weight``, the
          other hidden genes).
        - ``"byol"``: BYOL on two augmented views with an EMA target network.
        - ``"barlow_twins"``: Barlow Twins on an augmented view and the cell itself.
    gene_sets
        Gene programmes for ``gene_programme_mask`` (``"hallmark"``, the default, a GMT path or a
        dict ``{name: [symbols]}``) or TF -> targets programmes for ``programme_to_tf`` (set
        names are TF symbols). Matched to the model genes by symbol; stored with the model.
    likelihood
        Masked pretexts: ``"mse"`` on log1p-normalised values (the study's default) or ``"nb"``,
        the negative-binomial log-likelihood of the counts.
    n_latent
        Embedding size.
    n_hidden
        Hidden layer sizes of the encoder; the decoder mirrors them.
    dropout_rate
        Dropout after each hidden activation; default 0.1 for masked pretexts, 0.0 for
        contrastive ones (the study).
    activation
        ``"selu"`` (the study), ``"relu"`` or ``"gelu"``.
    mask_rate
        Share of genes (``random_mask``, default 0.5) or programmes (``gene_programme_mask``,
        default 0.25) hidden.
    min_targets
        ``programme_to_tf``: a TF programme is used when its TF and at least this many of its
        targets are model genes.
    batch_centering
        With a ``batch_key`` of several batches: centre each batch's mean log1p expression on
        the mean of all cells before the encoder (and in the reconstruction target), so that
        embeddings mix batches (batch integration; see the *Batch integration* docs). Cells of
        batches the model has not seen are centred on their own batch mean when embedded.
    gene_sample_size
        ``random_mask``: each training minibatch reconstructs a random sample of this many
        genes, an unbiased estimate of the loss over all genes at a fraction of the cost (the
        decoder's output layer dominates a step); ``None`` reconstructs all genes. Validation
        losses and reconstructions always cover all genes.
    mask_unmeasured_genes
        Leave the genes a batch did not measure out of the reconstruction loss (and out of
        batch centering), for data that unite datasets with different genes
        (:func:`scssl.data.concat_datasets`): ``adata.varm["measured_genes"]`` says which genes
        each registered batch measured. ``None``: when ``adata.varm`` has that table.
    **pretext_kwargs
        Further options of the pretext, passed to :class:`scssl.module.SSLModule`:
        ``tf_rest_weight`` (1.0), ``views`` (augmentations of the two views, e.g.
        ``(("negbin", "dropout"), ())``), ``negbin_intensity`` (0.1), ``dropout_intensity`` (0.1),
        ``projection_hidden`` (512; the study: 4096), ``projection_dim`` (256),
        ``ema_decay_base`` (0.99), ``ema_cosine`` (False), ``projector_sizes``
        ((256, 256, 512, 512)), ``lambda_offdiag`` (0.0051), ``augment_zeros`` (False:
        contrastive views augment detected genes only and stay sparse), ``decoder_output``
        (``"linear"``; published weights set the study's), ``reconstruction_gene_weights``
        (``"uniform"``, the study's loss; ``"inverse_sd"``: each gene's error weighted by the
        inverse of its spread in the training cells, the default of zero-shot kNN's
        :func:`scssl.model.pretrain_encoder`; see the *Label transfer* docs).

    Examples
    --------
    >>> scssl.model.SSLEncoder.setup_anndata(adata, layer="counts")
    >>> model = scssl.model.SSLEncoder(adata, pretext="gene_programme_mask", gene_sets="hallmark")
    >>> model.train(max_epochs=50)
    >>> adata.obsm["X_scssl"] = model.get_latent_representation()

    """

    _module_cls = SSLModule
    _options_in_weights = staticmethod(options_in_weights)
    _missing_data = "SSLEncoder needs an AnnData registered with SSLEncoder.setup_anndata(adata)."

    def __init__(
        self,
        adata: AnnData,
        pretext: Pretext = "random_mask",
        gene_sets: str | Path | dict[str, list[str]] | None = None,
        likelihood: Likelihood = "mse",
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        dropout_rate: float | None = None,
        activation: str = "selu",
        mask_rate: float | None = None,
        min_targets: int = 5,
        batch_centering: bool = True,
        gene_sample_size: int | None = DEFAULT_GENE_SAMPLE_SIZE,
        mask_unmeasured_genes: bool | None = None,
        **pretext_kwargs,
    ):
        super().__init__(adata)
        mask_unmeasured_genes = resolve_gene_mask(adata, mask_unmeasured_genes)
        summary, gene_sets = build_ssl_module(
            self,
            self._module_cls,
            pretext=pretext,
            gene_sets=gene_sets,
            likelihood=likelihood,
            n_latent=n_latent,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            activation=activation,
            mask_rate=mask_rate,
            min_targets=min_targets,
            batch_centering=batch_centering,
            gene_sample_size=gene_sample_size,
            mask_unmeasured_genes=mask_unmeasured_genes,
            **pretext_kwargs,
        )
        self._model_summary_string = f"SSLEncoder: {summary}"
        self.init_params_ = self._get_init_params(locals())

    # ------------------------------------------------------------------ setup
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        batch_key: str | None = None,
        log_normalized: bool = False,
        **kwargs,
    ):
        """Register an AnnData with scssl.

        The expression matrix is checked, never modified. scvi-tools records the registration
        in ``adata.uns`` and adds ``adata.obs['_scvi_batch']``.

        Parameters
        ----------
        adata
            Cells x genes: an AnnData in memory or backed (``anndata.read_h5ad(path,
            backed="r")``, read from disk minibatch by minibatch), a
            :class:`~scssl.data.ShardedAnnData` (:func:`scssl.data.read_shards`), or a list of
            ``.h5ad`` paths, which is opened with :func:`~scssl.data.read_shards` and returned.
        layer
            Layer with the raw counts; ``None`` uses ``adata.X``.
        batch_key
            Column of ``adata.obs`` with the batch of each cell; the decoder is conditioned on it.
        log_normalized
            Set to ``True`` when the matrix already holds ``normalize_total`` + ``log1p``
            values; they are then used as they are.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Returns
        -------
        ``None``; for a list of shards, the opened :class:`~scssl.data.ShardedAnnData` to pass
        to :class:`SSLEncoder`.

        Raises
        ------
        ValueError
            On NaN, infinite or negative values, or on non-integer values when counts are
            expected (``log_normalized=False``).
        KeyError
            When ``layer`` or ``batch_key`` do not exist.

        """
        # --- scale-out (issue 7): a list of .h5ad shards is opened as one backed collection
        if isinstance(adata, list | tuple):
            adata = read_shards(adata)
            cls.setup_anndata(adata, layer, batch_key, log_normalized, **kwargs)
            return adata
        # --- end scale-out
        setup_method_args = cls._get_setup_method_args(**locals())
        check_expression(adata, layer, log_normalized)
        check_unique_var_names(adata.var_names)
        check_obs_column(adata, batch_key, "batch_key")
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=not log_normalized),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    # -------------------------------------------------------------- training
    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = DEFAULT_PRETRAIN_BATCH_SIZE,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        train_size: float = 0.9,
        validation_size: float | None = None,
        early_stopping: bool | None = None,
        early_stopping_patience: int = 10,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datamodule=None,
        plan_kwargs: dict | None = None,
        block_size: int | None = None,
        checkpoint_dir: str | Path | None = None,
        **trainer_kwargs,
    ):
        """Pretrain the encoder with its pretext task.

        Minibatches stay sparse from disk to the first layer. Lightning shows a progress bar;
        a validation split drives early stopping on the validation loss. ``max_time=
        "00:00:10:00"`` (Lightning's option) bounds the training time. CPUs with bf16
        instructions train under bf16 autocast (:func:`scssl.train.default_precision`).

        Parameters
        ----------
        max_epochs
            Epochs; ``None`` uses scvi-tools' heuristic (fewer epochs for more cells).
        batch_size
            Cells per minibatch (the study: 128; see :data:`DEFAULT_PRETRAIN_BATCH_SIZE`).
        lr, weight_decay
            AdamW learning rate and weight decay (the study: 1e-3, 0.01).
        train_size, validation_size
            Split of the cells; the validation cells drive early stopping.
        early_stopping
            Stop when the validation loss has not improved for ``early_stopping_patience``
            epochs (needs ``train_size < 1``); ``None``: on, unless ``max_time`` bounds the run
            (with a time budget, longer training kept improving the embedding: see the
            *Label transfer* docs page).
        early_stopping_patience
            Epochs without improvement before stopping.
        accelerator, devices
            Lightning's hardware options. With ``strategy="ddp"`` (and ``num_nodes=M``) in
            ``trainer_kwargs`` each rank trains on its own share of the cells (``docs/scaling.md``).
        datamodule
            A ``LightningDataModule`` yielding scvi-tools minibatches, replacing the AnnData.
        plan_kwargs
            Further options of the training plan (:class:`scssl.train.SSLTrainingPlan`).
        block_size
            Minibatches are drawn from shuffled blocks of this many consecutive cells, so data on
            disk are read in runs (:class:`scssl.data.BlockShuffleSampler`); ``None``: 64 for
            backed or sharded data, 1 (a plain shuffle) in memory.
        checkpoint_dir
            Save ``last.ckpt`` (weights, optimiser state, epoch) here after every epoch; an
            interrupted run continues with ``ckpt_path="<checkpoint_dir>/last.ckpt"``.
        **trainer_kwargs
            Further options of the Lightning ``Trainer`` (``max_time``, ``precision`` ...).

        """
        n_validation = None
        if datamodule is None:
            n_validation = validation_cells(self.adata.n_obs, train_size, validation_size)
        trainer_kwargs, early_stopping = self._trainer_options(
            trainer_kwargs,
            accelerator,
            checkpoint_dir,
            early_stopping,
            early_stopping_patience,
            n_validation,
        )
        datasplitter_kwargs = {
            "block_size": block_size,
            **(trainer_kwargs.pop("datasplitter_kwargs", None) or {}),
        }
        with fitting(self):
            return super().train(
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                train_size=train_size,
                validation_size=validation_size,
                load_sparse_tensor=True,
                batch_size=batch_size,
                early_stopping=early_stopping,
                plan_kwargs=adamw_plan(lr, weight_decay, plan_kwargs),
                datamodule=datamodule,
                datasplitter_kwargs=datasplitter_kwargs,
                **trainer_kwargs,
            )

    def _trainer_options(
        self, trainer_kwargs, accelerator, checkpoint_dir, early_stopping, patience, n_validation
    ) -> tuple[dict, bool]:
        """Lightning options (DDP, precision, checkpoints, BYOL target) and whether to stop early.

        Early stopping defaults to on unless ``max_time`` bounds the run.
        """
        if early_stopping is None:
            early_stopping = trainer_kwargs.get("max_time") is None
        trainer_kwargs = ddp_trainer_kwargs(self.module, accelerator, trainer_kwargs)
        trainer_kwargs.setdefault("precision", default_precision(accelerator))
        logger.info("Pretraining precision: %s", trainer_kwargs["precision"])
        if self.module.pretext == "byol":
            callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
            trainer_kwargs["callbacks"] = [*callbacks, TargetNetworkUpdate()]
        return fit_options(
            trainer_kwargs,
            checkpoint_dir,
            early_stopping,
            patience,
            n_validation,
            # The batch adversary's losses rise as batches mix; stop on the pretext alone.
            monitor="pretext_loss_validation"
            if self.module.batch_adversary_weight
            else "validation_loss",
        )

    # ------------------------------------------------------ query data
    @classmethod
    def prepare_query_anndata(
        cls, adata: AnnData, reference_model: Reference, min_overlap: float = DEFAULT_MIN_OVERLAP
    ) -> AnnData:
        """A copy of ``adata`` aligned to a reference model's genes.

        Genes are matched by Ensembl ID when both sides have them, otherwise by symbol
        (case-insensitive); the model's genes missing from ``adata`` are zero-filled and genes
        the model does not know are dropped. ``adata`` itself is not modified.

        Parameters
        ----------
        adata
            Query data.
        reference_model
            A model, or the directory it was saved to (read without running code).
        min_overlap
            Smallest share of the model's genes that must be found.

        Raises
        ------
        ValueError
            When fewer than ``min_overlap`` of the model's genes are found; the message reports
            how many matched.

        """
        if isinstance(reference_model, str | Path):
            _, attributes = read_model_file(Path(reference_model) / "model.pt")
            vocabulary = GeneVocabulary.from_dict(attributes["gene_vocabulary_"])
            layer = attributes["registry_"]["setup_args"]["layer"]
        else:
            vocabulary = reference_model.gene_vocabulary
            layer = reference_model._layer
        aligned, report = align_to_vocabulary(
            adata, vocabulary, layer=layer, min_overlap=min_overlap
        )
        logger.info("prepare_query_anndata: %s", report)
        aligned.uns["scssl_alignment"] = report.as_dict()
        return aligned

    @classmethod
    def load_query_data(
        cls, adata: AnnData, reference_model: Reference, min_overlap: float = DEFAULT_MIN_OVERLAP
    ) -> SSLEncoder:
        """A model with the reference's weights, set up on ``adata`` aligned to its genes.

        The returned model trains further on the query (e.g. ``model.train(max_epochs=10)``)
        without changing the reference. ``adata`` itself is not modified.
        """
        aligned = cls.prepare_query_anndata(adata, reference_model, min_overlap=min_overlap)
        if isinstance(reference_model, str | Path):
            return cls.load(str(reference_model), adata=aligned)
        reference_model._check_if_trained(warn=True)
        return cls.from_state_dict(
            reference_model.module.state_dict(),
            reference_model.gene_vocabulary,
            aligned,
            init_params=reference_model.init_params,
            setup_args=reference_model.registry_["setup_args"],
            registry=reference_model.registry_,
            attributes={"is_trained_": reference_model.is_trained_},
        )

    @classmethod
    def from_ssl_in_scg(
        cls,
        checkpoint: str | Path,
        genes,
        adata: AnnData | None = None,
        kind: str = "auto",
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        layer: str | None = None,
    ) -> SSLEncoder:
        """An encoder with the published weights of Richter et al. (ssl_in_scg).

        Reads the checkpoint with ``torch.load(weights_only=True)`` (a file that would need to
        run code is refused), detects its kind from the keys, checks its shapes against
        ``genes`` and maps the weights onto scssl's layers. Embeddings equal the study's
        forward pass (counts -> ``normalize_total(1e4)`` over the model's genes -> ``log1p``).

        Parameters
        ----------
        checkpoint
            A published file (``TillR/sc_pretrained``): masked autoencoder (also the
            negative-binomial variant), Barlow Twins, BYOL, or the encoder of a fine-tuned
            classifier; see :func:`scssl.io.read_ssl_in_scg`.
        genes
            The checkpoint's gene list (``var.parquet``; parquet/csv/tsv with ``feature_id``
            and ``feature_name`` in checkpoint order).
        adata
            Data to set the model up on; aligned to the gene list by Ensembl ID or symbol
            (missing genes zero-filled, extra genes dropped) and the report logged. ``None``:
            set up on a placeholder; embed data later with :meth:`get_latent_representation`.
        kind
            ``"auto"`` or one of :data:`scssl.io.KINDS`.
        min_overlap
            Smallest share of the checkpoint's genes ``adata`` must have.
        layer
            Layer of ``adata`` with raw counts; ``None`` for ``adata.X``.

        """
        ckpt, vocabulary = read_published(checkpoint, genes, kind, adata)
        if ckpt.kind == "classifier":
            logger.warning(
                "%s is a fine-tuned classifier: only its encoder is loaded (ReLU); its cell-type "
                "head is ignored. Use SSLClassifier.from_ssl_in_scg for the head.",
                Path(ckpt.path).name,
            )
        model = cls.from_state_dict(
            ckpt.encoder,
            vocabulary,
            adata,
            init_params=ckpt.model_kwargs,
            setup_args={"layer": layer, "batch_key": None, "log_normalized": False},
            strict=False,
            min_overlap=min_overlap,
            source=ckpt.path,
        )
        loaded, skipped = load_whole_groups(model.module, ckpt.extra, ckpt.path)
        model.pretrained_from_ = provenance(
            ckpt, model, [*ckpt.encoder, *loaded], skipped + ckpt.unmapped
        )
        model._model_summary_string += (
            f" | loaded from ssl_in_scg {ckpt.kind} {Path(ckpt.path).name}"
        )
        return model

    # ------------------------------------------------------------- outputs
    def _batch_index(self, adata: AnnData, indices: np.ndarray) -> torch.Tensor | None:
        """Each cell's training batch, for a decoder conditioned on the batch."""
        if self.module.n_batch_covariate == 0:
            return None
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        key = state.original_key
        if key not in adata.obs:
            raise KeyError(
                f"The model is conditioned on batch_key={key!r}, which is not a column of "
                "adata.obs. Add each cell's batch (one of the training batches)."
            )
        codes = batch_codes(adata.obs[key].to_numpy()[indices], state.categorical_mapping, key)
        return torch.as_tensor(codes, dtype=torch.long)

    def _embedder(self, adata: AnnData) -> MinibatchStep:
        if not self.module.batch_centering:
            return lambda chunk, x: self.module.embed(x)
        codes, deltas = centering_table(self, adata)
        return lambda chunk, x: self.module.embed(
            x, torch.as_tensor(codes[chunk]).to(x.device), deltas
        )

    def get_reconstructed_expression(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        return_numpy: bool = False,
        kind: str = "log1p",
        *,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
    ) -> pd.DataFrame | np.ndarray:
        """Decoder reconstruction of unmasked cells (masked pretexts only).

        Parameters
        ----------
        adata
            Cells; ``None`` for the AnnData the model was set up with.
        indices
            Subset of cells (positions); ``None`` for all.
        batch_size
            Cells per minibatch (default 1024).
        return_numpy
            Return an array instead of a DataFrame indexed by cells with genes as columns.
        kind
            ``"log1p"``: ``log1p(normalize_total(1e4))`` values (the study's space);
            ``"counts"``: expected counts at each cell's own library size (the NB mean for
            ``likelihood="nb"``).
        min_overlap
            Smallest share of the model's genes that must be found in ``adata``.

        Raises
        ------
        ValueError
            For a contrastive pretext (no decoder) or an unknown ``kind``.

        """
        if kind not in ("log1p", "counts"):
            raise ValueError(f"kind={kind!r}; choose 'log1p' or 'counts'.")
        if not self.module.has_decoder:
            raise ValueError(
                f"pretext={self.module.pretext!r} has no decoder; reconstruction needs a masked "
                "pretext (random_mask, gene_programme_mask or programme_to_tf)."
            )
        self._check_if_trained(warn=True)
        adata, indices = self._cells(adata, indices, min_overlap)

        def reconstruct(chunk: np.ndarray, x: torch.Tensor) -> torch.Tensor:
            batch_index = self._batch_index(adata, chunk)
            if batch_index is not None:
                batch_index = batch_index.to(x.device)
            return self.module.reconstruct(x, batch_index, counts=kind == "counts")

        values = self._map_minibatches(adata, indices, reconstruct, self.module.n_input, batch_size)
        if return_numpy:
            return values
        return pd.DataFrame(
            values,
            index=adata.obs_names[indices],
            columns=pd.Index(self.gene_vocabulary.symbols),
        )
