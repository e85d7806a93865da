"""``ecgk ingest``: MIMIC-IV-ECG + hosp labs -> an ECG-K-DIR dataset directory.

Phase 1 (cohort): pair ECGs with K+ labs and split (:mod:`ecg_k.data.cohort`); saved in ``.work/``.
Phase 2 (signals): the cohort, split by split in cohort order, is cut into shards of ``shard_size``
records; each shard is read, QC'd and preprocessed in a worker process and saved atomically as
``.work/shards/<split>-<n>.npz``. Finished shards are never redone, so an interrupted ingest, rerun with
the same arguments, continues where it stopped. Phase 3 (assembly) streams the shards, one at a time, into
the float16 memmaps, so memory stays O(shard) and the output is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ecg_k.data import store
from ecg_k.data.cohort import CohortConfig, build_cohort
from ecg_k.data.errors import DataInputError
from ecg_k.data.labs import find_labevents, read_patients, read_potassium_labs
from ecg_k.data.record_list import find_record_list, read_record_list
from ecg_k.data.splits import DISCARDED, PER_BIN_COLUMNS, SPLITS, per_bin_counts, share_warnings
from ecg_k.data.waveforms import read_wfdb
from ecg_k.potassium import label_bin
from ecg_k.preprocessing import PreprocessConfig, preprocess
from ecg_k.quality import QualityError
from ecg_k.records.dataset import MANIFEST, DatasetManifest, IngestConfig, read_manifest, write_manifest
from ecg_k.records.jsonio import write_json_atomic
from ecg_k.signal_quality import SignalQualityConfig, check_signal_quality
from ecg_k.version import code_version

WORK = ".work"
OK = ""


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: records of one split, in cohort order."""

    split: str
    index: int
    ecg_root: str
    ecg_paths: tuple[str, ...]
    preprocess: PreprocessConfig
    signal_quality: SignalQualityConfig
    out: str


def _shard_file(work: Path, split: str, index: int) -> Path:
    return work / "shards" / f"{split}-{index:05d}.npz"


def read_and_preprocess(path: Path, config: PreprocessConfig) -> np.ndarray:
    """Read one WFDB record and preprocess it (the reader's and preprocessing's checks, not the gate)."""
    record = read_wfdb(path)
    return preprocess(record.signal, record.fs, record.lead_names, config)


def process_record(path: Path, config: PreprocessConfig, gate: SignalQualityConfig) -> np.ndarray:
    """Read one WFDB record, preprocess it and pass it through the signal-quality gate; raises QualityError
    with the skip reason (``low_quality`` from the gate)."""
    model_input = read_and_preprocess(path, config)
    check_signal_quality(model_input, config.fs, gate)
    return model_input


def process_shard(task: ShardTask) -> tuple[str, int, int]:
    """Preprocess a shard and save kept signals plus a reason per record ('' = kept), atomically."""
    shape = (len(task.preprocess.leads), task.preprocess.n_samples)
    kept: list[np.ndarray] = []
    reasons: list[str] = []
    details: list[str] = []
    for rel in task.ecg_paths:
        try:
            signal = process_record(Path(task.ecg_root) / rel, task.preprocess, task.signal_quality)
            kept.append(signal.astype(np.float16))
            reasons.append(OK)
            details.append("")
        except QualityError as err:
            reasons.append(str(err.reason))
            details.append(str(err)[:300])
    signals = np.stack(kept) if kept else np.zeros((0, *shape), dtype=np.float16)
    out = Path(task.out)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, signals=signals, reasons=np.array(reasons, dtype="U32"), details=np.array(details))
    os.replace(tmp, out)
    return task.split, task.index, len(task.ecg_paths)


def _run_shards(tasks: list[ShardTask], workers: int, progress: bool) -> None:
    """Run pending shards (in-process for one worker, else a spawn pool) with a progress bar."""
    total = sum(len(t.ecg_paths) for t in tasks)
    with tqdm(total=total, unit="ecg", desc="signals", disable=not progress, smoothing=0.1) as bar:
        if workers <= 1:
            for task in tasks:
                bar.update(process_shard(task)[2])
            return
        context = multiprocessing.get_context("spawn")  # no fork after Arrow/BLAS threads started
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for future in as_completed([pool.submit(process_shard, t) for t in tasks]):
                bar.update(future.result()[2])


def _shard_rows(cohort: pd.DataFrame, shard_size: int) -> Iterator[tuple[str, int, pd.DataFrame]]:
    for split in SPLITS:
        rows = cohort[cohort["split"] == split]
        for index, start in enumerate(range(0, len(rows), shard_size)):
            yield split, index, rows.iloc[start : start + shard_size]


def _load_shard_signals(work: Path, split: str, index: int) -> np.ndarray:
    with np.load(_shard_file(work, split, index)) as shard:
        signals: np.ndarray = shard["signals"]
    return signals


def _write_npy_streaming(path: Path, shape: tuple[int, ...], blocks: Iterator[np.ndarray]) -> None:
    """Write a float16 ``.npy`` block by block through plain writes (no mapping: RSS stays O(block)).

    The bytes equal ``np.save`` of the whole array, and ``np.load(mmap_mode="r")`` reads it.
    """
    tmp = path.with_name(path.name + ".tmp")
    written = 0
    with tmp.open("wb") as handle:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                  "shape": shape}
        np.lib.format.write_array_header_1_0(handle, header)
        for block in blocks:
            handle.write(np.ascontiguousarray(block, dtype=np.float16).tobytes())
            written += len(block)
    if written != shape[0]:
        raise RuntimeError(f"assembled {written} rows for {path.name}, expected {shape[0]}")
    os.replace(tmp, path)


def _assemble(root: Path, work: Path, cohort: pd.DataFrame, config: IngestConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stream shards into the final memmaps; returns (kept cohort, rejected rows)."""
    shape = (len(config.preprocess.leads), config.preprocess.n_samples)
    reasons = np.empty(len(cohort), dtype=object)
    details = np.empty(len(cohort), dtype=object)
    for split, index, rows in _shard_rows(cohort, config.shard_size):
        with np.load(_shard_file(work, split, index)) as shard:
            positions = cohort.index.get_indexer(rows.index)
            reasons[positions], details[positions] = shard["reasons"], shard["details"]
    kept_mask = reasons == OK
    for split in SPLITS:
        in_split = kept_mask & (cohort["split"] == split).to_numpy()
        blocks = (_load_shard_signals(work, split, index)
                  for shard_split, index, _ in _shard_rows(cohort, config.shard_size) if shard_split == split)
        _write_npy_streaming(store.signals_path(root, split), (int(in_split.sum()), *shape), blocks)
        np.save(store.labels_path(root, split), cohort.loc[in_split, "k_value"].to_numpy(np.float32))
    rejected = cohort.loc[~kept_mask].assign(reason=reasons[~kept_mask], detail=details[~kept_mask])
    return cohort.loc[kept_mask].reset_index(drop=True), rejected.reset_index(drop=True)


def _histograms(cohort: pd.DataFrame, step: float) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        bins = label_bin(cohort.loc[cohort["split"] == split, "k_value"], step)
        values, counts = np.unique(bins, return_counts=True)
        out[split] = {f"{v * step:.1f}": int(c) for v, c in zip(values, counts, strict=True)}
    return out


def _lab_comment_summary(
    rows: dict[str, int], hemolysed_pairs: pd.DataFrame, config: CohortConfig
) -> dict[str, Any]:
    """The manifest's ``lab_comments``: the rule, K+ rows per comment class, and per 0.1 bin of the
    haemolysed value the ECGs whose nearest lab was haemolysed, by outcome (removed, moved, kept)."""
    per_bin: dict[str, dict[str, int]] = {}
    for outcome, group in hemolysed_pairs.groupby("outcome", sort=True):
        bins = label_bin(group["hemolysed_k"], config.label_step)
        values, counts = np.unique(bins, return_counts=True)
        per_bin[str(outcome)] = {f"{v * config.label_step:.1f}": int(c)
                                 for v, c in zip(values, counts, strict=True)}
    return {"hemolysed_labs": config.hemolysed_labs, "lab_rows": rows, "hemolysed_pairs_per_bin": per_bin}


def _pairs_per_comment(cohort: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Kept pairs per split and comment class of the lab that labels them."""
    per_split = {split: cohort.loc[cohort["split"] == split, "k_comment"].value_counts().sort_index()
                 for split in SPLITS}
    return {split: {str(k): int(v) for k, v in counts.items()} for split, counts in per_split.items()}
def _per_bin(cohort: pd.DataFrame, discarded: dict[str, int], step: float) -> dict[str, dict[str, int]]:
    """Pairs per 0.1 bin in each split of ``cohort`` (after QC) and discarded by the split (before QC)."""
    counts = per_bin_counts(label_bin(cohort["k_value"], step), cohort["split"].to_numpy(), step)
    for label, n in discarded.items():
        counts.setdefault(label, dict.fromkeys(PER_BIN_COLUMNS, 0))[DISCARDED] = n
    return dict(sorted(counts.items(), key=lambda item: float(item[0])))


def _demographics(cohort: pd.DataFrame, patients: pd.DataFrame | None) -> dict[str, Any] | None:
    if patients is None:
        return None
    merged = cohort[["subject_id", "split"]].merge(patients, on="subject_id", how="left")
    summary: dict[str, Any] = {}
    for split, group in merged.groupby("split"):
        entry: dict[str, Any] = {"subjects": int(group["subject_id"].nunique())}
        if "gender" in group:
            entry["gender"] = {str(k): int(v) for k, v in group["gender"].value_counts(dropna=False).items()}
        if "anchor_age" in group:
            ages = group["anchor_age"].dropna()
            entry["age_median"] = float(ages.median()) if len(ages) else None
        summary[str(split)] = entry
    return summary


class Ingestor:
    """One ingest of ``ecg_root`` + ``hosp_root`` into ``out``; see the module docstring."""

    def __init__(
        self,
        ecg_root: Path,
        hosp_root: Path,
        out: Path,
        config: IngestConfig,
        patients_root: Path | None = None,
    ) -> None:
        self.ecg_root = ecg_root.resolve()
        self.hosp_root = hosp_root.resolve()
        self.patients_root = (patients_root or hosp_root).resolve()
        self.out = out
        self.work = out / WORK
        self.config = config
        find_record_list(self.ecg_root)
        self.labevents = find_labevents(self.hosp_root)

    def _fingerprint(self) -> dict[str, Any]:
        """What must match for a rerun to resume (config and inputs)."""
        record_list = find_record_list(self.ecg_root)
        return {
            "config": self.config.model_dump(mode="json"),
            "ecg_root": str(self.ecg_root),
            "record_list": {"path": str(record_list), "sha256": store.sha256_file(record_list)},
            "labevents": {"path": str(self.labevents), "bytes": self.labevents.stat().st_size},
        }

    def _check_output_dir(self, fingerprint: dict[str, Any], overwrite: bool) -> DatasetManifest | None:
        """Return the manifest when this dataset is already complete; refuse (or clear) foreign dirs."""
        manifest_file, state_file = self.out / MANIFEST, self.work / "state.json"
        previous = read_manifest(self.out) if manifest_file.is_file() else None
        stored: dict[str, Any] | None
        if previous is not None and previous.inputs is not None:
            stored = {"config": previous.config.model_dump(mode="json"), **previous.inputs.model_dump(mode="json")}
        else:
            stored = _read_json(state_file)["fingerprint"] if state_file.is_file() else None
        occupied = self.out.exists() and any(self.out.iterdir())
        if overwrite and occupied:
            shutil.rmtree(self.out)
            return None
        if stored is None and occupied:
            raise DataInputError(f"{self.out} exists, is not empty and is not an ecg-k dataset")
        if stored is not None and stored != fingerprint:
            raise DataInputError(
                f"{self.out} holds a dataset built from other inputs or config; "
                "choose another --out or pass --overwrite"
            )
        return previous if previous is not None and previous.status == "complete" else None

    def run(
        self,
        workers: int = 1,
        cohort_only: bool = False,
        progress: bool = True,
        overwrite: bool = False,
        max_shards: int | None = None,
    ) -> DatasetManifest:
        """Build (or resume, or confirm) the dataset and return its manifest.

        ``max_shards`` processes at most that many pending shards, then stops with status
        ``partial`` (time-boxed chunks; a rerun continues).
        """
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        fingerprint = self._fingerprint()
        existing = self._check_output_dir(fingerprint, overwrite)
        if existing is not None:
            return existing
        started = time.perf_counter()
        self.work.mkdir(parents=True, exist_ok=True)
        state = self._cohort_phase(fingerprint)
        cohort = pd.read_parquet(self.work / "candidates.parquet")
        if cohort_only:
            store.write_parquet_atomic(cohort, self.out / store.COHORT)
            return self._write_manifest("cohort", state, cohort, {}, started)

        tasks = self._pending_tasks(cohort)
        if max_shards is not None:
            tasks = tasks[:max_shards]
        _run_shards(tasks, workers, progress)
        if self._pending_tasks(cohort):
            return self._write_manifest("partial", state, cohort, {}, started)
        kept, rejected = _assemble(self.out, self.work, cohort, self.config)
        store.write_parquet_atomic(kept, self.out / store.COHORT)
        store.write_parquet_atomic(rejected, self.out / store.REJECTED)
        signal_skips = {str(k): int(v) for k, v in Counter(rejected["reason"]).items()}
        manifest = self._write_manifest("complete", state, kept, signal_skips, started)
        shutil.rmtree(self.work)
        return manifest

    def _cohort_phase(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        state_file = self.work / "state.json"
        if state_file.is_file() and (self.work / "candidates.parquet").is_file():
            return _read_json(state_file)
        started = time.perf_counter()
        ecgs = read_record_list(self.ecg_root)
        labs, lab_stats = read_potassium_labs(self.labevents, self.config.cohort.itemids)
        result = build_cohort(ecgs, labs, self.config.cohort)
        store.write_parquet_atomic(result.cohort, self.work / "candidates.parquet")
        state = {
            "fingerprint": fingerprint,
            "ecgs_in_record_list": len(ecgs),
            "cohort_skipped": result.skipped,
            "discarded_holdout_pairs": result.discarded_holdout_pairs,
            "k_per_bin": {f"{b * self.config.cohort.label_step:.1f}": k for b, k in sorted(result.k_per_bin.items())},
            "cap_per_bin": {"value": result.cap_per_bin, "source": result.cap_source},
            "discarded_per_bin": {label: row[DISCARDED] for label, row in result.per_bin.items() if row[DISCARDED]},
            "labs": {"rows_scanned": lab_stats.rows_scanned, "rows_kept": lab_stats.rows_kept,
                     "dropped": lab_stats.dropped},
            "lab_comments": _lab_comment_summary(lab_stats.comments, result.hemolysed_pairs,
                                                 self.config.cohort),
            "elapsed_cohort_s": round(time.perf_counter() - started, 3),
        }
        write_json_atomic(state_file, state)
        return state

    def _pending_tasks(self, cohort: pd.DataFrame) -> list[ShardTask]:
        (self.work / "shards").mkdir(parents=True, exist_ok=True)
        return [
            ShardTask(split, index, str(self.ecg_root), tuple(rows["ecg_path"]), self.config.preprocess,
                      self.config.signal_quality,
                      str(_shard_file(self.work, split, index)))
            for split, index, rows in _shard_rows(cohort, self.config.shard_size)
            if not _shard_file(self.work, split, index).is_file()
        ]

    def _write_manifest(
        self, status: str, state: dict[str, Any], cohort: pd.DataFrame, signal_skips: dict[str, int], started: float
    ) -> DatasetManifest:
        skipped = Counter(state["cohort_skipped"]) + Counter(signal_skips)
        per_bin = _per_bin(cohort, state["discarded_per_bin"], self.config.cohort.label_step)
        files = [store.COHORT] + (
            [store.REJECTED] + [p.name for s in SPLITS for p in (store.signals_path(self.out, s),
                                                                  store.labels_path(self.out, s))]
            if status == "complete" else []
        )
        manifest = DatasetManifest.model_validate({
            "status": status,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": self.config.model_dump(mode="json"),
            "preprocess_digest": self.config.preprocess.digest(),
            "inputs": {k: v for k, v in state["fingerprint"].items() if k != "config"},
            "counts": {s: int((cohort["split"] == s).sum()) for s in SPLITS},
            "subjects": {s: int(cohort.loc[cohort["split"] == s, "subject_id"].nunique()) for s in SPLITS},
            "skipped": dict(sorted((k, int(v)) for k, v in skipped.items())),
            "ecgs_in_record_list": state["ecgs_in_record_list"],
            "discarded_holdout_pairs": state["discarded_holdout_pairs"],
            "balanced_k_per_bin": state["k_per_bin"],
            "balanced_cap_per_bin": state["cap_per_bin"],
            "per_bin": per_bin,
            "warnings": share_warnings(per_bin),
            "labs": state["labs"],
            "lab_comments": {**state["lab_comments"], "pairs": _pairs_per_comment(cohort)},
            "label_histogram": _histograms(cohort, self.config.cohort.label_step),
            "demographics": _demographics(cohort, read_patients(self.patients_root)),
            "elapsed_s": {"cohort": state["elapsed_cohort_s"], "this_run": round(time.perf_counter() - started, 3)},
            "checksums": {name: store.sha256_file(self.out / name) for name in files if (self.out / name).exists()},
            "code_version": code_version(),
        })
        write_manifest(self.out, manifest)
        return manifest


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
