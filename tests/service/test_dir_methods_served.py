"""Focal-R, SRL and Group-DIR, each with its Dist Loss stage 2: train a few steps, export to ONNX with parity,
and answer a real 12-lead ECG through a real ``ecgk serve``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_k.inference import OnnxModel
from ecg_k.losses.group_dir import group_edges
from tests.service.conftest import RawEcg, new_database, start_service, stop_service
from tests.training.conftest import write_toy_dataset
from training.config import TrainConfig
from training.evaluate import evaluate_run
from training.export import MODEL_CARD, MODEL_FILE, export_run
from training.run_io import load_best_net
from training.trainer import CHECKPOINT, HISTORY, Trainer


@pytest.fixture(scope="module", params=["focal", "srl", "groupdir"])
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """``(method, stage-1 run, stage-2 X+dist run)``, both exported."""
    method = request.param
    root = tmp_path_factory.mktemp(method)
    dataset = write_toy_dataset(root / "dataset", {"train": 128, "val": 32, "test": 32})
    common = {"data": dataset, "model": "tiny", "batch_size": 64, "device": "cpu", "seed": 0}
    stage1, stage2 = root / method, root / f"{method}_plus_dist"
    epochs = 2 if method == "srl" else 1  # SRL's geometric terms start in the second epoch
    Trainer(TrainConfig(out=stage1, method=method, epochs=epochs, **common), progress=False).run()
    Trainer(TrainConfig(out=stage2, method=f"{method}+dist", stage=2, init=stage1, epochs=1, **common),
            progress=False).run()
    for run in (stage1, stage2):
        evaluate_run(run, n_boot=20, device="cpu")
        export_run(run)
    return method, stage1, stage2


def _train_labels(run: Path) -> np.ndarray:
    return np.load(Path(json.loads((run / "config.json").read_text())["train"]["data"]) / "train.labels.npy")


def test_each_stage_trains_and_exports_with_parity(runs: tuple[str, Path, Path]) -> None:
    method, stage1, stage2 = runs
    for run, epochs in ((stage1, 2 if method == "srl" else 1), (stage2, 1)):
        history = json.loads((run / HISTORY).read_text())
        assert len(history) == epochs and all(np.isfinite(h["train_loss"]) for h in history)
        card = json.loads((run / MODEL_CARD).read_text())
        assert card["onnx"]["parity"]["max_abs_diff"] < 1e-4 * 10  # rtol 1e-4 on K+ values below 10
        assert card["method"] == (method if run == stage1 else f"{method}+dist")
        assert (run / MODEL_FILE).is_file()


def test_srl_surrogate_holds_every_bin_of_the_first_epoch(runs: tuple[str, Path, Path]) -> None:
    method, stage1, _ = runs
    if method != "srl":
        pytest.skip("SRL only")
    state = torch.load(stage1 / CHECKPOINT, map_location="cpu", weights_only=False)["module"]
    labels = _train_labels(stage1)
    bins = np.unique(np.rint(labels / 0.1).astype(int))
    filled = state["feature_objective.filled"].numpy()
    assert len(filled) == bins.max() - bins.min() + 1
    assert np.array_equal(np.flatnonzero(filled), bins - bins.min())  # 128 / 64: epoch 0 saw every sample
    norms = state["feature_objective.surrogate"][torch.as_tensor(filled)].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    exported = torch.load(stage1 / "best.pt", map_location="cpu", weights_only=True)["model"]
    assert not any(key.startswith("feature_objective") for key in exported)  # the projector stays behind


def test_group_dir_card_states_the_routing(runs: tuple[str, Path, Path]) -> None:
    method, stage1, stage2 = runs
    if method != "groupdir":
        pytest.skip("Group-DIR only")
    labels = _train_labels(stage1)
    for run in (stage1, stage2):
        card = json.loads((run / MODEL_CARD).read_text())
        assert card["architecture"]["net1d"]["head"] == "groupdir"
        routing = card["group_routing"]
        assert routing["edges_mmol_l"] == pytest.approx(group_edges(labels, 10))
        jump = routing["flip_jump_val_mmol_l"]
        assert 0 <= jump["q0.5"] <= jump["q0.95"] <= jump["max"]
        assert "hyperkalaemia" in routing["note"]
        edge = routing["edge_nearest_threshold"]["hyperkalemia"]
        assert all(abs(edge - 5.5) <= abs(e - 5.5) for e in routing["edges_mmol_l"][1:-1])


def test_each_exported_model_serves(runs: tuple[str, Path, Path], raw_ecg: RawEcg,
                                    request: pytest.FixtureRequest, tmp_path: Path) -> None:
    method, _, stage2 = runs
    service = start_service(stage2 / MODEL_FILE, new_database(request, "sqlite", tmp_path), tmp_path)
    try:
        with service.client("client") as client:
            response = client.post("/v1/predictions", json=raw_ecg.payload())
    finally:
        stop_service(service)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["model"]["version"] == json.loads((stage2 / MODEL_CARD).read_text())["version"]
    # The served estimate is the PyTorch model's (Group-DIR: classifier and routed expert) on the same input.
    model = OnnxModel(stage2 / MODEL_CARD, use_cuda=False)
    ecg = model.preprocess(raw_ecg.signal, raw_ecg.fs, raw_ecg.lead_names)
    with torch.no_grad():
        expected = float(load_best_net(stage2)(torch.from_numpy(ecg[None].astype(np.float32)))[0])
    assert body["k_estimate"] == pytest.approx(expected, abs=0.006)
