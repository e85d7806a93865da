"""Cohort pairing on the real MIMIC demo tables, checked against an independent brute-force pairing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ecg_k.data.cohort import COHORT_COLUMNS, CohortConfig, build_cohort, label_bin
from ecg_k.data.labs import read_potassium_labs
from ecg_k.data.record_list import read_record_list
from ecg_k.data.splits import HELD_OUT


@pytest.fixture(scope="module")
def demo_tables(ecg_demo_root: Path, labs_v1_file: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    labs, _ = read_potassium_labs(labs_v1_file, [50971, 50822])
    return read_record_list(ecg_demo_root), labs


def brute_force_pairs(ecgs: pd.DataFrame, labs: pd.DataFrame, itemids: set[int], window_min: float) -> dict[int, float]:
    """study_id -> K+ of the nearest in-window lab (earlier lab on ties); a plain loop, no merge_asof."""
    pairs: dict[int, float] = {}
    by_subject = {s: g for s, g in labs[labs["itemid"].isin(itemids)].groupby("subject_id")}
    for ecg in ecgs.itertuples():
        candidates = by_subject.get(ecg.subject_id)
        if candidates is None:
            continue
        best = None
        for lab in candidates.itertuples():
            gap = abs((lab.charttime - ecg.ecg_time).total_seconds()) / 60
            if gap <= window_min and (best is None or gap < best[0] or (gap == best[0] and lab.charttime < best[1])):
                best = (gap, lab.charttime, lab.valuenum)
        if best is not None and 1.5 <= best[2] <= 10.0:
            pairs[ecg.study_id] = best[2]
    return pairs


@pytest.mark.parametrize(
    ("itemids", "window", "expected"),
    [((50971,), 30, 46), ((50971,), 60, 74), ((50971,), 120, 139), ((50971,), 240, 207),
     ((50971, 50822), 30, 53), ((50971, 50822), 60, 86), ((50971, 50822), 120, 147), ((50971, 50822), 240, 216)],
)
def test_pair_counts_match_reference_and_brute_force(demo_tables, itemids, window, expected) -> None:
    ecgs, labs = demo_tables
    result = build_cohort(ecgs, labs, CohortConfig(window_min=window, itemids=itemids, balanced_max_per_bin=0))
    cohort = result.cohort
    assert len(cohort) == expected  # real-data.md section 3
    reference = brute_force_pairs(ecgs, labs, set(itemids), window)
    assert len(reference) == expected
    got = dict(zip(cohort["study_id"], cohort["k_value"].astype(float), strict=True))
    assert got.keys() == reference.keys()
    for study, value in reference.items():
        assert got[study] == pytest.approx(value, abs=1e-5)
    assert (cohort["delta_min"].abs() <= window).all()
    assert result.skipped["no_lab_in_window"] == len(ecgs) - expected


def test_default_cohort_on_demo(demo_tables) -> None:
    ecgs, labs = demo_tables
    cohort = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0)).cohort
    assert list(cohort.columns) == list(COHORT_COLUMNS)
    assert cohort["subject_id"].nunique() == 46
    assert (cohort["k_value"] >= 5.5).sum() == 7 and (cohort["k_value"] <= 3.5).sum() == 10
    assert set(cohort["k_itemid"]) == {50971}
    assert cohort["study_id"].is_unique


def test_split_on_demo_is_subject_disjoint_and_balanced(demo_tables) -> None:
    ecgs, labs = demo_tables
    result = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=5))
    cohort = result.cohort
    owners = cohort.groupby("subject_id")["split"].nunique()
    assert (owners == 1).all()  # no subject in two splits
    assert set(cohort["split"]) <= {"train", *HELD_OUT}
    assert len(cohort) + result.discarded_holdout_pairs == 74
    assert sum(sum(row.values()) for row in result.per_bin.values()) == 74


def test_nearest_lab_wins_and_ties_go_to_the_earlier_lab() -> None:
    t0 = pd.Timestamp("2180-01-01 12:00")
    ecgs = pd.DataFrame({"subject_id": [1, 1, 2], "study_id": [10, 11, 12],
                         "ecg_time": [t0, t0 + pd.Timedelta(hours=5), t0], "ecg_path": ["a", "b", "c"]})
    labs = pd.DataFrame({
        "subject_id": [1, 1, 1, 1, 2, 2],
        "itemid": [50971] * 6,
        "charttime": [t0 - pd.Timedelta(minutes=20), t0 + pd.Timedelta(minutes=10),
                      t0 + pd.Timedelta(hours=5, minutes=-30), t0 + pd.Timedelta(hours=5, minutes=30),
                      t0 + pd.Timedelta(minutes=5), t0 - pd.Timedelta(minutes=1)],
        "valuenum": [3.0, 4.0, 5.0, 6.0, 12.0, np.nan],
    })
    result = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0))
    values = dict(zip(result.cohort["study_id"], result.cohort["k_value"].round(1), strict=True))
    assert values == {10: 4.0, 11: 5.0}
    assert result.skipped == {"implausible_k": 1}


def test_label_bin_never_truncates() -> None:
    assert label_bin(np.array([4.1, 3.5, 5.5, 2.9999999]), 0.1).tolist() == [41, 35, 55, 30]
