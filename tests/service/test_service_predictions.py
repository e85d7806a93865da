"""Served estimates against ONNX Runtime and torch, stored rows, reads, WFDB upload, batch, FHIR and labs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from ecg_k.clinical import flag, interpretation_code, reported_value
from ecg_k.db.models import EcgRecord, LabConfirmation, Prediction
from ecg_k.db.session import session_scope
from ecg_k.inference import OnnxModel
from ecg_k.scoring import score_estimate
from tests.service.conftest import RawEcg, Service


def _stored(service: Service, prediction_id: str) -> Prediction:
    with session_scope(service.database_url) as session:
        row = session.get(Prediction, uuid.UUID(prediction_id))
        assert row is not None
        return row


def test_estimate_matches_onnxruntime_and_torch(service: Service, raw_ecg: RawEcg, card_path: Path,
                                                 exported_run: Path) -> None:
    import torch

    from training.run_io import load_best_net

    with service.client("client") as client:
        response = client.post("/v1/predictions", json=raw_ecg.payload(patient_id="pseudo-1",
                                                                      ecg_time="2024-05-01T08:30:00Z"))
    assert response.status_code == 201, response.text
    body = response.json()
    model = OnnxModel(card_path, use_cuda=False)
    model_input = model.preprocess(raw_ecg.signal.astype(np.float32), raw_ecg.fs, raw_ecg.lead_names)
    expected = float(model.predict(model_input[None])[0])
    with torch.no_grad():
        torch_estimate = float(load_best_net(exported_run)(torch.from_numpy(model_input[None])).reshape(-1)[0])
    row = _stored(service, body["id"])
    assert row.k_estimate == pytest.approx(expected, abs=1e-4, rel=0)
    assert row.k_estimate == pytest.approx(torch_estimate, abs=1e-4, rel=0)
    value = reported_value(expected)
    assert body["k_estimate"] == value
    assert body["flag"] == flag(value).value and body["interpretation"] == interpretation_code(value)
    interval = body["interval"]
    assert interval["low"] <= round(body["k_estimate"], 1) <= interval["high"]
    assert interval["coverage"] == 0.9 and interval["method"] == model.card.prediction_intervals.method
    score = score_estimate(model.card, expected, 0.9)
    expected_set = score.prediction_set
    assert [tuple(s) for s in interval["segments"]] == list(expected_set.segments)
    assert (interval["low"], interval["high"]) == (expected_set.low, expected_set.high)
    p_hyper, p_hypo = score.p_hyper, score.p_hypo
    assert body["probabilities"] == {"hyperkalemia": pytest.approx(p_hyper), "hypokalemia": pytest.approx(p_hypo)}
    assert (row.p_hyper, row.p_hypo, row.interval_coverage) == (pytest.approx(p_hyper), pytest.approx(p_hypo), 0.9)
    assert body["shot_region"] == score.region and body["reliability_note"]
    assert body["model"]["name"] == model.card.name and body["model"]["version"] == model.version
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert row.patient_id == "pseudo-1" and row.request_id == body["request_id"]
    assert [e.action for e in service.audit_events(body["request_id"])] == ["prediction.create"]


def test_same_input_same_output_and_signal_matrix_layout(service: Service, raw_ecg: RawEcg) -> None:
    matrix = {"sampling_rate": raw_ecg.fs, "lead_names": list(raw_ecg.lead_names),
              "signal": raw_ecg.signal.tolist()}
    with service.client("client") as client:
        first = client.post("/v1/predictions", json=raw_ecg.payload()).json()
        second = client.post("/v1/predictions", json=matrix).json()
    assert first["id"] != second["id"]
    assert first["k_estimate"] == second["k_estimate"] and first["ecg_sha256"] == second["ecg_sha256"]


def test_read_own_prediction_but_not_another_clients(service: Service, raw_ecg: RawEcg) -> None:
    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload()).json()
        own = client.get(f"/v1/predictions/{created['id']}")
    assert own.status_code == 200 and own.json() == created | {"request_id": created["request_id"]}
    with service.client("other_client") as other:
        denied = other.get(f"/v1/predictions/{created['id']}")
        fhir_denied = other.get(f"/v1/predictions/{created['id']}/fhir")
    assert denied.status_code == 404 and fhir_denied.status_code == 404
    assert [e.outcome.value for e in service.audit_events(denied.headers["X-Request-Id"])] == ["denied"]
    with service.client("reviewer") as reviewer:
        assert reviewer.get(f"/v1/predictions/{created['id']}").status_code == 200


def test_fhir_observation_validates(service: Service, raw_ecg: RawEcg) -> None:
    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload(patient_id="pseudo-2")).json()
        response = client.get(f"/v1/predictions/{created['id']}/fhir")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json")
    observation = Observation.model_validate(response.json())
    assert observation.status == "preliminary"
    assert observation.code.coding[0].code == "2823-3"
    assert float(observation.valueQuantity.value) == created["k_estimate"]
    assert observation.valueQuantity.code == "mmol/L"
    assert observation.interpretation[0].coding[0].code == created["interpretation"]
    assert observation.meta.security[0].code == "AIAST"
    assert observation.subject.identifier.value == "pseudo-2"
    assert observation.category[0].coding[0].code == "procedure"
    assert {c.code.coding[0].code for c in observation.component} >= {"hull", "p-hyperkalemia", "p-hypokalemia"}


def test_reads_return_what_the_row_holds(service: Service, raw_ecg: RawEcg) -> None:
    """GET and FHIR read the stored interpretation, shot region and coverage: a row served before sets and
    their coverage levels were stored (as here) is never labelled with today's setting, and nothing is scored
    again on read."""
    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload()).json()
        other_region = next(r for r in ("many", "median", "few") if r != created["shot_region"])
        with session_scope(service.database_url) as session:
            session.execute(sa.update(Prediction).where(Prediction.id == uuid.UUID(created["id"]))
                            .values(interval_segments=None, interval_coverage=None, interval_method=None,
                                    shot_region=other_region))
        body = client.get(f"/v1/predictions/{created['id']}").json()
        observation = client.get(f"/v1/predictions/{created['id']}/fhir").json()
    assert body["interval"]["coverage"] is None and body["interval"]["segments"] is None
    assert body["shot_region"] == other_region
    assert body["interpretation"] == created["interpretation"] and body["flag"] == created["flag"]
    hull = next(c for c in observation["component"] if c["code"]["coding"][0]["code"] == "hull")
    assert hull["code"]["text"] == "prediction set (coverage not recorded) of K+ (hull)"
    note = observation["note"][0]["text"]
    assert "90%" not in note and f"Shot region '{other_region}'" in note


def test_fhir_without_patient_has_no_subject_and_provenance_is_served(service: Service, raw_ecg: RawEcg) -> None:
    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload()).json()
        observation = client.get(f"/v1/predictions/{created['id']}/fhir").json()
        response = client.get(f"/v1/predictions/{created['id']}/fhir/provenance")
    assert "subject" not in observation
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json")
    provenance = Provenance.model_validate(response.json())
    assert provenance.target[0].reference == f"Observation/{created['id']}"
    assert [e.action for e in service.audit_events(response.headers["X-Request-Id"])] == [
        "prediction.fhir_provenance"]


NON_ECGS = {
    "white noise": lambda t, rng: rng.normal(0, 1, t.size),
    "50 Hz hum": lambda t, rng: np.sin(2 * np.pi * 50 * t) + 0.01 * rng.normal(0, 1, t.size),
    "1 Hz sine": lambda t, rng: np.sin(2 * np.pi * t),
    "sawtooth": lambda t, rng: 2 * ((1.2 * t) % 1) - 1,
    "chirp": lambda t, rng: np.sin(2 * np.pi * (0.5 * t + 1.95 * t**2)),
    "random walk": lambda t, rng: np.cumsum(rng.normal(0, 0.05, t.size)),
    "pulse train": lambda t, rng: (np.arange(t.size) % 400 < 10) + 0.02 * rng.normal(0, 1, t.size),
    "uniform noise": lambda t, rng: rng.uniform(-1, 1, t.size),
    "flat line with spikes": lambda t, rng: 3.0 * (rng.random(t.size) < 0.002) + rng.normal(0, 0.03, t.size),
}


@pytest.mark.parametrize("name", NON_ECGS)
def test_signals_that_are_not_ecgs_get_422_low_quality(service: Service, name: str) -> None:
    t = np.arange(5000) / 500.0
    signal = NON_ECGS[name](t, np.random.default_rng(0))
    with service.client("client") as client:
        response = client.post("/v1/predictions", json={"sampling_rate": 500, "leads": {"I": signal.tolist()}})
    assert response.status_code == 422, (name, response.text)
    assert response.json()["detail"]["reason"] == "low_quality", response.text


def test_reviewer_confirms_lab_once(service: Service, raw_ecg: RawEcg) -> None:
    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload()).json()
    lab = {"k_value": 5.9, "lab_time": "2024-05-01T09:05:00Z", "itemid": 50971}
    with service.client("reviewer") as reviewer:
        confirmed = reviewer.post(f"/v1/predictions/{created['id']}/lab", json=lab)
        again = reviewer.post(f"/v1/predictions/{created['id']}/lab", json=lab)
    assert confirmed.status_code == 201, confirmed.text
    assert confirmed.json()["k_value"] == 5.9
    assert again.status_code == 409
    with session_scope(service.database_url) as session:
        rows = session.scalars(sa.select(LabConfirmation).where(
            LabConfirmation.prediction_id == uuid.UUID(created["id"]))).all()
        assert [(r.k_value, r.itemid) for r in rows] == [(5.9, 50971)]


@pytest.mark.parametrize("signal_suffix", [".mat", ".dat"])
def test_wfdb_upload_of_a_real_record(service: Service, cinc_record: Path, raw_ecg: RawEcg, tmp_path: Path,
                                      signal_suffix: str) -> None:
    if signal_suffix == ".mat":
        header, signal = cinc_record.with_suffix(".hea"), cinc_record.with_suffix(".mat")
    else:
        import wfdb

        wfdb.wrsamp("rec", fs=raw_ecg.fs, units=["mV"] * len(raw_ecg.lead_names), sig_name=list(raw_ecg.lead_names),
                    p_signal=raw_ecg.signal.T, fmt=["16"] * len(raw_ecg.lead_names), adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(tmp_path))
        header, signal = tmp_path / "rec.hea", tmp_path / "rec.dat"
    files = {"header": ("../../etc/evil name.hea", header.read_bytes()),
             "signal": (f"../x{signal_suffix}", signal.read_bytes())}
    with service.client("client") as client:
        uploaded = client.post("/v1/predictions/wfdb", files=files, data={"patient_id": "pseudo-3"})
        from_json = client.post("/v1/predictions", json=raw_ecg.payload())
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["k_estimate"] == pytest.approx(from_json.json()["k_estimate"], abs=0.011)


def test_batch_scores_usable_ecgs_and_explains_the_others(service: Service, raw_ecg: RawEcg) -> None:
    short = {"sampling_rate": raw_ecg.fs, "leads": {"I": raw_ecg.signal[0, :1500].tolist()}}
    before = service.counts()
    with service.client("client") as client:
        response = client.post("/v1/predictions/batch", json={"ecgs": [raw_ecg.payload(), short, raw_ecg.payload()]})
        single = client.post("/v1/predictions", json=raw_ecg.payload()).json()
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[1]["prediction"] is None and results[1]["error"]["reason"] == "too_short"
    assert results[0]["prediction"]["k_estimate"] == results[2]["prediction"]["k_estimate"] == single["k_estimate"]
    after = service.counts()
    assert after["predictions"] - before["predictions"] == 3
    assert after["audit_events"] - before["audit_events"] == 2


def test_batch_cap(service: Service, raw_ecg: RawEcg) -> None:
    tiny = {"sampling_rate": raw_ecg.fs, "leads": {"I": [0.0]}}
    before = service.counts()
    with service.client("client") as client:
        response = client.post("/v1/predictions/batch", json={"ecgs": [tiny] * 33})
    assert response.status_code == 422 and response.json()["detail"]["reason"] == "batch_too_large"
    after = service.counts()
    assert after["predictions"] == before["predictions"] and after["audit_events"] == before["audit_events"] + 1


def test_models_lists_the_served_version(service: Service) -> None:
    with service.client("admin") as client:
        models = client.get("/v1/models").json()
    assert [m["serving"] for m in models].count(True) == 1


def test_stored_ecg_is_the_submitted_signal(service: Service, raw_ecg: RawEcg) -> None:
    from ecg_k.db.ecg_store import content_sha256

    with service.client("client") as client:
        created = client.post("/v1/predictions", json=raw_ecg.payload()).json()
    assert created["ecg_sha256"] == content_sha256(raw_ecg.signal.astype(np.float32), raw_ecg.fs,
                                                   raw_ecg.lead_names)
    with session_scope(service.database_url) as session:
        assert session.get(EcgRecord, created["ecg_sha256"]) is not None
    assert json.dumps(created)
