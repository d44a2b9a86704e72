"""scvi-tools' training plan without the ELBO bookkeeping of variational models."""

from __future__ import annotations

import torch
from scvi.module.base import LossOutput
from scvi.train import TrainingPlan


class SSLTrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that logs a model's own metrics, not an ELBO.

    scvi-tools' plan records ``elbo_*``, ``reconstruction_loss_*``, ``kl_local_*`` and
    ``kl_global_*`` for every model; the scssl models are not variational (their KL terms are
    0, and a classifier or a Barlow Twins encoder has no reconstruction), so ``model.history``
    would list numbers that mean nothing. This plan logs ``train_loss`` / ``validation_loss``
    (logged by the steps) and the module's ``extra_metrics`` (``pretext_loss``,
    ``classification_loss``, ...) only. ``reduce_lr_on_plateau`` watches ``validation_loss``
    unless ``lr_scheduler_metric`` says otherwise (scvi-tools' default is the ELBO).
    """

    def __init__(self, module, *, lr_scheduler_metric: str = "validation_loss", **kwargs):
        super().__init__(module, lr_scheduler_metric=lr_scheduler_metric, **kwargs)

    @torch.inference_mode()
    def compute_and_log_metrics(self, loss_output: LossOutput, metrics: dict, mode: str) -> None:
        """Log the module's extra metrics as ``{name}_{mode}``."""
        for key in loss_output.extra_metrics_keys:
            value = loss_output.extra_metrics[key]
            if isinstance(value, torch.Tensor):
                if value.ndim:  # as scvi-tools: only scalars are logged
                    continue
                value = value.detach()
            self.log(
                f"{key}_{mode}",
                value,
                on_step=self.on_step,
                on_epoch=self.on_epoch,
                batch_size=loss_output.n_obs_minibatch,
                sync_dist=self.use_sync_dist,
            )
