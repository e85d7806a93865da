"""Cohort pairing on the real MIMIC demo tables, checked against an independent brute-force pairing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecg_k.data.cohort import COHORT_COLUMNS, CohortConfig, build_cohort
from ecg_k.data.labs import read_potassium_labs
from ecg_k.data.record_list import read_record_list
from ecg_k.data.splits import HELD_OUT
from ecg_k.potassium import label_bin
from ecg_k.synth.params import SynthParams
from ecg_k.synth.tables import make_plan, record_list


@pytest.fixture(scope="module")
def demo_tables(ecg_demo_root: Path, labs_v1_file: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    labs, _ = read_potassium_labs(labs_v1_file, [50971, 50822])
    return read_record_list(ecg_demo_root), labs


def brute_force_pairs(
    ecgs: pd.DataFrame, labs: pd.DataFrame, itemids: set[int], window_min: float, hemolysed: bool = True
) -> dict[int, float]:
    """study_id -> K+ of the nearest in-window lab (earlier lab on ties); a plain loop, no merge_asof.
    ``hemolysed=False`` leaves haemolysed labs out first."""
    pairs: dict[int, float] = {}
    labs = labs if hemolysed else labs[labs["comment"] != "hemolysed"]
    by_subject = dict(list(labs[labs["itemid"].isin(itemids)].groupby("subject_id")))
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
    ("itemids", "window", "expected", "hemolysed_lost"),
    [((50971,), 30, 46, 1), ((50971,), 60, 74, 1), ((50971,), 120, 139, 3), ((50971,), 240, 207, 3),
     ((50971, 50822), 30, 53, 1), ((50971, 50822), 60, 86, 1), ((50971, 50822), 120, 147, 3),
     ((50971, 50822), 240, 216, 2)],
)
@pytest.mark.parametrize("mode", ["keep", "exclude"])
def test_pair_counts_match_reference_and_brute_force(demo_tables, itemids, window, expected, hemolysed_lost,
                                                     mode) -> None:
    ecgs, labs = demo_tables
    config = CohortConfig(window_min=window, itemids=itemids, balanced_max_per_bin=0, hemolysed_labs=mode)
    result = build_cohort(ecgs, labs, config)
    cohort = result.cohort
    if mode == "exclude":
        expected -= hemolysed_lost
        assert result.skipped["hemolysed_lab"] == hemolysed_lost
        assert "hemolysed" not in set(cohort["k_comment"])
    assert len(cohort) == expected  # keep: real-data.md section 3
    reference = brute_force_pairs(ecgs, labs, set(itemids), window, hemolysed=mode == "keep")
    assert len(reference) == expected
    got = dict(zip(cohort["study_id"], cohort["k_value"].astype(float), strict=True))
    assert got.keys() == reference.keys()
    for study, value in reference.items():
        assert got[study] == pytest.approx(value, abs=1e-5)
    assert (cohort["delta_min"].abs() <= window).all()
    assert result.skipped["no_lab_in_window"] + result.skipped.get("hemolysed_lab", 0) == len(ecgs) - expected


def test_default_drops_the_one_demo_pair_labelled_by_a_haemolysed_lab(demo_tables) -> None:
    ecgs, labs = demo_tables
    exclude = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0))
    keep = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0, hemolysed_labs="keep"))
    assert (len(exclude.cohort), len(keep.cohort)) == (73, 74)
    lost = exclude.hemolysed_pairs
    assert lost[["study_id", "subject_id", "outcome"]].values.tolist() == [[100426874, 10019385, "removed"]]
    assert lost["hemolysed_k"].tolist() == [5.2] and lost["k_value"].isna().all()
    assert exclude.skipped["hemolysed_lab"] == 1
    assert set(keep.cohort["study_id"]) - set(exclude.cohort["study_id"]) == {100426874}
    kept = keep.cohort.set_index("study_id")
    assert kept.loc[100426874, "k_comment"] == "hemolysed" and kept.loc[100426874, "k_value"] == pytest.approx(5.2)
    assert keep.hemolysed_pairs["outcome"].tolist() == ["kept"]
    verified = exclude.cohort[exclude.cohort["k_comment"] == "verified"]
    assert verified["k_value"].tolist() == [pytest.approx(6.2)]  # a confirmed hyperkalemia stays a label
    assert exclude.cohort["k_comment"].value_counts().to_dict() == {"none": 72, "verified": 1}


def test_nearest_valid_lab_replaces_a_haemolysed_one() -> None:
    t0 = pd.Timestamp("2180-01-01 12:00")
    ecgs = pd.DataFrame({"subject_id": [1, 2, 3], "study_id": [10, 11, 12], "ecg_time": [t0] * 3,
                         "ecg_path": ["a", "b", "c"]})
    labs = pd.DataFrame({
        "subject_id": [1, 1, 2, 3, 3],
        "itemid": [50971] * 5,
        "charttime": [t0 + pd.Timedelta(minutes=5), t0 - pd.Timedelta(minutes=40), t0, t0, t0],
        "valuenum": [6.9, 4.4, 6.1, 7.0, 4.2],
        "comment": ["hemolysed", "none", "hemolysed", "hemolysed", "none"],  # subject 3: same time, two rows
    })
    exclude = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0))
    values = dict(zip(exclude.cohort["study_id"], exclude.cohort["k_value"].astype(float).round(1), strict=True))
    assert values == {10: 4.4, 12: 4.2}
    assert exclude.skipped == {"hemolysed_lab": 1}
    moves = exclude.hemolysed_pairs.set_index("study_id")
    assert moves["outcome"].to_dict() == {10: "moved", 11: "removed"}
    for mode in ("keep", "flag"):
        kept = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0, hemolysed_labs=mode)).cohort
        values = dict(zip(kept["study_id"], kept["k_value"].astype(float).round(1), strict=True))
        assert values == {10: 6.9, 11: 6.1, 12: 4.2}
        assert kept.set_index("study_id")["k_comment"].to_dict() == {10: "hemolysed", 11: "hemolysed", 12: "none"}


def test_unknown_hemolysed_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="hemolysed_labs"):
        CohortConfig(hemolysed_labs="drop")


def test_default_cohort_on_demo(demo_tables) -> None:
    ecgs, labs = demo_tables
    cohort = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0)).cohort
    assert list(cohort.columns) == list(COHORT_COLUMNS)
    assert cohort["subject_id"].nunique() == 45  # 46 in real-data.md, which counts the haemolysed pair's subject
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
    assert len(cohort) + result.discarded_holdout_pairs == 73
    assert sum(sum(row.values()) for row in result.per_bin.values()) == 73


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


def test_generated_cohort_keeps_no_haemolysed_label_by_default(tmp_path: Path) -> None:
    """Tables of the synthetic generator (MIMIC-worded comments, haemolysed draws near ECGs) read back with
    the project's readers: by default no pair is labelled by a haemolysed lab; ``keep`` pairs some."""
    plan = make_plan(3000, 5, SynthParams().population)
    plan.labevents.to_csv(tmp_path / "labevents.csv", index=False)
    record_list(plan.ecgs).to_csv(tmp_path / "record_list.csv", index=False)
    labs, stats = read_potassium_labs(tmp_path / "labevents.csv", [50971])
    ecgs = read_record_list(tmp_path)
    assert stats.comments["hemolysed"] > 20 and stats.comments["verified"] > 10
    assert stats.comments["unrecognised"] == 0
    exclude = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0))
    keep = build_cohort(ecgs, labs, CohortConfig(balanced_max_per_bin=0, hemolysed_labs="keep"))
    assert "hemolysed" not in set(exclude.cohort["k_comment"])
    assert (keep.cohort["k_comment"] == "hemolysed").sum() > 20
    outcomes = exclude.hemolysed_pairs["outcome"].value_counts()
    assert outcomes["moved"] > 10 and outcomes["removed"] > 5
    assert exclude.skipped["hemolysed_lab"] == outcomes["removed"]
    moved = exclude.hemolysed_pairs[exclude.hemolysed_pairs["outcome"] == "moved"]
    assert (moved["hemolysed_k"] > moved["k_value"]).all()  # haemolysis reads high; the redraw is lower
    assert len(keep.cohort) - len(exclude.cohort) == outcomes["removed"] - (
        keep.skipped.get("implausible_k", 0) - exclude.skipped.get("implausible_k", 0))
