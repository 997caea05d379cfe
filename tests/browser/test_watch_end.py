"""A run ends while its Train page is open: the page shows the result and its polling stops cleanly.

The run is written by hand (a ``sleep`` process as its live worker, events through ``EventLog``), so
no TensorFlow runs; the server checks it like any run. After the end, the server log must have no
"The fragment with id ... does not exist anymore" line: that line means the browser kept polling a
fragment the page no longer draws.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from helpers.browser import chromium_page, require_browser, settle, streamlit_server
from helpers.patience import wait_ms

from transfer_core.config import ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.data import make_demo_dataset
from transfer_core.fileio import atomic_write_json
from transfer_core.processes import process_start_time
from transfer_core.report import RunReport
from transfer_core.runs import EventLog
from transfer_core.sessions.workspace import Workspace

pytestmark = [pytest.mark.browser]

STALE_FRAGMENT = "does not exist anymore"


def _running_run(home, monkeypatch):
    """A workspace with one running run; returns (workspace, run_dir, worker process)."""
    monkeypatch.setenv("TRANSFER_HOME", str(home))
    workspace = Workspace.open(Settings.from_env())
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=6, image_size=32)
    model = ModelSpec(backbone="mobilenet_v2_0.35", input_size=32, weights="random")
    run_dir = workspace.store.create(RunConfig(dataset=spec, model=model, train=TrainConfig(epochs=3)))
    worker = subprocess.Popen(["sleep", "600"])
    atomic_write_json(run_dir / "worker.pid", {"pid": worker.pid, "start_time": process_start_time(worker.pid)})
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "run_started", "strategy": "feature_extraction", "backbone": model.backbone,
                   "weights": "random", "num_train": 8, "num_val": 4, "epochs_total": 3, "batch_size": 8})
        log.write({"type": "stage", "stage": "head", "description": "Training the new head", "epochs": 3})
    return workspace, run_dir, worker


@pytest.mark.xfail(
    strict=False,
    reason="Known, not yet fixed: an auto-rerun tick already in flight when the final full rerun removes the "
    "fragment is still logged once by Streamlit (seen in 2 of 4 runs on a loaded machine).",
)
def test_a_run_that_ends_while_watched_leaves_no_stale_fragment_polls(tmp_path, monkeypatch):
    require_browser()
    home = tmp_path / "home"
    workspace, run_dir, worker = _running_run(home, monkeypatch)
    try:
        with streamlit_server(home) as server, chromium_page() as page:
            page.goto(f"{server.url}/train?ws={workspace.workspace_id}&run={run_dir.name}")
            page.get_by_role("button", name="Stop").wait_for()
            with EventLog(run_dir / "events.jsonl") as log:
                for epoch in (1, 2):
                    for batch in (1, 2):
                        log.write({"type": "batch_end", "stage": "head", "epoch": epoch, "batch": batch,
                                   "batches": 2, "step": 2 * (epoch - 1) + batch, "loss": 0.5})
                        time.sleep(0.5)
                    log.write({"type": "epoch_end", "stage": "head", "epoch": epoch, "loss": 0.5, "accuracy": 0.6,
                               "val_loss": 0.6, "val_accuracy": 0.5, "seconds": 1.0, "elapsed": float(epoch)})
            page.get_by_text("2 of 3 epochs done").first.wait_for(timeout=wait_ms(30))  # The live view followed.
            atomic_write_json(run_dir / "report.json", RunReport(val_accuracy=0.5, epochs=2).to_dict())
            with EventLog(run_dir / "events.jsonl") as log:
                log.write({"type": "stopped", "reason": "on request"})
            worker.kill()
            page.get_by_text("Stopped:").first.wait_for(timeout=wait_ms(30))
            settle(page)
            assert page.get_by_role("button", name="Stop").count() == 0
            page.wait_for_timeout(8_000)  # Several of the old poll intervals: any stale poll shows by now.
            log_text = server.log_path.read_text(errors="replace")
        assert STALE_FRAGMENT not in log_text, log_text[-3000:]
    finally:
        worker.kill()
        worker.wait()
