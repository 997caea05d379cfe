"""The job runner with real worker processes: finish, artefacts, queue, stop, a killed worker."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.models import TINY_MODEL_DEFAULT_DROPOUT as TINY_MODEL
from helpers.ray_cluster import ray_address  # noqa: F401 - a fixture
from helpers.runs import patience, wait_for

from transfer_core.config import RunConfig, Settings, TrainConfig
from transfer_core.jobs import follow, queue_position, request_stop, start_run, stop_and_wait
from transfer_core.processes import stat_fields
from transfer_core.runs import RunStore, load_run, read_events, read_pid

pytestmark = pytest.mark.slow  # Each test starts worker processes that import TensorFlow.


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", max_concurrent_runs=1)


# The Ray case asks for ``ray_address`` only when it runs, so the collection hook cannot see it: its group
# is named here, so that it shares the xdist worker of every other test with a Ray head (tests/conftest.py).
@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.xdist_group("ray"))])
def any_settings(request, settings) -> Settings:
    """The same settings on each executor: local worker processes, or tasks on a real Ray head."""
    if request.param == "local":
        return settings
    # Each run reserves both CPUs of the test head, so one runs at a time, as with one local slot.
    return dataclasses.replace(settings, executor="ray", ray_address=request.getfixturevalue("ray_address"),
                               ray_num_cpus=2)


def _kill_worker(run_dir, settings: Settings) -> None:
    pid, _ = read_pid(run_dir)
    if settings.executor == "ray":
        os.kill(pid, signal.SIGKILL)  # The task's Ray worker process (it leads no process group).
    else:
        os.killpg(pid, signal.SIGKILL)


def _thread_nice_values(pid: int) -> set[int]:
    values = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # A thread that ended meanwhile.
            values.add(int(stat_fields(task / "stat")[16]))
    return values


def test_lower_priority_raises_the_nice_value_and_never_lowers_it():
    script = "import os; from transfer_core.processes import lower_priority; lower_priority(7); " \
             "print(os.getpriority(os.PRIO_PROCESS, 0))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    raised = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    kept = subprocess.run(["nice", "-n", "12", sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)
    assert (raised.stdout.strip(), kept.stdout.strip()) == ("7", "12")


def _config(spec, **kwargs) -> RunConfig:
    return RunConfig(dataset=spec, model=TINY_MODEL, train=TrainConfig(**{"epochs": 2, "batch_size": 8, **kwargs}))


def test_worker_run_writes_every_artefact_and_the_model_reloads(tiny_dataset, any_settings, tmp_path):
    import keras
    import numpy as np

    run_dir = start_run(_config(tiny_dataset), runs_dir=tmp_path / "runs", settings=any_settings)
    seen = []
    status = follow(run_dir, seen.append, timeout=patience(180))
    assert status == "finished", load_run(run_dir).reason
    assert {"config.json", "events.jsonl", "metrics.csv", "model.keras", "report.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert [e["type"] for e in seen][-1] == "finished"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs"] == 2
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    images = np.zeros((1, 32, 32, 3), dtype="float32")
    assert model.predict(images, verbose=0).shape == (1, tiny_dataset.num_classes)
    assert RunStore(tmp_path / "runs").list_runs()[0].status == "finished"


def test_second_run_waits_in_a_visible_queue(tiny_dataset, any_settings, tmp_path):
    settings = any_settings
    first = start_run(_config(tiny_dataset, epochs=4), runs_dir=tmp_path / "runs", settings=settings)
    assert wait_for(lambda: load_run(first).status == "running", 120)
    second = start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "runs", settings=settings)
    assert wait_for(lambda: any(e["type"] == "queued" for e in read_events(second / "events.jsonl")[0]), 60)
    assert load_run(second).status == "queued"
    assert queue_position(second, settings) == 0
    assert follow(first, timeout=patience(180)) == "finished"
    assert follow(second, timeout=patience(180)) == "finished"


def test_stop_ends_a_live_run_quickly(tiny_dataset, any_settings, tmp_path):
    run_dir = start_run(_config(tiny_dataset, epochs=200), runs_dir=tmp_path / "runs", settings=any_settings)
    assert wait_for(
        lambda: any(e["type"] == "epoch_end" for e in read_events(run_dir / "events.jsonl")[0]), 120
    )
    if any_settings.executor == "local":
        # Every thread of the worker, TensorFlow's pools included, trains below the server's priority.
        pid, _ = read_pid(run_dir)
        assert _thread_nice_values(pid) == {any_settings.worker_nice}
    status = stop_and_wait(run_dir, timeout=patience(180))  # Generous: a loaded machine slows every batch, not the stop.
    assert status == "stopped"
    # The worker itself saw the stop file (checked after every batch; within one batch is tested in
    # tests/unit/test_training.py) and ended the run long before its 200 epochs: nothing was killed.
    events = read_events(run_dir / "events.jsonl")[0]
    assert not any("by force" in str(e.get("reason", "")) for e in events), events[-1]
    assert len([e for e in events if e["type"] == "epoch_end"]) < 200
    assert (run_dir / "model.keras").exists()  # The best weights so far were kept.


def test_killed_worker_shows_as_interrupted_and_the_next_run_starts(tiny_dataset, any_settings, tmp_path):
    settings = any_settings
    run_dir = start_run(_config(tiny_dataset, epochs=200), runs_dir=tmp_path / "runs", settings=settings)
    assert wait_for(lambda: load_run(run_dir).status == "running", 120)
    _kill_worker(run_dir, settings)
    assert wait_for(lambda: load_run(run_dir).status == "interrupted", 10)
    assert "worker process ended" in load_run(run_dir).reason
    # The slot was released by the kernel: the next run is not stuck in the queue.
    following = start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "runs", settings=settings)
    assert follow(following, timeout=patience(180)) == "finished"


def test_stop_while_queued(tiny_dataset, settings, tmp_path):
    first = start_run(_config(tiny_dataset, epochs=200), runs_dir=tmp_path / "runs", settings=settings)
    second = start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "runs", settings=settings)
    assert wait_for(lambda: any(e["type"] == "queued" for e in read_events(second / "events.jsonl")[0]), 60)
    request_stop(second)
    assert follow(second, timeout=patience(30)) == "stopped"
    assert stop_and_wait(first, timeout=patience(60)) == "stopped"


def test_run_started_after_another_waits_for_it_to_end(tiny_dataset, tmp_path):
    settings = Settings(home=tmp_path / "home", max_concurrent_runs=2)  # Slots would allow both at once.
    first = start_run(_config(tiny_dataset, epochs=3), runs_dir=tmp_path / "runs", settings=settings)
    second = start_run(_config(tiny_dataset, epochs=1), runs_dir=tmp_path / "runs", settings=settings,
                       after=first)
    assert follow(second, timeout=patience(240)) == "finished"
    first_events = read_events(first / "events.jsonl")[0]
    second_events = read_events(second / "events.jsonl")[0]
    assert any("waiting for the" in e.get("message", "") for e in second_events)
    first_end = next(e["time"] for e in first_events if e["type"] == "finished")
    second_start = next(e["time"] for e in second_events if e["type"] == "run_started")
    assert second_start >= first_end
