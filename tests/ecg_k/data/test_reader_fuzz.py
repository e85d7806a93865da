"""Hostile input to the data readers: mutated real WFDB records (hypothesis, derandomized, and a seeded
coverage-guided run of atheris_wfdb.py), and labevents and record-list tables built from the real ones with
hostile cells and columns (hypothesis).

The contract: a reader returns a valid result or raises its clear error (``QualityError`` with a reason for a
record, ``DataInputError`` for a table), for every input, within :data:`SECONDS_PER_INPUT` and without
allocating more than a record the reader accepts could need; a record reader opens no file outside the
record's folder, whatever the header's file fields say.
"""

from __future__ import annotations

import csv
import io
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest
import wfdb
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from ecg_k.data.errors import DataInputError
from ecg_k.data.lab_comments import LabComment
from ecg_k.data.labs import read_potassium_labs
from ecg_k.data.record_list import read_record_list
from ecg_k.data.waveforms import MAX_SAMPLES, EcgRecord, read_wfdb
from ecg_k.quality import QualityError, SkipReason
from tests.conftest import REPO_ROOT

T = TypeVar("T")

SECONDS_PER_INPUT = 10.0
PEAK_BYTES = 24 * MAX_SAMPLES  # int16 digits + float64 physical + the mV copy of the largest accepted record
ADDRESS_SPACE_BYTES = 3 << 30  # new mappings per input; pyarrow's threads and mimalloc map 1.2 GiB at first use
ITEMIDS = (50971, 50822)


def fuzz_settings(max_examples: int) -> settings:
    """Reproducible, bounded runs: derandomized, no example database, no per-example deadline (the
    :func:`bounded` alarm is the time limit)."""
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class TooSlow(BaseException):
    """An input took longer than :data:`SECONDS_PER_INPUT` (a BaseException: readers catch Exception)."""


def _mapped_bytes() -> int:
    """Virtual memory this process maps now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()


def bounded(read: Callable[[], T], expected: type[Exception]) -> T | Exception:
    """``read()``'s result or its ``expected`` error; any other error propagates. An input fails when it runs
    longer than :data:`SECONDS_PER_INPUT`, traces a peak above :data:`PEAK_BYTES` (numpy's lazily zeroed
    arrays included), or meets a MemoryError: the address space is capped meanwhile, so that a regression
    fails here instead of getting the test run killed for memory."""

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise TooSlow(f"an input took more than {SECONDS_PER_INPUT} s")

    limits = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + ADDRESS_SPACE_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (cap if limits[1] == resource.RLIM_INFINITY else min(cap, limits[1]),
                                            limits[1]))
    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_INPUT)
    tracemalloc.start()
    try:
        try:
            outcome: T | Exception = read()
        except expected as err:
            outcome = err
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, limits)
    assert peak <= PEAK_BYTES, f"peak {peak / 2**20:.0f} MiB for one input"
    cause: BaseException | None = outcome if isinstance(outcome, Exception) else None
    while cause is not None:
        assert not isinstance(cause, MemoryError), f"the reader ran out of memory: {outcome}"
        cause = cause.__cause__ or cause.__context__
    return outcome


class OpenedFiles:
    """Paths given to ``open`` while watching (an audit hook; hooks cannot be removed, so one serves all)."""

    def __init__(self) -> None:
        self.paths: list[str] | None = None
        sys.addaudithook(self._hook)

    def _hook(self, name: str, args: tuple[Any, ...]) -> None:
        if self.paths is not None and name == "open" and isinstance(args[0], str | bytes | os.PathLike):
            self.paths.append(os.fsdecode(args[0]))

    @contextmanager
    def watch(self, paths: list[str]) -> Iterator[None]:
        self.paths = paths
        try:
            yield
        finally:
            self.paths = None


# ---------------------------------------------------------------------------------------------- WFDB records

HOSTILE_TOKENS = (
    "0", "-1", "-500", "0.0000001", "1e12", "500e9", "1e308", "1e400", "nan", "NaN", "inf", "-inf", "",
    "9" * 400, "1000000000000", "16x100000000", "16:1000000000", "16+99999999999999", "16x0", "0/mV",
    "200/µV", "200(99999999999999999999)/mV", "-200/mV", "999", "8", "80", "160", "212", "310", "311", "24",
    "32", "61", "508", "516", "524", "../canary.dat", "../../canary", "{canary}", "/etc/passwd",
    "..\\canary.dat", "x\x00y", "é", "💥", "'; DROP TABLE predictions; --", "12/3", "~", "#",
)
hostile_token = st.one_of(
    st.sampled_from(HOSTILE_TOKENS), st.integers(-(2**70), 2**70).map(str), st.floats().map(repr),
    st.text(max_size=12),
)


@dataclass(frozen=True)
class SetField:
    """Replace whitespace-separated field ``field`` of line ``line`` (both taken modulo the counts)."""

    line: int
    field: int
    value: str


@dataclass(frozen=True)
class InsertLine:
    line: int
    text: str


@dataclass(frozen=True)
class CutHeader:
    """Keep the first ``fraction`` of the header's characters."""

    fraction: float


@dataclass(frozen=True)
class CutSignal:
    fraction: float


@dataclass(frozen=True)
class Garble:
    """Overwrite bytes from ``at`` (a fraction of the length) on, or append them where the file ends."""

    at: float
    data: bytes


Edit = SetField | InsertLine | CutHeader | CutSignal | Garble

edits = st.lists(st.one_of(
    st.builds(SetField, st.integers(0, 20), st.integers(0, 12), hostile_token),
    st.builds(InsertLine, st.integers(0, 20), st.one_of(
        hostile_token, st.sampled_from(["x" * 100_000, "# comment", "r 12 500 5000", "\r\r\n\x0b\x1c"]))),
    st.builds(CutHeader, st.floats(0, 1)),
    st.builds(CutSignal, st.floats(0, 1)),
    st.builds(Garble, st.floats(0, 1.2), st.binary(min_size=1, max_size=64)),
), min_size=1, max_size=4)


@dataclass(frozen=True)
class Seed:
    """A real record's files: ``name.hea`` and the signal file its header names."""

    name: str
    header: str
    signal_name: str
    signal: bytes


def mutate(seed: Seed, changes: Sequence[Edit], canary: Path) -> tuple[bytes, bytes]:
    """The seed's header and signal bytes after ``changes``; ``{canary}`` names a file outside the folder."""
    lines, signal_bytes = seed.header.splitlines(), seed.signal
    for change in changes:
        if isinstance(change, SetField) and lines:
            row = change.line % len(lines)
            fields = lines[row].split() or [""]
            fields[change.field % len(fields)] = change.value.replace("{canary}", str(canary))
            lines[row] = " ".join(fields)
        elif isinstance(change, InsertLine):
            lines.insert(change.line % (len(lines) + 1), change.text.replace("{canary}", str(canary)))
        elif isinstance(change, CutHeader):
            lines = "\n".join(lines)[: int(change.fraction * sum(len(line) + 1 for line in lines))].splitlines()
        elif isinstance(change, CutSignal):
            signal_bytes = signal_bytes[: int(change.fraction * len(signal_bytes))]
        elif isinstance(change, Garble):
            at = min(int(change.at * len(signal_bytes)), len(signal_bytes))
            signal_bytes = signal_bytes[:at] + change.data + signal_bytes[at + len(change.data):]
    return ("\n".join(lines) + "\n").encode(), signal_bytes


@pytest.fixture(scope="module")
def wfdb_seeds(tiny_cinc_dir: Path, mimic_header_dir: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Seed, ...]:
    """CinC E07500 (.mat, 16x1+24); the real MIMIC header 40689238 over the same samples (the .mat after
    its 24-byte preamble is a format-16 .dat of 12 x 5000); leads I and II re-encoded as FLAC (format 516)."""
    cinc = tiny_cinc_dir / "E07500"
    mat = cinc.with_suffix(".mat").read_bytes()
    record = read_wfdb(cinc)
    folder = tmp_path_factory.mktemp("flac")
    wfdb.wrsamp("flac", fs=record.fs, units=["mV", "mV"], sig_name=["I", "II"], p_signal=record.signal[:2].T,
                fmt=["516", "516"], adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(folder))
    return (
        Seed("E07500", cinc.with_suffix(".hea").read_text(), "E07500.mat", mat),
        Seed("40689238", (mimic_header_dir / "s40689238" / "40689238.hea").read_text(), "40689238.dat", mat[24:]),
        Seed("flac", (folder / "flac.hea").read_text(), "flac.dat", (folder / "flac.dat").read_bytes()),
    )


@pytest.fixture(scope="module")
def opened_files() -> OpenedFiles:
    return OpenedFiles()


def read_mutated(seed: Seed, changes: Sequence[Edit], opened_files: OpenedFiles) -> EcgRecord | QualityError:
    """Write the mutated record beside a readable canary record and read it, checking the bounds and that
    nothing outside the record's folder was opened."""
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "record"
        folder.mkdir()
        canary = Path(root) / "canary"
        (Path(root) / "canary.hea").write_text(seed.header.replace(seed.signal_name, "canary.dat"))
        (Path(root) / "canary.dat").write_bytes(seed.signal)
        header, signal_bytes = mutate(seed, changes, canary)
        (folder / f"{seed.name}.hea").write_bytes(header)
        (folder / seed.signal_name).write_bytes(signal_bytes)
        paths: list[str] = []

        def read() -> EcgRecord:
            with opened_files.watch(paths):
                return read_wfdb(folder / seed.name)

        outcome = bounded(read, QualityError)
        outside = [p for p in paths if Path(p).resolve().parent != folder.resolve()]
    assert not outside, f"opened outside the record's folder: {outside}"
    return outcome


def assert_valid_record(record: EcgRecord) -> None:
    """What every caller of read_wfdb relies on."""
    leads, samples = record.signal.shape
    assert leads == len(record.lead_names) >= 1 and samples >= 1 and record.signal.size <= MAX_SAMPLES
    assert record.signal.dtype == np.float64
    assert np.isfinite(record.fs) and record.fs > 0
    assert all(isinstance(name, str) and name for name in record.lead_names)


def test_mutated_wfdb_records_read_or_fail_with_a_reason(wfdb_seeds: tuple[Seed, ...],
                                                         opened_files: OpenedFiles) -> None:
    tally: Counter[str] = Counter()

    @fuzz_settings(max_examples=400)
    @given(seed=st.sampled_from(wfdb_seeds), changes=edits)
    @example(seed=wfdb_seeds[0], changes=[SetField(0, 3, "1000000000000")])
    @example(seed=wfdb_seeds[1], changes=[SetField(1, 1, "16:1000000000")])
    @example(seed=wfdb_seeds[2], changes=[SetField(0, 3, "1000000000")])
    @example(seed=wfdb_seeds[0], changes=[SetField(1, 0, "{canary}")])
    @example(seed=wfdb_seeds[1], changes=[SetField(1, 0, "../canary.dat")])
    @example(seed=wfdb_seeds[1], changes=[SetField(0, 2, "5" * 120)])  # found by atheris: an int numpy refused
    def run(seed: Seed, changes: list[Edit]) -> None:
        outcome = read_mutated(seed, changes, opened_files)
        if isinstance(outcome, QualityError):
            assert outcome.reason in SkipReason and str(outcome)
            name = outcome.reason.value
        else:
            assert_valid_record(outcome)
            name = "valid"
        tally[name] += 1
        event(f"outcome: {name}")

    run()
    print(f"WFDB records: {sum(tally.values())} inputs, outcomes {dict(tally)}")
    assert tally["valid"] >= 10 and len(tally) >= 4, tally  # the mutations reach the decoder, not only the parser


@pytest.mark.parametrize(("change", "reason", "message"), [
    (SetField(0, 3, "1000000000000"), SkipReason.UNREADABLE, "declares 12000000000000 samples"),
    (SetField(1, 1, "16:1000000000"), SkipReason.UNREADABLE, "declares 12000060000 samples"),
    (SetField(1, 1, "16x100000000"), SkipReason.UNREADABLE, "samples; at most"),
    (SetField(0, 2, "0"), SkipReason.UNSUPPORTED_RATE, "sampling rate of 0 Hz"),
    (SetField(0, 2, "nan"), SkipReason.UNREADABLE, "unparsable record line"),
    (SetField(0, 2, "500e9"), SkipReason.UNREADABLE, "unparsable record line"),
    (SetField(0, 2, "-500"), SkipReason.UNREADABLE, "unparsable record line"),
    (SetField(1, 8, ""), SkipReason.MISSING_LEAD, "signal(s) [1] have no lead name"),
    (SetField(1, 0, "../canary.dat"), SkipReason.UNREADABLE, "cannot decode"),
    (SetField(1, 0, "{canary}"), SkipReason.UNREADABLE, "cannot decode"),
    (InsertLine(13, "x" * 100_000), SkipReason.UNREADABLE, "[14] exceed 1024 characters"),  # was ~90 s of regex
    (SetField(0, 0, "r/2"), SkipReason.UNREADABLE, "multi-segment"),  # found by atheris: an AttributeError
    (SetField(0, 1, "50165000"), SkipReason.UNREADABLE, "declares 50165000 signals"),  # atheris: 1.2 GiB of lists
], ids=lambda value: repr(value)[:40] if isinstance(value, SetField | InsertLine) else None)
def test_hostile_header_fields_get_their_reason(wfdb_seeds: tuple[Seed, ...], opened_files: OpenedFiles,
                                                change: Edit, reason: SkipReason, message: str) -> None:
    seed = wfdb_seeds[1]  # MIMIC layout: "40689238 12 500 5000 08:44:00 23/07/2180", "40689238.dat 16 ... 0 I"
    outcome = read_mutated(seed, [change], opened_files)
    assert isinstance(outcome, QualityError), outcome
    assert outcome.reason == reason and message in str(outcome)


ATHERIS_RUNS = int(os.environ.get("ECGK_ATHERIS_RUNS", "2000"))  # a longer hunt: ECGK_ATHERIS_RUNS=200000


def test_coverage_guided_fuzzing_of_wfdb_records_finds_nothing(wfdb_seeds: tuple[Seed, ...], tmp_path: Path) -> None:
    """libFuzzer (atheris, tests/ecg_k/data/atheris_wfdb.py) from the real seeds, with a fixed seed and run
    count: no exception but QualityError, no input over 10 s, the process under 1 GiB."""
    pytest.importorskip("atheris")
    from tests.ecg_k.data.atheris_wfdb import as_input

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for seed in wfdb_seeds:
        (corpus / seed.name).write_bytes(as_input(seed.header, seed.signal, seed.name, seed.signal_name))
    harness = Path(__file__).with_name("atheris_wfdb.py")
    result = subprocess.run(
        [sys.executable, str(harness), str(corpus), f"-runs={ATHERIS_RUNS}", "-seed=1", "-timeout=10",
         "-rss_limit_mb=1024", "-max_len=20000", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "0"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    done = re.search(r"Done (\d+) runs", result.stderr)
    assert done is not None and int(done.group(1)) == ATHERIS_RUNS, result.stderr[-2000:]
    print(f"atheris: {done.group(1)} inputs")


# ------------------------------------------------------------------------------------------------ CSV tables

SQLISH = ("'; DROP TABLE predictions; --", '" OR 1=1 --', "1; DELETE FROM labevents", "Robert'); DROP TABLE x;--")
hostile_cell = st.one_of(
    st.sampled_from([
        "", "50971", "50822", "4.5", "___", "nan", "inf", "-inf", "1e999", "NULL", "mEq/L", "mg/dL", "0",
        "2180-05-07 05:05:00", "2180-05-07T05:05:00", "2180-05-07T05:05:00Z", "2180-05-07 05:05:00+05:00",
        "2180-13-45 99:99:99", "99999-01-01", "../../etc/passwd", "/etc/passwd", "files/../../x", "..\\x",
        "a,b", 'quote " inside', "line\nbreak", "\x00", "é💥", *SQLISH,
    ]),
    st.integers(-(2**70), 2**70).map(str), st.floats().map(repr), st.text(max_size=20),
)


@dataclass(frozen=True)
class SetCell:
    row: int
    column: int
    value: str


@dataclass(frozen=True)
class RenameColumn:
    column: int
    name: str


@dataclass(frozen=True)
class DropColumn:
    column: int


@dataclass(frozen=True)
class DuplicateColumn:
    column: int


TableEdit = SetCell | RenameColumn | DropColumn | DuplicateColumn

table_edits = st.lists(st.one_of(
    st.builds(SetCell, st.integers(0, 40), st.integers(0, 20), hostile_cell),
    st.builds(RenameColumn, st.integers(0, 20), st.one_of(hostile_cell, st.sampled_from(["subject_id", "itemid"]))),
    st.builds(DropColumn, st.integers(0, 20)),
    st.builds(DuplicateColumn, st.integers(0, 20)),
), max_size=8)


@dataclass(frozen=True)
class TableWrite:
    """How the table is written: quoted by ``csv``, or joined raw (so hostile cells break the quoting), and
    ``cut`` to the first fraction of its bytes."""

    quoted: bool
    cut: float


table_writes = st.builds(TableWrite, st.booleans(), st.one_of(st.just(1.0), st.floats(0, 1)))


def edit_table(rows: list[list[str]], changes: Sequence[TableEdit]) -> list[list[str]]:
    """``rows[0]`` is the header; edits address columns and rows modulo their counts."""
    rows = [list(row) for row in rows]
    for change in changes:
        width = len(rows[0])
        if width == 0:
            break
        column = change.column % width
        if isinstance(change, SetCell):
            rows[change.row % len(rows)][column] = change.value
        elif isinstance(change, RenameColumn):
            rows[0][column] = change.name
        elif isinstance(change, DropColumn):
            for row in rows:
                del row[column]
        else:
            for row in rows:
                row.append(row[column])
    return rows


def write_table(path: Path, rows: list[list[str]], how: TableWrite) -> None:
    if how.quoted:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        content = text.getvalue()
    else:
        content = "".join(",".join(row) + "\n" for row in rows)
    data = content.encode()
    path.write_bytes(data[: int(how.cut * len(data))])


def real_rows(path: Path, n: int) -> list[list[str]]:
    with path.open(newline="") as handle:
        return [row for _, row in zip(range(n + 1), csv.reader(handle), strict=False)]


def count(tally: Counter[str], outcome: object) -> None:
    """Tally a table reader's outcome (and report it to hypothesis' statistics)."""
    name = "DataInputError" if isinstance(outcome, DataInputError) else "valid"
    tally[name] += 1
    event(f"outcome: {name}")


def assert_valid_labs(labs: pd.DataFrame) -> None:
    """What the cohort builder relies on."""
    assert list(labs.columns) == ["subject_id", "itemid", "charttime", "valuenum", "valueuom", "comment"]
    assert set(labs["comment"]) <= {c.value for c in LabComment}
    assert labs["subject_id"].dtype == "int64" and labs["itemid"].dtype == "int64"
    assert labs["charttime"].dtype == "datetime64[ns]" and labs["charttime"].notna().all()
    assert labs["valuenum"].dtype == "float64" and np.isfinite(labs["valuenum"]).all()
    assert set(labs["itemid"]) <= set(ITEMIDS)


def test_hostile_labevents_tables_read_or_fail_clearly(tiny_labs_file: Path, tmp_path: Path) -> None:
    rows = real_rows(tiny_labs_file, 40)
    path = tmp_path / "labevents.csv"
    tally: Counter[str] = Counter()

    @fuzz_settings(max_examples=300)
    @given(changes=table_edits, how=table_writes, block_size=st.sampled_from([1024, 4 << 20]))
    @example(changes=[SetCell(1, 1, "")], how=TableWrite(True, 1.0), block_size=4 << 20)  # no subject_id
    @example(changes=[SetCell(1, 8, "inf")], how=TableWrite(True, 1.0), block_size=4 << 20)
    @example(changes=[SetCell(1, 5, "2180-05-07 05:05:00+05:00")], how=TableWrite(True, 1.0), block_size=4 << 20)
    @example(changes=[SetCell(1, 1, "1" * 30)], how=TableWrite(True, 1.0), block_size=4 << 20)  # > int64
    def run(changes: list[TableEdit], how: TableWrite, block_size: int) -> None:
        write_table(path, edit_table(rows, changes), how)
        outcome = bounded(lambda: read_potassium_labs(path, ITEMIDS, block_size=block_size), DataInputError)
        if isinstance(outcome, DataInputError):
            assert str(outcome)
        else:
            labs, stats = outcome
            assert_valid_labs(labs)
            assert stats.rows_kept == len(labs) <= stats.rows_scanned
        count(tally, outcome)

    run()
    print(f"labevents tables: {sum(tally.values())} inputs, outcomes {dict(tally)}")
    assert tally["valid"] >= 30 and tally["DataInputError"] >= 30, tally


def test_hostile_record_lists_read_or_fail_clearly(tiny_record_list: Path, tmp_path: Path) -> None:
    rows = real_rows(tiny_record_list, 20)
    (tmp_path / "ecg").mkdir()
    path = tmp_path / "ecg" / "record_list.csv"
    tally: Counter[str] = Counter()

    @fuzz_settings(max_examples=150)
    @given(changes=table_edits, how=table_writes)
    @example(changes=[SetCell(1, 4, "../../etc/passwd")], how=TableWrite(True, 1.0))
    @example(changes=[SetCell(1, 4, "/etc/passwd")], how=TableWrite(True, 1.0))
    @example(changes=[SetCell(1, 4, "..\\..\\x")], how=TableWrite(True, 1.0))
    @example(changes=[SetCell(1, 0, "")], how=TableWrite(True, 1.0))
    def run(changes: list[TableEdit], how: TableWrite) -> None:
        write_table(path, edit_table(rows, changes), how)
        outcome = bounded(lambda: read_record_list(path.parent), DataInputError)
        if isinstance(outcome, DataInputError):
            assert str(outcome)
        else:
            assert list(outcome.columns) == ["subject_id", "study_id", "ecg_time", "ecg_path"]
            assert outcome["subject_id"].dtype == "int64" and outcome["study_id"].dtype == "int64"
            assert outcome["ecg_time"].dtype == "datetime64[ns]"
            for relative in outcome["ecg_path"]:
                resolved = (path.parent / relative.replace("\\", "/")).resolve()
                assert resolved.is_relative_to(path.parent.resolve()) and resolved != path.parent.resolve()
        count(tally, outcome)

    run()
    print(f"record lists: {sum(tally.values())} inputs, outcomes {dict(tally)}")
    assert tally["valid"] >= 10 and tally["DataInputError"] >= 10, tally


@pytest.mark.parametrize(("row", "values", "dropped", "error"), [
    ("1,50971,2180-01-01 10:00:00,4.1", [4.1], {}, None),
    (",50971,2180-01-01 10:00:00,4.1", [], {"lab_missing_subject": 1}, None),  # was IntCastingNaNError
    ("1,50971,2180-01-01 10:00:00,inf", [], {"lab_missing_value": 1}, None),  # was kept as inf
    ("1,50971,2180-01-01 10:00:00+05:00,4.1", None, None, "carries UTC offsets"),  # was an aware column
    ("1" * 30 + ",50971,2180-01-01 10:00:00,4.1", None, None, "corrupt after 0 rows"),  # was ArrowInvalid
])
def test_lab_rows_found_by_the_fuzzer(tmp_path: Path, row: str, values: list[float] | None,
                                      dropped: dict[str, int] | None, error: str | None) -> None:
    path = tmp_path / "labevents.csv"
    path.write_text(f"subject_id,itemid,charttime,valuenum\n{row}\n")
    if error is not None:
        with pytest.raises(DataInputError, match=error):
            read_potassium_labs(path, ITEMIDS)
        return
    labs, stats = read_potassium_labs(path, ITEMIDS)
    assert labs["valuenum"].tolist() == values and stats.dropped == dropped


@pytest.mark.parametrize("relative", ["../../etc/passwd", "/etc/passwd", "files/../../x", "..\\..\\x", "."])
def test_record_list_paths_outside_the_root_are_refused(tmp_path: Path, relative: str) -> None:
    (tmp_path / "record_list.csv").write_text("subject_id,study_id,ecg_time,path\n"
                                              "1,2,2180-01-01 10:00:00,files/p1/s2/2\n"
                                              f"1,3,2180-01-01 11:00:00,{relative}\n")
    with pytest.raises(DataInputError, match="1 path\\(s\\) empty or outside the ECG root"):
        read_record_list(tmp_path)
