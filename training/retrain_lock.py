"""The lock that keeps two ``ecgk retrain`` runs from overlapping.

Two layers, both released by the operating system or the database when the holder dies, so a crashed run
never leaves a stale lock behind:

- an exclusive ``flock`` on ``$ECGK_HOME/retrain.lock`` (one host; the file's text only names the holder,
  and a leftover file from a crashed run is simply locked again);
- on PostgreSQL, a session-level advisory lock held on a connection of its own for the whole run, so jobs
  scheduled on several hosts against one database do not overlap either (SQLite is one host by nature).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from ecg_k.db.session import create_db_engine

LOCK_FILE = "retrain.lock"
ADVISORY_LOCK_KEY = 0x45434B_52545241  # "ECK" "RTRA": one key for every ecg-k retraining run


class RetrainBusyError(RuntimeError):
    """Another retraining run holds the lock."""


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode(errors="replace").strip() or "holder unknown"
            raise RetrainBusyError(f"another ecgk retrain is running ({holder}; lock {path})") from None
        os.ftruncate(fd, 0)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def _database_lock(database_url: str) -> Iterator[None]:
    engine = create_db_engine(database_url)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        yield
        return
    try:
        with engine.connect() as connection:
            acquired = connection.execute(sa.select(sa.func.pg_try_advisory_lock(ADVISORY_LOCK_KEY))).scalar_one()
            connection.commit()
            if not acquired:
                raise RetrainBusyError("another ecgk retrain holds the database's retraining lock")
            try:
                yield
            finally:
                connection.execute(sa.select(sa.func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
                connection.commit()
    finally:
        engine.dispose()


@contextmanager
def retrain_lock(home: Path, database_url: str) -> Iterator[None]:
    """Hold both locks for the block; :class:`RetrainBusyError` at once when another run holds one."""
    with _file_lock(home / LOCK_FILE), _database_lock(database_url):
        yield
