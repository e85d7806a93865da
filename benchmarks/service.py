"""Latency and throughput of the inference API on loopback, against bare ONNX Runtime on the same input.

Starts ``python -m service.cli serve --model MODEL`` on a fresh SQLite database, posts a real ECG (a CinC
2021 record) with 1, 8 and 32 concurrent clients, and prints p50/p99 latency and throughput for each, then
the ratio of the single-client service latency (p50) to bare ``OnnxModel.predict`` on the same preprocessed
input (target: <= 1.25 for a single ECG with the small model), and to the in-process pipeline (JSON parse and
validation, preprocessing and quality gate, inference) that the service runs for each request.

Each request carries a distinct ECG (the record plus a per-request offset of a few microvolts, which the
high-pass filter removes), so every request stores a new blob as real traffic does, rather than finding its
content already stored. The bodies are JSON-encoded up front, so the client's encoding is not service time.

Usage: ``.venv/bin/python benchmarks/service.py --model RUN/model.onnx [--requests 200] [--record PATH]
[--leads N] [--sqlite-synchronous FULL|NORMAL]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, where its own name would shadow the `service`
# package it measures: look in the checkout instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._api import benchmark_api  # noqa: E402
from benchmarks._stats import median_p99  # noqa: E402
from ecg_k.data.waveforms import read_wfdb  # noqa: E402
from ecg_k.inference import OnnxModel  # noqa: E402
from service.schemas import EcgIn  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORD = REPO_ROOT / "tests" / "data" / "cinc2021" / "E07500"
CONCURRENCY = (1, 8, 32)


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    """Median and p99 in milliseconds."""
    p50, p99 = median_p99(seconds)
    return p50 * 1e3, p99 * 1e3


def _bare_predict_s(model: OnnxModel, model_input: np.ndarray, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        model.predict(model_input[None])
        times.append(time.perf_counter() - start)
    return times


def _bodies(signal: np.ndarray, fs: float, lead_names: list[str], n: int) -> list[bytes]:
    """``n`` JSON request bodies, each with its own content (an offset of ``i`` microvolts)."""
    return [json.dumps({"sampling_rate": fs, "leads": {name: (row + i * 1e-3).tolist()
                                                        for name, row in zip(lead_names, signal, strict=True)}}
                       ).encode() for i in range(n)]


def _pipeline_s(model: OnnxModel, body: bytes, n: int) -> list[float]:
    """Times of what the service computes per request, in process: parse + validate, preprocess, infer."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        ecg = EcgIn.model_validate_json(body)
        names, rows = ecg.named_rows()
        model.predict(model.preprocess(np.asarray(rows, dtype=np.float32), ecg.sampling_rate, names)[None])
        times.append(time.perf_counter() - start)
    return times


def _load(base_url: str, key: str, bodies: list[bytes], clients: int, n: int) -> tuple[list[float], float]:
    """Latencies of ``n`` posts (the bodies in turn) by ``clients`` concurrent clients, and the wall time."""
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    pool = [httpx.Client(base_url=base_url, headers=headers, timeout=60) for _ in range(clients)]

    def one(i: int) -> float:
        start = time.perf_counter()
        response = pool[i % clients].post("/v1/predictions", content=bodies[i % len(bodies)])
        response.raise_for_status()
        return time.perf_counter() - start

    for client in pool:
        client.post("/v1/predictions", content=bodies[0]).raise_for_status()  # warm connections
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as executor:
        latencies = list(executor.map(one, range(n)))
    wall = time.perf_counter() - start
    for client in pool:
        client.close()
    return latencies, wall


def _stage_totals(base_url: str) -> dict[str, tuple[float, int]]:
    """Seconds and count of each ``ecgk_prediction_stage_seconds`` stage so far, from the service's /metrics."""
    totals: dict[str, tuple[float, int]] = {}
    for line in httpx.get(f"{base_url}/metrics", timeout=30).text.splitlines():
        for suffix in ("_sum", "_count"):
            prefix = f"ecgk_prediction_stage_seconds{suffix}{{stage=\""
            if line.startswith(prefix):
                stage, value = line[len(prefix):].split('"} ')
                seconds, count = totals.get(stage, (0.0, 0))
                totals[stage] = (float(value), count) if suffix == "_sum" else (seconds, int(float(value)))
    return totals


def _print_breakdown(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]],
                     latencies: list[float]) -> None:
    """Mean time of each server stage over one load level, and what is left of the client's mean latency."""
    mean_ms = statistics.fmean(latencies) * 1e3
    parts = []
    for stage, (seconds, count) in after.items():
        seconds_before, count_before = before.get(stage, (0.0, 0))
        if count > count_before:
            parts.append((stage, (seconds - seconds_before) / (count - count_before) * 1e3))
    rest = mean_ms - sum(ms for _, ms in parts)
    print("  per-stage means (1 client): " + "  ".join(f"{stage} {ms:.2f} ms" for stage, ms in parts)
          + f"  | HTTP, auth, response and thread hops {rest:.2f} ms  (client mean {mean_ms:.2f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model.onnx (model_card.json beside it)")
    parser.add_argument("--record", type=Path, default=DEFAULT_RECORD, help="WFDB record path (no suffix)")
    parser.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    parser.add_argument("--leads", type=int, default=None, help="send only the first N leads (default: all)")
    parser.add_argument("--sqlite-synchronous", choices=("FULL", "NORMAL"), default="FULL",
                        help="the service's ECGK_SQLITE_SYNCHRONOUS (NORMAL: durable against a process crash only)")
    args = parser.parse_args()

    record = read_wfdb(args.record)
    signal = record.signal[: args.leads]
    lead_names = list(record.lead_names)[: args.leads]
    bodies = _bodies(signal, record.fs, lead_names, args.requests)
    print(f"{args.model}: {len(lead_names)} lead(s), {signal.shape[1]} samples, body {len(bodies[0]) / 1e3:.0f} kB")
    model = OnnxModel(args.model.with_name("model_card.json"), args.model, use_cuda=False)
    model_input = model.preprocess(signal.astype(np.float32), record.fs, lead_names)
    model.warm_up()
    bare_p50, bare_p99 = _percentiles(_bare_predict_s(model, model_input, args.requests))
    print(f"bare OnnxModel.predict: p50 {bare_p50:.2f} ms  p99 {bare_p99:.2f} ms")
    pipeline_p50, pipeline_p99 = _percentiles(_pipeline_s(model, bodies[0], args.requests))
    print(f"in-process pipeline (parse, preprocess + quality gate, predict): p50 {pipeline_p50:.2f} ms  "
          f"p99 {pipeline_p99:.2f} ms")

    with benchmark_api(args.model, ECGK_SQLITE_SYNCHRONOUS=args.sqlite_synchronous) as api:
        single_p50 = 0.0
        for clients in CONCURRENCY:
            before = _stage_totals(api.base_url)
            latencies, wall = _load(api.base_url, api.key, bodies, clients, args.requests)
            p50, p99 = _percentiles(latencies)
            single_p50 = single_p50 or p50
            target = {1: "", 8: "  (target: >= 2x 76 req/s, the figure before group commit)",
                      32: "  (target: p99 <= 200 ms)"}[clients]
            print(f"{clients:>2} clients: p50 {p50:.1f} ms  p99 {p99:.1f} ms  {args.requests / wall:.1f} req/s{target}")
            if clients == 1:
                _print_breakdown(before, _stage_totals(api.base_url), latencies)
    print(f"service p50 / bare predict p50 (1 client): {single_p50 / bare_p50:.2f} (target <= 1.25)")
    print(f"service p50 / in-process pipeline p50 (1 client): {single_p50 / pipeline_p50:.2f}; the service adds "
          f"{single_p50 - pipeline_p50:.1f} ms (target <= 4 ms: HTTP, authentication, durable storage of the ECG, "
          "prediction and audit event)")


if __name__ == "__main__":
    main()
