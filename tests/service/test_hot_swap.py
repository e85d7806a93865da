"""Hot swap on a real ``ecgk serve``: predictions confirmed by labs through the API -> ``ecgk retrain
--force-promote`` (a separate process) -> the running service serves the new champion without a restart and
without one failed request under concurrent load; a champion that fails its sha256 check is refused and the
old model keeps serving; a pinned model is never swapped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from ecg_k.db.migrate import upgrade
from ecg_k.db.models import ModelVersion, Prediction
from ecg_k.db.registry import get_champion, promote, register_model
from ecg_k.db.session import session_scope
from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.model_card import load_model_card, write_model_card
from ecg_k.synth.ecg_model import draw_subject, simulate_ecg
from ecg_k.synth.params import SynthParams
from tests.service.conftest import REPO_ROOT, Service, start_service, stop_service

POLL_S = "0.2"
SWAP_TIMEOUT_S = 30.0
ECG_TIME = datetime(2180, 5, 1, 8, 0, tzinfo=UTC)
FAST_LIMITS = {"ECGK_RATE_LIMIT_BURST": "100000", "ECGK_RATE_LIMIT_PER_S": "100000", "ECGK_MODEL_POLL_S": POLL_S}


def toy_payloads(labels: np.ndarray, seed: int = 0) -> list[dict[str, object]]:
    """Realistic synthetic lead-I ECGs in mV (:mod:`ecg_k.synth`, so they pass the signal-quality gate) at each
    label's K+, with subject keys."""
    rng = np.random.default_rng(seed)
    params = SynthParams()
    lead_i = MIMIC_LEAD_ORDER.index("I")
    payloads: list[dict[str, object]] = []
    for i, k in enumerate(labels):
        ecg = simulate_ecg(draw_subject(rng, params.morphology), float(k), rng, params)
        payloads.append({"sampling_rate": params.fs, "leads": {"I": np.round(ecg.signal[lead_i], 4).tolist()},
                         "patient_id": f"p-{i}", "ecg_time": (ECG_TIME + timedelta(hours=i)).isoformat()})
    return payloads


def champion_database(folder: Path, card_path: Path) -> str:
    """A SQLite database whose champion is the model of ``card_path``."""
    database_url = f"sqlite:///{folder / 'ecgk.db'}"
    upgrade(database_url)
    with session_scope(database_url) as session:
        version = register_model(session, card_path, actor="test")
        promote(session, version.name, version.version, actor="test")
    return database_url


@pytest.fixture
def champion_service(tmp_path: Path, card_path: Path) -> Iterator[Service]:
    """A service that serves the registry's champion (no --model) and checks it every 0.2 s."""
    home = tmp_path / "home"
    home.mkdir()
    running = start_service(None, champion_database(home, card_path), home, **FAST_LIMITS)
    try:
        yield running
    finally:
        stop_service(running)


class Load:
    """Client threads posting one ECG in a loop, each keeping (status, version, estimate, id) per response."""

    def __init__(self, service: Service, payload: dict[str, object], n_threads: int) -> None:
        self.stop = threading.Event()
        self.results: list[list[tuple[int, str, float | None, str | None]]] = [[] for _ in range(n_threads)]
        self.threads = [threading.Thread(target=self._post, args=(service, payload, out)) for out in self.results]

    def _post(self, service: Service, payload: dict[str, object], out: list) -> None:
        with service.client("client") as client:
            while not self.stop.is_set():
                try:
                    response = client.post("/v1/predictions", json=payload)
                except httpx.HTTPError as err:
                    out.append((0, repr(err), None, None))
                    continue
                body = response.json()
                if response.status_code == 201:
                    out.append((201, body["model"]["version"], body["k_estimate"], body["id"]))
                else:
                    out.append((response.status_code, str(body), None, None))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def versions(self) -> set[str]:
        return {version for results in self.results for _, version, _, _ in results}

    def wait_for(self, version: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while version not in self.versions() and time.monotonic() < deadline:
            time.sleep(0.05)


def _served_version(service: Service, key: str = "admin") -> str:
    with service.client(key) as client:
        return next(m["version"] for m in client.get("/v1/models").json() if m["serving"])


@pytest.mark.slow
def test_forced_promotion_is_served_with_zero_failed_requests(champion_service: Service, card_path: Path) -> None:
    service = champion_service
    old = load_model_card(card_path).version
    labels = np.round(np.linspace(2.5, 6.5, 16), 1)
    with service.client("client") as client, service.client("reviewer") as reviewer:
        for payload, k_value in zip(toy_payloads(labels), labels, strict=True):
            created = client.post("/v1/predictions", json=payload)
            assert created.status_code == 201, created.text
            lab_time = datetime.fromisoformat(str(payload["ecg_time"])) + timedelta(minutes=10)
            confirmed = reviewer.post(f"/v1/predictions/{created.json()['id']}/lab",
                                      json={"k_value": float(k_value), "lab_time": lab_time.isoformat(),
                                            "itemid": 50971})
            assert confirmed.status_code == 201, confirmed.text

    def retrain(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"ECGK_HOME": str(service.log_path.parent), "ECGK_DATABASE_URL": service.database_url,
               "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "ecg_k", "retrain", "--no-progress", "--n-boot", "20", "--device", "cpu",
                   *args]
        job = subprocess.run(command, cwd=REPO_ROOT, env=os.environ | env, capture_output=True, text=True,
                             timeout=600)
        assert job.returncode == 0, job.stdout + job.stderr
        return job

    # The toy test set holds no K+ >= 5.5, so the gate cannot show the sensitivity kept: refused.
    assert "\nrefused: gate refused" in retrain().stdout
    record = json.loads(next((service.log_path.parent / "retrain").glob("*/retrain.json")).read_text())
    new = record["outcome"]["challenger"]
    assert record["metrics"]["challenger"]["confirmed"]["overall"]["n"] + record["criteria"]["retrain"][
        "confirmed"]["train"] == 16
    assert _served_version(service) == old

    load_payload = {**toy_payloads(np.array([4.0]), seed=1)[0], "patient_id": "p-load"}
    with Load(service, load_payload, n_threads=3) as load:
        forced = retrain("--force-promote")  # an operator overrides the refusal: promoted, audited
        load.wait_for(new, SWAP_TIMEOUT_S)
        time.sleep(0.5)  # and keep the load on a little after the swap
    assert f"forced promotion of {new}" in forced.stdout

    responses = [result for results in load.results for result in results]
    failures = [result for result in responses if result[0] != 201]
    assert failures == [] and len(responses) > 50
    assert load.versions() == {old, new}
    for results in load.results:  # each client switches once, old -> new, and never back
        versions = [version for _, version, _, _ in results]
        switch = versions.index(new)
        assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}
    estimates = {version: {estimate for _, v, estimate, _ in responses if v == version} for version in (old, new)}
    assert len(estimates[old]) == 1 and len(estimates[new]) == 1 and estimates[old] != estimates[new]
    with session_scope(service.database_url) as session:
        served_by = dict(session.execute(
            sa.select(Prediction.id, ModelVersion.version).join(ModelVersion)
            .where(Prediction.id.in_([uuid.UUID(pid) for _, _, _, pid in responses]))).all())
        assert get_champion(session).version == new
    assert {str(pid): version for pid, version in served_by.items()} == {pid: v for _, v, _, pid in responses}
    assert _served_version(service) == new
    assert f"now serving champion ecg-k-net1d {new} (was ecg-k-net1d {old})" in service.log()
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert f'version="{new}"' in metrics


def _copy_model(exported_run: Path, folder: Path, version: str) -> Path:
    """The exported model under another version name (same ONNX bytes), as a new model directory."""
    folder.mkdir()
    shutil.copy(exported_run / "model.onnx", folder / "model.onnx")
    card = load_model_card(exported_run / "model_card.json")
    write_model_card(folder / "model_card.json", card.model_copy(update={"version": version}))
    return folder / "model_card.json"


def test_a_champion_that_fails_its_check_is_refused_and_the_old_model_keeps_serving(
    champion_service: Service, exported_run: Path, card_path: Path, tmp_path: Path
) -> None:
    service = champion_service
    old = load_model_card(card_path).version
    copy_card = _copy_model(exported_run, tmp_path / "copy", "copy-1")
    with session_scope(service.database_url) as session:
        register_model(session, copy_card, actor="test")
    onnx = copy_card.with_name("model.onnx")
    original = onnx.read_bytes()
    onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # tampered after registration
    with session_scope(service.database_url) as session:
        promote(session, "ecg-k-net1d", "copy-1", actor="test")

    payload = toy_payloads(np.array([4.0]))[0]
    with Load(service, payload, n_threads=2) as load:
        time.sleep(10 * float(POLL_S))
    assert [r for results in load.results for r in results if r[0] != 201] == []
    assert load.versions() == {old}
    refusals = [line for line in service.log().splitlines() if "refused" in line and "copy-1" in line]
    assert len(refusals) == 1 and "ModelIntegrityError" in refusals[0] and f"still serving ecg-k-net1d {old}" in \
        refusals[0]
    assert httpx.get(f"{service.base_url}/health/ready").status_code == 200

    with service.client("admin") as admin, service.client("client") as client:
        assert client.post("/v1/models/reload").status_code == 403
        refused = admin.post("/v1/models/reload")
        assert refused.status_code == 409 and "sha256" in refused.json()["detail"]
        onnx.write_bytes(original)  # repaired: the admin reload retries it at once
        reloaded = admin.post("/v1/models/reload")
        assert reloaded.status_code == 200 and reloaded.json()["version"] == "copy-1", reloaded.text
        assert client.post("/v1/predictions", json=payload).json()["model"]["version"] == "copy-1"


def test_a_pinned_model_is_never_swapped(tmp_path: Path, exported_run: Path, model_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    database_url = f"sqlite:///{home / 'ecgk.db'}"
    service = start_service(model_path, database_url, home, **FAST_LIMITS)
    try:
        pinned = _served_version(service)
        with session_scope(database_url) as session:
            version = register_model(session, _copy_model(exported_run, tmp_path / "copy", "copy-2"), actor="test")
            promote(session, version.name, version.version, actor="test")
        time.sleep(5 * float(POLL_S))
        assert _served_version(service) == pinned != "copy-2"
        with service.client("admin") as admin:
            response = admin.post("/v1/models/reload")
        assert response.status_code == 409 and "pinned" in response.json()["detail"]
    finally:
        stop_service(service)
