"""Run training outside the caller: one worker process per run, a FIFO queue, stop.

Why a process per run (DESIGN decision 1): a Streamlit rerun can interrupt the
script thread at any moment, Keras' global state is process-wide, and a crash
in TensorFlow must not take the server down. The worker writes everything to
its run directory (see :mod:`transfer_core.runs`); callers only read files.

Concurrency: at most ``Settings.max_concurrent_runs`` workers train at once.
A worker holds an exclusive ``flock`` on one slot file while it trains; the
kernel releases it when the process ends, however it ends. Waiting workers
register in ``<home>/queue`` and take slots in the order they arrived.

Stop: :func:`request_stop` creates a ``stop`` file the worker polls after
every batch; :func:`enforce_stop` kills a worker that has not stopped within a
grace period.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from transfer_core.config import RunConfig, Settings
from transfer_core.runs import (
    TERMINAL_EVENTS,
    EventLog,
    RunStore,
    atomic_write_json,
    atomic_write_text,
    load_run,
    read_events,
    read_pid,
    worker_alive,
    write_pid,
)

_REPO_ROOT = Path(__file__).resolve().parent.parent
_POLL_SECONDS = 0.2


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a worker process."""
    env = {
        "TRANSFER_HOME": str(Path(settings.home).resolve()),
        "TRANSFER_MAX_CONCURRENT_RUNS": str(settings.max_concurrent_runs),
        "TRANSFER_MAX_UPLOAD_MB": str(settings.max_upload_mb),
        "TRANSFER_MAX_FILES": str(settings.max_files),
        "TRANSFER_MAX_PIXELS": str(settings.max_pixels),
        "TRANSFER_MAX_SESSION_DISK_MB": str(settings.max_session_disk_mb),
        "TRANSFER_ALLOWED_DATA_DIRS": os.pathsep.join(str(Path(p).resolve()) for p in settings.allowed_data_dirs),
    }
    if settings.weights_dir is not None:
        env["TRANSFER_WEIGHTS_DIR"] = str(Path(settings.weights_dir).resolve())
    return env


def start_run(
    config: RunConfig, *, runs_dir: Path, settings: Settings | None = None, after: Path | None = None
) -> Path:
    """Create a run directory and start its worker process; returns at once.

    Args:
        config: The run to train.
        runs_dir: Folder of the run store this run belongs to.
        settings: Passed to the worker through environment variables.
        after: Another run's directory; this run waits until that one has ended
            before it queues for a slot (a comparison runs one after another,
            so its timings are not skewed by sharing the CPU).

    Returns:
        The new run's directory. Follow it with :func:`follow` or
        :func:`transfer_core.runs.load_run`.

    Raises:
        ValueError, WeightsUnavailableError: from :func:`transfer_core.training.preflight`.
    """
    from transfer_core.training import preflight

    settings = settings or Settings.from_env()
    preflight(config, settings)  # A bad setting is reported before any work starts.
    run_dir = RunStore(runs_dir).create(config)
    if after is not None:
        atomic_write_text(run_dir / "after", str(Path(after).resolve()))
    env = {**os.environ, **settings_env(settings)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(run_dir / "worker.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "transfer_core", "worker", str(run_dir.resolve())],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(_REPO_ROOT),
            start_new_session=True,  # Its own process group, so a kill takes its children too.
        )
    write_pid(run_dir, process.pid)
    if after is None:
        # Take the run's place in the queue now, so runs queue in the order they were started even
        # when a later run's worker process happens to start faster (a busy CPU).
        _register_in_queue(settings, run_dir, process.pid)
    # Reap the child when it exits so it never lingers as a zombie in a long-lived server.
    threading.Thread(target=process.wait, daemon=True).start()
    return run_dir


def request_stop(run_dir: Path) -> None:
    """Ask the worker of ``run_dir`` to stop after its current batch."""
    stop_file = Path(run_dir) / "stop"
    if not stop_file.exists():
        atomic_write_text(stop_file, f"{time.time()}\n")


def enforce_stop(run_dir: Path, grace_seconds: float = 10.0, early_grace_seconds: float = 1.0) -> bool:
    """Kill a worker that was asked to stop and has not stopped in time.

    Once an epoch has ended the worker gets ``grace_seconds`` to finish its batch
    and save the best weights; before that there is nothing to keep, so
    ``early_grace_seconds`` (the worker may be inside a long first step: loading
    weights, tracing) is enough.

    Returns:
        True if a worker was killed.
    """
    run_dir = Path(run_dir)
    stop_file = run_dir / "stop"
    if not stop_file.exists():
        return False
    waited = time.time() - stop_file.stat().st_mtime
    if waited < early_grace_seconds:
        return False
    info = load_run(run_dir)
    if not info.is_active:
        return False
    events, _ = read_events(run_dir / "events.jsonl")
    has_epoch = any(e.get("type") == "epoch_end" for e in events)
    if has_epoch and waited < grace_seconds:
        return False
    pid_info = read_pid(run_dir)
    if pid_info is None:
        return False
    try:
        os.killpg(pid_info[0], signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    reason = (
        f"stopped by force after {waited:.0f} s: the worker was busy "
        + ("and did not stop in time, so no model was kept" if has_epoch else "before its first epoch ended")
    )
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "stopped", "reason": reason})
    atomic_write_json(run_dir / "report.json", {"status": "stopped", "reason": reason})
    return True


def stop_and_wait(run_dir: Path, timeout: float = 30.0, grace_seconds: float = 10.0) -> str:
    """Request a stop and wait until the run is no longer active; returns its status."""
    request_stop(run_dir)
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = load_run(run_dir)
        if not info.is_active:
            return info.status
        enforce_stop(run_dir, grace_seconds)
        time.sleep(_POLL_SECONDS)
    return load_run(run_dir).status


# ----- queue and slots (worker side) ------------------------------------------------


def _queue_dir(settings: Settings) -> Path:
    return Path(settings.home) / "queue"


def _live_queue(settings: Settings) -> list[Path]:
    """Queue entries of live workers, oldest first; entries of dead workers are removed."""
    from transfer_core.runs import _process_alive

    queue = _queue_dir(settings)
    if not queue.exists():
        return []
    live = []
    for entry in sorted(queue.iterdir()):
        try:
            data = json.loads(entry.read_text())
            alive = _process_alive(int(data["pid"]), data.get("start_time"))
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            alive = False
        if alive:
            live.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return live


def queue_position(run_dir: Path, settings: Settings | None = None) -> int | None:
    """0-based place of a queued run in the server-wide queue, or None if not queued."""
    settings = settings or Settings.from_env()
    name = Path(run_dir).name
    for position, entry in enumerate(_live_queue(settings)):
        if entry.name.endswith(name):
            return position
    return None


def _register_in_queue(settings: Settings, run_dir: Path, pid: int) -> Path:
    """Write (or rewrite) the run's queue entry; its name sorts by the run's creation time.

    ``start_run`` writes it for the new worker and the worker writes the same entry again, so the
    queue order is the order runs were started (``config.json`` is written before the worker exists),
    not the order worker processes happened to reach the queue.
    """
    from transfer_core.runs import process_start_time

    run_dir = Path(run_dir).resolve()
    queue = _queue_dir(settings)
    queue.mkdir(parents=True, exist_ok=True)
    try:
        created = (run_dir / "config.json").stat().st_mtime
    except OSError:
        created = time.time()
    entry = queue / f"{created:017.6f}-{run_dir.name}"
    atomic_write_json(entry, {"pid": pid, "start_time": process_start_time(pid), "run_dir": str(run_dir)})
    return entry


def _acquire_slot(settings: Settings, run_dir: Path, log: EventLog, should_stop) -> Any | None:
    """Wait in FIFO order for a free slot; returns the locked slot file, or None if stopped."""
    slots = Path(settings.home) / "slots"
    slots.mkdir(parents=True, exist_ok=True)
    entry = _register_in_queue(settings, run_dir, os.getpid())
    announced = None
    try:
        while True:
            if should_stop():
                return None
            live = _live_queue(settings)
            position = next((i for i, e in enumerate(live) if e.name == entry.name), 0)
            if position < settings.max_concurrent_runs:
                for index in range(settings.max_concurrent_runs):
                    handle = open(slots / f"slot-{index}.lock", "a+")  # noqa: SIM115 - held for the run.
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        return handle
                    except BlockingIOError:
                        handle.close()
            if position != announced:
                log.write({"type": "queued", "position": position,
                           "message": f"waiting for a free training slot ({position} run(s) ahead)"})
                announced = position
            time.sleep(0.25)
    finally:
        entry.unlink(missing_ok=True)


def _wait_for_predecessor(run_dir: Path, log: EventLog, should_stop) -> bool:
    """Wait until the run named in ``run_dir/after`` has ended; False if stopped meanwhile."""
    after_file = run_dir / "after"
    if not after_file.exists():
        return True
    predecessor = Path(after_file.read_text().strip())
    announced = False
    while True:
        if should_stop():
            return False
        try:
            info = load_run(predecessor)
        except FileNotFoundError:
            return True  # Deleted: nothing to wait for.
        if not info.is_active:
            return True
        if not announced:
            log.write({"type": "queued", "position": None,
                       "message": f"waiting for the {info.strategy} run to finish first"})
            announced = True
        time.sleep(0.25)


def worker_main(run_dir: Path) -> int:
    """Entry point of a worker process: wait for a slot, train, write artefacts."""
    run_dir = Path(run_dir).resolve()
    write_pid(run_dir)
    settings = Settings.from_env()
    stop_file = run_dir / "stop"

    def should_stop() -> bool:
        return stop_file.exists()

    with EventLog(run_dir / "events.jsonl") as log:
        try:
            config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        except (OSError, ValueError, TypeError) as error:
            _finish(run_dir, log, "failed", f"config.json is unreadable: {error}", {})
            return 1
        if not _wait_for_predecessor(run_dir, log, should_stop):
            _finish(run_dir, log, "stopped", "stopped while waiting for the previous run", {})
            return 0
        slot = _acquire_slot(settings, run_dir, log, should_stop)
        if slot is None:
            _finish(run_dir, log, "stopped", "stopped while waiting in the queue", {})
            return 0
        log.write({"type": "starting", "message": "got a training slot; loading TensorFlow and the model"})
        try:
            from transfer_core.training import train

            result = train(config, emit=log, should_stop=should_stop, settings=settings)
            if result.classifier is not None:
                save_model(result.classifier.model, run_dir / "model.keras")
            result.history.to_csv(run_dir / ".metrics.csv.tmp", index=False)
            os.replace(run_dir / ".metrics.csv.tmp", run_dir / "metrics.csv")
            _finish(run_dir, log, result.status, result.reason, result.report)
        except Exception as error:  # noqa: BLE001 - the run must end with a readable reason.
            _finish(run_dir, log, "failed", f"{type(error).__name__}: {error}", {})
            return 1
        finally:
            slot.close()
    return 0


def save_model(model, path: Path) -> None:
    """Save a Keras model atomically (``.keras`` files are zips; half a zip is useless)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # A disk that filled up mid-save leaves no half file behind.
        raise


def _finish(run_dir: Path, log: EventLog, status: str, reason: str, report: dict[str, Any]) -> None:
    """Write the report, then the terminal event (a report is what makes a run count as finished).

    When the report cannot be written (a full disk), the run ends as ``failed`` with that reason: a
    terminal event without a report never shows as finished (see :func:`transfer_core.runs.load_run`).
    """
    report = {**report, "status": status, "reason": reason}
    try:
        atomic_write_json(run_dir / "report.json", report)
    except OSError as error:
        reason = (f"the run's results could not be written ({error.strerror or error}); "
                  "free some disk space and train again")
        with contextlib.suppress(OSError):
            log.write({"type": "failed", "reason": reason})
        return
    summary = {k: report.get(k) for k in ("val_accuracy", "best_val_accuracy", "seconds", "epochs")}
    log.write({"type": status, "reason": reason, **summary})


def follow(run_dir: Path, on_event=None, *, poll_seconds: float = _POLL_SECONDS,
           timeout: float | None = None) -> str:
    """Call ``on_event`` for each event of a run until it ends; returns its final status.

    Also notices a worker that died without a terminal event (status ``interrupted``).
    """
    run_dir = Path(run_dir)
    offset = 0
    started = time.time()
    while True:
        events, offset = read_events(run_dir / "events.jsonl", offset)
        for event in events:
            if on_event is not None:
                on_event(event)
        if any(e.get("type") in TERMINAL_EVENTS for e in events):
            return load_run(run_dir).status
        # A pid check, not load_run: that would re-read the whole event file on every poll.
        if not worker_alive(run_dir):
            # Drain what the worker wrote between the read and the status check.
            events, offset = read_events(run_dir / "events.jsonl", offset)
            for event in events:
                if on_event is not None:
                    on_event(event)
            return load_run(run_dir).status
        enforce_stop(run_dir)
        if timeout is not None and time.time() - started > timeout:
            return load_run(run_dir).status
        time.sleep(poll_seconds)
