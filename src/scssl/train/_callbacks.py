"""Lightning callbacks used by scssl models."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import Callback


class TargetNetworkUpdate(Callback):
    """After every optimiser step, move BYOL's target network towards the online one.

    Under data parallelism every rank applies the same update to identical (all-reduced)
    online weights, so the targets stay identical across ranks. The decay used is logged as
    ``ema_decay``.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        total_steps = trainer.estimated_stepping_batches
        total = int(total_steps) if total_steps != float("inf") else None
        decay = pl_module.module.update_target(trainer.global_step, total)
        if decay is not None:
            pl_module.log("ema_decay", decay, on_step=False, on_epoch=True, sync_dist=True)


class LastCheckpoint(Callback):
    """After every epoch, write ``dirpath/last.ckpt``: weights, optimiser state and epoch.

    A plain callback rather than Lightning's ``ModelCheckpoint``, which scvi-tools' trainer
    pairs with a checkpoint of its own. Resume with ``train(ckpt_path=dirpath / "last.ckpt")``.
    """

    filename = "last.ckpt"

    def __init__(self, dirpath):
        super().__init__()
        self.dirpath = Path(dirpath)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.dirpath / self.filename)
