"""The demo chain end to end at toy size: synth -> ingest -> stage 1 -> stage 2 -> evaluate -> export."""

from __future__ import annotations

import json
from pathlib import Path

from training.demo import DemoPlan, run_demo


def test_demo_chain_produces_an_exported_dist_loss_model(tmp_path: Path) -> None:
    plan = DemoPlan(n_ecgs=300, workers=1, model="tiny", stage1_epochs=1, stage1_batch=16, stage2_epochs=2,
                    stage2_batch=32)
    exported = run_demo(tmp_path, plan)
    card = json.loads((exported / "model_card.json").read_text())
    assert card["method"] == "dist" and (exported / "model.onnx").is_file()
    assert (tmp_path / "runs" / "comparison" / "comparison.md").is_file()
    assert (tmp_path / "ecgk.db").is_file() and "Application startup complete" in (tmp_path / "api.log").read_text()
    again = run_demo(tmp_path, plan)  # a rerun resumes every step instead of starting over
    assert json.loads((again / "model_card.json").read_text())["onnx"]["sha256"] == card["onnx"]["sha256"]


def test_demo_api_step_reports_predictions_for_spread_test_ecgs(tmp_path: Path) -> None:
    from training.demo import prepare_dataset
    from training.demo_api import demo_ecgs

    dataset = prepare_dataset(tmp_path, DemoPlan(n_ecgs=300, workers=1))
    rows = demo_ecgs(dataset, 4)
    assert len(rows) == 4 and set(rows["split"]) == {"test"}
    assert rows["k_value"].is_monotonic_increasing
