"""Full ingest on synthetic MIMIC-layout data: alignment, skips, resume, byte-identity, CLI errors."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from typer.testing import CliRunner

from ecg_k.cli import app
from ecg_k.data.cohort import CohortConfig
from ecg_k.data.errors import DataInputError
from ecg_k.data.ingest import Ingestor, process_record
from ecg_k.data.splits import SPLITS
from ecg_k.data.store import load_split
from ecg_k.leads import STANDARD_LEADS
from ecg_k.preprocessing import PreprocessConfig
from ecg_k.records.dataset import IngestConfig, read_manifest
from ecg_k.synth import generate_dataset
from tests.conftest import run_ecgk

runner = CliRunner()
OUTPUT_FILES = ("cohort.parquet", "rejected.parquet", *(f"{s}.{k}.npy" for s in SPLITS
                                                          for k in ("signals", "labels")))


def _damage(ecg_root: Path, record_list: pd.DataFrame) -> dict[str, int]:
    """Break a few records in known ways; returns study_id -> expected reason."""
    paths = [ecg_root / p for p in record_list["path"]]
    paths[0].with_suffix(".dat").unlink()                                   # missing_waveform
    dat = paths[1].with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:777])                                 # unreadable
    paths[2].with_suffix(".hea").write_text("garbage\n")                    # unreadable
    for path, fill in ((paths[3], 0), (paths[4], -32768)):                  # flat lead I / NaN lead I
        record = wfdb.rdrecord(str(path), physical=False)
        record.d_signal[:, 0] = fill
        record.wrsamp(write_dir=str(path.parent))
    return {
        int(record_list["study_id"][0]): "missing_waveform", int(record_list["study_id"][1]): "unreadable",
        int(record_list["study_id"][2]): "unreadable", int(record_list["study_id"][3]): "flat_lead",
        int(record_list["study_id"][4]): "nan",
    }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, n_ecgs=160, seed=11, workers=1, progress=False)
    ecg_root, hosp_root = root / "mimic-iv-ecg", root / "mimic-iv" / "hosp"
    damaged = _damage(ecg_root, pd.read_csv(ecg_root / "record_list.csv"))
    return ecg_root, hosp_root, damaged


CONFIG = IngestConfig(cohort=CohortConfig(balanced_max_per_bin=3), preprocess=PreprocessConfig(leads="I"),
                      shard_size=16)
CLI_CONFIG = ["--balanced-max-per-bin", "3", "--leads", "I", "--shard-size", "16", "--workers", "1"]


@pytest.fixture(scope="module")
def reference(synthetic, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ecg_root, hosp_root, _ = synthetic
    out = tmp_path_factory.mktemp("ref") / "ds"
    Ingestor(ecg_root, hosp_root, out, CONFIG).run(workers=1, progress=False)
    return out


def _same_bytes(a: Path, b: Path) -> None:
    for name in OUTPUT_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    volatile = {"created": None, "elapsed_s": None}
    assert read_manifest(a).model_copy(update=volatile) == read_manifest(b).model_copy(update=volatile)


def test_dataset_contract_and_row_alignment(reference: Path, synthetic) -> None:
    ecg_root, _, _ = synthetic
    manifest = read_manifest(reference)
    cohort = pd.read_parquet(reference / "cohort.parquet")
    assert manifest.status == "complete"
    assert list(cohort.columns[:9]) == ["subject_id", "study_id", "ecg_time", "ecg_path", "k_value", "k_time",
                                        "k_itemid", "delta_min", "split"]
    for split in SPLITS:
        signals, labels = load_split(reference, split)
        rows = cohort[cohort["split"] == split]
        assert manifest.counts[split] == len(rows) == len(signals) == len(labels) > 0
        per_bin = sum(row[split] for row in manifest.per_bin.values())
        assert per_bin == len(rows)
        assert signals.dtype == np.float16 and signals.shape[1:] == (1, 5000)
        np.testing.assert_array_equal(labels, rows["k_value"].to_numpy(np.float32))
        for i in (0, len(rows) - 1):  # row i of the memmap is the i-th cohort row of the split
            expected = process_record(ecg_root / rows["ecg_path"].iloc[i], CONFIG.preprocess,
                                      CONFIG.signal_quality).astype(np.float16)
            np.testing.assert_array_equal(signals[i], expected)
    assert set(cohort["k_comment"]) <= {"none", "verified"}  # haemolysed labs never label by default
    assert {s: sum(n.values()) for s, n in manifest.lab_comments["pairs"].items()} == manifest.counts
    subjects = [set(cohort.loc[cohort["split"] == s, "subject_id"]) for s in ("train", "val", "test")]
    assert not (subjects[0] & subjects[1]) and not (subjects[0] & subjects[2]) and not (subjects[1] & subjects[2])


def test_default_ingest_reads_the_12_leads_and_keeps_every_bins_share(synthetic, tmp_path: Path) -> None:
    ecg_root, hosp_root, _ = synthetic
    manifest = Ingestor(ecg_root, hosp_root, tmp_path / "ds", IngestConfig()).run(workers=1, progress=False)
    assert manifest.preprocess.leads == STANDARD_LEADS
    for split in SPLITS:
        signals, _ = load_split(tmp_path / "ds", split)
        assert signals.shape[1:] == (12, 5000) and len(signals) == manifest.counts[split] > 0
    per_bin = manifest.per_bin
    assert sum(row["discarded"] for row in per_bin.values()) == manifest.discarded_holdout_pairs
    balanced = sum(row[s] for row in per_bin.values() for s in ("val", "cal", "test"))
    assert balanced <= 0.10 * (sum(manifest.counts.values()) + manifest.discarded_holdout_pairs) + 1
    for label, row in per_bin.items():
        total = sum(row.values())
        assert total < 3 or 3 * row["train"] >= total or any(label in w for w in manifest.warnings), label


def test_damaged_records_are_skipped_with_their_reason(reference: Path, synthetic) -> None:
    _, _, damaged = synthetic
    rejected = pd.read_parquet(reference / "rejected.parquet")
    cohort = pd.read_parquet(reference / "cohort.parquet")
    got = dict(zip(rejected["study_id"], rejected["reason"], strict=True))
    for study, reason in damaged.items():
        assert study not in set(cohort["study_id"])
        if study in got:  # only paired ECGs reach the signal phase
            assert got[study] == reason
    manifest = read_manifest(reference)
    for reason, n in pd.Series(list(got.values())).value_counts().items():
        assert manifest.skipped[reason] == n
    assert manifest.skipped["no_lab_in_window"] > 0


def test_interrupted_ingest_resumes_byte_identical(reference: Path, synthetic, tmp_path: Path) -> None:
    ecg_root, hosp_root, _ = synthetic
    out = tmp_path / "ds"
    partial = Ingestor(ecg_root, hosp_root, out, CONFIG).run(workers=1, progress=False, max_shards=2)
    assert partial.status == "partial"
    assert len(list((out / ".work" / "shards").glob("*.npz"))) == 2
    Ingestor(ecg_root, hosp_root, out, CONFIG).run(workers=2, progress=False)
    _same_bytes(reference, out)
    assert not (out / ".work").exists()


def test_killed_ingest_resumes_byte_identical(reference: Path, synthetic, tmp_path: Path) -> None:
    ecg_root, hosp_root, _ = synthetic
    out = tmp_path / "ds"
    args = [sys.executable, "-m", "ecg_k", "ingest", "--ecg-root", str(ecg_root), "--hosp-root", str(hosp_root),
            "--out", str(out), *CLI_CONFIG]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / ".work" / "shards"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (shards.is_dir() and any(shards.glob("*.npz"))):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # really interrupted mid-way
    assert not (out / "manifest.json").exists()
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _same_bytes(reference, out)


def test_ingest_on_a_full_disk_fails_clearly_and_resumes(reference: Path, synthetic, tmp_path: Path) -> None:
    ecg_root, hosp_root, _ = synthetic
    out = tmp_path / "ds"
    args = ["ingest", "--ecg-root", str(ecg_root), "--hosp-root", str(hosp_root), "--out", str(out), *CLI_CONFIG]
    largest_shard = 16 * 5000 * 2 + 64 * 1024  # float16 lead I, plus the npz's other arrays and headers
    full = run_ecgk(args, max_file_bytes=largest_shard)
    assert full.returncode == 1, full.stderr
    assert "out of storage" in full.stderr and "Traceback" not in full.stderr
    assert any((out / ".work" / "shards").glob("*.npz"))  # the shards written before it stay for the resume
    assert not (out / "manifest.json").exists()
    done = run_ecgk(args)
    assert done.returncode == 0, done.stderr
    _same_bytes(reference, out)


def test_rerun_is_a_no_op_and_other_config_is_refused(reference: Path, synthetic, tmp_path: Path) -> None:
    ecg_root, hosp_root, _ = synthetic
    out = tmp_path / "ds"
    shutil.copytree(reference, out)
    before = (out / "manifest.json").read_text()
    Ingestor(ecg_root, hosp_root, out, CONFIG).run(progress=False)
    assert (out / "manifest.json").read_text() == before
    other = CONFIG.model_copy(update={"cohort": CohortConfig(balanced_max_per_bin=3, window_min=30)})
    with pytest.raises(DataInputError, match="other inputs or config"):
        Ingestor(ecg_root, hosp_root, out, other).run(progress=False)
    manifest = Ingestor(ecg_root, hosp_root, out, other).run(progress=False, overwrite=True)
    assert manifest.config.cohort.window_min == 30


def test_cohort_only_then_full(synthetic, reference: Path, tmp_path: Path) -> None:
    ecg_root, hosp_root, _ = synthetic
    out = tmp_path / "ds"
    manifest = Ingestor(ecg_root, hosp_root, out, CONFIG).run(cohort_only=True, progress=False)
    assert manifest.status == "cohort" and (out / "cohort.parquet").is_file()
    assert not (out / "train.signals.npy").exists()
    Ingestor(ecg_root, hosp_root, out, CONFIG).run(progress=False)
    _same_bytes(reference, out)


@pytest.mark.parametrize(("mode", "pairs"), [("exclude", 73), ("keep", 74), ("flag", 74)])
def test_cli_ingest_of_real_demo_reports_missing_waveforms(ecg_demo_root: Path, labs_v1_file: Path,
                                                            tmp_path: Path, mode: str, pairs: int) -> None:
    options = [] if mode == "exclude" else ["--hemolysed-labs", mode]  # exclude is the default
    result = runner.invoke(app, ["ingest", "--ecg-root", str(ecg_demo_root), "--hosp-root", str(labs_v1_file),
                                 "--out", str(tmp_path / "ds"), "--no-progress", "--workers", "1", *options])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "ds")
    assert manifest.skipped["missing_waveform"] == pairs - manifest.discarded_holdout_pairs
    assert manifest.skipped["no_lab_in_window"] == 659 - 74
    assert manifest.skipped.get("hemolysed_lab", 0) == 74 - pairs  # the lost pair, with its reason
    assert manifest.counts == dict.fromkeys(SPLITS, 0)
    assert manifest.preprocess.leads == STANDARD_LEADS
    assert "missing_waveform" in result.output
    comments = manifest.lab_comments
    assert comments is not None
    assert comments["hemolysed_labs"] == mode
    assert comments["lab_rows"] == {"none": 1967, "verified": 10, "hemolysed": 35, "unrecognised": 0}
    outcome = "removed" if mode == "exclude" else "kept"
    assert comments["hemolysed_pairs_per_bin"] == {outcome: {"5.2": 1}}
    assert "35 haemolysed" in result.output and f"{outcome} 1" in result.output
    assert ("labelled with haemolysed K+" in result.output) == (mode == "flag")  # flag warns


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, h: ["--ecg-root", str(d / "nope"), "--hosp-root", str(h)], "not a directory"),
        (lambda d, h: ["--ecg-root", str(h), "--hosp-root", str(h)], "no record_list.csv"),
        (lambda d, h: ["--ecg-root", str(d), "--hosp-root", str(d)], "no labevents"),
        (lambda d, h: ["--ecg-root", str(d), "--hosp-root", str(h), "--leads", "X"], "unknown lead"),
        (lambda d, h: ["--ecg-root", str(d), "--hosp-root", str(h), "--fs", "50"], "invalid option"),
        (lambda d, h: ["--ecg-root", str(d), "--hosp-root", str(h), "--hemolysed-labs", "drop"],
         "--hemolysed-labs must be one of exclude, keep, flag, got 'drop'"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(synthetic, tmp_path: Path, make_args, message: str) -> None:
    ecg_root, hosp_root, _ = synthetic
    result = runner.invoke(app, ["ingest", *make_args(ecg_root, hosp_root), "--out", str(tmp_path / "o"),
                                 "--no-progress"])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_labevents_lacking_a_column(synthetic, tmp_path: Path) -> None:
    ecg_root, _, _ = synthetic
    (tmp_path / "labevents.csv").write_text("subject_id,itemid,value\n1,50971,4.0\n")
    result = runner.invoke(app, ["ingest", "--ecg-root", str(ecg_root), "--hosp-root", str(tmp_path),
                                 "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 2 and "lacks column" in result.output
