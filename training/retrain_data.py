"""The data of ``ecgk retrain``: lab-confirmed predictions from the database, their subject assignment, and
the merged dataset (base dataset + confirmed training cases) the challenger trains on.

Confirmed case: a prediction with a :class:`~ecg_k.db.models.LabConfirmation` whose lab time lies within
the pairing window of the ECG time (the base dataset's ``cohort.window_min``, ±60 min by default), whose K+
is plausible and whose stored ECG passes the champion's preprocessing. Like ingestion, one pair per ECG
(the nearest lab wins) and labels on the 0.1 mmol/L grid. A reviewer verdict ``unusable_ecg`` excludes it,
and so does a lab the reviewer marked haemolysed (``comment_class`` ``hemolysed``: its K+ is falsely high;
it stays in the database for the record), counted as ``hemolysed_lab``.

Subjects (the leak guard). The subject key of a case is ``Prediction.patient_id`` (pseudonymous), compared
with ``str(subject_id)`` of the base cohort. Each case gets an assignment:

- ``locked``: its subject is in a held-out split of the base dataset (val, cal, test, test_natural), so it
  is evaluated, never trained on;
- ``unkeyed``: no patient_id, so its subject cannot be kept on one side: evaluated, never trained on;
- ``holdout``: a stable hash of the key puts a fraction of the confirmed subjects aside for evaluation,
  the same subjects at every run (a subject never moves between training and evaluation);
- ``train``: the rest, appended to the base training split.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.data.cohort import CohortConfig
from ecg_k.data.lab_comments import LabComment
from ecg_k.data.splits import HELD_OUT
from ecg_k.data.store import (
    COHORT,
    labels_path,
    present_splits,
    sha256_file,
    signals_path,
    write_parquet_atomic,
)
from ecg_k.db.ecg_store import EcgCorruptError, EcgNotFoundError, EcgStore
from ecg_k.db.models import LabConfirmation, Prediction, Review, Verdict
from ecg_k.potassium import label_bin
from ecg_k.preprocessing import PreprocessConfig, preprocess
from ecg_k.quality import QualityError, SkipReason
from ecg_k.records.common import CodeVersion
from ecg_k.records.dataset import MANIFEST, DatasetManifest, RetrainOrigin, read_manifest, write_manifest
from ecg_k.version import code_version

TRAIN, HOLDOUT, LOCKED, UNKEYED = "train", "holdout", "locked", "unkeyed"
ASSIGNMENTS = (TRAIN, HOLDOUT, LOCKED, UNKEYED)
REVIEWED_UNUSABLE = "reviewed_unusable"
OTHER_ITEMID = "other_itemid"
HOLDOUT_SALT = "ecg-k/retrain-holdout/"
COPY_ROWS = 4096
"""Rows copied per block when the base training signals are written into the merged dataset."""
CONFIRMED_SOURCE = "confirmed"
BASE_SOURCE = "base"


class RetrainDataError(ValueError):
    """The base dataset or the champion cannot be used for retraining."""


@dataclass(frozen=True)
class ConfirmedCases:
    """Usable confirmed cases (one row per ECG, ``assignment`` set), their preprocessed signals (float16,
    row i = row i of ``cases``) and the counts of what was left out, by reason."""

    cases: pd.DataFrame
    signals: np.ndarray
    skipped: dict[str, int]

    def of(self, *assignments: str) -> tuple[pd.DataFrame, np.ndarray]:
        """The cases (and signals) with one of ``assignments``."""
        mask = self.cases["assignment"].isin(assignments).to_numpy()
        return self.cases[mask].reset_index(drop=True), self.signals[mask]

    def counts(self) -> dict[str, int]:
        """Cases per assignment (every assignment named)."""
        found = self.cases["assignment"].value_counts()
        return {name: int(found.get(name, 0)) for name in ASSIGNMENTS}


def resolve_base_dataset(training_data: Path) -> Path:
    """The original base dataset behind ``training_data``: a merged dataset written by a retraining run
    names its base in its manifest, so confirmed cases are never merged twice."""
    origin = read_manifest(training_data).retrain
    return Path(origin.base_dataset) if origin is not None else training_data


def locked_subjects(base: Path) -> set[str]:
    """Subject keys of the base held-out splits (they never enter training)."""
    cohort = pd.read_parquet(base / COHORT, columns=["subject_id", "split"])
    return set(cohort.loc[cohort["split"].isin(HELD_OUT), "subject_id"].astype(str))


def holdout_draw(subject: str) -> float:
    """A stable pseudo-random number in [0, 1) for a subject key (sha256-based)."""
    digest = hashlib.sha256((HOLDOUT_SALT + subject).encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


def assign(subject: str | None, locked: set[str], holdout_fraction: float) -> str:
    """The assignment of a case (see the module docstring)."""
    if subject is None:
        return UNKEYED
    if subject in locked:
        return LOCKED
    return HOLDOUT if holdout_draw(subject) < holdout_fraction else TRAIN


def _lab_pairs(session: Session) -> tuple[pd.DataFrame, int]:
    """Every confirmed prediction (``prediction_id, subject, ecg_sha256, ecg_time, k_value, lab_time,
    itemid, comment_class``) not judged unusable by a reviewer, and the number that were."""
    unusable = set(session.scalars(sa.select(Review.prediction_id).where(Review.verdict == Verdict.UNUSABLE_ECG)))
    rows = session.execute(
        sa.select(Prediction.id, Prediction.patient_id, Prediction.ecg_sha256, Prediction.ecg_time,
                  LabConfirmation.k_value, LabConfirmation.lab_time, LabConfirmation.itemid,
                  LabConfirmation.comment_class)
        .join(LabConfirmation, LabConfirmation.prediction_id == Prediction.id)
        .order_by(Prediction.created_at, Prediction.id)
    ).all()
    columns = ["prediction_id", "subject", "ecg_sha256", "ecg_time", "k_value", "lab_time", "itemid",
               "comment_class"]
    frame = pd.DataFrame([tuple(row) for row in rows if row[0] not in unusable], columns=columns)
    return frame, sum(1 for row in rows if row[0] in unusable)


def collect_confirmed(
    session: Session, store: EcgStore, preprocessing: PreprocessConfig, cohort: CohortConfig,
    locked: set[str], holdout_fraction: float,
) -> ConfirmedCases:
    """Confirmed cases from the database and the ECG store, filtered, deduplicated, preprocessed, assigned."""
    frame, n_unusable = _lab_pairs(session)
    skipped: Counter[str] = Counter({REVIEWED_UNUSABLE: n_unusable})
    hemolysed = frame["comment_class"] == LabComment.HEMOLYSED
    skipped[SkipReason.HEMOLYSED_LAB] += int(hemolysed.sum())
    frame = frame[~hemolysed].assign(comment_class=frame["comment_class"].map(str))
    no_time = frame["ecg_time"].isna()
    skipped[SkipReason.INVALID_ECG_TIME] += int(no_time.sum())
    frame = frame[~no_time]
    frame = frame.assign(ecg_time=pd.to_datetime(frame["ecg_time"], utc=True),
                         lab_time=pd.to_datetime(frame["lab_time"], utc=True))
    frame["delta_min"] = (frame["lab_time"] - frame["ecg_time"]).dt.total_seconds() / 60.0
    outside = frame["delta_min"].abs() > cohort.window_min
    skipped[SkipReason.NO_LAB_IN_WINDOW] += int(outside.sum())
    frame = frame[~outside]
    other = frame["itemid"].notna() & ~frame["itemid"].isin(cohort.itemids)
    skipped[OTHER_ITEMID] += int(other.sum())
    frame = frame[~other]
    implausible = (frame["k_value"] < cohort.k_min) | (frame["k_value"] > cohort.k_max)
    skipped[SkipReason.IMPLAUSIBLE_K] += int(implausible.sum())
    frame = frame[~implausible]
    ordered = frame.assign(_gap=frame["delta_min"].abs()).sort_values(["ecg_sha256", "_gap", "lab_time"],
                                                                      kind="stable")
    duplicate = ordered["ecg_sha256"].duplicated(keep="first")
    skipped[SkipReason.DUPLICATE_ECG] += int(duplicate.sum())
    frame = ordered[~duplicate].drop(columns="_gap").sort_values(["ecg_time", "prediction_id"], kind="stable")
    kept, signals = [], []
    for row in frame.to_dict("records"):
        try:
            stored = store.get(row["ecg_sha256"])
            signals.append(preprocess(stored.signal, stored.fs, stored.lead_names, preprocessing).astype(np.float16))
        except EcgNotFoundError:
            skipped[SkipReason.MISSING_WAVEFORM] += 1
            continue
        except EcgCorruptError:
            skipped[SkipReason.UNREADABLE] += 1
            continue
        except QualityError as err:
            skipped[err.reason] += 1
            continue
        kept.append(row)
    cases = pd.DataFrame(kept, columns=[*frame.columns])
    cases["prediction_id"] = cases["prediction_id"].astype(str)
    cases["k_value"] = (label_bin(cases["k_value"], cohort.label_step) * cohort.label_step).round(6).astype("float32")
    cases["assignment"] = [assign(subject, locked, holdout_fraction) for subject in cases["subject"]]
    shape = (0, len(preprocessing.leads), preprocessing.n_samples)
    array = np.stack(signals) if signals else np.zeros(shape, dtype=np.float16)
    return ConfirmedCases(cases.reset_index(drop=True), array, {str(k): int(v) for k, v in skipped.items() if v})


def data_fingerprint(base: Path, confirmed: ConfirmedCases, params: dict[str, Any]) -> str:
    """sha256 of what the challenger's data is made of: the base dataset's manifest, every usable confirmed
    case (prediction, ECG, label, assignment) and the parameters that select them."""
    cases = sorted(
        (str(row["prediction_id"]), str(row["ecg_sha256"]), f"{float(row['k_value']):.1f}", str(row["assignment"]))
        for row in confirmed.cases.to_dict("records")
    )
    payload = {"base_manifest": sha256_file(base / MANIFEST), "cases": cases, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _confirmed_cohort_rows(cases: pd.DataFrame, itemid: int) -> pd.DataFrame:
    """Cohort rows (DESIGN.md columns) for confirmed cases; ``ecg_path`` names the ECG store address."""
    return pd.DataFrame({
        "subject_id": cases["subject"].astype(str), "study_id": pd.array([None] * len(cases), dtype="Int64"),
        "ecg_time": pd.to_datetime(cases["ecg_time"], utc=True).dt.tz_localize(None),
        "ecg_path": "ecg-store:" + cases["ecg_sha256"].astype(str), "k_value": cases["k_value"].astype("float32"),
        "k_time": pd.to_datetime(cases["lab_time"], utc=True).dt.tz_localize(None),
        "k_itemid": cases["itemid"].fillna(itemid).astype("int64"),
        "delta_min": cases["delta_min"].astype("float32"), "split": "train",
        "k_comment": cases["comment_class"].astype(str), "source": CONFIRMED_SOURCE,
        "prediction_id": cases["prediction_id"].astype(str),
    })


def _histogram(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(np.round(labels.astype(np.float64), 1), return_counts=True)
    return {f"{k:.1f}": int(c) for k, c in zip(values, counts, strict=True)}


def write_merged_dataset(base: Path, out: Path, confirmed: ConfirmedCases, fingerprint: str) -> Path:
    """A dataset directory (DESIGN.md contract) whose train split is the base train split followed by the
    confirmed ``train`` cases; the held-out splits are the base's (signals linked, not copied), so the locked
    test set is byte for byte the base's."""
    manifest = read_manifest(base)
    cohort_config = manifest.config.cohort
    new_cases, new_signals = confirmed.of(TRAIN)
    base_signals = np.load(signals_path(base, "train"), mmap_mode="r")
    if base_signals.shape[1:] != new_signals.shape[1:]:
        raise RetrainDataError(f"base train signals have shape {base_signals.shape[1:]}, confirmed cases "
                               f"{new_signals.shape[1:]}: the champion's preprocessing is not the dataset's")
    out.mkdir(parents=True, exist_ok=True)
    merged = np.lib.format.open_memmap(signals_path(out, "train"), mode="w+", dtype=np.float16,
                                       shape=(len(base_signals) + len(new_signals), *base_signals.shape[1:]))
    for start in range(0, len(base_signals), COPY_ROWS):
        stop = min(start + COPY_ROWS, len(base_signals))
        merged[start:stop] = base_signals[start:stop]
    merged[len(base_signals):] = new_signals
    merged.flush()
    del merged
    train_labels = np.concatenate([np.load(labels_path(base, "train")), new_cases["k_value"].to_numpy(np.float32)])
    np.save(labels_path(out, "train"), train_labels)
    held_out = [split for split in present_splits(base) if split in HELD_OUT]
    splits = ["train", *held_out]
    for split in held_out:
        link = signals_path(out, split)
        link.unlink(missing_ok=True)
        os.symlink(signals_path(base, split).resolve(), link)
        np.save(labels_path(out, split), np.load(labels_path(base, split)))

    cohort = pd.read_parquet(base / COHORT)
    cohort = cohort.assign(subject_id=cohort["subject_id"].astype(str), source=BASE_SOURCE, prediction_id=None)
    parts = [cohort[cohort["split"] == "train"], _confirmed_cohort_rows(new_cases, cohort_config.itemids[0]),
             *(cohort[cohort["split"] == split] for split in held_out)]
    merged_cohort = pd.concat([part for part in parts if len(part)], ignore_index=True)
    write_parquet_atomic(merged_cohort, out / COHORT)
    histograms = {s: _histogram(np.load(labels_path(out, s))) for s in splits}
    files = [COHORT, *(p.name for s in splits for p in (signals_path(out, s), labels_path(out, s)))]
    write_manifest(out, DatasetManifest(
        status="complete",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        config=manifest.config,
        preprocess_digest=manifest.preprocess_digest,
        counts={s: int(len(np.load(labels_path(out, s), mmap_mode="r"))) for s in splits},
        subjects={s: int(merged_cohort.loc[merged_cohort["split"] == s, "subject_id"].nunique()) for s in splits},
        label_histogram=histograms,
        retrain=RetrainOrigin(base_dataset=str(base.resolve()), base_manifest_sha256=sha256_file(base / MANIFEST),
                              confirmed=confirmed.counts(), confirmed_skipped=confirmed.skipped,
                              data_fingerprint=fingerprint),
        checksums={name: sha256_file(out / name) for name in files},
        code_version=CodeVersion.model_validate(code_version()),
    ))
    return out

