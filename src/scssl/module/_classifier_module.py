"""The torch module behind :class:`scssl.model.SSLClassifier`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput, auto_move_data
from torch import nn

from scssl.nn import ACTIVATIONS, DEFAULT_N_HIDDEN, DEFAULT_N_LATENT

from ._base import EncoderModule


class ClassifierModule(EncoderModule):
    """MLP encoder (the pretrained SSL encoder's architecture) and a linear classification head.

    ``encoder`` is :func:`scssl.nn.mlp` with a sparse first layer, exactly as in
    :class:`scssl.module.SSLModule`, so pretrained weights copy over key by key. ``head`` is
    ``Sequential(activation, Dropout, Linear(n_latent, n_classes))``: the encoder's last layer has
    no activation, the head adds the encoder's own one (the study's code silently used ReLU).

    Parameters
    ----------
    n_input
        Number of genes (the gene vocabulary).
    n_batch, n_labels, n_continuous_cov, n_cats_per_cov
        Accepted for scvi-tools' datamodule path; unused.
    n_classes
        Number of cell types (the unlabeled category excluded).
    n_latent, n_hidden, dropout_rate, activation
        Encoder architecture (as :class:`scssl.module.SSLModule`).
    head_dropout_rate
        Dropout before the last linear layer.
    log_normalized
        The input is already ``normalize_total`` + ``log1p``; no on-the-fly normalisation.
    class_weights
        Weight of each class in the cross-entropy (class-balanced: inverse frequency).
    freeze_encoder
        Train the head only; the encoder keeps its pretrained weights.
    n_query_batches
        Query batches with a learned shift of the first hidden layer (query mapping, see
        :meth:`scssl.model.SSLClassifier.load_query_data`); 0 for a reference model.

    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        *,
        n_classes: int,
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        dropout_rate: float = 0.1,
        head_dropout_rate: float = 0.1,
        activation: str = "selu",
        log_normalized: bool = False,
        class_weights: torch.Tensor | None = None,
        freeze_encoder: bool = False,
        n_query_batches: int = 0,
    ):
        if n_classes < 2:
            raise ValueError(f"A classifier needs at least 2 classes, got {n_classes}.")
        super().__init__(
            n_input,
            n_latent=n_latent,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            activation=activation,
            log_normalized=log_normalized,
        )
        self.n_classes = n_classes
        self.pretext = "classifier"
        self.head = nn.Sequential(
            ACTIVATIONS[activation](), nn.Dropout(head_dropout_rate), nn.Linear(n_latent, n_classes)
        )
        weights = torch.ones(n_classes) if class_weights is None else torch.as_tensor(class_weights)
        self.register_buffer("class_weights", weights.float().clone())
        # Temperature of the softmax, fitted on held-out reference cells (1 = uncalibrated).
        self.register_buffer("temperature", torch.ones(()))
        self.n_query_batches = n_query_batches
        first_width = n_hidden[0] if len(n_hidden) else n_latent
        if n_query_batches:
            self.batch_shift = nn.Embedding(n_query_batches, first_width)
            nn.init.zeros_(self.batch_shift.weight)
        self.freeze_encoder = freeze_encoder
        self.set_trainable()

    # --------------------------------------------------------------- training modes
    def set_trainable(self) -> None:
        """Freeze what the mode asks: everything but the batch shifts for a query model."""
        query = self.n_query_batches > 0
        for p in self.encoder.parameters():
            p.requires_grad_(not (self.freeze_encoder or query))
        for p in self.head.parameters():
            p.requires_grad_(not query)
        if query:
            self.batch_shift.weight.requires_grad_(True)

    def _encode(self, x: torch.Tensor, query_batch: torch.Tensor | None) -> torch.Tensor:
        h = self.encoder[0](self.normalize(x))
        if self.n_query_batches and query_batch is not None:
            codes = query_batch.view(-1).long()
            known = codes >= 0
            shift = self.batch_shift(codes.clamp(min=0)) * known.unsqueeze(1).to(h.dtype)
            h = h + shift
        for layer in self.encoder[1:]:
            h = layer(h)
        return h

    @auto_move_data
    def embed(self, x: torch.Tensor, query_batch: torch.Tensor | None = None) -> torch.Tensor:
        """Fine-tuned embedding: what the classification layer reads (after the activation).

        As the study's ``predict_embedding`` of its fine-tuned classifiers.
        """
        return self.head[0](self._encode(x, query_batch))

    @auto_move_data
    def logits(
        self, x: torch.Tensor, query_batch: torch.Tensor | None = None, calibrated: bool = True
    ) -> torch.Tensor:
        """Class logits, divided by the fitted temperature when ``calibrated``."""
        logits = self.head(self._encode(x, query_batch))
        return logits / self.temperature if calibrated else logits

    # ------------------------------------------------------------------ scvi hooks
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        batch = tensors.get(REGISTRY_KEYS.BATCH_KEY) if self.n_query_batches else None
        return {"x": tensors[REGISTRY_KEYS.X_KEY], "batch_index": batch}

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        return {}

    @auto_move_data
    def inference(self, x: torch.Tensor, batch_index: torch.Tensor | None = None) -> dict:
        """Uncalibrated logits of a minibatch."""
        return {"logits": self.head(self._encode(x, batch_index))}

    def generative(self) -> dict:
        """No generative part."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs=None) -> LossOutput:
        """Class-balanced cross-entropy on labelled cells; information maximisation for queries.

        Cells of the unlabeled category (code ``n_classes``) do not enter the cross-entropy. A
        query model (no labels) minimises the mean prediction entropy while keeping the mean
        prediction diverse (SHOT, Liang et al. 2020), adjusting only its batch shifts.
        """
        logits = inference_outputs["logits"]
        n = logits.shape[0]
        if self.n_query_batches:
            p = F.softmax(logits, dim=1)
            entropy = -(p * F.log_softmax(logits, dim=1)).sum(1).mean()
            p_mean = p.mean(0)
            diversity = -(p_mean * torch.log(p_mean + 1e-8)).sum()
            loss = entropy - diversity
            return LossOutput(loss=loss, n_obs_minibatch=n, extra_metrics={"entropy": entropy})
        labels = tensors[REGISTRY_KEYS.LABELS_KEY].view(-1).long()
        labelled = labels < self.n_classes
        if not bool(labelled.any()):
            loss = logits.sum() * 0.0
        else:
            loss = F.cross_entropy(
                logits[labelled], labels[labelled], weight=self.class_weights.to(logits.dtype)
            )
        return LossOutput(loss=loss, n_obs_minibatch=n)
