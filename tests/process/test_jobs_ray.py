"""What only the Ray executor does: cancel a task Ray has not started, stay optional.

The common behaviour (a run finishes, Stop, a killed worker, the queue view) is tested on
both executors in test_jobs.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.models import TINY_MODEL_DEFAULT_DROPOUT as TINY_MODEL
from helpers.ray_cluster import ray_address  # noqa: F401 - a fixture
from helpers.runs import patience, wait_for

from transfer_core.config import RunConfig, Settings, TrainConfig
from transfer_core.jobs import follow, queue_position, request_stop, start_run, stop_and_wait
from transfer_core.runs import load_run, read_events

REPO_ROOT = Path(__file__).resolve().parents[2]


def _config(spec, epochs: int) -> RunConfig:
    return RunConfig(dataset=spec, model=TINY_MODEL, train=TrainConfig(epochs=epochs, batch_size=8))


@pytest.mark.slow
def test_stop_cancels_a_run_that_ray_has_not_started(tiny_dataset, ray_address, tmp_path):  # noqa: F811
    # Each run reserves both CPUs of the test head: the second waits in Ray's own queue, where
    # no worker code runs to see the stop file, so the stop ends in ray.cancel.
    settings = Settings(home=tmp_path / "home", executor="ray", ray_address=ray_address, ray_num_cpus=2)
    first = start_run(_config(tiny_dataset, 200), runs_dir=tmp_path / "runs", settings=settings)
    assert wait_for(lambda: load_run(first).status == "running", 120)
    second = start_run(_config(tiny_dataset, 1), runs_dir=tmp_path / "runs", settings=settings)
    assert load_run(second).status == "queued" and queue_position(second, settings) == 0
    assert stop_and_wait(second, timeout=patience(30)) == "stopped"
    assert "before its first epoch ended" in load_run(second).reason
    assert not any(e["type"] == "starting" for e in read_events(second / "events.jsonl")[0])
    assert queue_position(second, settings) is None
    request_stop(first)
    assert stop_and_wait(first, timeout=patience(60)) == "stopped"


@pytest.mark.slow
def test_a_ray_worker_stays_warm_between_runs_and_retires_after_max_runs(tiny_dataset, ray_address,  # noqa: F811
                                                                         tmp_path):
    settings = Settings(home=tmp_path / "home", executor="ray", ray_address=ray_address, ray_num_cpus=2,
                        worker_max_runs=2)
    runs = [start_run(_config(tiny_dataset, 1), runs_dir=tmp_path / f"runs{i}", settings=settings)
            for i in range(3)]
    for run_dir in runs:
        assert follow(run_dir, timeout=patience(240)) == "finished", load_run(run_dir).reason
    pids = [json.loads((run_dir / "ray_task.json").read_text())["pid"] for run_dir in runs]
    # One Ray worker process trained the first two (TensorFlow imported once); the third got a new one.
    assert pids[0] == pids[1] != pids[2]


def test_ray_is_never_imported_on_the_default_path(tmp_path):
    script = (
        "import sys\n"
        "from transfer_core import jobs\n"
        "from transfer_core.config import Settings\n"
        "settings = Settings.from_env()\n"
        "assert settings.executor == 'local'\n"
        "jobs.queue_position(sys.argv[1], settings)\n"
        "jobs.enforce_stop(sys.argv[1])\n"
        "print('ray' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TRANSFER_HOME": str(tmp_path / "home")}
    completed = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                               env=env, timeout=120, check=True)
    assert completed.stdout.strip() == "False"


def test_the_executor_setting_is_validated_and_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRANSFER_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.setenv("TRANSFER_RAY_NUM_GPUS", "0.5")
    settings = Settings.from_env()
    assert (settings.executor, settings.ray_address, settings.ray_num_cpus, settings.ray_num_gpus) == (
        "ray", "10.0.0.5:6379", 1.0, 0.5)
    with pytest.raises(ValueError, match="executor must be one of"):
        dataclasses.replace(settings, executor="slurm")
    with pytest.raises(ValueError, match="ray_num_cpus"):
        dataclasses.replace(settings, ray_num_cpus=-1)


def _in_a_new_driver(script: str, config: RunConfig, settings: Settings, runs_dir: Path, timeout: float,
                     env: dict[str, str] | None = None) -> dict:
    """Run ``script`` in a fresh process, which joins the cluster itself as the app server does
    (this test process is the head's own driver); returns the JSON of its last line."""
    # The script's own waits get the patience this machine needs now (its 4th argument, in seconds).
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(config.to_dict()), json.dumps(settings.to_dict()), str(runs_dir),
         str(patience(timeout * 0.75))],
        capture_output=True, text=True, timeout=patience(timeout), cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


STARTS_AT_ONCE = r"""
import json, sys, threading
from pathlib import Path
from transfer_core.config import RunConfig, Settings
from transfer_core.jobs import follow, start_run

config, settings = (RunConfig.from_dict(json.loads(sys.argv[1])), Settings.from_dict(json.loads(sys.argv[2])))
runs, errors = [None] * 4, []
barrier = threading.Barrier(4)

def start(i):
    barrier.wait()  # The first Start joins the cluster; the others arrive while it does.
    try:
        runs[i] = start_run(config, runs_dir=Path(sys.argv[3]) / f"session-{i}", settings=settings)
    except Exception as error:
        errors.append(f"{type(error).__name__}: {error}")

threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
# This process owns the tasks (Ray ends an owner's tasks with it): wait for them before leaving.
print(json.dumps({"errors": errors, "status": [follow(r, timeout=float(sys.argv[4])) for r in runs if r is not None]}))
"""


@pytest.mark.slow
def test_four_sessions_starting_at_once_all_get_their_run(tiny_dataset, ray_address, tmp_path):  # noqa: F811
    # The app server is one Ray driver for every browser session, each in its own script thread.
    # Four Starts at the same moment once made three sessions fail with "ray.init twice".
    settings = Settings(home=tmp_path / "home", executor="ray", ray_address=ray_address, ray_num_cpus=1)
    result = _in_a_new_driver(STARTS_AT_ONCE, _config(tiny_dataset, 1), settings, tmp_path / "runs", 400)
    assert result == {"errors": [], "status": ["finished"] * 4}


NO_CLUSTER = r"""
import json, sys
from pathlib import Path
from transfer_core.config import RunConfig, Settings
from transfer_core.jobs import StartFailed, start_run
from transfer_core.runs import RunStore

config, settings = (RunConfig.from_dict(json.loads(sys.argv[1])), Settings.from_dict(json.loads(sys.argv[2])))
try:
    start_run(config, runs_dir=Path(sys.argv[3]), settings=settings)
    print(json.dumps({"started": True}))
except StartFailed as error:
    (run,) = RunStore(Path(sys.argv[3])).list_runs()
    print(json.dumps({"error": str(error), "status": run.status, "reason": run.reason}))
"""


def test_a_run_the_executor_cannot_start_ends_failed_with_the_reason(tiny_dataset, tmp_path):
    # Nothing listens at this address: the Start fails within seconds (ray.init alone would wait
    # for ever) and the run it created ends as failed with the reason, instead of waiting for ever.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(home=tmp_path / "home", executor="ray", ray_address=f"127.0.0.1:{port}")
    result = _in_a_new_driver(NO_CLUSTER, _config(tiny_dataset, 1), settings, tmp_path / "runs", 120)
    assert f"no Ray cluster answers at RAY_ADDRESS=127.0.0.1:{port}" in result["error"]
    assert result["status"] == "failed"
    assert "could not start it" in result["reason"] and "no Ray cluster answers" in result["reason"]


@pytest.mark.slow
def test_a_server_without_the_clusters_token_is_told_so(tiny_dataset, ray_address, tmp_path):  # noqa: F811
    # The test head uses Ray's token authentication (on by default for local clusters since Ray 2.59);
    # a server started without it cannot join, and Ray itself only says "Failed to connect".
    settings = Settings(home=tmp_path / "home", executor="ray", ray_address=ray_address)
    result = _in_a_new_driver(NO_CLUSTER, _config(tiny_dataset, 1), settings, tmp_path / "runs", 180,
                              env={"RAY_AUTH_MODE": "disabled"})
    if result.get("started"):
        pytest.skip("this Ray version's local cluster does not use token authentication")
    assert "uses token authentication and this process has no valid token" in result["error"]
    assert result["status"] == "failed"
