"""Coverage-guided fuzzing of :func:`ecg_k.data.waveforms.read_wfdb` with atheris (libFuzzer steered by the
coverage of wfdb's and ecg_k's Python code), started by test_reader_fuzz.py as
``python atheris_wfdb.py CORPUS [libFuzzer flags]``.

An input is a header and a signal file joined by :data:`SEPARATOR`. The reader must return or raise
``QualityError``; any other exception, an input slower than libFuzzer's ``-timeout`` or a process above its
``-rss_limit_mb`` ends the run with a non-zero exit and the input saved (crash-*, timeout-*, oom-*).
Guidance is what random mutation lacks: it found a 120-digit rate that wfdb turns into an int too large for
numpy, a multi-segment header, and a record line declaring 50 million signals (1.2 GiB of lists).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import atheris

SEPARATOR = b"\n@@signal@@\n"
RECORD = "r"


def as_input(header: str, signal: bytes, record_name: str, signal_name: str) -> bytes:
    """A fuzzer input from a real record, renamed to :data:`RECORD` and ``RECORD.dat``."""
    renamed = header.replace(signal_name, f"{RECORD}.dat").replace(record_name, RECORD)
    return renamed.encode() + SEPARATOR + signal


def read_one(read: Callable[[Path], object], error: type[Exception], data: bytes) -> None:
    """Write the input as a record in a fresh folder and read it; ``error`` is the one allowed exception."""
    header, _, signal = data.partition(SEPARATOR)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"{RECORD}.hea").write_bytes(header)
        (Path(folder) / f"{RECORD}.dat").write_bytes(signal)
        try:
            read(Path(folder) / RECORD)
        except error:
            pass


def main() -> None:
    with atheris.instrument_imports(include=["wfdb", "ecg_k"]):
        from ecg_k.data.waveforms import read_wfdb
        from ecg_k.quality import QualityError
    atheris.Setup(sys.argv, partial(read_one, read_wfdb, QualityError))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
