"""The shared preprocessing: QC reasons, filter, resample, crop/pad, z-score, on real and generated ECGs."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from ecg_k.data.waveforms import read_wfdb
from ecg_k.leads import STANDARD_LEADS
from ecg_k.preprocessing import MAX_INPUT_DURATION_S, PreprocessConfig, _bandpass_design, crop_for_filter, preprocess
from ecg_k.quality import QualityError, SkipReason

FS = 500.0


def tone(freq_hz: float, fs: float = FS, seconds: float = 10.0, amp: float = 1.0) -> np.ndarray:
    t = np.arange(int(fs * seconds)) / fs
    return amp * np.sin(2 * np.pi * freq_hz * t)


def spectrum_peak_hz(x: np.ndarray, fs: float) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float(np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(power)])


def test_output_shape_and_zscore_on_real_cinc(cinc_dir: Path) -> None:
    config = PreprocessConfig(leads="all")
    for header in sorted(cinc_dir.glob("*.hea"))[:10]:
        record = read_wfdb(header.with_suffix(""))
        out = preprocess(record.signal, record.fs, record.lead_names, config)
        assert out.shape == (12, 5000) and out.dtype == np.float32
        assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4


def test_ptb_1000_hz_is_resampled_to_500_and_cropped(real_data: Path) -> None:
    record = read_wfdb(real_data / "ptb-diagnostic__MIT-LCP-wfdb-python" / "sample-data" / "s0010_re")
    out = preprocess(record.signal, record.fs, record.lead_names, PreprocessConfig(leads="all"))
    assert out.shape == (12, 5000)
    # the 1000 Hz lead II and the output lead II share their dominant (QRS-rich) rhythm content
    lead_ii_in = record.signal[1, :10000]
    corr = np.corrcoef(out[1], (lead_ii_in - lead_ii_in.mean())[::2])[0, 1]
    assert corr > 0.9


def test_leads_are_selected_by_name_in_config_order() -> None:
    signal = np.stack([tone(1.0 + i) for i in range(12)])
    out = preprocess(signal, FS, STANDARD_LEADS, PreprocessConfig(leads="aVF,I"))
    assert spectrum_peak_hz(out[0], FS) == pytest.approx(6.0, abs=0.1)
    assert spectrum_peak_hz(out[1], FS) == pytest.approx(1.0, abs=0.1)


def test_bandpass_removes_wander_and_mains_but_keeps_ecg_band() -> None:
    names = ("I",)
    config = PreprocessConfig(leads="I")
    kept = preprocess(tone(10.0)[None], FS, names, config)
    assert spectrum_peak_hz(kept[0], FS) == pytest.approx(10.0, abs=0.1)
    mixed = tone(10.0) + tone(0.1) + tone(60.0)  # equal input power: compare gains
    out = preprocess(mixed[None], FS, names, config)
    power = np.abs(np.fft.rfft(out[0])) ** 2
    freqs = np.fft.rfftfreq(5000, 1 / FS)
    assert power[np.argmin(np.abs(freqs - 10))] > 100 * power[np.argmin(np.abs(freqs - 0.1))]
    assert power[np.argmin(np.abs(freqs - 10))] > 100 * power[np.argmin(np.abs(freqs - 60))]


def test_resampling_keeps_frequency_from_any_supported_rate() -> None:
    for fs in (250.0, 360.0, 1000.0, 257.0):
        out = preprocess(tone(7.0, fs=fs)[None], fs, ("I",), PreprocessConfig(leads="I"))
        assert out.shape == (1, 5000)
        assert spectrum_peak_hz(out[0], FS) == pytest.approx(7.0, abs=0.1)


def test_long_records_are_cropped_and_short_ones_padded_with_zero() -> None:
    long = preprocess(tone(5.0, seconds=12)[None], FS, ("I",), PreprocessConfig(leads="I"))
    assert long.shape == (1, 5000)
    short = preprocess(tone(5.0, seconds=9)[None], FS, ("I",), PreprocessConfig(leads="I"))
    assert short.shape == (1, 5000)
    assert np.all(short[0, 4500:] == 0) and np.abs(short[0, :4500]).max() > 1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: (np.where(np.arange(5000) == 7, np.nan, tone(5.0))[None], FS), SkipReason.NAN),
        (lambda: (np.full((1, 5000), 0.3), FS), SkipReason.FLAT_LEAD),
        (lambda: (np.clip(tone(1.0, amp=2.0), -1.0, 1.0)[None], FS), SkipReason.SATURATION),
        (lambda: (tone(5.0, seconds=3)[None], FS), SkipReason.TOO_SHORT),
        (lambda: (tone(5.0, fs=50.0)[None], 50.0), SkipReason.UNSUPPORTED_RATE),
        (lambda: (tone(5.0, amp=40.0)[None], FS), SkipReason.AMPLITUDE),
    ],
)
def test_quality_gate_reasons(make, reason: SkipReason) -> None:
    signal, fs = make()
    with pytest.raises(QualityError) as err:
        preprocess(signal, fs, ("I",), PreprocessConfig(leads="I"))
    assert err.value.reason == reason


def test_missing_lead_reason_names_every_required_lead() -> None:
    with pytest.raises(QualityError) as err:
        preprocess(tone(5.0)[None], FS, ("II",), PreprocessConfig(leads="I"))
    assert err.value.reason == SkipReason.MISSING_LEAD
    eleven = np.stack([tone(5.0 + i) for i in range(11)])
    with pytest.raises(QualityError, match="required leads: " + ", ".join(STANDARD_LEADS)) as err:
        preprocess(eleven, FS, [name for name in STANDARD_LEADS if name != "V1"], PreprocessConfig())
    assert err.value.reason == SkipReason.MISSING_LEAD and "'V1'" in str(err.value)


def test_real_ecg_is_not_flagged_as_saturated_or_flat(cinc_dir: Path) -> None:
    config = PreprocessConfig(leads="all")
    reasons = []
    for header in sorted(cinc_dir.glob("*.hea")):
        record = read_wfdb(header.with_suffix(""))
        try:
            preprocess(record.signal, record.fs, record.lead_names, config)
        except QualityError as err:
            reasons.append(err.reason)
    assert len(reasons) <= 5, reasons


@pytest.mark.parametrize(
    "kwargs", [{"bandpass_hz": (40.0, 0.5)}, {"leads": "I,Q"}, {"min_duration_s": 12.0}, {"normalization": "minmax"}]
)
def test_invalid_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PreprocessConfig(**kwargs)


def test_config_digest_is_stable_and_sensitive() -> None:
    assert PreprocessConfig().digest() == PreprocessConfig(leads="all").digest()
    assert PreprocessConfig(leads="I").digest() == PreprocessConfig(leads=["I"]).digest()
    assert PreprocessConfig(leads="I").digest() != PreprocessConfig(leads="II").digest()


def test_default_is_the_twelve_leads_in_standard_order() -> None:
    assert PreprocessConfig().leads == STANDARD_LEADS
    assert PreprocessConfig(leads="I,II").leads == ("I", "II")


def _per_lead_reference(signal: np.ndarray, fs: float, config: PreprocessConfig) -> np.ndarray:
    """The pipeline before vectorisation: crop, ``sosfiltfilt`` and ``resample_poly`` one lead at a time, then
    z-score."""
    sos = sps.butter(config.filter_order, config.bandpass_hz, btype="bandpass", fs=fs, output="sos")
    leads = [sps.sosfiltfilt(sos, lead.astype(np.float64)) for lead in crop_for_filter(signal, fs, config)]
    if fs != config.fs:
        leads = [sps.resample_poly(lead, int(config.fs), int(fs)) for lead in leads]
    cropped = np.stack(leads)[:, : config.n_samples]
    return ((cropped - cropped.mean()) / cropped.std()).astype(np.float32)


def test_vectorised_filter_and_resample_equal_the_per_lead_pipeline_on_real_records(
    cinc_dir: Path, real_data: Path
) -> None:
    config = PreprocessConfig(leads="all")
    paths = [*sorted(cinc_dir.glob("*.hea")),
             real_data / "ptb-diagnostic__MIT-LCP-wfdb-python/sample-data/s0010_re.hea"]
    compared = 0
    for header in paths:
        record = read_wfdb(header.with_suffix(""))
        try:
            out = preprocess(record.signal, record.fs, record.lead_names, config)
        except QualityError:
            continue
        order = [record.lead_names.index(name) for name in config.leads]
        np.testing.assert_allclose(out, _per_lead_reference(record.signal[order], record.fs, config), rtol=0, atol=1e-6)
        compared += 1
    assert compared >= 46


def test_saturation_names_the_first_clipped_lead_and_its_rail() -> None:
    clean, clipped_low = tone(1.3), np.clip(tone(1.0, amp=2.0), -1.0, None)
    signal = np.stack([clean, clipped_low, np.clip(tone(1.0, amp=2.0), None, 1.5)])
    with pytest.raises(QualityError, match=r"lead II saturates at -1\.000 mV") as err:
        preprocess(signal, FS, ("I", "II", "III"), PreprocessConfig(leads="I,II,III"))
    assert err.value.reason == SkipReason.SATURATION
    short_flat_top = clean.copy()
    short_flat_top[100:149] = clean.max()  # 49 samples at the maximum: under the 50-sample (0.1 s) limit
    preprocess(short_flat_top[None], FS, ("I",), PreprocessConfig(leads="I"))


def test_a_record_longer_than_the_cap_is_refused_as_too_long() -> None:
    config = PreprocessConfig(leads="I")
    accepted = tone(1.1, seconds=MAX_INPUT_DURATION_S)[None] + 0.01 * np.random.default_rng(0).standard_normal(
        int(FS * MAX_INPUT_DURATION_S))
    assert preprocess(accepted, FS, ["I"], config).shape == (1, 5000)
    longer = np.concatenate([accepted, accepted[:, :1]], axis=1)
    with pytest.raises(QualityError) as refused:
        preprocess(longer, FS, ["I"], config)
    assert refused.value.reason is SkipReason.TOO_LONG and "60 s" in str(refused.value)


def test_cropping_before_the_filter_changes_the_output_by_under_1e_3_sd(tiny_cinc_dir: Path) -> None:
    """The real 10 s record tiled to 60 s: the output of the first 10 s, cropped with the filter's margin before
    filtering, against the same steps on the whole 60 s (the order before this change)."""
    config = PreprocessConfig(leads="all")
    record = read_wfdb(tiny_cinc_dir / "E07500")
    long = np.tile(record.signal, (1, 6))
    cropped = crop_for_filter(long, record.fs, config)
    assert cropped.shape[1] == int((10 + 3 / 0.5) * record.fs)
    sos = _bandpass_design(record.fs, *config.bandpass_hz, config.filter_order).sos
    whole = sps.sosfiltfilt(sos, long, axis=1)[:, :5000]
    window = sps.sosfiltfilt(sos, cropped, axis=1)[:, :5000]
    assert np.abs(window - whole).max() < 1e-3 * whole.std()


def test_memory_of_one_record_is_bounded_by_the_window_not_the_input_length() -> None:
    """The stated bound: preprocessing allocates at most 5 float64 copies of the filtered window
    (leads x (duration_s + margin) x fs), whatever the input's length up to the cap. Measured with tracemalloc
    on 12 leads at the highest accepted rate (10 kHz): the 60 s input peaks where a 16 s input does (~59 MiB);
    filtering the whole 60 s first peaked at ~4 times that."""
    config = PreprocessConfig(leads="all")
    fs = config.max_input_fs
    window_bytes = 8 * 12 * (config.duration_s + 3 / config.bandpass_hz[0]) * fs
    peaks = {}
    for seconds in (16.0, MAX_INPUT_DURATION_S):
        n = int(seconds * fs)
        signal = (np.sin(2 * np.pi * 1.1 * np.arange(n) / fs)[None]
                  + 0.05 * np.random.default_rng(1).standard_normal((12, n))).astype(np.float32)
        tracemalloc.start()
        try:
            preprocess(signal, fs, STANDARD_LEADS, config)
            peaks[seconds] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[MAX_INPUT_DURATION_S] <= 5 * window_bytes, peaks
    assert peaks[MAX_INPUT_DURATION_S] <= 1.05 * peaks[16.0], peaks
