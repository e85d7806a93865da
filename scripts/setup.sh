#!/usr/bin/env bash
# Create .venv and install ecg-k with everything the demo and the tests need.
# Idempotent: a stamp of the requirement files skips the install when nothing changed.
# Order matters (docs/install.md): torch pinned and alone first, then torchsort built against it
# without build isolation and with nvcc hidden from PATH (a CPU torch cannot build the CUDA kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${ECGK_VENV:-.venv}
stamp_file="$VENV/.ecgk-install-stamp"
stamp=$(cat pyproject.toml setup.py requirements/*.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -c requirements/constraints.txt "$@"; }
echo "[setup] torch 2.13.0 (CPU build), alone and first"
pip_install torch==2.13.0
nvcc_dir=$(dirname "$(command -v nvcc || echo /nonexistent/nvcc)")
trimmed_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$nvcc_dir" | paste -sd: -)
echo "[setup] project requirements (torchsort compiles from source: about a minute)"
PATH="$trimmed_path" pip_install --no-build-isolation -r requirements/dev.txt
pip_install --no-build-isolation --no-deps -e .
"$VENV/bin/python" -m pip check
echo "$stamp" > "$stamp_file"
echo "[setup] done: $VENV"
