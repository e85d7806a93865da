"""Bad input, auth and limits: the right 4xx, and nothing in the database but the audit event."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.conftest import RawEcg, Service, start_service, stop_service

BIG_BODY_BYTES = 50 * 2**20


def _assert_only_audit(service: Service, request: Callable[[], httpx.Response], status: int) -> httpx.Response:
    before = service.counts()
    response = request()
    assert response.status_code == status, response.text
    after = service.counts()
    assert after == before | {"audit_events": before["audit_events"] + 1}
    events = service.audit_events(response.headers["X-Request-Id"])
    assert len(events) == 1 and events[0].outcome.value in ("denied", "failure")
    return response


def _post_json(service: Service, key: str | None, body: Any, path: str = "/v1/predictions") -> httpx.Response:
    with service.client(key) as client:  # json.dumps writes NaN, which Python's parser (FastAPI's) accepts
        return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def _bad_ecgs(raw: RawEcg) -> Iterator[tuple[str, dict[str, Any], str]]:
    yield "wrong rate", raw.payload() | {"sampling_rate": 50.0}, "unsupported_rate"
    yield "3-second ECG", {"sampling_rate": raw.fs, "leads": {"I": raw.signal[0, :1500].tolist()}}, "too_short"
    with_nan = raw.signal.copy()
    with_nan[0, 100:200] = np.nan
    yield "NaNs", RawEcg(with_nan, raw.fs, raw.lead_names).payload(), "nan"
    yield "missing lead", {"sampling_rate": raw.fs, "leads": {"V1": raw.signal[6].tolist()}}, "missing_lead"
    yield "flat lead", {"sampling_rate": raw.fs, "leads": {"I": [0.0] * 5000}}, "flat_lead"
    yield "amplitude", {"sampling_rate": raw.fs, "leads": {"I": (raw.signal[0] * 100).tolist()}}, "amplitude"


@pytest.mark.parametrize("case", range(6))
def test_unusable_ecg_is_422_with_reason_and_no_prediction(service: Service, raw_ecg: RawEcg, case: int) -> None:
    _name, body, reason = list(_bad_ecgs(raw_ecg))[case]
    response = _assert_only_audit(service, lambda: _post_json(service, "client", body), 422)
    assert response.json()["detail"]["reason"] == reason and response.json()["detail"]["message"]
    if reason == "missing_lead":  # names the leads the served model reads
        assert "required leads: I" in response.json()["detail"]["message"]
    (event,) = service.audit_events(response.headers["X-Request-Id"])
    assert event.action == "prediction.create" and event.detail == {"status": 422, "reason": reason}


def test_schema_violation_is_422_and_audited(service: Service) -> None:
    body = {"sampling_rate": 500, "leads": {"I": [0.1, 0.2]}, "lead_names": ["I"]}
    response = _assert_only_audit(service, lambda: _post_json(service, "client", body), 422)
    assert "0.1" not in response.text  # errors never echo signal values


@pytest.mark.parametrize("key", [None, "ecgk_000000000000_deadbeef", "not-a-key"])
def test_no_or_wrong_key_is_401(service: Service, raw_ecg: RawEcg, key: str | None) -> None:
    def send() -> httpx.Response:
        headers = {"X-API-Key": key} if key else {}
        return httpx.post(f"{service.base_url}/v1/predictions", json=raw_ecg.payload(), headers=headers, timeout=30)

    _assert_only_audit(service, send, 401)


def test_reviewer_only_call_with_a_client_key_is_403(service: Service, raw_ecg: RawEcg) -> None:
    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload()).json()
    lab = {"k_value": 4.0, "lab_time": "2024-05-01T09:05:00Z"}
    _assert_only_audit(service, lambda: _post_json(service, "client", lab, f"/v1/predictions/{created['id']}/lab"),
                       403)
    _assert_only_audit(service, lambda: _post_json(service, "reviewer", {}, "/v1/predictions"), 403)


def test_50_mb_body_is_413(service: Service) -> None:
    big = b"[" + b"0," * (BIG_BODY_BYTES // 2) + b"0]"
    _assert_only_audit(service, lambda: _post_json_bytes(service, big), 413)


def _post_json_bytes(service: Service, body: bytes) -> httpx.Response:
    with service.client("client") as client:
        return client.post("/v1/predictions", content=body, headers={"content-type": "application/json"})


def test_streamed_body_without_length_is_413(service: Service) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b" " * 2**20

    def send() -> httpx.Response:
        with service.client("client") as client:
            return client.post("/v1/predictions", content=chunks(), headers={"content-type": "application/json"})

    _assert_only_audit(service, send, 413)


def test_declared_length_is_refused_before_the_body_arrives(service: Service) -> None:
    host, port = service.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"X-API-Key: {service.keys['client']}\r\nContent-Length: {BIG_BODY_BYTES}\r\n\r\n".encode())
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")


@pytest.fixture(scope="module")
def strict_service(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service whose keys may send 3 requests at once and then one per 100 s."""
    home = tmp_path_factory.mktemp("strict")
    running = start_service(model_path, f"sqlite:///{home / 'ecgk.db'}", home,
                            ECGK_RATE_LIMIT_BURST="3", ECGK_RATE_LIMIT_PER_S="0.01")
    try:
        yield running
    finally:
        stop_service(running)


def test_rate_limit_is_429_with_retry_after_per_key(strict_service: Service) -> None:
    with strict_service.client("admin") as client:
        statuses = [client.get("/v1/models").status_code for _ in range(3)]
        limited = _assert_only_audit(strict_service, lambda: client.get("/v1/models"), 429)
    assert statuses == [200, 200, 200]
    assert 1 <= int(limited.headers["Retry-After"]) <= 100
    with strict_service.client("reviewer") as other:
        assert other.get("/v1/models").status_code == 200
