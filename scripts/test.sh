#!/usr/bin/env bash
# The test command (README command 2; .ci/run calls exactly this): install what is needed, run the static
# guard-rails (lint), then pytest.
# Besides the Python environment, the database tests need a PostgreSQL 15 server binary (Debian's package;
# the tests start and stop their own throwaway server on loopback), and the dashboard's browser test needs
# Debian's chromium and chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ ! -x /usr/lib/postgresql/15/bin/postgres ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "[test] installing Debian's postgresql for the database tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  echo "[test] installing Debian's chromium and chromium-driver for the dashboard's browser test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "[test] ruff check"
.venv/bin/ruff check .
echo "[test] mypy"
.venv/bin/mypy
echo "[test] lint-imports"
.venv/bin/lint-imports --no-logo
exec .venv/bin/python -m pytest -q "$@"
