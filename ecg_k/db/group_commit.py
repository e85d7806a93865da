"""Group commit: the writes of concurrent requests share one transaction, so one commit (one fsync of the
SQLite WAL, one round trip to PostgreSQL) makes many of them durable.

A caller hands :meth:`GroupCommitter.run` a function of a session; a single writer thread runs every function
waiting when the previous commit ended, in submission order, inside one transaction, commits it, and only then
returns each function's result to its caller. So a result always means "committed" (with the database's own
durability: ``synchronous=FULL`` on SQLite). When the shared transaction fails, each function is run again
alone in a transaction of its own, so one bad write never fails the others, and its caller gets its error.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from ecg_k.db.session import session_scope

T = TypeVar("T")
Work = Callable[[Session], Any]

MAX_GROUP = 64
"""Most requests committed together: bounds the work lost to one retry and the wait of the last in line."""


class GroupCommitter:
    """The writer thread of one database URL (see the module docstring)."""

    def __init__(self, database_url: str, max_group: int = MAX_GROUP) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be at least 1, got {max_group}")
        self.database_url = database_url
        self.max_group = max_group
        self._queue: queue.SimpleQueue[tuple[Work, Future[Any]]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="ecgk-group-commit", daemon=True)
        self._thread.start()

    def run(self, work: Callable[[Session], T]) -> T:
        """``work(session)``'s result once its transaction is committed; its exception if it failed alone."""
        future: Future[T] = Future()
        self._queue.put((work, future))
        return future.result()

    def _next_group(self) -> list[tuple[Work, Future[Any]]]:
        group = [self._queue.get()]
        while len(group) < self.max_group:
            try:
                group.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return group

    def _loop(self) -> None:
        while True:
            group = self._next_group()
            try:
                with session_scope(self.database_url) as session:
                    results = [work(session) for work, _ in group]
            except Exception as err:  # the shared transaction rolled back: each write alone decides its fate
                if len(group) == 1:
                    group[0][1].set_exception(err)
                    continue
                for work, future in group:
                    self._run_alone(work, future)
                continue
            for (_, future), result in zip(group, results, strict=True):
                future.set_result(result)

    def _run_alone(self, work: Work, future: Future[Any]) -> None:
        try:
            with session_scope(self.database_url) as session:
                result = work(session)
        except Exception as err:
            future.set_exception(err)
            return
        future.set_result(result)


_committers: dict[str, GroupCommitter] = {}
_lock = threading.Lock()


def group_committer(database_url: str) -> GroupCommitter:
    """The process's group committer of ``database_url`` (started on first use)."""
    with _lock:
        if database_url not in _committers:
            _committers[database_url] = GroupCommitter(database_url)
        return _committers[database_url]
