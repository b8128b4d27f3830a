#!/usr/bin/env bash
# Install everything the test suite needs into ./.venv and run it (the README's second command).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k indicators`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

# System packages and services the tests use are set up by the project's own script.
bash scripts/test_deps.sh

.venv/bin/python -m ruff check tradelab_jax tests

.venv/bin/python -m pytest "$@"
