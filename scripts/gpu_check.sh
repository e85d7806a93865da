#!/usr/bin/env bash
# The GPU path measured in one run, for a machine with CUDA and the project installed with the train extra:
#   1. benchmarks/train_speed.py, whose "cuda" section times the Dist Loss head step (torchsort's CUDA soft
#      sort, where torchsort was built with nvcc, against torch.sort) and a 12-lead ecgfounder stage-1 step in
#      fp32 and bf16 autocast, eager and compiled (samples/s, peak memory, share of the bf16 roofline);
#   2. a short ecgfounder stage-1 training under torchrun (DDP on one GPU) on a synthetic cohort, then its
#      evaluation and ONNX export;
#   3. benchmarks/onnx_latency.py on that model: ONNX Runtime latency for 1 and 64 ECGs, CPU and CUDA providers.
# Every figure and log lands in OUT; the cohort and the run live in a temporary folder, removed at the end.
#
# Usage: scripts/gpu_check.sh OUT [N_ECGS] [EPOCHS]   (defaults 2000 and 2; PYTHON=python3 for an interpreter
# other than .venv/bin/python)
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  echo "usage: scripts/gpu_check.sh OUT [N_ECGS] [EPOCHS]" >&2
  exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$(dirname "$0")/.."
n_ecgs=${2:-2000}
epochs=${3:-2}
python=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1

step() { echo "== $1 ($(date -u +%T))"; }

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: $python sees no CUDA device; this script measures the GPU path" >&2
  exit 1
fi
step "device"
"$python" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" \
  | tee "$out/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$out/device.txt" 2>&1 || true

step "benchmarks/train_speed.py"
"$python" benchmarks/train_speed.py --repeats 5 | tee "$out/train_speed.json"

step "synthetic cohort of $n_ecgs ECGs, ingested"
"$python" -m ecg_k synth --out "$work/syn" --n-ecgs "$n_ecgs"
"$python" -m ecg_k ingest --ecg-root "$work/syn/mimic-iv-ecg" --hosp-root "$work/syn/mimic-iv/hosp" \
  --out "$work/ds" --workers "$(nproc)"

step "ecgfounder stage 1 under torchrun, one GPU"
"$python" -m torch.distributed.run --standalone --nproc_per_node 1 -m ecg_k train --data "$work/ds" \
  --out "$work/run" --model ecgfounder --method vanilla --device cuda --epochs "$epochs" --no-progress \
  2>&1 | tee "$out/train.log"
cp "$work/run/config.json" "$work/run/history.json" "$out/"

step "evaluate and export"
"$python" -m ecg_k evaluate --run "$work/run" | tee "$out/evaluate_export.log"
"$python" -m ecg_k export --run "$work/run" | tee -a "$out/evaluate_export.log"

step "benchmarks/onnx_latency.py"
"$python" benchmarks/onnx_latency.py --model "$work/run/model.onnx" --repeats 30 | tee "$out/onnx_latency.json"
step "done"
