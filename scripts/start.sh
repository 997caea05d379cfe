#!/usr/bin/env bash
# Set up (see setup.sh) and start the app on http://localhost:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${TRANSFER_WEIGHTS_DIR:-}" ] && [ -d ../shared/weights ]; then
    export TRANSFER_WEIGHTS_DIR="$(cd ../shared/weights && pwd)"
fi
# Once per machine: the demo's LiteRT networks, so a class that presses Start the moment the server is up
# does not wait for their first conversion (later starts: a stamp check, no TensorFlow import).
TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m transfer_core prepare --if-needed || echo "Preparing the demo failed; its first run converts instead."
exec .venv/bin/streamlit run app.py "$@"
