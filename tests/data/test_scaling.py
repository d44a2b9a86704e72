"""Out-of-core data (backed, sharded), block-shuffle sampling and DDP."""

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scvi
import torch

import scssl
from scssl.data import BlockShuffleSampler, ShardedAnnData, read_shards


@pytest.fixture
def kang_on_disk(small_kang, tmp_path):
    """The 600-cell Kang subsample written as one .h5ad and as three shards."""
    path = tmp_path / "kang.h5ad"
    small_kang.write_h5ad(path)
    shards = []
    for i, (start, stop) in enumerate([(0, 250), (250, 400), (400, 600)]):
        shard = tmp_path / f"shard{i}.h5ad"
        small_kang[start:stop].write_h5ad(shard)
        shards.append(shard)
    return path, shards


# ----------------------------------------------------------------- sampler
def test_block_sampler_visits_every_cell_once_in_blocks():
    sampler = BlockShuffleSampler(1000, batch_size=100, block_size=50, seed=3)
    batches = list(sampler)
    positions = np.concatenate(batches)
    assert len(batches) == len(sampler) == 10
    assert np.array_equal(np.sort(positions), np.arange(1000))
    assert all(np.all(np.diff(b) > 0) for b in batches)  # each minibatch sorted for reading
    # cells of a minibatch come from a few blocks, not from all over the file
    blocks_per_batch = [len(np.unique(b // 50)) for b in batches]
    assert max(blocks_per_batch) <= 8
    # a new order every epoch, reproducible from the seed
    again = BlockShuffleSampler(1000, batch_size=100, block_size=50, seed=3)
    assert np.array_equal(np.concatenate(list(again)), positions)
    assert not np.array_equal(np.concatenate(list(sampler)), positions)
    sampler.set_epoch(0)
    assert np.array_equal(np.concatenate(list(sampler)), positions)


def test_block_sampler_splits_cells_across_ranks():
    n_obs, world = 1003, 3
    parts = [
        np.concatenate(list(BlockShuffleSampler(n_obs, 64, 16, num_replicas=world, rank=r)))
        for r in range(world)
    ]
    assert {len(p) for p in parts} == {n_obs // world}
    assert len(np.unique(np.concatenate(parts))) == world * (n_obs // world)  # disjoint
    lengths = {
        len(BlockShuffleSampler(n_obs, 64, 16, num_replicas=world, rank=r)) for r in range(world)
    }
    assert len(lengths) == 1  # same number of steps on every rank (no DDP hang)
    ordered = np.concatenate(list(BlockShuffleSampler(10, 4, shuffle=False)))
    assert np.array_equal(ordered, np.arange(10))
    with pytest.raises(ValueError, match="rank"):
        BlockShuffleSampler(10, 4, num_replicas=2, rank=2)


# ------------------------------------------------------- backed and shards
def test_backed_and_sharded_embeddings_equal_in_memory(trained_model, kang_demo, kang_on_disk):
    path, shards = kang_on_disk
    in_memory = trained_model.get_latent_representation(kang_demo[:600].copy())
    backed = ad.read_h5ad(path, backed="r")
    np.testing.assert_allclose(
        trained_model.get_latent_representation(backed), in_memory, rtol=1e-5, atol=1e-6
    )
    collection = read_shards(shards)
    assert isinstance(collection, ShardedAnnData)
    assert collection.shape == (600, kang_demo.n_vars)
    assert collection.shard_sizes == [250, 150, 200]
    np.testing.assert_allclose(
        trained_model.get_latent_representation(collection), in_memory, rtol=1e-5, atol=1e-6
    )
    scssl.tl.embed(collection, trained_model)
    np.testing.assert_allclose(collection.obsm["X_scssl"], in_memory, rtol=1e-5, atol=1e-6)
    # a subset in a scrambled order comes back in that order
    idx = np.array([599, 3, 260, 251, 10])
    np.testing.assert_allclose(
        trained_model.get_latent_representation(collection, indices=idx),
        in_memory[idx],
        rtol=1e-5,
        atol=1e-6,
    )


def test_training_from_backed_and_shards(kang_on_disk, tmp_path):
    path, shards = kang_on_disk
    scvi.settings.seed = 0
    backed = ad.read_h5ad(path, backed="r")
    scssl.model.SSLEncoder.setup_anndata(backed)
    model = scssl.model.SSLEncoder(backed, n_hidden=(32,), n_latent=8)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    loader = model.trainer.train_dataloader
    assert isinstance(loader.sampler, BlockShuffleSampler)
    assert loader.sampler.block_size == 64  # data on disk: block shuffling by default
    batch = next(iter(loader))
    assert batch["X"].layout == torch.sparse_csr
    # validation cells are whole blocks, disjoint from the training cells
    assert len(np.intersect1d(model.train_indices, model.validation_indices)) == 0
    assert model.get_latent_representation().shape == (600, 8)

    collection = scssl.model.SSLEncoder.setup_anndata([str(s) for s in shards], batch_key="stim")
    assert isinstance(collection, ShardedAnnData)
    model = scssl.model.SSLEncoder(collection, n_hidden=(32,), n_latent=8)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    z = model.get_latent_representation()
    assert z.shape == (600, 8) and np.isfinite(z).all()
    assert model.get_reconstructed_expression(indices=[0, 300], return_numpy=True).shape == (
        2,
        collection.n_vars,
    )
    model.save(tmp_path / "model")
    reopened = read_shards(shards)
    loaded = scssl.model.SSLEncoder.load(str(tmp_path / "model"), adata=reopened)
    np.testing.assert_array_equal(loaded.get_latent_representation(), z)


def test_in_memory_training_keeps_plain_shuffle(small_kang):
    scssl.model.SSLEncoder.setup_anndata(small_kang)
    model = scssl.model.SSLEncoder(small_kang, n_hidden=(16,), n_latent=4)
    model.train(max_epochs=1, enable_progress_bar=False)
    # in memory, one process: scvi-tools' own per-cell shuffle, unchanged
    assert not isinstance(model.trainer.train_dataloader.sampler, BlockShuffleSampler)
    assert model.trainer.datamodule.block_size == 1


def test_read_shards_errors(small_kang, tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        read_shards([])
    with pytest.raises(ValueError, match="list of shards"):
        read_shards(str(tmp_path / "x.h5ad"))
    other = small_kang[:10, ::-1].copy()
    with pytest.raises(ValueError, match="Shard 1 has other genes"):
        read_shards([small_kang[:10].copy(), other])


# --------------------------------------------------------------------- DDP
@pytest.mark.parametrize("pretext", ["random_mask", "byol"])
def test_ddp_two_processes(tmp_path, pretext):
    """``train(accelerator="cpu", devices=2, strategy="ddp")``: two gloo ranks, distinct cells."""
    script = Path(__file__).parent / "scripts" / "ddp_train.py"
    src = Path(scssl.__file__).resolve().parents[1]
    path = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), pretext],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert all(int(r["world_size"]) == 2 and int(r["num_replicas"]) == 2 for r in ranks)
    assert str(ranks[0]["strategy"]) == "DDPStrategy"
    # each rank trained on its own half of the 360 training cells
    cells0, cells1 = ranks[0]["cells"], ranks[1]["cells"]
    assert len(cells0) == len(cells1) == 180
    assert len(np.intersect1d(cells0, cells1)) == 0
    # gradients were all-reduced (plain "ddp": every parameter got a gradient, else DDP fails):
    # identical weights and buffers, identical embeddings of the right shape
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])
    np.testing.assert_array_equal(ranks[0]["states"], ranks[1]["states"])
    assert ranks[0]["z"].shape == (480, 8)
    np.testing.assert_array_equal(ranks[0]["z"], ranks[1]["z"])
    if pretext == "byol":
        # the EMA target moved during training and is the same network on both ranks
        before, after = ranks[0]["target_before"], ranks[0]["target_after"]
        assert before.size > 0 and not np.array_equal(before, after)
        np.testing.assert_array_equal(after, ranks[1]["target_after"])
    # post-training work ran on rank 0: the saved model loads and embeds the same
    adata = scssl.datasets.kang_ifnb_pbmc_demo()[:480].copy()
    model = scssl.model.SSLEncoder.load(str(tmp_path / "model"), adata=adata)
    np.testing.assert_allclose(model.get_latent_representation(), ranks[0]["z"], atol=1e-6)


def test_ddp_trainer_kwargs_sync_batchnorm():
    from torch import nn

    from scssl.train import ddp_trainer_kwargs, uses_ddp

    plain = nn.Sequential(nn.Linear(3, 3))
    with_bn = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    assert uses_ddp("ddp") and uses_ddp("ddp_find_unused_parameters_true") and not uses_ddp(None)
    assert ddp_trainer_kwargs(with_bn, "gpu", {"strategy": "ddp"})["sync_batchnorm"] is True
    assert "sync_batchnorm" not in ddp_trainer_kwargs(plain, "gpu", {"strategy": "ddp"})
    assert "sync_batchnorm" not in ddp_trainer_kwargs(with_bn, "gpu", {})
    with pytest.warns(UserWarning, match="per rank"):
        kwargs = ddp_trainer_kwargs(with_bn, "cpu", {"strategy": "ddp"})
    assert "sync_batchnorm" not in kwargs
    explicit = {"strategy": "ddp", "sync_batchnorm": False}
    assert ddp_trainer_kwargs(with_bn, "gpu", explicit)["sync_batchnorm"] is False
