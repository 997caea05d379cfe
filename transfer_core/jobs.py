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
import hashlib
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
from transfer_core.fileio import atomic_path, atomic_write_json, atomic_write_text
from transfer_core.processes import process_alive, process_start_time
from transfer_core.runs import (
    TERMINAL_EVENTS,
    EventLog,
    RunStore,
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
        "TRANSFER_STANDBY_WORKER": "1" if settings.standby_worker else "0",
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
    standby = _claim_standby(settings) if settings.standby_worker else None
    if standby is not None:
        pid = standby.pid
    else:
        pid = _spawn(["worker", str(run_dir.resolve())], _worker_env(settings), run_dir / "worker.log")
    write_pid(run_dir, pid)
    if after is None:
        # Take the run's place in the queue now, so runs queue in the order they were started even
        # when a later run's worker process happens to start faster (a busy CPU).
        _register_in_queue(settings, run_dir, pid)
    if standby is not None:
        standby.assign(run_dir)
    # No new standby now: importing TensorFlow would take CPU from this run. Its worker starts the
    # next standby when the run has ended.
    return run_dir


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings_env(settings)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if settings.standby_worker:
        env[_STANDBY_KEY_ENV] = _standby_key(settings)
        env.setdefault(_STANDBY_OWNER_ENV, str(os.getpid()))  # The server's pid, handed down.
    return env


def _spawn(arguments: list[str], env: dict[str, str], log_path: Path) -> int:
    """Start ``python -m transfer_core <arguments>`` in its own process group; returns its pid."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "transfer_core", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(_REPO_ROOT),
            start_new_session=True,  # Its own process group, so a kill takes its children too.
        )
    # Reap the child when it exits so it never lingers as a zombie in a long-lived server.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


# ----- the standby worker ---------------------------------------------------------------
#
# Importing TensorFlow takes ~3 s of every worker's start (more on a weak laptop), longer than a
# whole feature-extraction run on cached features. The app server therefore keeps one worker that
# has already imported it, waiting in ``<home>/standby``; the next run hands it its run directory.
# Each run still gets a fresh process (decision 1). The server starts the first standby; after
# that, each worker that came from the server starts the next one when its run has ended, so the
# import never takes CPU from a training run. A standby retires after STANDBY_IDLE_SECONDS or
# when the server that owns it is gone.
#
# Files, all named ``<key>-<pid>.<state>`` (key: the settings and environment a worker gets, so a
# standby only serves runs it would have been started for):
#   .warming  written by whoever spawned the standby (at most one warming or ready per key);
#   .ready    renamed from .warming by the standby once its imports are done;
#   .claimed  renamed from .ready by the server that takes it (rename is atomic: one taker);
#   .job      the run directory, written by that server; the standby reads it and trains.

STANDBY_IDLE_SECONDS = 900.0
_STANDBY_POLL_SECONDS = 0.05
_STANDBY_KEY_ENV = "TL_STANDBY_KEY"
_STANDBY_OWNER_ENV = "TL_STANDBY_OWNER_PID"
_STANDBY_PREBUILD_ENV = "TL_STANDBY_PREBUILD"  # JSON: the backbone to build while waiting


def _standby_dir(settings: Settings) -> Path:
    return Path(settings.home).resolve() / "standby"


def _standby_key(settings: Settings) -> str:
    inherited = {k: v for k, v in os.environ.items() if k.startswith(("TRANSFER_", "TF_", "KERAS_", "CUDA_"))}
    payload = json.dumps([sys.executable, str(_REPO_ROOT), sorted({**inherited, **settings_env(settings)}.items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class _Standby:
    """A standby worker this server has claimed."""

    def __init__(self, directory: Path, key: str, pid: int) -> None:
        self.directory, self.key, self.pid = directory, key, pid

    def assign(self, run_dir: Path) -> None:
        atomic_write_text(self.directory / f"{self.key}-{self.pid}.job", str(Path(run_dir).resolve()))


def _standby_entries(directory: Path, key: str, state: str) -> list[tuple[Path, int]]:
    """Files of live standbys in ``state``; files of dead ones are removed."""

    if not directory.exists():
        return []
    entries = []
    for path in sorted(directory.glob(f"{key}-*.{state}")):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])
            start_time = json.loads(path.read_text()).get("start_time")
        except (OSError, ValueError, IndexError, json.JSONDecodeError, AttributeError):
            continue  # Being renamed right now, or not ours.
        if process_alive(pid, start_time):
            entries.append((path, pid))
        else:
            path.unlink(missing_ok=True)
    return entries


def _start_standby_unless_one_exists(directory: Path, key: str, env: dict[str, str]) -> None:

    if _standby_entries(directory, key, "warming") or _standby_entries(directory, key, "ready"):
        return
    directory.mkdir(parents=True, exist_ok=True)
    pid = _spawn(["standby", str(directory), key], env, directory / f"{key}.log")
    atomic_write_json(directory / f"{key}-{pid}.warming", {"start_time": process_start_time(pid)})


def ensure_standby(settings: Settings) -> None:
    """Start a standby worker for ``settings`` unless one is already warming or ready (the app
    calls this once when it starts, so even its first run finds TensorFlow loaded)."""
    _start_standby_unless_one_exists(_standby_dir(settings), _standby_key(settings), _worker_env(settings))


def _start_successor_standby(settings: Settings, run_dir: Path) -> None:
    """Called by a worker whose run has ended: the next standby, if the server still lives."""

    key, owner = os.environ.get(_STANDBY_KEY_ENV), os.environ.get(_STANDBY_OWNER_ENV, "")
    if not key or not owner.isdigit() or not process_alive(int(owner), None):
        return
    env = {k: v for k, v in os.environ.items() if k != _STANDBY_PREBUILD_ENV}
    prebuild = _prebuild_hint(run_dir)
    if prebuild:
        env[_STANDBY_PREBUILD_ENV] = prebuild
    with contextlib.suppress(OSError):  # A standby is an optimisation; never fail a run over it.
        _start_standby_unless_one_exists(_standby_dir(settings), key, env)


def _prebuild_hint(run_dir: Path) -> str | None:
    """The backbone the next standby should build while it waits: after a feature-extraction
    run, the likely next run is another head on the same backbone (it reuses a built one)."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
        model, train = config["model"], config["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (train.get("strategy") != "feature_extraction" or model.get("weights") != "imagenet"
            or train.get("distribution", "none") != "none"):
        return None
    return json.dumps({"backbone": model.get("backbone"), "input_size": model.get("input_size", 0),
                       "precision": train.get("precision", "float32")})


def _prebuild_backbone(hint: str) -> None:
    from transfer_core.config import ModelSpec
    from transfer_core.models import prebuild_backbone
    from transfer_core.training import reset_keras_state

    try:
        wanted = json.loads(hint)
        reset_keras_state(0, wanted["precision"])  # Under the dtype policy the run will use.
        prebuild_backbone(ModelSpec(backbone=wanted["backbone"], input_size=wanted["input_size"]),
                          Settings.from_env())
    except Exception:  # noqa: BLE001 - a wrong guess or a missing file: the run builds its own.
        return


def _claim_standby(settings: Settings) -> _Standby | None:
    directory, key = _standby_dir(settings), _standby_key(settings)
    for path, pid in _standby_entries(directory, key, "ready"):
        try:
            os.rename(path, path.with_suffix(".claimed"))
        except FileNotFoundError:
            continue  # Another server took it, or it retired.
        return _Standby(directory, key, pid)
    return None


def shutdown_standby(settings: Settings) -> None:
    """End idle standby workers of ``settings`` (tests, a server shutting down)."""
    directory, key = _standby_dir(settings), _standby_key(settings)
    for state in ("warming", "ready"):
        for path, pid in _standby_entries(directory, key, state):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            path.unlink(missing_ok=True)


def standby_main(directory: Path, key: str, idle_seconds: float = STANDBY_IDLE_SECONDS) -> int:
    """Entry point of a standby worker: import TensorFlow, wait for a run, then be its worker."""
    import keras  # noqa: F401 - the imports are the point: they take seconds.
    import tensorflow as tf

    import transfer_core.models  # noqa: F401
    import transfer_core.training  # noqa: F401

    tf.constant(1.0) + 1.0  # Starts TensorFlow's runtime (thread pools, kernels) too.

    directory = Path(directory)
    name = f"{key}-{os.getpid()}"
    warming, ready, claimed, job = (directory / f"{name}.{s}" for s in ("warming", "ready", "claimed", "job"))
    owner = int(os.environ.get(_STANDBY_OWNER_ENV, os.getppid()))
    deadline = time.time() + 10  # The server writes .warming right after starting us.
    while True:
        try:
            os.rename(warming, ready)
            break
        except FileNotFoundError:
            if time.time() > deadline:
                return 0
            time.sleep(_STANDBY_POLL_SECONDS)
    if os.environ.get(_STANDBY_PREBUILD_ENV):
        _prebuild_backbone(os.environ[_STANDBY_PREBUILD_ENV])
    idle_until = time.time() + idle_seconds
    claimed_at = None
    while not job.exists():
        if claimed_at is None and claimed.exists():
            claimed_at = time.time()
        if claimed_at is not None and time.time() - claimed_at > 30:
            claimed.unlink(missing_ok=True)  # The server that claimed us died before handing over a run.
            return 0
        if claimed_at is None and (time.time() > idle_until or not process_alive(owner, None)):
            try:
                os.unlink(ready)  # Retire, unless a server claims us at this very moment.
                return 0
            except FileNotFoundError:
                pass
        time.sleep(_STANDBY_POLL_SECONDS)
    run_dir = Path(job.read_text().strip())
    job.unlink(missing_ok=True)
    claimed.unlink(missing_ok=True)
    # From here on this process is the run's worker, logging where any worker logs.
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(run_dir / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    return worker_main(run_dir)


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

    queue = _queue_dir(settings)
    if not queue.exists():
        return []
    live = []
    for entry in sorted(queue.iterdir()):
        try:
            data = json.loads(entry.read_text())
            alive = process_alive(int(data["pid"]), data.get("start_time"))
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
    settings = Settings.from_env()
    try:
        return _work(Path(run_dir).resolve(), settings)
    finally:
        if settings.standby_worker:
            _start_successor_standby(settings, Path(run_dir))


def _work(run_dir: Path, settings: Settings) -> int:
    write_pid(run_dir)
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
    """Save a Keras model atomically (``.keras`` files are zips; half a zip is useless).

    A disk that fills up mid-save leaves no half file behind.
    """
    with atomic_path(path, keep_suffix=True) as tmp:
        model.save(tmp)


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
