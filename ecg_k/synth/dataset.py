"""Write a synthetic ECG-K-DIR dataset in the MIMIC-IV-ECG v1.0 + MIMIC-IV v2.2 hosp layout.

``out/mimic-iv-ecg/record_list.csv`` and ``files/p<4>/p<subject>/s<study>/<study>.hea|.dat`` (WFDB, fmt 16,
200 adu/mV, MIMIC lead order), ``out/mimic-iv/hosp/{labevents,patients}.csv.gz``, the ground truth
``out/synth_truth.csv`` (true K+ and heart rate per ECG) and, last, ``out/synth_manifest.json``. The same
``(n_ecgs, seed)`` gives byte-identical files whatever the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.synth import wfdb16
from ecg_k.synth.ecg_model import draw_subject, simulate_ecg, to_digital
from ecg_k.synth.params import SynthParams
from ecg_k.synth.tables import (
    SERUM_POTASSIUM,
    WHOLE_BLOOD_POTASSIUM,
    Plan,
    format_time,
    make_plan,
    record_list,
)
from ecg_k.version import code_version

MANIFEST_NAME = "synth_manifest.json"
PARTIAL_NAME = "synth_manifest.partial.json"  # written first, replaced by the manifest when complete
TRUTH_NAME = "synth_truth.csv"
RECORD_LIST = Path("mimic-iv-ecg") / "record_list.csv"
LABEVENTS = Path("mimic-iv") / "hosp" / "labevents.csv.gz"
PATIENTS = Path("mimic-iv") / "hosp" / "patients.csv.gz"
GENERATOR = "ecg_k.synth"
SUBJECT_STREAM = 1
ECG_STREAM = 2
_MAX_CHUNK = 32
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclasses.dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_dataset` produced (or found already complete, ``reused=True``)."""

    out: Path
    n_ecgs: int
    n_subjects: int
    n_lab_rows: int
    k_quantiles: dict[str, float]  # of the true K+ at ECG time, e.g. {"q50": 4.18}
    elapsed_s: float
    reused: bool = False


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """The ECGs one worker task simulates and writes."""

    out: str
    seed: int
    params: SynthParams
    rows: tuple[tuple[int, int, int, dt.datetime, float, str], ...]  # see _chunks


def _summary(out: Path, manifest: dict[str, Any], started: float, reused: bool) -> SynthSummary:
    """The summary of a dataset from its manifest."""
    counts = manifest["counts"]
    return SynthSummary(
        out=out, n_ecgs=counts["n_ecgs"], n_subjects=counts["n_subjects"], n_lab_rows=counts["n_lab_rows"],
        k_quantiles=manifest["k_quantiles"], elapsed_s=time.perf_counter() - started, reused=reused,
    )


def _generator_digest() -> str:
    """sha256 of this package's sources: a changed generator never reuses an old dataset."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _request(n_ecgs: int, seed: int, params: SynthParams) -> dict[str, Any]:
    """Everything the output depends on, JSON-normalised so that it compares equal after a round trip."""
    request = {
        "generator": GENERATOR,
        "n_ecgs": n_ecgs,
        "seed": seed,
        "generator_sha256": _generator_digest(),
        "model": dataclasses.asdict(params),
    }
    plain: dict[str, Any] = json.loads(json.dumps(request))
    return plain


def _validate(n_ecgs: int, seed: int, workers: int) -> None:
    """Reject bad arguments before anything is written."""
    for name, value in (("n_ecgs", n_ecgs), ("seed", seed), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if n_ecgs < 1:
        raise ValueError(f"n_ecgs must be at least 1, got {n_ecgs}")
    if n_ecgs > 9_000_000:
        raise ValueError(f"n_ecgs must be at most 9,000,000 (8-digit study ids), got {n_ecgs}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when absent or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _existing(out: Path, request: dict[str, Any], started: float) -> SynthSummary | None:
    """The summary of a complete identical dataset in ``out``; None when ``out`` may be (re)written.

    Raises FileExistsError when ``out`` holds anything else: another dataset, foreign files, a file.
    """
    if not out.exists():
        return None
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    manifest = _read_json(out / MANIFEST_NAME)
    if manifest is not None and manifest.get("request") == request:
        if _is_complete(out, manifest["counts"]["n_ecgs"]):
            return _summary(out, manifest, started, reused=True)
        return None  # our own dataset with files lost: rewriting it gives the same bytes
    if manifest is not None:
        old = manifest.get("request") or {}
        differing = ", ".join(key for key in request if old.get(key) != request[key])
        raise FileExistsError(
            f"{out} holds another synthetic dataset (n_ecgs={old.get('n_ecgs')}, seed={old.get('seed')}; "
            f"differs in {differing}); delete it or choose another directory"
        )
    partial = _read_json(out / PARTIAL_NAME)
    if partial == request:
        return None  # an interrupted run of this very request: rewriting gives the same files
    if partial is not None or any(out.iterdir()):
        raise FileExistsError(
            f"{out} is not empty and holds no complete synthetic dataset of this request "
            f"({MANIFEST_NAME} missing or different); refusing to overwrite it"
        )
    return None


def _is_complete(out: Path, n_ecgs: int) -> bool:
    """Every table is there and one header per ECG."""
    tables = (RECORD_LIST, LABEVENTS, PATIENTS, Path(TRUTH_NAME))
    n_headers = sum(1 for _ in (out / "mimic-iv-ecg" / "files").rglob("*.hea"))
    return all((out / table).is_file() for table in tables) and n_headers == n_ecgs


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with ``\\n`` line ends whatever the platform."""
    return frame.to_csv(index=False, lineterminator="\n").encode()


def _write_tables(out: Path, plan: Plan) -> None:
    """record_list.csv and the gzipped hosp tables (gzip without name or time stamp: reproducible bytes)."""
    _write_bytes(out / RECORD_LIST, _csv_bytes(record_list(plan.ecgs)))
    _write_bytes(out / LABEVENTS, gzip.compress(_csv_bytes(plan.labevents), mtime=0))
    _write_bytes(out / PATIENTS, gzip.compress(_csv_bytes(plan.patients), mtime=0))


def _write_record(
    out: Path, rel_path: str, subject_id: int, when: dt.datetime, digital: np.ndarray, fs: float, gain: float
) -> None:
    """One WFDB record laid out and labelled as MIMIC-IV-ECG v1.0 writes it."""
    record_dir = out / "mimic-iv-ecg" / Path(rel_path).parent
    record_dir.mkdir(parents=True, exist_ok=True)
    wfdb16.write_record(record_dir, Path(rel_path).name, digital, fs, gain, "mV", MIMIC_LEAD_ORDER, when,
                        [f"<subject_id>: {subject_id}"])


def _simulate_chunk(chunk: _Chunk) -> list[float]:
    """Simulate and write the ECGs of ``chunk``; return their heart rates. Runs in a worker process."""
    params, out = chunk.params, Path(chunk.out)
    rates = []
    for index, subject_index, subject_id, when, k_true, rel_path in chunk.rows:
        subject_rng = np.random.default_rng([chunk.seed, SUBJECT_STREAM, subject_index])
        subject = draw_subject(subject_rng, params.morphology)
        ecg = simulate_ecg(subject, k_true, np.random.default_rng([chunk.seed, ECG_STREAM, index]), params)
        digital = to_digital(ecg.signal, params.gain_adu_per_mv)
        _write_record(out, rel_path, subject_id, when, digital, params.fs, params.gain_adu_per_mv)
        rates.append(ecg.heart_rate_bpm)
    return rates


def _chunks(out: Path, seed: int, params: SynthParams, ecgs: pd.DataFrame, workers: int) -> list[_Chunk]:
    """Rows ``(index, subject_index, subject_id, ecg_time, true K+, path)``, ~4 chunks per worker."""
    size = max(1, min(_MAX_CHUNK, math.ceil(len(ecgs) / (4 * workers))))
    subjects = ecgs["subject_index"].tolist(), ecgs["subject_id"].tolist()
    times = ecgs["ecg_time"].to_numpy().astype("datetime64[s]").tolist()
    k_true, paths = ecgs["k_true"].tolist(), ecgs["path"].tolist()
    rows = list(zip(range(len(ecgs)), *subjects, times, k_true, paths, strict=True))
    return [_Chunk(str(out), seed, params, tuple(rows[i:i + size])) for i in range(0, len(rows), size)]


def _run_chunks(chunks: list[_Chunk], workers: int) -> Iterator[list[float]]:
    """Results in chunk order, from this process or a spawned pool (spawn: safe with any threads)."""
    if workers == 1:
        yield from map(_simulate_chunk, chunks)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool:
        yield from pool.map(_simulate_chunk, chunks)


def _write_waveforms(
    out: Path, seed: int, params: SynthParams, ecgs: pd.DataFrame, workers: int, progress: bool
) -> np.ndarray:
    """Simulate and write every ECG; return the heart rates in ECG order."""
    chunks = _chunks(out, seed, params, ecgs, workers)
    rates: list[float] = []
    bar = tqdm(total=len(ecgs), unit="ECG", desc="synthetic ECGs", file=sys.stderr, disable=not progress)
    with bar:
        for chunk_rates in _run_chunks(chunks, workers):
            rates.extend(chunk_rates)
            bar.update(len(chunk_rates))
    return np.asarray(rates)


def _truth(ecgs: pd.DataFrame, rates: np.ndarray) -> pd.DataFrame:
    """Per-ECG ground truth that MIMIC does not have: the true K+ and the heart rate."""
    return pd.DataFrame(
        {
            "subject_id": ecgs["subject_id"],
            "study_id": ecgs["study_id"],
            "ecg_time": format_time(ecgs["ecg_time"].to_numpy()),
            "k_true": np.char.mod("%.3f", ecgs["k_true"].to_numpy()),
            "heart_rate_bpm": np.char.mod("%.2f", rates),
        }
    )


def _k_quantiles(k: np.ndarray) -> dict[str, float]:
    values = np.quantile(k, _QUANTILES)
    return {f"q{round(q * 100):02d}": round(float(v), 3) for q, v in zip(_QUANTILES, values, strict=True)}


def _manifest(request: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Request, code version, counts, K+ quantiles and file names of a finished dataset."""
    labs = plan.labevents
    per_item = labs["itemid"].value_counts().sort_index()
    potassium = labs[labs["itemid"].isin([SERUM_POTASSIUM, WHOLE_BLOOD_POTASSIUM])]
    return {
        "request": request,
        "code_version": code_version(),
        "counts": {
            "n_ecgs": len(plan.ecgs),
            "n_subjects": int(plan.ecgs["subject_id"].nunique()),
            "n_lab_rows": len(labs),
            "n_lab_rows_by_itemid": {str(item): int(n) for item, n in per_item.items()},
            "n_potassium_rows_without_value": int((potassium["valuenum"] == "").sum()),
        },
        "k_quantiles": _k_quantiles(plan.ecgs["k_true"].to_numpy()),
        "files": {
            "record_list": str(RECORD_LIST), "labevents": str(LABEVENTS), "patients": str(PATIENTS),
            "truth": TRUTH_NAME,
        },
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so that a reader never sees half a manifest."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def generate_dataset(
    out: Path, n_ecgs: int = 4000, seed: int = 0, workers: int = 1, progress: bool = True
) -> SynthSummary:
    """Generate (or reuse) the synthetic dataset of ``n_ecgs`` ECGs and ``seed`` in ``out``.

    Returns at once if ``out`` already holds this exact dataset; raises FileExistsError if it holds
    anything else, and ValueError for bad arguments.
    """
    started = time.perf_counter()
    _validate(n_ecgs, seed, workers)
    out = Path(out)
    params = SynthParams()
    request = _request(int(n_ecgs), int(seed), params)
    existing = _existing(out, request, started)
    if existing is not None:
        return existing
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / PARTIAL_NAME, request)
    plan = make_plan(int(n_ecgs), int(seed), params.population)
    _write_tables(out, plan)
    rates = _write_waveforms(out, int(seed), params, plan.ecgs, workers, progress)
    _write_bytes(out / TRUTH_NAME, _csv_bytes(_truth(plan.ecgs, rates)))
    manifest = _manifest(request, plan)
    _write_json(out / MANIFEST_NAME, manifest)
    (out / PARTIAL_NAME).unlink()
    return _summary(out, manifest, started, reused=False)
