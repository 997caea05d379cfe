"""The run store: atomic writes, incremental event reads, status derived from files."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from transfer_core.config import DatasetSpec, RunConfig
from transfer_core.metrics import evaluate_predictions
from transfer_core.report import RunReport, SplitEvaluation
from transfer_core.runs import (
    TERMINAL_EVENTS,
    EventLog,
    RunInfo,
    RunStatus,
    RunStore,
    atomic_write_json,
    epoch_frame,
    load_run,
    read_events,
    write_pid,
)


@pytest.fixture
def config(tmp_path):
    return RunConfig(dataset=DatasetSpec(root=str(tmp_path / "data"), class_names=("a", "b")))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_created_run_round_trips_its_config(tmp_path, config):
    store = RunStore(tmp_path / "runs")
    path = store.create(config)
    info = store.load(path.name)
    assert info.config == config
    assert [r.run_id for r in store.list_runs()] == [path.name]


def test_read_events_is_incremental_and_ignores_a_partial_line(tmp_path):
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.write({"type": "run_started"})
        log.write({"type": "epoch_end", "epoch": 1})
    events, offset = read_events(path)
    assert [e["type"] for e in events] == ["run_started", "epoch_end"]
    with open(path, "a") as handle:
        handle.write('{"type": "epoch_e')  # A writer mid-line.
    more, offset2 = read_events(path, offset)
    assert more == [] and offset2 == offset
    with open(path, "a") as handle:
        handle.write('nd", "epoch": 2}\n')
    more, _ = read_events(path, offset)
    assert more[0]["epoch"] == 2


def test_dead_worker_without_terminal_event_is_interrupted_not_running(tmp_path, config):
    store = RunStore(tmp_path / "runs")
    path = store.create(config)
    write_pid(path, _dead_pid())
    with EventLog(path / "events.jsonl") as log:
        log.write({"type": "run_started"})
        log.write({"type": "epoch_end", "epoch": 1, "loss": 0.5})
    info = load_run(path)
    assert info.status == "interrupted"
    assert "worker process ended" in info.reason
    assert not info.is_active


def test_live_worker_is_running(tmp_path, config):
    path = RunStore(tmp_path / "runs").create(config)
    write_pid(path, os.getpid())
    with EventLog(path / "events.jsonl") as log:
        log.write({"type": "run_started"})
    assert load_run(path).status == "running"


def test_finished_event_without_report_is_not_shown_as_finished(tmp_path, config):
    path = RunStore(tmp_path / "runs").create(config)
    write_pid(path, _dead_pid())
    with EventLog(path / "events.jsonl") as log:
        log.write({"type": "finished"})
    assert load_run(path).status == "interrupted"
    atomic_write_json(path / "report.json", {"status": "finished", "val_accuracy": 0.9})
    info = load_run(path)
    assert info.status is RunStatus.FINISHED and info.status == "finished"  # Typed, and still the plain word.
    assert json.loads(json.dumps({"status": info.status})) == {"status": "finished"}
    assert f"{info.status:<9}|" == "finished |"


def test_run_statuses_cover_the_terminal_events_and_reject_unknown_words(tmp_path):
    assert set(TERMINAL_EVENTS) <= set(RunStatus)
    assert [s for s in RunStatus if s.is_active] == [RunStatus.QUEUED, RunStatus.RUNNING]
    assert RunInfo("r", tmp_path, None, "stopped", "", 0.0, None, None).status is RunStatus.STOPPED
    with pytest.raises(ValueError, match="'paused' is not a valid RunStatus"):
        RunInfo("r", tmp_path, None, "paused", "", 0.0, None, None)


def test_failed_atomic_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    atomic_write_json(target, {"ok": 1})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_json(target, {"ok": 2})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # No temp file left behind.


def test_delete_refuses_active_runs_and_removes_finished(tmp_path, config):
    store = RunStore(tmp_path / "runs")
    path = store.create(config)
    write_pid(path, os.getpid())
    with EventLog(path / "events.jsonl") as log:
        log.write({"type": "run_started"})
    with pytest.raises(RuntimeError, match="stop it"):
        store.delete(path.name)
    with EventLog(path / "events.jsonl") as log:
        log.write({"type": "stopped", "reason": "x"})
    atomic_write_json(path / "report.json", {"status": "stopped"})
    store.delete(path.name)
    assert store.list_runs() == []


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", ""])
def test_run_ids_cannot_escape_the_store(tmp_path, bad):
    with pytest.raises(ValueError, match="Not a run id"):
        RunStore(tmp_path).path_of(bad)


def test_epoch_frame_has_one_row_per_epoch():
    events = [{"type": "batch_end"}, {"type": "epoch_end", "epoch": 1, "loss": 1.0, "val_accuracy": 0.5},
              {"type": "epoch_end", "epoch": 2, "loss": 0.5, "val_accuracy": 0.75}]
    frame = epoch_frame(events)
    assert frame["epoch"].tolist() == [1, 2]
    assert frame["val_accuracy"].tolist() == [0.5, 0.75]


# ----- the report ---------------------------------------------------------------------------------


def test_report_reads_old_files_missing_keys_as_none_and_ignores_unknown_ones(tmp_path, config):
    path = RunStore(tmp_path / "runs").create(config)
    write_pid(path, _dead_pid())
    with EventLog(path / "events.jsonl") as log:
        log.write({"type": "finished", "reason": ""})
    # An old report: no precision, no test split, a key that is no longer written.
    atomic_write_json(path / "report.json", {"status": "finished", "val_accuracy": 0.9, "epochs": 2,
                                             "cache_hits": ["pool"], "gpu_name": "none",
                                             "evaluation": {"val": {"accuracy": 0.9, "num_images": 10}}})
    report = load_run(path).report
    assert isinstance(report, RunReport)
    assert (report.val_accuracy, report.epochs, report.cache_hits) == (0.9, 2, ("pool",))
    assert report.precision is None and report.test_accuracy is None
    assert report.val_evaluation == SplitEvaluation(accuracy=0.9, num_images=10)  # Missing keys read as empty.
    assert report.to_dict() == {"status": "finished", "val_accuracy": 0.9, "epochs": 2, "cache_hits": ["pool"],
                                "evaluation": {"val": {"accuracy": 0.9, "loss": None, "num_images": 10,
                                                       "confusion_matrix": [], "per_class": [], "top_losses": [],
                                                       "class_names": []}}}


def test_report_round_trips_and_names_its_test_split():
    val = evaluate_predictions(np.array([0, 1, 1, 0]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]),
                               ["a", "b"], paths=["a/1.png", "b/1.png", "b/2.png", "a/2.png"])
    report = RunReport(status="finished", reason="", val_accuracy=0.75, class_names=("a", "b"), epochs=3,
                       evaluation={"val": val, "test": SplitEvaluation(accuracy=0.5, num_images=2)})
    on_disk = json.loads(json.dumps(report.to_dict()))
    assert RunReport.from_dict(on_disk) == report
    assert on_disk["evaluation"]["val"]["top_losses"][0] == {
        "index": 2, "path": "b/2.png", "true": "b", "predicted": "a", "confidence": 0.6, "true_probability": 0.4,
        "loss": pytest.approx(-np.log(0.4)), "correct": False}
    assert on_disk["evaluation"]["val"]["confusion_matrix"] == [[2, 0], [1, 1]]
    assert report.test_accuracy == 0.5 and report.num_test == 2 and report.has_metrics


@pytest.mark.parametrize(("data", "message"), [
    ({"val_accuracy": "0.9"}, "'val_accuracy' must be a number"),
    ({"epochs": 2.5}, "'epochs' must be an integer"),
    ({"reused_backbone": 1}, "'reused_backbone' must be true or false"),
    ({"cache_hits": "pool"}, "'cache_hits' must be a list of strings"),
    ([1, 2], "must hold a JSON object"),
    ({"evaluation": {"val": [0.9]}}, "evaluation of a split must be a JSON object"),
    ({"evaluation": {"val": {"top_losses": [3]}}}, "evaluation of a split is malformed"),
])
def test_report_with_wrong_json_types_is_a_clear_error(data, message):
    with pytest.raises(ValueError, match=message):
        RunReport.from_dict(data)


def test_a_report_of_the_wrong_shape_shows_the_run_as_interrupted_with_why(tmp_path, config):
    path = RunStore(tmp_path / "runs").create(config)
    write_pid(path, _dead_pid())
    with EventLog(path / "events.jsonl") as log:
        log.write({"type": "finished", "reason": ""})
    atomic_write_json(path / "report.json", {"status": "finished", "epochs": "two"})
    info = load_run(path)
    assert info.status == "interrupted" and info.report is None
    assert "report.json is unreadable" in info.reason and "epochs" in info.reason
