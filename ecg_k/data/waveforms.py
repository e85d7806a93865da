"""WFDB records read through ``wfdb``: physical units (mV from the header gains), leads named."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from ecg_k.leads import canonical_lead_name
from ecg_k.quality import QualityError, SkipReason

_TO_MV = {"mv": 1.0, "millivolt": 1.0, "uv": 1e-3, "μv": 1e-3, "µv": 1e-3, "v": 1e3}


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


def read_wfdb(record_path: str | Path) -> EcgRecord:
    """Read a WFDB record (path without suffix). Missing files and corrupt data raise QualityError."""
    record_path = Path(record_path)
    if not record_path.with_suffix(".hea").is_file():
        raise QualityError(SkipReason.MISSING_WAVEFORM, f"no header {record_path}.hea")
    try:
        record = wfdb.rdrecord(str(record_path))
    except FileNotFoundError as err:
        raise QualityError(SkipReason.MISSING_WAVEFORM, f"signal file missing for {record_path}: {err}") from err
    except Exception as err:  # wfdb raises many types on corrupt headers or data; all mean unreadable
        raise QualityError(SkipReason.UNREADABLE, f"cannot decode {record_path}: {type(err).__name__}: {err}") from err
    if record.p_signal is None or record.p_signal.ndim != 2 or record.p_signal.shape[0] == 0:
        raise QualityError(SkipReason.UNREADABLE, f"{record_path} holds no samples")
    names = tuple(canonical_lead_name(n) for n in record.sig_name)
    scale = np.array([_unit_scale(u, n) for u, n in zip(record.units, names, strict=True)])
    return EcgRecord(signal=(record.p_signal * scale).T, fs=float(record.fs), lead_names=names)
