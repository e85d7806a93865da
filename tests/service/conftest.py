"""A real ``ecgk serve`` (``python -m service.cli serve``) on a free loopback port, on SQLite and on the
PostgreSQL server of tests/ecg_k/db/conftest.py, serving the tiny exported model of tests/ecg_k/conftest.py."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from ecg_k.data.waveforms import read_wfdb
from ecg_k.db.api_keys import create_api_key
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import AuditEvent, EcgRecord, LabConfirmation, Prediction, Role
from ecg_k.db.session import create_db_engine, session_scope
from ecgk_demo.loopback import free_port
from tests.ecg_k.conftest import card, card_path, exported_run  # noqa: F401  (fixtures)
from tests.ecg_k.db.conftest import PostgresServer, postgres_server  # noqa: F401  (fixtures)

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
_pg_databases = itertools.count(1)


@dataclass
class Service:
    """A running service process and what a test needs to talk to it and inspect its database."""

    base_url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    keys: dict[str, str] = field(default_factory=dict)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"X-API-Key": self.keys[key]} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60.0)

    def counts(self) -> dict[str, int]:
        """Rows per table that a request may write."""
        engine = create_db_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return {model.__tablename__: connection.execute(
                    sa.select(sa.func.count()).select_from(model)).scalar_one()
                    for model in (AuditEvent, Prediction, EcgRecord, LabConfirmation)}
        finally:
            engine.dispose()

    def audit_events(self, request_id: str) -> list[AuditEvent]:
        with session_scope(self.database_url) as session:
            return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.request_id == request_id)))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_service(model_path: Path | None, database_url: str, home: Path, **env: str) -> Service:
    """Migrate the database, create one key per role (two clients), start the server and wait until ready.

    ``model_path`` pins the served model (``--model``); ``None`` serves the registry's champion (hot swap)."""
    upgrade(database_url)
    with session_scope(database_url) as session:
        keys = {name: create_api_key(session, role, actor="test", name=name).plaintext
                for name, role in (("client", Role.CLIENT), ("other_client", Role.CLIENT),
                                   ("reviewer", Role.REVIEWER), ("admin", Role.ADMIN))}
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    environment = {**os.environ, "ECGK_HOME": str(home), "ECGK_DATABASE_URL": database_url,
                   "ECGK_USE_CUDA": "false", "PYTHONPATH": str(REPO_ROOT), **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", *(["--model", str(model_path)] if model_path else []),
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", database_url, process, log_path, keys)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n{service.log()[-4000:]}")
        try:
            if httpx.get(f"{service.base_url}/health/ready", timeout=2).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_service(service)
    raise RuntimeError(f"service not ready after {START_TIMEOUT_S} s:\n{service.log()[-4000:]}")


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()


def new_database(request: pytest.FixtureRequest, dialect: str, folder: Path) -> str:
    """A fresh empty database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if dialect == "sqlite":
        return f"sqlite:///{folder / 'ecgk.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"ecgk_service_{next(_pg_databases)}"
    server.admin(f"CREATE DATABASE {name}")
    return server.url(name)


@pytest.fixture(scope="session")
def model_path(exported_run: Path) -> Path:  # noqa: F811
    return exported_run / "model.onnx"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, model_path: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service under test, once per backend (high rate limits, for keys and for failed authentications
    from the loopback address the tests share: the tests of those limits start their own)."""
    home = tmp_path_factory.mktemp(f"service-{request.param}")
    running = start_service(model_path, new_database(request, request.param, home), home,
                            ECGK_RATE_LIMIT_BURST="100000", ECGK_RATE_LIMIT_PER_S="100000",
                            ECGK_AUTH_FAILURE_BURST="100000", ECGK_AUTH_FAILURE_RATE_PER_S="100000")
    try:
        yield running
    finally:
        stop_service(running)


@dataclass(frozen=True)
class RawEcg:
    """A real 12-lead ECG in mV."""

    signal: np.ndarray
    fs: float
    lead_names: tuple[str, ...]

    def payload(self, **extra: object) -> dict[str, object]:
        return {"sampling_rate": self.fs,
                "leads": {name: row.tolist() for name, row in zip(self.lead_names, self.signal, strict=True)},
                **extra}


@pytest.fixture(scope="session")
def cinc_record(tiny_cinc_dir: Path) -> Path:
    return tiny_cinc_dir / "E07500"


@pytest.fixture(scope="session")
def raw_ecg(cinc_record: Path) -> RawEcg:
    record = read_wfdb(cinc_record)
    return RawEcg(np.round(record.signal, 4), record.fs, record.lead_names)


@pytest.fixture(scope="module")
def prediction_id(service: Service, raw_ecg: RawEcg) -> str:
    """A prediction of the ``client`` key (one per test module and backend)."""
    with service.client("client") as client:
        response = client.post("/v1/predictions", json=raw_ecg.payload())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])
