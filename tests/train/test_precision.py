"""Pretraining precision: bf16 autocast only where the CPU has bf16 instructions."""

import torch

from scssl.train import _precision, default_precision, native_cpu_bf16


def _cpu_bf16(monkeypatch, available: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: available, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)


def test_bf16_on_cpus_with_bf16_instructions(monkeypatch):
    _cpu_bf16(monkeypatch, True)
    monkeypatch.setattr(_precision, "_has_gpu", lambda: False)
    assert native_cpu_bf16()
    assert default_precision("cpu") == "bf16-mixed"
    assert default_precision("auto") == "bf16-mixed"


def test_float32_on_cpus_without_them_and_on_gpus(monkeypatch):
    _cpu_bf16(monkeypatch, False)
    assert not native_cpu_bf16()
    assert default_precision("cpu") == "32-true"
    _cpu_bf16(monkeypatch, True)
    monkeypatch.setattr(_precision, "_has_gpu", lambda: True)
    assert default_precision("auto") == "32-true"
    assert default_precision("gpu") == "32-true"
