"""Clinical rules of the product (DESIGN.md, conventions.md section 5): a K+ value's interpretation code,
flag and critical mark under :class:`~ecg_k.potassium.Thresholds`, inclusive boundaries.

Flags apply to the *reported* value (:func:`reported_value`, 2 decimals), so a reader never sees
"3.50 mmol/L, normal".
"""

from __future__ import annotations

import math

from ecg_k.potassium import DEFAULT_THRESHOLDS, Flag, Interpretation, Thresholds

REPORT_DECIMALS = 2
"""Decimals of a reported K+ estimate (conventions.md section 5: 1-2 decimals)."""


def _finite(k: float) -> float:
    """``k`` as a float, or a ValueError: a NaN would silently fall through every comparison as normal."""
    value = float(k)
    if not math.isfinite(value):
        raise ValueError(f"K+ must be a finite number in mmol/L, got {k!r}")
    return value


def reported_value(k: float) -> float:
    """The estimate as reported and flagged: rounded to :data:`REPORT_DECIMALS` decimals."""
    return round(_finite(k), REPORT_DECIMALS)


def interpretation_code(k: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Interpretation:
    """LL (< 2.5), L (2.5 <= K <= 3.5), N (3.5 < K < 5.5), H (5.5 <= K <= 6.5) or HH (> 6.5)."""
    value = _finite(k)
    if value < thresholds.critical_low:
        return Interpretation.CRITICAL_LOW
    if value <= thresholds.hypokalemia:
        return Interpretation.LOW
    if value < thresholds.hyperkalemia:
        return Interpretation.NORMAL
    if value <= thresholds.critical_high:
        return Interpretation.HIGH
    return Interpretation.CRITICAL_HIGH


def flag(k: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Flag:
    """Hypokalemia at K <= 3.5, hyperkalemia at K >= 5.5, else normal."""
    return interpretation_code(k, thresholds).flag


def is_critical(k: float, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> bool:
    """True below 2.5 or above 6.5 (strict, so 2.5 and 6.5 themselves are not critical)."""
    return interpretation_code(k, thresholds).critical
