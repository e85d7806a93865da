"""The part of ``model_card.json`` (written by ``training/export.py``) that the runtime relies on.

:func:`load_model_card` validates it up front, so a card that lacks a field, or whose preprocessing, input
shape or shot regions disagree with each other, is refused with every problem listed at load time and not
discovered at the first request. Fields the runtime does not use (metrics, training data) are ignored.

Prediction intervals are split-conformal-style: the card holds quantiles of the val residuals
``y - y_hat`` grouped by the shot region *of the estimate* (the only thing known at inference), and the
interval is ``estimate + (q_low, q_high)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecg_k.clinical import Thresholds
from ecg_k.metrics import ShotRegions
from ecg_k.preprocessing import PreprocessConfig

Region = Literal["many", "median", "few"]
IntervalGroup = Literal["overall", "many", "median", "few"]

RELIABILITY_NOTES: dict[Region, str] = {
    "many": "the model saw many training ECGs near this value; its error is lowest here",
    "median": "the model saw a moderate number of training ECGs near this value",
    "few": "the model saw few training ECGs near this value; treat with caution",
}
"""Plain-language reliability note for each shot region of an estimate."""


class ModelCardError(ValueError):
    """A model card that is missing, unreadable or lacks what the runtime needs."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class InputSpec(_Frozen):
    """ONNX input: ``name``, shape ``("batch", n_leads, n_samples)``, float32, lead names in order."""

    name: str = Field(min_length=1)
    shape: tuple[str, int, int]
    dtype: Literal["float32"]
    leads: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _leads_match_shape(self) -> InputSpec:
        if self.shape[1] != len(self.leads) or self.shape[2] < 1:
            raise ValueError(
                f"shape {list(self.shape)} does not fit {len(self.leads)} lead(s) {list(self.leads)}"
            )
        return self


class OutputSpec(_Frozen):
    """ONNX output: ``name``, shape ``("batch",)``, K+ in mmol/L."""

    name: str = Field(min_length=1)
    shape: tuple[str]
    unit: Literal["mmol/L"]


class OnnxSpec(_Frozen):
    """The ONNX file next to the card and its sha256, checked before the file is loaded."""

    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ResidualQuantiles(_Frozen):
    """Quantiles (level -> value) of ``y - y_hat`` on val for one group; None when it had no samples."""

    n: int = Field(ge=0)
    quantiles: dict[float, float] | None

    @model_validator(mode="after")
    def _consistent(self) -> ResidualQuantiles:
        if (self.n > 0) != (self.quantiles is not None):
            raise ValueError(f"quantiles must be given exactly when n > 0 (n = {self.n})")
        if self.quantiles is not None:
            levels = sorted(self.quantiles)
            values = [self.quantiles[level] for level in levels]
            if not all(0 < level < 1 for level in levels) or not all(map(math.isfinite, values)):
                raise ValueError(
                    f"quantile levels must lie in (0, 1) with finite values, got {self.quantiles}"
                )
            if any(b < a for a, b in zip(values, values[1:], strict=False)):
                raise ValueError(f"quantiles must not decrease with the level, got {self.quantiles}")
        return self

    def at(self, level: float) -> float | None:
        """The quantile at ``level`` (matched to 1e-9), or None when the card does not hold it."""
        for saved, value in (self.quantiles or {}).items():
            if abs(saved - level) < 1e-9:
                return value
        return None


class PredictionIntervals(_Frozen):
    """Residual quantiles overall and per shot region of the estimate; overall must hold quantiles."""

    regions: dict[IntervalGroup, ResidualQuantiles]

    @field_validator("regions")
    @classmethod
    def _complete(
        cls, regions: dict[IntervalGroup, ResidualQuantiles]
    ) -> dict[IntervalGroup, ResidualQuantiles]:
        missing = [name for name in ("overall", "many", "median", "few") if name not in regions]
        if missing:
            raise ValueError(f"missing group(s) {missing}")
        if regions["overall"].quantiles is None:
            raise ValueError("the overall group has no val samples, so no interval can be given")
        return regions


class ModelCard(BaseModel):
    """The validated runtime view of a ``model_card.json``."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    format: Literal["ecg-k-model-card/1"]
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    input: InputSpec
    output: OutputSpec
    preprocessing: PreprocessConfig
    preprocessing_digest: str
    thresholds: Thresholds
    shot_regions: ShotRegions
    prediction_intervals: PredictionIntervals
    onnx: OnnxSpec

    @field_validator("shot_regions", mode="before")
    @classmethod
    def _parse_shot_regions(cls, value: Any) -> ShotRegions:
        if isinstance(value, ShotRegions):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"expected the ShotRegions.to_dict() mapping, got {type(value).__name__}")
        return ShotRegions.from_dict(value)

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        config = self.preprocessing
        if self.input.leads != config.leads or self.input.shape[2] != config.n_samples:
            raise ValueError(
                f"input (leads {list(self.input.leads)}, {self.input.shape[2]} samples) does not match the "
                f"preprocessing (leads {list(config.leads)}, {config.n_samples} samples)"
            )
        if self.preprocessing_digest != config.digest():
            raise ValueError(
                f"preprocessing_digest {self.preprocessing_digest} is not the digest {config.digest()} "
                "of the saved preprocessing: this code would preprocess differently from training"
            )
        return self


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(card)'}: {e['msg']}" for e in error.errors())


def parse_model_card(payload: Mapping[str, Any], source: str = "model card") -> ModelCard:
    """Validate a card mapping; a :class:`ModelCardError` lists every problem with its field path."""
    try:
        return ModelCard.model_validate(payload)
    except ValidationError as error:
        raise ModelCardError(f"{source} is not usable: {_describe(error)}") from error


def load_model_card(path: str | Path) -> ModelCard:
    """Read and validate ``model_card.json``."""
    path = Path(path)
    if not path.is_file():
        raise ModelCardError(f"no model card at {path}")
    try:
        payload = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelCardError(f"model card {path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise ModelCardError(f"model card {path} must hold a JSON object, got {type(payload).__name__}")
    return parse_model_card(payload, source=f"model card {path}")


def _finite_estimate(estimate: float) -> float:
    value = float(estimate)
    if not math.isfinite(value):
        raise ValueError(f"estimate must be a finite K+ in mmol/L, got {estimate!r}")
    return value


def shot_region_of_estimate(card: ModelCard, estimate: float) -> Region:
    """Shot region of the 0.1 bin of ``estimate`` under the card's rule (see
    :meth:`~ecg_k.metrics.ShotRegions.region_of_estimates`); :data:`RELIABILITY_NOTES` says what it means."""
    return cast(Region, str(card.shot_regions.region_of_estimates([_finite_estimate(estimate)])[0]))


def available_coverages(residuals: ResidualQuantiles) -> list[float]:
    """Central coverages ``1 - 2q`` for which both the q and 1 - q quantiles are saved."""
    levels = sorted(residuals.quantiles or {})
    return [round(1 - 2 * q, 6) for q in levels if q < 0.5 and residuals.at(1 - q) is not None]


def min_calibration_samples(coverage: float) -> int:
    """Fewest val residuals whose empirical quantiles give a two-sided ``coverage`` interval.

    Split conformal prediction needs ``ceil((n + 1)(1 - a/2)) <= n`` with ``a = 1 - coverage``, i.e.
    ``n >= 2/a - 1``: 19 samples for 0.9, 39 for 0.95, 9 for 0.8. Below that the upper quantile would be
    extrapolated; two residuals would give a near-zero-width interval that need not even hold the estimate.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    return math.ceil(round(2 / (1 - coverage), 9)) - 1


def prediction_interval(card: ModelCard, estimate: float, coverage: float = 0.9) -> tuple[float, float]:
    """Central ``coverage`` interval ``estimate + (q_(1-c)/2, q_(1+c)/2)`` of the val residuals.

    Uses the residuals of the estimate's shot region, or the overall residuals when that region had no val
    samples or fewer than :func:`min_calibration_samples` (e.g. 19 for 0.9). Coverages a card holds: 0.8,
    0.9, 0.95.
    """
    value = _finite_estimate(estimate)
    groups = card.prediction_intervals.regions
    residuals = groups[shot_region_of_estimate(card, value)]
    if residuals.n < min_calibration_samples(coverage):
        residuals = groups["overall"]
    tail = (1 - coverage) / 2
    low, high = residuals.at(tail), residuals.at(1 - tail)
    if low is None or high is None:
        available = available_coverages(residuals)
        raise ValueError(f"the model card holds no {coverage:g} interval; available: {available}")
    return value + low, value + high
