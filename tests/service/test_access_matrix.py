"""Every operation of the API against every kind of caller: no key, a malformed, unknown or revoked key, and
each role. Refused callers get 401 or 403 (audited) and change nothing; admitted ones are never refused on
access grounds. The matrix must name every operation the OpenAPI document lists, so a new route cannot
ship without its access rule."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ecg_k.db.api_keys import create_api_key, revoke_api_key
from ecg_k.db.models import Role
from ecg_k.db.session import session_scope
from tests.service.conftest import Service

ANY_ROLE = frozenset({"client", "reviewer", "admin"})
PUBLIC = frozenset({("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/metrics"),
                    ("GET", "/v2"), ("GET", "/v2/health/live"), ("GET", "/v2/health/ready"),
                    ("GET", "/v2/models/{name}/ready"), ("GET", "/v2/models/{name}/versions/{version}/ready")})
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("POST", "/v1/predictions"): frozenset({"client"}),
    ("POST", "/v1/predictions/wfdb"): frozenset({"client"}),
    ("POST", "/v1/predictions/batch"): frozenset({"client"}),
    ("GET", "/v1/predictions/{prediction_id}"): ANY_ROLE,
    ("GET", "/v1/predictions/{prediction_id}/fhir"): ANY_ROLE,
    ("GET", "/v1/predictions/{prediction_id}/fhir/provenance"): ANY_ROLE,
    ("POST", "/v1/predictions/{prediction_id}/lab"): frozenset({"reviewer"}),
    ("POST", "/v1/predictions/{prediction_id}/reviews"): frozenset({"reviewer"}),
    ("GET", "/v1/models"): ANY_ROLE,
    ("POST", "/v1/models/reload"): frozenset({"admin"}),
    ("GET", "/v2/models/{name}"): ANY_ROLE,
    ("GET", "/v2/models/{name}/versions/{version}"): ANY_ROLE,
    ("POST", "/v2/models/{name}/infer"): frozenset({"client"}),
    ("POST", "/v2/models/{name}/versions/{version}/infer"): frozenset({"client"}),
}
"""The roles each operation admits."""
BAD_KEYS = {"no key": None, "malformed key": "not-a-key", "unknown key": "ecgk_0123456789abcdef_" + "x" * 43}


@pytest.fixture(scope="module")
def revoked_key(service: Service) -> str:
    with session_scope(service.database_url) as session:
        key = create_api_key(session, Role.ADMIN, actor="test", name="revoked")
        revoke_api_key(session, key.key.id, actor="test")
    return key.plaintext


@pytest.fixture(scope="module")
def served(service: Service) -> dict[str, str]:
    """The path parameters of the served model (the Open Inference Protocol's routes name it)."""
    with service.client("client") as client:
        model = next(model for model in client.get("/v1/models").json() if model["serving"])
    return {"{name}": model["name"], "{version}": model["version"]}


def _call(base_url: str, key: str | None, method: str, path: str, prediction_id: str,
          served: dict[str, str]) -> httpx.Response:
    """One request with a harmless body (authentication and roles are checked before the body)."""
    url = base_url + path.replace("{prediction_id}", prediction_id)
    for parameter, value in served.items():
        url = url.replace(parameter, value)
    headers = {} if key is None else {"X-API-Key": key}
    if path.endswith("/wfdb"):
        return httpx.post(url, headers=headers, files={"header": ("r.hea", b"r 0"), "signal": ("r.dat", b"")},
                          timeout=60)
    return httpx.request(method, url, headers=headers, json={} if method == "POST" else None, timeout=60)


def _operations(service: Service) -> Iterator[tuple[str, str]]:
    spec = httpx.get(f"{service.base_url}/openapi.json", timeout=30).json()
    for path, operations in spec["paths"].items():
        for method in operations:
            yield method.upper(), path


def test_the_matrix_names_every_operation(service: Service) -> None:
    assert set(_operations(service)) == set(MATRIX) | PUBLIC


def test_public_operations_need_no_key(service: Service, prediction_id: str, served: dict[str, str]) -> None:
    for method, path in PUBLIC:
        assert _call(service.base_url, None, method, path, prediction_id, served).status_code == 200, path


def _message(response: httpx.Response) -> str:
    """The error text: ``detail`` on /v1, ``error`` in the Open Inference Protocol's shape."""
    body = response.json()
    return str(body["error"] if set(body) == {"error"} else body["detail"])


@pytest.mark.parametrize("operation", sorted(MATRIX), ids=lambda operation: " ".join(operation))
def test_refused_callers_change_nothing(service: Service, revoked_key: str, prediction_id: str,
                                        served: dict[str, str], operation: tuple[str, str]) -> None:
    method, path = operation
    before = service.counts()
    refusals = 0
    for name, key in {**BAD_KEYS, "revoked key": revoked_key}.items():
        response = _call(service.base_url, key, method, path, prediction_id, served)
        assert response.status_code == 401, (name, response.text)
        assert _message(response), name
        refusals += 1
    for role in sorted(ANY_ROLE - MATRIX[operation]):
        response = _call(service.base_url, service.keys[role], method, path, prediction_id, served)
        assert response.status_code == 403, (role, response.text)
        assert role in _message(response)
        refusals += 1
    after = service.counts()
    assert after["audit_events"] == before["audit_events"] + refusals  # each refusal audited, nothing else written
    assert {table: count for table, count in after.items() if table != "audit_events"} == {
        table: count for table, count in before.items() if table != "audit_events"}


@pytest.mark.parametrize("operation", sorted(MATRIX), ids=lambda operation: " ".join(operation))
def test_admitted_roles_are_not_refused(service: Service, prediction_id: str, served: dict[str, str],
                                        operation: tuple[str, str]) -> None:
    method, path = operation
    for role in sorted(MATRIX[operation]):
        response = _call(service.base_url, service.keys[role], method, path, prediction_id, served)
        assert response.status_code not in (401, 403), (role, response.status_code, response.text)
        assert response.status_code < 500, (role, response.text)


@pytest.mark.parametrize("suffix", ["", "/fhir", "/fhir/provenance"])
def test_a_client_cannot_read_another_clients_prediction(service: Service, prediction_id: str, suffix: str) -> None:
    with service.client("other_client") as other:
        assert other.get(f"/v1/predictions/{prediction_id}{suffix}").status_code == 404  # not even confirmed
    with service.client("client") as owner:
        assert owner.get(f"/v1/predictions/{prediction_id}{suffix}").status_code == 200
    for role in ("reviewer", "admin"):
        with service.client(role) as reader:
            assert reader.get(f"/v1/predictions/{prediction_id}{suffix}").status_code == 200
