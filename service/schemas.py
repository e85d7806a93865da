"""Request and response models of the API (pydantic), with OpenAPI examples."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, Strict, model_validator

from ecg_k.data.lab_comments import LabComment
from ecg_k.db.models import Verdict, storable_text
from ecg_k.db.reviews import COMMENT_MAX_CHARS, ITEMID_MAX, K_MAX
from ecg_k.potassium import Flag, Interpretation, ShotRegion
from ecg_k.quality import SkipReason

PSEUDONYM_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_LEADS = 12
MAX_LEAD_NAME_CHARS = 64


def _has_utc_equivalent(value: datetime) -> datetime:
    """The database stores UTC, and e.g. year 1 at +14:00 has no UTC equivalent in ``datetime``."""
    try:
        value.astimezone(UTC)
    except OverflowError as err:
        raise ValueError("time lies outside the range that can be converted to UTC") from err
    return value


UtcTime = Annotated[AwareDatetime, AfterValidator(_has_utc_equivalent)]
"""An aware time that the database can store."""
Number = Annotated[float, Strict()]
"""A JSON number (an integer is a number); never a string or a boolean coerced into one."""
Integer = Annotated[int, Strict()]
"""A JSON integer; never a string, a boolean or a float coerced into one."""

_EXAMPLE_LEAD: list[JsonValue] = [round(0.8 * math.sin(2 * math.pi * 1.2 * i / 500), 3) for i in range(8)]


class EcgIn(BaseModel):
    """One ECG in mV: either ``leads`` (name -> samples) or ``lead_names`` with a ``signal`` matrix."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "sampling_rate": 500,
            "leads": {"I": _EXAMPLE_LEAD, "II": _EXAMPLE_LEAD},
            "ecg_time": "2024-05-01T08:30:00Z",
            "patient_id": "pseudo-7f3a9c",
        }]},
    )

    sampling_rate: Number = Field(gt=0, le=100_000, description="Samples per second (Hz) of every lead.")
    leads: dict[str, list[Number]] | None = Field(
        default=None, min_length=1, max_length=MAX_LEADS, description="Lead name -> samples in mV."
    )
    lead_names: list[str] | None = Field(default=None, min_length=1, max_length=MAX_LEADS)
    signal: list[list[Number]] | None = Field(
        default=None, min_length=1, max_length=MAX_LEADS, description="Rows in the order of lead_names, mV."
    )
    ecg_time: UtcTime | None = Field(default=None, description="When the ECG was recorded.")
    patient_id: str | None = Field(
        default=None, pattern=PSEUDONYM_PATTERN,
        description="Pseudonymous subject key (never a name or MRN).",
    )

    @model_validator(mode="after")
    def _one_layout(self) -> EcgIn:
        if (self.leads is None) == (self.signal is None) or (self.signal is None) != (self.lead_names is None):
            raise ValueError("give either leads, or lead_names together with signal")
        names, rows = self.named_rows()
        if len(names) != len(rows):
            raise ValueError(f"{len(names)} lead names for {len(rows)} signal rows")
        if any(not name.strip() or not name.isprintable() or len(name) > MAX_LEAD_NAME_CHARS for name in names):
            raise ValueError(f"lead names must be 1 to {MAX_LEAD_NAME_CHARS} printable characters")
        if len({len(row) for row in rows}) != 1 or not rows[0]:
            raise ValueError("every lead must hold the same, non-zero number of samples")
        return self

    def named_rows(self) -> tuple[list[str], list[list[float]]]:
        """(lead names, rows) whichever layout was sent."""
        if self.leads is not None:
            return list(self.leads), list(self.leads.values())
        return list(self.lead_names or []), list(self.signal or [])


class BatchIn(BaseModel):
    """Several ECGs scored in one request (at most the service's batch cap)."""

    model_config = ConfigDict(extra="forbid")

    ecgs: list[EcgIn] = Field(min_length=1)


class Interval(BaseModel):
    """Prediction set of the estimate: label-conditional split conformal, so the coverage holds for
    hypokalemia, normal and hyperkalemia patients separately (not only on average). The set can be
    non-contiguous: ``segments`` are its parts, ``low``/``high`` its hull."""

    low: float
    high: float
    segments: list[tuple[float, float]] | None = Field(
        description="The set as [low, high] K+ segments; None for a prediction stored before sets were served.")
    coverage: float | None = Field(examples=[0.9])
    method: str | None = Field(examples=["mondrian-label-conditional-split-conformal"])


class Probabilities(BaseModel):
    """Calibrated probabilities (isotonic on calibration pairs, at the training population's prevalence)."""

    hyperkalemia: float | None = Field(description="P(K+ >= 5.5 mmol/L).")
    hypokalemia: float | None = Field(description="P(K+ <= 3.5 mmol/L).")


class ModelRef(BaseModel):
    """The model version that produced an estimate."""

    name: str
    version: str
    sha256: str
    status: str


class PredictionOut(BaseModel):
    """A stored K+ estimate."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "3b0f8f7e-2a43-4c55-9a55-0d5f4a3f1e2b", "request_id": "c0ffee", "k_estimate": 5.71,
        "unit": "mmol/L", "interval": {"low": 5.0, "high": 6.5, "segments": [[5.0, 6.5]], "coverage": 0.9,
                     "method": "mondrian-label-conditional-split-conformal"},
        "probabilities": {"hyperkalemia": 0.71, "hypokalemia": 0.0}, "flag": "hyperkalemia",
        "interpretation": "H", "critical": False, "shot_region": "few",
        "reliability_note": "the model saw few training ECGs near this value; treat with caution",
        "model": {"name": "ecg-k-net1d", "version": "v1", "sha256": "0" * 64, "status": "champion"},
        "ecg_sha256": "1" * 64, "patient_id": "pseudo-7f3a9c", "ecg_time": "2024-05-01T08:30:00Z",
        "created_at": "2024-05-01T08:31:02Z",
    }]})

    id: uuid.UUID
    request_id: str | None
    k_estimate: float = Field(description="K+ in mmol/L, 2 decimals.")
    unit: Literal["mmol/L"] = "mmol/L"
    interval: Interval
    probabilities: Probabilities
    flag: Flag
    interpretation: Interpretation
    critical: bool
    shot_region: ShotRegion
    reliability_note: str
    model: ModelRef
    ecg_sha256: str
    patient_id: str | None
    ecg_time: datetime | None
    created_at: datetime


class Unusable(BaseModel):
    """Why an ECG could not be scored (the same reasons as a 422 ``detail``)."""

    reason: SkipReason
    message: str


class BatchItemOut(BaseModel):
    """One ECG of a batch: a prediction, or the reason there is none."""

    index: int
    prediction: PredictionOut | None = None
    error: Unusable | None = None


class BatchOut(BaseModel):
    """Results in the order of the request."""

    results: list[BatchItemOut]


class LabIn(BaseModel):
    """A measured K+ that confirms one prediction."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"k_value": 5.9, "lab_time": "2024-05-01T09:05:00Z", "itemid": 50971},
        {"k_value": 6.8, "lab_time": "2024-05-01T09:05:00Z", "itemid": 50971, "comment_class": "hemolysed"}]})

    k_value: Number = Field(gt=0, le=K_MAX, description="Measured K+ in mmol/L.")
    lab_time: UtcTime = Field(description="When the sample was drawn: within 24 h of the ECG.")
    itemid: Integer | None = Field(default=None, ge=0, le=ITEMID_MAX, description="MIMIC itemid (50971 serum).")
    comment_class: LabComment = Field(
        default=LabComment.NONE,
        description="What the lab's comment says: 'hemolysed' (the sample was haemolysed, the K+ is falsely "
                    "high: kept for the record, never used for retraining), 'verified' (the value was checked, "
                    "e.g. 'not haemolysed'), or 'none'.")


class LabOut(BaseModel):
    """A recorded lab confirmation."""

    prediction_id: uuid.UUID
    k_value: float
    lab_time: datetime
    itemid: int | None
    comment_class: LabComment
    confirmed_by: int
    created_at: datetime


class ReviewIn(BaseModel):
    """A reviewer's verdict on one prediction."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"verdict": "agree", "comment": "T waves peaked; lab K+ 6.1 confirms."}]})

    verdict: Verdict
    comment: Annotated[str, AfterValidator(storable_text)] | None = Field(default=None, max_length=COMMENT_MAX_CHARS)


class ReviewOut(BaseModel):
    """A recorded review."""

    id: int
    prediction_id: uuid.UUID
    verdict: Verdict
    comment: str | None
    reviewer_id: int
    created_at: datetime


class ModelOut(BaseModel):
    """A registered model version."""

    name: str
    version: str
    sha256: str
    status: str
    serving: bool = Field(description="Whether this process serves it.")
    created_at: datetime


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    detail: str | None = None


class ErrorDetail(BaseModel):
    """Machine-readable reason of a 422 for an unusable ECG."""

    reason: SkipReason | Literal["batch_too_large", "duplicate_key", "unsupported_media_type",
                                 "unsupported_encoding"]
    message: str


class UnusableResponse(BaseModel):
    """The body of a 422 for an unusable ECG."""

    detail: ErrorDetail
