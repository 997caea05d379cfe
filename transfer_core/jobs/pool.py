"""Warm workers on this machine, the server's side: who takes queued runs, and enough of them.

Importing TensorFlow, building and tracing cost more than a small run's arithmetic (decision 11),
so a worker process trains queued runs one after another (its loop: :mod:`.standby_worker`),
resets Keras between them, and retires after ``Settings.worker_max_runs`` runs or above
``Settings.worker_max_memory_mb``. A queued run has no process of its own:

- its ``worker.pid`` names its *owner* (``"holder": "owner"``), the process that started it (the
  app server, the command line), and so does its queue entry: the run lives while its owner
  does, and a Stop never kills an owner;
- a warm worker takes the oldest queued run by creating ``<run>/claim`` exclusively, then writes
  its own pid into ``worker.pid`` (from then on a kill -9 of that worker interrupts that run only);
  a Stop of a queued run creates the same file first and so cancels it (:func:`cancel_queued`);
- the owner runs a *keeper* thread: it starts workers while fewer live than
  ``min(slots, runs training + runs waiting)``, so a worker that retired or crashed is replaced and
  a queued run is never left without one; it puts a chained run (``after=``) in the queue once its
  predecessor has ended; with ``Settings.standby_worker`` (the app) it also keeps one idle worker
  ready, so even the first run finds TensorFlow loaded.

At most ``max_concurrent_runs`` workers import TensorFlow for one owner, plus one replacement that
starts while a worker trains its last run. Worker files: ``<home>/workers/<key>-<pid>.json``,
``{"start_time", "state"}`` with state ``warming`` (importing), ``idle``, ``busy`` or ``retiring``
(its last run); ``key`` is the settings and environment it was started with (:func:`standby_key`):
a worker only takes runs started with the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_json
from transfer_core.jobs.queue import live_queue, register_in_queue
from transfer_core.jobs.runner import finish_run
from transfer_core.jobs.spawn import spawn, standby_key, worker_env
from transfer_core.processes import process_alive, process_start_time
from transfer_core.runs import EventLog, RunStatus, load_run, write_pid

STANDBY_IDLE_SECONDS = 900.0  # An idle worker of the app (the standby) retires after this.
WORKER_LINGER_SECONDS = 10.0  # Other idle workers: long enough for the next run of a burst or a chain.
STANDBY_PREBUILD_ENV = "TL_STANDBY_PREBUILD"  # JSON: the backbone a new worker builds while it waits
KEEPER_POLL_SECONDS = 0.25
STANDBY_CHECK_SECONDS = 2.0
CLAIM_FILE = "claim"


@dataclass(frozen=True)
class WorkerEntry:
    path: Path
    pid: int
    state: str


def workers_dir(settings: Settings) -> Path:
    return Path(settings.home).resolve() / "workers"


def live_workers(directory: Path, key: str) -> list[WorkerEntry]:
    """Live workers of ``key``, oldest pid first; files of dead ones are removed."""
    if not directory.exists():
        return []
    entries = []
    for path in sorted(directory.glob(f"{key}-*.json")):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])
            data = json.loads(path.read_text())
        except (OSError, ValueError, IndexError, json.JSONDecodeError):
            continue  # Being rewritten right now, or not ours.
        if process_alive(pid, data.get("start_time")):
            entries.append(WorkerEntry(path, pid, str(data.get("state", "warming"))))
        else:
            path.unlink(missing_ok=True)
    return sorted(entries, key=lambda e: e.pid)


def set_worker_state(path: Path, state: str) -> None:
    atomic_write_json(path, {"start_time": process_start_time(os.getpid()), "state": state})


def claim_run(run_dir: Path, holder: str) -> bool:
    """Take a queued run, once: True for the one caller whose exclusive create succeeded."""
    try:
        fd = os.open(Path(run_dir) / CLAIM_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(holder)
    return True


def cancel_queued(run_dir: Path) -> bool:
    """Stop a run that no worker has taken yet: claim it first and end it as ``stopped``.

    Returns:
        True if it was cancelled here; False if a worker had already taken it (that worker sees
        the stop file) or it is not a queued run of a warm worker.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "queued_for_worker").exists() or not claim_run(run_dir, "cancelled"):
        return False
    with EventLog(run_dir / "events.jsonl") as log:
        finish_run(run_dir, log, RunStatus.STOPPED, "stopped while waiting in the queue", {})
    return True


def enqueue_run(run_dir: Path, settings: Settings, *, queued: bool) -> int:
    """Hold a new run for the next warm worker; returns the owner's pid (this process).

    Args:
        run_dir: A new run directory.
        settings: The worker settings; the run is taken by a worker started with the same.
        queued: Take its place in the queue now (False: it waits for the run named in its
            ``after`` file, and the keeper queues it once that one has ended).
    """
    run_dir = Path(run_dir).resolve()
    key = standby_key(settings)
    pid = os.getpid()
    write_pid(run_dir, pid, owner=True)
    (run_dir / "queued_for_worker").touch()
    with EventLog(run_dir / "events.jsonl") as log:
        if queued:
            entry = register_in_queue(settings, run_dir, pid, key=key)
            ahead = next((i for i, e in enumerate(live_queue(settings)) if e.name == entry.name), 0)
            log.write({"type": "queued", "position": ahead,
                       "message": f"waiting for a free training slot ({ahead} run(s) ahead)"})
        else:
            predecessor = Path((run_dir / "after").read_text().strip())
            log.write({"type": "queued", "position": None,
                       "message": f"waiting for the {_strategy(predecessor)} run to finish first"})
    keeper = _keeper_for(settings, key)
    if not queued:
        keeper.wait_for_predecessor(run_dir)
    keeper.wake()
    return pid


def _strategy(run_dir: Path) -> str:
    try:
        return load_run(run_dir).strategy
    except (FileNotFoundError, ValueError):
        return "previous"


def ensure_standby(settings: Settings, prebuild: str | None = None) -> None:
    """Keep one idle warm worker ready for ``settings`` while this process (the app server) lives,
    so even its first run finds TensorFlow loaded. Nothing with the Ray executor: runs train on
    the cluster, and the server keeps no TensorFlow process.

    Args:
        prebuild: JSON ``{"backbone", "input_size", "precision"}`` a new worker builds while it
            waits (the demo's backbone).
    """
    if settings.executor == "ray":
        return
    keeper = _keeper_for(settings, standby_key(settings))
    keeper.keep_standby(prebuild)
    keeper.wake()


def ensure_workers(settings: Settings, key: str, *, standby: bool = False, prebuild: str | None = None) -> int:
    """Start workers of ``key`` until enough live for the runs training and waiting; returns how
    many were started. ``standby``: keep at least one, even with nothing queued."""
    directory = workers_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # Two threads (or servers) never both start the missing one.
        workers = live_workers(directory, key)
        serving = [w for w in workers if w.state != "retiring"]  # A retiring one trains its last run.
        busy = sum(w.state in ("busy", "retiring") for w in workers)
        waiting = sum(1 for e in live_queue(settings) if _entry_key(e) == key)
        need = min(settings.max_concurrent_runs, busy + waiting)
        if standby:
            need = max(need, 1)
        started = 0
        env = worker_env(settings)
        env.pop(STANDBY_PREBUILD_ENV, None)
        if prebuild:
            env[STANDBY_PREBUILD_ENV] = prebuild
        for _ in range(need - len(serving)):
            pid = spawn(["standby", str(directory), key], env, directory / f"{key}.log")
            atomic_write_json(directory / f"{key}-{pid}.json",
                              {"start_time": process_start_time(pid), "state": "warming"})
            started += 1
        return started


def _entry_key(entry: Path) -> str | None:
    try:
        return json.loads(entry.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def shutdown_workers(settings: Settings, *, busy: bool = False) -> None:
    """End the idle warm workers of ``settings`` (tests, a server shutting down); ``busy``: the
    ones training too (their runs show as interrupted)."""
    key = standby_key(settings)
    keeper = _keepers.get((str(workers_dir(settings)), key))
    if keeper is not None:
        keeper.keep_standby(None, keep=False)
    for worker in live_workers(workers_dir(settings), key):
        if busy or worker.state in ("warming", "idle"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGTERM)
            worker.path.unlink(missing_ok=True)


def prebuild_hint(run_dir: Path) -> str | None:
    """The backbone a new worker should build while it waits, from a run like the one it will
    likely train: an ImageNet feature-extraction run (the next is often another head on it)."""
    try:
        config = json.loads((Path(run_dir) / "config.json").read_text())
        model, train = config["model"], config["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (train.get("strategy") != "feature_extraction" or model.get("weights") != "imagenet"
            or train.get("distribution", "none") != "none"):
        return None
    return json.dumps({"backbone": model.get("backbone"), "input_size": model.get("input_size", 0),
                       "precision": train.get("precision", "float32")})


class _Keeper:
    """The owner's thread for one ``(home, key)``: workers for its waiting runs, chained runs
    into the queue. It ends when nothing waits, unless it keeps a standby (the app server)."""

    def __init__(self, settings: Settings, key: str) -> None:
        self.settings, self.key = settings, key
        self.pending: list[Path] = []  # Chained runs whose predecessor has not ended yet.
        self.standby = False
        self.waiting = False
        self.prebuild: str | None = None
        self.lock = threading.Lock()
        self.event = threading.Event()
        self.thread: threading.Thread | None = None

    def wait_for_predecessor(self, run_dir: Path) -> None:
        with self.lock:
            self.pending.append(run_dir)

    def keep_standby(self, prebuild: str | None, *, keep: bool = True) -> None:
        with self.lock:
            self.standby, self.prebuild = keep, prebuild

    def wake(self) -> None:
        """Check now (a run was just queued: a worker must exist before the caller returns)."""
        self.tick()
        with self.lock:
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="transfer-keeper", daemon=True)
                self.thread.start()
        self.event.set()

    def tick(self) -> bool:
        """One round; True while there is something to keep watching."""
        with self.lock:
            pending, standby, prebuild = list(self.pending), self.standby, self.prebuild
        for run_dir in pending:
            if self._queue_if_ready(run_dir):
                with self.lock:
                    self.pending.remove(run_dir)
        with contextlib.suppress(OSError):  # A home being deleted (tests): nothing to keep.
            ensure_workers(self.settings, self.key, standby=standby, prebuild=prebuild)
        mine = [e for e in live_queue(self.settings) if _entry_key(e) == self.key]
        with self.lock:
            self.waiting = bool(self.pending or mine)
            return self.waiting or self.standby

    def _queue_if_ready(self, run_dir: Path) -> bool:
        """Queue a chained run once its predecessor has ended; True when it left the waiting list."""
        try:
            predecessor = Path((run_dir / "after").read_text().strip())
            if (run_dir / CLAIM_FILE).exists():
                return True  # Stopped while it waited.
            if load_run(predecessor).is_active:
                return False
        except FileNotFoundError:
            pass  # The predecessor (or this run) was deleted: nothing to wait for.
        with contextlib.suppress(OSError):
            register_in_queue(self.settings, run_dir, os.getpid(), key=self.key)
        return True

    def _loop(self) -> None:
        while True:
            # Runs waiting: check often. Only the standby to keep: rarely (an idle server's CPU).
            self.event.wait(KEEPER_POLL_SECONDS if self.waiting else STANDBY_CHECK_SECONDS)
            self.event.clear()
            try:
                busy = self.tick()
            except Exception:  # noqa: BLE001 - the keeper must outlive a bad moment (a disk hiccup).
                busy = True
            if not busy:
                with self.lock:
                    if not (self.pending or self.standby):
                        self.thread = None
                        return


_keepers: dict[tuple[str, str], _Keeper] = {}
_keepers_lock = threading.Lock()


def _keeper_for(settings: Settings, key: str) -> _Keeper:
    with _keepers_lock:
        name = (str(workers_dir(settings)), key)
        if name not in _keepers:
            _keepers[name] = _Keeper(settings, key)
        return _keepers[name]
