"""The torch module behind :class:`scssl.model.SSLClassifier`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput, auto_move_data
from torch import Tensor, nn

from scssl.nn import ACTIVATIONS
from scssl.nn._sparse import as_csr, rows

from ._ssl_module import SSLModule


class ClassifierModule(SSLModule):
    """The SSL encoder, with its pretext and batch handling, and a linear classification head.

    Everything of :class:`scssl.module.SSLModule` (the encoder, the decoder or contrastive heads
    of its pretext, batch centering, the batch adversary) under the same parameter names, so a
    pretrained encoder's state copies over key by key, plus ``head``:
    ``Sequential(activation, Dropout, Linear(n_latent, n_classes))`` reading the embedding
    standardised by the buffers ``embedding_mean`` and ``embedding_scale``.

    A training minibatch of labelled and unlabelled cells (reference and query) costs
    the class-weighted cross-entropy of its labelled cells, classified from their unmasked input,
    plus ``pretext_weight`` times the pretext loss of all its cells (the self-supervised task
    keeps going on every cell, semi-supervised learning), plus the batch adversary's losses on
    all cells when ``batch_adversary_weight > 0`` (reference and query embeddings kept apart from
    the batch).

    Parameters
    ----------
    n_input, *summary_stats
        The data sizes, as :class:`scssl.module.SSLModule` takes them (``n_batch``,
        ``n_labels``, ``n_continuous_cov``, ``n_cats_per_cov``, in scvi-tools' order).
    n_classes
        Number of cell types (the unlabeled category excluded).
    head_activation
        Activation before the head's dropout and linear layer: ``None`` (the embedding itself),
        ``"relu"`` (the study's fine-tuned classifiers), ``"selu"`` or ``"gelu"``.
    head_dropout_rate
        Dropout before the linear layer.
    class_weights
        Weight of each class in the cross-entropy.
    pretext_weight
        Weight of the pretext loss on all cells; 0 trains on the labels alone.
    freeze_encoder
        Train the head only (a linear probe); no pretext or adversary then.
    **ssl_kwargs
        Options of :class:`scssl.module.SSLModule` (architecture, pretext, batch centering ...).

    """

    def __init__(
        self,
        n_input: int,
        *summary_stats: int,
        n_classes: int,
        head_activation: str | None = None,
        head_dropout_rate: float = 0.1,
        class_weights: torch.Tensor | None = None,
        pretext_weight: float = 3.0,
        freeze_encoder: bool = False,
        **ssl_kwargs,
    ):
        if n_classes < 2:
            raise ValueError(f"A classifier needs at least 2 classes, got {n_classes}.")
        if head_activation is not None and head_activation not in ACTIVATIONS:
            raise ValueError(
                f"head_activation={head_activation!r}; choose None or one of {sorted(ACTIVATIONS)}."
            )
        super().__init__(n_input, *summary_stats, **ssl_kwargs)
        self.n_classes = n_classes
        self.pretext_weight = 0.0 if freeze_encoder else float(pretext_weight)
        activation = nn.Identity() if head_activation is None else ACTIVATIONS[head_activation]()
        self.head = nn.Sequential(
            activation, nn.Dropout(head_dropout_rate), nn.Linear(self.n_latent, n_classes)
        )
        weights = torch.ones(n_classes) if class_weights is None else torch.as_tensor(class_weights)
        self.register_buffer("class_weights", weights.float().clone())
        self.register_buffer("embedding_mean", torch.zeros(self.n_latent))
        self.register_buffer("embedding_scale", torch.ones(self.n_latent))
        # Temperature of the softmax, fitted on held-out labelled cells (1 = uncalibrated).
        self.register_buffer("temperature", torch.ones(()))
        self.freeze_encoder = freeze_encoder
        self.encoder.requires_grad_(not freeze_encoder)
        #: Set by the model while it trains on semi-supervised minibatches: their first this many
        #: cells are labelled (cross-entropy), the others drawn from all cells (pretext,
        #: adversary). 0: every cell of a minibatch enters both.
        self.labelled_per_step = 0

    # ------------------------------------------------------------ outputs
    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of embeddings ``z`` (uncalibrated)."""
        return self.head((z - self.embedding_mean) / self.embedding_scale)

    @auto_move_data
    def embed(
        self, x: Tensor, batch_index: Tensor | None = None, deltas: Tensor | None = None
    ) -> Tensor:
        """Fine-tuned embedding: what the head reads, after its activation.

        As the study's ``predict_embedding`` of its fine-tuned classifiers.
        """
        return self.head[0](self.encode(self.normalize(x), batch_index, deltas))

    @auto_move_data
    def logits(
        self,
        x: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        deltas: torch.Tensor | None = None,
        calibrated: bool = True,
    ) -> torch.Tensor:
        """Class logits, divided by the fitted temperature when ``calibrated``."""
        logits = self.classify(self.encode(self.normalize(x), batch_index, deltas))
        return logits / self.temperature if calibrated else logits

    # ----------------------------------------------------------- training
    def _uses_pretext(self) -> bool:
        return self.training and (self.pretext_weight > 0 or self.batch_adversary_weight > 0)

    def _halves(self, x, batch_index):
        """The labelled and the drawn cells of a semi-supervised minibatch.

        See ``labelled_per_step``; both are the whole minibatch otherwise.
        """
        k = self.labelled_per_step if self.training else 0
        if not k or x.shape[0] <= k:
            return (x, batch_index), (x, batch_index)
        batch = (None, None) if batch_index is None else (batch_index[:k], batch_index[k:])
        return (rows(x, 0, k), batch[0]), (rows(x, k), batch[1])

    @auto_move_data
    def inference(self, x: torch.Tensor, batch_index: torch.Tensor | None = None) -> dict:
        """Logits of the unmasked cells, and the pretext's outputs when its loss is on."""
        x = as_csr(x)
        (labelled, labelled_batch), (drawn, drawn_batch) = self._halves(x, batch_index)
        out = super().inference(drawn, drawn_batch) if self._uses_pretext() else {}
        out["logits"] = self.classify(self.encode(self.normalize(labelled), labelled_batch))
        out["drawn_batch"] = drawn_batch
        return out

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        if "z" not in inference_outputs or not self.pretext_weight:
            return {"z": None}
        return {
            "z": inference_outputs["z"],
            "batch_index": inference_outputs["drawn_batch"],
            "columns": inference_outputs.get("columns"),
        }

    @auto_move_data
    def generative(self, z=None, batch_index=None, columns=None) -> dict:
        """The pretext's decoder when its loss is on; nothing otherwise."""
        if z is None:
            return {}
        return super().generative(z, batch_index, columns)

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Class-weighted cross-entropy of the labelled cells plus the pretext and adversary.

        Cells of the unlabeled category (code ``n_classes``) do not enter the cross-entropy.
        """
        logits = inference_outputs["logits"]
        labels = tensors[REGISTRY_KEYS.LABELS_KEY].view(-1).long()[: logits.shape[0]]
        labelled = labels < self.n_classes
        if bool(labelled.any()):
            weight = self.class_weights.to(logits.dtype)
            classification = F.cross_entropy(
                logits[labelled].float(), labels[labelled], weight=weight.float()
            )
        else:
            classification = logits.sum() * 0.0
        metrics = {"classification_loss": classification.detach()}
        loss = classification
        if "z" in inference_outputs:
            if self.pretext_weight:
                pretext = self.pretext_loss(inference_outputs, generative_outputs).loss
                loss = loss + self.pretext_weight * pretext
                metrics["pretext_loss"] = pretext.detach()
            if self.batch_adversary_weight:
                classifier, confusion = self.adversary_losses(
                    inference_outputs["z"], inference_outputs["drawn_batch"]
                )
                loss = loss + classifier + self.batch_adversary_weight * confusion
                metrics["batch_confusion_loss"] = confusion.detach()
        return LossOutput(loss=loss, n_obs_minibatch=logits.shape[0], extra_metrics=metrics)
