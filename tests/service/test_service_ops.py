"""Health, metrics, request ids, logs without identifiers, the CLI, and no torch in the service process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from tests.service.conftest import REPO_ROOT, RawEcg, Service


def test_health(service: Service) -> None:
    assert httpx.get(f"{service.base_url}/health/live").json() == {"status": "ok", "detail": None}
    assert httpx.get(f"{service.base_url}/health/ready").status_code == 200


def test_request_id_is_echoed_when_safe_and_generated_otherwise(service: Service) -> None:
    echoed = httpx.get(f"{service.base_url}/health/live", headers={"X-Request-Id": "trace-42"})
    assert echoed.headers["X-Request-Id"] == "trace-42"
    replaced = httpx.get(f"{service.base_url}/health/live", headers={"X-Request-Id": "bad id\twith space"})
    assert replaced.headers["X-Request-Id"] not in ("", "bad id\twith space")


def test_metrics_parse(service: Service, raw_ecg: RawEcg) -> None:
    with service.client("client") as client:
        assert client.post("/v1/predictions", json=raw_ecg.payload()).status_code == 201
    text = httpx.get(f"{service.base_url}/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {(s.labels["route"], s.labels["status"]) for s in families["ecgk_http_requests"].samples}
    assert ("/v1/predictions", "201") in requests
    assert sum(s.value for s in families["ecgk_predictions"].samples if s.name.endswith("_total")) >= 1
    assert families["ecgk_model_info"].samples[0].labels["version"]
    assert families["ecgk_torch_loaded"].samples[0].value == 0.0


def test_service_process_never_imports_torch(service: Service) -> None:
    maps = Path(f"/proc/{service.process.pid}/maps")
    if maps.exists():
        assert "libtorch" not in maps.read_text()
    check = "import sys, service.app, service.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT).returncode == 0


def test_logs_hold_no_patient_identifiers_or_signal_values(service: Service, raw_ecg: RawEcg) -> None:
    patient = "pseudo-LOGCHECK-977"
    with service.client("client") as client:
        client.post("/v1/predictions", json=raw_ecg.payload(patient_id=patient))
        client.post("/v1/predictions", json={"sampling_rate": 500, "leads": {"I": [0.123456] * 100},
                                             "patient_id": patient})
    log = service.log()
    access = [line for line in log.splitlines() if "service.access" in line]
    assert any("POST /v1/predictions 201" in line for line in access)
    assert patient not in log and "0.123456" not in log
    assert not any("127.0.0.1" in line for line in access)  # no client addresses


def test_openapi_documents_examples(service: Service) -> None:
    schema = httpx.get(f"{service.base_url}/openapi.json").json()
    assert {"/v1/predictions", "/v1/predictions/wfdb", "/v1/predictions/batch", "/v1/predictions/{prediction_id}",
            "/v1/predictions/{prediction_id}/fhir", "/v1/predictions/{prediction_id}/fhir/provenance",
            "/v1/predictions/{prediction_id}/lab", "/v1/models",
            "/health/live", "/health/ready", "/metrics"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["EcgIn"]["examples"]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_serve_is_a_registrable_command() -> None:
    import typer

    from service.cli import register

    app = typer.Typer()
    register(app)
    app.command()(lambda: None)
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "--model" in result.output
