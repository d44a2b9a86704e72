"""Adversarial batch removal: a batch classifier the encoder learns to confuse."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


class BatchAdversary(nn.Module):
    """A batch classifier on the embedding, and the encoder's loss for confusing it.

    :meth:`forward` returns two per-cell losses:

    - ``classifier``: cross-entropy of the classifier on the detached embedding, which trains
      the classifier only;
    - ``confusion``: cross-entropy between the classifier's prediction, with its weights held
      fixed, and the uniform distribution over batches (those of ``present``, a boolean mask,
      when given), which trains the encoder only. It is
      smallest (``log n_batch``) when the embedding no longer tells batches apart.

    Unlike a gradient-reversal layer, which lets the encoder push the classifier's error
    without bound, confusing the classifier is a bounded goal: the encoder cannot win it by
    wrecking the embedding.
    """

    def __init__(self, n_latent: int, n_batch: int, n_hidden: int = 128):
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(n_latent, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_batch),
        )

    def forward(
        self, z: torch.Tensor, batch_index: torch.Tensor, present: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        target = batch_index.view(-1).long()
        classifier = nn.functional.cross_entropy(
            self.classifier(z.detach()), target, reduction="none"
        )
        fixed = {name: p.detach() for name, p in self.classifier.named_parameters()}
        logits = functional_call(self.classifier, fixed, (z,))
        log_p = torch.log_softmax(logits, dim=-1)
        if present is not None:  # batches without training cells are no target to confuse
            log_p = log_p[:, present]
        confusion = -log_p.mean(dim=-1)
        return classifier, confusion
