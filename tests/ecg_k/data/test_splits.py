"""The subject-level split: every bin keeps a third in train, test_natural first, val/cal/test balanced and
capped, deterministic under the seed; on simulated cohorts shaped like MIMIC (repeat patients in the tails)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecg_k.data.splits import (
    CAL,
    DISCARDED,
    TEST,
    TEST_NATURAL,
    TRAIN,
    VAL,
    balanced_k,
    per_bin_counts,
    share_warnings,
    subject_split,
)


def _cohort(rng: np.random.Generator, n_subjects: int, extra: float, mean: float = 42.0,
            sd: float = 6.0) -> tuple[pd.Series, pd.Series]:
    """``1 + Poisson(extra)`` pairs per subject, each subject around its own K+ (bins of 0.1 mmol/L)."""
    counts = 1 + rng.poisson(extra, n_subjects)
    subjects = np.repeat(np.arange(n_subjects) + 10_000_000, counts)
    centre = np.repeat(rng.normal(mean, sd, n_subjects), counts)
    bins = np.clip(np.rint(centre + rng.normal(0, 2, len(subjects))), 15, 100).astype(np.int64)
    return pd.Series(subjects), pd.Series(bins)


def _with_dialysis_patients(rng: np.random.Generator) -> tuple[pd.Series, pd.Series]:
    """A MIMIC-like cohort plus repeat patients: 20 ECGs in one tail bin each (6.5 and 2.3 mmol/L)."""
    subjects, bins = _cohort(rng, 1500, 1.0)
    repeat_subjects = np.repeat([1, 2, 3], 20)
    repeat_bins = np.repeat([65, 65, 23], 20)
    few = np.array([65, 65, 23, 23, 66])  # a handful of other patients in the same tail bins
    return (pd.concat([subjects, pd.Series(repeat_subjects), pd.Series(np.arange(5) + 100)], ignore_index=True),
            pd.concat([bins, pd.Series(repeat_bins), pd.Series(few)], ignore_index=True))


def _check_invariants(subjects: pd.Series, bins: pd.Series, split: pd.Series) -> None:
    frame = pd.DataFrame({"subject": subjects, "bin": bins, "split": split})
    kept = frame[frame["split"] != DISCARDED]
    assert (kept.groupby("subject")["split"].nunique() == 1).all()  # no subject in two splits
    for name in (VAL, CAL, TEST):
        assert frame.loc[frame["split"] == name, "subject"].is_unique  # one pair per subject
    held = set(frame.loc[frame["split"].isin([VAL, CAL, TEST]), "subject"])
    assert set(frame.loc[frame["split"] == DISCARDED, "subject"]) <= held
    natural = set(frame.loc[frame["split"] == TEST_NATURAL, "subject"])
    assert (frame.loc[frame["subject"].isin(natural), "split"] == TEST_NATURAL).all()  # all their pairs
    for b, group in frame.groupby("bin"):
        n_b, train = len(group), int((group["split"] == TRAIN).sum())
        assert train == n_b if n_b < 3 else 3 * train >= n_b, (b, n_b, train)


def test_repeat_patients_in_a_tail_bin_never_empty_it() -> None:
    subjects, bins = _with_dialysis_patients(np.random.default_rng(0))
    result = subject_split(subjects, bins, seed=666)
    _check_invariants(subjects, bins, result.split)
    tail = result.split[bins == 65]
    assert (tail == TRAIN).sum() * 3 >= len(tail) and (tail == TRAIN).sum() >= 20  # a repeat patient stays


@settings(max_examples=60, deadline=None)
@given(n_subjects=st.integers(1, 200), extra=st.floats(0, 4), sd=st.floats(1, 15), seed=st.integers(0, 2**31),
       cap=st.one_of(st.none(), st.integers(0, 12)), natural=st.floats(0, 0.3), fraction=st.floats(0, 0.5))
def test_every_bin_keeps_a_third_in_train(n_subjects: int, extra: float, sd: float, seed: int, cap: int | None,
                                          natural: float, fraction: float) -> None:
    subjects, bins = _cohort(np.random.default_rng(seed), n_subjects, extra, sd=sd)
    result = subject_split(subjects, bins, seed=seed, natural_fraction=natural, max_fraction=fraction,
                           max_per_bin=cap)
    _check_invariants(subjects, bins, result.split)
    val_test = result.split.isin([VAL, CAL, TEST]).sum()
    if cap is None:
        assert val_test <= fraction * len(subjects)
    for b, k in result.k_per_bin.items():
        in_bin = result.split[bins == b]
        assert (in_bin.isin([VAL, CAL])).sum() <= k and (in_bin == TEST).sum() <= k
        assert cap is None or k <= cap
    assert share_warnings(per_bin_counts(bins.to_numpy(), result.split.to_numpy(), 0.1)) == []


def test_6000_ecgs_of_about_two_per_subject_keep_three_quarters_in_train() -> None:
    subjects, bins = _cohort(np.random.default_rng(5), 3000, 1.0)
    assert 5800 < len(subjects) < 6200
    split = subject_split(subjects, bins, seed=666).split
    counts = split.value_counts()
    assert counts[TRAIN] >= 0.75 * len(subjects)
    assert counts[VAL] + counts[CAL] + counts[TEST] <= 0.10 * len(subjects)
    assert abs(counts[VAL] + counts[CAL] - counts[TEST]) <= len(set(bins))  # balanced: at most one per bin
    assert abs(counts[VAL] - counts[CAL]) <= 1  # cal is half of the val draw
    natural_subjects = subjects[split == TEST_NATURAL].nunique()
    assert natural_subjects == round(0.05 * subjects.nunique())


def test_mimic_scale_cap_stays_at_100_per_bin() -> None:
    subjects, bins = _cohort(np.random.default_rng(2), 40_000, 1.0, sd=5)
    result = subject_split(subjects, bins, seed=666)
    assert result.cap == 100 and result.cap_source == "auto"
    common = result.split[bins == 42]
    assert (common == TEST).sum() == 100 and (common.isin([VAL, CAL])).sum() == 100


def test_split_is_deterministic_and_seed_dependent() -> None:
    subjects, bins = _cohort(np.random.default_rng(1), 800, 2.0)
    first = subject_split(subjects, bins, seed=666).split
    pd.testing.assert_series_equal(first, subject_split(subjects, bins, seed=666).split)
    assert not first.equals(subject_split(subjects, bins, seed=7).split)


def test_candidates_with_fewest_other_pairs_come_first() -> None:
    # Bin 40: ten single-pair subjects and ten subjects with 5 more pairs in bin 50; k = 3 per split.
    singles = [(s, 40) for s in range(10)]
    repeats = [(s, b) for s in range(10, 20) for b in (40, 50, 50, 50, 50, 50)]
    frame = pd.DataFrame(singles + repeats, columns=["subject", "bin"])
    result = subject_split(frame["subject"], frame["bin"], seed=3, natural_fraction=0.0, max_per_bin=3)
    drawn = frame.loc[result.split.isin([VAL, CAL, TEST]), "subject"]
    assert (drawn[frame["bin"] == 40] < 10).all()
    assert (result.split == DISCARDED).sum() == 6 * 5  # only the draw of bin 50 (repeat subjects only)


def test_explicit_cap_overrides_the_fraction() -> None:
    subjects, bins = _cohort(np.random.default_rng(4), 2000, 0.0)
    result = subject_split(subjects, bins, seed=666, max_per_bin=30)
    assert result.cap == 30 and result.cap_source == "max_per_bin"
    assert result.split.isin([VAL, CAL, TEST]).sum() > 0.10 * len(subjects)


def test_small_cohort_budget_spreads_single_pairs_over_the_range() -> None:
    k, cap = balanced_k(np.array([0, 1, 2, 3, 5, 9, 3, 1, 0]), budget=8)
    assert cap == 0 and k.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0]
    k, cap = balanced_k(np.array([0, 1, 2, 3, 5, 9, 3, 1, 0]), budget=100)
    assert cap == 9 and k.tolist() == [0, 1, 2, 3, 5, 9, 3, 1, 0]
    k, cap = balanced_k(np.array([4, 4, 4, 4]), budget=20)
    assert cap == 2 and k.tolist() == [3, 2, 2, 3]  # 16 pairs at cap 2, two bins get one more


@pytest.mark.parametrize("kwargs", [{"natural_fraction": 1.0}, {"max_fraction": -0.1}, {"max_per_bin": -1}])
def test_bad_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        subject_split(pd.Series([1, 2, 3]), pd.Series([40, 40, 40]), seed=0, **kwargs)


def test_per_bin_counts_and_share_warnings() -> None:
    bins = np.array([40, 40, 40, 40, 41, 41, 41, 50])
    split = np.array([TRAIN, VAL, TEST, DISCARDED, TRAIN, TEST_NATURAL, TEST_NATURAL, TRAIN])
    table = per_bin_counts(bins, split, 0.1)
    assert table["4.0"] == {TRAIN: 1, VAL: 1, CAL: 0, TEST: 1, TEST_NATURAL: 0, DISCARDED: 1}
    assert table["5.0"][TRAIN] == 1
    warnings = share_warnings(table)
    assert len(warnings) == 1 and "4.0" in warnings[0] and "1 of 4" in warnings[0]
    with pytest.raises(ValueError, match="unknown split"):
        per_bin_counts(bins[:1], np.array(["holdout"]), 0.1)
