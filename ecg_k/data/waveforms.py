"""WFDB records read through ``wfdb``: physical units (mV from the header gains), leads named.

:func:`read_wfdb` returns a record with a finite positive rate, one row per lead under a distinct printable
name and at most :data:`MAX_SAMPLES` samples, or raises :class:`QualityError`. The header is checked before
any sample is read: wfdb parses a record line by its longest valid prefix (``500e9`` reads as 500 Hz,
``nan`` and ``-500`` as its 250 Hz default), allocates what the header declares (a skew or a FLAC file can
declare GiB), and its line patterns backtrack quadratically on long lines.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb
from wfdb.io import _signal
from wfdb.io.header import parse_header_content, rx_record

from ecg_k.leads import canonical_lead_name
from ecg_k.quality import QualityError, SkipReason

_TO_MV = {"mv": 1.0, "millivolt": 1.0, "uv": 1e-3, "μv": 1e-3, "µv": 1e-3, "v": 1e3}
MAX_SAMPLES = 2**24
"""Most samples (all leads, skew included) a header may declare: 12 leads x 23 min at 1 kHz, 128 MiB as mV."""
MAX_LINE_CHARS = 1024
"""Longest record or signal line: wfdb's patterns take 0.2 s on a 4 KiB line, 32 s on a 60 KB one."""


@dataclass(frozen=True)
class EcgRecord:
    """A decoded ECG: ``signal`` in mV, shape ``(leads, samples)``; ``lead_names`` canonical."""

    signal: np.ndarray
    fs: float
    lead_names: tuple[str, ...]


def _unit_scale(unit: str | None, lead: str) -> float:
    key = (unit or "mV").strip().lower()  # WFDB's default unit is mV; CinC writes "mv"
    if key not in _TO_MV:
        raise QualityError(SkipReason.UNIT, f"lead {lead} has unit {unit!r}; expected mV or uV")
    return _TO_MV[key]


def _unreadable(record_path: Path, err: Exception) -> QualityError:
    return QualityError(SkipReason.UNREADABLE, f"cannot decode {record_path}: {type(err).__name__}: {err}")


def _check_lines(header_path: Path, lines: list[str]) -> None:
    """Reject over-long lines, and a record line that wfdb would misread, that names segments, or that
    declares another number of signals than the header describes (wfdb sizes its lists by that number)."""
    long_lines = [i + 1 for i, line in enumerate(lines) if len(line) > MAX_LINE_CHARS]
    if long_lines:
        raise QualityError(SkipReason.UNREADABLE, f"{header_path}: record/signal line(s) {long_lines[:5]} "
                                                  f"exceed {MAX_LINE_CHARS} characters")
    record_line = lines[0] if lines else ""
    parsed = rx_record.match(record_line)
    fields = record_line.split()
    rate = fields[2].split("/")[0] if len(fields) > 2 else ""  # "fs[/counter_freq[(base_counter)]]"
    if parsed is None or parsed["fs"] != rate or record_line[parsed.end():].strip():
        raise QualityError(SkipReason.UNREADABLE, f"{header_path}: unparsable record line {record_line!r:.120}")
    if parsed["n_seg"]:
        raise QualityError(SkipReason.UNREADABLE, f"{header_path}: multi-segment records are not supported")
    if (parsed["n_sig"].lstrip("0") or "0") != str(len(lines) - 1):
        raise QualityError(SkipReason.UNREADABLE, f"{header_path}: the record line declares {parsed['n_sig']:.20} "
                                                  f"signals, the header describes {len(lines) - 1}")


def _check_header(record_path: Path, header_path: Path) -> wfdb.Record:
    """Reject, before any sample is read, a header whose lines fail :func:`_check_lines`, a rate that is not
    positive, more than :data:`MAX_SAMPLES` samples, or lead names that are missing, repeated or unprintable.
    Returns the parsed header, from which :func:`_read_samples` reads the samples."""
    _check_lines(header_path, parse_header_content(header_path.read_text(encoding="ascii", errors="ignore"))[0])
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as err:  # as in read_wfdb: any failure to parse means unreadable
        raise _unreadable(record_path, err) from err
    if not math.isfinite(float(header.fs)) or header.fs <= 0:  # wfdb makes an integral rate an int, of any size
        raise QualityError(SkipReason.UNSUPPORTED_RATE,
                           f"{header_path} declares a sampling rate of {header.fs} Hz")
    skew = max((s or 0 for s in header.skew or ()), default=0)
    declared = ((header.sig_len or 0) + skew) * sum(header.samps_per_frame or ())
    if declared > MAX_SAMPLES:
        raise QualityError(SkipReason.UNREADABLE,
                           f"{header_path} declares {declared} samples; at most {MAX_SAMPLES}")
    names = [canonical_lead_name(name or "") for name in header.sig_name or ()]
    unnamed = [i + 1 for i, name in enumerate(names) if not name]
    if unnamed:
        raise QualityError(SkipReason.MISSING_LEAD, f"{header_path}: signal(s) {unnamed} have no lead name")
    if len(set(names)) != len(names) or not all(name.isprintable() for name in names):
        raise QualityError(SkipReason.UNREADABLE, f"{header_path}: lead names repeat or hold control characters "
                                                  f"{names!r:.200}")
    return header


def _read_samples(record_path: Path, record: wfdb.Record) -> wfdb.Record:
    """Fill ``p_signal`` of a checked single-segment header with the steps ``wfdb.rdrecord`` takes after its own
    header parse (wfdb 4.3.1, pinned; default arguments), so each header is parsed once: the parse costs
    more than reading the samples. A test holds the result equal to ``wfdb.rdrecord`` on real records."""
    dir_name = os.path.abspath(os.path.dirname(record_path))
    if record.sig_len is None:
        record.sig_len = _signal._infer_sig_len(
            file_name=record.file_name[0], fmt=record.fmt[0], byte_offset=record.byte_offset[0],
            tsamps_per_frame=sum(spf for name, spf in zip(record.file_name, record.samps_per_frame, strict=True)
                                 if name == record.file_name[0]),
            dir_name=dir_name, pn_dir=None,
        )
    channels = list(range(record.n_sig))
    record.check_read_inputs(0, record.sig_len, channels, True, True, 64)
    record.e_d_signal = _signal._rd_segment(
        file_name=record.file_name, dir_name=dir_name, pn_dir=None, fmt=record.fmt, n_sig=record.n_sig,
        sig_len=record.sig_len, byte_offset=record.byte_offset, samps_per_frame=record.samps_per_frame,
        skew=record.skew, init_value=record.init_value, sampfrom=0, sampto=record.sig_len, channels=channels,
        ignore_skew=False, no_file=False, sig_data=None, return_res=64,
    )
    record._arrange_fields(channels=channels, sampfrom=0, smooth_frames=True)
    record.dac(expanded=False, return_res=64, inplace=True)
    record.convert_dtype(True, 64, True)
    return record


def read_wfdb(record_path: str | Path) -> EcgRecord:
    """Read a WFDB record (path without suffix). Missing files and corrupt data raise QualityError."""
    record_path = Path(record_path)
    header_path = record_path.with_name(f"{record_path.name}.hea")
    if not header_path.is_file():
        raise QualityError(SkipReason.MISSING_WAVEFORM, f"no header {header_path}")
    header = _check_header(record_path, header_path)
    if not header.n_sig:
        raise QualityError(SkipReason.UNREADABLE, f"{record_path} holds no samples")
    try:
        record = _read_samples(record_path, header)
    except FileNotFoundError as err:
        raise QualityError(SkipReason.MISSING_WAVEFORM, f"signal file missing for {record_path}: {err}") from err
    except Exception as err:  # wfdb raises many types on corrupt headers or data; all mean unreadable
        raise _unreadable(record_path, err) from err
    if record.p_signal is None or record.p_signal.ndim != 2 or record.p_signal.shape[0] == 0:
        raise QualityError(SkipReason.UNREADABLE, f"{record_path} holds no samples")
    names = tuple(canonical_lead_name(n) for n in record.sig_name)
    scale = np.array([_unit_scale(u, n) for u, n in zip(record.units, names, strict=True)])
    return EcgRecord(signal=(record.p_signal * scale).T, fs=float(record.fs), lead_names=names)
