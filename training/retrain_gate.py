"""The champion/challenger gate of ``ecgk retrain`` and the evaluation it reads (conventions.md §9 item 10).

Both models are evaluated the way they are served: through their exported ONNX files (sha256-verified by
:class:`ecg_k.inference.OnnxModel`), on the same preprocessed arrays, with the same shot regions (those of
the base dataset's training labels, i.e. the champion's) and :func:`ecg_k.evaluation.report.evaluate_predictions`.

The gate decides on the **gate split** of the base dataset: ``cal`` (the calibration half of the balanced
val draw, never used for model selection), or ``val`` for a dataset without ``cal`` (recorded). The locked
test set is evaluated and reported, never decided on. The challenger passes when

- few-shot MAE: the **lower bound** of the paired bootstrap 95 % CI (subjects resampled) of the improvement
  ``champion - challenger`` exceeds ``delta`` (default 0: the improvement must be real, not noise),
- overall MAE: ``challenger <= champion * (1 + epsilon)`` (worse by at most ``epsilon``, relative),
- hyperkalemia sensitivity (K+ >= 5.5): ``challenger >= champion`` (no drop at all).

A check whose numbers are undefined (no few-shot samples, no hyperkalemia in the gate split) fails: the gate
cannot show that nothing got worse, so it does not promote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ecg_k.data.store import COHORT, labels_path
from ecg_k.evaluation.bootstrap import bootstrap_errors, percentile_ci
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.evaluation.regression import ALL_REGIONS
from ecg_k.evaluation.report import evaluate_predictions
from ecg_k.inference import OnnxModel

FLOAT_SLACK = 1e-9
"""Tolerance of the comparisons, so that a boundary case (1.30 - 0.02 vs 1.28) is decided as written."""
EVAL_BATCH = 256
SUMMARY_REGIONS = ALL_REGIONS
SUMMARY_DETECTIONS = ("hyper", "hypo")


class GateConfig(BaseModel):
    """The margins of the gate (documented defaults in docs/retraining.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delta: float = Field(default=0.0, ge=0, description="The few-shot MAE improvement's paired bootstrap 95 % "
                         "lower bound must exceed this (mmol/L).")
    epsilon: float = Field(default=0.05, ge=0, description="Allowed relative overall-MAE worsening (0.05 = 5 %).")


class GateCheck(BaseModel):
    """One criterion: the two values, the limit the challenger had to meet, and the outcome."""

    model_config = ConfigDict(frozen=True)

    name: str
    rule: str
    champion: float | None
    challenger: float | None
    limit: float | None
    passed: bool
    reason: str
    improvement_ci95: list[float] | None = None


class GateResult(BaseModel):
    """All criteria; ``passed`` only when every one passed."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        """The failed criteria in words (empty when the gate passed)."""
        return [check.reason for check in self.checks if not check.passed]


def _value(metrics: Mapping[str, Any], *path: str) -> float | None:
    value: Any = metrics
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return None if value is None else float(value)


def _check(name: str, rule: str, champion: float | None, challenger: float | None, limit: float | None,
           lower_is_better: bool) -> GateCheck:
    if champion is None or challenger is None or limit is None:
        return GateCheck(name=name, rule=rule, champion=champion, challenger=challenger, limit=limit, passed=False,
                         reason=f"{name} is undefined on the gate split, so the gate cannot pass")
    passed = challenger <= limit + FLOAT_SLACK if lower_is_better else challenger >= limit - FLOAT_SLACK
    verdict = "meets" if passed else "misses"
    reason = f"{name}: challenger {challenger:.4f} {verdict} the limit {limit:.4f} (champion {champion:.4f}; {rule})"
    return GateCheck(name=name, rule=rule, champion=champion, challenger=challenger, limit=limit, passed=passed,
                     reason=reason)


def _improvement_check(champion: float | None, challenger: float | None, ci: Sequence[float] | None,
                       delta: float) -> GateCheck:
    name, rule = "few-shot MAE", f"paired bootstrap 95 % lower bound of the improvement > delta = {delta:g} mmol/L"
    if champion is None or challenger is None or ci is None:
        return GateCheck(name=name, rule=rule, champion=champion, challenger=challenger, limit=delta, passed=False,
                         reason=f"{name} is undefined on the gate split, so the gate cannot pass")
    passed = ci[0] > delta
    reason = (f"{name}: challenger {challenger:.4f} vs champion {champion:.4f}, improvement 95 % CI "
              f"[{ci[0]:.4f}, {ci[1]:.4f}] {'clears' if passed else 'does not clear'} delta {delta:g} ({rule})")
    return GateCheck(name=name, rule=rule, champion=champion, challenger=challenger, limit=delta, passed=passed,
                     reason=reason, improvement_ci95=list(ci))


def gate(champion_metrics: Mapping[str, Any], challenger_metrics: Mapping[str, Any], config: GateConfig,
         few_improvement_ci: Sequence[float] | None) -> GateResult:
    """Decide on the gate-split metrics of both models (``metrics.json`` layout: ``few.mae``, ``overall.mae``,
    ``hyper.sensitivity``) and the paired CI of the few-shot improvement (:func:`few_improvement_ci`)."""
    few = _value(champion_metrics, "few", "mae")
    overall = _value(champion_metrics, "overall", "mae")
    sensitivity = _value(champion_metrics, "hyper", "sensitivity")
    checks = [
        _improvement_check(few, _value(challenger_metrics, "few", "mae"), few_improvement_ci, config.delta),
        _check("overall MAE", f"worsens by at most epsilon = {config.epsilon:.0%}", overall,
               _value(challenger_metrics, "overall", "mae"),
               None if overall is None else overall * (1 + config.epsilon),
               True),
        _check("hyperkalemia sensitivity", "K+ >= 5.5 sensitivity does not drop", sensitivity,
               _value(challenger_metrics, "hyper", "sensitivity"), sensitivity, False),
    ]
    return GateResult(passed=all(check.passed for check in checks), checks=checks)


def gate_split(dataset: Path) -> str:
    """``cal`` when the dataset has a non-empty calibration split, else ``val`` (older datasets)."""
    path = labels_path(dataset, "cal")
    return "cal" if path.is_file() and len(np.load(path, mmap_mode="r")) else "val"


def split_subjects(dataset: Path, split: str) -> np.ndarray:
    """Subject id of each row of a split (row i is the i-th cohort row of that split)."""
    cohort = pd.read_parquet(dataset / COHORT, columns=["subject_id", "split"])
    return cohort.loc[cohort["split"] == split, "subject_id"].to_numpy()


def few_improvement_ci(labels: np.ndarray, champion: np.ndarray, challenger: np.ndarray, subjects: np.ndarray,
                       regions: ShotRegions, n_boot: int, seed: int = 0) -> list[float] | None:
    """Paired bootstrap (subjects resampled) 95 % CI of ``few MAE(champion) - few MAE(challenger)``, few-shot
    by the champion's ``regions``."""
    if n_boot < 1 or not len(labels):
        return None
    boot = bootstrap_errors(labels.astype(np.float64), {"champion": champion, "challenger": challenger},
                            regions, subjects, n_boot, seed)
    return percentile_ci(boot["champion"]["few.mae"] - boot["challenger"]["few.mae"])


def predict_arrays(model: OnnxModel, signals: np.ndarray) -> np.ndarray:
    """Estimates of preprocessed ECGs ``(n, leads, samples)`` (any float dtype), in batches, float64."""
    out = [model.predict(np.asarray(signals[start:start + EVAL_BATCH], dtype=np.float32))
           for start in range(0, len(signals), EVAL_BATCH)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def evaluate_model(
    model: OnnxModel, sets: Mapping[str, tuple[np.ndarray, np.ndarray]], regions: ShotRegions, n_boot: int,
) -> dict[str, Any]:
    """Metrics of ``model`` on each named ``(signals, labels)`` set that holds samples (``metrics.json``
    layout per set, shot regions ``regions``); an empty set maps to None."""
    frames = [pd.DataFrame({"split": name, "y": labels.astype(np.float64), "y_hat": predict_arrays(model, signals)})
              for name, (signals, labels) in sets.items() if len(labels)]
    present = [name for name, (_, labels) in sets.items() if len(labels)]
    metrics = evaluate_predictions(pd.concat(frames, ignore_index=True), regions, model.version,
                                   n_boot=n_boot, splits=present) if present else {}
    return {name: metrics.get(name) for name in sets}


def summarize(split_metrics: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The numbers of one split worth keeping in the registry: MAE and n per region, bMAE, and the
    hyper/hypokalemia detection statistics (without CIs)."""
    if split_metrics is None:
        return None
    out: dict[str, Any] = {region: {"mae": split_metrics[region]["mae"], "n": split_metrics[region]["n"]}
                           for region in SUMMARY_REGIONS}
    out["bmae"] = split_metrics["bmae"]
    for key in SUMMARY_DETECTIONS:
        detection = split_metrics[key]
        out[key] = {stat: detection[stat] for stat in ("auroc", "sensitivity", "specificity", "n_positive")}
    return out
