#!/usr/bin/env bash
# The test command (README command 2; .ci/run calls exactly this): install what is needed, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
