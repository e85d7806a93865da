"""What hostile traffic costs a real client, and what the largest accepted request costs the server.

1. A real client posts a real 12-lead ECG (a CinC 2021 record) one request at a time, alone and then while 8
   anonymous clients (separate processes) flood the API with wrong keys and no key as fast as they can; prints
   the real client's p50/p99 both ways and their ratio (target: p50 ratio <= 1.2), and the statuses the
   flooders got. The flooders connect from 127.0.0.2, the real client from 127.0.0.1: the failed-auth limit
   is per source address. On a machine with at least 2 CPUs the flooders are pinned to the last one and the
   server and the real client to the others, as an attacker's CPU would be elsewhere (their load on the
   server is what is measured, not their competition for this machine's cores).
2. The server's peak resident memory (``VmHWM``) before and after the largest request it accepts: 12 leads,
   60 s (the duration cap) at 1.8 kHz, just under the 10 MiB body limit.

Usage: ``.venv/bin/python benchmarks/hostile_load.py --model RUN/model.onnx [--requests 200] [--flooders 8]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where its own name would shadow the `service`
# package: look in the checkout instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._api import benchmark_api  # noqa: E402
from benchmarks._stats import median_p99  # noqa: E402
from ecg_k.data.waveforms import read_wfdb  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORD = REPO_ROOT / "tests" / "data" / "cinc2021" / "E07500"
WRONG_KEY = "ecgk_" + "0" * 12 + "_" + "x" * 64
FLOOD_ADDRESS = "127.0.0.2"


def _flood(base_url: str, stop: multiprocessing.synchronize.Event, counts: multiprocessing.Queue[dict[int, int]]
           ) -> None:
    """Send anonymous requests (a wrong key, then none) from another loopback address than the real client's
    (as an attacker elsewhere would) until ``stop``; report the statuses."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[-1]})
    seen: Counter[int] = Counter()
    transport = httpx.HTTPTransport(local_address=FLOOD_ADDRESS)
    with httpx.Client(base_url=base_url, timeout=30, transport=transport) as client:
        i = 0
        while not stop.is_set():
            headers = {"X-API-Key": WRONG_KEY} if i % 2 else {}
            seen[client.get("/v1/models", headers=headers).status_code] += 1
            i += 1
    counts.put(dict(seen))


def _latencies(base_url: str, key: str, bodies: list[bytes]) -> list[float]:
    times = []
    with httpx.Client(base_url=base_url, headers={"X-API-Key": key, "content-type": "application/json"},
                      timeout=60) as client:
        for body in bodies:
            start = time.perf_counter()
            response = client.post("/v1/predictions", content=body)
            times.append(time.perf_counter() - start)
            assert response.status_code == 201, response.text[:300]
    return times


def _summary(times: list[float]) -> str:
    p50, p99 = median_p99(times)
    return f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms"


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--record", type=Path, default=DEFAULT_RECORD)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--flooders", type=int, default=8)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[:-1]))  # the server started below inherits it; flooders take the last
    record = read_wfdb(args.record)
    bodies = [json.dumps({"sampling_rate": record.fs, "leads": {
        name: np.round(row + i * 1e-3, 4).tolist() for name, row in zip(record.lead_names, record.signal,
                                                                         strict=True)}}).encode()
              for i in range(2 * args.requests + 10)]
    with benchmark_api(args.model) as api:
        _latencies(api.base_url, api.key, bodies[:10])  # warm-up, and the key verified once
        alone = _latencies(api.base_url, api.key, bodies[10: 10 + args.requests])
        stop = multiprocessing.Event()
        counts: multiprocessing.Queue[dict[int, int]] = multiprocessing.Queue()
        flooders = [multiprocessing.Process(target=_flood, args=(api.base_url, stop, counts))
                    for _ in range(args.flooders)]
        for process in flooders:
            process.start()
        time.sleep(1.0)
        flooded = _latencies(api.base_url, api.key, bodies[10 + args.requests:])
        stop.set()
        statuses: Counter[int] = Counter()
        for _ in flooders:
            statuses.update(counts.get(timeout=60))
        for process in flooders:
            process.join(timeout=60)
        ratio = statistics.median(flooded) / statistics.median(alone)
        print(f"real client alone:                 {_summary(alone)}")
        print(f"real client, {args.flooders} anonymous flooders: {_summary(flooded)}  "
              f"(p50 ratio {ratio:.2f}; target <= 1.2)")
        print(f"flooder statuses: {dict(sorted(statuses.items()))}")

        fs = 1800
        n = 60 * fs
        rng = np.random.default_rng(0)
        t = np.arange(n) / fs
        signal = np.round(np.sin(2 * np.pi * 1.2 * t)[None] + 0.05 * rng.standard_normal((12, n)), 3)
        body = json.dumps({"sampling_rate": fs, "leads": {
            name: row.tolist() for name, row in zip(record.lead_names, signal, strict=True)}}).encode()
        before = _hwm_mib(api.pid)
        with httpx.Client(base_url=api.base_url, timeout=120) as client:
            response = client.post("/v1/predictions", content=body,
                                   headers={"X-API-Key": api.key, "content-type": "application/json"})
        after = _hwm_mib(api.pid)
        print(f"largest accepted request: {len(body) / 2**20:.2f} MiB body (12 leads x 60 s at {fs} Hz), "
              f"status {response.status_code}; server peak RSS {before:.0f} MiB before, {after:.0f} MiB after "
              f"(+{after - before:.0f} MiB)")


if __name__ == "__main__":
    main()
