"""Real data through the app: hymenoptera uploaded as a ZIP on the Data page, trained on the Train page,
reaches the same validation accuracy as the command line on the same folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers.patience import patience

from transfer_core.config import FreezePlan, ModelSpec

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")
EPOCHS = 6


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return buffer.getvalue()


def test_zip_upload_then_training_matches_the_command_line(
    home, hymenoptera_dir, shared_weights_dir, tmp_path
):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=patience(120)).run()
    at.switch_page("pages/data.py").run()
    at.file_uploader(key="zip_file").set_value(
        ("hymenoptera.zip", _zip_folder(hymenoptera_dir), "application/zip")
    )
    at.run()
    at.button(key="zip_create").click().run(timeout=patience(300))
    assert not at.exception, at.exception
    assert any("is ready and active" in s.value for s in at.success)

    at.session_state["model_spec"] = ModelSpec(
        backbone="mobilenet_v2_0.35", input_size=128, weights="imagenet"
    )
    at.session_state["freeze_plan"] = FreezePlan(mode="all_frozen")
    at.switch_page("pages/train.py").run()
    at.radio(key="train_strategy").set_value("feature_extraction")
    at.number_input(key="train_epochs").set_value(EPOCHS)
    at.selectbox(key="train_batch_size").set_value(32)
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    run_dir = at.session_state["workspace"].runs_dir / at.session_state["run_id"]
    deadline = time.time() + 600
    while time.time() < deadline and not (run_dir / "report.json").exists():
        time.sleep(2)
        at.run()
    at.run()
    assert any(s.value == "Finished." for s in at.success), [e.value for e in at.error]
    app_report = json.loads((run_dir / "report.json").read_text())

    env = {
        **os.environ,
        "TRANSFER_HOME": str(tmp_path / "cli-home"),
        "TRANSFER_WEIGHTS_DIR": str(shared_weights_dir),
        "TRANSFER_OFFLINE": "1",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "transfer_core",
            "train",
            "--data",
            str(hymenoptera_dir),
            "--backbone",
            "mobilenet_v2_0.35",
            "--input-size",
            "128",
            "--epochs",
            str(EPOCHS),
            "--batch-size",
            "32",
            "--strategy",
            "feature_extraction",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cli = json.loads(result.stdout)
    cli = cli[0] if isinstance(cli, list) else cli
    assert app_report["num_train"] == cli.get("num_train", app_report["num_train"])
    assert app_report["val_accuracy"] == pytest.approx(cli["val_accuracy"], abs=1e-6)
    assert app_report["val_accuracy"] > 0.8  # Transfer works on real photos.
