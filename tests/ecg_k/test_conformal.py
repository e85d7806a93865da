"""Label-conditional conformal intervals and event probabilities on a generated model that shrinks
toward the mean (the failure the estimate-grouped intervals had)."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_k.conformal import (
    calibrate,
    conformal_quantile,
    coverage_report,
    event_labels,
    min_calibration_pairs,
    reliability,
)
from ecg_k.evaluation.regions import shot_regions
from ecg_k.potassium import PLAUSIBLE_BINS, Thresholds

MEAN_K = 4.3


def _natural(rng: np.random.Generator, n: int) -> np.ndarray:
    """A hospital-like K+ distribution: mostly normal, thin tails, on the 0.1 grid (within the balanced draw's bins)."""
    return np.round(np.clip(rng.standard_t(5, n) * 0.55 + MEAN_K, 2.0, 7.5), 1)


def _balanced(rng: np.random.Generator, n: int) -> np.ndarray:
    """A balanced draw: uniform over the 0.1 bins from 2.0 to 7.5."""
    return rng.integers(20, 76, n) / 10


def _shrunk(rng: np.random.Generator, y: np.ndarray) -> np.ndarray:
    """Estimates pulled halfway to the mean, plus noise: rare K+ values end up among normal estimates."""
    return MEAN_K + 0.5 * (y - MEAN_K) + rng.normal(0, 0.35, y.size)


@pytest.fixture(scope="module")
def world() -> dict:
    rng = np.random.default_rng(7)
    train = _natural(rng, 40_000)
    y_cal, y_test, y_nat = _balanced(rng, 200_000), _balanced(rng, 40_000), _natural(rng, 100_000)
    return {"train": train, "regions": shot_regions(train), "cal": (y_cal, _shrunk(rng, y_cal)),
            "test": (y_test, _shrunk(rng, y_test)), "natural": (y_nat, _shrunk(rng, y_nat))}


@pytest.fixture(scope="module")
def calibration(world: dict):
    y, y_hat = world["cal"]
    return calibrate(y, y_hat, world["regions"], world["train"], Thresholds(), "cal")


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.arange(1, 20, dtype=float)  # n = 19: rank ceil(20 * 0.9) = 18
    assert conformal_quantile(scores, 0.9) == 18.0
    assert min_calibration_pairs(0.9) == 9 and min_calibration_pairs(0.95) == 19
    assert conformal_quantile(np.ones(8), 0.9) is None
    assert conformal_quantile(np.ones(9), 0.9) == 1.0


def test_every_true_region_is_covered_at_nominal_90(world: dict, calibration) -> None:
    y, y_hat = world["test"]
    report = coverage_report(calibration, y, y_hat, world["regions"], 0.9, n_boot=50)
    for name in ("hypo", "normal", "hyper", "many", "median", "few", "overall"):
        assert report[name]["n"] > 300, name
        assert report[name]["coverage"] >= 0.87, (name, report[name])
    assert report["hyper"]["coverage_ci95"][0] <= report["hyper"]["coverage"] <= report["hyper"]["coverage_ci95"][1]
    assert report["overall"]["mean_set_size"] <= report["overall"]["mean_hull_width"] + 0.1


def test_estimate_grouped_intervals_fail_the_same_check(world: dict) -> None:
    """The previous construction: residual quantiles of the calibration pairs per shot region of the estimate."""
    y_cal, y_hat_cal = world["cal"]
    y, y_hat = world["test"]
    regions = world["regions"]
    residual = y_cal - y_hat_cal
    group_cal, group_test = regions.region_of_estimates(y_hat_cal), regions.region_of_estimates(y_hat)
    low, high = np.empty_like(y_hat), np.empty_like(y_hat)
    for name in np.unique(group_test):
        q_low, q_high = np.quantile(residual[group_cal == name], [0.05, 0.95])
        members = group_test == name
        low[members], high[members] = y_hat[members] + q_low, y_hat[members] + q_high
    covered = (y >= low - 1e-9) & (y <= high + 1e-9)
    events = event_labels(y, Thresholds())
    true_region = regions.region_of(y)
    by_region = {"hyper": covered[events["hyper"]].mean(), "hypo": covered[events["hypo"]].mean(),
                 **{name: covered[true_region == name].mean() for name in ("many", "median", "few")}}
    assert min(by_region.values()) < 0.85, by_region
    assert covered.mean() >= 0.88  # marginal coverage looks fine, which is why nothing flagged it


def test_sets_are_segments_on_the_grid_and_widen_when_a_region_is_thin(world: dict, calibration) -> None:
    prediction = calibration.interval(6.0, 0.9)
    assert prediction.low <= 6.0 <= prediction.high
    assert all(a <= b for a, b in prediction.segments)
    thin = calibrate(np.array([4.0] * 30 + [6.0] * 3), np.array([4.1] * 30 + [5.0] * 3), world["regions"],
                     world["train"], Thresholds(), "val")
    assert "hyper" in thin.under_calibrated(0.9) and "hypo" in thin.under_calibrated(0.9)
    wide = thin.interval(4.1, 0.9)
    assert wide.low == PLAUSIBLE_BINS[0] / 10 and wide.high == PLAUSIBLE_BINS[-1] / 10
    with pytest.raises(ValueError, match="no 0.5 interval"):
        thin.interval(4.0, 0.5)


@pytest.mark.parametrize(("split", "prevalence"), [("test", "calibration"), ("natural", "natural")])
def test_event_probabilities_are_calibrated_per_decile(world: dict, calibration, split: str,
                                                       prevalence: str) -> None:
    y, y_hat = world[split]
    events = event_labels(y, Thresholds())
    for event in ("hyper", "hypo"):
        p = calibration.probability(event, y_hat, prevalence)
        rows = reliability(p, events[event], min_count=500)
        assert len(rows) >= 3
        for row in rows:
            assert abs(row["predicted"] - row["observed"]) <= 0.05, (event, row)
    p_hyper = calibration.probability("hyper", [3.0, 5.0, 7.0], prevalence)
    assert p_hyper[0] <= p_hyper[1] <= p_hyper[2]
    p_hypo = calibration.probability("hypo", [3.0, 5.0, 7.0], prevalence)
    assert p_hypo[0] >= p_hypo[1] >= p_hypo[2]


def test_calibration_round_trips_through_json(calibration) -> None:
    again = type(calibration).model_validate_json(calibration.model_dump_json())
    assert again == calibration
