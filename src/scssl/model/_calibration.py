"""Temperature scaling of a classifier's softmax (Guo et al. 2017) and its calibration report."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from scssl.metrics import expected_calibration_error

#: The fitted temperature is kept within exp(+-4).
MAX_LOG_TEMPERATURE = 4.0


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Temperature minimising the negative log-likelihood of ``labels`` under ``logits / T``."""
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().clamp(-MAX_LOG_TEMPERATURE, MAX_LOG_TEMPERATURE).exp())


def ece_before_after(
    logits: np.ndarray, codes: np.ndarray, temperature: float, tag: str = ""
) -> dict:
    """Expected calibration error of the predicted class at temperature 1 and ``temperature``."""
    out = {}
    for name, t in (("before", 1.0), ("after", temperature)):
        p = torch.softmax(torch.as_tensor(logits) / t, dim=1).numpy()
        out[f"ece{tag}_{name}"] = expected_calibration_error(codes, p.argmax(1), p.max(1))
    return out


def temperature_scaling(logits: np.ndarray, codes: np.ndarray) -> dict:
    """Temperature scaling fitted on held-out ``logits`` and their class ``codes``.

    Returns the temperature, the number of cells, and the expected calibration error before and
    after (``ece_before``, ``ece_after``).
    """
    temperature = fit_temperature(torch.as_tensor(logits), torch.as_tensor(codes))
    result = {"temperature": temperature, "n_cells": len(codes)}
    result.update(ece_before_after(logits, codes, temperature))
    return result
