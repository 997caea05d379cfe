"""Start a run on the configured executor, and follow it until it ends."""

from __future__ import annotations

import time
from pathlib import Path

from transfer_core.config import RunConfig, Settings
from transfer_core.fileio import atomic_write_text
from transfer_core.jobs.local import start_local_worker
from transfer_core.jobs.queue import check_session_queue
from transfer_core.jobs.ray_executor import submit_run
from transfer_core.jobs.runner import finish_run
from transfer_core.jobs.stop import POLL_SECONDS, enforce_stop
from transfer_core.runs import (
    TERMINAL_EVENTS,
    EventLog,
    RunStatus,
    RunStore,
    load_run,
    read_events,
    worker_alive,
)


class StartFailed(RuntimeError):
    """The executor could not start a run's worker (no Ray cluster, no process); the run is marked failed."""


def start_run(
    config: RunConfig, *, runs_dir: Path, settings: Settings, after: Path | None = None
) -> Path:
    """Create a run directory and start its worker (``Settings.executor``); returns at once.

    Args:
        config: The run to train.
        runs_dir: Folder of the run store this run belongs to (one session's runs).
        settings: Passed to the worker; ``executor`` picks a local worker process or a Ray task.
        after: Another run's directory; this run waits until that one has ended
            before it queues for a slot (a comparison runs one after another,
            so its timings are not skewed by sharing the CPU).

    Returns:
        The new run's directory. Follow it with :func:`follow` or
        :func:`transfer_core.runs.load_run`.

    Raises:
        ValueError, WeightsUnavailableError: from :func:`transfer_core.training.preflight`.
        QueueFull: the session already has ``Settings.max_queued_per_session`` requests waiting
            (checked for runs without ``after``; a chained run belongs to its first run's request).
        StartFailed: the executor could not start the worker; the new run ends as ``failed``
            with the reason, so it does not wait forever.
    """
    from transfer_core.training import preflight

    preflight(config, settings)  # A bad setting is reported before any work starts.
    if after is None:
        check_session_queue(runs_dir, settings)
    run_dir = RunStore(runs_dir).create(config)
    if after is not None:
        atomic_write_text(run_dir / "after", str(Path(after).resolve()))
    try:
        if settings.executor == "ray":
            submit_run(run_dir, settings, queued=after is None)
        else:
            start_local_worker(run_dir, settings, queued=after is None)
    except Exception as error:  # noqa: BLE001 - any failure to start: Ray unreachable, no process, a full disk.
        reason = f"the {settings.executor} executor could not start it: {type(error).__name__}: {error}"
        with EventLog(run_dir / "events.jsonl") as log:
            finish_run(run_dir, log, RunStatus.FAILED, reason, {})
        raise StartFailed(f"Run {run_dir.name}: {reason}") from error
    return run_dir


def follow(run_dir: Path, on_event=None, *, poll_seconds: float = POLL_SECONDS,
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
