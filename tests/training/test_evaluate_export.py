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
from ecg_k.evaluation.regions import shot_regions
from ecg_k.model_card import load_model_card
from ecg_k.records.run import RunError, read_run_metrics, read_run_record
from tests.conftest import run_ecgk
from tests.training.conftest import write_toy_dataset
from training.config import TrainConfig
from training.data import SplitData
from training.evaluate import evaluate_run
from training.export import MODEL_CARD, MODEL_FILE, export_run
from training.run_io import load_best_net
from training.trainer import Trainer

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(toy_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-runs")
    common = {"data": toy_dataset, "model": "tiny", "lr": 3e-3}
    Trainer(TrainConfig(out=root / "vanilla", method="vanilla", epochs=2, batch_size=32, **common),
            progress=False).run()
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
    assert metrics.splits["test"]["overall"]["mae"] == pytest.approx(float(np.mean(np.abs(test["y"] - test["y_hat"]))))
    report = (run / "report.md").read_text()
    assert "few" in report and "relative" in report
    assert len(list((run / "plots").glob("*.png"))) >= 4
    # No `cal` split in the toy dataset: calibrated on val, said so; coverage on test by true-K+ region.
    intervals = on_disk["intervals"]
    assert intervals["calibration"]["split"] == "val" and "no `cal` split" in intervals["calibration"]["note"]
    coverage = intervals["test"]["coverage"]
    assert sum(coverage[r]["n"] for r in ("hypo", "normal", "hyper")) == coverage["overall"]["n"] == 64
    assert intervals["test"]["prevalence"] == "calibration" and "test_natural" not in intervals
    assert "Prediction sets and probabilities" in report and "no `cal` split" in report
    assert (run / "plots" / "test_reliability.png").is_file()


def test_evaluate_reports_hyperkalemia_on_verified_labels(runs: dict[str, Path], toy_dataset: Path,
                                                           tmp_path: Path) -> None:
    run, dataset = tmp_path / "run", tmp_path / "dataset"
    shutil.copytree(runs["vanilla"], run)
    shutil.copytree(toy_dataset, dataset)
    cohort = pd.read_parquet(dataset / "cohort.parquet")
    test_rows = np.flatnonzero(cohort["split"] == "test")
    verified = test_rows[::4]
    cohort["k_comment"] = "none"
    cohort.loc[verified, "k_comment"] = "verified"
    cohort.loc[test_rows[1], "k_comment"] = "hemolysed"
    cohort.to_parquet(dataset / "cohort.parquet", index=False)

    metrics = evaluate_run(run, data=dataset, n_boot=20)
    predictions = pd.read_parquet(run / "predictions.parquet")
    test = predictions[predictions["split"] == "test"]
    assert test["k_comment"].value_counts().to_dict() == {"none": 64 - 17, "verified": 16, "hemolysed": 1}
    rows = test[test["k_comment"] == "verified"]
    stats = metrics.splits["test"]["hyper_verified"]
    truth, called = rows["y"].to_numpy() >= 5.5 - 1e-6, rows["y_hat"].to_numpy() >= 5.5
    assert (stats["n"], stats["n_positive"]) == (16, int(truth.sum()))
    specificity = (~truth & ~called).sum() / (~truth).sum()
    assert stats["specificity"] == pytest.approx(specificity)
    assert stats["rule"] == "K >= 5.5, verified labels only"
    assert "hyper_verified (K >= 5.5, verified labels only)" in (run / "report.md").read_text()
    assert "hyper_verified" not in metrics.splits["val"]
    assert "hyper_verified" not in evaluate_run(run, data=toy_dataset, n_boot=20).splits["test"]  # no comment class


def test_evaluate_predicts_cal_and_test_natural_when_the_dataset_has_them(runs: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    sizes = {"train": 256, "val": 32, "cal": 32, "test": 64, "test_natural": 48}
    dataset = write_toy_dataset(tmp_path / "five", sizes, seed=3)
    metrics = evaluate_run(runs["vanilla"], data=dataset, n_boot=20).splits
    assert {"val", "cal", "test", "test_natural"} <= set(metrics)
    assert metrics["test_natural"]["overall"]["n"] == 48 and metrics["cal"]["overall"]["n"] == 32
    predictions = pd.read_parquet(runs["vanilla"] / "predictions.parquet")
    assert predictions["split"].value_counts().to_dict() == {"test": 64, "test_natural": 48, "val": 32, "cal": 32}
    evaluate_run(runs["vanilla"], n_boot=20)  # an older dataset (train, val, test only): those two are skipped


def test_export_onnx_parity_and_model_card(runs: dict[str, Path], toy_dataset: Path) -> None:
    run = runs["dist"]
    if not (run / "metrics.json").is_file():
        evaluate_run(run, n_boot=20)
    card = export_run(run)
    assert load_model_card(run / MODEL_CARD) == card
    model = run / "model.onnx"
    assert card.onnx.sha256 == sha256_file(model)
    assert not list(run.glob("*.data")) and not list(run.glob(".*.tmp.onnx"))
    assert card.preprocessing.leads == ("I",) and card.thresholds.hyperkalemia == 5.5
    intervals = card.prediction_intervals
    assert intervals.calibration_split == "val" and intervals.n_calibration == 64
    assert card.signal_quality.min_beats == 4
    assert card.train_config is not None and card.train_config["method"] == "dist" and card.code_version
    assert card.train_schedule is not None and card.train_schedule.epochs == 3 and card.retrain is None
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == card.input.name
    x = np.asarray(SplitData.load(toy_dataset, "test").signals[:7], dtype=np.float32)
    (onnx_out,) = session.run(None, {card.input.name: x})
    import torch

    with torch.no_grad():
        torch_out = load_best_net(run)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=0)


def test_export_carries_the_shot_regions_evaluate_saved(runs: dict[str, Path], tmp_path: Path) -> None:
    """Custom cut-offs given to `ecgk evaluate` reach the card: export loads the run's regions, it never
    evaluates again (an unevaluated run is refused) nor recomputes them with the rule's defaults."""
    load_plugins()
    run = tmp_path / "vanilla"
    shutil.copytree(runs["vanilla"], run, ignore=shutil.ignore_patterns("metrics.json", "predictions.parquet",
                                                                        "model*", "report.md", "plots"))
    with pytest.raises(RunError, match="ecgk evaluate"):
        export_run(run)
    bad = runner.invoke(app, ["evaluate", "--run", str(run), "--shot-many", "0.1", "--shot-few", "0.2"])
    assert bad.exit_code == 2 and "invalid option --shot-many/--shot-few: " in bad.output, bad.output
    assert not (run / "metrics.json").exists()
    args = ["evaluate", "--run", str(run), "--shot-rule", "count", "--shot-many", "12", "--shot-few", "4",
            "--n-boot", "20"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = read_run_metrics(run).regions
    assert (saved.rule, saved.many, saved.few) == ("count", 12.0, 4.0)
    assert saved != shot_regions(SplitData.load(read_run_record(run).data, "train").labels, "count")
    card = export_run(run)
    assert card.shot_regions == saved and card.shot_rule == "count"
    stored = load_model_card(run / MODEL_CARD).shot_regions
    assert (stored.rule, stored.many, stored.few) == ("count", 12.0, 4.0)


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
