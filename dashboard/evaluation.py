"""The evaluation of a registered model, as the model audit page shows it.

Where the numbers come from (a decision, documented in docs/dashboard.md):

- The registry row is the anchor. Its stored model card (``ModelVersion.card``, written by ``ecgk
  export``) holds the numbers the model was registered with: metrics per split (shot-region MAE/GM/n,
  bMAE, hyper/hypo detection with bootstrap CIs), the shot regions with their training counts, and the
  thresholds. The tables show these.
- The charts need per-sample predictions. They come from the training run the model was exported from:
  the directory of the registered ONNX file (``ModelVersion.path``), which holds ``predictions.parquet``
  (``split, y, y_hat``) beside ``model.onnx`` and ``model_card.json`` (``ecgk retrain`` finds a champion's
  run the same way). Metrics recomputed from that file must match the card; if they do not (the run was
  evaluated again after export), the evaluation carries a warning. Without the file (the model was copied
  elsewhere), the tables still show and the charts say why they are missing.

Everything here is plain pandas/numpy on ``ecg_k.evaluation`` (no Streamlit), so it is unit-tested directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.conformal import (
    EVENTS,
    ConformalCalibration,
    Prevalence,
    coverage_report,
    event_labels,
    reliability,
)
from ecg_k.db.models import ModelVersion
from ecg_k.evaluation import plot_data
from ecg_k.evaluation.detection import clinical_metrics
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.evaluation.regression import ALL_REGIONS, per_bin_errors, regression_metrics
from ecg_k.model_card import ModelCard, parse_model_card
from ecg_k.potassium import REGIONS, Thresholds, event_names, operating_points

PREDICTIONS_FILE = "predictions.parquet"
CLINICAL_STATS = ("sensitivity", "specificity", "ppv", "npv")
CHECK_TOLERANCE = 1e-9
"""Largest difference between a card metric and the same metric recomputed from the predictions."""


@dataclass(frozen=True)
class ModelSummary:
    """A registered model version, as the pickers list it."""

    id: int
    name: str
    version: str
    status: str
    method: str | None
    created_at: datetime
    path: str

    @property
    def label(self) -> str:
        """Name, version, status and method, for the pickers."""
        method = f", {self.method}" if self.method else ""
        return f"{self.name} {self.version} ({self.status}{method})"

    @property
    def short(self) -> str:
        """The version and status, for chart legends."""
        return f"{self.version} ({self.status})"


def _card(row: ModelVersion) -> ModelCard:
    """The stored card of a registered model, validated (a clear error names the version when it is not)."""
    return parse_model_card(row.card, source=f"model card of {row.name} {row.version}")


def _summary(row: ModelVersion) -> ModelSummary:
    return ModelSummary(row.id, row.name, row.version, row.status.value, _card(row).method, row.created_at,
                        row.path)


def list_models(session: Session) -> list[ModelSummary]:
    """Every registered version, champion first, then newest first."""
    query = sa.select(ModelVersion).order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
    return sorted(map(_summary, session.scalars(query)), key=lambda model: model.status != "champion")


@dataclass(frozen=True)
class Evaluation:
    """What the audit page shows of one model: the card's numbers and, when found, the run's predictions."""

    model: ModelSummary
    metrics: Mapping[str, Any]
    regions: ShotRegions
    thresholds: Thresholds
    predictions: pd.DataFrame | None
    predictions_path: Path
    warning: str | None
    calibration: ConformalCalibration | None = None
    """The card's label-conditional calibration (None for a card exported before it existed)."""

    @property
    def splits(self) -> list[str]:
        """Evaluated splits in the card (test first)."""
        return sorted(self.metrics, key=lambda split: (split != "test", split))

    def predictions_of(self, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(y, y_hat) of ``split``, or None without the predictions file."""
        if self.predictions is None:
            return None
        rows = self.predictions[self.predictions["split"] == split]
        return rows["y"].to_numpy(dtype=np.float64), rows["y_hat"].to_numpy(dtype=np.float64)


def _check(metrics: Mapping[str, Any], predictions: pd.DataFrame, regions: ShotRegions) -> str | None:
    """A warning when the region MAE/n recomputed from ``predictions`` differ from the card's."""
    for split, saved in metrics.items():
        rows = predictions[predictions["split"] == split]
        if rows.empty:
            return f"{PREDICTIONS_FILE} has no {split!r} rows although the card reports that split"
        recomputed = regression_metrics(rows["y"].to_numpy(), rows["y_hat"].to_numpy(), regions)
        for region in ALL_REGIONS:
            card_mae, card_n = saved[region]["mae"], saved[region]["n"]
            file_mae, file_n = recomputed[region]["mae"], recomputed[region]["n"]
            same_mae = card_mae == file_mae or (
                None not in (card_mae, file_mae) and abs(card_mae - file_mae) <= CHECK_TOLERANCE)
            if card_n != file_n or not same_mae:
                return (f"{PREDICTIONS_FILE} does not reproduce the card ({split}, {region}: card MAE "
                        f"{card_mae} n={card_n}, file MAE {file_mae} n={file_n}); the run was probably "
                        "evaluated again after export, so the charts may not match the tables")
    return None


def load_evaluation(session: Session, model_id: int) -> Evaluation:
    """The evaluation of registered model ``model_id`` (see the module docstring for the sources)."""
    row = session.get(ModelVersion, model_id)
    if row is None:
        raise ValueError(f"no registered model version with id {model_id}")
    card = _card(row)
    metrics = {split: values for split, values in card.metrics.items() if "overall" in values}
    if not metrics:
        raise ValueError("the model card's metrics hold no evaluated split")
    regions, thresholds, calibration = card.shot_regions, card.thresholds, card.prediction_intervals
    path = Path(row.path).parent / PREDICTIONS_FILE
    if not path.is_file():
        return Evaluation(_summary(row), metrics, regions, thresholds, None, path,
                          f"no {PREDICTIONS_FILE} beside the registered model file ({path}): tables come "
                          "from the model card, charts need the run's predictions", calibration)
    predictions = pd.read_parquet(path, columns=["split", "y", "y_hat"])
    return Evaluation(_summary(row), metrics, regions, thresholds, predictions, path,
                      _check(metrics, predictions, regions), calibration)


# ------------------------------------------------------------------------------------------------ tables


def region_table(evaluations: Mapping[str, Evaluation], split: str) -> pd.DataFrame:
    """Long table, one row per (model, region): ``model, region, n, mae, gm, mse`` from the cards, plus a
    ``bmae`` row per model (in ``mae``)."""
    rows = []
    for name, evaluation in evaluations.items():
        metrics = evaluation.metrics.get(split)
        if metrics is None:
            raise ValueError(f"model {name} has no {split!r} evaluation in its card")
        for region in ALL_REGIONS:
            values = metrics[region]
            rows.append({"model": name, "region": region, "n": values["n"], "mae": values["mae"],
                         "gm": values["gm"], "mse": values["mse"]})
        rows.append({"model": name, "region": "bMAE", "n": metrics["overall"]["n"], "mae": metrics["bmae"],
                     "gm": None, "mse": None})
    return pd.DataFrame(rows, columns=["model", "region", "n", "mae", "gm", "mse"]).astype(
        {"mae": float, "gm": float, "mse": float})


def region_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`region_table` pivoted for reading: one row per region with its ``n`` (per model when the
    models' test sets differ), MAE and GM per model, and ``ΔMAE`` (second model − first) for two models."""
    models = list(dict.fromkeys(table["model"]))
    order = [*ALL_REGIONS, "bMAE"]
    wide = table.pivot(index="region", columns="model", values=["n", "mae", "gm"]).reindex(order)
    out = pd.DataFrame(index=pd.Index(order, name="region"))
    counts = wide["n"][models].astype("Int64")
    if all(counts[model].equals(counts[models[0]]) for model in models):
        out["n"] = counts[models[0]]
    else:
        for model in models:
            out[f"n {model}"] = counts[model]
    for metric, title in (("mae", "MAE"), ("gm", "GM")):
        for model in models:
            out[f"{title} {model}"] = wide[metric][model]
        if metric == "mae" and len(models) == 2:
            out["ΔMAE"] = wide["mae"][models[1]] - wide["mae"][models[0]]
    return out


def per_bin_table(evaluation: Evaluation, split: str) -> pd.DataFrame | None:
    """MAE and n per 0.1 mmol/L test bin with its region and training count (None without predictions)."""
    pair = evaluation.predictions_of(split)
    return None if pair is None else per_bin_errors(*pair, evaluation.regions)


def region_spans(evaluation: Evaluation, per_bin: pd.DataFrame) -> pd.DataFrame:
    """Every 0.1 bin from the lowest to the highest training or test bin: ``k, low, high, region,
    train_count`` (for shading regions and drawing training counts)."""
    return plot_data.region_spans(evaluation.regions, per_bin["bin"]).drop(columns="bin")


def distributions(evaluation: Evaluation, split: str) -> pd.DataFrame | None:
    """Counts of labels and of predictions per 0.1 mmol/L bin (the paper's Fig. 1b/1c): ``k, series, n``."""
    pair = evaluation.predictions_of(split)
    return None if pair is None else plot_data.label_prediction_counts(*pair)


def sorted_errors(evaluations: Mapping[str, Evaluation], split: str, region: str) -> pd.DataFrame:
    """Absolute errors sorted ascending per model within the label shot ``region`` (paper Fig. 5):
    ``model, rank, error`` (models without predictions are left out)."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")
    frames = []
    for name, evaluation in evaluations.items():
        pair = evaluation.predictions_of(split)
        if pair is None:
            continue
        errors = plot_data.sorted_region_errors(*pair, evaluation.regions, region)
        frames.append(pd.DataFrame({"model": name, "rank": np.arange(1, errors.size + 1), "error": errors}))
    if not frames:
        return pd.DataFrame(columns=["model", "rank", "error"])
    return pd.concat(frames, ignore_index=True)


def scatter_points(evaluation: Evaluation, split: str) -> pd.DataFrame | None:
    """``y, y_hat, region`` (region of the label) for the predicted-vs-actual plot."""
    pair = evaluation.predictions_of(split)
    if pair is None:
        return None
    y, y_hat = pair
    return pd.DataFrame({"y": y, "y_hat": y_hat, "region": evaluation.regions.region_of(y)})


def _stat_rows(model: str, key: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for stat in CLINICAL_STATS:
        ci = values["ci95"].get(stat)
        low, high = (None, None) if ci is None else ci
        rows.append({"model": model, "cutoff": key, "rule": values["rule"], "stat": stat,
                     "value": values[stat], "low": low, "high": high, "prevalence": values["prevalence"],
                     "n_positive": values["n_positive"], "n": values["n"]})
    return rows


def clinical_table(evaluations: Mapping[str, Evaluation], split: str, extra: bool = False,
                   n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Sensitivity, specificity, PPV and NPV with 95 % bootstrap CIs per model and cut-off: ``model, cutoff,
    rule, stat, value, low, high, prevalence, n_positive, n``.

    Hyper (>= 5.5) and hypo (<= 3.5) come from the card. With ``extra``, the other operating points of
    conventions.md section 2 (> 6.0, > 6.5, < 3.0, < 2.5) are computed from the predictions, where they
    are there (``n_boot`` resamples: about a second per model on a real balanced test set).
    """
    rows: list[dict[str, Any]] = []
    for name, evaluation in evaluations.items():
        metrics = evaluation.metrics[split]
        for key in ("hyper", "hypo"):
            rows += _stat_rows(name, key, metrics[key])
        pair = evaluation.predictions_of(split)
        if extra and pair is not None:
            extra_points = operating_points(evaluation.thresholds)
            computed = clinical_metrics(*pair, n_boot=n_boot, seed=seed, thresholds=evaluation.thresholds,
                                        extra=extra_points)
            for cutoff in extra_points:
                rows += _stat_rows(name, cutoff.key, computed[cutoff.key])
    columns = ["model", "cutoff", "rule", "stat", "value", "low", "high", "prevalence", "n_positive", "n"]
    return pd.DataFrame(rows, columns=columns).astype({"value": float, "low": float, "high": float})


def clinical_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`clinical_table` as one row per (cut-off, model), each statistic as ``value [low, high]``."""
    def cell(row: pd.Series) -> str:
        if math.isnan(row["value"]):
            return "–"
        ci = "" if math.isnan(row["low"]) else f" [{row['low']:.2f}, {row['high']:.2f}]"
        return f"{row['value']:.2f}{ci}"

    frame = table.assign(cell=table.apply(cell, axis=1))
    keys = ["rule", "model"]
    wide = frame.pivot_table(index=keys, columns="stat", values="cell", aggfunc="first", sort=False)
    counts = frame.groupby(keys, sort=False)[["prevalence", "n_positive", "n"]].first()
    prevalence = pd.Series([f"{p:.1%} ({k:.0f}/{n:.0f})" for p, k, n in counts.to_numpy()],
                           index=counts.index, name="prevalence")
    return wide.reindex(columns=list(CLINICAL_STATS)).join(prevalence).reset_index()



# ---------------------------------------------------------------------------------------- prediction sets


def coverage_table(evaluations: Mapping[str, Evaluation], split: str, coverage: float,
                   n_boot: int = 200) -> pd.DataFrame:
    """Coverage of each model's prediction sets on ``split`` by true-K+ region, shot region and overall:
    ``model, region, n, coverage, ci_low, ci_high, mean_set_size, mean_hull_width`` (models without a
    calibration or predictions are left out)."""
    rows = []
    for name, evaluation in evaluations.items():
        pairs = evaluation.predictions_of(split)
        if evaluation.calibration is None or pairs is None or pairs[0].size == 0:
            continue
        report = coverage_report(evaluation.calibration, *pairs, evaluation.regions, coverage, n_boot=n_boot)
        for region, values in report.items():
            ci = values["coverage_ci95"] or [math.nan, math.nan]
            rows.append({"model": name, "region": region, "n": values["n"], "coverage": values["coverage"],
                         "ci_low": ci[0], "ci_high": ci[1], "mean_set_size": values["mean_set_size"],
                         "mean_hull_width": values["mean_hull_width"]})
    columns = ["model", "region", "n", "coverage", "ci_low", "ci_high", "mean_set_size", "mean_hull_width"]
    return pd.DataFrame(rows, columns=columns).astype({"coverage": float, "ci_low": float, "ci_high": float})


def reliability_table(evaluations: Mapping[str, Evaluation], split: str) -> pd.DataFrame:
    """Reliability diagram rows of P(K+ >= 5.5) and P(K+ <= 3.5) on ``split``: ``model, event, bin, n,
    predicted, observed``; read at the natural prevalence on ``test_natural`` and at the calibration draw's
    (balanced) prevalence on the other splits, which are balanced draws too."""
    prevalence: Prevalence = "natural" if split == "test_natural" else "calibration"
    rows = []
    for name, evaluation in evaluations.items():
        pairs = evaluation.predictions_of(split)
        if evaluation.calibration is None or pairs is None or pairs[0].size == 0:
            continue
        events = event_labels(pairs[0], evaluation.calibration.thresholds)
        for event in EVENTS:
            probability = evaluation.calibration.probability(event, pairs[1], prevalence)
            rows += [{"model": name, "event": event_names(evaluation.calibration.thresholds)[event], **row}
                     for row in reliability(probability, events[event])]
    return pd.DataFrame(rows, columns=["model", "event", "bin", "n", "predicted", "observed"])
