"""SSLClassifier: a pretrained SSL encoder fine-tuned for cell-type prediction."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LabelsWithUnlabeledObsField, LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from scssl.checkpoints import read_ssl_in_scg_classifier
from scssl.data import (
    DEFAULT_MIN_OVERLAP,
    GeneVocabulary,
    SparseDataSplitter,
    align_to_vocabulary,
    check_expression,
    check_obs_column,
    check_unique_var_names,
    warn_ambiguous_symbols,
)
from scssl.module import ClassifierModule
from scssl.nn import DEFAULT_N_HIDDEN, DEFAULT_N_LATENT

from ._calibration import ece_before_after, fit_temperature
from ._from_encoder import checked_encoder, copy_encoder
from ._published import provenance
from .base import (
    GeneVocabularyMixin,
    InferenceMixin,
    MinibatchStep,
    ModelFilesMixin,
    adamw_plan,
    checkpointing,
    interruptible,
    set_early_stopping,
    training_mode,
    validation_cells,
)

logger = logging.getLogger(__name__)

DEFAULT_UNLABELED = "Unknown"


class SSLClassifier(
    ModelFilesMixin,
    InferenceMixin,
    GeneVocabularyMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    """Cell-type classifier: the SSL encoder with a linear head, fine-tuned on labelled cells.

    Build it from a pretrained :class:`scssl.model.SSLEncoder` with :meth:`from_encoder` (or from
    scratch with :meth:`setup_anndata` and the constructor). Training minimises a class-balanced
    cross-entropy with AdamW and early stopping; a held-out part of the reference then fits a
    softmax temperature so that the predicted probabilities are calibrated (``calibration_``
    reports the expected calibration error before and after).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`; its genes become the gene vocabulary.
    n_latent, n_hidden, dropout_rate, activation
        Encoder architecture (as :class:`scssl.model.SSLEncoder`).
    head_dropout_rate
        Dropout before the classification layer.
    class_balance
        Weight each class by its inverse frequency in the cross-entropy, so rare cell types count
        as much as common ones.
    freeze_encoder
        Train the head only, keeping the (pretrained) encoder fixed.
    class_names
        Class names in output order; taken from the registered labels when ``None``.
    query_batches
        Set by :meth:`load_query_data` only: query batches with a learned first-layer shift.

    Examples
    --------
    >>> clf = scssl.model.SSLClassifier.from_encoder(encoder, reference, labels_key="cell_type")
    >>> clf.train(max_epochs=30)
    >>> clf.predict(query)                # labels
    >>> clf.predict(query, soft=True)     # calibrated probabilities, one column per class

    """

    _module_cls = ClassifierModule
    _data_splitter_cls = SparseDataSplitter

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        dropout_rate: float = 0.1,
        head_dropout_rate: float = 0.1,
        activation: str = "selu",
        class_balance: bool = True,
        freeze_encoder: bool = False,
        class_names: Sequence[str] | None = None,
        query_batches: Sequence[str] | None = None,
    ):
        if adata is None:
            raise ValueError(
                "SSLClassifier needs an AnnData registered with SSLClassifier.setup_anndata, or "
                "use SSLClassifier.from_encoder(encoder, adata, labels_key)."
            )
        super().__init__(adata)
        setup_args = self.adata_manager.registry["setup_args"]
        labels_state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        mapping = [str(c) for c in labels_state.categorical_mapping]
        unlabeled = str(labels_state.unlabeled_category)
        if class_names is None:
            class_names = [c for c in mapping if c != unlabeled]
        class_names = [str(c) for c in class_names]
        if len(class_names) < 2:
            raise ValueError(
                f"adata.obs[{setup_args['labels_key']!r}] has {len(class_names)} labelled "
                f"classes {class_names} besides the unlabeled category {unlabeled!r}; a "
                "classifier needs at least 2 classes."
            )
        weights = None
        if query_batches is None:
            if setup_args["labels_key"] is None:
                raise ValueError("setup_anndata needs labels_key to train a classifier.")
            weights = self._class_weights(mapping, unlabeled, class_names, class_balance)
        self.class_names_ = class_names
        self.query_batches_ = None if query_batches is None else [str(b) for b in query_batches]
        self.module = self._module_cls(
            self.summary_stats.n_vars,
            n_classes=len(class_names),
            n_latent=n_latent,
            n_hidden=tuple(n_hidden),
            dropout_rate=dropout_rate,
            head_dropout_rate=head_dropout_rate,
            activation=activation,
            log_normalized=setup_args["log_normalized"],
            class_weights=weights,
            freeze_encoder=freeze_encoder,
            n_query_batches=0 if query_batches is None else len(query_batches),
        )
        self.gene_vocabulary_ = GeneVocabulary.from_adata(adata).to_dict()
        self.calibration_: dict | None = None
        self._model_summary_string = (
            f"SSLClassifier: {len(class_names)} classes, {self.summary_stats.n_vars} genes, "
            f"hidden={list(n_hidden)}, n_latent={n_latent}, activation={activation}, "
            f"freeze_encoder={freeze_encoder}"
            + (f", query batches={list(query_batches)}" if query_batches is not None else "")
        )
        self.init_params_ = self._get_init_params(locals())

    def _class_weights(
        self, mapping: list[str], unlabeled: str, class_names: list[str], class_balance: bool
    ) -> torch.Tensor:
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()
        counts_by_name = {
            name: int((codes == i).sum()) for i, name in enumerate(mapping) if name != unlabeled
        }
        counts = np.array([counts_by_name.get(c, 0) for c in class_names], dtype=np.float64)
        if counts.sum() == 0:
            # An AnnData without labels (loading a saved model for prediction): the weights
            # come from the saved state; training refuses (see train).
            return torch.ones(len(class_names))
        empty = [c for c, n in zip(class_names, counts, strict=True) if n == 0]
        if empty:
            warnings.warn(
                f"Classes without any labelled cell get weight 0 and will rarely be predicted: "
                f"{empty}. Drop unused categories (obs[labels_key].cat.remove_unused_categories())"
                " to remove them.",
                UserWarning,
                stacklevel=3,
            )
        if not class_balance:
            return torch.ones(len(class_names))
        weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
        return torch.as_tensor(weights, dtype=torch.float32)

    # ------------------------------------------------------------------ setup
    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        labels_key: str | None = None,
        unlabeled_category: str = DEFAULT_UNLABELED,
        layer: str | None = None,
        batch_key: str | None = None,
        log_normalized: bool = False,
        **kwargs,
    ) -> None:
        """Register an AnnData with its cell-type labels.

        Parameters
        ----------
        adata
            Cells x genes; the matrix is checked, never modified.
        labels_key
            Column of ``adata.obs`` with the cell types.
        unlabeled_category
            Value of ``labels_key`` that marks cells without a label; they do not enter the
            loss (and are never predicted).
        layer
            Layer with the raw counts; ``None`` uses ``adata.X``.
        batch_key
            Column of ``adata.obs`` with the batches; used only by query models
            (:meth:`load_query_data`).
        log_normalized
            The matrix holds ``normalize_total`` + ``log1p`` values.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Raises
        ------
        KeyError
            When ``labels_key``, ``batch_key`` or ``layer`` do not exist.
        ValueError
            On invalid expression values or missing (NaN) labels.

        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_expression(adata, layer, log_normalized)
        check_unique_var_names(adata.var_names)
        if "source_registry" in kwargs and labels_key is not None and labels_key not in adata.obs:
            # Loading a saved classifier onto cells without labels: all of them are unlabeled.
            kwargs["allow_missing_labels"] = True
            labels_check = None
        else:
            labels_check = labels_key
        check_obs_column(adata, batch_key, "batch_key")
        if labels_check is not None and labels_check not in adata.obs:
            check_obs_column(adata, labels_check, "labels_key")
        if labels_check is not None and adata.obs[labels_key].isna().any():
            n_missing = int(adata.obs[labels_key].isna().sum())
            raise ValueError(
                f"adata.obs[{labels_key!r}] has {n_missing} missing (NaN) labels. Fill them with "
                f"the unlabeled category, e.g. adata.obs[{labels_key!r}] = adata.obs"
                f"[{labels_key!r}].cat.add_categories({unlabeled_category!r}).fillna("
                f"{unlabeled_category!r}), so that they are treated as unlabeled."
            )
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=not log_normalized),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            LabelsWithUnlabeledObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, unlabeled_category),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def from_ssl_in_scg(
        cls,
        checkpoint,
        genes,
        adata: AnnData,
        labels=None,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        layer: str | None = None,
    ) -> SSLClassifier:
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
            study's ``cell_type.parquet``); ``None`` names them ``class_0 ...``.
        min_overlap
            Smallest share of the checkpoint's genes ``adata`` must have.
        layer
            Layer of ``adata`` with the counts; ``None`` for ``adata.X``.

        """
        parsed = read_ssl_in_scg_classifier(checkpoint, genes, labels=labels)
        warn_ambiguous_symbols(parsed.gene_vocabulary, adata)
        data, report = align_to_vocabulary(
            adata, parsed.gene_vocabulary, layer=layer, min_overlap=min_overlap
        )
        logger.info("from_ssl_in_scg: %s", report)
        data.uns["scssl_alignment"] = report.as_dict()
        # The published classifier comes without labelled cells: every cell is unlabeled.
        unlabeled, labels_key = "__unlabeled__", "_ssl_in_scg_label"
        data.obs[labels_key] = pd.Categorical(
            [unlabeled] * data.n_obs, categories=[*parsed.labels, unlabeled]
        )
        ckpt = parsed.checkpoint
        model = cls.from_state_dict(
            parsed.state_dict,
            parsed.gene_vocabulary,
            data,
            init_params={
                **ckpt.architecture,
                "head_dropout_rate": ckpt.dropout_rate,
                "class_names": parsed.labels,
            },
            setup_args={
                "labels_key": labels_key,
                "unlabeled_category": unlabeled,
                "layer": layer,
                "batch_key": None,
                "log_normalized": False,
            },
            strict=False,
            source=ckpt.path,
        )
        model.pretrained_from_ = provenance(ckpt, model, list(parsed.state_dict), ckpt.unmapped)
        return model

    @classmethod
    def from_encoder(
        cls,
        encoder,
        adata: AnnData,
        labels_key: str,
        freeze_encoder: bool = False,
        unlabeled_category: str = DEFAULT_UNLABELED,
        head_dropout_rate: float = 0.1,
        dropout_rate: float | None = None,
        class_balance: bool = True,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
    ) -> SSLClassifier:
        """A classifier whose encoder starts from a pretrained :class:`~scssl.model.SSLEncoder`.

        ``adata`` is set up here (aligned to the encoder's gene vocabulary first when its genes
        differ: missing genes zero-filled, extra ones dropped). The encoder's weights are copied,
        architecture and activation included; the encoder passed in is left unchanged.

        Parameters
        ----------
        encoder
            A trained :class:`scssl.model.SSLEncoder`.
        adata
            Reference cells with raw counts where the encoder expects them (``.X`` or its layer).
        labels_key
            Column of ``adata.obs`` with the cell types.
        freeze_encoder
            Train only the head (a linear probe) instead of fine-tuning the whole network.
        unlabeled_category
            Label value of cells without a label.
        head_dropout_rate
            Dropout before the classification layer.
        dropout_rate
            Dropout of the encoder during fine-tuning; ``None`` keeps the encoder's.
        class_balance
            Class-balanced cross-entropy (inverse class frequency weights).
        min_overlap
            Smallest share of the encoder's genes that must be found in ``adata``.

        """
        architecture = checked_encoder(encoder)
        if labels_key not in adata.obs:
            raise KeyError(
                f"labels_key={labels_key!r} is not a column of adata.obs (columns: "
                f"{list(adata.obs.columns)})."
            )
        if encoder.module.batch_centering:
            warnings.warn(
                "The encoder centres each batch's input (batch_centering=True); the classifier "
                "fine-tunes on uncentred input, so its starting point differs from the "
                "encoder's embedding. Pretrain with batch_centering=False for an exact copy.",
                UserWarning,
                stacklevel=2,
            )
        setup_args = encoder.registry_["setup_args"]
        # a new AnnData (sharing the matrix): registering it never touches the user's object
        aligned, report = align_to_vocabulary(
            adata, encoder.gene_vocabulary, layer=setup_args["layer"], min_overlap=min_overlap
        )
        logger.info("from_encoder: %s", report)
        cls.setup_anndata(
            aligned,
            labels_key=labels_key,
            unlabeled_category=unlabeled_category,
            layer=setup_args["layer"],
            log_normalized=setup_args["log_normalized"],
        )
        if dropout_rate is not None:
            architecture["dropout_rate"] = dropout_rate
        model = cls(
            aligned,
            **architecture,
            head_dropout_rate=head_dropout_rate,
            class_balance=class_balance,
            freeze_encoder=freeze_encoder,
        )
        copy_encoder(model, encoder)
        model.module.set_trainable()
        return model

    # -------------------------------------------------------------- training
    def train(
        self,
        max_epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        train_size: float = 0.8,
        validation_size: float | None = 0.1,
        calibrate: bool = True,
        early_stopping: bool = True,
        early_stopping_patience: int = 5,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        checkpoint_dir: str | Path | None = None,
        **trainer_kwargs,
    ):
        """Fine-tune on the labelled cells, then fit the softmax temperature.

        The cells are split into training (``train_size``), validation (``validation_size``,
        drives early stopping on the validation loss) and calibration cells (the rest), on which
        the temperature is fitted when ``calibrate``. A query model
        (:meth:`load_query_data`) trains its batch shifts only, without labels.

        Parameters
        ----------
        max_epochs
            Upper bound on epochs.
        batch_size
            Cells per minibatch.
        lr, weight_decay
            AdamW learning rate and weight decay.
        train_size, validation_size
            Shares of the cells for training and validation; the remainder calibrates.
        calibrate
            Fit the temperature on the calibration cells and report the expected calibration
            error before and after in ``calibration_``.
        early_stopping
            Stop when the validation loss has not improved for ``early_stopping_patience`` epochs.
        early_stopping_patience
            Epochs without improvement before stopping.
        accelerator, devices
            Lightning's hardware options.
        plan_kwargs
            Further options of :class:`scvi.train.TrainingPlan`.
        checkpoint_dir
            Save ``last.ckpt`` (weights, optimiser state, epoch) here after every epoch; an
            interrupted run continues with ``ckpt_path="<checkpoint_dir>/last.ckpt"``.
        **trainer_kwargs
            Further options of the Lightning ``Trainer``.

        """
        query = self.query_batches_ is not None
        if validation_size is None:
            validation_size = 0.0
        if train_size + validation_size > 1.0 + 1e-9:
            raise ValueError(
                f"train_size + validation_size = {train_size + validation_size} exceeds 1."
            )
        if query:
            calibrate = False
        if not any(p.requires_grad for p in self.module.parameters()):
            raise ValueError("Nothing to train: every parameter is frozen.")
        if not query and len(self._labelled_codes(np.arange(self.adata.n_obs))[0]) == 0:
            raise ValueError(
                "No labelled cells: every cell has the unlabeled category; a classifier needs "
                "labels to train."
            )
        plan_kwargs = adamw_plan(lr, weight_decay, plan_kwargs)
        early_stopping = set_early_stopping(
            trainer_kwargs,
            early_stopping,
            early_stopping_patience,
            validation_cells(self.adata.n_obs, train_size, validation_size),
        )
        trainer_kwargs = checkpointing(trainer_kwargs, checkpoint_dir)
        with interruptible(self), training_mode(self.module):
            out = super().train(
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                train_size=train_size,
                validation_size=validation_size if validation_size > 0 else None,
                load_sparse_tensor=True,
                batch_size=batch_size,
                early_stopping=early_stopping,
                plan_kwargs=plan_kwargs,
                **trainer_kwargs,
            )
        if calibrate:
            self.calibrate()
        return out

    def _labelled_codes(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions among ``indices`` of labelled cells and their class codes."""
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()[indices]
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        names = np.asarray([str(c) for c in state.categorical_mapping])[codes]
        lookup = {c: i for i, c in enumerate(self.class_names_)}
        class_codes = np.array([lookup.get(n, -1) for n in names], dtype=np.int64)
        keep = class_codes >= 0
        return np.asarray(indices)[keep], class_codes[keep]

    def calibrate(self, indices: Sequence[int] | None = None) -> dict:
        """Fit the softmax temperature on held-out labelled cells of the reference.

        Parameters
        ----------
        indices
            Cells (positions in the registered AnnData) to fit on; default: the calibration cells
            left out of training and validation.

        Returns
        -------
        ``calibration_``: the temperature, the number of cells, and the expected calibration
        error on them before and after (``ece_before``, ``ece_after``), plus the same on the
        validation cells (not used for the fit; ``ece_validation_before/after``).

        """
        if indices is None:
            indices = self.test_indices
        if indices is None or len(indices) == 0:
            warnings.warn(
                "No held-out cells to calibrate on (train_size + validation_size = 1); the "
                "probabilities stay uncalibrated.",
                UserWarning,
                stacklevel=2,
            )
            return {}
        cells, codes = self._labelled_codes(np.asarray(indices))
        if len(cells) < 10:
            warnings.warn(
                f"Only {len(cells)} labelled held-out cells; temperature not fitted.",
                UserWarning,
                stacklevel=2,
            )
            return {}
        logits = self._logits(self.adata, cells, calibrated=False)
        temperature = fit_temperature(torch.as_tensor(logits), torch.as_tensor(codes))
        self.module.temperature.fill_(temperature)
        result = {"temperature": temperature, "n_cells": len(cells)}
        result.update(ece_before_after(logits, codes, temperature))
        val = self.validation_indices
        if val is not None and len(val):
            vcells, vcodes = self._labelled_codes(np.asarray(val))
            if len(vcells):
                vlogits = self._logits(self.adata, vcells, calibrated=False)
                result.update(ece_before_after(vlogits, vcodes, temperature, "_validation"))
                result["n_validation_cells"] = len(vcells)
        self.calibration_ = result
        logger.info(
            "Temperature %.3f; ECE on %d held-out cells %.4f -> %.4f",
            temperature,
            len(cells),
            result["ece_before"],
            result["ece_after"],
        )
        return result

    # ------------------------------------------------------ query mapping
    @classmethod
    def load_query_data(
        cls,
        adata: AnnData,
        reference_model: SSLClassifier | str | Path,
        batch_key: str | None = None,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
    ) -> SSLClassifier:
        """Map a query from new batches onto a trained classifier without retraining it.

        The returned model shares the reference's encoder and head (frozen) and adds, for each
        query batch, a learned shift of the first hidden layer (initialised at zero, so before
        training it predicts exactly as the reference). :meth:`train` then fits only these shifts,
        without labels, by information maximisation (confident yet diverse predictions; SHOT,
        Liang et al. 2020). The reference model and ``adata`` are not modified.

        Parameters
        ----------
        adata
            Query cells (raw counts; genes aligned to the reference's vocabulary).
        reference_model
            A trained classifier or the directory it was saved to.
        batch_key
            Column of ``adata.obs`` with the query's batches (chemistry, donor, condition);
            ``None`` treats the query as one batch.
        min_overlap
            Smallest share of the reference's genes that must be found in ``adata``.

        """
        if isinstance(reference_model, str | Path):
            # Needs the reference saved with save_anndata=True.
            reference_model = cls.load(str(reference_model))
        if reference_model.query_batches_ is not None:
            raise ValueError("reference_model is already a query model; pass the reference.")
        reference_model._check_if_trained(warn=True)
        if batch_key is not None and batch_key not in adata.obs:
            raise KeyError(
                f"batch_key={batch_key!r} is not a column of adata.obs (columns: "
                f"{list(adata.obs.columns)})."
            )
        aligned, _ = align_to_vocabulary(
            adata,
            reference_model.gene_vocabulary,
            layer=reference_model._layer,
            min_overlap=min_overlap,
        )
        aligned.obs = aligned.obs[[batch_key]].copy() if batch_key is not None else aligned.obs[[]]
        setup_args = dict(reference_model.registry_["setup_args"])
        unlabeled = setup_args["unlabeled_category"]
        # The query has no labels: every cell is of the unlabeled category.
        aligned.obs["_scssl_query_labels"] = unlabeled
        setup_args.update(labels_key="_scssl_query_labels", batch_key=batch_key)
        batches = ["query"]
        if batch_key is not None:
            batches = [
                str(b) for b in pd.Categorical(aligned.obs[batch_key].astype(str)).categories
            ]
        model = cls.from_state_dict(
            reference_model.module.state_dict(),
            reference_model.gene_vocabulary,
            aligned,
            init_params={
                **reference_model.init_params,
                "class_names": reference_model.class_names_,
                "query_batches": batches,
            },
            setup_args=setup_args,
            attributes={"calibration_": reference_model.calibration_, "is_trained_": False},
            strict=False,
        )
        model.module.set_trainable()
        return model

    # ------------------------------------------------------------- outputs
    def _query_codes(self, adata: AnnData, indices: np.ndarray, device) -> torch.Tensor | None:
        """Each cell's query batch (``-1``: not a query batch) for a query model, else None."""
        if self.query_batches_ is None:
            return None
        key = self.registry_["setup_args"]["batch_key"]
        if key is None:  # the query is one batch
            return torch.zeros(len(indices), dtype=torch.long, device=device)
        if key not in adata.obs:
            raise KeyError(
                f"This query model adapts to batches of adata.obs[{key!r}], which is missing."
            )
        lookup = {b: i for i, b in enumerate(self.query_batches_)}
        values = adata.obs[key].astype(str).to_numpy()[indices]
        # Batches not seen by the query model get no shift (the reference's prediction).
        codes = [lookup.get(v, -1) for v in values]
        return torch.as_tensor(codes, dtype=torch.long, device=device)

    def _embedder(self, adata: AnnData) -> MinibatchStep:
        return lambda chunk, x: self.module.embed(x, self._query_codes(adata, chunk, x.device))

    def _logits(self, adata, indices, calibrated=True, batch_size=None) -> np.ndarray:
        def logits(chunk: np.ndarray, x: torch.Tensor) -> torch.Tensor:
            return self.module.logits(x, self._query_codes(adata, chunk, x.device), calibrated)

        return self._map_minibatches(adata, indices, logits, self.module.n_classes, batch_size)

    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        calibrated: bool = True,
        batch_size: int | None = None,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
    ) -> np.ndarray | pd.DataFrame:
        """Cell types of ``adata`` (aligned to the model's genes first), or their probabilities.

        Parameters
        ----------
        adata
            Cells to classify; ``None`` for the AnnData the model was set up with. Genes are
            matched by Ensembl ID or symbol; missing ones are zero-filled.
        indices
            Subset of cells (positions).
        soft
            Return a DataFrame of probabilities (cells x classes, rows sum to 1) instead of
            labels.
        calibrated
            Apply the fitted temperature (see :meth:`calibrate`).
        batch_size
            Cells per minibatch.
        min_overlap
            Smallest share of the model's genes that must be found in ``adata``.

        """
        self._check_if_trained(warn=True)
        adata, indices = self._cells(adata, indices, min_overlap)
        logits = torch.as_tensor(self._logits(adata, indices, calibrated, batch_size))
        probabilities = torch.softmax(logits, dim=1).numpy()
        names = np.asarray(self.class_names_, dtype=object)
        if soft:
            return pd.DataFrame(
                probabilities, index=adata.obs_names[indices], columns=pd.Index(names)
            )
        return names[probabilities.argmax(axis=1)] if len(probabilities) else names[:0]
