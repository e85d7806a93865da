"""The synthetic ECG-K-DIR generator: MIMIC layout read back by ecg_k's readers, determinism, reuse and
refusal, and K+ effects that are really in the waveforms."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pandas as pd
import pytest
import wfdb

from ecg_k.data.labs import read_patients, read_potassium_labs
from ecg_k.data.record_list import read_record_list
from ecg_k.data.waveforms import read_wfdb
from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.synth import SynthSummary, generate_dataset
from ecg_k.synth.dataset import MANIFEST_NAME, PARTIAL_NAME, TRUTH_NAME
from ecg_k.synth.ecg_model import SimulatedEcg, Subject, draw_subject, potassium_effects, simulate_ecg
from ecg_k.synth.params import SynthParams
from ecg_k.synth.tables import (
    LABEVENTS_COLUMNS,
    PATIENTS_COLUMNS,
    SERUM_POTASSIUM,
    WHOLE_BLOOD_POTASSIUM,
    make_plan,
)

PARAMS = SynthParams()
FS = PARAMS.fs
N_ECGS, SEED = 40, 3
QUANTUM_MV = 1.0 / PARAMS.gain_adu_per_mv


def _generate(out: Path, **kwargs: int) -> SynthSummary:
    defaults = {"n_ecgs": N_ECGS, "seed": SEED, "workers": 1, "progress": False}
    return generate_dataset(out, **(defaults | kwargs))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return _generate(tmp_path_factory.mktemp("synth") / "ds")


@pytest.fixture(scope="module")
def plan():
    """The tables of a larger dataset (no waveforms): enough rows for the rare lab cases."""
    return make_plan(3000, 5, PARAMS.population)


def _ecg_root(summary: SynthSummary) -> Path:
    return summary.out / "mimic-iv-ecg"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- layout, read back with the project's own readers ---------------------------------------------------

def test_summary_and_manifest(dataset: SynthSummary) -> None:
    manifest = json.loads((dataset.out / MANIFEST_NAME).read_text())
    assert dataset.n_ecgs == N_ECGS and not dataset.reused
    assert manifest["request"]["n_ecgs"] == N_ECGS and manifest["request"]["seed"] == SEED
    assert manifest["request"]["model"]["potassium"]["hyper_t_knee"] == PARAMS.potassium.hyper_t_knee
    assert manifest["counts"]["n_subjects"] == dataset.n_subjects
    assert manifest["counts"]["n_lab_rows"] == dataset.n_lab_rows
    assert {"package", "git_commit"} <= set(manifest["code_version"])
    assert list(dataset.k_quantiles) == ["q01", "q05", "q25", "q50", "q75", "q95", "q99"]
    quantiles = list(dataset.k_quantiles.values())
    assert quantiles == sorted(quantiles) and 1.9 <= quantiles[0] and quantiles[-1] <= 7.9
    assert not (dataset.out / PARTIAL_NAME).exists()


def test_record_list_is_v1_layout(dataset: SynthSummary) -> None:
    raw = pd.read_csv(_ecg_root(dataset) / "record_list.csv", dtype=str)
    assert list(raw.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert len(raw) == N_ECGS and raw["study_id"].is_unique
    assert raw["subject_id"].str.fullmatch(r"1\d{7}").all() and raw["study_id"].str.fullmatch(r"\d{8}").all()
    assert (raw["file_name"] == raw["study_id"]).all()
    assert raw["ecg_time"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:00").all()
    subject, study = raw["subject_id"], raw["study_id"]
    expected = "files/p" + subject.str[:4] + "/p" + subject + "/s" + study + "/" + study
    assert (raw["path"] == expected).all()

    records = read_record_list(_ecg_root(dataset))
    assert records["ecg_time"].notna().all() and len(records) == N_ECGS
    assert records["subject_id"].nunique() == dataset.n_subjects


def test_hosp_tables_read_back(dataset: SynthSummary) -> None:
    hosp = dataset.out / "mimic-iv" / "hosp"
    raw = pd.read_csv(hosp / "labevents.csv.gz", dtype=str, keep_default_na=False)
    assert tuple(raw.columns) == LABEVENTS_COLUMNS and len(raw) == dataset.n_lab_rows
    labs, stats = read_potassium_labs(hosp / "labevents.csv.gz", [SERUM_POTASSIUM])
    assert stats.rows_scanned == dataset.n_lab_rows and len(labs) > N_ECGS * 0.8
    assert set(labs["valueuom"]) == {"mEq/L"} and labs["charttime"].notna().all()
    patients = read_patients(hosp)
    assert patients is not None
    records = read_record_list(_ecg_root(dataset))
    assert set(patients["subject_id"]) == set(records["subject_id"])
    assert set(patients["gender"]) <= {"F", "M"}


def test_every_record_reads_as_mimic(dataset: SynthSummary) -> None:
    root = _ecg_root(dataset)
    records = read_record_list(root)
    for row in records.itertuples():
        ecg = read_wfdb(root / row.ecg_path)
        assert ecg.lead_names == MIMIC_LEAD_ORDER and ecg.fs == FS and ecg.signal.shape == (12, 5000)
        header = wfdb.rdheader(str(root / row.ecg_path))
        assert set(header.fmt) == {"16"} and set(header.adc_gain) == {200.0} and set(header.baseline) == {0}
        assert set(header.units) == {"mV"}
        assert pd.Timestamp.combine(header.base_date, header.base_time) == row.ecg_time
        assert header.comments == [f"<subject_id>: {row.subject_id}"]


def test_header_has_the_shape_of_a_real_mimic_header(dataset: SynthSummary, mimic_header_dir: Path) -> None:
    real = (mimic_header_dir / "s40689238" / "40689238.hea").read_text().splitlines()
    path = read_record_list(_ecg_root(dataset))["ecg_path"][0]
    ours = (_ecg_root(dataset) / f"{path}.hea").read_text().splitlines()

    def shape(line: str) -> str:
        return re.sub(r"-?\d+", "N", line)

    assert [shape(line) for line in ours] == [shape(line) for line in real]


def test_limb_leads_obey_einthoven_and_goldberger(dataset: SynthSummary) -> None:
    root = _ecg_root(dataset)
    for path in read_record_list(root)["ecg_path"][:10]:
        s = dict(zip(MIMIC_LEAD_ORDER, read_wfdb(root / path).signal, strict=True))
        tolerance = 1.5 * QUANTUM_MV + 1e-9  # each lead is rounded on its own
        assert np.abs(s["III"] - (s["II"] - s["I"])).max() <= tolerance
        assert np.abs(s["aVR"] + (s["I"] + s["II"]) / 2).max() <= tolerance
        assert np.abs(s["aVL"] - (s["I"] - s["II"] / 2)).max() <= tolerance
        assert np.abs(s["aVF"] - (s["II"] - s["I"] / 2)).max() <= tolerance


# --- determinism, reuse, refusal, argument errors ---------------------------------------------------------

def test_byte_identical_whatever_the_workers(dataset: SynthSummary, tmp_path: Path) -> None:
    parallel = _generate(tmp_path / "two", workers=2)
    assert parallel.n_lab_rows == dataset.n_lab_rows
    assert _files(parallel.out) == _files(dataset.out)


def test_complete_dataset_is_reused_and_anything_else_refused(dataset: SynthSummary, tmp_path: Path) -> None:
    again = _generate(dataset.out)
    assert again.reused and again.n_ecgs == dataset.n_ecgs and again.elapsed_s < 1.0
    with pytest.raises(FileExistsError, match="another synthetic dataset .* differs in seed"):
        _generate(dataset.out, seed=SEED + 1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        _generate(foreign, n_ecgs=2)
    assert (foreign / "notes.txt").read_text() == "keep me"
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(FileExistsError, match="not a directory"):
        _generate(a_file, n_ecgs=2)


def test_interrupted_or_damaged_run_of_the_same_request_is_redone(tmp_path: Path) -> None:
    first = _generate(tmp_path / "ds", n_ecgs=3)
    files = _files(first.out)
    manifest = first.out / MANIFEST_NAME
    request = json.loads(manifest.read_text())["request"]
    manifest.unlink()
    (first.out / PARTIAL_NAME).write_text(json.dumps(request))
    (first.out / TRUTH_NAME).unlink()
    redone = _generate(first.out, n_ecgs=3)
    assert not redone.reused and _files(redone.out) == files
    (first.out / TRUTH_NAME).unlink()  # complete manifest, a file lost: rewritten, not reused
    assert not _generate(first.out, n_ecgs=3).reused and _files(first.out) == files


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_ecgs": 0}, "n_ecgs must be at least 1"),
        ({"n_ecgs": 2.5}, "n_ecgs must be an integer"),
        ({"seed": -1}, "seed must be non-negative"),
        ({"workers": 0}, "workers must be at least 1"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _generate(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


# --- the tables: K+ distribution and the lab cases a reader must handle ----------------------------------

def test_k_distribution_is_realistic_and_imbalanced(plan) -> None:
    k = plan.ecgs["k_true"].to_numpy()
    assert 0.6 < np.mean((k >= 3.5) & (k <= 5.0)) < 0.85
    assert 0.01 < np.mean(k >= 6.0) < 0.08 and 0.01 < np.mean(k < 3.0) < 0.1
    assert k.min() >= 1.9 and k.max() <= 7.9 and k.min() < 2.6 and k.max() > 7.0
    assert 2.5 < len(plan.ecgs) / plan.ecgs["subject_id"].nunique() < 3.5


def test_labs_around_ecgs_have_the_real_world_cases(plan) -> None:
    labs = plan.labevents
    assert set(labs["itemid"]) == {SERUM_POTASSIUM, WHOLE_BLOOD_POTASSIUM, 50983, 50912, 50902}
    assert labs["labevent_id"].is_unique
    assert labs["charttime"].str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:00").all()
    serum = labs[labs["itemid"] == SERUM_POTASSIUM].copy()
    assert set(serum["valueuom"]) == {"mEq/L"}
    missing = serum["valuenum"] == ""
    assert 0.005 < missing.mean() < 0.04 and (serum.loc[missing, "value"] == "___").all()
    assert serum.loc[~missing, "valuenum"].str.fullmatch(r"\d+\.\d").all()
    values = serum.loc[~missing, "valuenum"].astype(float)
    assert 1 <= values.isin([12.5, 0.8]).sum() <= 0.01 * len(values)

    serum = serum[~missing]
    serum["charttime"] = pd.to_datetime(serum["charttime"])
    pairs = plan.ecgs.merge(serum[["subject_id", "charttime", "valuenum"]], on="subject_id")
    pairs["gap_min"] = (pairs["charttime"] - pairs["ecg_time"]).dt.total_seconds().abs() / 60
    in_window = pairs[pairs["gap_min"] <= 60].groupby("study_id")
    n_in_window = in_window.size().reindex(plan.ecgs["study_id"], fill_value=0)
    assert 0.8 < (n_in_window >= 1).mean() < 0.97  # most ECGs pair, some have no lab in the window
    assert (in_window["valuenum"].nunique() > 1).sum() > 0.03 * len(plan.ecgs)  # two different labs
    near = pairs[pairs["gap_min"] <= 60]
    error = (near["valuenum"].astype(float) - near["k_true"]).abs()
    assert error.median() < 0.15  # the label is the true K+ plus lab noise


def test_patients_table_matches_the_mimic_columns(plan) -> None:
    patients = plan.patients
    assert tuple(patients.columns) == PATIENTS_COLUMNS
    assert patients["subject_id"].is_unique and set(patients["subject_id"]) == set(plan.ecgs["subject_id"])
    dod = patients.loc[patients["dod"] != "", "dod"]
    assert 0 < len(dod) < 0.2 * len(patients) and dod.str.fullmatch(r"\d{4}-\d\d-\d\d").all()


# --- the waveform model: K+ effects are in the signal -----------------------------------------------------

def _average_beat(
    ecg: SimulatedEcg, lead: str, before_s: float = 0.25, after_s: float = 0.7
) -> tuple[np.ndarray, int]:
    """Mean beat of one lead around the true R peaks, baseline removed; returns it and the R index."""
    signal = ecg.signal[MIMIC_LEAD_ORDER.index(lead)]
    before, after = int(before_s * FS), int(after_s * FS)
    peaks = np.rint(ecg.r_times_s * FS).astype(int)
    peaks = peaks[(peaks >= before) & (peaks + after < signal.size)]
    beat = np.mean([signal[p - before:p + after] for p in peaks], axis=0)
    return beat - np.median(beat), before


def _t_over_r(ecg: SimulatedEcg) -> float:
    beat, r = _average_beat(ecg, "II")
    return np.abs(beat[r + int(0.12 * FS):r + int(0.45 * FS)]).max() / np.abs(beat[r - 15:r + 15]).max()


def _late_energy(ecg: SimulatedEcg) -> float:
    """Mean power 0.40-0.65 s after R at 60 bpm: after a normal T, where the U wave of hypokalemia sits."""
    beat, r = _average_beat(ecg, "II")
    return float(np.mean(beat[r + int(0.40 * FS):r + int(0.65 * FS)] ** 2))


def _subjects(n: int) -> list[Subject]:
    return [draw_subject(np.random.default_rng([101, j]), PARAMS.morphology) for j in range(n)]


def _simulate(subject: Subject, k: float, seed: list[int]) -> SimulatedEcg:
    return simulate_ecg(subject, k, np.random.default_rng(seed), PARAMS)


def test_hyperkalemia_gives_taller_t_relative_to_r() -> None:
    rng = np.random.default_rng(7)
    normal, high = [], []
    for j, subject in enumerate(_subjects(30)):
        normal.append(_t_over_r(_simulate(subject, rng.uniform(4.0, 5.0), [1, j])))
        high.append(_t_over_r(_simulate(subject, rng.uniform(6.0, 7.5), [2, j])))
    assert np.mean(high) > 2.0 * np.mean(normal)
    assert np.mean(np.array(high) > np.array(normal)) > 0.9


def test_hypokalemia_gives_u_wave_energy() -> None:
    rng = np.random.default_rng(8)
    normal, low = [], []
    for j, subject in enumerate(_subjects(30)):
        subject = dataclasses.replace(subject, heart_rate_bpm=60.0)
        normal.append(_late_energy(_simulate(subject, rng.uniform(4.0, 5.0), [3, j])))
        low.append(_late_energy(_simulate(subject, rng.uniform(2.0, 2.9), [4, j])))
    assert np.mean(low) > 5.0 * np.mean(normal)
    assert np.mean(np.array(low) > np.array(normal)) > 0.9


def test_potassium_effects_are_continuous_and_point_the_clinical_way() -> None:
    k = np.linspace(1.9, 7.9, 601)
    e = potassium_effects(k, PARAMS.potassium)
    for name in ("t_amp", "t_width", "qrs_scale", "p_amp", "u_mv"):
        assert np.abs(np.diff(getattr(e, name))).max() < 0.05, name  # no jumps on a 0.01 grid
    assert np.all(np.diff(e.t_amp) > 0)  # flat T when low, peaked T when high, mild slope between
    at = {v: i for i, v in enumerate(np.round(k, 2))}
    assert e.qrs_scale[at[6.0]] < 1.05 < 1.3 < e.qrs_scale[at[7.5]]  # QRS widens mainly above 6.5
    assert e.p_amp[at[5.5]] > 0.95 > 0.5 > e.p_amp[at[7.0]] and e.pr_extra_s[at[7.0]] > 0.03
    assert e.t_width[at[7.0]] < 0.7 and e.t_symmetry[at[7.0]] < 0.2  # narrow and symmetric
    assert e.u_mv[at[2.5]] > 0.2 > 0.01 > e.u_mv[at[4.5]] and e.st_mv[at[2.5]] < -0.05
    assert e.qt_extra_s[at[2.5]] > 0.03


def test_neurokit_finds_the_generated_heart_rate(dataset: SynthSummary) -> None:
    root = _ecg_root(dataset)
    truth = pd.read_csv(dataset.out / TRUTH_NAME)
    paths = read_record_list(root).set_index("study_id")["ecg_path"]
    for row in truth.itertuples():
        lead_2 = read_wfdb(root / paths[row.study_id]).signal[MIMIC_LEAD_ORDER.index("II")]
        _, info = nk.ecg_peaks(lead_2, sampling_rate=int(FS))
        rate = 60.0 / np.mean(np.diff(info["ECG_R_Peaks"]) / FS)
        assert rate == pytest.approx(row.heart_rate_bpm, rel=0.1)
