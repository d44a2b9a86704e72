"""Two-process CPU DDP training (gloo), run by tests/test_scaling.py::test_ddp_two_processes.

Lightning re-runs this script once per extra rank, so all work sits under ``__main__``.
Usage: python ddp_train.py OUT_DIR [PRETEXT]
Each rank writes OUT_DIR/rank{r}.npz with the cells it trained on in epoch 0, its parameters
and buffers after training (for BYOL: also its EMA target network before and after) and the
embedding it computes; rank 0 also saves the model.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    import numpy as np
    import scvi
    import torch

    import scssl

    out = Path(sys.argv[1])
    pretext = sys.argv[2] if len(sys.argv) > 2 else "random_mask"
    torch.set_num_threads(1)
    scvi.settings.seed = 0
    adata = scssl.datasets.kang_ifnb_pbmc_demo()[:480].copy()
    scssl.model.SSLEncoder.setup_anndata(adata)
    extra = {"projection_hidden": 32, "projection_dim": 16} if pretext == "byol" else {}
    model = scssl.model.SSLEncoder(adata, pretext=pretext, n_hidden=(32,), n_latent=8, **extra)
    module = model.module

    def flat(names):
        state = module.state_dict()
        return torch.cat([state[n].detach().float().flatten() for n in names]).numpy()

    target_names = [n for n in module.state_dict() if n.startswith("target_")]
    target_before = flat(target_names) if target_names else np.zeros(0)
    model.train(
        max_epochs=2,
        batch_size=60,
        train_size=0.75,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(out),
    )
    trainer = model.trainer
    sampler = trainer.train_dataloader.sampler
    sampler.set_epoch(0)
    cells = np.asarray(model.train_indices)[sampler.positions()]
    params = torch.cat([p.detach().flatten() for p in model.module.parameters()]).numpy()
    states = flat(list(module.state_dict()))  # parameters and buffers (batch-norm statistics)
    target_after = flat(target_names) if target_names else np.zeros(0)
    z = model.get_latent_representation()
    np.savez(
        out / f"rank{trainer.global_rank}.npz",
        cells=cells,
        params=params,
        states=states,
        target_before=target_before,
        target_after=target_after,
        z=z,
        world_size=trainer.world_size,
        num_replicas=sampler.num_replicas,
        strategy=type(trainer.strategy).__name__,
    )
    if trainer.is_global_zero:  # post-training work on rank 0 only
        model.save(out / "model", overwrite=True)
