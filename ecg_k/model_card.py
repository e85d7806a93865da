"""``model_card.json``, the record of an exported model: one writer (:func:`write_model_card`, used by
``ecgk export`` and the synthetic registry of the tests and demo) and one reader (:func:`load_model_card` for a
file, :func:`parse_model_card` for the copy the model registry stores).

The reader validates the whole card up front, so a card that lacks a field, holds an unknown one, or whose
preprocessing, input shape or shot regions disagree with each other, is refused with every problem listed at
load time and not discovered at the first request. A card of another format is refused, naming it.

Prediction intervals are label-conditional split conformal (:mod:`ecg_k.conformal`): the card holds, per
region of the *true* K+, the conformal quantile of ``|y - y_hat|`` over calibration pairs that did not choose
the model, their counts, and the isotonic maps of P(K+ >= 5.5) and P(K+ <= 3.5). It also holds the
signal-quality gate's method and thresholds (:mod:`ecg_k.signal_quality`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from ecg_k.conformal import ConformalCalibration
from ecg_k.evaluation.regions import ShotRegions, ShotRuleName
from ecg_k.potassium import PLAUSIBLE_BINS, Thresholds
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.common import CodeVersion
from ecg_k.records.dataset import IngestConfig
from ecg_k.records.jsonio import RecordError, describe, read_object, record_payload, write_record
from ecg_k.records.run import TrainSchedule
from ecg_k.signal_quality import SignalQualityConfig

CARD_FORMAT: Final = "ecg-k-model-card/2"
"""The card format this code writes and reads (/2: label-conditional intervals and the signal-quality gate)."""


class ModelCardError(RecordError):
    """A model card that is missing, unreadable, of another format or invalid."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


class OnnxParity(_Frozen):
    """How closely the ONNX graph reproduced the PyTorch model at export."""

    max_abs_diff: float = Field(ge=0)
    rtol: float = Field(ge=0)
    atol: float = Field(ge=0)


class OnnxSpec(_Frozen):
    """The ONNX file next to the card and its sha256, checked before the file is loaded; its size, opset and
    parity check (absent for the synthetic registry's stand-in files)."""

    file: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int | None = Field(default=None, ge=0)
    opset: int | None = Field(default=None, ge=1)
    parity: OnnxParity | None = None


class Architecture(_Frozen):
    """The Net1D the ONNX graph was exported from (its config as ``ecg_k.models.Net1DConfig`` dumps it)."""

    net1d: dict[str, Any]
    in_channels: int = Field(ge=1)


class TrainingData(_Frozen):
    """The dataset the model was trained on, from its manifest (only the label histogram for synthetic cards)."""

    path: str | None = None
    counts: dict[str, int] | None = None
    label_histogram_train: dict[str, int]
    checksums: dict[str, str] | None = None
    config: IngestConfig | None = None


class FlipJump(_Frozen):
    """Quantiles of how far a hard-routed estimate moves when the top two groups swap (mmol/L, on val)."""

    q0_5: float = Field(alias="q0.5")
    q0_95: float = Field(alias="q0.95")
    max: float

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)


class GroupRouting(_Frozen):
    """What a Group-DIR card says about its routing (``training.export.group_routing_card``)."""

    routing: Literal["hard", "soft"]
    edges_mmol_l: list[float]
    edge_nearest_threshold: dict[str, float]
    flip_jump_val_mmol_l: FlipJump
    note: str


class RetrainProvenance(_Frozen):
    """The retraining run that made a challenger (``ecgk retrain``); also kept with its gate decision."""

    data_fingerprint: str
    run_dir: str
    base_dataset: str
    mode: Literal["full", "stage2"]
    method: str
    confirmed: dict[str, int]
    confirmed_skipped: dict[str, int]
    params: dict[str, Any]
    champion: dict[str, str]
    code_version: CodeVersion


class ModelCard(BaseModel):
    """A validated ``model_card.json``: what the runtime relies on (input, output, preprocessing, thresholds,
    shot regions, intervals, signal-quality gate, ONNX file) and what documents the model (method, metrics,
    training data and recipe, code version)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    format: Literal["ecg-k-model-card/2"] = CARD_FORMAT
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    created: str | None = None
    method: str = Field(min_length=1)
    stage: int | None = Field(default=None, ge=1, le=2)
    synthetic: Literal[True] | None = None
    architecture: Architecture | None = None
    input: InputSpec
    output: OutputSpec
    preprocessing: PreprocessConfig
    preprocessing_digest: str
    thresholds: Thresholds
    shot_rule: ShotRuleName
    shot_regions: ShotRegions
    metrics: dict[str, dict[str, Any]]
    prediction_intervals: ConformalCalibration
    signal_quality: SignalQualityConfig
    onnx: OnnxSpec
    training_data: TrainingData
    train_config: dict[str, Any] | None = None
    train_schedule: TrainSchedule | None = None
    group_routing: GroupRouting | None = None
    retrain: RetrainProvenance | None = None
    code_version: CodeVersion | None = None

    @field_validator("shot_regions", mode="before")
    @classmethod
    def _parse_shot_regions(cls, value: Any) -> ShotRegions:
        if isinstance(value, ShotRegions):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"expected the ShotRegions.to_dict() mapping, got {type(value).__name__}")
        return ShotRegions.from_dict(value)

    @field_serializer("shot_regions")
    def _dump_shot_regions(self, value: ShotRegions) -> dict[str, Any]:
        return value.to_dict()

    def as_dict(self) -> dict[str, Any]:
        """The card as its file holds it (what the model registry stores)."""
        return record_payload(self)

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if self.shot_rule != self.shot_regions.rule:
            raise ValueError(f"shot_rule {self.shot_rule!r} is not the rule of shot_regions {self.shot_regions.rule!r}")
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


def parse_model_card(payload: Mapping[str, Any], source: str = "model card") -> ModelCard:
    """Validate a card mapping (a file's, or the copy the registry stores); a :class:`ModelCardError` names
    another format, or lists every problem with its field path."""
    found = payload.get("format")
    if found != CARD_FORMAT:
        raise ModelCardError(f"{source} has format {found!r}; this code reads {CARD_FORMAT!r}: export the run "
                             "again with `ecgk export`")
    try:
        return ModelCard.model_validate(payload)
    except ValidationError as error:
        raise ModelCardError(f"{source} is not usable: {describe(error)}") from error


def load_model_card(path: str | Path) -> ModelCard:
    """Read and validate ``model_card.json``."""
    path = Path(path)
    try:
        payload = read_object(path, "model card")
    except RecordError as error:
        raise ModelCardError(str(error)) from error
    return parse_model_card(payload, source=f"model card {path}")


def write_model_card(path: Path, card: ModelCard) -> None:
    """Write ``card`` to ``path`` (atomically)."""
    write_record(path, card)
