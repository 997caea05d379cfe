"""Stop a run: a stop file the worker polls after every batch, then a kill after a grace period."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from transfer_core.fileio import atomic_write_json, atomic_write_text
from transfer_core.jobs.pool import cancel_queued
from transfer_core.jobs.ray_executor import cancel_run, is_ray_run
from transfer_core.runs import EventLog, load_run, pid_is_owner, read_events, read_pid

POLL_SECONDS = 0.2


def request_stop(run_dir: Path) -> None:
    """Ask the worker of ``run_dir`` to stop after its current batch; a run still waiting for a
    warm worker is cancelled here and now."""
    stop_file = Path(run_dir) / "stop"
    if not stop_file.exists():
        atomic_write_text(stop_file, f"{time.time()}\n")
    cancel_queued(Path(run_dir))


def _kill_worker(run_dir: Path) -> bool:
    if is_ray_run(run_dir):
        return cancel_run(run_dir)  # The pid file may name the server itself: never kill by pid.
    pid_info = read_pid(run_dir)
    if pid_info is None or pid_is_owner(run_dir):
        return False  # Queued, no worker yet: the pid is the server's (request_stop cancels it).
    try:
        os.killpg(pid_info[0], signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def enforce_stop(run_dir: Path, grace_seconds: float = 10.0, early_grace_seconds: float = 1.0,
                 saving_grace_seconds: float = 120.0) -> bool:
    """Kill a worker that was asked to stop and has not stopped in time.

    Once an epoch has ended the worker gets ``grace_seconds`` to finish its batch
    and save the best weights, counted from Stop or from its latest event, whichever is later: a
    worker that is still writing events is alive, only slowed (other work on a busy machine), and
    killing it would lose the weights it is about to save. A worker that wrote ``stopping`` has
    answered and is evaluating and saving, which writes no events and can take long on a machine
    whose every core is busy: it gets ``saving_grace_seconds``, before its first epoch too (a warm
    worker then ends the run with nothing to keep and takes the next one). A worker that has not
    answered before an epoch has ended has nothing to keep, so ``early_grace_seconds`` (it may be
    inside a long first step: loading weights, tracing) is enough. A Ray task is cancelled with ``ray.cancel(force=True)``.

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
    answered = any(e.get("type") == "stopping" for e in events)
    latest = max((float(e.get("time") or 0.0) for e in events), default=0.0)
    grace = saving_grace_seconds if answered else grace_seconds
    # A worker that answered ends the run itself, even before its first epoch (then with nothing to
    # keep): killing it would only cost a warm worker, and the next run a TensorFlow import.
    if (has_epoch or answered) and time.time() - max(stop_file.stat().st_mtime, latest) < grace:
        return False
    if not _kill_worker(run_dir):
        return False
    reason = (
        f"stopped by force after {waited:.0f} s: the worker was busy "
        + (f"saving for over {grace:.0f} s, so no model was kept" if answered and has_epoch
           else "and did not stop in time, so no model was kept" if has_epoch else "before its first epoch ended")
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
        time.sleep(POLL_SECONDS)
    return load_run(run_dir).status
