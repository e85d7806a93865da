"""A revoked key is refused on its very next request by every worker (no per-process key cache), and the
access log is one JSON object per line with no identifier: two real uvicorn workers on one database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ecg_k.db.api_keys import create_api_key, revoke_api_key
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import Role
from ecg_k.db.session import session_scope
from ecgk_demo.loopback import free_port
from service.logs import ACCESS_FIELDS, log_config
from tests.service.conftest import REPO_ROOT, START_TIMEOUT_S

WORKERS = 2


class Workers:
    """``uvicorn --workers 2`` serving the app factory; its log, parsed."""

    def __init__(self, base_url: str, log_path: Path) -> None:
        self.base_url, self.log_path = base_url, log_path

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def access(self, request_ids: set[str]) -> list[dict[str, object]]:
        return [line for line in self.lines()
                if line["logger"] == "service.access" and line.get("request_id") in request_ids]

    def get(self, key: str, request_id: str) -> int:
        """One request on a new connection (so the kernel may hand it to either worker)."""
        headers = {"X-API-Key": key, "X-Request-Id": request_id, "Connection": "close"}
        return httpx.get(f"{self.base_url}/v1/models", headers=headers, timeout=30).status_code


@pytest.fixture
def workers(model_path: Path, tmp_path: Path) -> Iterator[Workers]:
    database_url = f"sqlite:///{tmp_path / 'ecgk.db'}"
    upgrade(database_url)
    config = tmp_path / "log-config.json"
    config.write_text(json.dumps(log_config("INFO", "json")))
    port = free_port()
    log_path = tmp_path / "server.log"
    env = os.environ | {"ECGK_HOME": str(tmp_path), "ECGK_DATABASE_URL": database_url, "ECGK_USE_CUDA": "false",
                        "ECGK_MODEL_PATH": str(model_path), "ECGK_MODEL_POLL_S": "0", "PYTHONPATH": str(REPO_ROOT),
           # the kernel may hand many connections to one worker before the other: no per-key rate limit here
           "ECGK_RATE_LIMIT_BURST": "10000"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--workers", str(WORKERS),
             "--host", "127.0.0.1", "--port", str(port), "--log-config", str(config), "--no-access-log"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    running = Workers(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()[-4000:]
            try:
                if httpx.get(f"{running.base_url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)


def _statuses_by_worker(workers: Workers, key: str, label: str, want: int) -> dict[int, set[int]]:
    """Requests until each worker has answered at least one; ``{pid: statuses}`` from the access log."""
    request_ids: set[str] = set()
    for attempt in range(200):
        request_id = f"{label}-{attempt}"
        request_ids.add(request_id)
        assert workers.get(key, request_id) == want, request_id
        by_pid: dict[int, set[int]] = {}
        for line in workers.access(request_ids):
            by_pid.setdefault(int(line["pid"]), set()).add(int(line["status"]))
        if len(by_pid) == WORKERS:
            return by_pid
    pytest.fail(f"200 requests did not reach {WORKERS} workers")


@pytest.mark.slow
def test_a_revoked_key_is_refused_by_every_worker_on_its_next_request(workers: Workers, model_path: Path) -> None:
    database_url = f"sqlite:///{workers.log_path.parent / 'ecgk.db'}"
    with session_scope(database_url) as session:
        new = create_api_key(session, Role.ADMIN, actor="test")
    assert all(statuses == {200} for statuses in _statuses_by_worker(workers, new.plaintext, "before", 200).values())
    with session_scope(database_url) as session:
        revoke_api_key(session, new.key.id, actor="test")
    # the very first request after the revocation, whichever worker takes it, and then both workers
    assert workers.get(new.plaintext, "first-after") == 401
    by_pid = _statuses_by_worker(workers, new.plaintext, "after", 401)
    assert all(statuses == {401} for statuses in by_pid.values())

    access = workers.access({line["request_id"] for line in workers.lines() if "request_id" in line})
    assert access and all(set(ACCESS_FIELDS) <= set(line) for line in access)
    served = next(line for line in access if str(line["request_id"]).startswith("before-"))
    assert served["route"] == "/v1/models" and served["method"] == "GET" and served["latency_ms"] >= 0
    assert str(served["model_version"]).count("/") == 1 and served["level"] == "INFO" and served["time"]
    text = workers.log_path.read_text()
    assert new.plaintext.split("_")[1] not in text and "api_key:" not in text  # no caller identifiers
