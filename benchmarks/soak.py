"""A bounded soak of the inference API on loopback: a steady request rate from many clients for a fixed time.

Starts ``python -m ecg_k serve --model MODEL`` on a fresh SQLite database (or ``--database-url``), then
``--clients`` threads send ``--rate`` requests per second in all, on a fixed schedule (open loop: latency is
measured from the time a request was due, so a stalled server cannot hide its backlog), each request a
distinct real ECG. Every 5 s it samples the server's resident memory. At the end it checks the database:
every 201 must have its prediction row and an audit event, and nothing may be stored for a failed request.

Prints requests held, errors, p50/p99/max latency per minute, and memory at the start and end of the run
(growth as a ratio); exits 1 on any error, lost or extra row, or memory growth above ``--max-growth``.

Usage: ``.venv/bin/python benchmarks/soak.py --model RUN/model.onnx [--duration 600] [--rate 20]
[--clients 32] [--leads 1]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path: import the benchmarks package from the checkout.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from benchmarks._api import benchmark_api  # noqa: E402
from benchmarks._stats import median_p99  # noqa: E402
from ecg_k.data.waveforms import read_wfdb  # noqa: E402
from ecg_k.db.models import AuditEvent, Prediction  # noqa: E402
from ecg_k.db.session import session_scope  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORD = REPO_ROOT / "tests" / "data" / "cinc2021" / "E07500"
MEMORY_SAMPLE_S = 5.0


@dataclass
class Outcome:
    """One request: when it was due, its latency from then, and its status (0: transport error)."""

    due_s: float
    latency_s: float
    status: int


def _rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _body(signal: np.ndarray, fs: float, lead_names: list[str], i: int) -> bytes:
    """Request ``i``: the record plus ``i`` microvolts, so every ECG is new content to store."""
    return json.dumps({"sampling_rate": fs, "leads": {
        name: (row + i * 1e-3).tolist() for name, row in zip(lead_names, signal, strict=True)}}).encode()


def _run_clients(base_url: str, key: str, bodies: list[bytes], rate: float, duration_s: float,
                 clients: int) -> list[Outcome]:
    """Send request ``i`` at ``start + i / rate`` from a pool of ``clients`` threads, until ``duration_s``."""
    n = int(rate * duration_s)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    next_index = iter(range(n))
    start = time.perf_counter() + 1.0

    def client() -> None:
        with httpx.Client(base_url=base_url, headers={"X-API-Key": key, "Content-Type": "application/json"},
                          timeout=30) as http:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                due = start + i / rate
                time.sleep(max(0.0, due - time.perf_counter()))
                try:
                    status = http.post("/v1/predictions", content=bodies[i % len(bodies)]).status_code
                except httpx.TransportError:
                    status = 0
                with lock:
                    outcomes.append(Outcome(due - start, time.perf_counter() - due, status))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _sample_memory(pid: int, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    start = time.perf_counter()
    while not stop.wait(MEMORY_SAMPLE_S):
        samples.append((time.perf_counter() - start, _rss_mib(pid)))


def _per_minute(outcomes: list[Outcome]) -> list[str]:
    minutes: dict[int, list[float]] = {}
    for outcome in outcomes:
        minutes.setdefault(int(outcome.due_s // 60), []).append(outcome.latency_s * 1e3)
    lines = []
    for minute, latencies in sorted(minutes.items()):
        p50, p99 = median_p99(latencies)
        lines.append(f"  minute {minute + 1:>2}: n {len(latencies):>5}  p50 {p50:7.1f} ms  "
                     f"p99 {p99:7.1f} ms  max {max(latencies):7.1f} ms")
    return lines


def _stored_counts(database_url: str) -> tuple[int, Counter[str]]:
    """Predictions stored, and audit events of prediction.create by outcome."""
    with session_scope(database_url) as session:
        predictions = session.scalar(sa.select(sa.func.count()).select_from(Prediction)) or 0
        outcomes = Counter({str(outcome): count for outcome, count in session.execute(
            sa.select(AuditEvent.outcome, sa.func.count()).where(AuditEvent.action == "prediction.create")
            .group_by(AuditEvent.outcome))})
    return int(predictions), outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model.onnx (model_card.json beside it)")
    parser.add_argument("--record", type=Path, default=DEFAULT_RECORD, help="WFDB record path (no suffix)")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second, all clients together")
    parser.add_argument("--clients", type=int, default=32, help="concurrent client threads")
    parser.add_argument("--leads", type=int, default=1, help="send the first N leads")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--max-growth", type=float, default=1.10,
                        help="largest allowed ratio of the last to the first minute's median memory")
    args = parser.parse_args()
    if args.duration < 120 or args.rate <= 0 or args.clients < 1:
        parser.error("--duration must be >= 120 s (memory is compared minute 1 vs the last), --rate > 0, "
                     "--clients >= 1")

    record = read_wfdb(args.record)
    lead_names = list(record.lead_names)[: args.leads]
    signal = record.signal[: args.leads]
    bodies = [_body(signal, record.fs, lead_names, i) for i in range(int(args.rate * args.duration))]
    with benchmark_api(args.model, args.database_url) as api:
        before, _ = _stored_counts(api.database_url)
        stop = threading.Event()
        memory: list[tuple[float, float]] = []
        sampler = threading.Thread(target=_sample_memory, args=(api.pid, stop, memory))
        sampler.start()
        print(f"soak: {args.rate:g} req/s from {args.clients} clients for {args.duration:g} s "
              f"({len(lead_names)} lead(s), server pid {api.pid})")
        try:
            outcomes = _run_clients(api.base_url, api.key, bodies, args.rate, args.duration, args.clients)
        finally:
            stop.set()
        stored, audit = _stored_counts(api.database_url)  # every answer was committed before it was sent

    statuses = Counter(outcome.status for outcome in outcomes)
    created = statuses.get(201, 0)
    errors = len(outcomes) - created
    lost = created - (stored - before)
    latencies = [outcome.latency_s * 1e3 for outcome in outcomes]
    p50, p99 = median_p99(latencies)
    first = statistics.median(rss for t, rss in memory if t <= 60)
    last = statistics.median(rss for t, rss in memory if t >= memory[-1][0] - 60)
    print("\n".join(_per_minute(outcomes)))
    print(f"requests: {len(outcomes)} sent, {created} held (201), {errors} errors {dict(statuses)}")
    print(f"latency over the run: p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {max(latencies):.1f} ms")
    print(f"stored predictions: {stored - before} for {created} created (lost: {lost}); audit prediction.create: "
          f"{dict(audit)}")
    print(f"server memory: {first:.0f} MiB in minute 1, {last:.0f} MiB in the last minute "
          f"(ratio {last / first:.3f}; limit {args.max_growth})")
    failed = errors > 0 or lost != 0 or audit.get("success", 0) != created or last / first > args.max_growth
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
