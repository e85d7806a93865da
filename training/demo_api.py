"""The demo's serving step: the exported model behind the real API on loopback, and a few test ECGs sent to it.

The API runs as its own process (``ecgk serve``; it never imports torch) with the demo's SQLite database
under the demo home; the demo creates a client key, sends ECGs of the synthetic test split read straight
from their WFDB files, prints what comes back, and stops the server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
from rich.table import Table

from ecg_k.cli import console
from ecg_k.data.store import COHORT, read_manifest
from ecg_k.data.waveforms import read_wfdb
from ecg_k.db.api_keys import create_api_key
from ecg_k.db.migrate import upgrade
from ecg_k.db.models import Role
from ecg_k.db.session import session_scope

READY_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_api(home: Path, model: Path) -> Iterator[tuple[str, str]]:
    """Serve ``model`` on loopback with the demo's database; yields (base URL, client API key)."""
    database_url = f"sqlite:///{(home / 'ecgk.db').resolve()}"
    upgrade(database_url)
    with session_scope(database_url) as session:
        key = create_api_key(session, Role.CLIENT, actor="ecgk-demo", name="demo client").plaintext
    port = free_port()
    log_path = home / "api.log"
    env = os.environ | {"ECGK_HOME": str(home), "ECGK_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "ecg_k", "serve", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log_path)
        yield base, key
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with code {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the API was not ready after {READY_TIMEOUT_S:.0f} s; see {log_path}")


def demo_ecgs(dataset: Path, n: int) -> pd.DataFrame:
    """``n`` test-split pairs spread over the K+ range (lowest, highest, in between)."""
    cohort = pd.read_parquet(dataset / COHORT)
    test = cohort[cohort["split"] == "test"].sort_values("k_value", kind="stable").reset_index(drop=True)
    positions = sorted({round(i * (len(test) - 1) / max(n - 1, 1)) for i in range(n)})
    return test.iloc[positions]


def send_test_ecgs(dataset: Path, model: Path, home: Path, n: int = 4) -> list[dict]:
    """Start the API, POST ``n`` test ECGs as JSON, print and return the predictions."""
    ecg_root = Path(read_manifest(dataset)["inputs"]["ecg_root"])
    rows = demo_ecgs(dataset, n)
    results = []
    with running_api(home, model) as (base, key):
        console.print(f"API ready at {base} (docs: {base}/docs); client key created for the demo")
        for row in rows.itertuples():
            record = read_wfdb(ecg_root / row.ecg_path)
            payload = {"sampling_rate": record.fs, "lead_names": list(record.lead_names),
                       "signal": record.signal.tolist(), "patient_id": f"demo-{row.subject_id}"}
            response = httpx.post(f"{base}/v1/predictions", json=payload, headers={"X-API-Key": key}, timeout=30)
            response.raise_for_status()
            results.append(response.json() | {"lab_k": float(row.k_value)})
    table = Table(title="API predictions for test ECGs (12-lead WFDB records, JSON in mV)")
    for column in ("lab K+", "estimate", "90 % interval", "flag", "code", "shot region"):
        table.add_column(column, justify="right")
    for result in results:
        interval = result["interval"]
        table.add_row(f"{result['lab_k']:.1f}", f"{result['k_estimate']:.2f}",
                      f"{interval['low']:.2f}-{interval['high']:.2f}", result["flag"], result["interpretation"],
                      result["shot_region"])
    console.print(table)
    return results
