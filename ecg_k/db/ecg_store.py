"""Content-addressed store of submitted ECGs (for review plots and retraining).

An ECG is ``(signal float32 (leads, samples), fs, lead names)``. Its address is the sha256 of a canonical
encoding of exactly that content (a JSON header with format, dtype, shape, fs and lead names, a NUL byte,
then the little-endian float32 samples), so identical content always gets the same address, whatever the
file container does. Blobs live at ``<root>/<sha[:2]>/<sha>.npz``, are written atomically (temporary file,
fsync, rename), and are verified against their address on every read.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ecg_k.db.models import EcgRecord
from ecg_k.settings import get_settings

FORMAT = "ecg-k-ecg/1"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class EcgStoreError(Exception):
    """Base of the ECG store's errors."""


class EcgNotFoundError(EcgStoreError, FileNotFoundError):
    """No blob is stored under this address."""


class EcgCorruptError(EcgStoreError, ValueError):
    """A blob exists but cannot be read or does not match its address."""


class StoredEcg(NamedTuple):
    """An ECG as read back from the store."""

    signal: NDArray[np.float32]
    fs: float
    lead_names: tuple[str, ...]


def content_sha256(signal: NDArray[np.float32], fs: float, lead_names: Sequence[str]) -> str:
    """The address of an ECG: sha256 of its canonical encoding (see the module docstring)."""
    header = {"format": FORMAT, "dtype": "<f4", "shape": list(signal.shape), "fs": float(fs),
              "lead_names": list(lead_names)}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(signal, dtype="<f4").tobytes())
    return digest.hexdigest()


def _validate(signal: NDArray[np.float32], fs: float, lead_names: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(signal, np.ndarray) or signal.dtype != np.float32:
        kind = signal.dtype if isinstance(signal, np.ndarray) else type(signal).__name__
        raise ValueError(f"signal must be a float32 numpy array, got {kind}")
    if signal.ndim != 2 or signal.shape[0] < 1 or signal.shape[1] < 1:
        raise ValueError(f"signal must have shape (leads, samples) with both >= 1, got {signal.shape}")
    if not np.isfinite(signal).all():
        raise ValueError("signal holds NaN or infinite values")
    if isinstance(fs, bool) or not isinstance(fs, numbers.Real) or not math.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be a positive finite number of Hz, got {fs!r}")
    names = tuple(lead_names)
    if len(names) != signal.shape[0]:
        raise ValueError(f"{len(names)} lead names for {signal.shape[0]} leads")
    if any(not isinstance(name, str) or not name.strip() for name in names) or len(set(names)) != len(names):
        raise ValueError(f"lead names must be distinct non-empty strings, got {list(names)}")
    return names


def _check_address(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 address (64 lowercase hex characters): {sha256!r}")
    return sha256


def _fsync_directory(directory: Path) -> None:
    """Make the entries just created or renamed in ``directory`` durable (POSIX: fsync the directory itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, signal: NDArray[np.float32], fs: float, names: tuple[str, ...]) -> None:
    """Write the blob to a temporary file beside ``path``, fsync it, rename it into place and fsync the
    directory (and the store's root when the directory is new): once this returns, the blob survives a power
    cut, not only a process crash."""
    new_directory = not path.parent.is_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, signal=signal, fs=np.float64(fs), lead_names=np.array(names, dtype=np.str_))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
        if new_directory:
            _fsync_directory(path.parent.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EcgStore:
    """The file store under ``root`` (default: the settings' ``ecg_store``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else get_settings().ecg_store

    def path_of(self, sha256: str) -> Path:
        """Where the blob of ``sha256`` lives (whether or not it exists)."""
        _check_address(sha256)
        return self.root / sha256[:2] / f"{sha256}.npz"

    def put(self, signal: NDArray[np.float32], fs: float, lead_names: Sequence[str]) -> str:
        """Store an ECG and return its sha256; storing identical content again writes nothing.

        A blob found corrupt under the same address is replaced.
        """
        names = _validate(signal, fs, lead_names)
        sha256 = content_sha256(signal, fs, names)
        path = self.path_of(sha256)
        if path.is_file():
            try:
                self.get(sha256)
                return sha256
            except EcgCorruptError:
                pass
        _write_atomic(path, signal, fs, names)
        return sha256

    def get(self, sha256: str) -> StoredEcg:
        """The ECG stored under ``sha256``, verified against the address."""
        path = self.path_of(sha256)
        if not path.is_file():
            raise EcgNotFoundError(f"no ECG stored under {sha256} (looked for {path})")
        try:
            with np.load(path, allow_pickle=False) as blob:
                signal = np.asarray(blob["signal"])
                fs = float(blob["fs"])
                names = tuple(str(name) for name in blob["lead_names"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise EcgCorruptError(f"ECG blob {path} is unreadable: {err}") from err
        if signal.dtype != np.float32 or signal.ndim != 2:
            raise EcgCorruptError(f"ECG blob {path} holds a {signal.dtype} array of shape {signal.shape}")
        actual = content_sha256(signal, fs, names)
        if actual != sha256:
            raise EcgCorruptError(f"ECG blob {path} is corrupt: its content hashes to {actual}")
        return StoredEcg(signal, fs, names)


def store_ecg(
    session: Session, store: EcgStore, signal: NDArray[np.float32], fs: float, lead_names: Sequence[str]
) -> EcgRecord:
    """Put the ECG in the file store and return its ``ecg_records`` row (created once per content)."""
    sha256 = store.put(signal, fs, lead_names)
    record_ecg(session, sha256, signal.shape, fs, lead_names)
    return session.scalars(sa.select(EcgRecord).where(EcgRecord.sha256 == sha256)).one()


def record_ecg(session: Session, sha256: str, shape: tuple[int, ...], fs: float, lead_names: Sequence[str]) -> None:
    """Insert the ``ecg_records`` row of an ECG already put in the file store, unless it exists (one Core
    statement, no read back: the hot path of a prediction)."""
    inserts: dict[str, Callable[[type[EcgRecord]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    insert = inserts[session.get_bind().dialect.name]
    row = {"sha256": _check_address(sha256), "n_leads": shape[0], "n_samples": shape[1], "fs": float(fs),
           "lead_names": list(lead_names)}
    session.execute(insert(EcgRecord).values(**row).on_conflict_do_nothing(index_elements=["sha256"]))
