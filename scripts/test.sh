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

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# XLA:CPU (jaxlib 0.10) occasionally wedges a fresh training process: a computation never completes
# (docs/benchmarks.md, "Known issue"). Test files that failed are re-run once, loudly; a second failure
# fails the run. TRADELAB_NO_RETRY=1 turns this off.
if [ "$rc" -eq 1 ] && [ -z "${TRADELAB_NO_RETRY:-}" ]; then
  failed_files=$(.venv/bin/python scripts/failed_test_files.py)
  if [ -n "$failed_files" ]; then
    echo "re-running the failed test files once: $failed_files" >&2
    # shellcheck disable=SC2086
    exec .venv/bin/python -m pytest $failed_files
  fi
fi
exit "$rc"
