"""The fair queue without training: the per-session limit (QueueFull) and the queue's ETA.

Queued runs here are real run directories whose worker is this test process (alive, with no
``starting`` event yet), which is exactly what makes a run read as queued.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from transfer_core.config import DatasetSpec, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.fileio import atomic_write_text
from transfer_core.jobs import QueueFull, check_session_queue, queue_eta, record_run_time
from transfer_core.jobs.queue import recent_run_times, register_in_queue
from transfer_core.runs import RunStore, load_run, write_pid


def _queued_run(runs_dir, settings: Settings, strategy: str = "feature_extraction", after=None):
    config = RunConfig(dataset=DatasetSpec(root="/nowhere", class_names=("a", "b")),
                       model=ModelSpec(weights="random"), train=TrainConfig(strategy=strategy))
    run_dir = RunStore(runs_dir).create(config)
    write_pid(run_dir, os.getpid())
    if after is not None:
        atomic_write_text(run_dir / "after", str(after))
    else:
        register_in_queue(settings, run_dir, os.getpid())
    assert load_run(run_dir).status == "queued"
    return run_dir


def test_a_session_may_queue_three_requests_and_the_fourth_is_refused(tmp_path):
    settings = Settings(home=tmp_path / "home")
    runs = tmp_path / "session-a" / "runs"
    for _ in range(3):
        check_session_queue(runs, settings)
        _queued_run(runs, settings)
    with pytest.raises(QueueFull, match=r"already has 3 request\(s\) waiting.*limit is 3"):
        check_session_queue(runs, settings)
    # Another session's queue is its own.
    check_session_queue(tmp_path / "session-b" / "runs", settings)
    # A higher limit lets the fourth in.
    check_session_queue(runs, dataclasses.replace(settings, max_queued_per_session=4))


def test_a_comparisons_chained_runs_count_as_its_one_request(tmp_path):
    settings = Settings(home=tmp_path / "home")
    runs = tmp_path / "runs"
    first = _queued_run(runs, settings)
    second = _queued_run(runs, settings, "fine_tuning", after=first)
    _queued_run(runs, settings, "from_scratch", after=second)
    check_session_queue(runs, settings)  # One request waits; two more fit.
    _queued_run(runs, settings)
    _queued_run(runs, settings)
    with pytest.raises(QueueFull):
        check_session_queue(runs, settings)


def test_the_limit_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRANSFER_MAX_QUEUED_PER_SESSION", "5")
    assert Settings.from_env().max_queued_per_session == 5
    monkeypatch.delenv("TRANSFER_MAX_QUEUED_PER_SESSION")
    assert Settings.from_env().max_queued_per_session == 3
    with pytest.raises(ValueError, match="max_queued_per_session"):
        Settings(max_queued_per_session=0)


def test_queue_eta_from_measured_run_times(tmp_path):
    settings = Settings(home=tmp_path / "home")
    runs = tmp_path / "runs"
    ahead = _queued_run(runs, settings, "fine_tuning")
    waiting = _queued_run(runs, settings, "feature_extraction")
    assert queue_eta(waiting, settings) is None  # Nothing has finished on this server yet.
    for seconds in (10.0, 12.0, 14.0):
        record_run_time(settings, "feature_extraction", seconds)
    for seconds in (40.0, 60.0):
        record_run_time(settings, "fine_tuning", seconds)
    # Median of all five runs (14 s) for the run training now, half done; the fine-tuning
    # run ahead takes its own median, 50 s; one slot.
    assert queue_eta(ahead, settings) == pytest.approx(7.0)
    assert queue_eta(waiting, settings) == pytest.approx(7.0 + 50.0)
    two_slots = dataclasses.replace(settings, max_concurrent_runs=2)
    assert queue_eta(waiting, two_slots) == pytest.approx(7.0 + 25.0)
    assert queue_eta(tmp_path / "not-queued", settings) is None


def test_only_the_last_run_times_count(tmp_path):
    settings = Settings(home=tmp_path / "home")
    for index in range(100):
        record_run_time(settings, "feature_extraction", float(index))
    times = recent_run_times(settings, kept=20)
    assert [t["seconds"] for t in times] == [float(i) for i in range(80, 100)]


def test_the_status_line_shows_the_eta(tmp_path):
    from transfer_core.display import run_text

    settings = Settings(home=tmp_path / "home")
    info = load_run(_queued_run(tmp_path / "runs", settings))
    assert run_text.status_line(info, 2, 130.0) == "queued (2 run(s) ahead), starts in about 2 min"
    assert run_text.status_line(info, 0, 12.0) == "queued (next), starts in about 10 s"
    assert run_text.status_line(info, 0) == "queued (next)"


def test_reading_the_queue_leaves_another_processs_half_written_entry_alone(tmp_path):
    """A page asking its queue position while a worker writes its entry must not delete the temporary
    file under it (the rename then failed and a student's Start with it; bench_class30 at N=30)."""
    from transfer_core.fileio import atomic_path
    from transfer_core.jobs.queue import live_queue, queue_dir

    settings = Settings(home=tmp_path)
    queue_dir(settings).mkdir(parents=True)
    with atomic_path(queue_dir(settings) / "0001-run") as tmp:
        tmp.write_text("{")  # Half written: not yet JSON.
        assert live_queue(settings) == []
        assert tmp.exists()
    assert (queue_dir(settings) / "0001-run").exists()
