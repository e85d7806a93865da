"""The data behind the evaluation plots, computed once for both drawings: the run report's matplotlib
Displays (``training.evaluation_report``) and the dashboard's Vega-Lite charts (``dashboard.charts``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ecg_k.evaluation.inputs import validate_predictions
from ecg_k.evaluation.regions import ShotRegions
from ecg_k.potassium import LABEL_STEP, REGIONS, bin_value, finite_1d, label_bin


def region_spans(regions: ShotRegions, tested_bins: ArrayLike) -> pd.DataFrame:
    """Every 0.1 bin from the lowest to the highest training or tested bin: ``bin, k, low, high, region,
    train_count`` (for shading the shot regions and drawing the training counts)."""
    known = np.fromiter(regions.train_counts, dtype=np.int64)
    tested = np.asarray(tested_bins, dtype=np.int64)
    bins = np.arange(min(known.min(), tested.min()), max(known.max(), tested.max()) + 1)
    k = bin_value(bins)
    return pd.DataFrame({"bin": bins, "k": k, "low": k - LABEL_STEP / 2, "high": k + LABEL_STEP / 2,
                         "region": regions.region_of_bins(bins), "train_count": regions.counts_of_bins(bins)})


def label_prediction_counts(y: ArrayLike, y_hat: ArrayLike) -> pd.DataFrame:
    """Counts of labels and of predictions per 0.1 mmol/L bin (the paper's Fig. 1b/1c): ``k, series, n``
    with series ``label`` or ``prediction``."""
    frames = []
    for series, values, name in (("label", y, "y"), ("prediction", y_hat, "y_hat")):
        bins, counts = np.unique(label_bin(finite_1d(values, name)), return_counts=True)
        frames.append(pd.DataFrame({"k": bin_value(bins), "series": series, "n": counts}))
    return pd.concat(frames, ignore_index=True)


def sorted_region_errors(y: ArrayLike, y_hat: ArrayLike, regions: ShotRegions, region: str) -> NDArray[np.float64]:
    """Absolute errors of the samples whose label lies in shot ``region``, sorted ascending (paper Fig. 5)."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; expected one of {REGIONS}")
    y_arr, y_hat_arr = validate_predictions(y, y_hat)
    return np.sort(np.abs(y_hat_arr - y_arr)[regions.region_of(y_arr) == region])
