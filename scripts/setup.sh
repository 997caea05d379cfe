#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the runtime dependencies; with --test also the test ones
# and Debian's chromium for the browser test; with --gpu TensorFlow's CUDA build (tensorflow[and-cuda])
# of the same version instead of tensorflow-cpu (kept by later plain runs: .venv/.gpu marks it).
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
elif [ "${1:-}" = "--gpu" ]; then
    .venv/bin/python -m pip install --quiet -r requirements.txt
    # The GPU build must be the TensorFlow version requirements.txt pinned, and replaces the CPU-only package
    # (both install the same `tensorflow` module).
    TF_VERSION="$(.venv/bin/python -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null | tail -1)"
    .venv/bin/python -m pip uninstall --quiet -y tensorflow-cpu
    .venv/bin/python -m pip install --quiet "tensorflow[and-cuda]==${TF_VERSION}"
    touch .venv/.gpu
    .venv/bin/python -m transfer_core doctor
elif [ -f .venv/.gpu ]; then
    # Installed with --gpu: everything but tensorflow-cpu, which would overwrite the CUDA build.
    grep -v '^tensorflow-cpu' requirements.txt > .venv/requirements-gpu.txt
    .venv/bin/python -m pip install --quiet -r .venv/requirements-gpu.txt
else
    .venv/bin/python -m pip install --quiet -r requirements.txt
fi
