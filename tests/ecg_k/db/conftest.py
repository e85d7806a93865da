"""Database fixtures: every DB test runs on SQLite (a temporary file) and on a real PostgreSQL 15 server.

The PostgreSQL server is started once per session from Debian's binaries (``/usr/lib/postgresql/15/bin``,
or ``ECGK_TEST_PG_BIN``) on a free loopback port, with throwaway data and socket directories, as the
``postgres`` user when the tests run as root (the server refuses root). Each test gets a database of its
own. Without the binaries the PostgreSQL cases are skipped, except when ``CI`` is set: there they fail.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ecg_k.db.migrate import upgrade
from ecg_k.db.session import dispose_engines, get_sessionmaker
from ecgk_demo.loopback import free_port

PG_BIN = Path(os.environ.get("ECGK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "app"
SERVER_ACCOUNT = "postgres"
_database_numbers = itertools.count(1)


def in_ci(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` says we run in CI (``CI=true``, as GitHub Actions and most CI systems set)."""
    return environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_postgres(bin_dir: Path, environ: Mapping[str, str]) -> None:
    """Return if a PostgreSQL server can be started from ``bin_dir``; else skip, or fail under CI."""
    problems = [f"{bin_dir / name} is missing" for name in ("initdb", "pg_ctl", "postgres")
                if not (bin_dir / name).is_file()]
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_ACCOUNT)
        except KeyError:
            problems.append(f"no '{SERVER_ACCOUNT}' account to run the server as (it refuses root)")
    if not problems:
        return
    message = "PostgreSQL 15 unavailable: " + "; ".join(problems) + " (apt-get install postgresql)"
    if in_ci(environ):
        pytest.fail(f"{message}; CI is set, so the PostgreSQL tests must run")
    pytest.skip(message)


def _as_server_account(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_ACCOUNT, "--", *command] if os.geteuid() == 0 else command


def _owned_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_ACCOUNT)
    return path


@dataclass
class PostgresServer:
    """A running throwaway PostgreSQL server on 127.0.0.1 (trust auth, user ``app``)."""

    data_dir: Path
    socket_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def admin(self, statement: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    @classmethod
    def start(cls, bin_dir: Path) -> PostgresServer:
        data_dir = _owned_tempdir("ecgk-pg-data-")
        socket_dir = _owned_tempdir("ecgk-pg-socket-")
        subprocess.run(
            _as_server_account([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", PG_USER, "--auth=trust",
                                "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True, text=True,
        )
        for _attempt in range(3):  # the free port may be taken between the probe and the start
            server = cls(data_dir, socket_dir, free_port())
            started = server._pg_ctl_start(bin_dir)
            if started.returncode == 0:
                return server
        log = (data_dir / "server.log").read_text() if (data_dir / "server.log").exists() else ""
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}\n{log[-2000:]}")

    def _pg_ctl_start(self, bin_dir: Path) -> subprocess.CompletedProcess[str]:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.socket_dir} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        return subprocess.run(
            _as_server_account([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                                str(self.data_dir / "server.log"), "-o", options, "-w", "-t", "60", "start"]),
            capture_output=True, text=True,
        )

    def pause(self, bin_dir: Path) -> None:
        """Stop the server but keep its data (an outage); :meth:`resume` brings it back on the same port."""
        stop = [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"]
        subprocess.run(_as_server_account(stop), check=True, capture_output=True, text=True)

    def resume(self, bin_dir: Path) -> None:
        started = self._pg_ctl_start(bin_dir)
        if started.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not restart: {started.stderr}")

    def stop(self, bin_dir: Path) -> None:
        stop = [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_server_account(stop), capture_output=True, text=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_requirement() -> Callable[[Path, Mapping[str, str]], None]:
    """The skip-or-fail rule for a missing PostgreSQL (so a test can check it)."""
    return require_postgres


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A throwaway server for the block (skip or fail first when PostgreSQL is unavailable)."""
    require_postgres(PG_BIN, os.environ)
    server = PostgresServer.start(PG_BIN)
    try:
        yield server
    finally:
        dispose_engines()
        server.stop(PG_BIN)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """Name of a PostgreSQL database migrated to head, cloned by each test that needs one."""
    server_template = "ecgk_template"
    postgres_server.admin(f"CREATE DATABASE {server_template}")
    upgrade(postgres_server.url(server_template))
    return server_template


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, copied by each test that needs one."""
    path = tmp_path_factory.mktemp("sqlite-template") / "ecgk.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request: pytest.FixtureRequest) -> str:
    """The backend of this test case: ``"sqlite"`` or ``"postgresql"``."""
    return str(request.param)


def _new_database(
    request: pytest.FixtureRequest, dialect: str, tmp_path: Path, migrated: bool
) -> Iterator[str]:
    """A database of the test's own: empty, or already at head (cloned from the session's template)."""
    if dialect == "sqlite":
        path = tmp_path / "ecgk.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        dispose_engines()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"ecgk_test_{next(_database_numbers)}"
    template = f" TEMPLATE {request.getfixturevalue('postgres_template')}" if migrated else ""
    server.admin(f"CREATE DATABASE {name}{template}")
    yield server.url(name)
    dispose_engines()
    server.admin(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> Iterator[str]:
    """URL of a new, empty database (a SQLite file, or a fresh PostgreSQL database)."""
    yield from _new_database(request, dialect, tmp_path, migrated=False)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, dialect: str, tmp_path: Path) -> Iterator[str]:
    """URL of a new database at head."""
    yield from _new_database(request, dialect, tmp_path, migrated=True)


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    """A session on a migrated database (closed, uncommitted work rolled back, at the end)."""
    with get_sessionmaker(db_url)() as db_session:
        yield db_session

