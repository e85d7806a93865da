"""MIMIC-IV hosp ``labevents.csv[.gz]`` (v1.0-v3.x) streamed in bounded memory, and ``patients``.

Only ``subject_id, itemid, charttime`` and ``valuenum`` (or ``value``) are needed; ``valueuom`` and
``comments`` are used when present (a table without ``comments`` reads every row as comment class
``none``; see :mod:`ecg_k.data.lab_comments`). The file (~118 M rows in v2.2+) is read in Arrow record
batches of ``block_size`` bytes and filtered to the wanted itemids batch by batch, so memory is
O(block + kept rows), not O(file). Blocks of 4 MiB keep the reader's peak near 0.3 GiB (32 MiB blocks
peaked at 0.85 GiB) at the same speed, since gzip decompression, not parsing, is the bottleneck.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ecg_k.data.errors import DataInputError
from ecg_k.data.lab_comments import LabComment, comment_counts, read_comment

LAB_COLUMNS = ("subject_id", "itemid", "charttime")
VALUE_COLUMNS = ("valuenum", "value")
POTASSIUM_UNITS = {"meq/l", "mmol/l"}  # numerically equal for K+
COMMENTS = "comments"


@dataclass
class LabReadStats:
    """What the reader saw: rows scanned, kept, and dropped by reason."""

    rows_scanned: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    comments: dict[str, int] = field(default_factory=dict)
    """Kept rows per comment class, plus ``unrecognised`` comments (read as ``none``)."""

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)


def _find_table(hosp_root: Path, stem: str, required: bool) -> Path | None:
    if not hosp_root.is_dir():
        raise DataInputError(f"hosp root {hosp_root} is not a directory")
    for folder in (hosp_root, hosp_root / "hosp"):
        for name in (f"{stem}.csv", f"{stem}.csv.gz"):
            if (folder / name).is_file():
                return folder / name
        matches = sorted(folder.glob(f"{stem}*.csv")) + sorted(folder.glob(f"{stem}*.csv.gz"))
        if len(matches) == 1:
            return matches[0]
    if required:
        raise DataInputError(f"no {stem}.csv[.gz] in {hosp_root} or {hosp_root / 'hosp'}")
    return None


def find_labevents(hosp_root: Path) -> Path:
    """Locate the labevents table under a hosp root (or accept a file path)."""
    if hosp_root.is_file():
        return hosp_root
    path = _find_table(hosp_root, "labevents", required=True)
    assert path is not None
    return path


def _header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0).columns)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as err:
        raise DataInputError(f"cannot read a CSV header from {path}: {err}") from err


def read_potassium_labs(path: Path, itemids: Iterable[int], block_size: int = 4 << 20
                        ) -> tuple[pd.DataFrame, LabReadStats]:
    """Stream a labevents table, keeping rows of ``itemids``.

    Returns ``subject_id, itemid, charttime, valuenum, valueuom, comment`` with ``valuenum`` parsed from
    ``value`` where the numeric column is empty (non-numeric values are dropped with a reason) and
    ``comment`` the :class:`~ecg_k.data.lab_comments.LabComment` value of the row's ``comments``.
    """
    header = _header(path)
    missing = [c for c in LAB_COLUMNS if c not in header]
    if missing or not any(c in header for c in VALUE_COLUMNS):
        raise DataInputError(
            f"{path} lacks column(s) {missing or list(VALUE_COLUMNS)}; has {header}"
        )
    wanted = [c for c in (*LAB_COLUMNS, *VALUE_COLUMNS, "valueuom", COMMENTS) if c in header]
    types = {"subject_id": pa.int64(), "itemid": pa.int64()} | {
        c: pa.string() for c in ("charttime", "value", "valuenum", "valueuom", COMMENTS) if c in wanted
    }
    item_set = pa.array(sorted({int(i) for i in itemids}), type=pa.int64())
    stats = LabReadStats()
    parts: list[pa.RecordBatch] = []  # kept rows stay compact Arrow batches until one conversion at the end
    try:  # opening already parses the first block
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(include_columns=wanted, column_types=types, strings_can_be_null=True),
        )
        for batch in reader:
            stats.rows_scanned += batch.num_rows
            kept = batch.filter(pc.is_in(batch.column("itemid"), value_set=item_set))
            if kept.num_rows:
                parts.append(kept)
    except (pa.ArrowInvalid, OSError, EOFError) as err:
        raise DataInputError(f"{path} is corrupt after {stats.rows_scanned} rows: {err}") from err
    frame = pa.Table.from_batches(parts).to_pandas() if parts else pd.DataFrame(columns=wanted)
    return _normalise(path, frame, stats)


def naive_times(path: Path, column: str, text: pd.Series) -> pd.Series:
    """ISO 8601 times without offset, as MIMIC writes them; unparsable ones become NaT. A column with UTC
    offsets is refused: pandas would make it aware (or object, for mixed offsets), unlike every other time."""
    with warnings.catch_warnings(action="ignore", category=FutureWarning):  # mixed offsets (an error in pandas 3)
        try:
            times = pd.to_datetime(text, format="ISO8601", errors="coerce")
        except ValueError as err:
            raise DataInputError(f"{path}: {column} mixes UTC offsets: {err}") from err
    if times.dtype != "datetime64[ns]":
        raise DataInputError(f"{path}: {column} carries UTC offsets; MIMIC-IV times are naive ({times.dtype})")
    return times


def _normalise(path: Path, frame: pd.DataFrame, stats: LabReadStats) -> tuple[pd.DataFrame, LabReadStats]:
    # valuenum first, the text value filling its gaps (the reader refused tables with neither column).
    parsed = [pd.to_numeric(frame[column], errors="coerce") for column in VALUE_COLUMNS if column in frame]
    numeric = (parsed[0] if len(parsed) == 1 else parsed[0].fillna(parsed[1])).astype("float64")
    no_subject = frame["subject_id"].isna()
    stats.drop("lab_missing_subject", no_subject.sum())
    frame, numeric = frame[~no_subject], numeric[~no_subject]
    out = pd.DataFrame(
        {
            "subject_id": frame["subject_id"].astype("int64"),
            "itemid": frame["itemid"].astype("int64"),
            "charttime": naive_times(path, "charttime", frame["charttime"]),
            "valuenum": numeric.where(np.isfinite(numeric)),  # "inf" or "1e999" is no measurement
            "valueuom": frame["valueuom"] if "valueuom" in frame else pd.Series(pd.NA, index=frame.index),
            "comment": _comment_classes(frame),
        }
    )
    stats.drop("lab_missing_value", out["valuenum"].isna().sum())
    stats.drop("lab_invalid_time", out["charttime"].isna().sum())
    unit = out["valueuom"].astype("string").str.strip().str.lower()
    wrong_unit = unit.notna() & ~unit.isin(POTASSIUM_UNITS)
    stats.drop("lab_unit", wrong_unit.sum())
    kept = out["valuenum"].notna() & out["charttime"].notna() & ~wrong_unit
    out = out[kept].reset_index(drop=True)
    stats.rows_kept = len(out)
    texts = _texts(frame)[kept.to_numpy()]
    stats.comments = comment_counts({str(text): n for text, n in texts.fillna("").value_counts().items()})
    return out, stats


def _texts(frame: pd.DataFrame) -> pd.Series:
    """The ``comments`` text per row (None where empty or where the table has no such column)."""
    if COMMENTS not in frame:
        return pd.Series(None, index=frame.index, dtype=object)
    # pandas-stubs types `other` without None, which pandas accepts (and which keeps the dtype object).
    texts: pd.Series = frame[COMMENTS].astype(object).where(frame[COMMENTS].notna(), None)  # type: ignore[call-overload]
    return texts


def _comment_classes(frame: pd.DataFrame) -> pd.Series:
    """The comment class of each row, classifying each distinct text once."""
    texts = _texts(frame)
    classes = {text: read_comment(text).label.value for text in texts.dropna().unique()}
    return texts.map(classes).fillna(LabComment.NONE.value).astype(str)


def read_patients(hosp_root: Path) -> pd.DataFrame | None:
    """``patients.csv[.gz]`` (subject_id, gender, anchor_age) if present, else None."""
    if hosp_root.is_file():
        return None
    path = _find_table(hosp_root, "patients", required=False)
    if path is None:
        return None
    header = _header(path)
    cols = [c for c in ("subject_id", "gender", "anchor_age") if c in header]
    if "subject_id" not in cols:
        raise DataInputError(f"{path} lacks column subject_id; has {header}")
    return pd.read_csv(path, usecols=cols)
