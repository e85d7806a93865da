"""Decoding real WFDB records: CinC 2021 (.mat, gain 1000), PTB (1000 Hz, lower-case names), MIMIC headers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg_k.data.waveforms import read_wfdb
from ecg_k.leads import MIMIC_LEAD_ORDER, STANDARD_LEADS
from ecg_k.quality import QualityError, SkipReason


def test_all_cinc_records_decode_in_mv(cinc_dir: Path) -> None:
    headers = sorted(cinc_dir.glob("*.hea"))
    assert len(headers) == 50
    for header in headers:
        record = read_wfdb(header.with_suffix(""))
        raw = wfdb.rdrecord(str(header.with_suffix("")), physical=False)
        assert record.lead_names == STANDARD_LEADS
        assert record.fs == 500 and record.signal.shape == (12, 5000)
        assert raw.adc_gain[0] == 1000
        np.testing.assert_allclose(record.signal[0], (raw.d_signal[:, 0] - raw.baseline[0]) / 1000.0, atol=1e-9)


def test_ptb_record_has_lower_case_names_and_1000_hz(real_data: Path) -> None:
    record = read_wfdb(real_data / "ptb-diagnostic__MIT-LCP-wfdb-python" / "sample-data" / "s0010_re")
    assert record.fs == 1000
    assert record.signal.shape == (15, 38400)
    assert record.lead_names[:6] == ("I", "II", "III", "aVR", "aVL", "aVF")
    assert record.lead_names[12:] == ("vx", "vy", "vz")


@pytest.mark.parametrize("study", ["40689238", "49036311"])
def test_real_mimic_headers(mimic_header_dir: Path, study: str) -> None:
    header = wfdb.rdheader(str(mimic_header_dir / f"s{study}" / study))
    assert tuple(header.sig_name) == MIMIC_LEAD_ORDER
    assert header.adc_gain == [200.0] * 12 and header.fmt == ["16"] * 12
    assert (header.fs, header.sig_len) == (500, 5000)
    assert header.comments == ["<subject_id>: 10000032"]
    with pytest.raises(QualityError) as err:
        read_wfdb(mimic_header_dir / f"s{study}" / study)
    assert err.value.reason == SkipReason.MISSING_WAVEFORM


def write_mimic_style_record(directory: Path, name: str, signal_mv: np.ndarray) -> Path:
    """A record with the exact parameters of the real MIMIC headers (fmt 16, 200 adu/mV, MIMIC order)."""
    digital = np.round(signal_mv.T * 200).astype(np.int16)
    wfdb.wrsamp(
        name, fs=500, units=["mV"] * 12, sig_name=list(MIMIC_LEAD_ORDER), d_signal=digital, fmt=["16"] * 12,
        adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(directory),
    )
    return directory / name


def test_mimic_layout_record_maps_avf_and_avl_by_name(tmp_path: Path) -> None:
    t = np.arange(5000) / 500
    signal = np.stack([np.sin(2 * np.pi * (i + 1) * t) * (i + 1) * 0.1 for i in range(12)])
    path = write_mimic_style_record(tmp_path, "40000001", signal)
    record = read_wfdb(path)
    assert record.lead_names == MIMIC_LEAD_ORDER
    np.testing.assert_allclose(record.signal[MIMIC_LEAD_ORDER.index("aVL")], signal[5], atol=0.003)
    np.testing.assert_allclose(record.signal[MIMIC_LEAD_ORDER.index("aVF")], signal[4], atol=0.003)


def test_truncated_dat_is_unreadable_or_too_short(tmp_path: Path) -> None:
    path = write_mimic_style_record(tmp_path, "40000002", np.zeros((12, 5000)) + 0.1)
    dat = path.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:1001])
    with pytest.raises(QualityError) as err:
        read_wfdb(path)
    assert err.value.reason == SkipReason.UNREADABLE


def test_garbage_header_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "bad.hea").write_text("this is not a header\n")
    with pytest.raises(QualityError) as err:
        read_wfdb(tmp_path / "bad")
    assert err.value.reason == SkipReason.UNREADABLE


def test_a_format_wfdb_does_not_know_is_unreadable(tmp_path: Path) -> None:
    """Found by atheris: wfdb's header parse accepts any digits as a format (here 51), which then has no
    sample size; the reader refuses it instead of raising KeyError."""
    (tmp_path / "r.hea").write_text("r 1 500 10\nr.dat 51 1000.0(0)/mV 16 0 0 0 0 I\n")
    (tmp_path / "r.dat").write_bytes(bytes(20))
    with pytest.raises(QualityError, match="has format 51, not a WFDB signal format") as err:
        read_wfdb(tmp_path / "r")
    assert err.value.reason == SkipReason.UNREADABLE


def test_samples_equal_wfdb_rdrecord_on_real_records(cinc_dir: Path, real_data: Path) -> None:
    """The header is parsed once and the samples read from it: the same mV as ``wfdb.rdrecord``."""
    paths = [*sorted(cinc_dir.glob("*.hea")),
             real_data / "ptb-diagnostic__MIT-LCP-wfdb-python/sample-data/s0010_re.hea"]
    for header in paths:
        record = read_wfdb(header.with_suffix(""))
        reference = wfdb.rdrecord(str(header.with_suffix("")))
        scale = 1e-3 if reference.units[0].lower() in ("uv", "µv", "μv") else 1.0
        np.testing.assert_array_equal(record.signal, reference.p_signal.T * scale)
        assert record.fs == reference.fs
