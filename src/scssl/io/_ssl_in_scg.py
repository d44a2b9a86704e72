"""Readers for the checkpoints published with Richter et al. (ssl_in_scg, TillR/sc_pretrained).

The study's networks are ``torch.nn.Sequential`` MLPs with a ``Linear`` every three modules
(``Linear, activation, Dropout``), so the linear layers of a 5-layer encoder sit at
``{0, 3, 6, 9, 12}``. The published files differ in where that encoder lives:

==========================  ==================================================================
kind                        layout
==========================  ==================================================================
``masked_autoencoder``      Lightning ``.ckpt``; ``state_dict`` with ``encoder.{0,3,6,9,12}``
                            and the decoder ``decoder.0.{...}`` (output: genes)
``masked_autoencoder_nb``   as above plus ``px_r`` (genes,); the last decoder layer outputs
                            ``2 * genes`` (mean = first half, Softplus), theta = ``exp(px_r)``
``barlow_twins``            plain ``torch.save`` dict: ``backbone.{...}``, ``projector.*``,
                            ``bn.*`` (Lightning files hold them under ``barlow_twins.``)
``byol``                    Lightning ``.ckpt``; encoder under ``inner_model.*`` (and again
                            under ``byol.net.*``), heads under ``byol.online_encoder.*``,
                            ``byol.online_predictor.*``, ``byol.target_encoder.*``
``classifier``              Lightning ``.ckpt``; ``classifier.{0,3,...,15}``, ReLU; the last
                            linear layer maps the 64-d embedding to the cell types
==========================  ==================================================================

Weights are mapped onto scssl's parameter names (``encoder.{0,3,6,9,12}``; the first layer is a
:class:`~scssl.nn.SparseInputLinear` whose weight is the transpose of ``nn.Linear``'s).
"""

from __future__ import annotations

import inspect
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from scssl.data import DEFAULT_MIN_OVERLAP, GeneVocabulary, align_to_vocabulary

from ._genes import read_gene_list
from ._safe_load import load_torch_weights

logger = logging.getLogger(__name__)

KINDS = ("masked_autoencoder", "masked_autoencoder_nb", "barlow_twins", "byol", "classifier")

#: Where each kind keeps its encoder (first prefix found wins).
_ENCODER_PREFIXES = {
    "masked_autoencoder": ("encoder.",),
    "masked_autoencoder_nb": ("encoder.",),
    "barlow_twins": ("backbone.", "barlow_twins.backbone.", "inner_model."),
    "byol": ("inner_model.", "byol.net.", "byol.online_encoder.net."),
    "classifier": ("classifier.",),
}
#: The pretext each kind was trained with (masked models: random or gene-programme masking
#: give the same layout; ``random_mask`` is used for further training).
_PRETEXT = {
    "masked_autoencoder": "random_mask",
    "masked_autoencoder_nb": "random_mask",
    "barlow_twins": "barlow_twins",
    "byol": "byol",
    "classifier": "random_mask",
}
#: Dropout of the study's encoders (0.1 for masking and fine-tuning, 0.0 for contrastive).
_DROPOUT = {
    "masked_autoencoder": 0.1,
    "masked_autoencoder_nb": 0.1,
    "barlow_twins": 0.0,
    "byol": 0.0,
    "classifier": 0.1,
}
_LINEAR_KEY = re.compile(r"^(\d+)\.(weight|bias)$")


@dataclass
class SslInScgCheckpoint:
    """Weights of a published checkpoint, mapped onto scssl's parameter names.

    Attributes
    ----------
    kind
        One of ``"masked_autoencoder"``, ``"masked_autoencoder_nb"``, ``"barlow_twins"``,
        ``"byol"``, ``"classifier"``.
    n_input, n_hidden, n_latent
        Encoder architecture inferred from the weight shapes.
    activation
        ``"selu"`` for pretrained encoders, ``"relu"`` for fine-tuned classifiers.
    encoder
        ``encoder.{0,3,...}.{weight,bias}`` in scssl's layout.
    extra
        Further weights under the scssl name they map to (decoder, ``px_r``, projector...);
        loaded where the scssl module has a parameter of that name and shape.
    head
        Classifier only: ``head.2.{weight,bias}`` (cell-type logits from the embedding).
    unmapped
        Keys of the file that have no scssl counterpart.

    """

    kind: str
    path: str
    n_input: int
    n_hidden: tuple[int, ...]
    n_latent: int
    activation: str
    dropout_rate: float
    encoder: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pretext_kwargs: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int | None:
        """Number of cell types of a fine-tuned classifier, else ``None``."""
        return int(self.head["head.2.weight"].shape[0]) if self.head else None

    @property
    def pretext(self) -> str:
        """The scssl pretext matching the checkpoint's training."""
        return _PRETEXT[self.kind]

    def __str__(self) -> str:
        text = (
            f"{self.kind} checkpoint {Path(self.path).name}: {self.n_input} genes -> "
            f"{list(self.n_hidden)} -> {self.n_latent}, {self.activation}"
        )
        if self.head:
            text += f", {self.n_classes} classes"
        return text


def _tensors(content: dict, path) -> dict[str, torch.Tensor]:
    weights = content.get("state_dict", content)
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: 'state_dict' is a {type(weights).__name__}, not a dict.")
    tensors = {str(k): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(
            f"{path} holds no tensors (top-level keys: {list(content)[:10]}); it is not a "
            "model checkpoint."
        )
    if all(k.startswith("module.") for k in tensors):  # saved from DistributedDataParallel
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def detect_kind(keys) -> str:
    """The checkpoint kind from its parameter names.

    Raises
    ------
    ValueError
        When the keys match none of the published layouts.

    """
    keys = list(keys)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("classifier."):
        return "classifier"
    if has("barlow_twins.") or (has("backbone.") and not has("encoder.")):
        return "barlow_twins"
    if has("byol.") or has("inner_model."):
        return "byol"
    if has("encoder."):
        return "masked_autoencoder_nb" if "px_r" in keys else "masked_autoencoder"
    raise ValueError(
        "Unrecognised checkpoint layout: expected ssl_in_scg keys 'encoder.*' (masked "
        "autoencoder), 'backbone.*' (Barlow Twins), 'inner_model.*'/'byol.*' (BYOL) or "
        f"'classifier.*' (fine-tuned classifier); found e.g. {keys[:8]}."
    )


def _linear_stack(tensors: dict, prefix: str, path) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(index, weight, bias)`` of the linear layers under ``prefix``, checked to chain."""
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            match = _LINEAR_KEY.match(key[len(prefix) :])
            if match:
                found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if not found:
        raise ValueError(f"{path}: no layers under '{prefix}*'.")
    layers = []
    for index in sorted(found):
        entry = found[index]
        if "weight" not in entry or entry["weight"].ndim != 2:
            raise ValueError(f"{path}: '{prefix}{index}' is not a linear layer.")
        weight = entry["weight"]
        bias = entry.get("bias")
        if bias is None:
            bias = torch.zeros(weight.shape[0], dtype=weight.dtype)
        layers.append((index, weight, bias))
    indices = [i for i, _, _ in layers]
    expected = list(range(0, 3 * len(layers), 3))
    if indices != expected:
        raise ValueError(
            f"{path}: linear layers at '{prefix}{{{','.join(map(str, indices))}}}'; the study's "
            f"MLP (Linear, activation, Dropout per layer) puts them at {expected}."
        )
    for (i, w, _), (j, v, _) in pairwise(layers):
        if v.shape[1] != w.shape[0]:
            raise ValueError(
                f"{path}: '{prefix}{j}.weight' has shape {tuple(v.shape)} but "
                f"'{prefix}{i}.weight' outputs {w.shape[0]} features."
            )
    return layers


def _layer_order(key: str) -> int:
    parts = key.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1


def _is_linear_weight(key: str, prefix: str) -> bool:
    rest = key[len(prefix) :] if key.startswith(prefix) else ""
    return bool(_LINEAR_KEY.match(rest)) and rest.endswith("weight")


def _to_scssl(layers, name: str, transpose_first: bool) -> dict[str, torch.Tensor]:
    state = {}
    for position, (index, weight, bias) in enumerate(layers):
        w = weight.t() if (position == 0 and transpose_first) else weight
        state[f"{name}.{index}.weight"] = w.contiguous().float()
        state[f"{name}.{index}.bias"] = bias.contiguous().float()
    return state


def _rename(tensors: dict, source: str, target: str) -> dict[str, torch.Tensor]:
    return {
        target + k[len(source) :]: v.float() if v.is_floating_point() else v
        for k, v in tensors.items()
        if k.startswith(source)
    }


def read_ssl_in_scg(checkpoint: str | Path, kind: str = "auto") -> SslInScgCheckpoint:
    """Read an ssl_in_scg checkpoint safely and map it onto scssl's parameter names.

    Parameters
    ----------
    checkpoint
        A ``.ckpt``/``.pt`` file of the study (read with ``torch.load(weights_only=True)``,
        never executing code from it) or a ``.safetensors`` file with the same keys.
    kind
        ``"auto"`` (detected from the keys) or one of ``"masked_autoencoder"``,
        ``"masked_autoencoder_nb"``, ``"barlow_twins"``, ``"byol"``, ``"classifier"``.

    Raises
    ------
    scssl.io.UnsafeCheckpointError
        When the file would need to run code to load.
    ValueError
        On unknown layouts, a ``kind`` that does not match the keys, or inconsistent shapes.

    """
    path = str(checkpoint)
    tensors = _tensors(load_torch_weights(checkpoint), path)
    detected = detect_kind(tensors)
    if kind == "auto":
        kind = detected
    elif kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not known; choose 'auto' or one of {list(KINDS)}.")
    elif kind != detected:
        raise ValueError(
            f"kind={kind!r} was requested but {path} has the keys of a {detected!r} checkpoint "
            f"(e.g. {list(tensors)[:5]}). Use kind='auto'."
        )

    prefix = next(p for p in _ENCODER_PREFIXES[kind] if any(k.startswith(p) for k in tensors))
    layers = _linear_stack(tensors, prefix, path)
    notes: list[str] = []
    head: dict[str, torch.Tensor] = {}
    if kind == "classifier":
        if len(layers) < 2:
            raise ValueError(f"{path}: a classifier needs at least two linear layers.")
        *layers, (_, head_weight, head_bias) = layers
        head = {"head.2.weight": head_weight.float(), "head.2.bias": head_bias.float()}
    n_input = int(layers[0][1].shape[1])
    sizes = [int(w.shape[0]) for _, w, _ in layers]
    encoder = _to_scssl(layers, "encoder", transpose_first=True)

    extra: dict[str, torch.Tensor] = {}
    pretext_kwargs: dict = {}
    if kind.startswith("masked_autoencoder"):
        has_decoder = any(k.startswith("decoder.0.0.") for k in tensors)
        decoder_prefix = "decoder.0." if has_decoder else None
        if decoder_prefix is None:
            notes.append("no decoder in the checkpoint")
        else:
            decoder = _linear_stack(tensors, decoder_prefix, path)
            if kind == "masked_autoencoder_nb":
                index, weight, bias = decoder[-1]
                if weight.shape[0] != 2 * n_input:
                    raise ValueError(
                        f"{path}: the negative-binomial decoder's last layer "
                        f"'{decoder_prefix}{index}.weight' has {weight.shape[0]} outputs; "
                        f"expected 2 x {n_input} genes (mean and dispersion)."
                    )
                # Mean = first `genes` outputs; the second half is unused by the study's NB.
                decoder[-1] = (index, weight[:n_input], bias[:n_input])
                px_r = tensors["px_r"]
                if tuple(px_r.shape) != (n_input,):
                    raise ValueError(
                        f"{path}: px_r has shape {tuple(px_r.shape)}; expected ({n_input},)."
                    )
                extra["px_r"] = px_r.float()
                notes.append(
                    "the study's NB decoder ends in Softplus (mean in count space); scssl's "
                    "NB decoder outputs softmax logits scaled by library size, so the decoder "
                    "is a starting point for training, not the study's reconstruction"
                )
            elif decoder[-1][1].shape[0] != n_input:
                raise ValueError(
                    f"{path}: the decoder outputs {decoder[-1][1].shape[0]} genes but the "
                    f"encoder reads {n_input}."
                )
            else:
                notes.append(
                    "the study's MSE decoder ends in a Sigmoid that scssl's decoder does not "
                    "have; reconstructions differ until the model is trained further"
                )
            extra.update(_to_scssl(decoder, "decoder", transpose_first=False))
    elif kind == "byol":
        extra.update(_rename(tensors, "byol.online_encoder.projector.", "projector."))
        extra.update(_rename(tensors, "byol.online_predictor.", "predictor."))
        extra.update(_rename(tensors, "byol.target_encoder.projector.", "target_projector."))
        if any(k.startswith("byol.target_encoder.net.") for k in tensors):
            target = _linear_stack(tensors, "byol.target_encoder.net.", path)
            extra.update(_to_scssl(target, "target_encoder", transpose_first=True))
        head_weights = [
            extra.get(f"{name}.{i}.weight") for name in ("projector", "predictor") for i in (0, 3)
        ]
        if all(w is not None for w in head_weights):
            pretext_kwargs = {
                "projection_hidden": int(head_weights[0].shape[0]),
                "projection_dim": int(head_weights[1].shape[0]),
            }
        notes.append(
            "the study's BYOL projector reads the 256-d output of the second-to-last encoder "
            "layer; heads load only where scssl's shapes agree"
        )
    elif kind == "barlow_twins":
        base = "barlow_twins." if any(k.startswith("barlow_twins.") for k in tensors) else ""
        extra.update(_rename(tensors, base + "projector.", "projector."))
        extra.update(_rename(tensors, base + "bn.", "bn."))
        projector = [
            extra[k]
            for k in sorted(extra, key=_layer_order)
            if _is_linear_weight(k, "projector.") and extra[k].ndim == 2
        ]
        if projector:
            pretext_kwargs = {"projector_sizes": [int(w.shape[0]) for w in projector]}

    mapped_sources = {prefix}
    if kind.startswith("masked_autoencoder"):
        mapped_sources |= {"decoder.0.", "px_r"}
    elif kind == "byol":
        mapped_sources |= {"inner_model.", "byol."}
    elif kind == "barlow_twins":
        mapped_sources |= {"backbone.", "barlow_twins.", "projector.", "bn.", "inner_model."}
    unmapped = [k for k in tensors if not any(k.startswith(s) for s in mapped_sources)]
    return SslInScgCheckpoint(
        kind=kind,
        path=path,
        n_input=n_input,
        n_hidden=tuple(sizes[:-1]),
        n_latent=sizes[-1],
        activation="relu" if kind == "classifier" else "selu",
        dropout_rate=_DROPOUT[kind],
        encoder=encoder,
        extra=extra,
        head=head,
        unmapped=unmapped,
        notes=notes,
        pretext_kwargs=pretext_kwargs,
    )


def check_genes(ckpt: SslInScgCheckpoint, vocabulary: GeneVocabulary, genes) -> None:
    """Raise when the gene list does not have one gene per input of the checkpoint."""
    if len(vocabulary) != ckpt.n_input:
        first = ckpt.encoder["encoder.0.weight"]
        raise ValueError(
            f"The checkpoint {Path(ckpt.path).name} reads {ckpt.n_input} genes (its first layer "
            f"has shape {(first.shape[1], first.shape[0])} in the study's layout) but the gene "
            f"list {genes if isinstance(genes, str | Path) else ''} has {len(vocabulary)} "
            "genes. Use the gene list published with the checkpoint (var.parquet of "
            "TillR/sc_pretrained, 19,331 genes)."
        )


def placeholder_anndata(vocabulary: GeneVocabulary) -> ad.AnnData:
    """One cell with one count per vocabulary gene, for a model set up without user data."""
    symbols = pd.Index(vocabulary.symbols)
    if vocabulary.ensembl_ids is not None and pd.Index(vocabulary.ensembl_ids).is_unique:
        var = pd.DataFrame({"feature_name": vocabulary.symbols}, index=vocabulary.ensembl_ids)
    else:
        var = pd.DataFrame({"feature_name": vocabulary.symbols}, index=symbols)
        if not symbols.is_unique:
            var.index = ad.utils.make_index_unique(symbols)
    adata = ad.AnnData(
        X=np.ones((1, len(vocabulary)), dtype=np.float32),
        obs=pd.DataFrame(index=["placeholder"]),
        var=var,
    )
    adata.uns["scssl_placeholder"] = True
    return adata


def load_weights(module: torch.nn.Module, ckpt: SslInScgCheckpoint) -> dict[str, list[str]]:
    """Copy the encoder (required) and matching extra weights into ``module``.

    Returns the names loaded and those skipped (absent from the module or of another shape).
    """
    state = module.state_dict()
    loaded, skipped = [], []
    for name, value in ckpt.encoder.items():
        if name not in state or tuple(state[name].shape) != tuple(value.shape):
            have = tuple(state[name].shape) if name in state else None
            raise ValueError(
                f"Encoder parameter {name}: checkpoint shape {tuple(value.shape)}, model "
                f"shape {have}. The model must be built with n_hidden={list(ckpt.n_hidden)}, "
                f"n_latent={ckpt.n_latent}."
            )
        state[name] = value.to(state[name].dtype)
        loaded.append(name)
    for name, value in ckpt.extra.items():
        if name in state and tuple(state[name].shape) == tuple(value.shape):
            state[name] = value.to(state[name].dtype)
            loaded.append(name)
        else:
            skipped.append(name)
    module.load_state_dict(state, strict=True)
    return {"loaded": loaded, "skipped": skipped}


def _warn_duplicate_symbols(vocabulary: GeneVocabulary, adata: ad.AnnData) -> None:
    """Symbols shared by several checkpoint genes are ambiguous when matching by symbol."""
    from scssl.data._vocabulary import find_ensembl_ids

    by_ensembl = find_ensembl_ids(adata.var, adata.var_names) is not None
    if vocabulary.ensembl_ids is not None and by_ensembl:
        return
    upper = pd.Index([s.upper() for s in vocabulary.symbols])
    duplicated = upper[upper.duplicated()].unique()
    if len(duplicated):
        logger.warning(
            "%d symbols name several genes of the checkpoint (e.g. %s); matching by symbol feeds "
            "each such gene of your data into all of them. Put Ensembl IDs in adata.var_names or "
            "a var column for an exact match.",
            len(duplicated),
            ", ".join(duplicated[:5]),
        )


def _model_kwargs(cls, ckpt: SslInScgCheckpoint) -> dict:
    """Constructor arguments for ``cls``; pretexts/likelihoods the module lacks fall back."""
    from scssl.module import _ssl_module

    kwargs = {
        "n_hidden": tuple(ckpt.n_hidden),
        "n_latent": ckpt.n_latent,
        "activation": ckpt.activation,
        "dropout_rate": ckpt.dropout_rate,
    }
    available = getattr(_ssl_module, "PRETEXTS", ("random_mask",))
    pretext = ckpt.pretext
    if pretext not in available:
        logger.info(
            "pretext=%r is not available in this scssl; the encoder is loaded into a "
            "'random_mask' model (the embedding depends on the encoder only).",
            pretext,
        )
        pretext = "random_mask"
    kwargs["pretext"] = pretext
    if pretext == ckpt.pretext:
        kwargs.update(ckpt.pretext_kwargs)
    parameters = inspect.signature(cls.__init__).parameters
    if ckpt.kind == "masked_autoencoder_nb":
        if "likelihood" in parameters:
            kwargs["likelihood"] = "nb"
        else:
            logger.info("likelihood='nb' is not available; px_r is not loaded.")
    return kwargs


def encoder_from_ssl_in_scg(
    cls,
    checkpoint,
    genes,
    adata: ad.AnnData | None = None,
    kind: str = "auto",
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    layer: str | None = None,
):
    """Build ``cls`` (an :class:`~scssl.model.SSLEncoder`) from a published checkpoint.

    See :meth:`scssl.model.SSLEncoder.from_ssl_in_scg`.
    """
    ckpt = checkpoint if isinstance(checkpoint, SslInScgCheckpoint) else None
    if ckpt is None:
        ckpt = read_ssl_in_scg(checkpoint, kind=kind)
    vocabulary = read_gene_list(genes)
    check_genes(ckpt, vocabulary, genes)
    if ckpt.kind == "classifier":
        logger.warning(
            "%s is a fine-tuned classifier: only its encoder is loaded (ReLU); its cell-type "
            "head is ignored. Use scssl.io.read_ssl_in_scg_classifier for the head.",
            Path(ckpt.path).name,
        )
    report = None
    if adata is None:
        setup_adata = placeholder_anndata(vocabulary)
        setup_layer = None
    else:
        _warn_duplicate_symbols(vocabulary, adata)
        setup_adata, report = align_to_vocabulary(
            adata, vocabulary, layer=layer, min_overlap=min_overlap
        )
        logger.info("from_ssl_in_scg: %s", report)
        setup_adata.uns["scssl_alignment"] = report.as_dict()
        setup_layer = layer
    with warnings.catch_warnings():
        # the one-cell placeholder triggers scvi-tools' "fewer than 3 cells" warning
        if adata is None:
            warnings.filterwarnings("ignore", message=".*fewer than 3 cells.*")
        cls.setup_anndata(setup_adata, layer=setup_layer)
        model = cls(setup_adata, **_model_kwargs(cls, ckpt))
    outcome = load_weights(model.module, ckpt)
    model.gene_vocabulary_ = vocabulary.to_dict()
    model.pretrained_from_ = {
        "source": "ssl_in_scg",
        "file": Path(ckpt.path).name,
        "kind": ckpt.kind,
        "loaded": outcome["loaded"],
        "not_loaded": outcome["skipped"] + ckpt.unmapped,
        "notes": ckpt.notes,
        "alignment": None if report is None else report.as_dict(),
    }
    if outcome["skipped"]:
        logger.info(
            "Weights without a matching scssl parameter (not loaded): %s",
            ", ".join(outcome["skipped"][:10]),
        )
    model.is_trained_ = True
    model.module.eval()
    model._model_summary_string += f" | loaded from ssl_in_scg {ckpt.kind} {Path(ckpt.path).name}"
    return model


@dataclass
class SslInScgClassifier:
    """A fine-tuned ssl_in_scg classifier under SSLClassifier's parameter names.

    ``state_dict`` holds ``encoder.*`` and ``head.2.*`` (see :class:`~scssl.model.SSLClassifier`).
    """

    state_dict: dict[str, torch.Tensor]
    labels: list[str]
    gene_vocabulary: GeneVocabulary
    n_hidden: tuple[int, ...]
    n_latent: int
    activation: str
    dropout_rate: float
    checkpoint: SslInScgCheckpoint


def _read_labels(labels, n_classes: int) -> list[str]:
    if labels is None:
        logger.warning(
            "No label names given for the %d classes; using class_0 ... class_%d. Pass "
            "labels= (e.g. the study's categorical_lookup/cell_type.parquet).",
            n_classes,
            n_classes - 1,
        )
        return [f"class_{i}" for i in range(n_classes)]
    if isinstance(labels, str | Path):
        path = Path(labels)
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        else:
            frame = pd.DataFrame({"label": path.read_text().splitlines()})
        column = "label" if "label" in frame.columns else frame.columns[-1]
        names = frame[column].astype(str).tolist()
    elif isinstance(labels, Sequence | pd.Index | np.ndarray):
        names = [str(x) for x in labels]
    else:
        raise TypeError(f"labels must be a list or a file path, not {type(labels).__name__}.")
    if len(names) != n_classes:
        raise ValueError(
            f"The classifier predicts {n_classes} classes but {len(names)} label names were "
            "given; pass the label list of this checkpoint, in the order of its outputs."
        )
    return names


def read_ssl_in_scg_classifier(checkpoint, genes, labels=None) -> SslInScgClassifier:
    """A fine-tuned ssl_in_scg classifier, ready for :class:`~scssl.model.SSLClassifier`.

    The study's ``classifier.{0,...,12}`` become ``encoder.{0,...,12}`` (first weight
    transposed for the sparse input layer) and ``classifier.15`` becomes ``head.2`` of
    ``head = Sequential(ReLU, Dropout, Linear(n_latent, n_classes))``.

    Parameters
    ----------
    checkpoint
        The fine-tuned classifier checkpoint.
    genes
        Its gene list (see :func:`read_gene_list`).
    labels
        Cell-type names in the order of the classifier's outputs: a list, or a parquet/csv/tsv
        with a ``label`` column (the study's ``categorical_lookup/cell_type.parquet``), or a
        text file with one name per line. ``None``: ``class_0``, ``class_1``, ...

    """
    ckpt = checkpoint if isinstance(checkpoint, SslInScgCheckpoint) else None
    if ckpt is None:
        ckpt = read_ssl_in_scg(checkpoint, kind="auto")
    if ckpt.kind != "classifier":
        raise ValueError(
            f"{ckpt.path} is a {ckpt.kind!r} checkpoint, not a fine-tuned classifier "
            "('classifier.*' keys). Load it with SSLEncoder.from_ssl_in_scg."
        )
    vocabulary = read_gene_list(genes)
    check_genes(ckpt, vocabulary, genes)
    return SslInScgClassifier(
        state_dict={**ckpt.encoder, **ckpt.head},
        labels=_read_labels(labels, ckpt.n_classes),
        gene_vocabulary=vocabulary,
        n_hidden=ckpt.n_hidden,
        n_latent=ckpt.n_latent,
        activation=ckpt.activation,
        dropout_rate=ckpt.dropout_rate,
        checkpoint=ckpt,
    )


def classifier_from_ssl_in_scg(
    cls,
    checkpoint,
    genes,
    adata: ad.AnnData,
    labels=None,
    min_overlap: float = DEFAULT_MIN_OVERLAP,
    layer=None,
):
    """Build ``cls`` (an :class:`~scssl.model.SSLClassifier`) from a fine-tuned checkpoint.

    See :meth:`scssl.model.SSLClassifier.from_ssl_in_scg`.
    """
    parsed = read_ssl_in_scg_classifier(checkpoint, genes, labels=labels)
    _warn_duplicate_symbols(parsed.gene_vocabulary, adata)
    setup_adata, report = align_to_vocabulary(
        adata, parsed.gene_vocabulary, layer=layer, min_overlap=min_overlap
    )
    logger.info("from_ssl_in_scg: %s", report)
    # The published classifier comes without labelled cells: every cell is unlabeled, and the
    # class names are the checkpoint's.
    unlabeled = "__unlabeled__"
    label_key = "_ssl_in_scg_label"
    setup_adata.obs[label_key] = pd.Categorical(
        [unlabeled] * setup_adata.n_obs, categories=[*parsed.labels, unlabeled]
    )
    cls.setup_anndata(setup_adata, labels_key=label_key, unlabeled_category=unlabeled, layer=layer)
    model = cls(
        setup_adata,
        n_latent=parsed.n_latent,
        n_hidden=parsed.n_hidden,
        dropout_rate=parsed.dropout_rate,
        head_dropout=parsed.dropout_rate,
        activation=parsed.activation,
        class_names=parsed.labels,
    )
    missing, unexpected = model.module.load_state_dict(parsed.state_dict, strict=False)
    expected_missing = {"class_weights", "temperature"}
    if unexpected or set(missing) - expected_missing:
        raise ValueError(
            f"The classifier checkpoint does not fit SSLClassifier: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}."
        )
    model.gene_vocabulary_ = parsed.gene_vocabulary.to_dict()
    model.pretrained_from_ = {
        "source": "ssl_in_scg",
        "file": Path(parsed.checkpoint.path).name,
        "kind": "classifier",
        "alignment": report.as_dict(),
    }
    model.is_trained_ = True
    model.module.eval()
    return model
