"""ONNX export of Net1D: one self-contained file, opset >= 18, dynamic batch, ORT parity at rtol 1e-4."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx.external_data_helper import uses_external_data
from torch import nn

from ecg_k.models import Net1D, build_net1d
from ecg_k.models.net1d import SamePadMaxPool1d
from training.onnx_export import (
    ONNX_INPUT_NAME,
    ONNX_OUTPUT_NAME,
    OnnxParityError,
    export_onnx,
    verify_onnx_parity,
)

N_SAMPLES = 5000


@pytest.fixture(scope="module", params=["tiny", "small"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Net1D, Path]:
    torch.manual_seed(0)
    model = build_net1d(request.param, 1)
    path = export_onnx(model, tmp_path_factory.mktemp(request.param) / "model.onnx", 1, N_SAMPLES)
    return model, path


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_parity_with_onnxruntime(exported: tuple[Net1D, Path], batch: int) -> None:
    model, path = exported
    inputs = torch.randn(batch, 1, N_SAMPLES, generator=torch.Generator().manual_seed(batch))
    assert verify_onnx_parity(model, path, inputs, rtol=1e-4, atol=0.0) < 1e-5
    assert verify_onnx_parity(model, path, inputs.numpy()) < 1e-5


def test_single_file_with_contract(exported: tuple[Net1D, Path]) -> None:
    model, path = exported
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no .data sidecar
    proto = onnx.load(str(path))
    assert not any(uses_external_data(t) for t in proto.graph.initializer)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.name == ONNX_INPUT_NAME and graph_output.name == ONNX_OUTPUT_NAME
    in_dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert isinstance(in_dims[0], str) and in_dims[1:] == [1, N_SAMPLES]
    assert out_dims == in_dims[:1]
    assert model.training  # export restored the training mode


def test_perturbed_model_breaks_parity(exported: tuple[Net1D, Path]) -> None:
    model, path = exported
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.head[-1].bias.add_(1e-2)
    with pytest.raises(OnnxParityError, match="max abs diff 0.01"):
        verify_onnx_parity(perturbed, path, torch.randn(2, 1, N_SAMPLES))


class _EdgeWindows(nn.Module):
    """Sum of the first and last SAME max-pool windows, both of which contain padding, plus 1."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = SamePadMaxPool1d(4)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(ecg)
        return pooled[:, 0, 0] + pooled[:, 0, -1] + 1.0


def test_zero_padded_max_pool_survives_ort_graph_optimisation(tmp_path: Path) -> None:
    """ORT's PadFusion would turn the zero padding into -inf padding (a different output)."""
    model = _EdgeWindows()
    path = export_onnx(model, tmp_path / "pool.onnx", 1, 9)
    negative = -1.0 - np.random.default_rng(0).random((3, 1, 9), dtype=np.float32)
    assert verify_onnx_parity(model, path, negative) == 0.0


def test_export_rejects_bad_arguments(tmp_path: Path) -> None:
    model = build_net1d("tiny", 1)
    with pytest.raises(ValueError, match="opset must be at least 18"):
        export_onnx(model, tmp_path / "m.onnx", 1, N_SAMPLES, opset=17)
    with pytest.raises(ValueError, match="shape"):
        export_onnx(model, tmp_path / "m.onnx", 12, N_SAMPLES)
    with pytest.raises(ValueError, match=r"to \(B,\)"):
        export_onnx(nn.Conv1d(1, 1, 1), tmp_path / "m.onnx", 1, N_SAMPLES)
    assert not list(tmp_path.iterdir())
