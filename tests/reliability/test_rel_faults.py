"""Issue 6, faults: a killed worker, a server restart mid-run, a disk that fills up while a run writes its
results, and a loss that becomes NaN, each checked at the core (real worker processes) and on the Train
page (AppTest). The fast tests use hand-written run directories; the slow ones start real workers.

Already covered elsewhere and referenced from RELIABILITY.md:
tests/process/test_jobs.py::test_killed_worker_shows_as_interrupted_and_the_next_run_starts,
tests/unit/test_runs.py::test_failed_atomic_write_leaves_the_old_file,
tests/unit/test_runs.py::test_finished_event_without_report_is_not_shown_as_finished,
tests/unit/test_training.py::test_nan_loss_fails_with_a_reason_and_a_fix.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.datasets import tiny_dataset_in
from helpers.models import TINY_MODEL
from helpers.patience import patience
from helpers.runs import wait_for

from transfer_core.config import FreezePlan, RunConfig, Settings, TrainConfig
from transfer_core.fileio import atomic_write_json
from transfer_core.runs import EventLog, RunStore, load_run, read_pid, write_pid

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")


def _config(spec, **train) -> RunConfig:
    return RunConfig(
        dataset=spec,
        model=TINY_MODEL,
        freeze=FreezePlan(mode="top_blocks", top_blocks=1),
        train=TrainConfig(**{"epochs": 1, "batch_size": 8, **train}),
    )


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _file_hashes(run_dir: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir()) if p.is_file()
    }


def click_start(at) -> None:
    keys = {button.key for button in at.button}
    key = "train_start" if "train_start" in keys else "FormSubmitter:train_form-Start training"
    at.button(key=key).click().run()


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """The tiny data set at 10 images per class, the size these tests were written with."""
    return tiny_dataset_in(tmp_path_factory, images_per_class=10)


@pytest.fixture
def page(tmp_path, monkeypatch, tiny_dataset):
    """The Train page of a fresh "server" (TRANSFER_HOME under tmp), with a workspace holding a demo set."""
    from streamlit.testing.v1 import AppTest

    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions.workspace import Workspace
    from ui import state

    monkeypatch.setenv("TRANSFER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    monkeypatch.setenv("TRANSFER_MAX_CONCURRENT_RUNS", "1")
    state.settings.cache_clear()
    workspace = Workspace.open(state.settings())
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=10, image_size=32)

    def open_page(run_id: str | None = None):
        """A new AppTest session on the Train page, reopening ``?ws=`` like a reload after a restart."""
        at = AppTest.from_file(APP, default_timeout=patience(60))
        at.query_params["ws"] = workspace.workspace_id
        if run_id:
            at.query_params["run"] = run_id
        at.session_state["dataset_root"] = spec.root
        at.session_state["model_spec"] = TINY_MODEL
        at.session_state["freeze_plan"] = FreezePlan(mode="top_blocks", top_blocks=1)
        at.run()
        at.switch_page("pages/train.py").run()
        assert not at.exception, at.exception
        return at

    yield workspace, spec, open_page
    state.settings.cache_clear()


def _runs_table(at):
    return next(f.value for f in at.dataframe if "strategy" in f.value.columns)


# ---------------------------------------------------------------------------------------------
# Fast: run directories written by hand.


def test_a_reused_pid_is_not_mistaken_for_a_live_worker(tmp_path, tiny_dataset) -> None:
    """After a reboot another process can get the worker's pid; its start time tells them apart."""
    run_dir = RunStore(tmp_path / "runs").create(_config(tiny_dataset))
    atomic_write_json(run_dir / "worker.pid", {"pid": os.getpid(), "start_time": 12345.0})
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "run_started"})
    assert load_run(run_dir).status == "interrupted"


@pytest.mark.parametrize("damage", ["half_report", "half_event_line", "unreadable_config"])
def test_damaged_run_files_never_show_as_finished_and_are_never_hidden(
    tmp_path, tiny_dataset, damage
) -> None:
    store = RunStore(tmp_path / "runs")
    run_dir = store.create(_config(tiny_dataset))
    write_pid(run_dir, _dead_pid())
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "run_started"})
        if damage != "half_event_line":
            log.write({"type": "finished", "reason": ""})
    if damage == "half_report":
        (run_dir / "report.json").write_text('{"status": "finished", "val_acc')  # A non-atomic writer died.
    elif damage == "half_event_line":
        atomic_write_json(run_dir / "report.json", {"status": "finished"})
        with open(run_dir / "events.jsonl", "a") as handle:
            handle.write('{"type": "fini')  # Power lost mid-append.
    else:
        (run_dir / "config.json").write_text("{not json")
    infos = store.list_runs()
    assert [info.run_id for info in infos] == [run_dir.name]
    assert infos[0].status in {"interrupted", "failed"}
    assert infos[0].reason


def test_report_write_failing_ends_the_run_as_failed_with_the_reason(
    tmp_path, tiny_dataset, monkeypatch
) -> None:
    from transfer_core.jobs import runner

    run_dir = RunStore(tmp_path / "runs").create(_config(tiny_dataset))
    write_pid(run_dir, _dead_pid())

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner, "atomic_write_json", full)
    with EventLog(run_dir / "events.jsonl") as log:
        runner.finish_run(run_dir, log, "finished", "", {"val_accuracy": 0.9})
    info = load_run(run_dir)
    assert info.status == "failed"
    assert "could not be written (No space left on device)" in info.reason
    assert not (run_dir / "report.json").exists()


def test_save_model_leaves_no_half_file_when_the_disk_fills_up(tmp_path) -> None:
    from transfer_core.jobs import save_model

    class HalfSavingModel:
        def save(self, path):
            Path(path).write_bytes(b"PK\x03\x04 half a zip")
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        save_model(HalfSavingModel(), tmp_path / "model.keras")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Slow: real worker processes.


@pytest.mark.slow
def test_killed_worker_page_shows_interrupted_and_the_next_run_starts(page) -> None:
    workspace, _, open_page = page
    at = open_page()
    at.radio(key="train_strategy").set_value("from_scratch")
    at.number_input(key="train_epochs").set_value(200)
    at.selectbox(key="train_batch_size").set_value(8)
    click_start(at)
    assert not at.exception, at.exception
    run_id = at.session_state["run_id"]
    run_dir = workspace.runs_dir / run_id
    assert wait_for(lambda: any(e.get("type") == "batch_end" for e in load_run(run_dir).events()), 120)
    pid, _ = read_pid(run_dir)
    os.killpg(pid, signal.SIGKILL)  # The kernel's OOM killer, a crash in TensorFlow, kill -9.
    assert wait_for(lambda: load_run(run_dir).status == "interrupted", 15)

    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any(e.startswith("The run was interrupted:") and "worker process ended" in e for e in errors), (
        errors
    )
    assert not at.get("progress")

    # The app keeps working and the next run starts (the slot was released with the dead process).
    at.radio(key="train_strategy").set_value("feature_extraction")
    at.number_input(key="train_epochs").set_value(1)
    click_start(at)
    assert not at.exception, at.exception
    following = at.session_state["run_id"]
    assert following != run_id
    assert wait_for(lambda: not load_run(workspace.runs_dir / following).is_active, 180)
    at.run()
    assert any(s.value == "Finished." for s in at.success), [e.value for e in at.error]
    statuses = dict(zip(_runs_table(at)["run"], _runs_table(at)["status"], strict=True))
    assert statuses == {run_id: "interrupted", following: "finished"}


@pytest.mark.slow
def test_server_restart_mid_run_keeps_finished_runs_and_marks_the_killed_one(page) -> None:
    """Two runs finish; a third is running when the machine restarts (server and worker die). A new
    server process (a fresh AppTest session, a fresh RunStore) lists the finished runs intact and the
    third as interrupted."""
    from transfer_core import jobs
    from transfer_core.explore.safe_load import load_keras_model

    workspace, spec, open_page = page
    settings = Settings.from_env()
    finished = []
    for strategy in ("feature_extraction", "fine_tuning"):
        run_dir = jobs.start_run(
            _config(spec, strategy=strategy), runs_dir=workspace.runs_dir, settings=settings
        )
        assert jobs.follow(run_dir, timeout=patience(240)) == "finished", load_run(run_dir).reason
        finished.append(run_dir)
        time.sleep(1.1)  # Run ids sort by their creation second.
    before = {run_dir.name: _file_hashes(run_dir) for run_dir in finished}
    running = jobs.start_run(
        _config(spec, strategy="from_scratch", epochs=200), runs_dir=workspace.runs_dir, settings=settings
    )
    assert wait_for(lambda: load_run(running).status == "running", 120)
    os.killpg(read_pid(running)[0], signal.SIGKILL)

    store = RunStore(workspace.runs_dir)  # The restarted server knows nothing but the files.
    assert wait_for(lambda: store.load(running.name).status == "interrupted", 15)
    infos = {info.run_id: info for info in store.list_runs()}
    assert {run_id: info.status for run_id, info in infos.items()} == {
        finished[0].name: "finished",
        finished[1].name: "finished",
        running.name: "interrupted",
    }
    for run_dir in finished:
        assert _file_hashes(run_dir) == before[run_dir.name]
        assert {"config.json", "events.jsonl", "metrics.csv", "model.keras", "report.json"} <= set(
            before[run_dir.name]
        )
        model = load_keras_model(run_dir / "model.keras")
        assert model.output_shape == (None, len(spec.class_names))

    at = open_page(run_id=running.name)  # A student reloads the page: ?ws= and ?run= bring everything back.
    assert any("interrupted" in e.value for e in at.error)
    statuses = dict(zip(_runs_table(at)["run"], _runs_table(at)["status"], strict=True))
    assert statuses == {
        finished[0].name: "finished",
        finished[1].name: "finished",
        running.name: "interrupted",
    }


@pytest.mark.slow
def test_a_run_survives_the_server_process_dying(tmp_path, tiny_dataset) -> None:
    """Only the server dies (a crash, a redeploy): the worker runs in its own session and finishes."""
    settings_home = tmp_path / "home"
    runs_dir = tmp_path / "runs"
    script = (
        "import sys, time\n"
        "from transfer_core import jobs\n"
        "from transfer_core.config import RunConfig, Settings\n"
        "from transfer_core.data import load_dataset\n"
        f"from test_rel_faults import _config\n"
        f"run_dir = jobs.start_run(_config(load_dataset({tiny_dataset.root!r}), strategy='from_scratch', epochs=3),"
        f" runs_dir={str(runs_dir)!r}, settings=Settings(home={str(settings_home)!r}))\n"
        "print(run_dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    # The child imports this module, which imports tests/helpers/runs.py.
    test_dirs = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *test_dirs])}
    server = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT
    )
    run_dir = Path(server.stdout.readline().strip())
    assert wait_for(lambda: load_run(run_dir).status == "running", 120)
    server.kill()
    server.wait()
    from transfer_core.jobs import follow

    assert follow(run_dir, timeout=patience(240)) == "finished", load_run(run_dir).reason


def _run_worker_with(run_dir: Path, patch: str) -> subprocess.CompletedProcess:
    """Run the real worker entry point in a new process after ``patch`` (Python source) has run."""
    script = f"import sys\n{patch}\nfrom transfer_core import jobs\nsys.exit(jobs.worker_main(sys.argv[1]))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-c", script, str(run_dir)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_disk_full_while_saving_the_model_fails_the_run_and_the_page_says_why(page) -> None:
    workspace, spec, open_page = page
    run_dir = RunStore(workspace.runs_dir).create(_config(spec))
    patch = (
        "import keras\n"
        "def full(self, path, *args, **kwargs):\n"
        "    open(path, 'wb').write(b'PK\\x03\\x04 half a model')\n"
        "    raise OSError(28, 'No space left on device')\n"
        "keras.Model.save = full\n"
    )
    completed = _run_worker_with(run_dir, patch)
    assert completed.returncode == 1, completed.stderr[-2000:]
    info = load_run(run_dir)
    assert info.status == "failed"
    assert "No space left on device" in info.reason
    assert info.report.status == "failed"
    assert not (run_dir / "model.keras").exists() and not list(run_dir.glob(".*tmp*"))

    at = open_page(run_id=run_dir.name)
    assert any(
        e.value.startswith("The run failed:") and "No space left on device" in e.value for e in at.error
    )
    explore_runs = [i for i in RunStore(workspace.runs_dir).list_runs() if i.status == "finished"]
    assert explore_runs == []  # Compare, Explore and Export only read finished runs.


@pytest.mark.slow
def test_disk_full_while_writing_the_report_never_shows_finished(page) -> None:
    workspace, spec, open_page = page
    run_dir = RunStore(workspace.runs_dir).create(_config(spec))
    patch = (
        "import transfer_core.jobs.runner as jobs_module\n"
        "real = jobs_module.atomic_write_json\n"
        "def full(path, data):\n"
        "    if str(path).endswith('report.json'):\n"
        "        raise OSError(28, 'No space left on device')\n"
        "    return real(path, data)\n"
        "jobs_module.atomic_write_json = full\n"
    )
    completed = _run_worker_with(run_dir, patch)
    assert completed.returncode == 0, completed.stderr[-2000:]
    info = load_run(run_dir)
    assert info.status == "failed" and "No space left on device" in info.reason
    at = open_page(run_id=run_dir.name)
    assert any("No space left on device" in e.value for e in at.error)
    assert not any(s.value == "Finished." for s in at.success)


@pytest.mark.slow
def test_nan_loss_stops_the_run_and_the_page_suggests_a_fix(page) -> None:
    from transfer_core import jobs

    workspace, spec, open_page = page
    config = _config(spec, strategy="from_scratch", epochs=3, learning_rate=10.0, optimizer="adam")
    run_dir = jobs.start_run(config, runs_dir=workspace.runs_dir, settings=Settings.from_env())
    assert jobs.follow(run_dir, timeout=patience(240)) == "failed"
    info = load_run(run_dir)
    assert "NaN" in info.reason and "learning rate" in info.reason
    at = open_page(run_id=run_dir.name)
    errors = [e.value for e in at.error]
    assert any(e.startswith("The run failed:") and "NaN" in e and "learning rate" in e for e in errors), (
        errors
    )
