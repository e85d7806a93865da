"""ecg_k.potassium: the grid, the plausible range, the names, and cut-offs that follow the thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_k.evaluation.detection import clinical_metrics
from ecg_k.potassium import (
    CLINICAL_REGIONS,
    PLAUSIBLE_BINS,
    PLAUSIBLE_RANGE,
    REGIONS,
    Interpretation,
    ShotRegion,
    Thresholds,
    bin_value,
    clinical_region_of_bins,
    clip_to_grid,
    detection_cutoffs,
    event_names,
    grid_bins,
    label_bin,
    operating_points,
)

STRICT = Thresholds(hypokalemia=3.0, hyperkalemia=5.0, critical_low=2.0, critical_high=6.0)


def test_grid_bins_and_values() -> None:
    assert label_bin([4.1, 3.5, 5.5, 2.9999999, np.float32(4.1)]).tolist() == [41, 35, 55, 30, 41]
    assert bin_value([41, 35]).tolist() == [4.1, 3.5]
    assert grid_bins(np.array([4.1, 5.5], dtype=np.float32), "y").tolist() == [41, 55]
    with pytest.raises(ValueError, match="y must lie on the 0.1 mmol/L grid; 4.15 does not"):
        grid_bins([4.0, 4.15], "y")
    with pytest.raises(ValueError, match="labels contains 1 NaN"):
        grid_bins([4.0, np.nan], "labels")


def test_plausible_range_on_the_grid() -> None:
    assert PLAUSIBLE_RANGE == (1.5, 10.0)
    assert PLAUSIBLE_BINS[0] == 15 and PLAUSIBLE_BINS[-1] == 100 and PLAUSIBLE_BINS.size == 86
    assert clip_to_grid([0.3, 4.237, 14.0]).tolist() == [1.5, 4.2, 10.0]


def test_names_in_order() -> None:
    assert REGIONS == ("many", "median", "few") and [r.value for r in ShotRegion] == list(REGIONS)
    assert CLINICAL_REGIONS == ("hypo", "normal", "hyper")
    assert [code.value for code in Interpretation] == ["LL", "L", "N", "H", "HH"]


def test_clinical_regions_follow_the_thresholds() -> None:
    bins = label_bin([3.0, 3.1, 3.5, 3.6, 5.4, 5.5])
    assert clinical_region_of_bins(bins).tolist() == ["hypo", "hypo", "hypo", "normal", "normal", "hyper"]
    assert clinical_region_of_bins(bins, STRICT).tolist() == ["hypo", "normal", "normal", "normal", "hyper", "hyper"]


def test_cut_offs_are_derived_from_the_thresholds() -> None:
    assert [(c.key, c.op, c.value) for c in detection_cutoffs()] == [("hyper", ">=", 5.5), ("hypo", "<=", 3.5)]
    assert [c.key for c in operating_points()] == ["hyper_gt_6.0", "hyper_gt_6.5", "hypo_lt_3.0", "hypo_lt_2.5"]
    hyper, hypo = detection_cutoffs(STRICT)
    assert (hyper.value, hypo.value) == (5.0, 3.0)
    assert [c.describe() for c in operating_points(STRICT)] == ["K > 6", "K < 3", "K < 2"]  # 6.0 listed once
    assert event_names(STRICT) == {"hyper": "P(K⁺ ≥ 5)", "hypo": "P(K⁺ ≤ 3)"}


def test_detection_metrics_read_the_thresholds() -> None:
    y = np.array([3.0, 4.0, 5.0, 5.5])
    default = clinical_metrics(y, y, n_boot=0)
    strict = clinical_metrics(y, y, n_boot=0, thresholds=STRICT)
    assert (default["hyper"]["n_positive"], default["hypo"]["n_positive"]) == (1, 1)
    assert (strict["hyper"]["n_positive"], strict["hypo"]["n_positive"]) == (2, 1)
    assert strict["hyper"]["rule"] == "K >= 5"
