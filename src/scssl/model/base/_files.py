"""One way to build an scssl model from weights and a gene vocabulary, and its model files.

Every path that gives a model weights it did not train itself goes through
:meth:`ModelFilesMixin.from_state_dict`: loading a saved model, importing a portable
(safetensors) file, loading the study's published checkpoints, and mapping a query onto a
reference. Model files are read with ``torch.load(weights_only=True)``: loading never runs code.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import pandas as pd
import torch
from scvi import REGISTRY_KEYS

from scssl.checkpoints import read_model_file, write_model_file
from scssl.data import (
    DEFAULT_MIN_OVERLAP,
    GeneVocabulary,
    align_to_vocabulary,
    check_obs_column,
    placeholder_anndata,
)

from ._vocabulary import batch_codes

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
ADATA_FILE = "adata.h5ad"
MDATA_FILE = "mdata.h5mu"


def load_module_state(
    module: torch.nn.Module,
    state: dict,
    *,
    strict: bool = True,
    source: str = "the weights",
    exact_dtype: bool = False,
) -> None:
    """Copy ``state`` into ``module``, refusing tensors of another shape or kind.

    ``strict``: every parameter and buffer of the module must be in ``state`` and nothing else;
    otherwise parameters absent from ``state`` keep their values. Floating-point weights stored
    as integers (or the reverse) are refused rather than cast; with ``exact_dtype`` (scssl's
    own model files, which round-trip bit for bit) any other dtype is refused too.

    Raises
    ------
    ValueError
        Naming ``source``, the parameter and both shapes or dtypes.

    """
    own = module.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state)) if strict else []
    if unexpected or missing:
        raise ValueError(
            f"{source} does not fit this {type(module).__name__}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}. It was saved from another model or scssl version, "
            "or edited: load it with the model class and scssl version that saved it, or save "
            "it again from the original."
        )
    for name, value in state.items():
        target = own[name]
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{source}: {name} is a {type(value).__name__}, not a tensor; the file is "
                "damaged or tampered with."
            )
        if value.is_floating_point() != target.is_floating_point() or (
            exact_dtype and value.dtype != target.dtype
        ):
            raise ValueError(
                f"{source}: {name} is stored as {value.dtype}, but the model holds "
                f"{target.dtype}; a converted or tampered file cannot be loaded faithfully. "
                "Save or export the model again from its original."
            )
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"{source}: {name} has shape {tuple(value.shape)}, but the model built from its "
                f"settings and {module.n_input} genes has {tuple(target.shape)}. The weights "
                "belong to a model of another size or gene vocabulary: load them with the "
                "settings and gene list they were saved with, or save them again from the "
                "original."
            )
    module.load_state_dict({**own, **state} if not strict else state, strict=True)


def _flat_init_params(init_params: dict) -> dict:
    """Constructor keyword arguments from scvi-tools' stored ``init_params_``."""
    var_kwargs = {
        k: v for group in init_params.get("kwargs", {}).values() for k, v in group.items()
    }
    return {**init_params.get("non_kwargs", {}), **var_kwargs}


def registered_batches(registry: dict | None) -> list[str] | None:
    """The batches a model was set up with, in code order; ``None`` without a ``batch_key``."""
    if registry is None or registry["setup_args"].get("batch_key") is None:
        return None
    state = registry["field_registries"][REGISTRY_KEYS.BATCH_KEY]["state_registry"]
    return [str(c) for c in state["categorical_mapping"]]


def _unlabeled_cells(data, setup_args: dict, init_params: dict, attributes: dict) -> dict:
    """Cells without the labels a classifier was trained with: all of the unlabeled category.

    Rebuilding a classifier from weights (a safetensors export) on data to predict, which
    have no labels column (a placeholder, a query), adds one to ``data`` (always scssl's own
    AnnData) whose categories are the model's classes, as for a saved model with its registry.
    Returns the constructor's parameters with the class names fixed.
    """
    labels_key = setup_args.get("labels_key")
    class_names = init_params.get("class_names") or attributes.get("class_names_")
    if labels_key is None or not class_names or not isinstance(data, ad.AnnData):
        return init_params
    if labels_key not in data.obs:
        unlabeled = str(setup_args.get("unlabeled_category", "Unknown"))
        categories = [str(c) for c in class_names]
        data.obs[labels_key] = pd.Categorical(
            [unlabeled] * data.n_obs,
            categories=categories + ([unlabeled] if unlabeled not in categories else []),
        )
    return {**init_params, "class_names": list(class_names)}


class ModelFilesMixin:
    """Build from weights (:meth:`from_state_dict`), :meth:`save` and :meth:`load`."""

    #: The classmethod that registers data (``setup_mudata`` for MuData models).
    _setup_method = "setup_anndata"

    @property
    def init_params(self) -> dict:
        """The constructor's keyword arguments this model was built with."""
        return _flat_init_params(self.init_params_)

    @classmethod
    def _setup_data(
        cls,
        adata,
        vocabulary: GeneVocabulary,
        setup_args: dict,
        batch_categories: list[str] | None,
        min_overlap: float,
        attributes: dict,
    ):
        """The data to register: ``adata`` aligned to ``vocabulary``, or a placeholder.

        Always a new AnnData, so that registering it never touches the user's object (an
        ``adata`` with the vocabulary's genes shares its matrix).

        ``attributes`` are those the model will get (e.g. names of its outputs).
        """
        layer, batch_key = setup_args.get("layer"), setup_args.get("batch_key")
        if adata is None:
            return placeholder_anndata(
                vocabulary, layer=layer, batch_key=batch_key, batch_categories=batch_categories
            )
        data, report = align_to_vocabulary(adata, vocabulary, layer=layer, min_overlap=min_overlap)
        logger.info("%s: %s", cls.__name__, report)
        data.uns["scssl_alignment"] = report.as_dict()
        if batch_key is not None and batch_categories is not None:
            if batch_key not in data.obs:
                raise KeyError(
                    f"The model was set up with batch_key={batch_key!r}, which is not a column "
                    f"of adata.obs (columns: {list(data.obs.columns)}). Add each cell's batch "
                    f"there (one of the model's batches: {list(batch_categories)[:10]}), or load "
                    "the model without adata and pass the cells to its predict / "
                    "get_latent_representation, which take cells of any batch."
                )
            check_obs_column(data, batch_key, "batch_key")
            codes = batch_codes(
                data.obs[batch_key],
                batch_categories,
                batch_key,
                " The model's batch-dependent parts know only these: give the cells one of "
                "them; to embed cells of a new batch, call model.get_latent_representation(adata) "
                "instead.",
            )
            # as the model's categories (e.g. 1 -> "1"), which scvi-tools compares exactly
            data.obs[batch_key] = pd.Categorical.from_codes(codes, categories=batch_categories)
        return data

    @classmethod
    def _options_in_weights(cls, state_dict: dict, init_params: dict) -> dict:
        """Constructor options that older files left to a default that has changed since.

        Read from the weights' shapes; the stored options win over them.
        """
        return {}

    @classmethod
    def _register(cls, data, setup_args: dict, registry: dict | None) -> None:
        """Register ``data`` with the setup arguments (and registry) the weights were made with."""
        kwargs = dict(setup_args)
        if registry is not None:
            kwargs["source_registry"] = registry
        getattr(cls, cls._setup_method)(data, **kwargs)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict,
        gene_vocabulary: GeneVocabulary | dict,
        adata=None,
        *,
        init_params: dict,
        setup_args: dict,
        registry: dict | None = None,
        batch_categories: list[str] | None = None,
        attributes: dict | None = None,
        strict: bool = True,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        source: str = "the weights",
        exact_dtype: bool = False,
    ):
        """A model of this class holding ``state_dict``, set up on ``adata`` or a placeholder.

        Parameters
        ----------
        state_dict
            The module's weights (scssl parameter names).
        gene_vocabulary
            The genes of the weights' input layer, in order.
        adata
            Data to set the model up on, aligned to the vocabulary (missing genes zero-filled,
            extra genes dropped); ``None``: a placeholder, embed data later.
        init_params
            Constructor keyword arguments.
        setup_args
            Arguments of ``setup_anndata``/``setup_mudata``.
        registry
            The scvi-tools registry the weights were trained with, if known (a saved model).
        batch_categories
            The training batches in code order, when there is no registry.
        attributes
            Further model attributes (``history_``, ``class_names_`` ...) to restore.
        strict
            Every module parameter must come from ``state_dict``; otherwise absent ones keep
            their initial values.
        min_overlap
            Smallest share of the vocabulary that ``adata`` must have.
        source
            How errors name the weights (a file path).
        exact_dtype
            Refuse weights of another dtype than the model's (scssl's own files), rather than
            only integers for floats.

        """
        if isinstance(gene_vocabulary, dict):
            gene_vocabulary = GeneVocabulary.from_dict(gene_vocabulary)
        batches = registered_batches(registry) if batch_categories is None else batch_categories
        data = cls._setup_data(
            adata, gene_vocabulary, setup_args, batches, min_overlap, attributes or {}
        )
        init_params = {**cls._options_in_weights(state_dict, init_params), **init_params}
        if registry is None:
            init_params = _unlabeled_cells(data, setup_args, init_params, attributes or {})
        with warnings.catch_warnings():
            # a placeholder holds fewer cells than scvi-tools expects of training data
            warnings.filterwarnings("ignore", message=".*fewer than 3 cells.*")
            # a classifier is loaded onto cells to annotate: they need no labels
            warnings.filterwarnings("ignore", message="Missing labels key .* unlabeled category")
            cls._register(data, setup_args, registry)
            try:
                model = cls(data, **init_params)
            except TypeError as error:
                raise ValueError(
                    f"The settings stored with {source} do not build a {cls.__name__} ({error}). "
                    "Was it written by another model class or scssl version?"
                ) from error
        load_module_state(
            model.module, state_dict, strict=strict, source=source, exact_dtype=exact_dtype
        )
        model.gene_vocabulary_ = gene_vocabulary.to_dict()
        model.is_trained_ = True
        for name, value in (attributes or {}).items():
            setattr(model, name, value)
        model.module.eval()
        return model

    # ---------------------------------------------------------------- files
    def save(
        self,
        dir_path: str | Path,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs,
    ) -> None:
        """Save the model to a directory (``model.pt``, and the data with ``save_anndata``).

        ``model.pt`` holds the weights, the gene names and the model's attributes as plain
        values, so that :meth:`load` reads it with ``torch.load(weights_only=True)``. The
        directory keeps scvi-tools' layout (scvi-hub reads it).

        Parameters
        ----------
        dir_path
            Directory to write.
        prefix
            Prefix of the file names.
        overwrite
            Replace an existing directory's files.
        save_anndata
            Also write the data the model was set up with.
        **anndata_write_kwargs
            Passed to ``write`` of the AnnData/MuData.

        """
        dir_path = Path(dir_path)
        if dir_path.exists() and not overwrite:
            raise ValueError(
                f"{dir_path} already exists. Pass overwrite=True or choose another directory."
            )
        dir_path.mkdir(parents=True, exist_ok=True)
        prefix = prefix or ""
        if save_anndata:
            name = ADATA_FILE if isinstance(self.adata, ad.AnnData) else MDATA_FILE
            self.adata.write(dir_path / f"{prefix}{name}", **anndata_write_kwargs)
        attributes = {k: v for k, v in self._get_user_attributes() if k.endswith("_")}
        var_names = self.get_var_names()
        write_model_file(
            dir_path / f"{prefix}{MODEL_FILE}", self.module.state_dict(), var_names, attributes
        )

    @classmethod
    def load(
        cls,
        dir_path: str | Path,
        adata=None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
        *,
        min_overlap: float = DEFAULT_MIN_OVERLAP,
        **kwargs,
    ):
        """A model saved with :meth:`save`, read without running code from the file.

        Parameters
        ----------
        dir_path
            Directory written by :meth:`save`.
        adata
            Data to set the model up on (aligned to the model's genes); ``None``: the data
            saved with the model, or else a placeholder (embed data later).
        accelerator, device
            Where to put the model (Lightning's options).
        prefix
            Prefix of the file names.
        min_overlap
            Smallest share of the model's genes that ``adata`` must have.
        **kwargs
            Accepted for scvi-tools' interface (e.g. ``backup_url``); downloads are not made.

        Raises
        ------
        FileNotFoundError
            When the directory holds no model file.
        ValueError
            For a file saved by another model class, a truncated or tampered file, or weights
            that do not fit.
        scssl.checkpoints.UnsafeCheckpointError
            For a file that would run code when loaded.

        """
        from scvi.model._utils import parse_device_args

        dir_path = Path(dir_path)
        path = dir_path / f"{prefix or ''}{MODEL_FILE}"
        if not path.is_file():
            hint = "save one with model.save(dir_path)"
            if (dir_path / "model.safetensors").is_file():
                hint = (
                    "it holds a safetensors export: read it with "
                    f"scssl.io.import_safetensors({str(dir_path)!r})"
                )
            raise FileNotFoundError(
                f"{path} does not exist: {dir_path} holds no saved model ({hint})."
            )
        state, attributes = read_model_file(path)
        registry = attributes.pop("registry_")
        saved_class = registry.get("model_name")
        if saved_class != cls.__name__:
            raise ValueError(
                f"{dir_path} holds a saved {saved_class}, not a {cls.__name__}: load it with "
                f"scssl.model.{saved_class}.load({str(dir_path)!r})."
            )
        if adata is None:
            adata = cls._saved_data(dir_path, prefix or "")
        init_params = _flat_init_params(attributes.pop("init_params_", {}))
        model = cls.from_state_dict(
            state,
            attributes["gene_vocabulary_"],
            adata,
            init_params=init_params,
            setup_args=registry["setup_args"],
            registry=registry,
            attributes=attributes,
            min_overlap=min_overlap,
            source=str(path),
            exact_dtype=True,
        )
        _, _, torch_device = parse_device_args(
            accelerator=accelerator, devices=device, return_device="torch"
        )
        model.to_device(torch_device)
        return model

    @staticmethod
    def _saved_data(dir_path: Path, prefix: str):
        for name in (ADATA_FILE, MDATA_FILE):
            path = dir_path / f"{prefix}{name}"
            if path.is_file():
                if name == ADATA_FILE:
                    return ad.read_h5ad(path)
                import mudata

                return mudata.read_h5mu(str(path))
        return None
