"""Timing helpers shared by the benchmark scripts (imported from ``benchmarks/``)."""

from __future__ import annotations

import time


class StepTimer:
    """Lightning callback: wall time of the training steps after ``warmup`` steps.

    ``start``/``end``: ``perf_counter`` at the first timed step and after the last one;
    ``steps`` and ``cells``: the timed steps and the cells they trained on.
    """

    def __new__(cls, warmup: int):
        from lightning.pytorch import Callback

        class Timer(Callback):
            def __init__(self):
                self.warmup, self.start, self.end = warmup, None, None
                self.steps, self.cells = 0, 0

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == self.warmup and self.start is None:
                    self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if self.start is not None:
                    self.steps += 1
                    self.cells += int(batch["X"].shape[0])
                    self.end = time.perf_counter()

        return Timer()
