"""MIMIC-IV-ECG ``record_list.csv`` (v1.0 and the demo v0.1).

The ``path`` column is authoritative: v1.0 uses ``files/p1000/p10000032/s40689238/40689238`` (with a
group directory), the demo ``files/p10000032/s107143276/107143276`` (without).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from ecg_k.data.errors import DataInputError
from ecg_k.data.labs import naive_times

REQUIRED_COLUMNS = ("subject_id", "study_id", "ecg_time", "path")


def find_record_list(ecg_root: Path) -> Path:
    """Locate ``record_list.csv`` in an ECG root, with a clear error when the root is wrong."""
    if not ecg_root.is_dir():
        raise DataInputError(f"ECG root {ecg_root} is not a directory")
    for name in ("record_list.csv", "record_list.csv.gz"):
        if (ecg_root / name).is_file():
            return ecg_root / name
    raise DataInputError(f"no record_list.csv in ECG root {ecg_root} (expected a MIMIC-IV-ECG directory)")


def _read_csv(path: Path, **options: Any) -> pd.DataFrame:
    try:
        frame: pd.DataFrame = pd.read_csv(path, **options)
        return frame
    except (ValueError, OSError, EOFError) as err:  # pandas' parser and dtype errors are ValueErrors
        raise DataInputError(f"cannot read {path}: {type(err).__name__}: {err}") from err


def _inside(relative: object) -> bool:
    """Whether a record path names something under the ECG root: relative, no ``..``, no NUL (a backslash
    counts as a separator)."""
    if not isinstance(relative, str) or "\0" in relative:
        return False
    path = PurePosixPath(relative.replace("\\", "/"))
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


def read_record_list(ecg_root: Path) -> pd.DataFrame:
    """Read the record list: ``subject_id, study_id, ecg_time, ecg_path`` (relative to ``ecg_root``).

    A malformed table, a missing id, or a path that leaves ``ecg_root`` stops the run with
    :class:`DataInputError`; an unparsable ``ecg_time`` becomes NaT (the cohort skips it).
    """
    path = find_record_list(ecg_root)
    header = _read_csv(path, nrows=0).columns
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataInputError(f"{path} lacks column(s) {missing}; has {list(header)}")
    frame = _read_csv(
        path, usecols=list(REQUIRED_COLUMNS), dtype={"subject_id": "int64", "study_id": "int64", "path": str}
    )
    frame["ecg_time"] = naive_times(path, "ecg_time", frame["ecg_time"])
    escaping = [p for p in frame["path"] if not _inside(p)]
    if escaping:
        raise DataInputError(f"{path}: {len(escaping)} path(s) empty or outside the ECG root, e.g. {escaping[0]!r}")
    return frame.rename(columns={"path": "ecg_path"})
