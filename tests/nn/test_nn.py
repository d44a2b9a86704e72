import anndata as ad
import numpy as np
import scanpy as sc
import scipy.sparse as sp
import torch

from scssl.data import normalize_log1p, to_torch
from scssl.nn import BatchAdversary, RandomMask, SparseInputLinear, mlp


def _sparse_batch(seed=0, shape=(16, 40), density=0.2):
    rng = np.random.default_rng(seed)
    matrix = sp.random(*shape, density=density, random_state=rng, format="csr") * 10
    matrix.data = np.round(matrix.data) + 1
    return matrix.astype(np.float32)


def test_normalize_matches_scanpy_on_sparse_and_dense():
    counts = _sparse_batch()
    counts[2] = 0  # an empty cell stays zero
    counts.eliminate_zeros()
    reference = ad.AnnData(counts.copy())
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    expected = reference.X.toarray()
    sparse = normalize_log1p(to_torch(counts))
    assert sparse.layout == torch.sparse_csr
    np.testing.assert_allclose(sparse.to_dense().numpy(), expected, rtol=1e-5, atol=1e-6)
    dense = normalize_log1p(torch.tensor(counts.toarray()))
    np.testing.assert_allclose(dense.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(dense.numpy()).all() and dense[2].abs().sum() == 0


def test_sparse_input_linear_matches_dense_forward_and_gradients():
    torch.manual_seed(0)
    layer = SparseInputLinear(40, 8)
    counts = _sparse_batch()
    out_sparse = layer(to_torch(counts))
    out_sparse.pow(2).sum().backward()
    grad_sparse = layer.weight.grad.clone()
    layer.weight.grad = None
    out_dense = layer(torch.tensor(counts.toarray()))
    out_dense.pow(2).sum().backward()
    torch.testing.assert_close(out_sparse, out_dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_sparse, layer.weight.grad, rtol=1e-4, atol=1e-4)
    reference = torch.tensor(counts.toarray()) @ layer.weight + layer.bias
    torch.testing.assert_close(out_dense, reference)


def test_mlp_layout_matches_the_study_checkpoint_keys():
    encoder = mlp(100, (512, 512, 256, 256), 64, sparse_input=True)
    weights = {k: tuple(v.shape) for k, v in encoder.state_dict().items() if k.endswith("weight")}
    assert list(weights) == [f"{i}.weight" for i in (0, 3, 6, 9, 12)]
    assert weights["0.weight"] == (100, 512)  # stored (in, out) for the sparse gather
    assert weights["12.weight"] == (64, 256)
    assert isinstance(encoder[1], torch.nn.SELU) and isinstance(encoder[2], torch.nn.Dropout)


def test_random_mask_rate_scaling_and_sparse_dense_agreement():
    torch.manual_seed(0)
    x = torch.rand(200, 500) + 0.5
    masked, mask = RandomMask(0.5)(x)
    assert abs(mask.float().mean().item() - 0.5) < 0.01
    assert torch.all(masked[mask] == 0)
    torch.testing.assert_close(masked[~mask], x[~mask] * 2)

    counts = _sparse_batch(shape=(30, 60), density=0.3)
    dense_input = torch.tensor(counts.toarray())
    torch.manual_seed(1)
    masked_sparse, mask_sparse = RandomMask(0.3)(to_torch(counts))
    torch.manual_seed(1)
    masked_dense, mask_dense = RandomMask(0.3)(dense_input)
    assert torch.equal(mask_sparse, mask_dense)
    torch.testing.assert_close(masked_sparse.to_dense(), masked_dense)


def test_the_adversary_confuses_only_the_batches_present():
    torch.manual_seed(0)
    adversary = BatchAdversary(n_latent=4, n_batch=3)
    z, batch = torch.randn(8, 4), torch.tensor([0, 1] * 4)
    _, all_batches = adversary(z, batch)
    _, present = adversary(z, batch, torch.tensor([True, True, False]))
    log_p = torch.log_softmax(adversary.classifier(z), dim=-1)
    torch.testing.assert_close(all_batches, -log_p.mean(-1))
    torch.testing.assert_close(present, -log_p[:, :2].mean(-1))


def test_torch_sparse_notices_do_not_reach_the_user():
    """torch's once-per-process CSR notices (beta support, invariant checks) are consumed."""
    import subprocess
    import sys

    code = (
        "import warnings; warnings.simplefilter('always'); import scssl, scipy.sparse as sp\n"
        "from scssl.data._loading import to_torch\n"
        "to_torch(sp.random(3, 4, density=0.5, format='csr'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Sparse" not in done.stderr, done.stderr
