"""Stop's force: a worker that answered Stop is given time to save; one that never answered is killed.

The worker here is a real process (``sleep``) in its own process group, as a one-run worker is;
its events are written with times in the past, as a worker starved of CPU would have left them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from transfer_core.config import DatasetSpec, ModelSpec, RunConfig, TrainConfig
from transfer_core.jobs import enforce_stop
from transfer_core.runs import RunStore, load_run, write_pid


@pytest.fixture
def busy_worker(tmp_path):
    config = RunConfig(dataset=DatasetSpec(root="/nowhere", class_names=("a", "b")),
                       model=ModelSpec(weights="random"), train=TrainConfig())
    run_dir = RunStore(tmp_path / "runs").create(config)
    worker = subprocess.Popen(["sleep", "300"], start_new_session=True)
    write_pid(run_dir, worker.pid)
    yield run_dir, worker
    worker.kill()
    worker.wait()


def _events_ago(run_dir, seconds: float, *types: str) -> None:
    """Events written ``seconds`` ago, and Stop asked for at the same moment."""
    moment = time.time() - seconds
    with open(run_dir / "events.jsonl", "a") as out:
        for kind in types:
            out.write(json.dumps({"type": kind, "time": moment, "message": "", "reason": ""}) + "\n")
    (run_dir / "stop").touch()
    os.utime(run_dir / "stop", (moment, moment))


def test_a_worker_that_answered_stop_gets_time_to_save(busy_worker):
    run_dir, worker = busy_worker
    _events_ago(run_dir, 30, "starting", "epoch_end", "stopping")
    assert load_run(run_dir).status == "running"
    assert not enforce_stop(run_dir)  # 30 s of silence after "stopping": saving on a busy machine.
    assert worker.poll() is None and load_run(run_dir).status == "running"
    assert enforce_stop(run_dir, saving_grace_seconds=20)  # But not for ever.
    assert worker.wait(timeout=10) is not None
    info = load_run(run_dir)
    assert info.status == "stopped" and "saving for over 20 s" in info.reason


def test_a_worker_that_never_answered_stop_is_killed_after_the_grace(busy_worker):
    run_dir, worker = busy_worker
    _events_ago(run_dir, 30, "starting", "epoch_end")
    assert enforce_stop(run_dir)
    assert worker.wait(timeout=10) is not None
    assert "did not stop in time" in load_run(run_dir).reason


def test_a_worker_that_answered_stop_before_its_first_epoch_is_left_to_end_the_run(busy_worker):
    """A warm worker that saw Stop inside its first epoch ends the run itself (nothing to keep) and takes
    the next one; a kill would cost the next run a TensorFlow import."""
    run_dir, worker = busy_worker
    _events_ago(run_dir, 5, "starting", "stopping")
    assert not enforce_stop(run_dir)  # Past the early grace (1 s), but it answered.
    assert worker.poll() is None and load_run(run_dir).status == "running"
    assert enforce_stop(run_dir, saving_grace_seconds=2)  # Not for ever either.
    assert worker.wait(timeout=10) is not None
    assert "before its first epoch ended" in load_run(run_dir).reason


def test_a_worker_that_never_answered_stop_before_its_first_epoch_is_killed_early(busy_worker):
    run_dir, worker = busy_worker
    _events_ago(run_dir, 5, "starting")
    assert enforce_stop(run_dir)
    assert worker.wait(timeout=10) is not None
    assert "before its first epoch ended" in load_run(run_dir).reason
