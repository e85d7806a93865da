"""The Group-DIR classifier and experts are inside the exported ONNX graph: ECG in, one K+ out, parity."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from ecg_k.models import build_net1d
from training.onnx_export import export_onnx, verify_onnx_parity

N_SAMPLES = 1000


@pytest.mark.parametrize("routing", ["hard", "soft"])
def test_group_head_exports_with_parity(routing: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_net1d("tiny", 2, head="groupdir", group_edges=(2.0, 3.0, 4.0, 5.0, 6.0, 7.0),
                      group_routing=routing)
    inputs = torch.randn(16, 2, N_SAMPLES, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # a classifier on centred, scaled features spreads random ECGs over the groups
        features = net.eval().backbone_features(inputs)
        weight = net.head.classifier.weight / features.std(0).clamp_min(1e-6)
        net.head.classifier.weight.copy_(weight)
        net.head.classifier.bias.copy_(-(weight @ features.mean(0)))
        groups = net.head.logits(features).argmax(1)
    assert len(groups.unique()) >= 2  # the check covers more than one expert
    path = export_onnx(net, tmp_path / "model.onnx", n_leads=2, n_samples=N_SAMPLES)
    assert verify_onnx_parity(net, path, inputs, rtol=1e-4) < 1e-4
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ("ArgMax" in ops) == (routing == "hard") and ("Softmax" in ops) == (routing == "soft")
