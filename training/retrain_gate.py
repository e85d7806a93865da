"""The champion/challenger gate of ``ecgk retrain`` and the evaluation it reads (conventions.md §9 item 10).

Both models are evaluated the way they are served: through their exported ONNX files (sha256-verified by
:class:`ecg_k.inference.OnnxModel`), on the same preprocessed arrays, with the same shot regions (those of
the base dataset's training labels, i.e. the champion's) and :func:`ecg_k.metrics.evaluate_predictions`.

The gate reads only the **locked balanced test set**: the challenger passes when

- few-shot MAE: ``challenger <= champion - delta`` (an improvement of at least ``delta`` mmol/L),
- overall MAE: ``challenger <= champion * (1 + epsilon)`` (worse by at most ``epsilon``, relative),
- hyperkalemia sensitivity (K+ >= 5.5): ``challenger >= champion`` (no drop at all).

A check whose numbers are undefined (no few-shot test samples, no hyperkalemia in the test set) fails:
the gate cannot show that nothing got worse, so it does not promote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ecg_k.inference import OnnxModel
from ecg_k.metrics import ShotRule, evaluate_predictions

FLOAT_SLACK = 1e-9
"""Tolerance of the comparisons, so that a boundary case (1.30 - 0.02 vs 1.28) is decided as written."""
EVAL_BATCH = 256
SUMMARY_REGIONS = ("overall", "many", "median", "few")
SUMMARY_DETECTIONS = ("hyper", "hypo")


class GateConfig(BaseModel):
    """The margins of the gate (documented defaults in docs/retraining.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delta: float = Field(default=0.02, ge=0, description="Required few-shot MAE improvement (mmol/L).")
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
                         reason=f"{name} is undefined on the locked test set, so the gate cannot pass")
    passed = challenger <= limit + FLOAT_SLACK if lower_is_better else challenger >= limit - FLOAT_SLACK
    verdict = "meets" if passed else "misses"
    reason = f"{name}: challenger {challenger:.4f} {verdict} the limit {limit:.4f} (champion {champion:.4f}; {rule})"
    return GateCheck(name=name, rule=rule, champion=champion, challenger=challenger, limit=limit, passed=passed,
                     reason=reason)


def gate(champion_test: Mapping[str, Any], challenger_test: Mapping[str, Any], config: GateConfig) -> GateResult:
    """Decide on the test-split metrics of both models (``metrics.json`` layout: ``few.mae``, ``overall.mae``,
    ``hyper.sensitivity``)."""
    few = _value(champion_test, "few", "mae")
    overall = _value(champion_test, "overall", "mae")
    sensitivity = _value(champion_test, "hyper", "sensitivity")
    checks = [
        _check("few-shot MAE", f"improves by at least delta = {config.delta:g} mmol/L", few,
               _value(challenger_test, "few", "mae"), None if few is None else few - config.delta, True),
        _check("overall MAE", f"worsens by at most epsilon = {config.epsilon:.0%}", overall,
               _value(challenger_test, "overall", "mae"), None if overall is None else overall * (1 + config.epsilon),
               True),
        _check("hyperkalemia sensitivity", "K+ >= 5.5 sensitivity does not drop", sensitivity,
               _value(challenger_test, "hyper", "sensitivity"), sensitivity, False),
    ]
    return GateResult(passed=all(check.passed for check in checks), checks=checks)


def predict_arrays(model: OnnxModel, signals: np.ndarray) -> np.ndarray:
    """Estimates of preprocessed ECGs ``(n, leads, samples)`` (any float dtype), in batches, float64."""
    out = [model.predict(np.asarray(signals[start:start + EVAL_BATCH], dtype=np.float32))
           for start in range(0, len(signals), EVAL_BATCH)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def evaluate_model(
    model: OnnxModel, sets: Mapping[str, tuple[np.ndarray, np.ndarray]], train_labels: np.ndarray,
    shot_rule: ShotRule, n_boot: int,
) -> dict[str, Any]:
    """Metrics of ``model`` on each named ``(signals, labels)`` set that holds samples (``metrics.json``
    layout per set); an empty set maps to None."""
    frames = [pd.DataFrame({"split": name, "y": labels.astype(np.float64), "y_hat": predict_arrays(model, signals)})
              for name, (signals, labels) in sets.items() if len(labels)]
    present = [name for name, (_, labels) in sets.items() if len(labels)]
    metrics = evaluate_predictions(pd.concat(frames, ignore_index=True), train_labels, model.version,
                                   shot_rule=shot_rule, n_boot=n_boot, splits=present) if present else {}
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
