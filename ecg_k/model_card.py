"""The part of ``model_card.json`` (written by ``training/export.py``) that the runtime relies on.

:func:`load_model_card` validates it up front, so a card that lacks a field, or whose preprocessing, input
shape or shot regions disagree with each other, is refused with every problem listed at load time and not
discovered at the first request. Fields the runtime does not use (metrics, training data) are ignored.

Prediction intervals are label-conditional split conformal (:mod:`ecg_k.conformal`): the card holds, per
region of the *true* K+, the conformal quantile of ``|y - y_hat|`` over calibration pairs that did not choose
the model, their counts, and the isotonic maps of P(K+ >= 5.5) and P(K+ <= 3.5). It also holds the
signal-quality gate's method and thresholds (:mod:`ecg_k.signal_quality`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ecg_k.conformal import ConformalCalibration
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.potassium import PLAUSIBLE_BINS, Thresholds
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.signal_quality import SignalQualityConfig

CARD_FORMAT = "ecg-k-model-card/2"
"""The card format this code writes and reads (/2: label-conditional intervals and the signal-quality gate)."""


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


class ModelCard(BaseModel):
    """The validated runtime view of a ``model_card.json``."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)

    format: Literal["ecg-k-model-card/2"]
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    input: InputSpec
    output: OutputSpec
    preprocessing: PreprocessConfig
    preprocessing_digest: str
    thresholds: Thresholds
    shot_regions: ShotRegions
    prediction_intervals: ConformalCalibration
    signal_quality: SignalQualityConfig
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
        if self.prediction_intervals.thresholds != self.thresholds:
            raise ValueError("prediction_intervals were calibrated with other thresholds than the card's")
        tagged = self.shot_regions.region_of_bins(PLAUSIBLE_BINS)
        for region in (r for r in self.prediction_intervals.regions if r.partition == "shot"):
            if list(region.bins) != PLAUSIBLE_BINS[tagged == region.name].tolist():
                raise ValueError(f"prediction_intervals' {region.name}-shot bins differ from the card's shot_regions")
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
