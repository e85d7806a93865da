"""DIR regression metrics (method.md section 7): MAE, MSE, GM and bMAE overall and per shot region, Pearson r,
and the per-bin error table. Predictions are never rounded: an exact zero error makes the GM zero, so zero
errors are counted."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from ecg_k.evaluation.inputs import JSONValue, none_if_nan, validate_predictions
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.potassium import REGIONS, bin_value, grid_bins

ALL_REGIONS: tuple[str, ...] = ("overall", *REGIONS)
"""The groups :func:`regression_metrics` reports: every sample, then each shot region."""


def _per_bin(errors: NDArray[np.float64], bins: NDArray[np.int64]) -> tuple[
        NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """(unique bins, sample count, mean error) per bin."""
    uniq, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    return uniq, counts, np.bincount(inverse, weights=errors, minlength=uniq.size) / counts


def _error_summary(errors: NDArray[np.float64], bins: NDArray[np.int64]) -> dict[str, JSONValue]:
    """MAE, MSE, GM and bMAE of one region; null values (not NaN) when the region is empty."""
    if errors.size == 0:
        return {"mae": None, "mse": None, "gm": None, "bmae": None, "n": 0, "zero_errors": 0}
    zero_errors = int(np.count_nonzero(errors == 0))
    return {
        "mae": float(errors.mean()),
        "mse": float(np.mean(errors**2)),
        "gm": 0.0 if zero_errors else float(stats.gmean(errors)),
        "bmae": float(_per_bin(errors, bins)[2].mean()),
        "n": int(errors.size),
        "zero_errors": zero_errors,
    }


def balanced_mae(y: ArrayLike, y_hat: ArrayLike) -> float:
    """bMAE: the mean over the label bins present of the per-bin MAE (model selection, method.md 5 and 7)."""
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    return float(_per_bin(np.abs(y_hat_arr - y_arr), grid_bins(y_arr, "y"))[2].mean())


def pearson(y: ArrayLike, y_hat: ArrayLike) -> float | None:
    """Pearson r of labels and predictions; None when fewer than 2 samples or either side is constant."""
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    if y_arr.size < 2 or np.ptp(y_arr) == 0 or np.ptp(y_hat_arr) == 0:
        return None
    return none_if_nan(stats.pearsonr(y_arr, y_hat_arr).statistic)


def regression_metrics(y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions) -> dict[str, Any]:
    """``{"overall"|"many"|"median"|"few": {"mae","mse","gm","bmae","n","zero_errors"}, "bmae", "pearson"}``.

    Region MAE is sample-weighted over the region's samples; bMAE is the mean of per-bin MAEs over the test
    label bins present (the model-selection metric).
    """
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    bins = grid_bins(y_arr, "y")
    errors = np.abs(y_hat_arr - y_arr)
    region = regions.region_of_bins(bins)
    out: dict[str, Any] = {"overall": _error_summary(errors, bins)}
    for name in REGIONS:
        mask = region == name
        out[name] = _error_summary(errors[mask], bins[mask])
    out["bmae"] = out["overall"]["bmae"]
    out["pearson"] = pearson(y_arr, y_hat_arr)
    return out


def per_bin_errors(y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions) -> pd.DataFrame:
    """One row per test label bin: ``bin, k, n, mae, region, train_count`` (sorted by K+)."""
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    uniq, counts, mae = _per_bin(np.abs(y_hat_arr - y_arr), grid_bins(y_arr, "y"))
    return pd.DataFrame({
        "bin": uniq,
        "k": bin_value(uniq),
        "n": counts,
        "mae": mae,
        "region": regions.region_of_bins(uniq),
        "train_count": regions.counts_of_bins(uniq),
    })

