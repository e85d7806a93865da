"""ONNX Runtime latency of an exported K+ model, per execution provider, for one ECG and for a batch of 64.

Loads the model as the service does (:class:`ecg_k.inference.OnnxModel`: the file's sha256 checked against its
card, explicit thread counts), once on the CPU provider and once asking for CUDA where the installed
onnxruntime lists it (the ``gpu`` extra, onnxruntime-gpu), and times ``predict`` on random inputs of the
card's shape: median and p99 of ``--repeats`` runs after a warm-up. The CUDA figures include the copies to
and from the device, as serving pays them. A provider that is not available is reported, not measured.

Usage: ``.venv/bin/python benchmarks/onnx_latency.py --model RUN/model.onnx [--repeats 50] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as a script, this file's folder comes first on sys.path: look in the checkout instead
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import onnxruntime as ort

from benchmarks._stats import median_p99
from ecg_k.inference import CUDA_PROVIDER, OnnxModel

BATCHES = (1, 64)
WARM_UP_RUNS = 5


def latencies_ms(model: OnnxModel, batch: int, repeats: int, seed: int = 0) -> dict[str, float]:
    """Median and p99 wall time (ms) of ``model.predict`` on a random batch, and ECGs per second at the median."""
    inputs = np.random.default_rng(seed).standard_normal((batch, *model.input_shape)).astype(np.float32)
    for _ in range(WARM_UP_RUNS):
        model.predict(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(inputs)
        times.append(time.perf_counter() - start)
    median, p99 = median_p99(times)
    return {"p50_ms": round(median * 1e3, 3), "p99_ms": round(p99 * 1e3, 3), "ecg_per_s": round(batch / median, 1)}


def provider_figures(card: Path, onnx: Path, use_cuda: bool, threads: int, repeats: int) -> dict[str, object]:
    """Latencies of each batch size on the provider the session obtained (CUDA only when asked and listed)."""
    model = OnnxModel(card, onnx, intra_op_num_threads=threads, use_cuda=use_cuda)
    figures: dict[str, object] = {"providers": list(model.providers)}
    for batch in BATCHES:
        figures[f"batch_{batch}"] = latencies_ms(model, batch, repeats)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an exported model.onnx (its model_card.json "
                                                                  "beside it)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (the service's "
                                                               "default is 1)")
    args = parser.parse_args()
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    card = args.model.with_name("model_card.json")
    if not args.model.is_file() or not card.is_file():
        parser.error(f"--model: need {args.model} and its model card {card}")
    results: dict[str, object] = {"onnxruntime": ort.__version__, "threads": args.threads,
                                  "cpu": provider_figures(card, args.model, False, args.threads, args.repeats)}
    if CUDA_PROVIDER in ort.get_available_providers():
        results["cuda"] = provider_figures(card, args.model, True, args.threads, args.repeats)
    else:
        results["cuda"] = f"not measured: this onnxruntime has no {CUDA_PROVIDER} (install the gpu extra)"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
