"""The lean format-16 WFDB writer against ``wfdb.wrsamp``, byte for byte."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import wfdb

from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.synth import wfdb16


def _wrsamp(out: Path, name: str, digital: np.ndarray, fs: float, gain: float, names: list[str],
            when: dt.datetime, comments: list[str]) -> None:
    n = len(names)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * n, sig_name=names, d_signal=digital, fmt=["16"] * n,
                adc_gain=[gain] * n, baseline=[0] * n, base_time=when.time(), base_date=when.date(),
                comments=comments, write_dir=str(out))


@pytest.mark.parametrize(
    ("fs", "gain", "when", "samples"),
    [
        (500.0, 200.0, dt.datetime(2173, 5, 3, 4, 3), 5000),
        (257.5, 1000.0, dt.datetime(2021, 12, 31, 23, 59, 59, 250000), 1031),
        (1000.0, 4.5, dt.datetime(1999, 1, 2, 0, 0, 0), 7),
    ],
)
def test_files_equal_wrsamp_byte_for_byte(tmp_path: Path, fs: float, gain: float, when: dt.datetime,
                                          samples: int) -> None:
    rng = np.random.default_rng(samples)
    names = list(MIMIC_LEAD_ORDER)
    digital = rng.integers(-32768, 32768, size=(samples, len(names))).astype(np.int16)
    digital[:, 0] = -32768  # a negative column sum: the checksum wraps to 0..65535 as wfdb's does
    comments = ["<subject_id>: 10000032", "second comment"]
    (lean := tmp_path / "lean").mkdir()
    (ref := tmp_path / "ref").mkdir()
    wfdb16.write_record(lean, "40689238", digital, fs, gain, "mV", names, when, comments)
    _wrsamp(ref, "40689238", digital, fs, gain, names, when, comments)
    for suffix in (".hea", ".dat"):
        assert (lean / f"40689238{suffix}").read_bytes() == (ref / f"40689238{suffix}").read_bytes()


def test_wrong_sample_type_or_lead_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int16"):
        wfdb16.write_record(tmp_path, "r", np.zeros((10, 2)), 500.0, 200.0, "mV", ["I", "II"],
                            dt.datetime(2000, 1, 1), [])
    with pytest.raises(ValueError, match="2 leads"):
        wfdb16.write_record(tmp_path, "r", np.zeros((10, 3), dtype=np.int16), 500.0, 200.0, "mV", ["I", "II"],
                            dt.datetime(2000, 1, 1), [])
