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

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scssl.data import GeneVocabulary

from ._genes import read_gene_list
from ._safe_load import load_torch_weights

logger = logging.getLogger(__name__)

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
    notes
        Differences between the study's network and scssl's, for the model's provenance.
    pretext_kwargs
        Model options the weights imply (likelihood, head sizes).

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
        return LAYOUTS[self.kind].pretext

    @property
    def architecture(self) -> dict:
        """The encoder's constructor options (hidden sizes, embedding, activation, dropout)."""
        return {
            "n_hidden": tuple(self.n_hidden),
            "n_latent": self.n_latent,
            "activation": self.activation,
            "dropout_rate": self.dropout_rate,
        }

    @property
    def model_kwargs(self) -> dict:
        """Constructor options of the :class:`~scssl.model.SSLEncoder` holding these weights."""
        return {**self.architecture, "pretext": self.pretext, **self.pretext_kwargs}

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


@dataclass(frozen=True)
class _Layout:
    """How one published kind stores its weights and how scssl rebuilds it."""

    pretext: str
    dropout_rate: float
    encoder_prefixes: tuple[str, ...]
    sources: tuple[str, ...]  # key prefixes the mapper below accounts for
    map_extra: Callable[[dict, str, int], tuple[dict, list[str], dict]] | None = None


def _masked_extra(tensors: dict, path: str, n_input: int, nb: bool):
    """Decoder (and ``px_r`` of the NB variant) under scssl's names, notes, model options.

    The study's MSE decoder ends in a Sigmoid and its NB decoder in a Softplus whose first
    ``genes`` outputs are the mean in counts; the model is built with that output.
    """
    options: dict = {"likelihood": "nb"} if nb else {}
    if not any(k.startswith("decoder.0.0.") for k in tensors):
        return {}, ["no decoder in the checkpoint"], options
    decoder = _linear_stack(tensors, "decoder.0.", path)
    extra: dict[str, torch.Tensor] = {}
    index, weight, bias = decoder[-1]
    if nb:
        if weight.shape[0] != 2 * n_input:
            raise ValueError(
                f"{path}: the negative-binomial decoder's last layer "
                f"'decoder.0.{index}.weight' has {weight.shape[0]} outputs; expected 2 x "
                f"{n_input} genes (mean and dispersion)."
            )
        # Mean = first `genes` outputs; the second half is unused by the study's NB.
        decoder[-1] = (index, weight[:n_input], bias[:n_input])
        px_r = tensors["px_r"]
        if tuple(px_r.shape) != (n_input,):
            raise ValueError(f"{path}: px_r has shape {tuple(px_r.shape)}; expected ({n_input},).")
        extra["px_r"] = px_r.float()
        options["decoder_output"] = "softplus"
    elif weight.shape[0] != n_input:
        raise ValueError(
            f"{path}: the decoder outputs {weight.shape[0]} genes but the encoder reads {n_input}."
        )
    else:
        options["decoder_output"] = "sigmoid"
    extra.update(_to_scssl(decoder, "decoder", transpose_first=False))
    return extra, [], options


def _byol_extra(tensors: dict, path: str, n_input: int):
    """Projector, predictor and target network under scssl's names."""
    extra = _rename(tensors, "byol.online_encoder.projector.", "projector.")
    extra.update(_rename(tensors, "byol.online_predictor.", "predictor."))
    extra.update(_rename(tensors, "byol.target_encoder.projector.", "target_projector."))
    if any(k.startswith("byol.target_encoder.net.") for k in tensors):
        target = _linear_stack(tensors, "byol.target_encoder.net.", path)
        extra.update(_to_scssl(target, "target_encoder", transpose_first=True))
    weights = [
        extra.get(f"{name}.{i}.weight") for name in ("projector", "predictor") for i in (0, 3)
    ]
    options = {}
    if all(w is not None for w in weights):
        options = {
            "projection_hidden": int(weights[0].shape[0]),
            "projection_dim": int(weights[1].shape[0]),
        }
    notes = [
        "the study's BYOL projector reads the 256-d output of the second-to-last encoder layer; "
        "each head loads whole or not at all, where scssl's shapes agree"
    ]
    return extra, notes, options


def _barlow_twins_extra(tensors: dict, path: str, n_input: int):
    """Projector and the loss's batch norm under scssl's names."""
    base = "barlow_twins." if any(k.startswith("barlow_twins.") for k in tensors) else ""
    extra = _rename(tensors, base + "projector.", "projector.")
    extra.update(_rename(tensors, base + "bn.", "bn."))
    projector = [
        extra[k]
        for k in sorted(extra, key=_layer_order)
        if _is_linear_weight(k, "projector.") and extra[k].ndim == 2
    ]
    options = {"projector_sizes": [int(w.shape[0]) for w in projector]} if projector else {}
    return extra, [], options


_MASKED_SOURCES = ("decoder.0.", "px_r")
LAYOUTS: dict[str, _Layout] = {
    "masked_autoencoder": _Layout(
        "random_mask",
        0.1,
        ("encoder.",),
        _MASKED_SOURCES,
        lambda t, p, n: _masked_extra(t, p, n, nb=False),
    ),
    "masked_autoencoder_nb": _Layout(
        "random_mask",
        0.1,
        ("encoder.",),
        _MASKED_SOURCES,
        lambda t, p, n: _masked_extra(t, p, n, nb=True),
    ),
    "barlow_twins": _Layout(
        "barlow_twins",
        0.0,
        ("backbone.", "barlow_twins.backbone.", "inner_model."),
        ("backbone.", "barlow_twins.", "projector.", "bn.", "inner_model."),
        _barlow_twins_extra,
    ),
    "byol": _Layout(
        "byol",
        0.0,
        ("inner_model.", "byol.net.", "byol.online_encoder.net."),
        ("inner_model.", "byol."),
        _byol_extra,
    ),
    "classifier": _Layout("random_mask", 0.1, ("classifier.",), ()),
}
#: The published checkpoint kinds, in the order of the table above.
KINDS = tuple(LAYOUTS)


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
    kind = _checked_kind(kind, detect_kind(tensors), path, tensors)
    layout = LAYOUTS[kind]
    prefix = next(p for p in layout.encoder_prefixes if any(k.startswith(p) for k in tensors))
    layers = _linear_stack(tensors, prefix, path)
    head: dict[str, torch.Tensor] = {}
    if kind == "classifier":
        if len(layers) < 2:
            raise ValueError(f"{path}: a classifier needs at least two linear layers.")
        *layers, (_, head_weight, head_bias) = layers
        head = {"head.2.weight": head_weight.float(), "head.2.bias": head_bias.float()}
    n_input = int(layers[0][1].shape[1])
    sizes = [int(w.shape[0]) for _, w, _ in layers]
    extra, notes, options = {}, [], {}
    if layout.map_extra is not None:
        extra, notes, options = layout.map_extra(tensors, path, n_input)
    sources = (prefix, *layout.sources)
    return SslInScgCheckpoint(
        kind=kind,
        path=path,
        n_input=n_input,
        n_hidden=tuple(sizes[:-1]),
        n_latent=sizes[-1],
        activation="relu" if kind == "classifier" else "selu",
        dropout_rate=layout.dropout_rate,
        encoder=_to_scssl(layers, "encoder", transpose_first=True),
        extra=extra,
        head=head,
        unmapped=[k for k in tensors if not k.startswith(sources)],
        notes=notes,
        pretext_kwargs=options,
    )


def _checked_kind(kind: str, detected: str, path: str, tensors: dict) -> str:
    if kind == "auto":
        return detected
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not known; choose 'auto' or one of {list(KINDS)}.")
    if kind != detected:
        raise ValueError(
            f"kind={kind!r} was requested but {path} has the keys of a {detected!r} checkpoint "
            f"(e.g. {list(tensors)[:5]}). Use kind='auto'."
        )
    return kind


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


def read_class_names(labels, n_classes: int) -> list[str]:
    """Class names in the order of a classifier's outputs.

    ``labels``: a list, or a parquet/csv/tsv table with a ``label`` column whose integer index
    gives each name's output (the study's ``categorical_lookup/cell_type.parquet`` maps codes by
    its index, not by row order), or a text file with one name per line.
    """
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
        names = frame[column]
        if pd.api.types.is_integer_dtype(frame.index) and set(frame.index) == set(
            range(len(frame))
        ):
            names = names.sort_index()
        names = names.astype(str).tolist()
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
        labels=read_class_names(labels, ckpt.n_classes),
        gene_vocabulary=vocabulary,
        n_hidden=ckpt.n_hidden,
        n_latent=ckpt.n_latent,
        activation=ckpt.activation,
        dropout_rate=ckpt.dropout_rate,
        checkpoint=ckpt,
    )
