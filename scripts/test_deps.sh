#!/usr/bin/env bash
# System-level things the test suite needs beyond Python packages. Idempotent: quiet when present.
#  - Debian's headless Chromium, which the UI tests drive through Playwright (executable_path).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TRADELAB_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian's chromium for the browser tests (apt-get)..." >&2
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "warning: no chromium and no apt-get; set TRADELAB_CHROMIUM=/path/to/chromium for the UI tests" >&2
  fi
fi
