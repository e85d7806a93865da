"""A lean writer of single-file, format-16 WFDB records: the bytes ``wfdb.wrsamp`` writes, without its per-field
table walks (which cost most of the time of generating a synthetic ECG).

It covers exactly what the generator writes (int16 samples, one ``.dat`` file, baseline 0, one gain and unit for
every lead, a base time and date, comment lines); a test holds its files equal to ``wfdb.wrsamp`` byte for byte.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _rate_text(fs: float) -> str:
    """The sampling rate as wfdb writes it: an integral float without its ``.0``."""
    if isinstance(fs, float) and round(fs, 8) == float(int(fs)):
        return str(int(fs))
    return str(fs)


def _time_text(when: dt.time) -> str:
    """``HH:MM:SS`` with the fraction of a second, if any, stripped of trailing zeros (as wfdb writes it)."""
    text = str(when)
    return text.rstrip("0") if "." in text else text


def header_text(
    name: str, digital: np.ndarray, fs: float, gain: float, units: str, sig_names: Sequence[str],
    when: dt.datetime, comments: Sequence[str],
) -> str:
    """The ``.hea`` text of ``digital`` (int16, shape ``(samples, leads)``) stored in ``<name>.dat``."""
    if digital.dtype != np.int16 or digital.ndim != 2 or digital.shape[1] != len(sig_names):
        raise ValueError(f"digital must be int16 (samples, {len(sig_names)} leads), got {digital.dtype} "
                         f"{digital.shape}")
    checksums = digital.sum(axis=0, dtype=np.int64) % 65536
    lines = [f"{name} {len(sig_names)} {_rate_text(fs)} {digital.shape[0]} {_time_text(when.time())} "
             f"{when.date().strftime('%d/%m/%Y')}"]
    lines += [f"{name}.dat 16 {gain}(0)/{units} 16 0 {int(first)} {int(checksum)} 0 {sig_name}"
              for first, checksum, sig_name in zip(digital[0], checksums, sig_names, strict=True)]
    lines += [f"# {comment}" for comment in comments]
    return "".join(f"{line}\n" for line in lines)


def write_record(
    record_dir: Path, name: str, digital: np.ndarray, fs: float, gain: float, units: str,
    sig_names: Sequence[str], when: dt.datetime, comments: Sequence[str],
) -> None:
    """Write ``<name>.hea`` and ``<name>.dat`` (little-endian int16, samples interleaved by lead) in ``record_dir``."""
    header = header_text(name, digital, fs, gain, units, sig_names, when, comments)
    (record_dir / f"{name}.dat").write_bytes(digital.astype("<i2", copy=False).tobytes(order="C"))
    (record_dir / f"{name}.hea").write_text(header, encoding="utf-8")
