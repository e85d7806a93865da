"""The signal-quality gate on the model input: clean synthetic and real ECGs pass; signals that are not
ECGs (noise, hum, sines, sawtooth, chirp, random walk, pulses, spikes, electrode motion) are low_quality."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import neurokit2 as nk
import numpy as np
import pytest
from scipy import signal as sps

from ecg_k.data.waveforms import read_wfdb
from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.preprocessing import PreprocessConfig, preprocess
from ecg_k.quality import QualityError, SkipReason
from ecg_k.signal_quality import SignalQualityConfig, check_signal_quality, ecg_clean
from ecg_k.synth.ecg_model import draw_subject, simulate_ecg
from ecg_k.synth.params import SynthParams

FS = 500.0
N = 5000
GATE = SignalQualityConfig()
TWELVE = PreprocessConfig(leads=MIMIC_LEAD_ORDER)


def _electrode_motion(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Band-limited (0.3-12 Hz) noise in bursts, as electrode motion draws it: no repeating beat."""
    bursts = np.repeat(rng.random(10) < 0.5, t.size // 10) * 2 + 0.3
    return sps.sosfiltfilt(sps.butter(2, [0.3, 12], "bandpass", fs=FS, output="sos"), rng.normal(0, 1, t.size)) * bursts


NON_ECGS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "white noise": lambda t, rng: rng.normal(0, 1, t.size),
    "uniform noise": lambda t, rng: rng.uniform(-1, 1, t.size),
    "50 Hz hum": lambda t, rng: np.sin(2 * np.pi * 50 * t) + 0.01 * rng.normal(0, 1, t.size),
    "1 Hz sine": lambda t, rng: np.sin(2 * np.pi * t),
    "sawtooth": lambda t, rng: sps.sawtooth(2 * np.pi * 1.2 * t),
    "square wave": lambda t, rng: np.sign(np.sin(2 * np.pi * 1.1 * t)),
    "chirp": lambda t, rng: sps.chirp(t, 0.5, 10, 40),
    "random walk": lambda t, rng: np.cumsum(rng.normal(0, 0.05, t.size)),
    "pulse train": lambda t, rng: (np.arange(t.size) % 400 < 10) + 0.02 * rng.normal(0, 1, t.size),
    "flat line with spikes": lambda t, rng: 3.0 * (rng.random(t.size) < 0.002) + rng.normal(0, 0.03, t.size),
    "flat line with regular spikes": lambda t, rng: 3.0 * (np.arange(t.size) % 430 == 0)
    + rng.normal(0, 0.03, t.size),
    "electrode motion": _electrode_motion,
}


CASES = [(name, leads) for name in NON_ECGS for leads in (("I",), ("I", "II"), MIMIC_LEAD_ORDER)
         if not (name == "electrode motion" and len(leads) == 1)]
"""Electrode motion is refused with two leads or more (its noise does not line up across electrodes); one
lead of band-limited noise can look like a repeating beat, a stated limit of single-lead models."""


@pytest.mark.parametrize(("name", "leads"), CASES)
def test_non_ecg_signals_are_low_quality(name: str, leads: tuple[str, ...]) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(N) / FS
    raw = np.stack([NON_ECGS[name](t, rng) + 1e-3 * rng.normal(0, 1, N) for _ in MIMIC_LEAD_ORDER])
    config = PreprocessConfig(leads=leads)
    with pytest.raises(QualityError) as info:
        check_signal_quality(preprocess(raw, FS, MIMIC_LEAD_ORDER, config), config.fs, GATE)
    assert info.value.reason is SkipReason.LOW_QUALITY and "not a usable ECG" in str(info.value)


def test_at_least_99_percent_of_clean_synthetic_ecgs_pass_and_the_cost() -> None:
    rng = np.random.default_rng(11)
    params = SynthParams()
    inputs = [preprocess(simulate_ecg(draw_subject(rng, params.morphology), float(k), rng, params).signal, FS,
                         MIMIC_LEAD_ORDER, TWELVE) for k in rng.uniform(1.5, 9.0, 200)]
    started = time.perf_counter()
    refused = []
    for model_input in inputs:
        try:
            check_signal_quality(model_input, FS, GATE)
        except QualityError as err:
            refused.append(str(err))
    per_ecg_ms = (time.perf_counter() - started) / len(inputs) * 1e3
    print(f"signal-quality gate: {len(refused)}/{len(inputs)} clean synthetic 12-lead ECGs refused, "
          f"{per_ecg_ms:.1f} ms per ECG")
    assert len(refused) <= 2, refused


def _real_records(root: Path) -> list[Path]:
    return sorted(path.with_suffix("") for path in root.rglob("*.hea")
                  if any(path.with_suffix(s).is_file() for s in (".dat", ".mat")))


@pytest.mark.parametrize("leads", [("I",), ("I", "II"), MIMIC_LEAD_ORDER])
def test_real_cinc_and_ptb_records_pass(real_data: Path, leads: tuple[str, ...]) -> None:
    config = PreprocessConfig(leads=leads)
    checked = 0
    for path in _real_records(real_data):
        record = read_wfdb(path)
        try:
            model_input = preprocess(record.signal, record.fs, record.lead_names, config)
        except QualityError:  # a flat or saturated lead: refused before the gate, for another reason
            continue
        check_signal_quality(model_input, config.fs, GATE)
        checked += 1
    assert checked >= 40


@pytest.mark.parametrize("rate", [100, 250, 500, 1000])
def test_ecg_clean_equals_neurokits_on_real_and_noise_leads(tiny_data: Path, rate: int) -> None:
    """The gate's cleaning (its high-pass designed once per rate) is neurokit2's ``ecg_clean``, sample for
    sample, on every lead of a real record resampled to ``rate`` and on white noise."""
    record = read_wfdb(tiny_data / "cinc2021" / "E07500")
    leads = sps.resample_poly(record.signal, rate, int(record.fs), axis=1)
    noise = np.random.default_rng(rate).normal(size=(1, 10 * rate))
    for lead in np.vstack([leads, noise]):
        np.testing.assert_array_equal(ecg_clean(lead, rate), nk.ecg_clean(lead, sampling_rate=rate, method="neurokit"))
