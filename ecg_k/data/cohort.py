"""ECG <-> K+ pairing and the ECG-K-DIR split, as a pure function of two DataFrames.

Rule (DESIGN.md defaults): for each ECG take the nearest K+ lab of the same subject within
+/- ``window_min`` (labs with no numeric value never count; on an exact tie in distance the earlier lab
wins); one pair per ECG; a nearest lab outside ``[k_min, k_max]`` skips the ECG as ``implausible_k`` rather
than falling back to a farther lab. Labels are put on the 0.1 mmol/L grid. Then the subject-level split of
:mod:`ecg_k.data.splits` (test_natural, then balanced val/cal/test with train keeping a third of every bin).

Haemolysed labs (comment class ``hemolysed``, :mod:`ecg_k.data.lab_comments`) are falsely high. Under
``hemolysed_labs="exclude"`` (the default) they never label an ECG: the nearest valid non-haemolysed lab in
the window wins, and an ECG left with none is skipped as ``hemolysed_lab``; each such ECG is reported as
``removed`` or ``moved`` (to another lab). ``keep`` pairs as if comments did not exist; ``flag`` pairs as
``keep`` and reports the pairs a haemolysed lab labels. Either way ``k_comment`` records the class of the
lab that labels each pair.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ecg_k.data.lab_comments import LabComment
from ecg_k.data.splits import DISCARDED, MAX_PER_BIN, SPLITS, per_bin_counts, subject_split
from ecg_k.potassium import LABEL_STEP, MAX_LABEL, MIN_LABEL, label_bin
from ecg_k.quality import SkipReason

COHORT_COLUMNS = (
    "subject_id", "study_id", "ecg_time", "ecg_path", "k_value", "k_time", "k_itemid", "delta_min", "split",
    "k_comment",
)
HemolysedLabs = Literal["exclude", "keep", "flag"]
HEMOLYSED_LAB_MODES: tuple[HemolysedLabs, ...] = ("exclude", "keep", "flag")
REMOVED, MOVED = "removed", "moved"


class CohortConfig(BaseModel):
    """Pairing and split parameters; saved in the dataset manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_min: float = Field(default=60.0, gt=0, description="Pairing window, minutes either side of the ECG.")
    itemids: tuple[int, ...] = Field(default=(50971,), min_length=1, description="K+ lab itemids (serum).")
    k_min: float = Field(default=MIN_LABEL, description="Lowest plausible K+ (mmol/L).")
    k_max: float = Field(default=MAX_LABEL, description="Highest plausible K+ (mmol/L).")
    label_step: float = Field(default=LABEL_STEP, gt=0, description="Label grid (mmol/L).")
    natural_test_fraction: float = Field(
        default=0.05, ge=0, lt=1, description="Share of subjects in test_natural (drawn first, at random).")
    balanced_max_fraction: float = Field(
        default=0.10, ge=0, lt=1, description="Val + test of the balanced draw take at most this share of pairs.")
    balanced_max_per_bin: int | None = Field(
        default=None, ge=0,
        description=f"Cap on val (and on test) pairs per bin; None: the largest cap <= {MAX_PER_BIN} that "
                    "keeps val + test within balanced_max_fraction.")
    seed: int = Field(default=666, description="Seed of the split (the DIR template's 666).")
    hemolysed_labs: HemolysedLabs = Field(
        default="exclude",
        description="Haemolysed labs: exclude (never a label), keep, or flag (keep and report them).",
    )

    @model_validator(mode="after")
    def _range(self) -> CohortConfig:
        if not self.k_min < self.k_max:
            raise ValueError(f"k_min {self.k_min} must be below k_max {self.k_max}")
        return self


@dataclass
class CohortResult:
    """The kept pairs (``COHORT_COLUMNS``, cohort order: split, then ecg_time, study_id) and the tallies:
    per 0.1 bin label, pairs per split and discarded (:func:`ecg_k.data.splits.per_bin_counts`)."""

    cohort: pd.DataFrame
    skipped: dict[str, int] = field(default_factory=dict)
    discarded_holdout_pairs: int = 0
    k_per_bin: dict[int, int] = field(default_factory=dict)
    hemolysed_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    """ECGs whose nearest lab was haemolysed: ``study_id, subject_id, hemolysed_k, hemolysed_time, outcome``
    (``removed``, ``moved``; under ``keep``/``flag``: ``kept``) and ``k_value`` of the lab labelling it now."""
    per_bin: dict[str, dict[str, int]] = field(default_factory=dict)
    cap_per_bin: int = 0
    cap_source: str = "auto"


def _nearest_lab(ecgs: pd.DataFrame, labs: pd.DataFrame, window: pd.Timedelta) -> pd.DataFrame:
    """For each ECG row the nearest lab within the window (NaN columns when none)."""
    left = ecgs.sort_values("ecg_time", kind="stable")
    right = labs.rename(columns={"charttime": "k_time", "valuenum": "k_value", "itemid": "k_itemid",
                                 "comment": "k_comment"})
    right = right.sort_values("k_time", kind="stable")
    merged = {}
    for direction in ("backward", "forward"):
        merged[direction] = pd.merge_asof(
            left, right, left_on="ecg_time", right_on="k_time", by="subject_id",
            direction=direction, tolerance=window,
        ).set_index("_row")
    back, fwd = merged["backward"].sort_index(), merged["forward"].sort_index()
    back_gap = (back["ecg_time"] - back["k_time"]).abs()
    fwd_gap = (fwd["k_time"] - fwd["ecg_time"]).abs()
    use_fwd = fwd_gap.notna() & (back_gap.isna() | (fwd_gap < back_gap))
    best = back.copy()
    for col in ("k_time", "k_value", "k_itemid", "k_comment"):
        best.loc[use_fwd, col] = fwd.loc[use_fwd, col]
    return best


def _dedupe_labs(labs: pd.DataFrame, itemids: tuple[int, ...]) -> pd.DataFrame:
    """One lab per (subject, charttime): the first configured itemid wins, then the lower value."""
    priority = {item: rank for rank, item in enumerate(itemids)}
    ranked = labs.assign(_rank=labs["itemid"].map(priority))
    ranked = ranked.sort_values(["subject_id", "charttime", "_rank", "valuenum"], kind="stable")
    return ranked.drop_duplicates(["subject_id", "charttime"], keep="first").drop(columns="_rank")


def build_cohort(ecgs: pd.DataFrame, labs: pd.DataFrame, config: CohortConfig) -> CohortResult:
    """Pair ECGs with K+ labs and split them.

    ``ecgs``: ``subject_id, study_id, ecg_time, ecg_path``; ``labs``: ``subject_id, itemid, charttime,
    valuenum`` and optionally ``comment`` (a :class:`LabComment` value; ``none`` when absent); rows with NaN
    ``valuenum`` or time are ignored. Pure: no files are touched.
    """
    skipped: Counter[str] = Counter()
    ecgs = ecgs[["subject_id", "study_id", "ecg_time", "ecg_path"]].copy()
    duplicated = ecgs["study_id"].duplicated(keep="first")
    skipped[SkipReason.DUPLICATE_ECG] += int(duplicated.sum())
    ecgs = ecgs[~duplicated]
    bad_time = ecgs["ecg_time"].isna()
    skipped[SkipReason.INVALID_ECG_TIME] += int(bad_time.sum())
    ecgs = ecgs[~bad_time].reset_index(drop=True)
    ecgs["_row"] = np.arange(len(ecgs))

    usable = labs[labs["itemid"].isin(config.itemids) & labs["valuenum"].notna() & labs["charttime"].notna()]
    usable = usable.assign(comment=usable["comment"] if "comment" in usable else LabComment.NONE.value)
    usable = usable[["subject_id", "itemid", "charttime", "valuenum", "comment"]]
    window = pd.Timedelta(minutes=config.window_min)
    nearest = _nearest_lab(ecgs, _dedupe_labs(usable, config.itemids), window)
    if config.hemolysed_labs == "exclude":
        clean = usable[usable["comment"] != LabComment.HEMOLYSED.value]
        paired = _nearest_lab(ecgs, _dedupe_labs(clean, config.itemids), window)
    else:
        paired = nearest
    hemolysed_pairs = _hemolysed_pairs(nearest, paired, config.hemolysed_labs)

    no_lab = paired["k_value"].isna()
    lost = no_lab & paired.index.isin(hemolysed_pairs.loc[hemolysed_pairs["outcome"] == REMOVED, "_row"])
    skipped[SkipReason.HEMOLYSED_LAB] += int(lost.sum())
    skipped[SkipReason.NO_LAB_IN_WINDOW] += int((no_lab & ~lost).sum())
    paired = paired[~no_lab]
    implausible = (paired["k_value"] < config.k_min) | (paired["k_value"] > config.k_max)
    skipped[SkipReason.IMPLAUSIBLE_K] += int(implausible.sum())
    paired = paired[~implausible].copy()

    bins = label_bin(paired["k_value"], config.label_step)
    paired["k_value"] = (bins * config.label_step).round(6).astype("float32")
    paired["k_itemid"] = paired["k_itemid"].astype("int64")
    paired["k_comment"] = paired["k_comment"].astype(str)
    paired["delta_min"] = ((paired["k_time"] - paired["ecg_time"]).dt.total_seconds() / 60.0).astype("float32")
    split = subject_split(paired["subject_id"], pd.Series(bins, index=paired.index), config.seed,
                          natural_fraction=config.natural_test_fraction, max_fraction=config.balanced_max_fraction,
                          max_per_bin=config.balanced_max_per_bin)
    paired["split"] = split.split
    discarded = int((paired["split"] == DISCARDED).sum())
    kept = paired[paired["split"] != DISCARDED].copy()
    kept["split"] = pd.Categorical(kept["split"], categories=list(SPLITS), ordered=True)
    kept = kept.sort_values(["split", "ecg_time", "study_id"], kind="stable")
    kept["split"] = kept["split"].astype(str)
    cohort = kept.loc[:, list(COHORT_COLUMNS)].reset_index(drop=True)
    return CohortResult(
        cohort=cohort,
        skipped={str(k): v for k, v in skipped.items() if v},
        discarded_holdout_pairs=discarded,
        k_per_bin=split.k_per_bin,
        hemolysed_pairs=hemolysed_pairs.drop(columns="_row"),
        per_bin=per_bin_counts(bins, paired["split"].to_numpy(), config.label_step),
        cap_per_bin=split.cap,
        cap_source=split.cap_source,
    )


def _hemolysed_pairs(nearest: pd.DataFrame, paired: pd.DataFrame, mode: HemolysedLabs) -> pd.DataFrame:
    """The ECGs whose nearest lab is haemolysed, and what the pairing did with them (see CohortResult)."""
    hit = nearest["k_comment"] == LabComment.HEMOLYSED.value
    rows = nearest[hit]
    relabelled = paired.loc[rows.index, "k_value"]
    if mode == "exclude":
        outcome = np.where(relabelled.notna(), MOVED, REMOVED)
    else:
        outcome = np.full(len(rows), "kept", dtype=object)
    return pd.DataFrame({
        "_row": rows.index.to_numpy(), "study_id": rows["study_id"].to_numpy(),
        "subject_id": rows["subject_id"].to_numpy(), "hemolysed_k": rows["k_value"].to_numpy(np.float64),
        "hemolysed_time": rows["k_time"].to_numpy(), "outcome": outcome,
        "k_value": relabelled.to_numpy(np.float64),
    })
