"""The one engine and session factory per database URL (the settings' ``database_url`` by default)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ecg_k.settings import get_settings

SQLITE_BUSY_TIMEOUT_S = 30.0


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Every SQLite connection: foreign keys enforced, WAL so readers do not block the writer, and the
    settings' ``sqlite_synchronous`` (FULL by default: a commit is durable when it returns)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={get_settings().sqlite_synchronous}")
    cursor.close()


def resolve_database_url(database_url: str | None) -> str:
    """``database_url``, else the settings' (``ECGK_DATABASE_URL``, SQLite under ``ECGK_HOME`` by default): the
    one place that default is taken, for sessions, migrations and the Alembic environment."""
    return database_url or get_settings().database_url


def create_db_engine(database_url: str) -> Engine:
    """A new engine for ``database_url``; SQLite files get their directory created.

    Most callers want :func:`get_engine` (one shared engine per URL) instead.
    """
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite has one writer at a time anyway, and threads queued on the pool
        # are handed the connection the moment it is free, where the busy handler would make them poll with
        # sleeps of up to 100 ms (the tail latency of concurrent requests). Other processes still meet the
        # busy timeout.
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, pool_size=1,
                                  max_overflow=0, pool_timeout=SQLITE_BUSY_TIMEOUT_S)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


_engines: dict[str, Engine] = {}
_sessionmakers: dict[str, sessionmaker[Session]] = {}
_lock = threading.Lock()


def get_engine(database_url: str | None = None) -> Engine:
    """The shared engine of ``database_url`` (default: the settings' ``database_url``)."""
    url = resolve_database_url(database_url)
    with _lock:
        if url not in _engines:
            _engines[url] = create_db_engine(url)
        return _engines[url]


def get_sessionmaker(database_url: str | None = None) -> sessionmaker[Session]:
    """The shared session factory of ``database_url`` (default: the settings' ``database_url``)."""
    url = resolve_database_url(database_url)
    engine = get_engine(url)
    with _lock:
        if url not in _sessionmakers:
            _sessionmakers[url] = sessionmaker(bind=engine, expire_on_commit=False)
        return _sessionmakers[url]


@contextmanager
def session_scope(database_url: str | None = None) -> Iterator[Session]:
    """A session that commits when the block ends normally and rolls back when it raises."""
    session = get_sessionmaker(database_url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_snapshot(database_url: str | None = None) -> Iterator[Session]:
    """A read-only session whose queries all see one snapshot of the database: writers that commit meanwhile
    are neither waited for nor seen (PostgreSQL: a REPEATABLE READ, read-only transaction; SQLite: an explicit
    deferred ``BEGIN``, whose first read pins the WAL snapshot). For checks that read several tables or one
    table in several queries, such as walking the audit chain while the service appends to it."""
    session = get_sessionmaker(database_url)()
    try:
        if session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN")
        else:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ",
                                                  "postgresql_readonly": True})
        yield session
    finally:
        session.close()  # rolls the read transaction back


def dispose_engines() -> None:
    """Close every pooled connection and forget the shared engines (tests, shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _sessionmakers.clear()
