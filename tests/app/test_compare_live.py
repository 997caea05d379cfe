"""The Compare page while a comparison runs (AppTest on hand-written runs): cheap polls, no reread."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.models import TINY_MODEL
from helpers.patience import patience

from transfer_core.config import RunConfig, TrainConfig
from transfer_core.fileio import atomic_write_json
from transfer_core.processes import process_start_time
from transfer_core.runs import EventLog

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _comparison(home, statuses: list[str]):
    """An AppTest on the Compare page following a group of live runs, one per entry of ``statuses``."""
    from streamlit.testing.v1 import AppTest

    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions.workspace import Workspace
    from ui import state

    workspace = Workspace.open(state.settings())
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=6, image_size=32)
    run_ids = []
    for status, strategy in zip(statuses, ("feature_extraction", "fine_tuning"), strict=False):
        config = RunConfig(dataset=spec, model=TINY_MODEL, train=TrainConfig(strategy=strategy, epochs=3))
        run_dir = workspace.store.create(config)
        pid = os.getpid()  # This test process plays the live worker.
        atomic_write_json(run_dir / "worker.pid", {"pid": pid, "start_time": process_start_time(pid)})
        with EventLog(run_dir / "events.jsonl") as log:
            log.write({"type": "queued", "position": 0})
            if status == "running":
                log.write({"type": "run_started", "epochs_total": 3})
                log.write({"type": "batch_end", "stage": "head", "epoch": 2, "batch": 1, "batches": 4, "step": 5})
        run_ids.append(run_dir.name)
    at = AppTest.from_file(APP, default_timeout=patience(60))
    at.session_state["workspace"] = workspace
    at.session_state["dataset_root"] = spec.root
    at.session_state["model_spec"] = TINY_MODEL
    at.session_state["compare_group"] = run_ids
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def test_a_comparison_in_flight_is_polled_fast_while_a_run_trains(home, poll_intervals):
    from transfer_core import live

    at = _comparison(home, ["running", "queued"])
    assert any(s.value == "In progress" for s in at.subheader)
    lines = "\n".join(m.value for m in at.markdown)
    assert "running: epoch 2 of 3" in lines and "queued" in lines
    assert poll_intervals[-1] == live.RUNNING_POLL_SECONDS


def test_a_comparison_that_only_waits_is_polled_slowly(home, poll_intervals):
    from transfer_core import live

    at = _comparison(home, ["queued", "queued"])
    assert any("Comparison: 0 of 2 runs done" in p.proto.text for p in at.get("progress"))
    assert poll_intervals[-1] == live.QUEUED_POLL_SECONDS


def test_the_sidebar_shows_the_comparison_in_flight_instead_of_no_run(home):
    from streamlit.testing.v1 import AppTest

    at = _comparison(home, ["running", "queued"])
    # AppTest drops the sidebar after a page switch: render the app in a fresh session with the same state.
    fresh = AppTest.from_file(APP, default_timeout=patience(60))
    for key in ("workspace", "dataset_root", "model_spec", "compare_group"):
        fresh.session_state[key] = at.session_state[key]
    fresh.run()
    assert not fresh.exception, fresh.exception
    text = "\n".join(str(e.value) for e in [*fresh.sidebar.markdown, *fresh.sidebar.caption])
    assert "Comparison: run 1 of 2, feature extraction" in text, text
    assert "running: epoch 2 of 3" in text and at.session_state["compare_group"][0] in text
    assert "Current run" not in text
