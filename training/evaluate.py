"""``ecgk evaluate``: predictions, metrics.json, report.md and plots of a run (DESIGN.md run contract).

When the dataset's cohort records the lab-comment class of each label (``k_comment``) and the test split
holds ``verified`` labels (a lab comment confirmed the value, e.g. "VERIFIED.  NOT HEMOLYZED."), the
hyperkalemia metrics are also reported on those alone, under ``test.hyper_verified``: the cleanest
reference the data has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ecg_k.conformal import (
    ConformalCalibration,
    Prevalence,
    calibrate_predictions,
    coverage_report,
    event_labels,
    reliability,
)
from ecg_k.data.lab_comments import LabComment
from ecg_k.data.store import COHORT, present_splits, write_parquet_atomic
from ecg_k.evaluation.detection import clinical_metrics
from ecg_k.evaluation.regions import ShotRegions, ShotRule
from ecg_k.evaluation.report import evaluate_predictions
from ecg_k.potassium import Thresholds
from ecg_k.records.run import RunMetrics, read_run_record, write_run_metrics
from training.data import SplitData
from training.evaluation_report import write_report
from training.run_io import load_best_net
from training.trainer import predict, resolve_device

PREDICTIONS = "predictions.parquet"
EVAL_SPLITS = ("val", "cal", "test", "test_natural")
"""Splits predicted and evaluated when the dataset has them (older datasets have only val and test)."""
VERIFIED_SPLIT, VERIFIED_KEY = "test", "hyper_verified"
COVERAGE_SPLITS: dict[str, Prevalence] = {"test": "calibration", "test_natural": "natural"}
"""Splits whose interval coverage and probability reliability are reported, with the prevalence the
probabilities are read at (the balanced test at the calibration draw's, the natural test at the natural)."""
PAPER_SHOT_RULE = ShotRule()
"""The default: the paper's ECG rule (relative, many > 0.5·n_max, few < 0.15·n_max)."""


def interval_metrics(predictions: pd.DataFrame, calibration: ConformalCalibration, regions: ShotRegions,
                     coverage: float = 0.9, n_boot: int = 1000) -> dict[str, Any]:
    """Coverage per true-K+ region and reliability rows of both probabilities on the reported test splits."""
    out: dict[str, Any] = {"calibration": {
        "method": calibration.method, "split": calibration.calibration_split, "note": calibration.note,
        "n": calibration.n_calibration, "coverage": coverage,
        "under_calibrated": calibration.under_calibrated(coverage),
        "regions": {r.name: {"n": r.n, "quantile": r.quantiles[coverage]} for r in calibration.regions}}}
    for split, prevalence in COVERAGE_SPLITS.items():
        rows = predictions[predictions["split"] == split]
        if rows.empty:
            continue
        y, y_hat = rows["y"].to_numpy(), rows["y_hat"].to_numpy()
        events = event_labels(y, calibration.thresholds)
        out[split] = {
            "coverage": coverage_report(calibration, y, y_hat, regions, coverage, n_boot=n_boot),
            "prevalence": prevalence,
            "reliability": {event: reliability(calibration.probability(event, y_hat, prevalence), events[event])
                            for event in ("hyper", "hypo")},
        }
    return out


def evaluate_run(
    run: Path, data: Path | None = None, shot_rule: ShotRule = PAPER_SHOT_RULE, n_boot: int = 1000,
    device: str = "auto",
) -> RunMetrics:
    """Predict every split the dataset has (but train) with the selected model, compute the shot regions of
    ``shot_rule`` on the training labels (the one place a run's regions are computed), the metrics and the
    interval coverage, and write ``metrics.json`` (:class:`~ecg_k.records.run.RunMetrics`) and the report."""
    record = read_run_record(run)
    dataset = data or record.data
    net = load_best_net(run)
    target = resolve_device(device)
    net.to(target)
    cohort = pd.read_parquet(dataset / COHORT)
    frames = []
    splits = [split for split in EVAL_SPLITS if split in present_splits(dataset)]
    for split in splits:
        split_data = SplitData.load(dataset, split)
        rows = cohort[cohort["split"] == split]
        y_hat = predict(net, split_data, 1024, target)
        frame = pd.DataFrame({
            "split": split, "subject_id": rows["subject_id"].to_numpy(), "study_id": rows["study_id"].to_numpy(),
            "y": split_data.labels.astype("float64"), "y_hat": y_hat,
        })
        if "k_comment" in rows:
            frame["k_comment"] = rows["k_comment"].to_numpy()
        frames.append(frame)
    predictions = pd.concat(frames, ignore_index=True)
    train_labels = SplitData.load(dataset, "train").labels
    regions = shot_rule.regions(train_labels)
    metrics = evaluate_predictions(predictions, regions, record.method, n_boot=n_boot, splits=splits)
    verified = verified_hyper_metrics(predictions, n_boot=n_boot)
    if verified is not None:
        metrics[VERIFIED_SPLIT][VERIFIED_KEY] = verified
    calibration = calibrate_predictions(predictions, train_labels, regions, Thresholds())
    metrics["intervals"] = interval_metrics(predictions, calibration, regions, n_boot=n_boot)
    metrics["run"] = {"stage": record.stage, "model": record.train["model"], "dataset": str(dataset)}
    saved = RunMetrics.model_validate(metrics)
    write_parquet_atomic(predictions, run / PREDICTIONS)
    write_run_metrics(run, saved)
    write_report(run, saved, predictions)
    return saved


def verified_hyper_metrics(predictions: pd.DataFrame, n_boot: int, seed: int = 0) -> dict[str, Any] | None:
    """Hyperkalemia detection (K >= 5.5) on the test predictions whose label a lab comment verified, or None
    when there are none (or the dataset records no comment class)."""
    if "k_comment" not in predictions:
        return None
    rows = predictions[(predictions["split"] == VERIFIED_SPLIT)
                       & (predictions["k_comment"] == LabComment.VERIFIED.value)]
    if rows.empty:
        return None
    stats = clinical_metrics(rows["y"].to_numpy(), rows["y_hat"].to_numpy(), n_boot=n_boot, seed=seed)["hyper"]
    return {**stats, "rule": f"{stats['rule']}, verified labels only"}
