"""The core's 'done when': `compare` on real ants-vs-bees photos with real ImageNet weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_compare_on_hymenoptera_from_the_command_line(tmp_path, hymenoptera_dir, shared_weights_dir):
    report_path = tmp_path / "compare.json"
    env = {**os.environ, "TRANSFER_HOME": str(tmp_path / "home"), "TRANSFER_WEIGHTS_DIR": str(shared_weights_dir),
           "TRANSFER_OFFLINE": "1"}
    # The settings of tests/integration/test_compare_hymenoptera.py (160 px, 6 + 4 epochs), otherwise the
    # CLI's defaults (from scratch on fine-tuning's time budget): at the default 224 px and 10 + 5 epochs
    # this one test took a tenth of CI's time for the same claims.
    command = [sys.executable, "-m", "transfer_core", "compare", "--data", str(hymenoptera_dir),
               "--backbone", "mobilenet_v2_0.35", "--input-size", "160", "--epochs", "6", "--fine-tune-epochs", "4",
               "--report", str(report_path), "--quiet"]
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    runs = {run["strategy"]: run for run in json.loads(report_path.read_text())["runs"]}
    assert set(runs) == {"feature_extraction", "fine_tuning", "from_scratch"}
    feature_extraction = runs["feature_extraction"]
    assert feature_extraction["val_accuracy"] >= 0.85
    assert runs["fine_tuning"]["val_accuracy"] >= 0.85
    # Without transfer, 245 photos are not enough: clearly lower than with it.
    assert runs["from_scratch"]["val_accuracy"] <= feature_extraction["val_accuracy"] - 0.15
    assert runs["fine_tuning"]["trainable_params"] > feature_extraction["trainable_params"]
