"""Masked pretexts of SSLModule: the decoder, the masking and the reconstruction loss.

Training minibatches of ``random_mask`` reconstruct a random sample of about
``gene_sample_size`` genes (the decoder's output layer, most of a step's cost, then runs on
those genes only). Each gene enters the sample independently with its inclusion probability
``q_g`` (Poisson sampling), proportional to its root-mean-square log1p expression and capped at
1, so that the genes that carry the loss are decoded at every step and near-silent genes now and
then; the error of a sampled gene is weighted by ``1 / q_g`` (Horvitz-Thompson). The loss, the
weighted squared error over masked entries divided by the expected number of masked entries of
all genes, is then an unbiased estimate of the loss over all genes. ``gene_programme_mask``
decodes exactly the masked genes. Validation, embeddings and reconstructions use all genes.

With ``reconstruction_gene_weights="inverse_sd"`` each gene's error is further weighted by
``w_g``, proportional to the inverse of its standard deviation of log1p expression (floored at
the median's ``1 / SD_FLOOR_RATIO``; mean 1 over the genes), and the genes' inclusion
probabilities are proportional to ``w_g`` times their root mean square.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial
from scvi.module.base import LossOutput, auto_move_data
from torch import nn

from scssl.data._normalize import TARGET_SUM
from scssl.nn import GeneProgrammeMask, ProgrammeToTFMask, RandomMask, mlp
from scssl.nn._sparse import as_csr, dense_columns

DecoderOutput = Literal["linear", "sigmoid", "softplus"]
DECODER_OUTPUTS: tuple[str, ...] = get_args(DecoderOutput)
#: Genes reconstructed per training minibatch of ``random_mask`` (chosen on Kang, see docs).
DEFAULT_GENE_SAMPLE_SIZE = 2048
GeneWeights = Literal["uniform", "inverse_sd"]
GENE_WEIGHTS: tuple[str, ...] = get_args(GeneWeights)
#: ``inverse_sd`` weights: standard deviations below the median's share ``1 / SD_FLOOR_RATIO``
#: count as that floor, so that near-silent genes do not dominate (about 5% of the 2,000
#: most variable genes of Kang and pbmc_3tech). The median is over genes with any spread, so
#: silent genes (sd 0) get the floor however many there are.
SD_FLOOR_RATIO = 4.0


def check_gene_weights(gene_weights: str, masked: bool, pretext: str) -> None:
    """A known weighting; per-gene weights need a reconstruction: a masked pretext."""
    if gene_weights not in GENE_WEIGHTS:
        raise ValueError(
            f"reconstruction_gene_weights={gene_weights!r}; choose one of {GENE_WEIGHTS}."
        )
    if gene_weights != "uniform" and not masked:
        raise ValueError(
            f"reconstruction_gene_weights={gene_weights!r} weights a reconstruction loss, which "
            f"pretext={pretext!r} does not have; use a masked pretext or 'uniform'."
        )


def check_decoder_output(decoder_output: str, likelihood: str) -> None:
    """``sigmoid`` is the study's MSE decoder, ``softplus`` its NB decoder (mean in counts)."""
    if decoder_output not in DECODER_OUTPUTS:
        raise ValueError(f"decoder_output={decoder_output!r}; choose one of {DECODER_OUTPUTS}.")
    needs = {"sigmoid": "mse", "softplus": "nb"}.get(decoder_output)
    if needs is not None and likelihood != needs:
        raise ValueError(
            f"decoder_output={decoder_output!r} goes with likelihood={needs!r}, not {likelihood!r}."
        )


def make_masking(pretext, mask_rate, members, tf_index) -> nn.Module:
    """The masking module of a masked pretext."""
    if pretext == "random_mask":
        return RandomMask(mask_rate)
    if members is None:
        raise ValueError(f"pretext={pretext!r} needs gene programmes (programme_members).")
    if pretext == "gene_programme_mask":
        return GeneProgrammeMask(torch.as_tensor(members), mask_rate)
    if tf_index is None:
        raise ValueError("pretext='programme_to_tf' needs the TF of each programme (tf_index).")
    return ProgrammeToTFMask(torch.as_tensor(members), torch.as_tensor(tf_index))


class MaskedPretextMixin:
    """Decoder, masking and reconstruction loss (methods of :class:`SSLModule`)."""

    def _init_decoder(self, n_hidden, activation, dropout_rate, mask_rate, members, tf_index):
        self.decoder = mlp(
            self.n_latent + self.n_batch_covariate,
            list(reversed(n_hidden)),
            self.n_input,
            activation=activation,
            dropout_rate=dropout_rate,
        )
        if self.likelihood == "nb":
            self.px_r = nn.Parameter(torch.zeros(self.n_input))
        self.masking = make_masking(self.pretext, mask_rate, members, tf_index)
        if self._samples_genes():
            uniform = self.gene_sample_size / self.n_input
            self.register_buffer("gene_inclusion", torch.full((self.n_input,), uniform))

    def _init_gene_loss_weight(self, gene_weights: str) -> None:
        self.reconstruction_gene_weights = gene_weights
        if gene_weights != "uniform":
            self.register_buffer("gene_loss_weight", torch.ones(self.n_input))

    def set_gene_spread(self, sd: torch.Tensor) -> None:
        """Set ``gene_loss_weight`` from each gene's standard deviation of log1p expression.

        The weights are ``1 / max(sd, median / SD_FLOOR_RATIO)`` scaled to mean 1, the median
        over the genes with any spread, so no gene weighs more than ``SD_FLOOR_RATIO`` times a
        gene of median spread, however many genes are silent. No-op for uniform weights.
        """
        if self.reconstruction_gene_weights == "uniform":
            return
        sd = torch.as_tensor(sd, dtype=torch.float32)
        spread = sd[sd > 0]
        median = spread.median() if len(spread) else torch.tensor(1.0)
        floor = (median / SD_FLOOR_RATIO).clamp(min=1e-6)
        weight = 1.0 / sd.clamp(min=floor)
        self.gene_loss_weight.copy_(weight / weight.mean())

    # ------------------------------------------------------------- decoding
    def decode(
        self,
        z: torch.Tensor,
        batch_index: torch.Tensor | None,
        columns: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decoder output for all genes, or for ``columns`` only (with the batch covariate)."""
        if self.n_batch_covariate:
            one_hot = F.one_hot(batch_index.view(-1).long(), self.n_batch_covariate).to(z.dtype)
            z = torch.cat([z, one_hot], dim=-1)
        if columns is None:
            out = self.decoder(z)
        else:
            last = self.decoder[-1]
            out = F.linear(self.decoder[:-1](z), last.weight[columns], last.bias[columns])
        if self.decoder_output == "sigmoid":
            return torch.sigmoid(out)
        if self.decoder_output == "softplus":
            return F.softplus(out)
        return out

    def _nb_mean(self, x_hat: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
        """NB mean in counts: the study's Softplus output, or scssl's softmax share x library."""
        if self.decoder_output == "softplus":
            return x_hat
        return torch.softmax(x_hat, dim=-1) * library

    @auto_move_data
    def reconstruct(
        self, x: torch.Tensor, batch_index: torch.Tensor | None = None, counts: bool = False
    ) -> torch.Tensor:
        """Reconstruction of unmasked cells: log1p-normalised values, or expected counts."""
        if not self.has_decoder:
            raise ValueError(
                f"pretext={self.pretext!r} has no decoder; reconstruction needs a masked pretext "
                "(random_mask, gene_programme_mask or programme_to_tf)."
            )
        x = as_csr(x)
        library = x.sum(dim=1, keepdim=True).to_dense() if not self.log_normalized else None
        decoded = self.decode(self.embed(x, batch_index), batch_index)
        if self.batch_centering and self.likelihood == "mse":
            decoded = decoded + self.batch_deltas()[batch_index.view(-1).long()]
        if self.likelihood == "nb":
            mean = self._nb_mean(decoded, library)
            return mean if counts else torch.log1p(mean / library.clamp(min=1e-8) * TARGET_SUM)
        if counts:
            if library is None:
                raise ValueError("Expected counts need raw counts; the data are log-normalised.")
            return torch.expm1(decoded).clamp(min=0.0) * library / TARGET_SUM
        return decoded

    # ------------------------------------------------------------ inference
    def _samples_genes(self) -> bool:
        """Whether training minibatches reconstruct a sample of the genes."""
        sample = self.gene_sample_size
        return (
            sample is not None
            and sample < self.n_input
            and self.pretext == "random_mask"
            and (self.likelihood == "mse" or self.decoder_output == "softplus")
        )

    def set_gene_importance(self, importance: torch.Tensor) -> None:
        """Set the genes' inclusion probabilities proportional to ``importance``.

        E.g. each gene's root-mean-square log1p expression. The probabilities sum to
        ``gene_sample_size``, are capped at 1 and floored at a quarter of the uniform share,
        so that every gene is decoded now and then.
        """
        if not self._samples_genes():
            return
        size = float(self.gene_sample_size)
        floor = 0.25 * size / self.n_input
        weight = torch.as_tensor(importance, dtype=torch.float32).clamp(min=0)
        weight = weight / weight.sum().clamp(min=1e-12)
        low, high = 0.0, size / floor
        for _ in range(60):  # bisect the scale c of sum(clamp(c * weight, floor, 1)) = size
            scale = (low + high) / 2
            probability = (scale * weight).clamp(min=floor, max=1.0)
            low, high = (scale, high) if probability.sum() < size else (low, scale)
        self.gene_inclusion.copy_(probability)

    def _sampled_columns(self, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Genes a ``random_mask`` training minibatch reconstructs and their ``1 / q_g``."""
        if not self.training or not self._samples_genes():
            return None, None
        inclusion = self.gene_inclusion.to(device)
        columns = torch.nonzero(torch.rand(self.n_input, device=device) < inclusion).view(-1)
        return columns, 1.0 / inclusion[columns]

    def _masked_inference(self, x: torch.Tensor, x_norm: torch.Tensor, batch_index) -> dict:
        """Mask, encode, and say which genes the loss covers and with which weights."""
        (columns, column_weight), input_weight = self._sampled_columns(x_norm.device), None
        if self.pretext == "programme_to_tf":
            masked_input, kept, tf = self.masking(x_norm)
            loss_weight = self._tf_loss_weight(kept, tf)
            input_weight = kept.to(x_norm.dtype)
        elif self.pretext == "gene_programme_mask":
            masked_input, mask = self.masking(x_norm)
            columns = torch.nonzero(mask[0]).view(-1)  # the loss covers exactly these genes
            loss_weight = mask[:, columns].to(x_norm.dtype)
            if self.batch_centering:
                input_weight = self._keep_scale(mask).to(x_norm.dtype)
        elif self.batch_centering:  # centring needs the input mask of every gene
            masked_input, mask = self.masking(x_norm)
            input_weight = self._keep_scale(mask).to(x_norm.dtype)
            loss_weight = (mask if columns is None else mask[:, columns]).to(x_norm.dtype)
        else:
            masked_input, mask = self.masking(x_norm, columns)
            loss_weight = mask.to(x_norm.dtype)
        if column_weight is not None:
            loss_weight = loss_weight * column_weight
        if self.reconstruction_gene_weights != "uniform":
            gene_weight = self.gene_loss_weight
            loss_weight = loss_weight * (gene_weight if columns is None else gene_weight[columns])
        if self.mask_unmeasured_genes:  # genes a cell's batch did not measure are not zeros
            rows = 0 if batch_index is None else batch_index.view(-1).long()
            measured = self.measured_genes[rows]
            loss_weight = loss_weight * (measured if columns is None else measured[..., columns])
        out = {
            "x_norm": x_norm,
            "columns": columns,
            "loss_weight": loss_weight,
            "z": self.encode(masked_input, batch_index, input_weight=input_weight),
        }
        if self.batch_centering and self.likelihood == "mse":
            shift = self.batch_deltas()[batch_index.view(-1).long()]
            out["target_shift"] = shift if columns is None else shift[:, columns]
        if self.likelihood == "nb":
            out["counts"] = dense_columns(x, columns)
            out["library"] = x.sum(dim=1, keepdim=True).to_dense()
        return out

    def _keep_scale(self, mask: torch.Tensor) -> torch.Tensor:
        """Factor of each input entry after masking: 0 where masked, the keep scale elsewhere."""
        if isinstance(self.masking, RandomMask):
            scale = 1.0 / (1.0 - self.masking.rate)
        else:  # gene programmes: the scale depends on the share hidden in this minibatch
            scale = 1.0 / (1.0 - mask[0].float().mean()).clamp(min=1e-6)
        return (~mask) * scale

    def _tf_loss_weight(self, kept: torch.Tensor, tf: torch.Tensor) -> torch.Tensor:
        """Weight 1 on each cell's TF, ``tf_rest_weight`` shared by the other hidden genes."""
        tf_one_hot = F.one_hot(tf, self.n_input).to(torch.bool)
        rest = ~kept & ~tf_one_hot
        n_rest = rest.sum(dim=1, keepdim=True).clamp(min=1)
        return tf_one_hot.float() + self.tf_rest_weight * rest.float() / n_rest

    # ----------------------------------------------------------------- loss
    def _reconstruction_loss(self, inference_outputs: dict, x_hat: torch.Tensor) -> LossOutput:
        """Error on the hidden entries the loss covers (see the module's docstring)."""
        weight = inference_outputs["loss_weight"]
        # in float32 also under bf16 autocast: the sums of a minibatch need the precision
        weighted = self._reconstruction_error(inference_outputs, x_hat.float()) * weight
        per_cell = weighted.sum(dim=1) / weight.sum(dim=1).clamp(min=1e-8)
        if isinstance(self.masking, RandomMask):
            # the expected number of masked entries of all genes: unbiased with sampled genes
            loss = weighted.sum() / (self.masking.rate * weight.shape[0] * self.n_input)
        else:
            loss = weighted.sum() / weight.sum().clamp(min=1e-8)
        return LossOutput(loss=loss, reconstruction_loss=per_cell, n_obs_minibatch=weight.shape[0])

    def _reconstruction_error(self, inference_outputs: dict, x_hat: torch.Tensor) -> torch.Tensor:
        """Entry-wise squared error (log1p space) or negative NB log-likelihood (counts)."""
        if self.likelihood == "nb":
            counts = inference_outputs["counts"]
            mean = self._nb_mean(x_hat, inference_outputs["library"])
            theta = self.px_r.exp()
            if inference_outputs["columns"] is not None:
                theta = theta[inference_outputs["columns"]]
            nb = NegativeBinomial(mu=mean, theta=theta, validate_args=False)
            return -nb.log_prob(counts)
        target = dense_columns(inference_outputs["x_norm"], inference_outputs["columns"])
        if "target_shift" in inference_outputs:
            target = target - inference_outputs["target_shift"]
        return (x_hat - target).pow(2)
