"""Warm workers (decision 11): one process trains queued runs in turn, resets Keras between them,
retires after N runs or above a memory ceiling, and a crash still costs only its own run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import pytest
from helpers.models import TINY_MODEL
from helpers.runs import patience, wait_for

from transfer_core import jobs
from transfer_core.config import ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.jobs.spawn import REPO_ROOT
from transfer_core.runs import RunStore, load_run, read_events, read_pid

pytestmark = pytest.mark.slow  # Each test starts worker processes that import TensorFlow.


@pytest.fixture
def settings(tmp_path):
    settings = Settings(home=tmp_path / "home", max_concurrent_runs=1)
    yield settings
    jobs.shutdown_workers(settings, busy=True)


def _config(spec, model: ModelSpec = TINY_MODEL, **kwargs) -> RunConfig:
    return RunConfig(dataset=spec, model=model, train=TrainConfig(**{"epochs": 2, "batch_size": 8, **kwargs}))


def _worker_pid(run_dir) -> int:
    """The pid that trained the run (its events carry no pid; ``claim`` names the worker)."""
    return int((run_dir / "claim").read_text().split()[1])


def _started(run_dir) -> dict:
    return next(e for e in read_events(run_dir / "events.jsonl")[0] if e["type"] == "run_started")


def test_two_runs_in_one_worker_the_second_sees_nothing_of_the_first(tiny_dataset, settings, tmp_path):
    # The first run changes everything process-wide it can: another backbone, bfloat16 policy,
    # another seed, a Stop file of its own. The second must train as it would in a fresh process.
    first_config = _config(tiny_dataset, ModelSpec(backbone="mobilenet_v3_small", input_size=32, weights="random",
                                                   dropout_rate=0.0),
                           precision="mixed_bfloat16", seed=7, strategy="fine_tuning")
    second_config = _config(tiny_dataset, seed=3, strategy="fine_tuning")
    first = jobs.start_run(first_config, runs_dir=tmp_path / "runs", settings=settings)
    second = jobs.start_run(second_config, runs_dir=tmp_path / "runs", settings=settings)
    assert jobs.follow(first, timeout=patience(240)) == "finished", load_run(first).reason
    assert jobs.follow(second, timeout=patience(240)) == "finished", load_run(second).reason
    assert _worker_pid(first) == _worker_pid(second)  # One warm process trained both.
    assert (_started(first)["precision"], _started(second)["precision"]) == ("mixed_bfloat16", "float32")

    # The same config in a fresh one-run worker process (python -m transfer_core worker).
    fresh = RunStore(tmp_path / "fresh").create(second_config)
    env = {**os.environ, **jobs.settings_env(settings), "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-m", "transfer_core", "worker", str(fresh)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    warm_report = json.loads((second / "report.json").read_text())
    fresh_report = json.loads((fresh / "report.json").read_text())
    for key in ("val_accuracy", "val_loss", "epochs"):
        assert warm_report[key] == pytest.approx(fresh_report[key], abs=1e-5), key
    assert (second / "metrics.csv").read_text().splitlines()[0] == (fresh / "metrics.csv").read_text().splitlines()[0]
    # Each run's output went to its own log, and the first log ended before the second run started.
    assert (first / "worker.log").exists() and (second / "worker.log").exists()
    assert (first / "worker.log").stat().st_mtime <= _started(second)["time"] + 0.5


def test_queued_runs_share_one_worker_process_and_keep_fifo_order(tiny_dataset, settings, tmp_path):
    runs = [jobs.start_run(_config(tiny_dataset, epochs=1, seed=i), runs_dir=tmp_path / f"runs{i}",
                           settings=settings) for i in range(4)]
    # Four queued runs, one slot: one TensorFlow process, not four.
    assert len(jobs.live_workers(jobs.workers_dir(settings), jobs.standby_key(settings))) == 1
    assert [jobs.queue_position(r, settings) for r in runs[1:]] in ([0, 1, 2], [1, 2, 3])
    for run_dir in runs:
        assert jobs.follow(run_dir, timeout=patience(240)) == "finished", load_run(run_dir).reason
    assert len({_worker_pid(r) for r in runs}) == 1
    starts = [_started(r)["time"] for r in runs]
    assert starts == sorted(starts)  # First started, first trained.


def test_a_worker_retires_after_max_runs_and_a_fresh_one_takes_the_queue(tiny_dataset, settings, tmp_path):
    settings = dataclasses.replace(settings, worker_max_runs=2)
    runs = [jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / f"runs{i}", settings=settings)
            for i in range(3)]
    for run_dir in runs:
        assert jobs.follow(run_dir, timeout=patience(240)) == "finished", load_run(run_dir).reason
    pids = [_worker_pid(r) for r in runs]
    assert pids[0] == pids[1] != pids[2]
    assert wait_for(lambda: not _alive(pids[0]), 30)  # The retired one has left.


def test_a_worker_above_the_memory_ceiling_retires_after_its_run(tiny_dataset, settings, tmp_path):
    settings = dataclasses.replace(settings, worker_max_memory_mb=1)  # Every TensorFlow process is above.
    runs = [jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / f"runs{i}", settings=settings)
            for i in range(2)]
    for run_dir in runs:
        assert jobs.follow(run_dir, timeout=patience(240)) == "finished", load_run(run_dir).reason
    assert _worker_pid(runs[0]) != _worker_pid(runs[1])


def test_kill_9_interrupts_only_its_run_and_the_queued_run_gets_a_new_worker(tiny_dataset, settings, tmp_path):
    running = jobs.start_run(_config(tiny_dataset, epochs=200), runs_dir=tmp_path / "a", settings=settings)
    queued = jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "b", settings=settings)
    assert wait_for(lambda: load_run(running).status == "running", 120)
    assert load_run(queued).status == "queued"
    killed = read_pid(running)[0]
    os.killpg(killed, signal.SIGKILL)
    assert wait_for(lambda: load_run(running).status == "interrupted", 10)
    assert load_run(queued).status in ("queued", "running", "finished")  # Never interrupted with it.
    assert jobs.follow(queued, timeout=patience(240)) == "finished", load_run(queued).reason
    assert _worker_pid(queued) != killed


def test_stop_of_a_queued_run_cancels_it_and_leaves_the_running_one(tiny_dataset, settings, tmp_path):
    running = jobs.start_run(_config(tiny_dataset, epochs=200), runs_dir=tmp_path / "a", settings=settings)
    queued = jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "b", settings=settings)
    assert wait_for(lambda: load_run(running).status == "running", 120)
    jobs.request_stop(queued)
    info = load_run(queued)
    assert (info.status, info.reason) == ("stopped", "stopped while waiting in the queue")  # At once.
    assert jobs.queue_position(queued, settings) is None
    assert not jobs.enforce_stop(queued, early_grace_seconds=0)  # Never a kill of the server's pid.
    assert load_run(running).status == "running"
    assert jobs.stop_and_wait(running, timeout=patience(60)) == "stopped"
    assert not (queued / "model.keras").exists()


def test_the_standby_is_ready_before_the_first_run_and_trains_it(tiny_dataset, tmp_path):
    settings = Settings(home=tmp_path / "home", standby_worker=True)
    try:
        jobs.ensure_standby(settings)
        jobs.ensure_standby(settings)  # At most one.
        directory, key = jobs.workers_dir(settings), jobs.standby_key(settings)
        assert wait_for(lambda: [w.state for w in jobs.live_workers(directory, key)] == ["idle"], 120)
        [standby] = jobs.live_workers(directory, key)
        run_dir = jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "runs", settings=settings)
        assert jobs.follow(run_dir, timeout=patience(240)) == "finished", load_run(run_dir).reason
        assert _worker_pid(run_dir) == standby.pid
        # It stays, idle, for the next run.
        assert wait_for(lambda: [(w.pid, w.state) for w in jobs.live_workers(directory, key)]
                        == [(standby.pid, "idle")], 30)
    finally:
        jobs.shutdown_workers(settings, busy=True)


def test_a_worker_only_takes_runs_started_with_its_settings(tiny_dataset, settings, tmp_path):
    other = dataclasses.replace(settings, max_queued_per_session=5)  # Another key, same home.
    mine = jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "a", settings=settings)
    theirs = jobs.start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "b", settings=other)
    try:
        assert jobs.follow(mine, timeout=patience(240)) == "finished"
        assert jobs.follow(theirs, timeout=patience(240)) == "finished"
        assert _worker_pid(mine) != _worker_pid(theirs)
    finally:
        jobs.shutdown_workers(other, busy=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
