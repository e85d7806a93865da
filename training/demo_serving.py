"""The demo's serving steps: the registry, the API and the dashboard on loopback, traffic with confirmed labs,
and a retraining run whose gate decides whether the running API hot-swaps to a new champion.

The API (``ecgk serve``; it never imports torch) and the dashboard (``ecgk dashboard``) run as child
processes on 127.0.0.1 with the demo's SQLite database and ECG store under the demo home; this process talks
to them over HTTP only, as a hospital system would. Leaving the block that runs them (the end of the demo,
Ctrl-C, or an error) stops both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from rich.table import Table

from ecg_k.cli import console
from ecg_k.data.store import COHORT
from ecg_k.data.waveforms import read_wfdb
from ecg_k.db.api_keys import create_api_key, server_secret
from ecg_k.db.ecg_store import EcgStore
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import Role
from ecg_k.db.registry import find_version, get_champion, promote, register_model
from ecg_k.db.session import session_scope
from ecg_k.leads import MIMIC_LEAD_ORDER
from ecg_k.model_card import load_model_card
from ecg_k.records.dataset import read_manifest
from ecg_k.settings import get_settings
from ecg_k.synth.ecg_model import draw_subject, simulate_ecg
from ecg_k.synth.params import SynthParams
from ecgk_demo.loopback import free_port, running_server
from training.export import MODEL_CARD, MODEL_FILE
from training.retrain import RetrainConfig, Retraining, RetrainOutcome

DEMO_ACTOR = "ecgk-demo"
SERUM_ITEMID = 50971
POLL_S = 2.0
"""The API's registry check interval in the demo (``ECGK_MODEL_POLL_S``), so a promotion shows up quickly."""
SWAP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DemoServices:
    """Where the running API and dashboard answer, and the keys the demo made for them."""

    api_url: str
    dashboard_url: str
    client_key: str
    reviewer_key: str


def demo_database_url(home: Path) -> str:
    """The demo's SQLite database under its home."""
    return f"sqlite:///{(home / 'ecgk.db').resolve()}"


def register_demo_models(database_url: str, vanilla: Path, dist: Path) -> str:
    """Register both exported runs; the vanilla model is champion first, then Dist Loss replaces it (the
    registry then shows the two side by side, and the history of a promotion). Reruns change nothing."""
    upgrade(database_url)
    with session_scope(database_url) as session:
        versions = []
        for run in (vanilla, dist):
            card = load_model_card(run / MODEL_CARD)
            version = find_version(session, card.name, card.version)
            versions.append(version or register_model(session, run / MODEL_CARD, actor=DEMO_ACTOR,
                                                      onnx_path=run / MODEL_FILE))
        if get_champion(session) is None:
            for version in versions:
                promote(session, version.name, version.version, actor=DEMO_ACTOR)
        return get_champion(session).version  # type: ignore[union-attr]


@contextmanager
def running_services(home: Path, database_url: str) -> Iterator[DemoServices]:
    """The API (serving the registry's champion, hot-swapping on promotion) and the dashboard, on loopback."""
    server_key = server_secret(get_settings().model_copy(update={"home": home.resolve()}))  # the servers' own
    with session_scope(database_url) as session:
        client_key = create_api_key(session, Role.CLIENT, actor=DEMO_ACTOR, name="demo client",
                                    server_key=server_key).plaintext
        reviewer_key = create_api_key(session, Role.REVIEWER, actor=DEMO_ACTOR, name="demo reviewer",
                                      server_key=server_key).plaintext
    env = os.environ | {"ECGK_HOME": str(home.resolve()), "ECGK_DATABASE_URL": database_url,
                        "ECGK_MODEL_POLL_S": str(POLL_S)}
    api_port, dashboard_port = free_port(), free_port()
    api, dashboard = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{dashboard_port}"
    ecgk = [sys.executable, "-m", "ecg_k"]
    with ExitStack() as stack:
        stack.enter_context(running_server(
            [*ecgk, "serve", "--host", "127.0.0.1", "--port", str(api_port)], f"{api}/health/ready",
            env=env, log_path=home / "api.log"))
        stack.enter_context(running_server(
            [*ecgk, "dashboard", "--host", "127.0.0.1", "--port", str(dashboard_port)],
            f"{dashboard}/_stcore/health", env=env, log_path=home / "dashboard.log"))
        yield DemoServices(api, dashboard, client_key, reviewer_key)


def demo_ecgs(dataset: Path, n: int) -> pd.DataFrame:
    """``n`` test-split pairs spread over the K+ range (lowest, highest, in between)."""
    cohort = pd.read_parquet(dataset / COHORT)
    test = cohort[cohort["split"] == "test"].sort_values("k_value", kind="stable").reset_index(drop=True)
    positions = sorted({round(i * (len(test) - 1) / max(n - 1, 1)) for i in range(n)})
    return test.iloc[positions]


def _post(services: DemoServices, path: str, payload: dict, key: str) -> dict:
    response = httpx.post(f"{services.api_url}{path}", json=payload, headers={"X-API-Key": key}, timeout=60)
    response.raise_for_status()
    return response.json()


def send_test_ecgs(services: DemoServices, dataset: Path, n: int = 4) -> list[dict]:
    """POST ``n`` test-split ECGs (12-lead WFDB records, JSON in mV); print and return the predictions.

    Their patient key is the dataset's subject id, which keeps them out of any retraining (test subjects
    are evaluated only)."""
    inputs = read_manifest(dataset).inputs
    if inputs is None:
        raise ValueError(f"{dataset} was not ingested from WFDB records (its manifest names no ecg_root)")
    ecg_root = Path(inputs.ecg_root)
    results = []
    for row in demo_ecgs(dataset, n).to_dict("records"):
        record = read_wfdb(ecg_root / row["ecg_path"])
        payload = {"sampling_rate": record.fs, "lead_names": list(record.lead_names),
                   "signal": record.signal.tolist(), "patient_id": str(row["subject_id"])}
        results.append(_post(services, "/v1/predictions", payload, services.client_key)
                       | {"lab_k": float(row["k_value"])})
    table = Table(title="API predictions for test ECGs")
    for column in ("lab K+", "estimate", "90 % set", "P(K+>=5.5)", "P(K+<=3.5)", "flag", "code", "shot region"):
        table.add_column(column, justify="right")
    for result in results:
        interval = result["interval"]
        segments = ", ".join(f"{low:.1f}-{high:.1f}" for low, high in interval["segments"])
        probabilities = result["probabilities"]
        table.add_row(f"{result['lab_k']:.1f}", f"{result['k_estimate']:.2f}", segments,
                      f"{probabilities['hyperkalemia']:.2f}", f"{probabilities['hypokalemia']:.2f}",
                      result["flag"], result["interpretation"], result["shot_region"])
    console.print(table)
    return results


def send_confirmed_patients(services: DemoServices, n: int, seed: int) -> tuple[int, int]:
    """ECGs of ``n`` new synthetic patients (true K+ spread over 2.5-7.0 mmol/L) sent to the API, each scored
    one then confirmed by the reviewer with its lab value 10 minutes later: the pairs a retraining run learns
    from. Returns (flags the API raised, ECGs its signal-quality gate refused with a 422)."""
    params = SynthParams()
    rng = np.random.default_rng(seed)
    ecg_time = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    flagged = refused = 0
    for i, k in enumerate(np.linspace(2.5, 7.0, n)):
        ecg = simulate_ecg(draw_subject(rng, params.morphology), float(k), rng, params)
        payload = {"sampling_rate": params.fs, "lead_names": list(MIMIC_LEAD_ORDER),
                   "signal": ecg.signal.tolist(), "patient_id": f"demo-new-{seed}-{i}",
                   "ecg_time": ecg_time.isoformat()}
        response = httpx.post(f"{services.api_url}/v1/predictions", json=payload,
                              headers={"X-API-Key": services.client_key}, timeout=60)
        if response.status_code == 422:
            refused += 1
            continue
        response.raise_for_status()
        prediction = response.json()
        flagged += prediction["flag"] != "normal"
        lab = {"k_value": round(float(k), 1), "lab_time": (ecg_time + timedelta(minutes=10)).isoformat(),
               "itemid": SERUM_ITEMID}
        _post(services, f"/v1/predictions/{prediction['id']}/lab", lab, services.reviewer_key)
    return flagged, refused


def run_retraining(home: Path, database_url: str, progress: bool = True) -> RetrainOutcome:
    """One ``ecgk retrain`` run (stage 2 from the champion, default gate) on the demo's database."""
    config = RetrainConfig(out=home / "retrain", n_boot=50, progress=progress)
    return Retraining(config, database_url, EcgStore(home / "ecg-store"), home, DEMO_ACTOR).run()


def served_version(services: DemoServices) -> str:
    """The model version the API serves now."""
    response = httpx.get(f"{services.api_url}/v1/models", headers={"X-API-Key": services.client_key}, timeout=30)
    response.raise_for_status()
    return next(model["version"] for model in response.json() if model["serving"])


def wait_for_champion(services: DemoServices, database_url: str) -> str:
    """Wait until the API serves the registry's champion (after a promotion: the hot swap); its version."""
    with session_scope(database_url) as session:
        champion = get_champion(session)
        expected = None if champion is None else champion.version
    deadline = time.monotonic() + SWAP_TIMEOUT_S
    while (serving := served_version(services)) != expected and time.monotonic() < deadline:
        time.sleep(POLL_S / 2)
    return serving
