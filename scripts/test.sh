#!/usr/bin/env bash
# Set up (see setup.sh --test) and run the whole test suite, slow and browser tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# Real data and weights from ../shared when present (tests skip with a reason otherwise).
if [ -d ../shared/weights ]; then export TRANSFER_WEIGHTS_DIR="${TRANSFER_WEIGHTS_DIR:-$(cd ../shared/weights && pwd)}"; fi
if [ -d ../shared/datasets ]; then export TRANSFER_TEST_DATA="${TRANSFER_TEST_DATA:-$(cd ../shared/datasets && pwd)}"; fi
export TRANSFER_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest "$@"
