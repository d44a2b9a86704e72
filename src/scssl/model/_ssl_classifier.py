"""SSLClassifier: a pretrained SSL encoder fine-tuned for cell-type prediction."""

from __future__ import annotations

import inspect
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

from scssl.data import (
    DEFAULT_MIN_OVERLAP,
    check_expression,
    check_label_column,
    check_obs_column,
    check_unique_var_names,
    warn_rare_labels,
)
from scssl.data._warnings import warn_user
from scssl.module import ClassifierModule

from ._calibration import temperature_scaling
from ._classifier_sources import DEFAULT_UNLABELED, ClassifierSourcesMixin
from ._finetuning import (
    ClassBalance,
    class_weights,
    discriminative_plan,
    interpolate_weights,
    interpolation_start,
    labelled_class_counts,
    split_labelled,
    start_head,
)
from ._ssl_encoder import SSLEncoder
from ._ssl_options import build_ssl_module, options_in_weights, resolve_gene_mask
from ._statistics import centering_table
from .base import (
    MinibatchStep,
    SSLModelBase,
    fit_options,
    fitting,
)

logger = logging.getLogger(__name__)

#: The encoder options a classifier is not given take SSLEncoder's defaults.
_ENCODER_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(SSLEncoder.__init__).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}


class SSLClassifier(ClassifierSourcesMixin, SSLModelBase):
    """Cell-type classifier: the SSL encoder, kept learning its pretext, with a linear head.

    Build it from a pretrained :class:`scssl.model.SSLEncoder` with :meth:`from_encoder` on
    labelled reference cells, best together with the unlabelled query cells (labels of the
    unlabeled category): :meth:`train` then fine-tunes semi-supervised, with the pretext loss on
    every cell and the encoder's batch handling (centering, adversary) keeping reference and
    query aligned. Training starts from a linear probe (logistic regression on the frozen
    embedding), uses a class-balanced cross-entropy and a lower learning rate for the encoder,
    runs a fixed number of epochs, and ends by fitting a softmax temperature on held-out
    labelled cells (``calibration_`` reports the calibration error before and after).

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`; its genes become the gene vocabulary.
    class_names
        Class names in output order; taken from the registered labels when ``None``.
    class_balance
        Cross-entropy weight of each class: ``"inverse"`` of its frequency (the default: rare
        types count as much as common ones), ``"sqrt"`` of that, or ``"none"``.
    head_activation
        Activation before the head: ``None`` (the embedding, standardised), ``"relu"`` (the
        study's classifiers), ``"selu"``, ``"gelu"``.
    head_dropout_rate
        Dropout before the classification layer.
    pretext_weight
        Weight of the encoder's pretext loss on all cells during fine-tuning; 0: labels only.
        The default 3 keeps more of what pretraining learnt than 1 (chosen on pbmc_3tech and
        Kang; see *A heavier pretext while fine-tuning* in the label-transfer docs).
    freeze_encoder
        Train the head only (a linear probe).
    **encoder_kwargs
        The encoder's options, as :class:`scssl.model.SSLEncoder` takes them (``pretext``,
        ``n_hidden``, ``n_latent``, ``batch_centering``, ``batch_adversary_weight`` ...).

    Examples
    --------
    >>> unlabelled = query.copy()
    >>> unlabelled.obs["cell_type"] = "Unknown"  # unlabeled_category: no cross-entropy
    >>> both = anndata.concat([reference, unlabelled])
    >>> clf = scssl.model.SSLClassifier.from_encoder(encoder, both, labels_key="cell_type")
    >>> clf.train()
    >>> clf.predict(query, soft=True)     # calibrated probabilities, one column per class

    """

    _module_cls = ClassifierModule
    _options_in_weights = staticmethod(options_in_weights)
    _missing_data = (
        "SSLClassifier needs an AnnData registered with SSLClassifier.setup_anndata, or "
        "use SSLClassifier.from_encoder(encoder, adata, labels_key)."
    )

    def __init__(
        self,
        adata: AnnData,
        class_names: Sequence[str] | None = None,
        class_balance: ClassBalance = "inverse",
        head_activation: str | None = None,
        head_dropout_rate: float = 0.1,
        pretext_weight: float = 3.0,
        freeze_encoder: bool = False,
        **encoder_kwargs,
    ):
        super().__init__(adata)
        class_names, counts = labelled_class_counts(self.adata_manager, class_names)
        self.class_names_ = class_names
        self._start_weights = None  # the weights fine-tuning starts from, while it runs
        encoder_kwargs["mask_unmeasured_genes"] = resolve_gene_mask(
            adata, encoder_kwargs.get("mask_unmeasured_genes")
        )
        summary, encoder_kwargs["gene_sets"] = build_ssl_module(
            self,
            self._module_cls,
            module_kwargs={
                "n_classes": len(class_names),
                "head_activation": head_activation,
                "head_dropout_rate": head_dropout_rate,
                "class_weights": torch.as_tensor(class_weights(counts, class_balance)),
                "pretext_weight": pretext_weight,
                "freeze_encoder": freeze_encoder,
            },
            **{**_ENCODER_DEFAULTS, **encoder_kwargs},
        )
        self._model_summary_string = (
            f"SSLClassifier: {len(class_names)} classes, {summary}, "
            f"pretext_weight={pretext_weight}, freeze_encoder={freeze_encoder}"
        )
        self.init_params_ = self._get_init_params(locals())
        #: Set by :meth:`calibrate`.
        self.calibration_: dict | None = None

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
            Value of ``labels_key`` that marks cells without a label (e.g. the query's); they
            do not enter the cross-entropy, and take part in the pretext loss.
        layer
            Layer with the raw counts; ``None`` uses ``adata.X``.
        batch_key
            Column of ``adata.obs`` with the batches (the encoder's ``batch_key``).
        log_normalized
            The matrix holds ``normalize_total`` + ``log1p`` values.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Raises
        ------
        KeyError
            When ``labels_key``, ``batch_key`` or ``layer`` do not exist.
        ValueError
            On invalid expression values or missing (NaN) labels or batches.

        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_expression(adata, layer, log_normalized)
        check_unique_var_names(adata.var_names)
        check_obs_column(adata, batch_key, "batch_key")
        if "source_registry" in kwargs and labels_key is not None and labels_key not in adata.obs:
            # Loading a saved classifier onto cells without labels: all of them are unlabeled.
            kwargs["allow_missing_labels"] = True
        elif labels_key is not None:
            check_label_column(adata, labels_key, unlabeled_category)
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=not log_normalized),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            LabelsWithUnlabeledObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, unlabeled_category),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        with warnings.catch_warnings():  # it names a category code; warn_rare_labels the type
            warnings.filterwarnings("ignore", message=r".*'_scvi_labels'\] has fewer than 3")
            adata_manager.register_fields(adata, **kwargs)
        if labels_key is not None and "source_registry" not in kwargs:  # not loading a model
            warn_rare_labels(adata, labels_key, unlabeled_category)
        cls.register_manager(adata_manager)

    # -------------------------------------------------------------- training
    def train(
        self,
        max_epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        encoder_lr: float = 1e-4,
        weight_decay: float = 0.01,
        validation_size: float = 0.2,
        validation_min_cells: int = 10,
        linear_probe_start: bool = True,
        finetuned_share: float = 1.0,
        calibrate: bool = True,
        early_stopping: bool = False,
        early_stopping_patience: int = 5,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        checkpoint_dir: str | Path | None = None,
        seed: int = 0,
        **trainer_kwargs,
    ):
        """Fine-tune on the labelled cells (and the pretext on all cells), then calibrate.

        A stratified share ``validation_size`` of the labelled cells is held out; the others
        and every unlabelled cell train for ``max_epochs`` epochs (passes over the labelled
        cells, at least 10 steps and enough to draw a third of all cells), each step taking
        ``batch_size`` labelled cells and as many drawn from all (pretext and adversary), the
        head starting as a linear probe.

        Parameters
        ----------
        max_epochs, batch_size
            Passes over the labelled training cells; labelled cells per step.
        lr, encoder_lr, weight_decay
            AdamW learning rates of the head, decoder and adversary (``lr``) and of the
            pretrained encoder (``encoder_lr``), and the weight decay.
        validation_size
            Share of the labelled cells held out (calibration, early stopping); 0 trains on all
            of them, without calibration.
        validation_min_cells
            Cell types with fewer labelled cells hold none out: one or two held-out cells
            validate nothing and cost such a type a large share of its training cells.
        linear_probe_start
            Start the head from a logistic regression on the frozen embedding.
        finetuned_share
            In [0, 1]. Each parameter ends at ``start + finetuned_share * (fine-tuned - start)``
            (WiSE-FT), ``start`` being the weights before training with the linear-probe head;
            1 keeps the fine-tuned model, 0 the start. Below 1 it helped a little within a
            study and collapsed the classifier across studies (see *Label transfer* docs).
        calibrate
            Fit the temperature on held-out labelled cells (see :meth:`calibrate`).
        early_stopping, early_stopping_patience
            Stop when the validation loss has not improved for this many epochs (the last
            model is kept, not the best, and interpolated when ``finetuned_share`` < 1).
        accelerator, devices
            Lightning's hardware options.
        plan_kwargs
            Further options of the training plan (:class:`scssl.train.SSLTrainingPlan`).
        checkpoint_dir
            Save ``last.ckpt`` (weights before the interpolation, optimiser state, epoch) here
            after every epoch; an interrupted run continues with
            ``ckpt_path="<checkpoint_dir>/last.ckpt"``.
        seed
            Seed of the split and of the linear probe.
        **trainer_kwargs
            Further options of the Lightning ``Trainer`` (``max_time`` ...).

        """
        train, validation = self._split(validation_size, validation_min_cells, seed)
        self._start_head(train, linear_probe_start, seed)
        trainer_kwargs, early_stopping = fit_options(
            trainer_kwargs, checkpoint_dir, early_stopping, early_stopping_patience, len(validation)
        )
        plan_kwargs = discriminative_plan(self.module, lr, encoder_lr, weight_decay, plan_kwargs)
        out = self._fit(
            train,
            validation,
            batch_size,
            finetuned_share,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            early_stopping=early_stopping,
            plan_kwargs=plan_kwargs,
            **trainer_kwargs,
        )
        if calibrate and validation_size > 0:
            self.calibrate(validation)
        return out

    def _fit(
        self,
        train: np.ndarray,
        validation: np.ndarray,
        batch_size: int,
        share: float,
        **kwargs,
    ):
        """Lightning's fit on the split, then the interpolation with the start (``share``).

        Each step takes labelled and drawn halves (in memory).
        """
        start = interpolation_start(self.module, share)
        if start is not None and kwargs.get("ckpt_path") and self._start_weights is not None:
            start = self._start_weights  # resuming: the interrupted run's start, not its weights
        self._start_weights = start
        in_memory = not getattr(self.adata, "isbacked", False)
        self.module.labelled_per_step = batch_size if in_memory else 0
        try:
            with fitting(self):
                out = super().train(
                    load_sparse_tensor=True,
                    batch_size=batch_size,
                    datasplitter_kwargs={
                        "external_indexing": [train, validation, np.array([], dtype=np.int64)],
                        "labelled_indices": self._labelled(train)[0] if in_memory else None,
                    },
                    **kwargs,
                )
        finally:
            self.module.labelled_per_step = 0
        if start is not None:
            interpolate_weights(self.module, start, share)
        self._start_weights = None
        return out

    def _split(
        self, validation_size: float, min_cells: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if not any(p.requires_grad for p in self.module.parameters()):
            raise ValueError("Nothing to train: every parameter is frozen.")
        codes = self._class_codes(np.arange(self.adata.n_obs))
        return split_labelled(codes, self.module.n_classes, validation_size, min_cells, seed)

    def _class_codes(self, indices: np.ndarray) -> np.ndarray:
        """Class code of each cell at ``indices`` (``-1`` for unlabelled cells)."""
        codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY).ravel()[indices]
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        names = np.asarray([str(c) for c in state.categorical_mapping])[codes]
        lookup = {c: i for i, c in enumerate(self.class_names_)}
        return np.array([lookup.get(n, -1) for n in names], dtype=np.int64)

    def _labelled(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labelled cells among ``indices`` and their class codes."""
        codes = self._class_codes(np.asarray(indices, dtype=np.int64))
        keep = codes >= 0
        return np.asarray(indices)[keep], codes[keep]

    def _encoded(self, cells: np.ndarray) -> np.ndarray:
        """Embeddings (before the head's activation) of registered cells, in eval mode."""
        adata = self.adata
        centering = self._centering(adata)

        def encode(chunk, x):
            return self.module.encode(self.module.normalize(x), *centering(chunk, x.device))

        return self._map_minibatches(adata, cells, encode, self.module.n_latent, None)

    def _start_head(self, train: np.ndarray, linear_probe: bool, seed: int) -> None:
        """Standardise the embedding over the labelled training cells; optionally fit the head."""
        cells, codes = self._labelled(train)
        start_head(self.module, self._encoded(cells), codes, linear_probe, seed)

    def calibrate(self, indices: Sequence[int]) -> dict:
        """Fit the softmax temperature on labelled cells at ``indices`` (held out of training).

        Returns
        -------
        ``calibration_``: the temperature, the number of cells, and the expected calibration
        error on them before and after (``ece_before``, ``ece_after``).

        """
        cells, codes = self._labelled(np.asarray(indices, dtype=np.int64))
        if len(cells) < 10:
            warn_user(
                f"Only {len(cells)} labelled held-out cells; the temperature is not fitted and "
                "the probabilities stay uncalibrated."
            )
            return {}
        result = temperature_scaling(self._logits(self.adata, cells, calibrated=False), codes)
        self.module.temperature.fill_(result["temperature"])
        self.calibration_ = result
        logger.info(
            "Temperature %(temperature).3f; ECE on %(n_cells)d held-out cells "
            "%(ece_before).4f -> %(ece_after).4f",
            result,
        )
        return result

    # ------------------------------------------------------------- outputs
    def _centering(self, adata: AnnData):
        """``(chunk, device) -> (batch codes, batch shifts)`` of ``adata``'s cells.

        ``(None, None)`` without batch centering; cells of new batches are centred on their own
        batch's mean (see :func:`scssl.model._statistics.centering_table`).
        """
        if not self.module.batch_centering:
            return lambda chunk, device: (None, None)
        codes, deltas = centering_table(self, adata)
        return lambda chunk, device: (torch.as_tensor(codes[chunk]).to(device), deltas)

    def _embedder(self, adata: AnnData) -> MinibatchStep:
        centering = self._centering(adata)
        return lambda chunk, x: self.module.embed(x, *centering(chunk, x.device))

    def _logits(self, adata, indices, calibrated=True, batch_size=None) -> np.ndarray:
        centering = self._centering(adata)

        def logits(chunk: np.ndarray, x: torch.Tensor) -> torch.Tensor:
            return self.module.logits(x, *centering(chunk, x.device), calibrated)

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
            matched by Ensembl ID or symbol; missing ones are zero-filled. With batch centering,
            cells of batches the model has not seen are centred on their own batch's mean.
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
