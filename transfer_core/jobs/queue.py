"""The server-wide FIFO of waiting runs, training slots, per-session limits and a queue ETA.

A worker holds an exclusive ``flock`` on one of ``Settings.max_concurrent_runs`` slot files
while it trains; the kernel releases it when the process ends, however it ends. Waiting runs
register in ``<home>/queue`` (one file per run, named so they sort by the run's creation
time) and take slots in that order. With the Ray executor the cluster's resources are the
slots; the queue files then only show who waits, and the server (the tasks' owner) holds them.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_json
from transfer_core.processes import process_alive, process_start_time
from transfer_core.runs import EventLog, RunStatus, load_run

RUN_TIMES_FILE = "run_times.jsonl"  # Under <home>: one line per finished run, for queue_eta.
RUN_TIMES_KEPT = 20  # queue_eta uses the median of this many most recent runs.


class QueueFull(RuntimeError):  # noqa: N818 - named for what a person sees: the queue is full.
    """A session tried to queue more requests than ``Settings.max_queued_per_session``."""


def queue_dir(settings: Settings) -> Path:
    return Path(settings.home) / "queue"


def live_queue(settings: Settings) -> list[Path]:
    """Queue entries of live workers, oldest first; entries of dead workers are removed."""
    queue = queue_dir(settings)
    if not queue.exists():
        return []
    live = []
    # Dot files are other processes' half-written entries (fileio.atomic_path): deleting one made their
    # rename fail and their Start fail (seen with 30 sessions pressing Start together).
    for entry in sorted(queue.glob("[!.]*")):
        try:
            data = json.loads(entry.read_text())
            alive = process_alive(int(data["pid"]), data.get("start_time"))
            # A warm worker took it (or a Stop cancelled it) and has not removed the entry yet.
            alive = alive and not (data.get("key") and (Path(data["run_dir"]) / "claim").exists())
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            alive = False
        if alive:
            live.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return live


def queue_position(run_dir: Path, settings: Settings) -> int | None:
    """0-based place of a queued run in the server-wide queue, or None if not queued."""
    name = Path(run_dir).name
    for position, entry in enumerate(live_queue(settings)):
        if entry.name.endswith(name):
            return position
    return None


def queue_entry(settings: Settings, run_dir: Path) -> Path:
    """The queue file of ``run_dir``; its name sorts by the run's creation time."""
    run_dir = Path(run_dir).resolve()
    try:
        created = (run_dir / "config.json").stat().st_mtime
    except OSError:
        created = time.time()
    return queue_dir(settings) / f"{created:017.6f}-{run_dir.name}"


def register_in_queue(settings: Settings, run_dir: Path, pid: int, *, key: str | None = None) -> Path:
    """Write (or rewrite) the run's queue entry, held by process ``pid``.

    ``key``: the run waits for a warm worker of that key (:mod:`.pool`), held by its owner;
    without it, the process ``pid`` waits in the queue itself (a one-run worker, a Ray owner).

    ``start_run`` writes it for the new worker and the worker writes the same entry again, so the
    queue order is the order runs were started (``config.json`` is written before the worker exists),
    not the order worker processes happened to reach the queue.
    """
    queue_dir(settings).mkdir(parents=True, exist_ok=True)
    entry = queue_entry(settings, run_dir)
    data = {"pid": pid, "start_time": process_start_time(pid), "run_dir": str(Path(run_dir).resolve())}
    if key is not None:
        data["key"] = key
    atomic_write_json(entry, data)
    return entry


def try_slot(settings: Settings) -> IO[str] | None:
    """A free training slot, locked (the kernel frees it when this process ends), or None."""
    slots = Path(settings.home) / "slots"
    slots.mkdir(parents=True, exist_ok=True)
    for index in range(settings.max_concurrent_runs):
        handle = open(slots / f"slot-{index}.lock", "a+")  # noqa: SIM115 - held for the run.
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.close()
    return None


def acquire_slot(settings: Settings, run_dir: Path, log: EventLog,
                 should_stop: Callable[[], bool]) -> IO[str] | None:
    """Wait in FIFO order for a free slot; returns the locked slot file, or None if stopped."""
    entry = register_in_queue(settings, run_dir, os.getpid())
    announced = None
    try:
        while True:
            if should_stop():
                return None
            live = live_queue(settings)
            position = next((i for i, e in enumerate(live) if e.name == entry.name), 0)
            if position < settings.max_concurrent_runs:
                handle = try_slot(settings)
                if handle is not None:
                    return handle
            if position != announced:
                log.write({"type": "queued", "position": position,
                           "message": f"waiting for a free training slot ({position} run(s) ahead)"})
                announced = position
            time.sleep(0.25)
    finally:
        entry.unlink(missing_ok=True)


def check_session_queue(runs_dir: Path, settings: Settings) -> None:
    """Refuse a new request when its session already has ``max_queued_per_session`` waiting.

    A session is its run store (a browser session's workspace ``runs/``). A request is a run
    started without ``after``: a comparison's chained runs belong to the request of its first
    run, so a three-strategy comparison is one request and fits the default limit of 3.

    Raises:
        QueueFull: naming the limit, how many wait, and what to do.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        return
    waiting = 0
    for run_dir in runs_dir.iterdir():
        if (run_dir / "after").exists() or (run_dir / "report.json").exists() or not (run_dir / "config.json").exists():
            continue
        try:
            if load_run(run_dir).status == RunStatus.QUEUED:
                waiting += 1
        except FileNotFoundError:
            continue  # Deleted meanwhile.
    limit = settings.max_queued_per_session
    if waiting >= limit:
        raise QueueFull(
            f"This session already has {waiting} request(s) waiting in the queue, its limit is {limit} "
            "(TRANSFER_MAX_QUEUED_PER_SESSION). Wait for one to start, or stop one, then start again."
        )


def record_run_time(settings: Settings, strategy: str, seconds: float) -> None:
    """Append a finished run's wall time (slot taken to end) to the server's run times."""
    # The same atomic line appends as events.jsonl, but these lines are not run events: no schema check.
    with EventLog(Path(settings.home) / RUN_TIMES_FILE, check=False) as log:
        log.write({"strategy": strategy, "seconds": round(seconds, 3)})


def recent_run_times(settings: Settings, kept: int = RUN_TIMES_KEPT) -> list[dict[str, Any]]:
    """The last ``kept`` recorded run times, oldest first (reads only the file's tail)."""
    path = Path(settings.home) / RUN_TIMES_FILE
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - 200 * kept)  # A line is well under 200 bytes.
            handle.seek(start)
            lines = handle.read().splitlines()
    except OSError:
        return []
    if start > 0:
        lines = lines[1:]  # Cut mid-line.
    records = []
    for line in lines:
        try:
            record = json.loads(line)
            records.append({"strategy": str(record["strategy"]), "seconds": float(record["seconds"])})
        except (ValueError, KeyError, TypeError):
            continue  # A partial line at the cut, or a line from an older format.
    return records[-kept:]


def _strategy_of(queue_file: Path) -> str | None:
    try:
        run_dir = Path(json.loads(queue_file.read_text())["run_dir"])
        return json.loads((run_dir / "config.json").read_text())["train"]["strategy"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def queue_eta(run_dir: Path, settings: Settings) -> float | None:
    """Estimated seconds until the queued run at ``run_dir`` gets a slot, or None.

    From measured run times: the median wall time of the server's last runs (per strategy
    where that strategy has finished before), for each run ahead in the queue, shared by the
    slots; the runs training now are taken as half done. None when the run is not queued
    or no run has finished on this server yet (nothing to measure from).
    """
    times = recent_run_times(settings)
    if not times:
        return None
    entries = live_queue(settings)
    name = Path(run_dir).name
    position = next((i for i, e in enumerate(entries) if e.name.endswith(name)), None)
    if position is None:
        return None
    overall = statistics.median(t["seconds"] for t in times)
    by_strategy: dict[str, list[float]] = {}
    for record in times:
        by_strategy.setdefault(record["strategy"], []).append(record["seconds"])

    def duration(strategy: str | None) -> float:
        known = by_strategy.get(strategy or "")
        return statistics.median(known) if known else overall

    ahead = sum(duration(_strategy_of(entry)) for entry in entries[:position])
    return overall / 2 + ahead / settings.max_concurrent_runs


@dataclass(frozen=True)
class QueueCapacity:
    """What the teacher's class view says about the queue: slots, waiting runs, measured run times."""

    slots: int  # Runs that train at once (local executor); the Ray cluster decides its own.
    cores: int
    waiting: int
    runs_measured: int
    median_run_seconds: float | None  # None until a run has finished on this server.

    def class_seconds(self, students: int) -> float | None:
        """Seconds until the last of ``students`` runs, started together, finishes (local executor)."""
        if self.median_run_seconds is None:
            return None
        return math.ceil(students / max(self.slots, 1)) * self.median_run_seconds


def queue_capacity(settings: Settings) -> QueueCapacity:
    """The queue now and the median of the server's last :data:`RUN_TIMES_KEPT` run times."""
    times = [t["seconds"] for t in recent_run_times(settings)]
    return QueueCapacity(
        slots=settings.max_concurrent_runs,
        cores=os.cpu_count() or 1,
        waiting=len(live_queue(settings)),
        runs_measured=len(times),
        median_run_seconds=statistics.median(times) if times else None,
    )
