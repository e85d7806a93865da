"""Clinical thresholds and flags of the product (DESIGN.md, conventions.md section 5): inclusive boundaries.

The thresholds are saved in every model card, so a model is always flagged with the cut-offs it was
evaluated with. Flags apply to the *reported* value (:func:`reported_value`, 2 decimals), so a reader
never sees "3.50 mmol/L, normal".
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

REPORT_DECIMALS = 2
"""Decimals of a reported K+ estimate (conventions.md section 5: 1-2 decimals)."""

InterpretationCode = Literal["LL", "L", "N", "H", "HH"]
"""HL7 v3 ObservationInterpretation codes used for K+: critical low, low, normal, high, critical high."""


class Thresholds(BaseModel):
    """K+ cut-offs in mmol/L: hypokalemia <= 3.5, hyperkalemia >= 5.5, critical < 2.5 or > 6.5."""

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


class Flag(StrEnum):
    """Clinical category of a K+ value."""

    HYPOKALEMIA = "hypokalemia"
    NORMAL = "normal"
    HYPERKALEMIA = "hyperkalemia"


def _finite(k: float) -> float:
    """``k`` as a float, or a ValueError: a NaN would silently fall through every comparison as normal."""
    value = float(k)
    if not math.isfinite(value):
        raise ValueError(f"K+ must be a finite number in mmol/L, got {k!r}")
    return value


def reported_value(k: float) -> float:
    """The estimate as reported and flagged: rounded to :data:`REPORT_DECIMALS` decimals."""
    return round(_finite(k), REPORT_DECIMALS)


def interpretation_code(k: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> InterpretationCode:
    """LL (< 2.5), L (2.5 <= K <= 3.5), N (3.5 < K < 5.5), H (5.5 <= K <= 6.5) or HH (> 6.5)."""
    value = _finite(k)
    if value < thresholds.critical_low:
        return "LL"
    if value <= thresholds.hypokalemia:
        return "L"
    if value < thresholds.hyperkalemia:
        return "N"
    if value <= thresholds.critical_high:
        return "H"
    return "HH"


def flag(k: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Flag:
    """Hypokalemia at K <= 3.5, hyperkalemia at K >= 5.5, else normal."""
    code = interpretation_code(k, thresholds)
    if code in ("LL", "L"):
        return Flag.HYPOKALEMIA
    if code in ("H", "HH"):
        return Flag.HYPERKALEMIA
    return Flag.NORMAL


def is_critical(k: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> bool:
    """True below 2.5 or above 6.5 (strict, so 2.5 and 6.5 themselves are not critical)."""
    return interpretation_code(k, thresholds) in ("LL", "HH")
