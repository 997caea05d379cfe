"""The local executor: warm worker processes on this machine take queued runs (nothing to start first)."""

from __future__ import annotations

from pathlib import Path

from transfer_core.config import Settings
from transfer_core.jobs.pool import enqueue_run


def start_local_worker(run_dir: Path, settings: Settings, *, queued: bool) -> int:
    """Queue ``run_dir`` for the next warm worker of ``settings`` (one is started if none is
    live or warming); returns the pid now in its ``worker.pid``: this process, its owner, until
    a worker takes it.

    Args:
        run_dir: A new run directory.
        settings: Passed to the worker through environment variables.
        queued: Take the run's place in the queue now (False for a run that waits for another
            run first: it queues when that one has ended).
    """
    return enqueue_run(run_dir, settings, queued=queued)
