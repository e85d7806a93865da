"""The server's own defences, over raw sockets against a live ``ecgk serve`` (SQLite) with short deadlines and a
small failed-authentication budget: the request-head cap (431) and deadline (408), the body deadline (408), a
client that leaves mid-body (499, never a 500), failed authentications limited per source with aggregated
audit events, and admin reads of patient-linked predictions audited as patient reads. Afterwards the audit
chain that all this traffic wrote verifies, and the log holds no 5xx and no traceback."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ecg_k.db.audit import verify_chain
from ecg_k.db.models import AuditEvent
from ecg_k.db.session import session_scope
from service.limits import FailedAuthLimiter
from tests.service.conftest import RawEcg, Service, start_service, stop_service

HEAD_CAP = 16 * 2**10  # the default ECGK_MAX_HEADER_BYTES
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0
AUTH_FAILURE_BURST = 5
BLOCKED_DELAY_S = 0.05


@pytest.fixture(scope="module")
def guarded(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("hardening")
    running = start_service(model_path, f"sqlite:///{home / 'ecgk.db'}", home,
                            ECGK_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S), ECGK_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
                            ECGK_AUTH_FAILURE_BURST=str(AUTH_FAILURE_BURST), ECGK_AUTH_FAILURE_RATE_PER_S="0.01",
                            ECGK_AUTH_BLOCKED_DELAY_S=str(BLOCKED_DELAY_S))
    try:
        yield running
    finally:
        stop_service(running)


def connect(service: Service) -> socket.socket:
    host, port = service.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert match, response[:200]
    return int(match.group(1))


def head(path: str, *headers: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: test", *headers, "", ""]).encode()


def test_a_head_within_the_cap_is_served(guarded: Service) -> None:
    with connect(guarded) as sock:
        sock.sendall(head("/health/live", "X-Pad: " + "a" * (HEAD_CAP - 200), "Connection: close"))
        assert status_of(read_all(sock)) == 200


def test_a_head_over_the_cap_gets_431_at_the_cap(guarded: Service) -> None:
    """One byte over, and a 64 MiB header sent in 64 KiB pieces: refused once the cap is passed (the server
    closes the connection and never buffers the rest; on main, it read the whole header)."""
    with connect(guarded) as sock:
        sock.sendall(head("/health/live", "X-Pad: " + "a" * HEAD_CAP))
        assert status_of(read_all(sock)) == 431
    with connect(guarded) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\nX-Pad: ")
        sent = 0
        with pytest.raises(OSError):  # the server has closed: the peer resets the connection
            while sent < 64 * 2**20:
                sock.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 4 * 2**20
    started = time.perf_counter()
    assert httpx.get(f"{guarded.base_url}/health/live", timeout=5).status_code == 200
    assert time.perf_counter() - started < 1.0


def test_a_trickled_head_gets_408_within_the_deadline(guarded: Service) -> None:
    started = time.perf_counter()
    with connect(guarded) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\n")
        response = b""
        for _ in range(20):  # one header byte every 0.2 s: a complete head would take minutes
            try:
                sock.sendall(b"X")
            except OSError:
                break
            time.sleep(0.2)
            sock.settimeout(0.01)
            try:
                response += sock.recv(1024)
            except TimeoutError:
                continue
            if response:
                break
        sock.settimeout(5)
        response += read_all(sock)
    assert status_of(response) == 408
    assert HEADER_TIMEOUT_S <= time.perf_counter() - started < HEADER_TIMEOUT_S + 2


def _post_head(service: Service, length: int, key: str = "client") -> bytes:
    return (f"POST /v1/predictions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {service.keys[key]}\r\nContent-Length: {length}\r\n\r\n").encode()


def _events(service: Service, action: str) -> list[AuditEvent]:
    with session_scope(service.database_url) as session:
        return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _count(service: Service, status: int) -> float:
    text = httpx.get(f"{service.base_url}/metrics", timeout=10).text
    return sum(float(value) for value in re.findall(rf'ecgk_http_requests_total{{[^}}]*status="{status}"[^}}]*}} (\S+)',
                                                     text))


def test_a_trickled_body_gets_408_and_is_audited(guarded: Service) -> None:
    before = len([e for e in _events(guarded, "request.body") if e.detail and e.detail["status"] == 408])
    started = time.perf_counter()
    with connect(guarded) as sock:
        sock.sendall(_post_head(guarded, 10_000) + b'{"sampling_rate": 500,')
        response = read_all(sock)
    assert status_of(response) == 408 and b"not complete within" in response
    assert BODY_TIMEOUT_S <= time.perf_counter() - started < BODY_TIMEOUT_S + 3
    after = [e for e in _events(guarded, "request.body") if e.detail and e.detail["status"] == 408]
    assert len(after) == before + 1


def test_a_client_that_leaves_mid_body_is_a_499_not_a_500(guarded: Service) -> None:
    """On main: a logged 500 with a 60-line traceback, counted as a 5xx, and no audit event."""
    before_499, before_500 = _count(guarded, 499), _count(guarded, 500)
    before = len(_events(guarded, "request.body"))
    for _ in range(3):
        with connect(guarded) as sock:
            sock.sendall(_post_head(guarded, 100_000) + b'{"sampling_rate": 500, "leads": {"I": [' + b"0.1," * 100)
            time.sleep(0.2)
    deadline = time.monotonic() + 10
    while _count(guarded, 499) < before_499 + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _count(guarded, 499) == before_499 + 3 and _count(guarded, 500) == before_500
    events = _events(guarded, "request.body")[before:]
    assert [e.detail["status"] for e in events] == [499] * 3 and {e.outcome.value for e in events} == {"failure"}
    assert "Traceback" not in guarded.log()


def test_a_read_of_a_patient_linked_prediction_is_audited_as_a_patient_read(guarded: Service,
                                                                             raw_ecg: RawEcg) -> None:
    with guarded.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload(patient_id="pseudo-77"))
    assert created.status_code == 201, created.text
    with guarded.client("admin") as admin:
        for path in ("", "/fhir"):
            response = admin.get(f"/v1/predictions/{created.json()['id']}{path}")
            assert response.status_code == 200, response.text
            (event,) = guarded.audit_events(response.headers["X-Request-Id"])
            assert event.detail == {"patient_id": "pseudo-77", "role": "admin"}


def test_failed_authentications_are_limited_and_aggregated_per_source(guarded: Service, raw_ecg: RawEcg) -> None:
    """8 anonymous senders x 10 requests (a bad key, or none): the first AUTH_FAILURE_BURST are checked and
    audited one by one, the rest get 429 at once, audited as one aggregated event; a real client whose key
    was verified before keeps being served (a key this process has not verified yet waits for Retry-After, as
    SECURITY.md says). On main: 80 key checks and 80 audit rows."""
    with guarded.client("client") as client:
        assert client.post("/v1/predictions", json=raw_ecg.payload()).status_code == 201
    auth_before, suppressed_before = len(_events(guarded, "auth")), len(_events(guarded, "auth.suppressed"))
    statuses = []
    for i in range(80):
        headers = {} if i % 2 else {"X-API-Key": f"ecgk_{'0' * 12}_{'x' * 64}"}
        statuses.append(httpx.get(f"{guarded.base_url}/v1/models", headers=headers, timeout=10).status_code)
    assert statuses[:AUTH_FAILURE_BURST] == [401] * AUTH_FAILURE_BURST
    assert statuses[AUTH_FAILURE_BURST:] == [429] * (80 - AUTH_FAILURE_BURST)
    assert len(_events(guarded, "auth")) == auth_before + AUTH_FAILURE_BURST
    (aggregated,) = _events(guarded, "auth.suppressed")[suppressed_before:]
    assert aggregated.detail == {"status": 429, "source": "127.0.0.1", "refused_since_last_report": 1}
    started = time.perf_counter()
    refused = httpx.get(f"{guarded.base_url}/v1/models", timeout=10)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert time.perf_counter() - started >= BLOCKED_DELAY_S  # held back: a tarpit
    with guarded.client("client") as client:
        assert client.post("/v1/predictions", json=raw_ecg.payload()).status_code == 201


def test_the_chain_of_all_this_traffic_verifies_and_nothing_was_a_5xx(guarded: Service) -> None:
    report = verify_chain(guarded.database_url)
    with session_scope(guarded.database_url) as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    assert report.broken is None and report.events == stored >= 4
    assert _count(guarded, 500) == 0 and "Traceback" not in guarded.log()
    assert not re.search(r" 5\d\d \d", guarded.log()), json.dumps(guarded.log()[-2000:])


def test_the_failed_auth_limiter_blocks_refills_reports_and_stays_bounded() -> None:
    limiter = FailedAuthLimiter(rate_per_s=5.0, burst=3, report_s=3600.0, max_sources=100)
    for _ in range(3):
        assert limiter.blocked("a") == 0
        limiter.failed("a")
    assert 0 < limiter.blocked("a") <= 0.2 and limiter.blocked("b") == 0
    assert [limiter.suppressed("a") for _ in range(3)] == [1, 0, 0]  # reported at once, then aggregated
    time.sleep(0.3)
    assert limiter.blocked("a") == 0  # refilled
    for i in range(1000):  # a flood of addresses, each failing once
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._sources) <= 100
