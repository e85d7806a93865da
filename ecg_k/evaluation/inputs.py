"""The input and output contract of every metric: finite 1-D arrays in, JSON-safe values out (``None``,
never NaN, so a result goes straight into ``metrics.json``)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ecg_k.potassium import finite_1d

JSONValue = float | int | None

def validate_predictions(y: ArrayLike, y_hat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Labels and predictions as equal-length, non-empty, finite float64 arrays (else a ValueError)."""
    y_arr, y_hat_arr = finite_1d(y, "y"), finite_1d(y_hat, "y_hat")
    if y_arr.shape != y_hat_arr.shape:
        raise ValueError(f"length mismatch: {y_arr.size} labels vs {y_hat_arr.size} predictions")
    if y_arr.size == 0:
        raise ValueError("no samples: y and y_hat are empty")
    return y_arr, y_hat_arr


def none_if_nan(value: float) -> float | None:
    """``value`` as a float, or None where it is NaN/inf (JSON has no NaN)."""
    return None if not np.isfinite(value) else float(value)

