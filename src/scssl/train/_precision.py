"""The numeric precision of pretraining: bf16 autocast where the CPU computes bf16 natively."""

from __future__ import annotations

import torch


def native_cpu_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), which make autocast pay."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def default_precision(accelerator: str) -> str:
    """Lightning ``precision`` for pretraining on ``accelerator``.

    ``"bf16-mixed"`` on CPUs with native bf16: on Kang (all genes, 2 cores, AVX512-BF16) a
    random-mask step runs about 1.35x faster than in float32, while losses, optimiser state and
    master weights stay float32. ``"32-true"`` elsewhere: on CPUs without bf16 instructions
    autocast is emulated, and on GPUs at scssl's model sizes bf16 did not train faster (NVIDIA
    H200, ``benchmarks/results/gpu_check``). ``"auto"`` counts CUDA and Apple GPUs as GPUs;
    other accelerators (XPU, TPU) should be named with ``precision`` explicitly.

    The same seed therefore gives slightly different weights on CPUs with and without bf16
    instructions; ``precision="32-true"`` gives results that do not depend on the CPU.
    """
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not _has_gpu())
    return "bf16-mixed" if on_cpu and native_cpu_bf16() else "32-true"


def _has_gpu() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())
