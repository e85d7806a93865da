"""Group commit: concurrent writes share commits, every result means committed, a bad write fails alone."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.db.group_commit import GroupCommitter
from ecg_k.db.session import dispose_engines, get_engine, session_scope


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'group.db'}"
    with session_scope(url) as session:
        session.execute(sa.text("CREATE TABLE items (n INTEGER PRIMARY KEY)"))
    yield url
    dispose_engines()


def _insert(n: int, pause_s: float = 0.0) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        session.execute(sa.text("INSERT INTO items (n) VALUES (:n)"), {"n": n})
        time.sleep(pause_s)  # holds the transaction open so that the next writers queue up
        return n
    return work


def _stored(url: str) -> list[int]:
    """The committed rows, read on a connection of its own: a reader that never waits for the engine's single
    SQLite connection, so the writers it checks are not throttled by it (WAL lets it read beside them)."""
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as connection:
        return sorted(n for (n,) in connection.execute("SELECT n FROM items"))


def test_concurrent_writes_share_commits_and_return_once_committed(database_url: str) -> None:
    commits = []
    sa.event.listen(get_engine(database_url), "commit", lambda _connection: commits.append(1))
    committer = GroupCommitter(database_url)
    seen_committed = []

    def submit(n: int) -> None:
        committer.run(_insert(n, pause_s=0.01))
        seen_committed.append(n in _stored(database_url))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(submit, range(64)))
    assert 1 <= len(commits) < 64 / 2, len(commits)
    assert all(seen_committed)  # a returned result is already visible to a new session: committed
    assert _stored(database_url) == list(range(64))


def test_a_failing_write_fails_alone_and_the_others_commit(database_url: str) -> None:
    committer = GroupCommitter(database_url)
    with session_scope(database_url) as session:
        session.execute(sa.text("INSERT INTO items (n) VALUES (7)"))
    start = threading.Barrier(9)

    def submit(n: int) -> str:
        start.wait()
        try:
            committer.run(_insert(n, pause_s=0.005))
        except sa.exc.IntegrityError:
            return "refused"
        return "stored"

    with ThreadPoolExecutor(9) as pool:
        outcomes = dict(zip(range(3, 12), pool.map(submit, range(3, 12)), strict=True))
    assert outcomes.pop(7) == "refused"  # already stored: a primary-key conflict
    assert set(outcomes.values()) == {"stored"}
    assert _stored(database_url) == list(range(3, 12))


def test_group_size_must_be_positive(database_url: str) -> None:
    with pytest.raises(ValueError, match="max_group"):
        GroupCommitter(database_url, max_group=0)
