"""The local executor: one worker process per run on this machine (nothing to start first)."""

from __future__ import annotations

from pathlib import Path

from transfer_core.config import Settings
from transfer_core.jobs.queue import register_in_queue
from transfer_core.jobs.spawn import spawn, worker_env
from transfer_core.jobs.standby import claim_standby
from transfer_core.runs import write_pid


def start_local_worker(run_dir: Path, settings: Settings, *, queued: bool) -> int:
    """Hand ``run_dir`` to a ready standby worker, or start a worker process; returns its pid.

    Args:
        run_dir: A new run directory.
        settings: Passed to the worker through environment variables.
        queued: Take the run's place in the queue now (False for a run that waits for another
            run first: it queues when that one has ended).
    """
    standby = claim_standby(settings) if settings.standby_worker else None
    if standby is not None:
        pid = standby.pid
    else:
        pid = spawn(["worker", str(Path(run_dir).resolve())], worker_env(settings), run_dir / "worker.log")
    write_pid(run_dir, pid)
    if queued:
        # Take the run's place in the queue now, so runs queue in the order they were started even
        # when a later run's worker process happens to start faster (a busy CPU).
        register_in_queue(settings, run_dir, pid)
    if standby is not None:
        standby.assign(run_dir)
    # No new standby now: importing TensorFlow would take CPU from this run. Its worker starts the
    # next standby when the run has ended.
    return pid
