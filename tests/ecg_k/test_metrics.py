"""ecg_k.evaluation on tiny hand-computed cases: shot regions under both rules, DIR errors, clinical cut-offs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from ecg_k.evaluation.detection import _Detections, clinical_metrics
from ecg_k.evaluation.regions import ShotRule, shot_regions
from ecg_k.evaluation.regression import per_bin_errors, regression_metrics
from ecg_k.evaluation.report import evaluate_predictions
from ecg_k.potassium import Cutoff, detection_cutoffs, operating_points

# Training histogram built to sit on both rules' boundaries: count rule many > 100, few < 20;
# relative rule (n_max = 150) many > 75, few < 22.5.
TRAIN_COUNTS = {4.0: 150, 4.1: 101, 4.2: 100, 4.3: 20, 4.4: 19, 4.5: 1}


def histogram(counts: dict[float, int]) -> np.ndarray:
    return np.repeat(np.array(list(counts), dtype=np.float32), list(counts.values()))


TRAIN = histogram(TRAIN_COUNTS)

# Errors 0.5, 1.0 (bin 4.0), 0.3 (4.2), 0.2, 0.6 (4.4).
Y = np.array([4.0, 4.0, 4.2, 4.4, 4.4])
Y_HAT = np.array([4.5, 3.0, 4.5, 4.2, 5.0])


# ------------------------------------------------------------------------------------------ shot regions


def test_count_rule_regions_with_boundaries_and_zero_shot() -> None:
    regions = shot_regions(TRAIN, "count")
    tags = regions.region_of([4.0, 4.1, 4.2, 4.3, 4.4, 4.5, 6.0])
    assert tags.tolist() == ["many", "many", "median", "median", "few", "few", "few"]
    assert regions.n_max == 150 and regions.cuts == (100, 20)


def test_relative_rule_regions_on_the_same_histogram() -> None:
    regions = shot_regions(TRAIN)
    assert regions.rule == "relative" and regions.cuts == pytest.approx((75, 22.5))
    tags = regions.region_of([4.0, 4.1, 4.2, 4.3, 4.4, 4.5, 2.0])
    assert tags.tolist() == ["many", "many", "many", "few", "few", "few", "few"]


def test_relative_rule_boundaries_are_median() -> None:
    regions = shot_regions(histogram({4.0: 100, 4.1: 51, 4.2: 50, 4.3: 15, 4.4: 14}))
    tags = regions.region_of([4.0, 4.1, 4.2, 4.3, 4.4])
    assert tags.tolist() == ["many", "many", "median", "median", "few"]


def test_thresholds_are_configurable() -> None:
    regions = shot_regions(TRAIN, "count", many=150, few=101)
    assert regions.region_of([4.0, 4.1, 4.2]).tolist() == ["median", "median", "few"]


def test_float_artefacts_fall_in_the_right_bin() -> None:
    regions = shot_regions(TRAIN, "count")
    assert regions.counts_of_bins([41]).tolist() == [101]
    assert regions.region_of([41 * 0.1, np.float32(4.1), 4.1]).tolist() == ["many"] * 3


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        ([4.0, 4.05], {}, "grid"),
        ([4.0, np.nan], {}, "NaN"),
        ([], {}, "empty"),
        ([4.0], {"rule": "quantile"}, "unknown shot rule"),
        ([4.0], {"many": 0.1, "few": 0.5}, "few <= many"),
    ],
)
def test_shot_regions_rejects_bad_input(labels: list[float], kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shot_regions(labels, **kwargs)


def test_regions_to_dict_lists_bins_and_counts() -> None:
    saved = shot_regions(TRAIN, "count").to_dict()
    assert saved["train_counts"] == {"4.0": 150, "4.1": 101, "4.2": 100, "4.3": 20, "4.4": 19, "4.5": 1}
    assert saved["bins"] == {"many": [4.0, 4.1], "median": [4.2, 4.3], "few": [4.4, 4.5]}
    json.dumps(saved, allow_nan=False)


# ------------------------------------------------------------------------------------ regression metrics


def test_regression_metrics_by_hand_count_rule() -> None:
    m = regression_metrics(Y, Y_HAT, shot_regions(TRAIN, "count"))
    assert m["overall"]["mae"] == pytest.approx(2.6 / 5)
    assert m["overall"]["mse"] == pytest.approx(1.74 / 5)
    assert m["overall"]["gm"] == pytest.approx((0.5 * 1.0 * 0.3 * 0.2 * 0.6) ** 0.2)
    assert m["overall"]["n"] == 5 and m["overall"]["zero_errors"] == 0
    assert m["bmae"] == pytest.approx((0.75 + 0.3 + 0.4) / 3)
    assert m["many"] == pytest.approx({"mae": 0.75, "mse": 0.625, "gm": 0.5**0.5, "bmae": 0.75, "n": 2,
                                       "zero_errors": 0})
    assert m["median"]["mae"] == pytest.approx(0.3) and m["median"]["n"] == 1
    assert m["few"]["mae"] == pytest.approx(0.4) and m["few"]["gm"] == pytest.approx(0.12**0.5)
    assert m["pearson"] == pytest.approx(np.corrcoef(Y, Y_HAT)[0, 1])


def test_empty_region_gives_nulls_not_nan() -> None:
    m = regression_metrics(Y, Y_HAT, shot_regions(TRAIN))  # relative: 4.0 and 4.2 many, 4.4 few
    assert m["median"] == {"mae": None, "mse": None, "gm": None, "bmae": None, "n": 0, "zero_errors": 0}
    assert m["many"]["n"] == 3 and m["few"]["n"] == 2
    json.dumps(m, allow_nan=False)


def test_exact_zero_error_makes_gm_zero_and_is_counted() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = regression_metrics([4.0, 4.1, 4.1], [4.0, 4.6, 4.1], shot_regions(TRAIN, "count"))
    assert m["overall"]["gm"] == 0.0 and m["overall"]["zero_errors"] == 2
    assert m["overall"]["mae"] == pytest.approx(0.5 / 3)


def test_pearson_is_null_for_constant_predictions() -> None:
    assert regression_metrics(Y, np.full(5, 4.2), shot_regions(TRAIN))["pearson"] is None


def test_per_bin_errors_table() -> None:
    table = per_bin_errors(Y, Y_HAT, shot_regions(TRAIN, "count"))
    assert table.columns.tolist() == ["bin", "k", "n", "mae", "region", "train_count"]
    assert table["k"].tolist() == [4.0, 4.2, 4.4]
    assert table["n"].tolist() == [2, 1, 2]
    assert table["mae"].to_numpy() == pytest.approx([0.75, 0.3, 0.4])
    assert table["region"].tolist() == ["many", "median", "few"]
    assert table["train_count"].tolist() == [150, 100, 19]


@pytest.mark.parametrize(
    ("y", "y_hat", "message"),
    [
        ([4.0, 4.1], [4.0], "length mismatch"),
        ([4.0, 4.1], [4.0, np.nan], "y_hat contains 1 NaN"),
        ([], [], "no samples"),
        ([[4.0]], [[4.0]], "1-D"),
        ([4.0, 4.12], [4.0, 4.1], "grid"),
    ],
)
def test_regression_metrics_rejects_bad_input(y: list, y_hat: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        regression_metrics(y, y_hat, shot_regions(TRAIN))


# -------------------------------------------------------------------------------------- clinical metrics


def test_boundaries_are_inclusive() -> None:
    y = [3.4, 35 * 0.1, 3.6, 5.4, 5.5, 5.6]  # 35 * 0.1 = 3.5000000000000004 is still hypokalemia
    c = clinical_metrics(y, [3.4, 3.5, 3.6, 5.4, 5.5, 5.6], n_boot=0)
    for key in ("hyper", "hypo"):
        assert c[key]["n_positive"] == 2 and c[key]["prevalence"] == pytest.approx(2 / 6)
        assert [c[key][s] for s in ("sensitivity", "specificity", "ppv", "npv", "auroc")] == [1.0] * 5
    assert c["hyper"]["rule"] == "K >= 5.5" and c["hypo"]["rule"] == "K <= 3.5"


def test_detection_metrics_by_hand() -> None:
    y = np.array([5.5, 6.0, 5.6, 4.0, 4.2, 5.0, 3.0, 3.5])
    y_hat = np.array([5.6, 5.0, 5.5, 5.5, 4.0, 4.1, 3.6, 3.4])
    c = clinical_metrics(y, y_hat, n_boot=0)
    hyper, hypo = c["hyper"], c["hypo"]  # hyper: tp 2, fn 1, fp 1, tn 4; hypo: tp 1, fn 1, fp 0, tn 6
    assert (hyper["sensitivity"], hyper["specificity"]) == pytest.approx((2 / 3, 4 / 5))
    assert (hyper["ppv"], hyper["npv"]) == pytest.approx((2 / 3, 4 / 5))
    hypo_stats = (hypo["sensitivity"], hypo["specificity"], hypo["ppv"], hypo["npv"])
    assert hypo_stats == pytest.approx((0.5, 1, 1, 6 / 7))
    assert hyper["auroc"] == pytest.approx(roc_auc_score(y >= 5.5, y_hat))
    assert hypo["auroc"] == pytest.approx(roc_auc_score(y <= 3.5, -y_hat))
    assert hyper["n"] == 8 and hyper["ci95"]["auroc"] is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(20, 75), st.integers(20, 75)), min_size=2, max_size=40),
)
def test_auroc_equals_sklearn_with_ties(pairs: list[tuple[int, int]]) -> None:
    y = np.array([p[0] for p in pairs]) / 10
    y_hat = np.array([p[1] for p in pairs]) / 10  # on the grid: many ties
    c = clinical_metrics(y, y_hat, n_boot=0)
    for key, truth, score in (("hyper", y >= 5.5, y_hat), ("hypo", y <= 3.5, -y_hat)):
        if truth.all() or not truth.any():
            assert c[key]["auroc"] is None
        else:
            assert c[key]["auroc"] == pytest.approx(roc_auc_score(truth, score))


def test_weighted_statistics_equal_a_repeated_sample() -> None:
    rng = np.random.default_rng(5)
    y = np.round(rng.uniform(2.5, 6.5, 50), 1)
    y_hat = np.round(y + rng.normal(0, 0.5, 50), 1)
    weights = rng.integers(0, 4, 50)
    cutoffs = (detection_cutoffs()[0], *operating_points())
    weighted = _Detections(cutoffs, np.rint(y * 10).astype(int), y_hat).stats(weights[None].astype(float))
    repeated = clinical_metrics(
        np.repeat(y, weights), np.repeat(y_hat, weights), n_boot=0, extra=operating_points()
    )
    for j, cutoff in enumerate(cutoffs):
        for name, values in weighted.items():
            expected = repeated[cutoff.key][name]
            assert np.isnan(values[0, j]) if expected is None else values[0, j] == pytest.approx(expected)


@pytest.fixture(scope="module")
def noisy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.round(rng.uniform(2.0, 7.5, 300), 1)
    return y, y + rng.normal(0, 0.6, y.size)


def test_cis_contain_the_point_and_are_seeded(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    first = clinical_metrics(*noisy, n_boot=300, seed=3)
    assert first == clinical_metrics(*noisy, n_boot=300, seed=3)
    assert first != clinical_metrics(*noisy, n_boot=300, seed=4)
    for key in ("hyper", "hypo"):
        assert first[key]["n_boot"] == 300
        for name, (low, high) in first[key]["ci95"].items():
            assert low <= first[key][name] <= high


def test_resamples_missing_a_class_are_skipped() -> None:
    y = np.r_[np.full(29, 4.2), 6.0]
    c = clinical_metrics(y, np.r_[np.full(29, 4.3), 5.8], n_boot=200)
    low, high = c["hyper"]["ci95"]["sensitivity"]
    assert low == high == 1.0  # ~ 1/3 of resamples hold no positive and are left out, not counted as NaN
    assert c["hyper"]["ci95"]["auroc"] == [1.0, 1.0]


def test_undefined_statistics_are_null() -> None:
    c = clinical_metrics([4.0, 4.2, 4.4], [4.1, 4.1, 4.3], n_boot=50)
    hyper = c["hyper"]
    assert hyper["auroc"] is None and hyper["sensitivity"] is None and hyper["ppv"] is None
    assert hyper["specificity"] == 1.0 and hyper["npv"] == 1.0 and hyper["prevalence"] == 0.0
    assert hyper["ci95"]["auroc"] is None and hyper["ci95"]["specificity"] == [1.0, 1.0]
    json.dumps(c, allow_nan=False)


def test_extra_thresholds_are_strict() -> None:
    y = [6.0, 6.1, 6.5, 6.6, 3.0, 2.9, 2.5, 2.4]
    c = clinical_metrics(y, y, n_boot=0, extra=operating_points())
    assert list(c) == ["hyper", "hypo", "hyper_gt_6.0", "hyper_gt_6.5", "hypo_lt_3.0", "hypo_lt_2.5"]
    assert [c[key]["n_positive"] for key in c] == [4, 4, 3, 1, 3, 1]
    assert c["hyper_gt_6.5"]["rule"] == "K > 6.5"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n_boot": -1}, "n_boot"), ({"extra": (Cutoff("hyper", ">", 6.0),)}, "duplicate")],
)
def test_clinical_metrics_rejects_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        clinical_metrics(Y, Y_HAT, **kwargs)


def test_cutoff_must_be_on_the_grid() -> None:
    with pytest.raises(ValueError, match="grid"):
        Cutoff("odd", ">=", 5.55)


# --------------------------------------------------------------------------------- evaluate_predictions


def predictions_frame(y: np.ndarray, y_hat: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"split": ["test"] * y.size + ["val"] * y.size + ["train"],
                         "y": np.r_[y, y, 4.0], "y_hat": np.r_[y_hat, y_hat[::-1], 4.1]})


@pytest.mark.parametrize(("rule", "other"), [("relative", "by_count_rule"), ("count", "by_relative_rule")])
def test_evaluate_predictions_has_the_design_shape(
    noisy: tuple[np.ndarray, np.ndarray], rule: str, other: str
) -> None:
    train = np.round(np.clip(np.random.default_rng(1).normal(4.2, 0.5, 2000), 1.5, 10), 1)
    regions = ShotRule(name=rule).regions(train)
    m = evaluate_predictions(predictions_frame(*noisy), regions, "vanilla", n_boot=50)
    assert {"test", "val", "shot_rule", "method"} <= set(m) and "train" not in m
    assert (m["shot_rule"], m["method"]) == (rule, "vanilla")
    for split in ("test", "val"):
        s = m[split]
        for region in ("overall", "many", "median", "few"):
            assert {"mae", "mse", "gm", "n"} <= set(s[region])
        assert {"many", "median", "few"} == set(s[other])
        for key in ("hyper", "hypo"):
            assert {"auroc", "sensitivity", "specificity", "ppv", "npv", "prevalence", "n"} <= set(s[key])
        assert isinstance(s["bmae"], float) and isinstance(s["pearson"], float)
        assert s["overall"]["n"] == noisy[0].size
    json.dumps(m, allow_nan=False)
    assert m["shot_regions"][rule] == regions.to_dict() and m["n_train"] == train.size
    other_rule = other.removeprefix("by_").removesuffix("_rule")
    assert m["shot_regions"][other_rule] == shot_regions(train, other_rule).to_dict()  # type: ignore[arg-type]


def test_shot_rule_fills_the_rules_defaults_and_keeps_custom_cut_offs() -> None:
    assert ShotRule().regions(TRAIN) == shot_regions(TRAIN)
    assert ShotRule(name="count").cuts == (100.0, 20.0)
    custom = ShotRule(name="count", many=150, few=101).regions(TRAIN)
    assert (custom.many, custom.few) == (150.0, 101.0)
    assert list(custom.region_of([4.0, 4.1, 4.2])) == ["median", "median", "few"]
    with pytest.raises(ValueError, match="few <= many"):
        ShotRule(few=0.6)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        ShotRule(many=-1)
    with pytest.raises(ValueError, match="relative"):
        ShotRule(name="quantile")  # type: ignore[arg-type]


def test_evaluate_predictions_errors(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    frame = predictions_frame(*noisy)
    with pytest.raises(ValueError, match="no rows for split"):
        evaluate_predictions(frame[frame["split"] != "val"], shot_regions(TRAIN), "m")
    with pytest.raises(ValueError, match="lack column"):
        evaluate_predictions(frame.drop(columns="y_hat"), shot_regions(TRAIN), "m")
    frame.loc[frame.index[-2], "y_hat"] = np.nan  # a val row
    with pytest.raises(ValueError, match="split 'val': y_hat contains 1 NaN"):
        evaluate_predictions(frame, shot_regions(TRAIN), "m", n_boot=0)


def test_balanced_mae_averages_bins_not_samples() -> None:
    from ecg_k.evaluation.regression import balanced_mae

    y = np.array([4.0, 4.0, 4.0, 6.0])
    y_hat = np.array([4.1, 4.1, 4.1, 7.0])
    assert balanced_mae(y, y_hat) == pytest.approx((0.1 + 1.0) / 2)


def test_error_cis_bootstrap_subjects_and_hold_the_point_estimates() -> None:
    """metrics.json: mae_ci95/gm_ci95 per region and bmae_ci95 per split, resampling subjects."""
    from ecg_k.evaluation.bootstrap import bootstrap_errors

    rng = np.random.default_rng(0)
    train = np.round(np.concatenate([rng.normal(4.2, 0.3, 3000), rng.uniform(2.5, 7.0, 60)]), 1)
    y = np.round(rng.uniform(2.5, 7.0, 300), 1)
    y_hat = y + rng.normal(0, 0.4, 300)
    subjects = np.repeat(np.arange(100), 3)
    frame = pd.DataFrame({"split": "test", "y": y, "y_hat": y_hat, "subject_id": subjects})
    metrics = evaluate_predictions(frame, shot_regions(train), "m", n_boot=300, splits=("test",))["test"]
    assert metrics["ci_unit"] == "subject"
    for region in ("overall", "many", "median", "few"):
        stats = metrics[region]
        if stats["n"]:
            assert stats["mae_ci95"][0] < stats["mae"] < stats["mae_ci95"][1]
            assert stats["gm_ci95"][0] < stats["gm"] < stats["gm_ci95"][1]
    assert metrics["bmae_ci95"][0] < metrics["bmae"] < metrics["bmae_ci95"][1]
    no_subjects = evaluate_predictions(frame.drop(columns="subject_id"), shot_regions(train), "m", n_boot=300,
                                       splits=("test",))
    assert no_subjects["test"]["ci_unit"] == "sample"

    regions = shot_regions(train)
    # three identical copies per subject: resampling subjects keeps the copies together, so the CI is as wide
    # as that of the 100 distinct subjects, wider than a sample bootstrap that treats 300 copies as independent
    copies = np.repeat(y[::3], 3), np.repeat(y_hat[::3], 3)
    by_subject = bootstrap_errors(copies[0], {"a": copies[1]}, regions, subjects, 2000, seed=1)["a"]["overall.mae"]
    by_sample = bootstrap_errors(copies[0], {"a": copies[1]}, regions, None, 2000, seed=1)["a"]["overall.mae"]
    assert np.std(by_subject) > 1.4 * np.std(by_sample)
    # paired: the same estimates differ by exactly 0 on every resample; a zero error drawn gives GM 0
    boot = bootstrap_errors(y, {"a": y_hat, "b": y_hat.copy(), "c": y.copy()}, regions, subjects, 50)
    assert np.array_equal(boot["a"]["bmae"] - boot["b"]["bmae"], np.zeros(50))
    assert np.all(boot["c"]["overall.gm"] == 0)
