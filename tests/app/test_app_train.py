"""The Train page: live view from a run's files, results, earlier runs, and real tiny runs (slow)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest
from helpers.models import TINY_MODEL
from helpers.patience import patience

from transfer_core.config import FreezePlan, ModelSpec, RunConfig, TrainConfig
from transfer_core.fileio import atomic_write_json
from transfer_core.processes import process_start_time
from transfer_core.runs import EventLog, RunStore

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")


@pytest.fixture
def at(home):
    """The app on the Train page with a small demo data set and a tiny model chosen."""
    from streamlit.testing.v1 import AppTest

    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions.workspace import Workspace
    from ui import state

    workspace = Workspace.open(state.settings())
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=10, image_size=32)
    at = AppTest.from_file(APP, default_timeout=patience(60))
    at.session_state["workspace"] = workspace
    at.session_state["dataset_root"] = spec.root
    at.session_state["model_spec"] = TINY_MODEL
    at.session_state["freeze_plan"] = FreezePlan(mode="top_blocks", top_blocks=1)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def _fake_run(
    at, *, alive: bool, events: list[dict], report: dict | None = None, strategy="feature_extraction",
    model: ModelSpec = TINY_MODEL,
):
    """A run directory written by hand (no worker): pid of this test process when ``alive``."""
    from transfer_core.data import load_dataset

    workspace = at.session_state["workspace"]
    spec = load_dataset(at.session_state["dataset_root"])
    config = RunConfig(dataset=spec, model=model, train=TrainConfig(strategy=strategy, epochs=3))
    run_dir = RunStore(workspace.runs_dir).create(config)
    pid = os.getpid() if alive else 2**22 + 7  # An unused pid when not alive.
    atomic_write_json(
        run_dir / "worker.pid", {"pid": pid, "start_time": process_start_time(pid) if alive else 0}
    )
    with EventLog(run_dir / "events.jsonl") as log:
        for event in events:
            log.write(event)
    if report is not None:
        atomic_write_json(run_dir / "report.json", report)
    return run_dir


def _progress_events(epochs_done: int) -> list[dict]:
    events = [
        {
            "type": "run_started",
            "strategy": "feature_extraction",
            "backbone": "mobilenet_v2_0.35",
            "weights": "random",
            "classes": ["a", "b"],
            "num_train": 32,
            "num_val": 8,
            "epochs_total": 3,
            "batch_size": 8,
        },
        {
            "type": "stage",
            "stage": "head",
            "description": "Training the new head on cached features",
            "epochs": 3,
            "cached": True,
        },
    ]
    step = 0
    for epoch in range(1, epochs_done + 1):
        for batch in range(1, 5):
            step += 1
            events.append(
                {
                    "type": "batch_end",
                    "stage": "head",
                    "epoch": epoch,
                    "batch": batch,
                    "batches": 4,
                    "step": step,
                    "loss": 1.0 / step,
                    "accuracy": 0.5,
                }
            )
        events.append(
            {
                "type": "epoch_end",
                "stage": "head",
                "epoch": epoch,
                "loss": 1.0 / epoch,
                "accuracy": 0.6,
                "val_loss": 1.1 / epoch,
                "val_accuracy": 0.5 + 0.1 * epoch,
                "seconds": 0.5,
                "elapsed": epoch * 0.5,
            }
        )
    events.append(
        {
            "type": "batch_end",
            "stage": "head",
            "epoch": epochs_done + 1,
            "batch": 1,
            "batches": 4,
            "step": step + 1,
            "loss": 0.3,
            "accuracy": 0.7,
        }
    )
    return events


def _report(class_names=("checkerboard", "circles", "stripes", "triangles")) -> dict:
    n = len(class_names)
    matrix = [[2 if i == j else 0 for j in range(n)] for i in range(n)]
    matrix[0][1] = 1
    return {
        "status": "finished",
        "reason": "",
        "val_accuracy": 0.9,
        "best_val_accuracy": 0.9,
        "best_epoch": 3,
        "epochs": 3,
        "seconds": 4.2,
        "trainable_params": 5124,
        "cache_hits": [],
        "evaluation": {
            "val": {
                "accuracy": 0.9,
                "loss": 0.3,
                "num_images": 2 * n + 1,
                "confusion_matrix": matrix,
                "class_names": list(class_names),
                "per_class": [
                    {"class": c, "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
                    for c in class_names
                ],
                "top_losses": [
                    {
                        "index": 0,
                        "path": "nope/missing.png",
                        "true": class_names[0],
                        "predicted": class_names[1],
                        "confidence": 0.8,
                        "true_probability": 0.1,
                        "loss": 2.3,
                        "correct": False,
                    }
                ],
            }
        },
    }


def _plotly_titles(at) -> list[str]:
    titles = []
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        titles.append(spec.get("layout", {}).get("title", {}).get("text", ""))
    return titles


def test_train_page_offers_the_form_with_data(at):
    assert at.radio(key="train_strategy").value == "fine_tuning"  # From the top-blocks freeze plan.
    assert any("turns feature caching off" in c.value for c in at.caption)
    assert not any("Run " in s.value for s in at.subheader)


def test_live_view_shows_progress_charts_and_log_from_the_events(at):
    run_dir = _fake_run(at, alive=True, events=_progress_events(2))
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert not at.exception, at.exception
    progress = at.get("progress")[0].proto
    assert "epoch 3 of 3" in progress.text and "batch 1 of 4" in progress.text
    assert "val accuracy 70.0%" in progress.text
    assert any("Training the new head" in m.value for m in at.markdown)
    assert _plotly_titles(at)[:3] == ["Loss", "Accuracy", "Loss per batch"]
    assert at.button(key="train_stop") and not at.button(key="train_stop").disabled
    assert at.get("code")  # The event log.
    # Starting another run is refused while this one is active.
    assert any("A run of yours is active" in c.value for c in at.caption)


def test_live_view_adds_points_as_epochs_arrive(at):
    run_dir = _fake_run(at, alive=True, events=_progress_events(1))
    at.session_state["run_id"] = run_dir.name
    at.run()
    before = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    with EventLog(run_dir / "events.jsonl") as log:
        log.write(
            {
                "type": "epoch_end",
                "stage": "head",
                "epoch": 2,
                "loss": 0.2,
                "accuracy": 0.9,
                "val_loss": 0.3,
                "val_accuracy": 0.8,
                "seconds": 0.5,
                "elapsed": 1.0,
            }
        )
    at.run()
    after = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    assert len(after) == len(before) + 1


def test_stop_button_asks_the_worker_to_stop(at):
    run_dir = _fake_run(at, alive=True, events=_progress_events(1))
    at.session_state["run_id"] = run_dir.name
    at.run()
    at.button(key="train_stop").click().run()
    assert (run_dir / "stop").exists()
    assert any("Stopping" in w.value for w in at.warning)
    assert at.button(key="train_stop").disabled


def test_a_queued_run_says_it_waits(at):
    run_dir = _fake_run(at, alive=True, events=[{"type": "queued", "position": 1, "message": "waiting"}])
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert any("Queued: waiting for a free training slot" in i.value for i in at.info)


def test_a_queued_run_is_polled_slowly(at, poll_intervals):
    from transfer_core import live

    run_dir = _fake_run(at, alive=True, events=[{"type": "queued", "position": 0, "message": "waiting"}])
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert not at.exception, at.exception
    assert poll_intervals == [live.QUEUED_POLL_SECONDS]


def test_a_running_run_is_polled_fast_and_an_ended_one_not_at_all(at, poll_intervals):
    from transfer_core import live

    run_dir = _fake_run(at, alive=True, events=_progress_events(1))
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert poll_intervals == [live.RUNNING_POLL_SECONDS, live.CURVES_POLL_SECONDS]  # Status; curves.
    atomic_write_json(run_dir / "report.json", _report())
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "finished", "reason": "", "val_accuracy": 0.9})
    poll_intervals.clear()
    at.run()
    assert any(s.value == "Finished." for s in at.success)
    assert poll_intervals == []  # No fragment, so the browser schedules no poll.


def test_the_polling_fragments_split_the_cheap_status_from_the_curves(at):
    """The status fragment (polled every second) draws no charts or log; the curves fragment does.

    So a new epoch costs the server a rerun of the curves fragment, not of the whole page.
    """
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    run_dir = _fake_run(at, alive=True, events=_progress_events(2))
    at.session_state["run_id"] = run_dir.name
    by_fragment: dict[str, set[str]] = {}

    def record(msg) -> None:
        if msg.HasField("delta") and msg.delta.HasField("new_element"):
            kind = msg.delta.new_element.WhichOneof("type")
            by_fragment.setdefault(msg.delta.fragment_id, set()).add(kind)

    ForwardMsgQueue.on_before_enqueue_msg(record)
    try:
        at.run()
    finally:
        ForwardMsgQueue.on_before_enqueue_msg(None)
    assert not at.exception, at.exception
    page = by_fragment.pop("", set())
    assert "plotly_chart" not in page and "code" not in page
    status = [kinds for kinds in by_fragment.values() if "progress" in kinds]
    curves = [kinds for kinds in by_fragment.values() if "plotly_chart" in kinds]
    assert len(status) == 1 and len(curves) == 1 and len(by_fragment) == 2
    assert "button" in status[0] and "plotly_chart" not in status[0] and "code" not in status[0]
    assert "code" in curves[0] and "progress" not in curves[0]


def test_when_the_run_ends_the_page_shows_results(at):
    run_dir = _fake_run(at, alive=True, events=_progress_events(3))
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert at.get("progress")
    atomic_write_json(run_dir / "report.json", _report())
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "finished", "reason": "", "val_accuracy": 0.9})
    at.run()
    assert not at.exception, at.exception
    assert not at.get("progress")  # No live view (and no polling fragment) any more.
    assert any(s.value == "Finished." for s in at.success)
    assert {m.label: m.value for m in at.metric}["Validation accuracy"] == "90.0%"
    assert "Confusion matrix (validation)" in _plotly_titles(at)
    per_class = next(f.value for f in at.dataframe if "precision" in f.value.columns)
    assert list(per_class.columns) == ["class", "precision", "recall", "f1", "support"]
    assert any("true **checkerboard** → predicted **circles** (80%)" in c.value for c in at.caption)


def test_the_run_summary_names_its_head(at):
    classic = dataclasses.replace(TINY_MODEL, head="flatten", hidden_units=128, dropout_rate=0.2)
    for model, words in ((TINY_MODEL, "head: global average pooling → softmax · "),
                         (classic, "head: Flatten → Dense(128, ReLU) → softmax (dropout 0.2) · ")):
        run_dir = _fake_run(at, alive=False, events=_progress_events(1), model=model)
        at.session_state["run_id"] = run_dir.name
        at.run()
        assert not at.exception, at.exception
        assert any(words in c.value for c in at.caption), [c.value for c in at.caption]


def test_a_dead_worker_is_shown_as_interrupted_not_running(at):
    run_dir = _fake_run(at, alive=False, events=_progress_events(1))
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert any("interrupted" in e.value and "worker process ended" in e.value for e in at.error)
    assert not at.get("progress")


def test_a_failed_run_shows_its_reason(at):
    run_dir = _fake_run(
        at,
        alive=False,
        events=[{"type": "failed", "reason": "The loss became NaN"}],
        report={"status": "failed", "reason": "The loss became NaN"},
    )
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert any(e.value == "The run failed: The loss became NaN" for e in at.error)


def test_earlier_runs_are_listed_and_can_be_reopened_and_deleted(at):
    finished = _fake_run(at, alive=False, events=[{"type": "finished"}], report=_report())
    time.sleep(1.1)  # Run ids sort by their creation second.
    failed = _fake_run(
        at,
        alive=False,
        events=[{"type": "failed", "reason": "boom"}],
        report={"status": "failed", "reason": "boom"},
    )
    at.run()
    table = next(f.value for f in at.dataframe if "strategy" in f.value.columns)
    assert list(table["run"]) == [failed.name, finished.name]
    assert list(table["status"]) == ["failed", "finished"]
    at.selectbox(key="train_reopen_choice").set_value(finished.name)
    at.button(key="train_reopen").click().run()
    assert at.session_state["run_id"] == finished.name
    assert any(s.value == "Finished." for s in at.success)
    at.selectbox(key="train_reopen_choice").set_value(failed.name).run()
    at.button(key="train_delete_run").click().run()
    assert not failed.exists() and finished.exists()


def _wait_until_ended(at, timeout: float = 150.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        if not at.get("progress") and (at.success or at.error or at.warning):
            return
        time.sleep(1.0)
    raise AssertionError("the run did not end in time")


@pytest.mark.slow
def test_a_tiny_real_run_starts_from_the_form_and_shows_its_result(at):
    at.radio(key="train_strategy").set_value("feature_extraction")
    at.number_input(key="train_epochs").set_value(1)
    at.selectbox(key="train_batch_size").set_value(8)
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    run_id = at.session_state["run_id"]
    config = json.loads((at.session_state["workspace"].runs_dir / run_id / "config.json").read_text())
    assert config["train"]["epochs"] == 1 and config["model"]["input_size"] == 32
    _wait_until_ended(at)
    assert any(s.value == "Finished." for s in at.success), [e.value for e in at.error]
    assert "Confusion matrix (validation)" in _plotly_titles(at)
    assert "Validation accuracy" in {m.label for m in at.metric}


@pytest.mark.slow
def test_stop_ends_a_real_run_quickly(at):
    at.radio(key="train_strategy").set_value("from_scratch")
    at.number_input(key="train_epochs").set_value(200)
    at.selectbox(key="train_batch_size").set_value(8)
    at.button(key="train_start").click().run()
    deadline = time.time() + 90
    while time.time() < deadline:  # Wait until batches are flowing.
        at.run()
        progress = at.get("progress")
        if progress and "batch" in progress[0].proto.text:
            break
        time.sleep(0.5)
    at.button(key="train_stop").click().run()
    # Quickly = the worker stops after the batch in flight (tests/unit/test_training.py counts it, and
    # tests/process/test_jobs.py checks a worker stopping itself); seconds depend on the machine's load,
    # so the wait here is generous. (Stopped inside its first epoch, the worker is killed after 1 s:
    # there is nothing to keep yet.)
    _wait_until_ended(at, timeout=180)
    assert any("Stopped" in w.value for w in at.warning) or any(s.value == "Finished." for s in at.success)


def test_missing_weights_are_reported_before_a_run_starts(at):
    at.session_state["model_spec"] = ModelSpec(backbone="efficientnet_b0", input_size=32, weights="imagenet")
    at.run()
    at.radio(key="train_strategy").set_value("feature_extraction")
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith("Cannot start:") and "efficientnetb0_notop.h5" in e for e in errors), errors
    assert "run_id" not in at.session_state
    assert not list(at.session_state["workspace"].runs_dir.iterdir())


def test_a_reload_reopens_the_workspace_and_the_run_from_the_url(at):
    from streamlit.testing.v1 import AppTest

    run_dir = _fake_run(at, alive=False, events=[{"type": "finished"}], report=_report())
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert at.query_params["run"] == run_dir.name
    workspace_id = at.query_params["ws"]
    reloaded = AppTest.from_file(APP, default_timeout=patience(60))  # A new browser session: empty session state.
    reloaded.query_params["ws"] = workspace_id
    reloaded.query_params["run"] = run_dir.name
    reloaded.run()
    reloaded.switch_page("pages/train.py").run()
    assert not reloaded.exception, reloaded.exception
    assert reloaded.session_state["workspace"].workspace_id == workspace_id
    assert reloaded.session_state["run_id"] == run_dir.name
    assert any(s.value == "Finished." for s in reloaded.success)


def test_an_unknown_run_in_the_url_is_ignored(at):
    from streamlit.testing.v1 import AppTest

    reloaded = AppTest.from_file(APP, default_timeout=patience(60))
    reloaded.query_params["ws"] = at.session_state["workspace"].workspace_id
    reloaded.query_params["run"] = "../../etc"
    reloaded.run()
    assert not reloaded.exception, reloaded.exception
    assert "run_id" not in reloaded.session_state


def test_a_finished_run_says_what_it_reused_and_shows_sub_second_times(at):
    report = {**_report(), "cache_hits": ["pool", "pool"], "reused_backbone": True, "seconds": 0.26}
    run_dir = _fake_run(at, alive=False, events=[{"type": "finished"}], report=report)
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert not at.exception, at.exception
    assert any("came from the cache" in c.value and "backbone an earlier run had built was reused" in c.value
               for c in at.caption)
    assert any(m.label == "Time" and m.value == "0.3 s" for m in at.metric)


def test_results_show_test_accuracy_beside_validation_when_the_data_set_has_a_test_split(at):
    """A real tiny run on a demo set with a held-out test split: its test accuracy is the number to quote."""
    from helpers.runs import make_finished_run

    from transfer_core.data import load_dataset, resplit
    from ui import state

    spec = resplit(load_dataset(at.session_state["dataset_root"]), seed=0, val_fraction=0.25, test_fraction=0.25)
    config = RunConfig(dataset=spec, model=TINY_MODEL, train=TrainConfig(epochs=1, batch_size=8))
    run_dir, result = make_finished_run(at.session_state["workspace"].runs_dir, config, state.settings())
    test = result.report["evaluation"]["test"]
    assert test["num_images"] > 0
    at.session_state["dataset_root"] = spec.root
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m for m in at.metric}
    assert list(metrics)[:2] == ["Validation accuracy", "Test accuracy"]
    assert metrics["Test accuracy"].value == f"{test['accuracy']:.1%}"
    assert "the number to quote" in metrics["Test accuracy"].proto.help
    assert any(c.value.startswith("Test accuracy — the number to quote") and f"{test['num_images']} images" in c.value
               for c in at.caption)


def test_results_without_a_test_split_show_no_test_accuracy(at):
    run_dir = _fake_run(at, alive=False, events=[{"type": "finished"}], report=_report())
    at.session_state["run_id"] = run_dir.name
    at.run()
    assert not at.exception, at.exception
    assert "Test accuracy" not in {m.label for m in at.metric}


def _sidebar_with_live_view(live_run: str | None) -> None:
    """An AppTest script: this session's sidebar status, with ``live_run`` shown live on the page."""
    from ui import state, widgets

    state.set_live_view(live_run)
    widgets.sidebar_status(poll=True)


def test_the_sidebar_polls_a_run_only_where_the_page_does_not_show_it_live(at, poll_intervals):
    from streamlit.testing.v1 import AppTest

    from ui import widgets

    run_dir = _fake_run(at, alive=True, events=_progress_events(1))
    for live_run, expected in ((run_dir.name, []), (None, [widgets.SIDEBAR_POLL_SECONDS])):
        sidebar = AppTest.from_function(_sidebar_with_live_view, args=(live_run,), default_timeout=patience(60))
        for name in ("workspace", "dataset_root", "model_spec"):
            sidebar.session_state[name] = at.session_state[name]
        sidebar.session_state["run_id"] = run_dir.name
        poll_intervals.clear()
        sidebar.run()
        assert not sidebar.exception, sidebar.exception
        assert any(run_dir.name in c.value for c in sidebar.caption)
        # Where the page shows the run live, its own fragments follow it; elsewhere the sidebar polls.
        assert poll_intervals == expected
        # Unpolled, the sidebar's line must not go stale: it points to the page instead.
        live_line = any(c.value == "running: progress on this page" for c in sidebar.caption)
        assert live_line == (live_run is not None)
