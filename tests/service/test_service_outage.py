"""A database outage while the service runs: ``/health/ready`` says 503 (database unreachable) and a prediction
gets a 503 that stores nothing; when the database returns, both recover without restarting the service.

The outage is real: the test's own PostgreSQL server is stopped with ``pg_ctl stop`` and started again on the
same port and data directory (the session's shared server is left alone)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecg_k.db.session import dispose_engines
from tests.ecg_k.db.conftest import PG_BIN, PostgresServer, running_postgres
from tests.service.conftest import RawEcg, Service, start_service, stop_service

RECOVERY_TIMEOUT_S = 30.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_service(own_postgres: PostgresServer, model_path: Path, tmp_path: Path) -> Iterator[Service]:
    own_postgres.admin("CREATE DATABASE ecgk_outage")
    running = start_service(model_path, own_postgres.url("ecgk_outage"), tmp_path / "home")
    try:
        yield running
    finally:
        stop_service(running)
        dispose_engines()


def _store_files(home: Path) -> list[Path]:
    return sorted(path for path in (home / "ecg-store").rglob("*") if path.is_file())


def test_readiness_and_predictions_follow_the_database(pg_service: Service, own_postgres: PostgresServer,
                                                       raw_ecg: RawEcg, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pg_service.client("client") as client:
        assert client.get("/health/ready").status_code == 200
        assert client.post("/v1/predictions", json=raw_ecg.payload()).status_code == 201
        before = pg_service.counts()
        dispose_engines()  # the test's own pool must not hold connections across the restart
        files_before = _store_files(home)

        own_postgres.pause(PG_BIN)
        try:
            ready = client.get("/health/ready")
            assert ready.status_code == 503, ready.text
            assert ready.json() == {"status": "unavailable", "detail": "database unreachable"}
            assert client.get("/health/live").status_code == 200

            changed = raw_ecg.payload(patient_id="pseudo-outage")  # another ECG: a new blob if stored
            changed["leads"][raw_ecg.lead_names[0]][0] += 0.001
            response = client.post("/v1/predictions", json=changed)
            assert response.status_code == 503, response.text
            assert "database unavailable" in response.json()["detail"]
            assert response.headers["Retry-After"]
            assert _store_files(home) == files_before
        finally:
            own_postgres.resume(PG_BIN)

        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while (ready := client.get("/health/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.status_code == 200, ready.text
        assert pg_service.counts() == before  # the refused prediction wrote nothing, audit included
        again = client.post("/v1/predictions", json=raw_ecg.payload())
        assert again.status_code == 201, again.text
    assert pg_service.process.poll() is None
    assert "database unavailable during POST /v1/predictions" in pg_service.log()
