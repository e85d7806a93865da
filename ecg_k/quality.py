"""Signal quality checks shared by ingestion and the service.

Each failure raises :class:`QualityError` with a machine-readable ``reason`` (the same strings are the
``skipped`` keys of a dataset manifest and the ``reason`` of a service 422), so a record is never
silently turned into a number.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class SkipReason(StrEnum):
    """Why a record or an ECG-K+ pair was left out."""

    MISSING_WAVEFORM = "missing_waveform"
    UNREADABLE = "unreadable"
    MISSING_LEAD = "missing_lead"
    UNIT = "unit"
    NAN = "nan"
    FLAT_LEAD = "flat_lead"
    SATURATION = "saturation"
    AMPLITUDE = "amplitude"
    UNSUPPORTED_RATE = "unsupported_rate"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    DUPLICATE_LEAD = "duplicate_lead"
    NO_LAB_IN_WINDOW = "no_lab_in_window"
    IMPLAUSIBLE_K = "implausible_k"
    HEMOLYSED_LAB = "hemolysed_lab"
    INVALID_ECG_TIME = "invalid_ecg_time"
    DUPLICATE_ECG = "duplicate_ecg"
    LOW_QUALITY = "low_quality"


class QualityError(ValueError):
    """An ECG that cannot be used; ``reason`` is a :class:`SkipReason`."""

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_finite(signal: np.ndarray, lead_names: tuple[str, ...]) -> None:
    """Reject NaN or infinite samples."""
    bad = ~np.isfinite(signal).all(axis=1)
    if bad.any():
        leads = [lead_names[i] for i in np.flatnonzero(bad)]
        raise QualityError(SkipReason.NAN, f"non-finite samples in lead(s) {leads}")


def check_not_flat(signal: np.ndarray, lead_names: tuple[str, ...], min_range_mv: float) -> None:
    """Reject leads whose 1st-99th percentile range is below ``min_range_mv`` (disconnected electrode)."""
    low, high = np.percentile(signal, [1.0, 99.0], axis=1)
    flat = (high - low) < min_range_mv
    if flat.any():
        leads = [lead_names[i] for i in np.flatnonzero(flat)]
        raise QualityError(SkipReason.FLAT_LEAD, f"flat lead(s) {leads} (range < {min_range_mv} mV)")


def _has_run(mask: np.ndarray, run: int) -> np.ndarray:
    """Per row of a 2-D boolean array: whether it holds ``run`` consecutive True values.

    Only rows with at least ``run`` True values can hold such a run; the running count is taken over those.
    """
    found = np.zeros(mask.shape[0], dtype=bool)
    candidates = np.flatnonzero(np.count_nonzero(mask, axis=1) >= run)
    if candidates.size:
        counts = np.zeros((candidates.size, mask.shape[1] + 1), dtype=np.int32)
        np.cumsum(mask[candidates], axis=1, out=counts[:, 1:])
        found[candidates] = ((counts[:, run:] - counts[:, :-run]) == run).any(axis=1)
    return found


def check_not_saturated(signal: np.ndarray, lead_names: tuple[str, ...], fs: float, max_run_s: float) -> None:
    """Reject leads that sit at their extreme value for ``max_run_s`` or longer (clipped amplifier).

    A real ECG never stays at its global maximum or minimum for tens of milliseconds; a clipped one
    draws a flat top at the rail. All leads are checked in one vectorised pass; the first saturated lead
    (its maximum before its minimum) is the one reported.
    """
    max_run = max(2, int(round(max_run_s * fs)))
    highs, lows = signal.max(axis=1), signal.min(axis=1)
    at_high = _has_run(signal >= (highs - 1e-9)[:, None], max_run)
    at_low = _has_run(signal <= (lows + 1e-9)[:, None], max_run)
    saturated = np.flatnonzero(at_high | at_low)
    if saturated.size:
        i = int(saturated[0])
        extreme = highs[i] if at_high[i] else lows[i]
        raise QualityError(
            SkipReason.SATURATION,
            f"lead {lead_names[i]} saturates at {extreme:.3f} mV for >= {max_run_s * 1000:.0f} ms",
        )


def check_amplitude(signal: np.ndarray, lead_names: tuple[str, ...], max_abs_mv: float) -> None:
    """Reject physiologically impossible amplitudes (after baseline removal)."""
    peak = np.abs(signal).max(axis=1)
    bad = peak > max_abs_mv
    if bad.any():
        leads = [lead_names[i] for i in np.flatnonzero(bad)]
        raise QualityError(SkipReason.AMPLITUDE, f"lead(s) {leads} exceed +/-{max_abs_mv} mV")
