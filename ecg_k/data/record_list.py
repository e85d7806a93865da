"""MIMIC-IV-ECG ``record_list.csv`` (v1.0 and the demo v0.1).

The ``path`` column is authoritative: v1.0 uses ``files/p1000/p10000032/s40689238/40689238`` (with a
group directory), the demo ``files/p10000032/s107143276/107143276`` (without).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ecg_k.data.errors import DataInputError

REQUIRED_COLUMNS = ("subject_id", "study_id", "ecg_time", "path")


def find_record_list(ecg_root: Path) -> Path:
    """Locate ``record_list.csv`` in an ECG root, with a clear error when the root is wrong."""
    if not ecg_root.is_dir():
        raise DataInputError(f"ECG root {ecg_root} is not a directory")
    for name in ("record_list.csv", "record_list.csv.gz"):
        if (ecg_root / name).is_file():
            return ecg_root / name
    raise DataInputError(f"no record_list.csv in ECG root {ecg_root} (expected a MIMIC-IV-ECG directory)")


def read_record_list(ecg_root: Path) -> pd.DataFrame:
    """Read the record list: ``subject_id, study_id, ecg_time, ecg_path`` (relative to ``ecg_root``)."""
    path = find_record_list(ecg_root)
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataInputError(f"{path} lacks column(s) {missing}; has {list(header)}")
    frame = pd.read_csv(
        path, usecols=list(REQUIRED_COLUMNS), dtype={"subject_id": "int64", "study_id": "int64", "path": str}
    )
    frame["ecg_time"] = pd.to_datetime(frame["ecg_time"], format="ISO8601", errors="coerce")
    return frame.rename(columns={"path": "ecg_path"})
