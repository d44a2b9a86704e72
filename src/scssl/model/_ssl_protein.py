"""SSLProteinPredictor: surface proteins from RNA (CITE-seq references as MuData)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager, fields

from scssl.data import DEFAULT_MIN_OVERLAP, GeneVocabulary, placeholder_anndata
from scssl.data._warnings import warn_user
from scssl.module import SSLProteinModule
from scssl.nn import DEFAULT_N_HIDDEN, DEFAULT_N_LATENT

from ._from_encoder import checked_encoder, copy_encoder
from ._mudata import (
    check_batch_column,
    check_proteins,
    check_rna,
    check_same_cells,
    checked_modalities,
    modality,
    quiet_mudata,
    rna_with_obs,
    with_aligned_rna,
)
from .base import SSLModelBase, adamw_plan, batch_codes, fit_options, fitting, validation_cells

logger = logging.getLogger(__name__)

PROTEIN_BATCH_MASK = fields.ProteinObsmField.PROTEIN_BATCH_MASK


class SSLProteinPredictor(SSLModelBase):
    """Predict surface proteins from RNA with a (pretrained) SSL encoder and a regression head.

    The RNA counts are normalised on the fly (``normalize_total`` to 1e4, ``log1p``) and embedded
    by the study's MLP encoder; a head maps the embedding (and, optionally, the batch) to
    ``log1p`` protein counts, trained with mean squared error. Build it from a pretrained
    :class:`~scssl.model.SSLEncoder` with :meth:`from_encoder` (the study's recipe: pretraining
    helps), or from scratch on a MuData registered with :meth:`setup_mudata`.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`. The genes of its RNA modality become the
        model's gene vocabulary.
    n_latent
        Embedding size.
    n_hidden
        Hidden layer sizes of the encoder.
    n_hidden_head
        Hidden layer sizes of the head; ``()`` for a linear head.
    dropout_rate
        Dropout in the encoder.
    head_dropout_rate
        Dropout in the head.
    activation
        ``"selu"`` (the study), ``"relu"`` or ``"gelu"``.
    freeze_encoder
        Train only the head and keep the encoder fixed.

    Examples
    --------
    >>> enc = scssl.model.SSLEncoder.load("pbmc_encoder/")
    >>> model = scssl.model.SSLProteinPredictor.from_encoder(enc, mdata, rna="rna", protein="prot")
    >>> model.train(max_epochs=50)
    >>> proteins = model.predict_protein(rna_only_adata)  # cells x proteins, log1p counts

    """

    _module_cls = SSLProteinModule
    _missing_data = (
        "SSLProteinPredictor needs a MuData registered with "
        "SSLProteinPredictor.setup_mudata(mdata)."
    )
    _setup_method = "setup_mudata"

    def __init__(
        self,
        mdata: MuData,
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        n_hidden_head: Sequence[int] = (256,),
        dropout_rate: float = 0.1,
        head_dropout_rate: float = 0.1,
        activation: str = "selu",
        freeze_encoder: bool = False,
    ):
        super().__init__(mdata)
        setup_args = self.adata_manager.registry["setup_args"]
        protein_state = self.adata_manager.get_state_registry(REGISTRY_KEYS.PROTEIN_EXP_KEY)
        self.protein_names_ = [str(p) for p in protein_state.column_names]
        n_batch = self.summary_stats.n_batch
        mask = self._protein_batch_mask(protein_state, n_batch)
        self.module = self._module_cls(
            self.summary_stats.n_vars,
            len(self.protein_names_),
            n_batch=n_batch,
            n_latent=n_latent,
            n_hidden=tuple(n_hidden),
            n_hidden_head=tuple(n_hidden_head),
            dropout_rate=dropout_rate,
            head_dropout_rate=head_dropout_rate,
            activation=activation,
            log_normalized=setup_args["log_normalized"],
            freeze_encoder=freeze_encoder,
            protein_batch_mask=mask,
            protein_mean=self._protein_log1p_mean(mask),
        )
        rna = self.adata.mod[setup_args["modalities"]["rna_layer"]]
        self.gene_vocabulary_ = GeneVocabulary.from_adata(rna).to_dict()
        self._model_summary_string = (
            f"SSLProteinPredictor: {self.summary_stats.n_vars} genes -> "
            f"{len(self.protein_names_)} proteins, encoder hidden={list(n_hidden)}, "
            f"n_latent={n_latent}, head hidden={list(n_hidden_head)}, activation={activation}, "
            f"freeze_encoder={freeze_encoder}, n_batch={n_batch}"
        )
        self.init_params_ = self._get_init_params(locals())

    # --------------------------------------------------------------- setup
    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        rna_layer: str | None = None,
        protein_layer: str | None = None,
        batch_key: str | None = None,
        log_normalized: bool = False,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        """Register a CITE-seq MuData (RNA and protein counts of the same cells).

        The matrices are checked, never modified. As in totalVI, a protein whose counts are all
        zero within a batch is treated as not measured in that batch and left out of the loss
        there.

        Parameters
        ----------
        mdata
            MuData with an RNA and a protein modality holding the same cells in the same order.
        rna_layer
            Layer of the RNA modality with raw counts; ``None`` uses its ``.X``.
        protein_layer
            Layer of the protein modality with raw counts (ADT UMIs); ``None`` uses its ``.X``.
        batch_key
            Column of ``obs`` (of the modality named by ``modalities["batch_key"]``, the
            MuData's global ``obs`` by default) with each cell's batch. The head receives it as
            a covariate and missing proteins are detected per batch.
        log_normalized
            The RNA matrix already holds ``normalize_total`` + ``log1p`` values.
        modalities
            Which modality holds what, as in scvi-tools' ``setup_mudata``: keys ``rna_layer``,
            ``protein_layer`` and optionally ``batch_key``; default
            ``{"rna_layer": "rna", "protein_layer": "prot"}``.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Raises
        ------
        KeyError
            A modality, layer or ``batch_key`` does not exist.
        ValueError
            Non-count or invalid values (NaN, negative), duplicated protein names, the same
            modality named for RNA and protein, or modalities with different cells.

        """
        modalities = checked_modalities(mdata, modalities)
        setup_method_args = cls._get_setup_method_args(**locals())
        rna_key, protein_key = modalities["rna_layer"], modalities["protein_layer"]
        rna = modality(mdata, rna_key, "rna")
        protein = modality(mdata, protein_key, "protein")
        check_same_cells(mdata, rna, protein, modalities)
        check_rna(rna, rna_key, rna_layer, log_normalized)
        check_proteins(protein, protein_key, protein_layer)
        batch_mod = modalities.get("batch_key")
        check_batch_column(mdata, batch_key, batch_mod)
        batch_field = fields.MuDataCategoricalObsField(
            REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=batch_mod
        )
        mudata_fields = [
            fields.MuDataLayerField(
                REGISTRY_KEYS.X_KEY,
                rna_layer,
                mod_key=rna_key,
                is_count_data=not log_normalized,
                mod_required=True,
            ),
            batch_field,
            fields.MuDataProteinLayerField(
                REGISTRY_KEYS.PROTEIN_EXP_KEY,
                protein_layer,
                mod_key=protein_key,
                use_batch_mask=True,
                batch_field=batch_field,
                is_count_data=True,
                mod_required=True,
            ),
        ]
        adata_manager = AnnDataManager(fields=mudata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_anndata(cls, adata: AnnData, *args, **kwargs) -> None:
        """Not supported: RNA and proteins come together in a MuData; see :meth:`setup_mudata`.

        Raises
        ------
        TypeError
            Always.

        """
        raise TypeError(
            "SSLProteinPredictor needs RNA and protein counts together: put them in a MuData, "
            "mudata.MuData({'rna': rna_adata, 'prot': protein_adata}), and call "
            "SSLProteinPredictor.setup_mudata(mdata). For prediction, an AnnData of RNA counts is "
            "accepted by predict_protein."
        )

    @classmethod
    def from_encoder(
        cls,
        encoder,
        mdata: MuData,
        rna: str = "rna",
        protein: str = "prot",
        freeze_encoder: bool = False,
        n_hidden_head: Sequence[int] = (256,),
        head_dropout_rate: float = 0.1,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        **setup_kwargs,
    ) -> SSLProteinPredictor:
        """A predictor whose encoder starts from a pretrained :class:`~scssl.model.SSLEncoder`.

        The RNA genes are aligned to the encoder's gene vocabulary (by Ensembl ID or symbol,
        missing genes zero-filled, duplicated genes taken from their first occurrence). When they
        already are the vocabulary, ``mdata`` is set up as it is; otherwise the model is set up
        on a new MuData holding the aligned RNA and the proteins (``model.adata``), and ``mdata``
        is left unchanged.

        Parameters
        ----------
        encoder
            A trained :class:`~scssl.model.SSLEncoder`; its encoder weights, architecture and
            gene vocabulary are copied (the encoder itself is not changed).
        mdata
            CITE-seq MuData with RNA and protein counts.
        rna, protein
            Names of the RNA and protein modalities.
        freeze_encoder
            Train only the head (``False``, the default, fine-tunes the encoder as well).
        n_hidden_head, head_dropout_rate
            Head architecture.
        min_overlap
            Smallest share of the encoder's genes that must be found in the RNA modality.
        **setup_kwargs
            Passed to :meth:`setup_mudata` (``rna_layer``, ``protein_layer``, ``batch_key``, ...).

        """
        architecture = checked_encoder(encoder)
        if encoder.module.batch_centering:
            raise ValueError(
                "This SSLEncoder centres its input per batch (batch_centering=True); "
                "SSLProteinPredictor.from_encoder does not carry the per-batch centering over "
                "yet. Use an encoder trained without batch_centering, and pass batch_key= here "
                "to give the protein head a batch covariate."
            )
        if isinstance(mdata, AnnData) or not isinstance(mdata, MuData):
            raise TypeError(
                f"from_encoder needs a MuData, got {type(mdata).__name__}. Build one with "
                "mudata.MuData({'rna': rna_adata, 'prot': protein_adata})."
            )
        modalities = dict(setup_kwargs.pop("modalities", None) or {})
        modalities.update(rna_layer=rna, protein_layer=protein)
        modality(mdata, rna, "rna")
        modality(mdata, protein, "protein")
        setup_kwargs.setdefault("log_normalized", bool(encoder.module.log_normalized))
        target, report = with_aligned_rna(
            mdata, rna, encoder.gene_vocabulary, setup_kwargs.get("rna_layer"), min_overlap
        )
        if report is not None:
            logger.info("from_encoder: RNA genes aligned to the encoder's vocabulary: %s", report)
        cls.setup_mudata(target, modalities=modalities, **setup_kwargs)
        model = cls(
            target,
            n_hidden_head=n_hidden_head,
            head_dropout_rate=head_dropout_rate,
            freeze_encoder=freeze_encoder,
            **architecture,
        )
        copy_encoder(model, encoder)
        model.module.set_encoder_frozen(freeze_encoder)
        model.alignment_report_ = None if report is None else report.as_dict()
        return model

    # ------------------------------------------------------------ helpers
    def _protein_batch_mask(self, protein_state, n_batch: int) -> np.ndarray:
        n_proteins = len(self.protein_names_)
        mask = np.ones((max(n_batch, 1), n_proteins), dtype=np.float32)
        batch_mask = protein_state.get(PROTEIN_BATCH_MASK)
        if batch_mask is not None:
            for code, observed in batch_mask.items():
                mask[int(code)] = np.asarray(observed, dtype=np.float32)
        never = [
            p for p, seen in zip(self.protein_names_, mask.any(axis=0), strict=True) if not seen
        ]
        if never:
            warn_user(
                f"Proteins {never[:5]} have no counts in any cell; the model cannot learn them "
                "and predicts a constant."
            )
        missing = int((mask == 0).sum())
        if missing and not never:
            logger.info(
                "%d protein x batch combinations are not measured; masked in the loss.", missing
            )
        return mask

    def _protein_log1p_mean(self, mask: np.ndarray) -> np.ndarray:
        counts = self.adata_manager.get_from_registry(REGISTRY_KEYS.PROTEIN_EXP_KEY)
        counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
        counts = counts.to_numpy() if isinstance(counts, pd.DataFrame) else counts
        batches = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        observed = mask[batches.astype(int)]
        values = np.log1p(counts.astype(np.float64)) * observed
        return (values.sum(axis=0) / np.maximum(observed.sum(axis=0), 1)).astype(np.float32)

    @property
    def protein_names(self) -> list[str]:
        """The predicted proteins, in the order of the output columns."""
        return list(self.protein_names_)

    @property
    def _setup_args(self) -> dict:
        return self.registry_["setup_args"]

    @property
    def rna_key(self) -> str:
        """The MuData modality the model reads RNA from."""
        return self._setup_args["modalities"]["rna_layer"]

    @property
    def _layer(self) -> str | None:
        return self._setup_args["rna_layer"]

    def _expression_data(self, data) -> AnnData:
        """The RNA of ``data`` (a MuData or an AnnData of RNA), with the cells' joint ``obs``."""
        return rna_with_obs(data, self.rna_key, self._setup_args["modalities"].get("batch_key"))

    # ------------------------------------------------------------ training
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
        plan_kwargs: dict | None = None,
        checkpoint_dir: str | Path | None = None,
        **trainer_kwargs,
    ):
        """Train the head (and fine-tune the encoder unless frozen) with MSE on log1p proteins.

        Parameters
        ----------
        max_epochs
            Epochs; ``None`` uses scvi-tools' heuristic.
        batch_size
            Cells per minibatch.
        lr, weight_decay
            AdamW learning rate and weight decay.
        train_size, validation_size
            Split of the cells; the validation cells drive early stopping.
        early_stopping
            Stop when the validation loss has not improved for ``early_stopping_patience``
            epochs (needs ``train_size < 1``).
        early_stopping_patience
            Epochs without improvement before stopping.
        accelerator, devices
            Lightning's hardware options.
        plan_kwargs
            Further options of the training plan (:class:`scssl.train.SSLTrainingPlan`).
        checkpoint_dir
            Save ``last.ckpt`` (weights, optimiser state, epoch) here after every epoch; an
            interrupted run continues with ``ckpt_path="<checkpoint_dir>/last.ckpt"``.
        **trainer_kwargs
            Further options of :class:`scvi.train.Trainer`.

        """
        plan_kwargs = adamw_plan(lr, weight_decay, plan_kwargs)
        trainer_kwargs, early_stopping = fit_options(
            trainer_kwargs,
            checkpoint_dir,
            early_stopping,
            early_stopping_patience,
            validation_cells(self.adata.n_obs, train_size, validation_size),
        )
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
                plan_kwargs=plan_kwargs,
                **trainer_kwargs,
            )

    # ----------------------------------------------------------- inference
    def _batch_codes(self, obs: pd.DataFrame, transform_batch) -> np.ndarray | None:
        if transform_batch is not None and self.registry_["setup_args"]["batch_key"] is None:
            raise ValueError(
                f"transform_batch={transform_batch!r}, but the model was set up without a "
                "batch_key: its predictions do not depend on the batch. Leave it out."
            )
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        known = [str(c) for c in state.categorical_mapping]
        if transform_batch is not None and str(transform_batch) not in known:
            raise ValueError(
                f"transform_batch={transform_batch!r} is not a batch of the model ({known})."
            )
        if self.module.n_batch_covariate == 0:  # one batch: the head does not read it
            return None
        if transform_batch is not None:
            return np.full(len(obs), known.index(str(transform_batch)), dtype=np.int64)
        key = state.original_key
        hint = f" Pass transform_batch= (one of {known}) to predict them as a known batch."
        if key not in obs:
            raise KeyError(
                f"The model's head uses the batch ({key!r}), which the data's obs lacks. Add "
                f"that column or predict as one known batch with transform_batch= "
                f"(one of {known})."
            )
        return batch_codes(obs[key], known, key, hint)

    def predict_protein(
        self,
        data: MuData | AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        transform_batch: str | None = None,
        counts: bool = False,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        return_numpy: bool = False,
    ) -> pd.DataFrame | np.ndarray:
        """Proteins predicted from RNA alone, cells x proteins.

        Parameters
        ----------
        data
            RNA-only data: a MuData with the RNA modality the model was set up with (other
            modalities, proteins included, are ignored) or an AnnData of RNA counts. Genes are
            aligned to the model's vocabulary. ``None`` for the data the model was set up with.
        indices
            Subset of cells (positions); ``None`` for all.
        batch_size
            Cells per minibatch (default 1024).
        transform_batch
            With a batch covariate: predict every cell as if from this batch. Otherwise each
            cell's batch is read from its ``obs``.
        counts
            Return expected counts (``expm1``) instead of ``log1p`` counts.
        min_overlap
            Smallest share of the model's genes that must be found.
        return_numpy
            Return an array instead of a DataFrame (cells as index, proteins as columns).

        """
        self._check_if_trained(warn=True)
        rna, indices = self._cells(data, indices, min_overlap)
        codes = self._batch_codes(rna.obs, transform_batch)

        def predict(chunk: np.ndarray, x: torch.Tensor) -> torch.Tensor:
            batch_index = None if codes is None else torch.from_numpy(codes[chunk]).to(x.device)
            return self.module.predict(x, batch_index)

        values = self._map_minibatches(rna, indices, predict, len(self.protein_names_), batch_size)
        if counts:
            values = np.expm1(np.clip(values, 0, None))
        if return_numpy:
            return values
        return pd.DataFrame(
            values, index=rna.obs_names[indices], columns=pd.Index(self.protein_names_)
        )

    # --------------------------------------------------------------- files
    @classmethod
    def _setup_data(cls, mdata, vocabulary, setup_args, batch_categories, min_overlap, attributes):
        """``mdata`` with its RNA aligned to ``vocabulary``, or a placeholder MuData."""
        modalities = setup_args["modalities"]
        rna_key = modalities["rna_layer"]
        if mdata is not None:
            return with_aligned_rna(
                mdata, rna_key, vocabulary, setup_args.get("rna_layer"), min_overlap
            )[0]
        batch_key = setup_args.get("batch_key")
        rna = placeholder_anndata(
            vocabulary,
            layer=setup_args.get("rna_layer"),
            batch_key=batch_key,
            batch_categories=batch_categories,
        )
        proteins = attributes["protein_names_"]
        protein = AnnData(
            X=np.ones((rna.n_obs, len(proteins)), dtype=np.float32),
            obs=pd.DataFrame(index=rna.obs_names),
            var=pd.DataFrame(index=pd.Index(proteins)),
        )
        if setup_args.get("protein_layer") is not None:
            protein.layers[setup_args["protein_layer"]] = protein.X.copy()
        with quiet_mudata():
            placeholder = MuData({rna_key: rna, modalities["protein_layer"]: protein})
        if batch_key is not None:
            placeholder.obs[batch_key] = rna.obs[batch_key]
        return placeholder
