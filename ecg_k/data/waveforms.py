"""WFDB records read through ``wfdb``: physical units (mV from the header gains), leads named.

:func:`read_wfdb` returns a record with a finite positive rate, one row per lead under a distinct printable
name and at most :data:`MAX_SAMPLES` samples, or raises :class:`QualityError`. The header is checked before
any sample is read: wfdb parses a record line by its longest valid prefix (``500e9`` reads as 500 Hz,
``nan`` and ``-500`` as its 250 Hz default), allocates what the header declares (a skew or a FLAC file can
declare GiB), and its line patterns backtrack quadratically on long lines.

A header must also describe its data exactly (:func:`_check_signal_files`): wfdb reads whatever bytes it
finds through whatever the header declares, so a one-lead header over a 12-lead file, or a 16-bit file
declared as format 8, would decode into scrambled samples. Each data file's size must equal what the header
declares (byte offset + samples x signals x bytes per sample), and the checksums of the header, where
present, must match the samples read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb
from wfdb.io import _signal
from wfdb.io._signal import BYTES_PER_SAMPLE
from wfdb.io.header import parse_header_content, rx_record

from ecg_k.data.wfdb_header import parse_header
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
    Returns the parsed header, from which :func:`_read_digital_samples` reads the samples."""
    lines, comments = parse_header_content(header_path.read_text(encoding="ascii", errors="ignore"))
    _check_lines(header_path, lines)
    try:
        header = parse_header(lines, comments)
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


def _read_digital_samples(record_path: Path, record: wfdb.Record) -> wfdb.Record:
    """Fill ``d_signal`` of a checked single-segment header (its sample count declared) with the steps
    ``wfdb.rdrecord`` takes after its own header parse (wfdb 4.3.1, pinned; default arguments), so each header
    is parsed once: the parse costs more than reading the samples. A test holds the result, once converted
    to physical units, equal to ``wfdb.rdrecord`` on real records."""
    dir_name = os.path.abspath(os.path.dirname(record_path))
    channels = list(range(record.n_sig))
    record.check_read_inputs(0, record.sig_len, channels, True, True, 64)
    record.e_d_signal = _signal._rd_segment(
        file_name=record.file_name, dir_name=dir_name, pn_dir=None, fmt=record.fmt, n_sig=record.n_sig,
        sig_len=record.sig_len, byte_offset=record.byte_offset, samps_per_frame=record.samps_per_frame,
        skew=record.skew, init_value=record.init_value, sampfrom=0, sampto=record.sig_len, channels=channels,
        ignore_skew=False, no_file=False, sig_data=None, return_res=64,
    )
    record._arrange_fields(channels=channels, sampfrom=0, smooth_frames=True)
    return record


def _expected_bytes(fmt: str, n_samples: int) -> tuple[int, int]:
    """Smallest and largest size of ``n_samples`` interleaved samples in ``fmt`` (310/311 may pad their last
    4-byte group)."""
    exact = math.ceil(n_samples * BYTES_PER_SAMPLE[fmt])
    return exact, (-(-exact // 4) * 4 if fmt in ("310", "311") else exact)


def _check_signal_files(record_path: Path, header: wfdb.Record) -> None:
    """Reject a header whose data files are not exactly the size it declares: every signal of one file must
    share its format and byte offset, the header must declare its sample count, and each file must hold
    byte offset + samples x (signals in it) x bytes per sample. FLAC formats (508, 516, 524) have no fixed
    size; their decoder checks their frames."""
    if not header.sig_len:
        raise QualityError(SkipReason.UNREADABLE, f"{record_path}: the header declares no sample count")
    files: dict[str, list[int]] = {}
    for index, name in enumerate(header.file_name or ()):
        files.setdefault(name, []).append(index)
    for name, signals in files.items():
        formats = {header.fmt[i] for i in signals}
        offsets = {(header.byte_offset or [None] * len(header.fmt))[i] or 0 for i in signals}
        if len(formats) != 1 or len(offsets) != 1:
            raise QualityError(SkipReason.UNREADABLE, f"{record_path}: the signals of {name} mix formats or "
                                                      f"byte offsets")
        fmt, offset = formats.pop(), offsets.pop()
        if fmt in ("508", "516", "524"):
            continue
        if fmt not in BYTES_PER_SAMPLE:  # wfdb's header parse lets any digits through (found by atheris)
            raise QualityError(SkipReason.UNREADABLE, f"{record_path}: {name} has format {fmt}, not a WFDB "
                                                      f"signal format ({', '.join(sorted(BYTES_PER_SAMPLE))})")
        frame = sum((header.samps_per_frame or [1] * len(header.fmt))[i] or 1 for i in signals)
        smallest, largest = _expected_bytes(fmt, header.sig_len * frame)
        path = record_path.with_name(name)
        size = path.stat().st_size if path.is_file() else None
        if size is None:
            raise QualityError(SkipReason.MISSING_WAVEFORM, f"{record_path}: signal file {name} is missing")
        if not offset + smallest <= size <= offset + largest:
            raise QualityError(
                SkipReason.UNREADABLE,
                f"{record_path}: {name} holds {size} bytes; the header declares {offset + smallest} "
                f"({len(signals)} signal(s) x {header.sig_len} samples in format {fmt}, offset {offset})")


def _check_checksums(record_path: Path, record: wfdb.Record) -> None:
    """Reject samples whose 16-bit sums differ from the checksums the header declares."""
    declared = record.checksum or [None] * record.n_sig
    computed = record.calc_checksum()
    wrong = [name for name, want, got in zip(record.sig_name, declared, computed, strict=True)
             if want is not None and (int(want) - got) % 65536]
    if wrong:
        raise QualityError(SkipReason.UNREADABLE, f"{record_path}: checksum mismatch in lead(s) {wrong[:12]}")


def read_wfdb(record_path: str | Path) -> EcgRecord:
    """Read a WFDB record (path without suffix). Missing files and corrupt data raise QualityError."""
    record_path = Path(record_path)
    header_path = record_path.with_name(f"{record_path.name}.hea")
    if not header_path.is_file():
        raise QualityError(SkipReason.MISSING_WAVEFORM, f"no header {header_path}")
    header = _check_header(record_path, header_path)
    if not header.n_sig:
        raise QualityError(SkipReason.UNREADABLE, f"{record_path} holds no samples")
    _check_signal_files(record_path, header)
    try:
        record = _read_digital_samples(record_path, header)
        _check_checksums(record_path, record)
        record.dac(expanded=False, return_res=64, inplace=True)
        record.convert_dtype(True, 64, True)
    except QualityError:
        raise
    except FileNotFoundError as err:
        raise QualityError(SkipReason.MISSING_WAVEFORM, f"signal file missing for {record_path}: {err}") from err
    except Exception as err:  # wfdb raises many types on corrupt headers or data; all mean unreadable
        raise _unreadable(record_path, err) from err
    if record.p_signal is None or record.p_signal.ndim != 2 or record.p_signal.shape[0] == 0:
        raise QualityError(SkipReason.UNREADABLE, f"{record_path} holds no samples")
    names = tuple(canonical_lead_name(n) for n in record.sig_name)
    scale = np.array([_unit_scale(u, n) for u, n in zip(record.units, names, strict=True)])
    if (scale != 1.0).any():
        record.p_signal *= scale
    return EcgRecord(signal=record.p_signal.T, fs=float(record.fs), lead_names=names)
