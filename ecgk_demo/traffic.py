"""A synthetic model registry in use: evaluated runs to register, and served traffic (predictions, their
stored ECGs, some lab confirmations) as the API would have written it, inserted in bulk.

For the dashboard's tests and benchmark, and for a demo database with something to audit and monitor.

- :func:`write_synthetic_run` writes what ``ecgk export`` leaves in a run directory and the dashboard reads
  (``model_card.json``, ``metrics.json``, ``predictions.parquet``, and a stand-in ``model.onnx`` that is
  not a model: it can be registered, not served) for a model whose estimates shrink toward the mean.
- :func:`seed_traffic` draws the true K+ of each request from a clinic-like mixture (mostly normal, some
  hypo- and hyperkalemia); the estimate shrinks toward the mean and adds noise (what a plain regression
  model does); prediction sets and probabilities come from the card's label-conditional calibration, and flags,
  critical marks and shot regions follow the model card, as in the service. Rows go in through bulk inserts,
  not through the API, so no audit events are written: throwaway databases only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.conformal import calibrate_predictions, in_segments
from ecg_k.data.store import sha256_file, write_parquet_atomic
from ecg_k.db.ecg_store import EcgStore, store_ecg
from ecg_k.db.models import LabConfirmation, ModelVersion, Prediction
from ecg_k.evaluation.regions import ShotRule
from ecg_k.evaluation.report import evaluate_predictions
from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.model_card import (
    InputSpec,
    ModelCard,
    OnnxSpec,
    OutputSpec,
    TrainingData,
    parse_model_card,
    write_model_card,
)
from ecg_k.potassium import LABEL_STEP, PLAUSIBLE_RANGE, Thresholds
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.run import RunMetrics, write_run_metrics
from ecg_k.scoring import Scorer
from ecg_k.signal_quality import SignalQualityConfig
from ecg_k.synth.ecg_model import draw_subject, simulate_ecg
from ecg_k.synth.params import SynthParams

SERUM_ITEMID = 50971
CLINIC_MIXTURE = ((0.8, 4.2, 0.45), (0.1, 3.1, 0.35), (0.1, 6.0, 0.6))
"""(weight, mean, sd) of the true K+ of requests: normal, hypokalemia, hyperkalemia."""
SHRINK_TOWARD, SHRINK = 4.3, 0.6
"""Estimates are ``SHRINK_TOWARD + SHRINK·(K - SHRINK_TOWARD) + noise``: pulled toward the normal range."""
_INSERT_CHUNK = 10_000


SYNTHETIC_MODEL_NAME = "ecg-k-synthetic"
TEST_BINS = (20, 75)
"""Label bins (0.1 mmol/L) of the balanced synthetic val and test sets: 2.0 to 7.5 mmol/L."""


def _true_k(rng: np.random.Generator, n: int) -> np.ndarray:
    weights, means, sds = (np.array(column) for column in zip(*CLINIC_MIXTURE, strict=True))
    component = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return np.clip(rng.normal(means[component], sds[component]), 1.6, 9.5)


def _estimates(rng: np.random.Generator, k: np.ndarray, shrink: float, noise_sd: float) -> np.ndarray:
    noise = rng.normal(0.0, noise_sd, k.size)
    return np.clip(SHRINK_TOWARD + shrink * (k - SHRINK_TOWARD) + noise, *PLAUSIBLE_RANGE)


def write_synthetic_run(run: Path, method: str, *, shrink: float = SHRINK, noise_sd: float = 0.45,
                        n_train: int = 4000, per_bin: int = 20, n_boot: int = 200, seed: int = 0) -> Path:
    """Write an evaluated synthetic run to ``run`` and return its ``model_card.json``.

    Training labels come from the clinic mixture (the same for every ``seed``: one dataset, several
    models); val, cal and test are balanced, ``per_bin`` labels per 0.1 bin over :data:`TEST_BINS`. The
    metrics are ``ecg_k.evaluation.report.evaluate_predictions`` of the estimates and the card's intervals the
    calibration of the ``cal`` estimates, so the card holds real-format numbers.
    """
    if not 0 < shrink <= 1 or noise_sd <= 0 or n_train < 1 or per_bin < 1:
        raise ValueError("need 0 < shrink <= 1, noise_sd > 0, n_train >= 1 and per_bin >= 1")
    train_labels = np.round(_true_k(np.random.default_rng(0), n_train), 1)
    rng = np.random.default_rng(seed)
    balanced = np.repeat(np.arange(TEST_BINS[0], TEST_BINS[1] + 1) * LABEL_STEP, per_bin).round(1)
    predictions = pd.concat([pd.DataFrame({"split": split, "y": balanced,
                                           "y_hat": _estimates(rng, balanced, shrink, noise_sd)})
                             for split in ("val", "cal", "test")], ignore_index=True)
    regions, thresholds = ShotRule().regions(train_labels), Thresholds()
    metrics = RunMetrics.model_validate(evaluate_predictions(predictions, regions, method, n_boot=n_boot, seed=seed))
    calibration = calibrate_predictions(predictions, train_labels, regions, thresholds)
    run.mkdir(parents=True, exist_ok=True)
    onnx = run / "model.onnx"
    onnx.write_bytes(f"synthetic stand-in for {method} (seed {seed}), not an ONNX model".encode())
    write_parquet_atomic(predictions, run / "predictions.parquet")
    write_run_metrics(run, metrics)
    labels, counts = np.unique(train_labels, return_counts=True)
    preprocessing = PreprocessConfig()
    card = ModelCard(
        name=SYNTHETIC_MODEL_NAME, version=f"{method}-seed{seed}", method=method, synthetic=True,
        input=InputSpec(name="ecg", shape=("batch", len(preprocessing.leads), preprocessing.n_samples),
                        dtype="float32", leads=preprocessing.leads),
        output=OutputSpec(name="k_mmol_l", shape=("batch",), unit="mmol/L"),
        preprocessing=preprocessing, preprocessing_digest=preprocessing.digest(), thresholds=thresholds,
        shot_rule=regions.rule, shot_regions=regions, prediction_intervals=calibration,
        metrics={split: metrics.splits[split] for split in ("test", "val")},
        signal_quality=SignalQualityConfig(), onnx=OnnxSpec(file=onnx.name, sha256=sha256_file(onnx)),
        training_data=TrainingData(label_histogram_train={f"{k:.1f}": int(c)
                                                          for k, c in zip(labels, counts, strict=True)}),
    )
    write_model_card(run / "model_card.json", card)
    return run / "model_card.json"


@dataclass(frozen=True)
class TrafficSummary:
    """What :func:`seed_traffic` inserted."""

    n_predictions: int
    n_labs: int
    ecg_sha256: tuple[str, ...]
    start: datetime
    end: datetime


def _store_ecgs(session: Session, store: EcgStore, n_ecgs: int, rng: np.random.Generator) -> tuple[
        np.ndarray, list[str]]:
    """``n_ecgs`` simulated 12-lead ECGs at K+ spread over 2.5-7.0 mmol/L: (their K+, their addresses)."""
    params = SynthParams()
    ks = np.linspace(2.5, 7.0, n_ecgs)
    addresses = []
    for k in ks:
        ecg = simulate_ecg(draw_subject(rng, params.morphology), float(k), rng, params)
        record = store_ecg(session, store, ecg.signal.astype(np.float32), params.fs, MIMIC_LEAD_ORDER)
        addresses.append(record.sha256)
    return ks, addresses


def _bulk_insert(session: Session, model: type[Prediction] | type[LabConfirmation], rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _INSERT_CHUNK):
        session.execute(sa.insert(model), rows[start: start + _INSERT_CHUNK])


def seed_traffic(
    session: Session,
    store: EcgStore,
    model_ids: Sequence[int],
    *,
    n_predictions: int,
    reviewer_id: int,
    end: datetime,
    days: float = 30.0,
    lab_fraction: float = 0.2,
    noise_sd: float = 0.45,
    coverage: float = 0.9,
    n_ecgs: int = 8,
    seed: int = 0,
) -> TrafficSummary:
    """Insert ``n_predictions`` predictions spread uniformly over ``days`` before ``end``, shared evenly by
    the registered models ``model_ids`` (each needs ``shot_regions`` in its card), and lab confirmations by
    ``reviewer_id`` for a random ``lab_fraction`` of them (lab K+ on the 0.1 grid, 5-60 min after)."""
    if n_predictions < 1 or n_ecgs < 1 or not model_ids:
        raise ValueError("need n_predictions >= 1, n_ecgs >= 1 and at least one model id")
    if not 0 <= lab_fraction <= 1 or not 0 < coverage < 1 or noise_sd <= 0 or days <= 0:
        raise ValueError("need 0 <= lab_fraction <= 1, 0 < coverage < 1, noise_sd > 0 and days > 0")
    if end.utcoffset() is None:
        raise ValueError("end must be a time-zone-aware datetime")
    models = [session.get(ModelVersion, model_id) for model_id in model_ids]
    missing = [model_id for model_id, model in zip(model_ids, models, strict=True) if model is None]
    if missing:
        raise ValueError(f"no registered model version with id(s) {missing}")
    rng = np.random.default_rng(seed)
    ecg_ks, addresses = _store_ecgs(session, store, n_ecgs, rng)

    k = _true_k(rng, n_predictions)
    estimate = _estimates(rng, k, SHRINK, noise_sd)
    # numpy multiplies the timedelta by each float (an object array); its stubs have no such overload.
    created = end - timedelta(days=days) * rng.uniform(0, 1, n_predictions)  # type: ignore[operator]
    which_model = rng.integers(0, len(models), n_predictions)
    which_ecg = np.abs(k[:, None] - ecg_ks[None, :]).argmin(axis=1)
    ids = [uuid.uuid4() for _ in range(n_predictions)]
    rows = []
    for index, model in enumerate(models):
        assert model is not None
        card = parse_model_card(model.card, source=f"model card of {model.version}")
        scorer = Scorer.of_card(card)
        mine = np.flatnonzero(which_model == index)
        quality = {"fs": 500.0, "n_samples": 5000, "leads": list(MIMIC_LEAD_ORDER),
                   "preprocessing_digest": model.preprocessing_digest}
        for i, score in zip(mine, scorer.score(estimate[mine], coverage), strict=True):
            prediction = score.prediction_set
            rows.append({
                "id": ids[i], "model_version_id": model.id, "model_status": model.status,
                "ecg_sha256": addresses[which_ecg[i]], "k_estimate": score.estimate,
                "interval_low": prediction.low, "interval_high": prediction.high,
                "interval_segments": [list(segment) for segment in prediction.segments],
                "interval_coverage": prediction.coverage, "interval_method": prediction.method,
                "p_hyper": score.p_hyper, "p_hypo": score.p_hypo,
                "flag": score.interpretation, "critical": score.critical,
                "shot_region": score.region, "quality": quality,
                "patient_id": f"synthetic-{rng.integers(0, n_predictions // 3 + 1)}",
                "ecg_time": created[i] - timedelta(minutes=2), "latency_ms": float(rng.gamma(4.0, 5.0)),
                "created_at": created[i],
            })
    _bulk_insert(session, Prediction, rows)
    segments_of = {row["id"]: row["interval_segments"] for row in rows}

    confirmed = np.flatnonzero(rng.uniform(0, 1, n_predictions) < lab_fraction)
    labs = []
    for i in confirmed:
        lab_time = created[i] + timedelta(minutes=float(rng.uniform(5, 60)))
        lab = round(float(k[i]), 1)
        labs.append({"prediction_id": ids[i], "k_value": lab,
                     "in_prediction_set": in_segments(lab, segments_of[ids[i]]),
                     "lab_time": lab_time, "itemid": SERUM_ITEMID, "confirmed_by": reviewer_id,
                     "created_at": lab_time + timedelta(minutes=10)})
    _bulk_insert(session, LabConfirmation, labs)
    return TrafficSummary(n_predictions, len(labs), tuple(addresses), min(created), max(created))
