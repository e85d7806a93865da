"""The Open Inference Protocol (V2) routes, driven by Triton's own HTTP client (``tritonclient[http]`` from
PyPI) against the live service: health, metadata, infer (binary and JSON tensors), the same estimate as
``/v1`` for the same ECG, the same storage, audit and auth, and errors in the protocol's shape."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.service.conftest import RawEcg, Service


@pytest.fixture
def client(service: Service) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(url=service.base_url.removeprefix("http://"), network_timeout=60.0)
    try:
        yield connection
    finally:
        connection.close()


def _model(service: Service) -> tuple[str, str]:
    with service.client("client") as http:
        served = next(model for model in http.get("/v1/models").json() if model["serving"])
    return served["name"], served["version"]


def _ecg_input(raw_ecg: RawEcg, binary: bool, datatype: str = "FP32") -> triton.InferInput:
    signal = raw_ecg.signal.astype(np.float32 if datatype == "FP32" else np.float64)
    tensor = triton.InferInput("ECG", list(signal.shape), datatype)
    tensor.set_data_from_numpy(signal, binary_data=binary)
    return tensor


def _parameters(raw_ecg: RawEcg, **extra: object) -> dict[str, object]:
    return {"sampling_rate": raw_ecg.fs, "lead_names": ",".join(raw_ecg.lead_names), **extra}


def _refusal(call: object, *args: object, **kwargs: object) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.status(), caught.value.message()


def test_health_and_metadata(service: Service, client: triton.InferenceServerClient) -> None:
    name, version = _model(service)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "ecg-k"
    assert client.is_model_ready(name) and client.is_model_ready(name, version)
    assert not client.is_model_ready("no-such-model") and not client.is_model_ready(name, "v999")

    metadata = client.get_model_metadata(name, headers={"X-API-Key": service.keys["reviewer"]})
    assert metadata["name"] == name and metadata["versions"] == [version]
    assert metadata["inputs"] == [{"name": "ECG", "datatype": "FP32", "shape": [-1, -1]}]
    assert [output["name"] for output in metadata["outputs"]] == ["K_ESTIMATE", "INTERVAL_LOW", "INTERVAL_HIGH",
                                                                 "FLAG"]
    assert _refusal(client.get_model_metadata, name) == ("401", "missing API key header X-API-Key")
    status, message = _refusal(client.get_model_metadata, "no-such-model",
                               headers={"X-API-Key": service.keys["client"]})
    assert status == "404" and "no-such-model is not served here" in message


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensor", "json-tensor"])
def test_infer_equals_the_v1_estimate_and_is_stored_and_audited(
    service: Service, client: triton.InferenceServerClient, raw_ecg: RawEcg, binary: bool
) -> None:
    name, version = _model(service)
    with service.client("client") as http:
        v1 = http.post("/v1/predictions", json=raw_ecg.payload())
    assert v1.status_code == 201, v1.text
    expected = v1.json()

    before = service.counts()
    result = client.infer(name, [_ecg_input(raw_ecg, binary)], model_version=version,
                          parameters=_parameters(raw_ecg, patient_id="pseudo-v2-1"),
                          headers={"X-API-Key": service.keys["client"], "X-Request-Id": f"v2-infer-{binary}"})
    assert result.as_numpy("K_ESTIMATE").tolist() == [expected["k_estimate"]]
    assert result.as_numpy("INTERVAL_LOW").tolist() == [expected["interval"]["low"]]
    assert result.as_numpy("INTERVAL_HIGH").tolist() == [expected["interval"]["high"]]
    assert result.as_numpy("FLAG").tolist() == [expected["flag"]]
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == (name, version)
    assert response["parameters"]["interpretation"] == expected["interpretation"]

    after = service.counts()
    assert after["predictions"] == before["predictions"] + 1 and after["audit_events"] == before["audit_events"] + 1
    with service.client("client") as http:
        stored = http.get(f"/v1/predictions/{response['parameters']['prediction_id']}").json()
    assert stored["k_estimate"] == expected["k_estimate"] and stored["patient_id"] == "pseudo-v2-1"
    assert stored["ecg_sha256"] == expected["ecg_sha256"]  # the same ECG, stored once by content
    (event,) = service.audit_events(f"v2-infer-{binary}")
    assert (event.action, event.outcome.value) == ("prediction.create", "success")


def test_requested_outputs_only(service: Service, client: triton.InferenceServerClient, raw_ecg: RawEcg) -> None:
    name, _ = _model(service)
    result = client.infer(name, [_ecg_input(raw_ecg, True)], parameters=_parameters(raw_ecg),
                          outputs=[triton.InferRequestedOutput("FLAG", binary_data=False)],
                          headers={"X-API-Key": service.keys["client"]})
    assert [output["name"] for output in result.get_response()["outputs"]] == ["FLAG"]


def test_errors_in_the_protocol_shape(service: Service, client: triton.InferenceServerClient,
                                      raw_ecg: RawEcg) -> None:
    name, _ = _model(service)
    headers = {"X-API-Key": service.keys["client"]}
    before = service.counts()["predictions"]
    cases = [
        ([_ecg_input(raw_ecg, True)], {}, headers, "400", "parameter lead_names is required"),
        ([_ecg_input(raw_ecg, True)], {"lead_names": ",".join(raw_ecg.lead_names)}, headers, "400",
         "parameter sampling_rate"),
        ([_ecg_input(raw_ecg, True)], _parameters(raw_ecg, patient_id="John Smith"), headers, "400",
         "parameter patient_id"),
        ([triton.InferInput("ECG", [12, 5000], "INT32")], _parameters(raw_ecg), headers, "400", "datatype 'INT32'"),
        ([_ecg_input(raw_ecg, True)], _parameters(raw_ecg), {"X-API-Key": service.keys["reviewer"]}, "403",
         "role reviewer may not call this route"),
        ([_ecg_input(raw_ecg, True)], _parameters(raw_ecg), {"X-API-Key": "ecgk_000000000000_00"}, "401",
         "invalid or revoked API key"),
    ]
    cases[3][0][0].set_data_from_numpy(np.zeros((12, 5000), dtype=np.int32))
    for inputs, parameters, key, status, message in cases:
        got_status, got_message = _refusal(client.infer, name, inputs, parameters=parameters, headers=dict(key))
        assert got_status == status and message in got_message, (status, message, got_message)

    flat = RawEcg(np.zeros_like(raw_ecg.signal), raw_ecg.fs, raw_ecg.lead_names)
    status, message = _refusal(client.infer, name, [_ecg_input(flat, True)], parameters=_parameters(flat),
                               headers=dict(headers))  # (the client adds its own headers to the dict)
    with service.client("client") as http:
        v1 = http.post("/v1/predictions", json=flat.payload())
    assert status == str(v1.status_code) == "422"
    assert message == f"{v1.json()['detail']['reason']}: {v1.json()['detail']['message']}"
    assert service.counts()["predictions"] == before  # nothing stored for a refused request

    raw = httpx.post(f"{service.base_url}/v2/models/{name}/infer", content=b"{not json", headers=headers)
    assert raw.status_code == 400 and set(raw.json()) == {"error"}
    assert httpx.get(f"{service.base_url}/v2/nowhere").json() == {"error": "Not Found"}
