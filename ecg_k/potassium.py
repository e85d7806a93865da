"""The K+ vocabulary of ecg-k, in one place: the label grid and its bins, the plausible range, the clinical
thresholds and the cut-offs derived from them, and the names of regions, flags and interpretation codes.

numpy and pydantic only, so every room (ingestion, training, service, dashboard, DB schema) imports it.

- Labels sit on a 0.1 mmol/L grid; a value's bin is ``round(K / 0.1)`` (never ``int``: ``4.1 / 0.1`` is
  ``40.999...``), and a bin's value is ``bin * 0.1`` rounded so 41 prints as 4.1.
- The plausible range 1.5-10.0 mmol/L (DESIGN.md): labels outside it are dropped at ingestion, and an
  estimate is clipped to it before its bin is looked up.
- Clinical thresholds (DESIGN.md, conventions.md section 5), inclusive: hypokalemia <= 3.5, hyperkalemia
  >= 5.5; critical < 2.5 or > 6.5 (strict). Detection cut-offs are derived from them, never restated.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, model_validator

LABEL_STEP = 0.1
"""Label grid and bin width (mmol/L)."""
GRID_TOLERANCE = 1e-3
"""Largest accepted distance of ``K / LABEL_STEP`` from an integer (float32 labels sit ~1e-6 off)."""
MIN_LABEL = 1.5
"""Lowest plausible K+ (mmol/L)."""
MAX_LABEL = 10.0
"""Highest plausible K+ (mmol/L)."""
PLAUSIBLE_RANGE = (MIN_LABEL, MAX_LABEL)
"""Plausible K+ range (mmol/L): labels outside it are dropped at ingestion, estimates clipped to it."""


class ShotRegion(StrEnum):
    """Training-label density region of a K+ bin (method.md section 6): many-, median- or few-shot."""

    MANY = "many"
    MEDIAN = "median"
    FEW = "few"


REGIONS: tuple[str, ...] = tuple(region.value for region in ShotRegion)
"""The shot-region names in order (many, median, few)."""

RELIABILITY_NOTES: dict[ShotRegion, str] = {
    ShotRegion.MANY: "the model saw many training ECGs near this value; its error is lowest here",
    ShotRegion.MEDIAN: "the model saw a moderate number of training ECGs near this value",
    ShotRegion.FEW: "the model saw few training ECGs near this value; treat with caution",
}
"""Plain-language reliability note for each shot region of an estimate."""


class ClinicalRegion(StrEnum):
    """Clinical region of a true K+ value under the thresholds: hypo-, normo- or hyperkalemia."""

    HYPO = "hypo"
    NORMAL = "normal"
    HYPER = "hyper"


CLINICAL_REGIONS: tuple[str, ...] = tuple(region.value for region in ClinicalRegion)
"""The clinical-region names in order (hypo, normal, hyper)."""


class Flag(StrEnum):
    """Clinical category of a K+ value (what the API reports as ``flag``)."""

    HYPOKALEMIA = "hypokalemia"
    NORMAL = "normal"
    HYPERKALEMIA = "hyperkalemia"


class Interpretation(StrEnum):
    """HL7 v3 ObservationInterpretation code of a K+ value (conventions.md section 5): critical low, low,
    normal, high, critical high. The API reports it as ``interpretation``; the DB stores it per prediction."""

    CRITICAL_LOW = "LL"
    LOW = "L"
    NORMAL = "N"
    HIGH = "H"
    CRITICAL_HIGH = "HH"

    @property
    def flag(self) -> Flag:
        """The clinical category the code falls in (LL and L are hypokalemia, H and HH hyperkalemia)."""
        if self in (Interpretation.CRITICAL_LOW, Interpretation.LOW):
            return Flag.HYPOKALEMIA
        if self in (Interpretation.HIGH, Interpretation.CRITICAL_HIGH):
            return Flag.HYPERKALEMIA
        return Flag.NORMAL

    @property
    def critical(self) -> bool:
        """Whether the code is a critical value (LL or HH)."""
        return self in (Interpretation.CRITICAL_LOW, Interpretation.CRITICAL_HIGH)


class Thresholds(BaseModel):
    """K+ cut-offs in mmol/L: hypokalemia <= 3.5, hyperkalemia >= 5.5, critical < 2.5 or > 6.5.

    Saved in every model card, so a model is always flagged and evaluated with the cut-offs it was built with.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hypokalemia: float = 3.5
    hyperkalemia: float = 5.5
    critical_low: float = 2.5
    critical_high: float = 6.5

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.critical_low < self.hypokalemia < self.hyperkalemia < self.critical_high:
            raise ValueError(
                "thresholds must satisfy critical_low < hypokalemia < hyperkalemia < critical_high, got "
                f"{self.critical_low}, {self.hypokalemia}, {self.hyperkalemia}, {self.critical_high}"
            )
        return self


DEFAULT_THRESHOLDS = Thresholds()


# ------------------------------------------------------------------------------------------ grid and bins


def label_bin(k_value: ArrayLike, step: float = LABEL_STEP) -> NDArray[np.int64]:
    """Integer bin index ``round(K / step)`` (never ``int(10*K)``: 4.1*10 = 40.999...)."""
    return np.rint(np.asarray(k_value, dtype=np.float64) / step).astype(np.int64)


def bin_value(bins: ArrayLike) -> NDArray[np.float64]:
    """K+ (mmol/L) at the centre of each bin index, rounded so 41 -> 4.1 exactly as printed."""
    return np.round(np.asarray(bins, dtype=np.float64) * LABEL_STEP, 6)


def finite_1d(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """``values`` as a finite 1-D float64 array, or a ValueError that names the input."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf value(s); metrics need finite values")
    return array


def grid_bins(labels: ArrayLike, name: str) -> NDArray[np.int64]:
    """Bin indices of labels that must lie on the 0.1 mmol/L grid (else a ValueError naming ``name``): a
    region lookup on a mis-binned label would be silently wrong."""
    values = finite_1d(labels, name)
    scaled = values / LABEL_STEP
    off = np.abs(scaled - np.rint(scaled))
    if off.size and off.max() > GRID_TOLERANCE:
        raise ValueError(
            f"{name} must lie on the {LABEL_STEP} mmol/L grid; {float(values[off.argmax()])!r} does not"
        )
    return label_bin(values)


def on_grid(value: float) -> bool:
    """Whether one K+ value lies on the 0.1 mmol/L grid."""
    scaled = value / LABEL_STEP
    return abs(scaled - round(scaled)) <= GRID_TOLERANCE


PLAUSIBLE_BINS: NDArray[np.int64] = np.arange(label_bin(MIN_LABEL).item(), label_bin(MAX_LABEL).item() + 1)
"""Every bin of the plausible range on the label grid (the K+ values a prediction set is drawn from)."""


def clip_to_grid(estimates: ArrayLike) -> NDArray[np.float64]:
    """Estimates clipped to :data:`PLAUSIBLE_RANGE` and rounded to the grid (the bin an estimate falls in)."""
    clipped: NDArray[np.float64] = np.clip(np.asarray(estimates, dtype=np.float64), MIN_LABEL, MAX_LABEL)
    return np.round(clipped, 1)


def clinical_region_of_bins(bins: ArrayLike, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> NDArray[np.str_]:
    """hypo (K+ <= hypokalemia), hyper (K+ >= hyperkalemia) or normal, for 0.1-grid bin indices."""
    bins = np.asarray(bins, dtype=np.int64)
    hypo, hyper = label_bin(thresholds.hypokalemia).item(), label_bin(thresholds.hyperkalemia).item()
    return np.where(bins <= hypo, ClinicalRegion.HYPO.value,
                    np.where(bins >= hyper, ClinicalRegion.HYPER.value, ClinicalRegion.NORMAL.value)).astype("<U6")


# -------------------------------------------------------------------------------------------- cut-offs

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
}


@dataclass(frozen=True)
class Cutoff:
    """A clinical cut-off, positive when ``K <op> value``; applied to labels (by bin, so
    ``35 * 0.1 = 3.5000000000000004`` is still hypokalemia) and to raw predictions."""

    key: str
    op: Literal[">=", ">", "<=", "<"]
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise ValueError(
                f"cut-off {self.key!r}: unknown operator {self.op!r}; expected one of {list(_OPERATORS)}"
            )
        if not on_grid(self.value):
            raise ValueError(f"cut-off {self.key!r}: {self.value} is not on the {LABEL_STEP} mmol/L grid")

    @property
    def high(self) -> bool:
        """True for hyperkalemia-type cut-offs (higher prediction = more likely positive)."""
        return self.op.startswith(">")

    def label_positive(self, bins: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each label bin is positive."""
        return np.asarray(_OPERATORS[self.op](bins, label_bin(self.value).item()), dtype=np.bool_)

    def prediction_positive(self, y_hat: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether each raw prediction is positive."""
        return np.asarray(_OPERATORS[self.op](y_hat, self.value), dtype=np.bool_)

    def describe(self) -> str:
        """``K >= 5.5`` and the like, for reports."""
        return f"K {self.op} {self.value:g}"


def detection_cutoffs(thresholds: Thresholds = DEFAULT_THRESHOLDS) -> tuple[Cutoff, Cutoff]:
    """(hyper, hypo): hyperkalemia ``K >= hyperkalemia`` and hypokalemia ``K <= hypokalemia``."""
    return Cutoff("hyper", ">=", thresholds.hyperkalemia), Cutoff("hypo", "<=", thresholds.hypokalemia)


def event_names(thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[str, str]:
    """Display names of the two calibrated events, by detection key: ``P(K⁺ ≥ 5.5)`` and ``P(K⁺ ≤ 3.5)``."""
    return {"hyper": f"P(K⁺ ≥ {thresholds.hyperkalemia:g})", "hypo": f"P(K⁺ ≤ {thresholds.hypokalemia:g})"}


def operating_points(thresholds: Thresholds = DEFAULT_THRESHOLDS) -> tuple[Cutoff, ...]:
    """The other operating points of conventions.md section 2 (strict, as there): K > 6.0, K > critical_high,
    K < 3.0, K < critical_low (a critical cut-off equal to 6.0 or 3.0 is listed once)."""
    points = (
        Cutoff("hyper_gt_6.0", ">", 6.0),
        Cutoff(f"hyper_gt_{thresholds.critical_high:g}", ">", thresholds.critical_high),
        Cutoff("hypo_lt_3.0", "<", 3.0),
        Cutoff(f"hypo_lt_{thresholds.critical_low:g}", "<", thresholds.critical_low),
    )
    unique: dict[tuple[str, float], Cutoff] = {}
    for point in points:
        unique.setdefault((point.op, point.value), point)
    return tuple(unique.values())
