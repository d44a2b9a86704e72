"""The torch module behind :class:`scssl.model.SSLEncoder`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import torch
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput, auto_move_data
from torch import Tensor, nn

from scssl.data._warnings import warn_user
from scssl.nn import DEFAULT_N_HIDDEN, DEFAULT_N_LATENT, BatchAdversary, SparseInputLinear
from scssl.nn._contrastive import DEFAULT_PROJECTION_HIDDEN
from scssl.nn._sparse import as_csr

from ._base import EncoderModule
from ._contrastive import ContrastivePretextMixin
from ._masked import (
    GeneWeights,
    MaskedPretextMixin,
    check_decoder_output,
    check_gene_weights,
)

Pretext = Literal["random_mask", "gene_programme_mask", "programme_to_tf", "byol", "barlow_twins"]
Likelihood = Literal["mse", "nb"]
PRETEXTS: tuple[str, ...] = get_args(Pretext)
MASKED_PRETEXTS = PRETEXTS[:3]
CONTRASTIVE_PRETEXTS = PRETEXTS[3:]
LIKELIHOODS: tuple[str, ...] = get_args(Likelihood)


def _check_options(pretext: str, likelihood: str, log_normalized: bool, decoder_output: str):
    if pretext not in PRETEXTS:
        raise ValueError(f"pretext={pretext!r} is not known; choose one of {list(PRETEXTS)}.")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood={likelihood!r}; choose one of {list(LIKELIHOODS)}.")
    if likelihood == "nb" and pretext not in MASKED_PRETEXTS:
        raise ValueError(f"likelihood='nb' needs a masked pretext, not {pretext!r}.")
    if likelihood == "nb" and log_normalized:
        raise ValueError(
            "likelihood='nb' models counts, but the data were registered with "
            "log_normalized=True. Register raw counts, or use likelihood='mse'."
        )
    check_decoder_output(decoder_output, likelihood)


class SSLModule(MaskedPretextMixin, ContrastivePretextMixin, EncoderModule):
    """MLP encoder pretrained with a self-supervised pretext task.

    Masked pretexts (``random_mask``, ``gene_programme_mask``, ``programme_to_tf``) add a
    decoder that mirrors the encoder and reconstruct hidden expression. Contrastive pretexts
    (``byol``, ``barlow_twins``) add projection heads and compare two augmented views.

    Parameters
    ----------
    n_input
        Number of genes (the gene vocabulary).
    n_batch
        Number of batches; with more than one, the decoder receives a one-hot batch covariate.
    n_labels, n_continuous_cov, n_cats_per_cov
        Accepted for scvi-tools' datamodule path; unused.
    pretext
        One of :data:`PRETEXTS`.
    likelihood
        Reconstruction loss of masked pretexts: ``"mse"`` on log1p-normalised expression, or
        ``"nb"``: negative-binomial log-likelihood of the counts, mean ``softmax(decoder) *
        library size`` and per-gene inverse dispersion ``exp(px_r)``.
    decoder_output
        ``"linear"`` (scssl's decoders); ``"sigmoid"``: the study's MSE decoder ends in a
        Sigmoid; ``"softplus"``: the study's NB decoder, whose Softplus output is the mean in
        counts. Set by :meth:`scssl.model.SSLEncoder.from_ssl_in_scg` from the checkpoint.
    gene_sample_size
        ``random_mask`` training minibatches reconstruct a random sample of this many genes (an
        unbiased estimate of the loss over all genes; see :mod:`scssl.module._masked`);
        ``None``: all genes. Validation always uses all genes.
    n_latent
        Embedding size.
    n_hidden
        Hidden layer sizes of the encoder; the decoder mirrors them.
    dropout_rate
        Dropout after every hidden activation.
    activation
        ``"selu"`` (the study), ``"relu"`` or ``"gelu"``.
    mask_rate
        ``random_mask``: share of genes masked per cell; ``gene_programme_mask``: share of
        programmes masked per minibatch.
    log_normalized
        The input is already ``normalize_total`` + ``log1p``; no on-the-fly normalisation.
    programme_members
        Boolean ``(n_programmes, n_input)`` gene-programme (or TF-target) membership.
    tf_index
        ``programme_to_tf``: vocabulary index of each programme's TF.
    tf_rest_weight
        ``programme_to_tf``: weight of the other hidden genes relative to the TF in the loss
        (0 = the TF only).
    views
        Contrastive pretexts: augmentations of the two views, e.g.
        ``(("negbin", "dropout"), ())`` (the study's Barlow Twins views).
    negbin_intensity, dropout_intensity
        Strength of the augmentations.
    augment_zeros
        Augment undetected genes too, as the study did (makes every view dense), instead of the
        detected genes only (views stay sparse; the default).
    projection_hidden, projection_dim
        BYOL projector and predictor sizes (the study's BYOL: 4096 hidden units; see
        :data:`~scssl.nn._contrastive.DEFAULT_PROJECTION_HIDDEN`).
    ema_decay_base, ema_cosine
        BYOL target update: ``target <- d * target + (1 - d) * online`` after every optimiser
        step, ``d`` constant or raised to 1 on a cosine schedule.
    projector_sizes, lambda_offdiag
        Barlow Twins projector sizes and off-diagonal weight.
    batch_centering
        With several batches: subtract each batch's mean log1p expression (relative to the mean
        of all training cells) from the input, and from the reconstruction target of MSE
        pretexts, so that additive batch shifts never reach the encoder (batch integration).
        The means are the buffer ``batch_means`` (set by the model from its data) and
        ``reference_mean``; the shift is applied as an offset of the first layer, so sparse
        input stays sparse.
    batch_adversary_weight
        With several batches and a weight above 0: a batch classifier learns to tell each
        cell's batch from its embedding, and the encoder learns, with this weight, to leave the
        classifier guessing uniformly (:class:`scssl.nn.BatchAdversary`). It removes batch
        effects that differ between cell types, which centering cannot.
    mask_unmeasured_genes
        Keep the buffer ``measured_genes`` (batches x genes, 1 where the batch measured the
        gene; set by the model from ``adata.varm["measured_genes"]``): masked pretexts leave a
        batch's unmeasured genes out of the reconstruction loss, and batch centering leaves them
        at zero, as a masked input.
    reconstruction_gene_weights
        Masked pretexts: ``"uniform"`` (the study) or ``"inverse_sd"``: each gene's
        reconstruction error is weighted by the inverse of its standard deviation of log1p
        expression (the buffer ``gene_loss_weight``, set by the model from its data; mean 1,
        the spread floored at a share of the median, see
        :data:`~scssl.module._masked.SD_FLOOR_RATIO`), so that genes of little spread, e.g.
        lowly expressed markers, are not drowned by the errors of highly expressed ones.

    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        *,
        pretext: Pretext = "random_mask",
        likelihood: Likelihood = "mse",
        n_latent: int = DEFAULT_N_LATENT,
        n_hidden: Sequence[int] = DEFAULT_N_HIDDEN,
        dropout_rate: float = 0.1,
        activation: str = "selu",
        mask_rate: float = 0.5,
        log_normalized: bool = False,
        decoder_output: str = "linear",
        gene_sample_size: int | None = None,
        programme_members: np.ndarray | None = None,
        tf_index: np.ndarray | None = None,
        tf_rest_weight: float = 1.0,
        views: Sequence[Sequence[str]] | None = None,
        negbin_intensity: float = 0.1,
        dropout_intensity: float = 0.1,
        augment_zeros: bool = False,
        projection_hidden: int = DEFAULT_PROJECTION_HIDDEN,
        projection_dim: int = 256,
        ema_decay_base: float = 0.99,
        ema_cosine: bool = False,
        projector_sizes: Sequence[int] = (256, 256, 512, 512),
        lambda_offdiag: float = 0.0051,
        batch_centering: bool = False,
        batch_adversary_weight: float = 0.0,
        mask_unmeasured_genes: bool = False,
        reconstruction_gene_weights: GeneWeights = "uniform",
    ):
        super().__init__(
            n_input, n_batch, n_latent, n_hidden, dropout_rate, activation, log_normalized
        )
        _check_options(pretext, likelihood, log_normalized, decoder_output)
        self.pretext = pretext
        self.likelihood = likelihood
        self.decoder_output = decoder_output
        self.gene_sample_size = gene_sample_size
        self.tf_rest_weight = tf_rest_weight
        self._init_batch_handling(batch_centering, batch_adversary_weight)
        self.mask_unmeasured_genes = bool(mask_unmeasured_genes)
        if self.mask_unmeasured_genes:
            rows = max(self.n_batch_covariate, 1)
            self.register_buffer("measured_genes", torch.ones(rows, self.n_input))
        check_gene_weights(reconstruction_gene_weights, pretext in MASKED_PRETEXTS, pretext)
        if pretext in MASKED_PRETEXTS:
            self._init_decoder(
                n_hidden, activation, dropout_rate, mask_rate, programme_members, tf_index
            )
            self._init_gene_loss_weight(reconstruction_gene_weights)
        else:
            self._init_contrastive(
                views,
                augmentation={
                    "negbin_intensity": negbin_intensity,
                    "dropout_intensity": dropout_intensity,
                    "on_zeros": augment_zeros,
                },
                byol={
                    "projection_hidden": projection_hidden,
                    "projection_dim": projection_dim,
                    "ema_decay_base": ema_decay_base,
                    "ema_cosine": ema_cosine,
                },
                barlow_twins={"projector_sizes": projector_sizes, "lambda_offdiag": lambda_offdiag},
            )

    def _init_batch_handling(self, batch_centering: bool, batch_adversary_weight: float) -> None:
        self.batch_centering = bool(batch_centering and self.n_batch_covariate)
        if self.batch_centering:
            self.register_buffer("batch_means", torch.zeros(self.n_batch_covariate, self.n_input))
            self.register_buffer("reference_mean", torch.zeros(self.n_input))
        if batch_adversary_weight < 0:
            raise ValueError(f"batch_adversary_weight={batch_adversary_weight}; give 0 or more.")
        if batch_adversary_weight and not self.n_batch_covariate:
            warn_user(
                f"batch_adversary_weight={batch_adversary_weight} is ignored: the data hold one "
                "batch. Register a batch_key with several batches in setup_anndata."
            )
        self.batch_adversary_weight = (
            float(batch_adversary_weight) if self.n_batch_covariate else 0.0
        )
        if self.batch_adversary_weight:
            self.batch_adversary = BatchAdversary(self.n_latent, self.n_batch_covariate)
            # batches with training cells (set by the model from its data; not saved)
            present = torch.ones(self.n_batch_covariate, dtype=torch.bool)
            self.register_buffer("adversary_batches", present, persistent=False)

    @property
    def has_decoder(self) -> bool:
        """Whether the pretext reconstructs expression (masked pretexts)."""
        return self.pretext in MASKED_PRETEXTS

    # ------------------------------------------------------------ inference
    def batch_deltas(self) -> torch.Tensor | None:
        """Per-batch shift of the mean log1p expression from the reference, ``(n_batch, G)``."""
        if not self.batch_centering:
            return None
        return self.batch_means - self.reference_mean

    def encode(
        self,
        x_norm: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        deltas: torch.Tensor | None = None,
        encoder: nn.Sequential | None = None,
        input_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encode ``x_norm - deltas[batch_index]`` (or ``x_norm`` without batch centering).

        The subtraction is folded into the first layer (``W x - W delta``), so a sparse
        ``x_norm`` stays sparse. ``deltas`` defaults to the training batches' shifts. For a
        masked ``x_norm``, ``input_weight`` (``(n_cells, G)``: 0 where masked, the keep scale
        elsewhere) centres only what the encoder sees: masked entries stay 0 instead of
        showing ``-delta``, which would tell the encoder the batch.
        """
        encoder = self.encoder if encoder is None else encoder
        deltas = self.batch_deltas() if deltas is None else deltas
        if deltas is None:
            return encoder(x_norm)
        if batch_index is None:
            raise ValueError(
                "This encoder centres each batch (batch_centering=True); pass each cell's batch."
            )
        first = encoder[0]
        weight = first.weight if isinstance(first, SparseInputLinear) else first.weight.T
        cell_deltas_index = batch_index.view(-1).long()
        if input_weight is None:
            shift = (deltas @ weight)[cell_deltas_index]
        else:
            shift = (input_weight * deltas[cell_deltas_index]) @ weight
        return encoder[1:](first(x_norm) - shift)

    @auto_move_data
    def embed(
        self, x: Tensor, batch_index: Tensor | None = None, deltas: Tensor | None = None
    ) -> Tensor:
        """Embedding of unmasked cells (call in eval mode for deterministic output).

        ``deltas`` replaces the training batches' shifts, for cells of new batches.
        """
        return self.encode(self.normalize(x), batch_index, deltas)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {
            "x": tensors[REGISTRY_KEYS.X_KEY],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
        }

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        if not self.has_decoder:
            return {"z": inference_outputs["z"]}
        return {
            "z": inference_outputs["z"],
            "batch_index": tensors.get(REGISTRY_KEYS.BATCH_KEY),
            "columns": inference_outputs["columns"],
        }

    @auto_move_data
    def inference(
        self, x: torch.Tensor, batch_index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Normalise, then mask (masked pretexts) or augment twice (contrastive) and encode."""
        x = as_csr(x)
        x_norm = self.normalize(x)
        if not self.has_decoder:
            return self._contrastive_inference(x_norm, batch_index)
        return self._masked_inference(x, x_norm, batch_index)

    @auto_move_data
    def generative(
        self, z: Tensor, batch_index: Tensor | None = None, columns: Tensor | None = None
    ) -> dict:
        """Decode the embedding (masked pretexts; ``columns`` of the loss); nothing otherwise."""
        if not self.has_decoder:
            return {}
        return {"x_hat": self.decode(z, batch_index, columns)}

    # ----------------------------------------------------------------- loss
    def pretext_loss(self, inference_outputs: dict, generative_outputs: dict) -> LossOutput:
        """The pretext's loss: reconstruction of hidden entries, or the contrastive loss."""
        if self.has_decoder:
            return self._reconstruction_loss(inference_outputs, generative_outputs["x_hat"])
        return self._contrastive_loss(inference_outputs)

    def adversary_losses(self, z: torch.Tensor, batch_index: torch.Tensor):
        """Mean classifier and confusion losses of the batch adversary on embeddings ``z``."""
        classifier, confusion = self.batch_adversary(z, batch_index, self.adversary_batches)
        return classifier.mean(), confusion.mean()

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Pretext loss, plus the batch adversary's cross-entropy when it is on."""
        output = self.pretext_loss(inference_outputs, generative_outputs)
        if not self.batch_adversary_weight:
            return output
        classifier, confusion = self.adversary_losses(
            inference_outputs["z"], tensors[REGISTRY_KEYS.BATCH_KEY]
        )
        # The classifier's own loss trains only the classifier (detached embedding), so it is
        # added unweighted; the weight sets how hard the encoder works to confuse it.
        return LossOutput(
            loss=output.loss + classifier + self.batch_adversary_weight * confusion,
            reconstruction_loss=output.reconstruction_loss,
            n_obs_minibatch=output.n_obs_minibatch,
            extra_metrics={
                "pretext_loss": output.loss.detach(),
                "batch_classifier_loss": classifier.detach(),
                "batch_confusion_loss": confusion.detach(),
            },
        )

    @torch.inference_mode()
    def sample(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reconstruction of the minibatch (log1p space).

        A masked autoencoder has no latent distribution to sample from; this returns the
        deterministic decoder output for unmasked input.
        """
        return self.reconstruct(tensors[REGISTRY_KEYS.X_KEY], tensors.get(REGISTRY_KEYS.BATCH_KEY))
