"""Alembic, run from Python: upgrade to head at every start-up, safely from several processes at once.

Concurrent callers are serialised by a lock taken before Alembic reads the current revision, inside the
transaction that runs the migrations: ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` (the
database write lock, waited for up to the busy timeout) on SQLite. The second caller therefore finds the
schema at head and does nothing. DDL is transactional on both, so a failed migration leaves no half-schema.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from ecg_k.db.session import SQLITE_BUSY_TIMEOUT_S, create_db_engine, resolve_database_url

ADVISORY_LOCK_KEY = 0x45434B_4D494752  # "ECK" "MIGR": one key for every ecg-k migration


def find_migrations_dir(module_dir: Path) -> Path:
    """Where the Alembic environment is, for this module living in ``module_dir``.

    A wheel ships the repository's ``migrations/`` as ``ecg_k/db/migrations`` (setup.py maps it), so an
    installed ecg-k finds it beside this module; a source checkout or an editable install finds it at the
    repository root, two levels up. The first that holds ``env.py`` wins.
    """
    candidates = (module_dir / "migrations", module_dir.parents[1] / "migrations")
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    return candidates[0]


MIGRATIONS_DIR = find_migrations_dir(Path(__file__).resolve().parent)


def alembic_config() -> Config:
    """An Alembic config for ``migrations/`` (no ini file, so the caller's logging is left alone)."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise FileNotFoundError(
            f"Alembic environment not found at {MIGRATIONS_DIR} nor in a source checkout around it: "
            "reinstall ecg-k (its wheel ships the migrations) or run it from a checkout"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _sqlite_driver_autocommit(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself (below), DDL included


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def migration_connection(database_url: str) -> Iterator[Connection]:
    """A connection inside one transaction that holds the migration lock; commits when the block ends."""
    engine = create_db_engine(database_url)
    dialect = engine.dialect.name
    if dialect == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_driver_autocommit)
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
    try:
        with engine.begin() as connection:
            if dialect == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
            yield connection
    finally:
        engine.dispose()


def _migrate(database_url: str | None, step: Callable[[Config, str], None], revision: str) -> None:
    """Run the Alembic ``step`` (``command.upgrade``/``downgrade``) to ``revision`` in one locked transaction,
    again while SQLite answers "database is locked" without waiting its busy timeout (it does so for a lock it
    cannot wait for without risking deadlock, e.g. while another process switches a new database to WAL), for
    up to :data:`SQLITE_BUSY_TIMEOUT_S`. Safe: a failed attempt rolled back whole."""
    config = alembic_config()
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            with migration_connection(resolve_database_url(database_url)) as connection:
                config.attributes["connection"] = connection
                step(config, revision)
            return
        except sa.exc.OperationalError as error:
            if "database is locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.05, 0.25))


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Migrate the database up to ``revision`` (idempotent: a database at head is left as it is)."""
    _migrate(database_url, command.upgrade, revision)


def downgrade(database_url: str | None, revision: str) -> None:
    """Migrate the database down to ``revision`` (``"base"`` drops every ecg-k table)."""
    _migrate(database_url, command.downgrade, revision)


def current_revision(database_url: str | None = None) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    engine = create_db_engine(resolve_database_url(database_url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration found in {MIGRATIONS_DIR / 'versions'}")
    return head
