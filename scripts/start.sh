#!/usr/bin/env bash
# Set up (see setup.sh) and start the app on http://localhost:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${TRANSFER_WEIGHTS_DIR:-}" ] && [ -d ../shared/weights ]; then
    export TRANSFER_WEIGHTS_DIR="$(cd ../shared/weights && pwd)"
fi
exec .venv/bin/streamlit run app.py "$@"
