"""SSLEncoder: a self-supervised pretrained cell encoder behind the scvi-tools model API."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from scssl.data import (
    DEFAULT_MIN_OVERLAP,
    EncodedGeneSets,
    GeneVocabulary,
    SparseDataSplitter,
    align_to_vocabulary,
    check_unique_var_names,
    encode_gene_sets,
    encode_tf_programmes,
    iterate_minibatches,
    load_gene_sets,
    read_shards,
)
from scssl.data import check_expression as _check_expression
from scssl.data import expression_matrix as _expression_matrix
from scssl.module import SSLModule
from scssl.module._ssl_module import MASKED_PRETEXTS, PRETEXTS
from scssl.nn._sparse import to_dense
from scssl.train import TargetNetworkUpdate, ddp_trainer_kwargs

from ._training import custom_optimizer_plan, set_early_stopping, training_mode
from ._vocabulary_mixin import GeneVocabularyMixin

logger = logging.getLogger(__name__)

DEFAULT_INFERENCE_BATCH_SIZE = 1024


def _adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    # The fused kernel is several times faster than the default on CPU and GPU alike.
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)


def _encode_programmes(
    pretext: str, gene_sets, vocabulary: GeneVocabulary, min_targets: int
) -> tuple[dict[str, list[str]] | None, EncodedGeneSets | None]:
    """Gene sets as a plain dict (saved with the model) and encoded onto the vocabulary."""
    if pretext not in ("gene_programme_mask", "programme_to_tf"):
        if gene_sets is not None:
            raise ValueError(
                f"gene_sets is used by pretext='gene_programme_mask' or 'programme_to_tf', not "
                f"{pretext!r}; drop gene_sets or choose one of those pretexts."
            )
        return None, None
    if gene_sets is None:
        if pretext == "programme_to_tf":
            raise ValueError(
                "pretext='programme_to_tf' needs gene_sets=: TF -> target programmes (a GMT path "
                "or a dict {TF symbol: [target symbols]}), e.g. CollecTRI regulons."
            )
        gene_sets = "hallmark"
    gene_sets = load_gene_sets(gene_sets)
    if pretext == "gene_programme_mask":
        return gene_sets, encode_gene_sets(gene_sets, vocabulary)
    return gene_sets, encode_tf_programmes(gene_sets, vocabulary, min_targets)


class SSLEncoder(GeneVocabularyMixin, UnsupervisedTrainingMixin, BaseModelClass):
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
    **pretext_kwargs
        Further options of the pretext, passed to :class:`scssl.module.SSLModule`:
        ``tf_rest_weight`` (1.0), ``views`` (augmentations of the two views, e.g.
        ``(("negbin", "dropout"), ())``), ``negbin_intensity`` (0.1), ``dropout_intensity`` (0.1),
        ``projection_hidden`` (4096), ``projection_dim`` (256), ``ema_decay_base`` (0.99),
        ``ema_cosine`` (False), ``projector_sizes`` ((256, 256, 512, 512)), ``lambda_offdiag``
        (0.0051).

    Examples
    --------
    >>> scssl.model.SSLEncoder.setup_anndata(adata, layer="counts")
    >>> model = scssl.model.SSLEncoder(adata, pretext="gene_programme_mask", gene_sets="hallmark")
    >>> model.train(max_epochs=50)
    >>> adata.obsm["X_scssl"] = model.get_latent_representation()

    """

    _module_cls = SSLModule
    _data_splitter_cls = SparseDataSplitter

    def __init__(
        self,
        adata: AnnData,
        pretext: str = "random_mask",
        gene_sets: str | Path | dict[str, list[str]] | None = None,
        likelihood: str = "mse",
        n_latent: int = 64,
        n_hidden: Sequence[int] = (512, 512, 256, 256),
        dropout_rate: float | None = None,
        activation: str = "selu",
        mask_rate: float | None = None,
        min_targets: int = 5,
        batch_centering: bool = True,
        **pretext_kwargs,
    ):
        if adata is None:
            raise ValueError(
                "SSLEncoder needs an AnnData registered with SSLEncoder.setup_anndata(adata)."
            )
        if pretext not in PRETEXTS:
            raise ValueError(f"pretext={pretext!r} is not known; choose one of {list(PRETEXTS)}.")
        super().__init__(adata)
        setup_args = self.adata_manager.registry["setup_args"]
        vocabulary = GeneVocabulary.from_adata(adata)
        gene_sets, programmes = _encode_programmes(pretext, gene_sets, vocabulary, min_targets)
        masked = pretext in MASKED_PRETEXTS
        if dropout_rate is None:
            dropout_rate = 0.1 if masked else 0.0
        if mask_rate is None:
            mask_rate = 0.25 if pretext == "gene_programme_mask" else 0.5
        self.module = self._module_cls(
            self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch,
            pretext=pretext,
            likelihood=likelihood,
            n_latent=n_latent,
            n_hidden=tuple(n_hidden),
            dropout_rate=dropout_rate,
            activation=activation,
            mask_rate=mask_rate,
            log_normalized=setup_args["log_normalized"],
            programme_members=None if programmes is None else programmes.members,
            tf_index=None if programmes is None else programmes.anchors,
            batch_centering=batch_centering,
            **pretext_kwargs,
        )
        self.gene_vocabulary_ = vocabulary.to_dict()
        self.programme_names_ = None if programmes is None else programmes.names
        details = f"mask_rate={mask_rate}, likelihood={likelihood}, " if masked else ""
        if self.module.batch_centering:
            self._set_batch_means(adata)
            details += "batch centring, "
        if programmes is not None:
            details += f"{len(programmes.names)} programmes, "
        self._model_summary_string = (
            f"SSLEncoder: pretext={pretext}, {self.summary_stats.n_vars} genes, "
            f"hidden={list(n_hidden)}, n_latent={n_latent}, activation={activation}, "
            f"{details}dropout_rate={dropout_rate}"
        )
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
        _check_expression(adata, layer, log_normalized)
        check_unique_var_names(adata.var_names)
        if batch_key is not None and batch_key not in adata.obs:
            raise KeyError(
                f"batch_key={batch_key!r} is not a column of adata.obs (columns: "
                f"{list(adata.obs.columns)})."
            )
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
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        train_size: float = 0.9,
        validation_size: float | None = None,
        early_stopping: bool = True,
        early_stopping_patience: int = 10,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        datamodule=None,
        plan_kwargs: dict | None = None,
        block_size: int | None = None,
        **trainer_kwargs,
    ):
        """Pretrain the encoder with its pretext task.

        Minibatches stay sparse from disk to the first layer. Lightning shows a progress bar;
        a validation split drives early stopping on the validation loss.

        Parameters
        ----------
        max_epochs
            Epochs; ``None`` uses scvi-tools' heuristic (fewer epochs for more cells).
        batch_size
            Cells per minibatch.
        lr, weight_decay
            AdamW learning rate and weight decay (the study: 1e-3, 0.01).
        train_size, validation_size
            Split of the cells; the validation cells drive early stopping.
        early_stopping
            Stop when the validation loss has not improved for ``early_stopping_patience``
            epochs (needs ``train_size < 1``).
        early_stopping_patience
            Epochs without improvement before stopping.
        accelerator, devices
            Lightning's hardware options. With ``strategy="ddp"`` (and ``num_nodes=M`` across
            machines) in ``trainer_kwargs`` each of the ``devices x num_nodes`` ranks trains on
            its own share of the cells; see ``docs/scaling.md``.
        datamodule
            A ``LightningDataModule`` that yields scvi-tools minibatches, replacing the
            AnnData-based loading.
        plan_kwargs
            Further options of :class:`scvi.train.TrainingPlan`.
        block_size
            Minibatches are drawn from shuffled blocks of this many consecutive cells, so
            backed or sharded data are read from disk in runs (see
            :class:`scssl.data.BlockShuffleSampler`); ``None``: 64 for data on disk, 1 (a plain
            shuffle) in memory.
        **trainer_kwargs
            Further options of :class:`scvi.train.Trainer` (Lightning ``Trainer``).

        """
        plan_kwargs = custom_optimizer_plan(
            partial(_adamw, lr=lr, weight_decay=weight_decay), plan_kwargs
        )
        early_stopping = set_early_stopping(
            trainer_kwargs,
            early_stopping,
            early_stopping_patience,
            train_size=None if datamodule is not None else train_size,
            # The batch adversary's losses rise as batches mix; stop on the pretext alone.
            monitor="pretext_loss_validation"
            if self.module.batch_adversary_weight
            else "validation_loss",
        )
        if self.module.pretext == "byol":
            callbacks = list(trainer_kwargs.pop("callbacks", None) or [])
            trainer_kwargs["callbacks"] = [*callbacks, TargetNetworkUpdate()]
        # --- scale-out (issue 7): block shuffling for data on disk, DDP rank split
        datasplitter_kwargs = {
            "block_size": block_size,
            **(trainer_kwargs.pop("datasplitter_kwargs", None) or {}),
        }
        trainer_kwargs = ddp_trainer_kwargs(self.module, accelerator, trainer_kwargs)
        # --- end scale-out
        with training_mode(self.module):
            return super().train(
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                train_size=train_size,
                validation_size=validation_size,
                load_sparse_tensor=True,
                batch_size=batch_size,
                early_stopping=early_stopping,
                plan_kwargs=plan_kwargs,
                datamodule=datamodule,
                datasplitter_kwargs=datasplitter_kwargs,
                **trainer_kwargs,
            )

    # ------------------------------------------------------ gene vocabulary
    @classmethod
    def prepare_query_anndata(
        cls,
        adata: AnnData,
        reference_model: SSLEncoder | str | Path,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
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
            A model, or the directory it was saved to.
        min_overlap
            Smallest share of the model's genes that must be found.

        Raises
        ------
        ValueError
            When fewer than ``min_overlap`` of the model's genes are found; the message reports
            how many matched.

        """
        if isinstance(reference_model, str | Path):
            from scvi.model.base._save_load import _load_saved_files

            attr_dict, _, _, _ = _load_saved_files(str(reference_model), load_adata=False)
            vocabulary = GeneVocabulary.from_dict(attr_dict["gene_vocabulary_"])
            layer = attr_dict["registry_"]["setup_args"]["layer"]
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
        cls,
        adata: AnnData,
        reference_model: SSLEncoder | str | Path,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
    ) -> SSLEncoder:
        """A model with the reference's weights, set up on ``adata`` aligned to its genes.

        The returned model trains further on the query (e.g. ``model.train(max_epochs=10)``)
        without changing the reference. ``adata`` itself is not modified.
        """
        aligned = cls.prepare_query_anndata(adata, reference_model, min_overlap=min_overlap)
        if isinstance(reference_model, str | Path):
            return cls.load(str(reference_model), adata=aligned)
        reference_model._check_if_trained(warn=True)
        setup_args = dict(reference_model.registry_["setup_args"])
        cls.setup_anndata(aligned, source_registry=reference_model.registry_, **setup_args)
        init = reference_model.init_params_
        kwargs = dict(init.get("non_kwargs", {}))
        for var_kwargs in init.get("kwargs", {}).values():
            kwargs.update(var_kwargs)
        model = cls(aligned, **kwargs)
        model.module.load_state_dict(reference_model.module.state_dict())
        model.gene_vocabulary_ = reference_model.gene_vocabulary_
        model.is_trained_ = reference_model.is_trained_
        model.module.eval()
        return model

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
        from scssl.io import encoder_from_ssl_in_scg

        return encoder_from_ssl_in_scg(
            cls, checkpoint, genes, adata=adata, kind=kind, min_overlap=min_overlap, layer=layer
        )

    # ------------------------------------------------------- batch centring
    def _batch_sums(
        self, matrix, codes: np.ndarray, n_batches: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sum of log1p-normalised expression and cell count per batch code."""
        sums = torch.zeros(n_batches, self.module.n_input, dtype=torch.float64)
        for chunk, x in iterate_minibatches(matrix, np.arange(matrix.shape[0]), 4096):
            x_norm = to_dense(self.module.normalize(x)).double()
            sums.index_add_(0, torch.as_tensor(codes[chunk]), x_norm)
        return sums.numpy(), np.bincount(codes, minlength=n_batches)

    def _set_batch_means(self, adata: AnnData) -> None:
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
        matrix = _expression_matrix(adata, self._layer)
        sums, n_cells = self._batch_sums(matrix, codes.astype(np.int64), self.module.n_batch)
        with torch.no_grad():
            self.module.batch_means.copy_(torch.as_tensor(sums / np.maximum(n_cells, 1)[:, None]))
            self.module.reference_mean.copy_(torch.as_tensor(sums.sum(0) / max(n_cells.sum(), 1)))

    def _centring(self, adata: AnnData) -> tuple[np.ndarray, torch.Tensor]:
        """Each cell's row in a table of batch shifts: training batches, then new batches.

        Cells of batches the model was not trained on (or all cells, when ``adata`` has no
        batch column) are centred on the mean of their batch in ``adata``.
        """
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        deltas = self.module.batch_deltas().detach().cpu()
        if adata is self.adata:
            codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY).ravel()
            return codes.astype(np.int64), deltas
        key = state.original_key
        if key in adata.obs:
            values = adata.obs[key].astype(str).to_numpy()
        else:
            warnings.warn(
                f"adata.obs has no {key!r} column: all cells are treated as one new batch and "
                "centred on their own mean expression.",
                UserWarning,
                stacklevel=3,
            )
            values = np.full(adata.n_obs, "__query__")
        known = {str(c): i for i, c in enumerate(state.categorical_mapping)}
        new = sorted(set(values) - set(known))
        lookup = {**known, **{name: len(known) + i for i, name in enumerate(new)}}
        codes = np.array([lookup[v] for v in values], dtype=np.int64)
        if new:
            matrix = _expression_matrix(adata, self._layer)
            sums, n_cells = self._batch_sums(matrix, codes, len(lookup))
            small = [name for name in new if n_cells[lookup[name]] < 50]
            if small:
                warnings.warn(
                    f"New batches with fewer than 50 cells are centred on noisy means: "
                    f"{small[:5]}.",
                    UserWarning,
                    stacklevel=3,
                )
            new_means = torch.as_tensor(sums[len(known) :] / n_cells[len(known) :, None])
            new_deltas = new_means.float() - self.module.reference_mean.detach().cpu()
            deltas = torch.cat([deltas, new_deltas])
        return codes, deltas

    # ------------------------------------------------------------- outputs
    def _batch_codes(self, adata: AnnData, indices: np.ndarray) -> torch.Tensor | None:
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        if self.module.n_batch_covariate == 0:
            return None
        key = state.original_key
        if key not in adata.obs:
            raise KeyError(
                f"The model is conditioned on batch_key={key!r}, which is not a column of "
                "adata.obs. Add each cell's batch (one of the training batches)."
            )
        values = adata.obs[key].to_numpy()[indices]
        mapping = {c: i for i, c in enumerate(state.categorical_mapping)}
        unknown = sorted({str(v) for v in values if v not in mapping})
        if unknown:
            raise ValueError(
                f"adata.obs[{key!r}] has batches the model was not trained on: {unknown[:5]}. "
                f"Known batches: {list(state.categorical_mapping)}."
            )
        return torch.as_tensor(np.array([mapping[v] for v in values]), dtype=torch.long)

    def _cells(self, adata: AnnData | None, indices) -> tuple[AnnData, np.ndarray]:
        if adata is None or adata is self.adata:
            adata = self.adata
        else:
            adata = self.align(adata)[0]
        indices = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        return adata, indices

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Embedding of each cell, shape ``(n_cells, n_latent)``.

        Eval mode (no dropout, no masking): the same cell always gets the same embedding,
        whichever cells share its minibatch. Data with other genes are aligned to the model's
        gene vocabulary first (see :meth:`prepare_query_anndata`).

        Parameters
        ----------
        adata
            Cells to embed; ``None`` for the AnnData the model was set up with.
        indices
            Subset of cells (positions); ``None`` for all.
        batch_size
            Cells per minibatch (default 1024).

        """
        self._check_if_trained(warn=True)
        adata, indices = self._cells(adata, indices)
        matrix = _expression_matrix(adata, self._layer)
        self.module.eval()
        device = self.device
        batch_codes, deltas = self._centring(adata) if self.module.batch_centering else (None, None)
        outputs = []
        for chunk, x in iterate_minibatches(
            matrix, indices, batch_size or DEFAULT_INFERENCE_BATCH_SIZE
        ):
            batch_index = None
            if self.module.batch_centering:
                batch_index = torch.as_tensor(batch_codes[chunk]).to(device)
            outputs.append(self.module.embed(x.to(device), batch_index, deltas).cpu())
        if not outputs:
            return np.zeros((0, self.module.n_latent), dtype=np.float32)
        return torch.cat(outputs).numpy()

    @torch.inference_mode()
    def get_reconstructed_expression(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        return_numpy: bool = False,
        kind: str = "log1p",
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
        adata, indices = self._cells(adata, indices)
        matrix = _expression_matrix(adata, self._layer)
        self.module.eval()
        device = self.device
        outputs = []
        for chunk, x in iterate_minibatches(
            matrix, indices, batch_size or DEFAULT_INFERENCE_BATCH_SIZE
        ):
            batch_index = self._batch_codes(adata, chunk)
            if batch_index is not None:
                batch_index = batch_index.to(device)
            outputs.append(
                self.module.reconstruct(x.to(device), batch_index, counts=kind == "counts").cpu()
            )
        values = (
            torch.cat(outputs).numpy()
            if outputs
            else np.zeros((0, self.module.n_input), dtype=np.float32)
        )
        if return_numpy:
            return values
        return pd.DataFrame(
            values,
            index=adata.obs_names[indices],
            columns=pd.Index(self.gene_vocabulary.symbols),
        )
