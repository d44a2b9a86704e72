"""A scvi-tools data splitter that keeps sparse minibatches sparse."""

from __future__ import annotations

from scvi.dataloaders import DataSplitter


class SparseDataSplitter(DataSplitter):
    """:class:`~scvi.dataloaders.DataSplitter` without the densification of sparse batches.

    scvi-tools turns ``torch.sparse_csr`` minibatches into dense tensors after they reach the
    device; scssl's first layer consumes them sparse, so its cost grows with the non-zeros.
    """

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """Return the batch unchanged."""
        return batch
