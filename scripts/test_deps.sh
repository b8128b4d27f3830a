#!/usr/bin/env bash
# System-level things the test suite needs beyond Python packages (idempotent, quiet when present).
set -euo pipefail
cd "$(dirname "$0")/.."
# (Headless Chromium for the UI tests is added here when the UI lands.)
exit 0
