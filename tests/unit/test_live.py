"""Following a run: incremental event reads, progress and ETA, log lines, status lines."""

from __future__ import annotations

import json
import os
import time

import pytest

from transfer_core import live
from transfer_core.config import DatasetSpec, ModelSpec, RunConfig, TrainConfig
from transfer_core.display import run_text
from transfer_core.report import RunReport
from transfer_core.runs import EventLog, RunInfo


def _events(t0: float = 1000.0) -> list[dict]:
    events = [
        {
            "type": "run_started",
            "time": t0,
            "epochs_total": 4,
            "num_train": 40,
            "num_val": 10,
            "strategy": "feature_extraction",
            "backbone": "b",
            "weights": "imagenet",
        },
        {"type": "stage", "time": t0 + 1, "stage": "features", "description": "features once", "epochs": 0},
        {"type": "progress", "time": t0 + 3, "stage": "features", "done": 20, "total": 50},
    ]
    return events


def test_follower_reads_only_new_complete_lines(tmp_path):
    follower = live.EventFollower(tmp_path)
    assert follower.poll() == []
    with EventLog(tmp_path / "events.jsonl") as log:
        log.write({"type": "run_started"})
        log.write({"type": "stage", "stage": "head"})
    assert [e["type"] for e in follower.poll()] == ["run_started", "stage"]
    offset = follower.offset
    with open(tmp_path / "events.jsonl", "a") as handle:
        handle.write(json.dumps({"type": "batch_end"}))  # No newline yet: a writer mid-line.
    assert follower.poll() == [] and follower.offset == offset
    with open(tmp_path / "events.jsonl", "a") as handle:
        handle.write("\n")
    assert [e["type"] for e in follower.poll()] == ["batch_end"]
    assert len(follower.events) == 3


def test_progress_during_feature_computation_estimates_from_images_per_second():
    progress = live.summarise_progress(_events(), now=1003.0)
    assert progress.stage == "features"
    assert progress.features_done == 20 and progress.features_total == 50
    # 20 images in 2 s -> 30 images left take 3 s.
    assert progress.eta_seconds == pytest.approx(3.0)
    assert "20/50 images" in progress.text


def test_decoding_images_once_shows_images_done_and_an_estimate():
    events = _events()[:1] + [
        {"type": "stage", "time": 1001.0, "stage": "decode", "description": "decode once", "epochs": 0},
        {"type": "progress", "time": 1002.0, "stage": "decode", "done": 64, "total": 256},
    ]
    progress = live.summarise_progress(events, now=1002.0)
    assert progress.text.startswith("decoding images once")
    assert "64/256 images" in progress.text
    assert progress.eta_seconds == pytest.approx(3.0)  # 64 images a second, 192 to go.


def test_progress_mid_epoch_uses_the_stage_pace_per_batch():
    events = _events() + [
        {"type": "stage", "time": 1004.0, "stage": "head", "description": "head", "epochs": 4}
    ]
    for step in range(1, 6):  # Epoch 1 has 4 batches; one batch per second.
        epoch, batch = (1, step) if step <= 4 else (2, step - 4)
        events.append(
            {
                "type": "batch_end",
                "time": 1004.0 + step,
                "stage": "head",
                "epoch": epoch,
                "batch": batch,
                "batches": 4,
                "step": step,
                "loss": 1.0 / step,
            }
        )
        if step == 4:
            events.append(
                {"type": "epoch_end", "time": 1008.1, "epoch": 1, "stage": "head", "val_accuracy": 0.5}
            )
    progress = live.summarise_progress(events, now=1010.0)
    assert progress.epoch == 1 and progress.batch == 1
    assert progress.fraction == pytest.approx((1 + 1 / 4) / 4)
    # 4 s over 4 steps -> 1 s per batch; 3 batches left in epoch 2 and 2 more epochs of 4.
    assert progress.eta_seconds == pytest.approx(11.0)
    assert progress.text.startswith("training the head · epoch 2 of 4 · batch 1 of 4 · val accuracy 50.0%")


def test_progress_of_a_queued_run_says_so():
    progress = live.summarise_progress([{"type": "queued", "time": 1.0, "position": 2}], now=2.0)
    assert progress.queued_position == 2
    assert "2 run(s) ahead" in progress.text


def test_progress_at_the_end_has_no_time_left():
    events = [
        {"type": "run_started", "time": 0.0, "epochs_total": 1},
        {"type": "stage", "time": 0.0, "stage": "head", "epochs": 1},
        {"type": "epoch_end", "time": 1.0, "epoch": 1, "stage": "head", "val_accuracy": 1.0},
    ]
    progress = live.summarise_progress(events, now=1.0)
    assert progress.fraction == 1.0 and progress.eta_seconds == 0.0
    assert "1 of 1 epochs done" in progress.text


def test_empty_events_give_a_starting_summary():
    progress = live.summarise_progress([], now=5.0)
    assert progress.fraction == 0.0 and progress.eta_seconds is None
    assert progress.text.startswith("starting")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (0, "0.0 s"), (0.003, "under 0.01 s"), (0.031, "0.03 s"), (0.26, "0.3 s"), (4.44, "4.4 s"), (12.4, "12 s"), (75, "1 min 15 s"), (3700, "1 h 01 min")],
)
def test_format_seconds(seconds, text):
    assert run_text.format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("model", "text"),
    [
        (ModelSpec(dropout_rate=0.0), "global average pooling → softmax"),
        (ModelSpec(head="max", hidden_units=64), "global max pooling → Dense(64, ReLU) → softmax (dropout 0.2)"),
        (ModelSpec(head="flatten", hidden_units=128, dropout_rate=0.0), "Flatten → Dense(128, ReLU) → softmax"),
    ],
)
def test_describe_head_names_the_pooling_and_the_layers(model, text):
    assert run_text.describe_head(model) == text


def test_event_log_leaves_out_batches_and_keeps_the_last_progress():
    events = _events() + [
        {"type": "batch_end", "time": 1005.0, "epoch": 1, "batch": 1, "batches": 2, "loss": 1.0},
        {"type": "failed", "time": 1006.0, "reason": "out of memory"},
    ]
    lines = run_text.event_log(events)
    assert len(lines) == 4
    assert "run_started" in lines[0] and "40 training and 10 validation images" in lines[0]
    assert "failed" in lines[2] and "out of memory" in lines[2]
    assert "20/50" in lines[3]


def _info(tmp_path, status: str, last_event=None, report=None, reason="") -> RunInfo:
    spec = DatasetSpec(root=str(tmp_path), class_names=("a", "b"))
    config = RunConfig(dataset=spec, train=TrainConfig(strategy="fine_tuning", epochs=3, fine_tune_epochs=2))
    return RunInfo("r1", tmp_path, config, status, reason, 0.0, last_event, report)


def test_status_lines(tmp_path):
    assert run_text.status_line(_info(tmp_path, "queued"), 0) == "queued (next)"
    assert run_text.status_line(_info(tmp_path, "queued"), 2) == "queued (2 run(s) ahead)"
    running = _info(tmp_path, "running", {"type": "batch_end", "epoch": 4})
    assert run_text.status_line(running) == "running: epoch 4 of 5"
    finished = _info(tmp_path, "finished", report=RunReport(val_accuracy=0.875))
    assert run_text.status_line(finished) == "finished: val accuracy 87.5%"
    failed = _info(tmp_path, "failed", reason="weights missing")
    assert run_text.status_line(failed) == "failed: weights missing"
    assert run_text.status_line(_info(tmp_path, "interrupted", reason="killed")) == "interrupted: killed"


def test_runs_table_has_one_row_per_run(tmp_path):
    table = run_text.runs_table([_info(tmp_path, "finished", report=RunReport(val_accuracy=0.5, epochs=5))])
    assert list(table["status"]) == ["finished"]
    assert table.loc[0, "strategy"] == "fine_tuning" and table.loc[0, "val accuracy"] == 0.5


def test_follower_status_comes_from_events_and_the_worker(tmp_path):
    from transfer_core.fileio import atomic_write_json
    from transfer_core.processes import process_start_time

    follower = live.EventFollower(tmp_path)
    atomic_write_json(
        tmp_path / "worker.pid", {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
    )
    with EventLog(tmp_path / "events.jsonl") as log:
        log.write({"type": "queued", "position": 0})
        follower.poll()
        assert follower.status() == "queued"
        log.write({"type": "run_started"})
        follower.poll()
        assert follower.status() == "running"
        log.write({"type": "finished"})
        follower.poll()
    assert follower.status() == "ended"


def test_follower_of_a_dead_worker_has_ended(tmp_path):
    from transfer_core.fileio import atomic_write_json

    atomic_write_json(tmp_path / "worker.pid", {"pid": 2**22 + 11, "start_time": 0})
    with EventLog(tmp_path / "events.jsonl") as log:
        log.write({"type": "run_started"})
    follower = live.EventFollower(tmp_path)
    follower.poll()
    assert follower.status() == "ended"


def test_follower_reads_the_config_once(tmp_path):
    spec = DatasetSpec(root=str(tmp_path), class_names=("a", "b"))
    (tmp_path / "config.json").write_text(json.dumps(RunConfig(dataset=spec).to_dict()))
    follower = live.EventFollower(tmp_path)
    assert follower.config.dataset.class_names == ("a", "b")
    (tmp_path / "config.json").unlink()
    assert follower.config is not None


def test_poll_seconds_are_slow_while_queued_fast_while_running_and_none_once_ended():
    assert live.poll_seconds("queued") == live.QUEUED_POLL_SECONDS
    assert live.poll_seconds("running") == live.RUNNING_POLL_SECONDS
    assert live.RUNNING_POLL_SECONDS < live.QUEUED_POLL_SECONDS
    assert live.poll_seconds("ended") is None


def test_needs_redraw_on_a_status_change_a_new_epoch_throttled_and_batches_rarely():
    drawn = live.LiveSnapshot("running", epochs=2, batches=10, time=100.0)
    assert not live.needs_redraw(drawn, live.LiveSnapshot("running", 2, 10, 200.0))  # Nothing new.
    assert live.needs_redraw(drawn, live.LiveSnapshot("ended", 2, 10, 100.1))  # The end: at once.
    assert live.needs_redraw(live.LiveSnapshot("queued", 0, 0, 100.0), live.LiveSnapshot("running", 0, 0, 100.1))
    assert not live.needs_redraw(drawn, live.LiveSnapshot("running", 3, 12, 101.0))  # An epoch, too soon.
    assert live.needs_redraw(drawn, live.LiveSnapshot("running", 3, 12, 100.0 + live.EPOCH_REDRAW_SECONDS))
    assert not live.needs_redraw(drawn, live.LiveSnapshot("running", 2, 14, 110.0))  # Batches only: rarely.
    assert live.needs_redraw(drawn, live.LiveSnapshot("running", 2, 14, 100.0 + live.BATCH_REDRAW_SECONDS))


def test_follower_counts_epochs_and_batches_and_sees_a_rewritten_pid_file(tmp_path):
    from transfer_core.fileio import atomic_write_json
    from transfer_core.processes import process_start_time

    atomic_write_json(tmp_path / "worker.pid", {"pid": os.getpid(), "start_time": process_start_time(os.getpid())})
    follower = live.EventFollower(tmp_path)
    with EventLog(tmp_path / "events.jsonl") as log:
        log.write({"type": "run_started"})
        for batch in (1, 2, 3):
            log.write({"type": "batch_end", "epoch": 1, "batch": batch, "batches": 3})
        log.write({"type": "epoch_end", "epoch": 1})
    follower.poll()
    snapshot = follower.snapshot(now=5.0)
    assert snapshot == live.LiveSnapshot("running", epochs=1, batches=3, time=5.0)
    # The pid file is cached between polls, but a rewrite (here: a worker that is gone) is seen.
    time.sleep(0.01)
    atomic_write_json(tmp_path / "worker.pid", {"pid": 2**22 + 13, "start_time": 0})
    assert follower.status() == "ended"


def test_follower_run_info_matches_load_run_while_active_and_after_the_end(tmp_path):
    from transfer_core.fileio import atomic_write_json
    from transfer_core.processes import process_start_time
    from transfer_core.runs import RunStore, load_run

    spec = DatasetSpec(root=str(tmp_path), class_names=("a", "b"))
    run_dir = RunStore(tmp_path / "runs").create(RunConfig(dataset=spec))
    atomic_write_json(run_dir / "worker.pid", {"pid": os.getpid(), "start_time": process_start_time(os.getpid())})
    follower = live.EventFollower(run_dir)
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "queued", "position": 0})
        follower.poll()
        assert follower.run_info() == load_run(run_dir)
        log.write({"type": "run_started", "epochs_total": 5})
        log.write({"type": "batch_end", "epoch": 2, "batch": 1, "batches": 4})
        follower.poll()
        info = follower.run_info()
        assert info == load_run(run_dir)
        assert run_text.status_line(info) == "running: epoch 2 of 10"  # Epochs from the config.
        log.write({"type": "finished"})
    atomic_write_json(run_dir / "report.json", RunReport(val_accuracy=0.5).to_dict())
    follower.poll()
    assert follower.run_info() == load_run(run_dir)
    assert follower.run_info().status == "finished"


def test_progress_fed_in_pieces_equals_the_summary_of_all_events():
    events = _events() + [
        {"type": "stage", "time": 1010.0, "stage": "head", "description": "head", "epochs": 4},
        *[{"type": "batch_end", "time": 1010.0 + step, "epoch": 1 + (step - 1) // 5, "batch": 1 + (step - 1) % 5,
           "batches": 5, "step": step, "loss": 1.0 / step} for step in range(1, 8)],
        {"type": "epoch_end", "time": 1016.0, "epoch": 1, "val_accuracy": 0.75},
    ]
    tracker = live.ProgressTracker()
    for start in range(0, len(events), 3):
        tracker.feed(events[start:start + 3])
    assert tracker.summary(now=1020.0) == live.summarise_progress(events, now=1020.0)
    assert tracker.summary(now=1020.0).text == live.summarise_progress(events, now=1020.0).text
