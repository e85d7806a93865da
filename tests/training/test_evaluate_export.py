"""evaluate -> metrics.json/report/plots; export -> ONNX with parity, model card; compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from typer.testing import CliRunner

from ecg_k.cli import app, load_plugins
from ecg_k.data.store import sha256_file
from training.config import TrainConfig
from training.data import SplitData
from training.evaluate import evaluate_run
from tests.conftest import run_ecgk
from training.export import MODEL_CARD, MODEL_FILE, export_run
from training.run_io import load_best_net
from training.trainer import Trainer

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-runs")
    common = {"data": toy_dataset, "model": "tiny", "lr": 3e-3}
    Trainer(TrainConfig(out=root / "vanilla", method="vanilla", epochs=2, batch_size=32, **common), progress=False).run()
    Trainer(TrainConfig(out=root / "dist", method="dist", stage=2, init=root / "vanilla", epochs=3, batch_size=64,
                        **common), progress=False).run()
    return {"vanilla": root / "vanilla", "dist": root / "dist"}


def test_evaluate_writes_the_run_contract(runs: dict[str, Path], toy_dataset: Path) -> None:
    metrics = evaluate_run(runs["dist"], n_boot=50)
    run = runs["dist"]
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["method"] == "dist" and on_disk["shot_rule"] == "relative"
    for split in ("test", "val"):
        for region in ("overall", "many", "median", "few"):
            assert set(on_disk[split][region]) >= {"mae", "mse", "gm", "n"}
        assert {"bmae", "pearson", "hyper", "hypo"} <= set(on_disk[split])
    predictions = pd.read_parquet(run / "predictions.parquet")
    assert set(predictions["split"]) == {"val", "test"} and len(predictions) == 128
    test = predictions[predictions["split"] == "test"]
    np.testing.assert_allclose(test["y"], SplitData.load(toy_dataset, "test").labels, rtol=1e-6)
    assert metrics["test"]["overall"]["mae"] == pytest.approx(float(np.mean(np.abs(test["y"] - test["y_hat"]))))
    report = (run / "report.md").read_text()
    assert "few" in report and "relative" in report
    assert len(list((run / "plots").glob("*.png"))) >= 4


def test_export_onnx_parity_and_model_card(runs: dict[str, Path], toy_dataset: Path) -> None:
    run = runs["dist"]
    card = export_run(run)
    model = run / "model.onnx"
    assert card["onnx"]["sha256"] == sha256_file(model)
    assert not list(run.glob("*.data")) and not list(run.glob(".*.tmp.onnx"))
    assert card["preprocessing"]["leads"] == ["I"] and card["thresholds"]["hyperkalemia"] == 5.5
    assert card["prediction_intervals"]["regions"]["overall"]["n"] == 64
    assert card["train_config"]["method"] == "dist" and card["code_version"]["package"]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == card["input"]["name"]
    x = np.asarray(SplitData.load(toy_dataset, "test").signals[:7], dtype=np.float32)
    (onnx_out,) = session.run(None, {card["input"]["name"]: x})
    import torch

    with torch.no_grad():
        torch_out = load_best_net(run)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=0)


def test_export_on_a_full_disk_keeps_the_previous_export(runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "dist"
    shutil.copytree(runs["dist"], run)
    export_run(run)
    before = {name: (run / name).read_bytes() for name in (MODEL_FILE, MODEL_CARD)}
    full = run_ecgk(["export", "--run", str(run)], max_file_bytes=len(before[MODEL_FILE]) // 2)
    assert full.returncode == 1, full.stderr
    assert "out of storage" in full.stderr and "Traceback" not in full.stderr
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not list(run.glob(".*.tmp*"))
    again = run_ecgk(["export", "--run", str(run)])
    assert again.returncode == 0, again.stderr
    assert json.loads((run / MODEL_CARD).read_text())["onnx"]["sha256"] == sha256_file(run / MODEL_FILE)


def test_compare_cli_table(runs: dict[str, Path], tmp_path: Path) -> None:
    load_plugins()
    for run in runs.values():
        if not (run / "metrics.json").exists():
            evaluate_run(run, n_boot=20)
    result = runner.invoke(app, ["compare", str(runs["vanilla"]), str(runs["dist"]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "comparison.md").read_text()
    assert "vanilla (stage 1)" in table and "dist (stage 2)" in table
    assert "percentile bootstrap over subjects" in table and "bMAE 95% CI" in result.output
    metrics = json.loads((runs["dist"] / "metrics.json").read_text())["test"]
    low, high = metrics["few"]["mae_ci95"]
    assert low <= metrics["few"]["mae"] <= high and metrics["ci_unit"] == "subject"


def test_cli_errors_on_foreign_dirs(tmp_path: Path) -> None:
    load_plugins()
    for command in ("evaluate", "export"):
        result = runner.invoke(app, [command, "--run", str(tmp_path)])
        assert result.exit_code == 2 and "not a training run" in result.output
