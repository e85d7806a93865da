"""The GPU figures of benchmarks/train_speed.py, exercised on the CPU so that the script a GPU session runs
once does not rot: the roofline table, the FLOP count it divides by, and one record per configuration."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmarks.train_speed import bf16_peak_tflops, forward_flops_per_sample, gpu_training

CPU = torch.device("cpu")


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("Tesla T4", None)])
def test_bf16_peak_is_the_most_specific_listed_name(name: str, peak: float | None) -> None:
    assert bf16_peak_tflops(name) == peak


def test_ecgfounder_forward_is_the_issues_2_3_gflop_per_12_lead_sample() -> None:
    assert forward_flops_per_sample("ecgfounder", 12, CPU) == pytest.approx(2.3375e9, rel=1e-3)  # 2.318 in convolutions


def _no_compile(module: torch.nn.Module, **_: Any) -> torch.nn.Module:
    return module


def _broken_compile(module: torch.nn.Module, **_: Any) -> torch.nn.Module:
    raise RuntimeError("no backend for this card")


def test_gpu_training_records_every_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", _no_compile)  # compilation itself is too slow for a unit test
    out = gpu_training(CPU, "tiny", 12, 2, 1, peak_tflops=50.0)
    flops = 3 * forward_flops_per_sample("tiny", 12, CPU)
    assert out["bf16_peak_tflops"] == 50.0
    for variant in ("fp32", "fp32_compiled", "bf16", "bf16_compiled"):
        key = f"tiny_12lead_b2_{variant}"
        rate = out[f"{key}_samples_per_s"]
        assert isinstance(rate, float) and rate > 0
        assert out[f"{key}_tflops"] == round(rate * flops / 1e12, 1)
        assert out[f"{key}_share_of_bf16_peak"] == round(rate * flops / 1e12 / 50.0, 4)
    assert {"ratio_bf16_vs_fp32", "ratio_fp32_compiled_vs_fp32", "ratio_bf16_compiled_vs_fp32"} <= set(out)


def test_a_failing_configuration_is_recorded_and_the_others_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", _broken_compile)
    out = gpu_training(CPU, "tiny", 12, 2, 1, peak_tflops=None)
    assert out["tiny_12lead_b2_fp32_compiled"] == "failed: RuntimeError: no backend for this card"
    assert out["tiny_12lead_b2_bf16_compiled"] == "failed: RuntimeError: no backend for this card"
    assert out["tiny_12lead_b2_bf16_share_of_bf16_peak"] is None  # "cpu" is no listed card
    assert "ratio_bf16_vs_fp32" in out and "ratio_fp32_compiled_vs_fp32" not in out
