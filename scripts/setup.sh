#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the runtime dependencies; with --test also the test ones
# and Debian's chromium for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--test" ]; then
    .venv/bin/python -m pip install --quiet -r requirements-test.txt
    if ! command -v chromium >/dev/null && [ ! -x /usr/bin/chromium ]; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    fi
else
    .venv/bin/python -m pip install --quiet -r requirements.txt
fi
