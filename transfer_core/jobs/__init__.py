"""Run training outside the caller: warm worker processes, a FIFO queue, stop, two executors.

Why workers (ARCHITECTURE.md, decisions 1 and 11): a Streamlit rerun can interrupt the script
thread at any moment, Keras' global state is process-wide, and a crash in TensorFlow must not take
the server down. A worker stays warm between runs (TensorFlow imported, backbones built) and
resets Keras between them. The worker writes everything to its run directory (see
:mod:`transfer_core.runs`); callers only read files.

Modules, one job each:

- :mod:`.start`          ``start_run`` (on the configured executor) and ``follow``
- :mod:`.local`          the local executor: warm worker processes take queued runs (the default)
- :mod:`.ray_executor`   the Ray executor: a Ray task per run, in reused Ray workers (``TRANSFER_EXECUTOR=ray``)
- :mod:`.runner`         the code inside a worker: wait, take a slot, train, write artefacts
- :mod:`.queue`          the FIFO, slots, per-session limits, queue ETA
- :mod:`.stop`           the stop file, then a kill (or ``ray.cancel``); a queued run is cancelled
- :mod:`.pool`           warm workers, the server's side: claims, the keeper, the standby
- :mod:`.standby_worker` a warm worker's loop: take a run, train, reset, retire
- :mod:`.spawn`          a worker's environment and process start
"""

from transfer_core.jobs.pool import (
    STANDBY_IDLE_SECONDS,
    WorkerEntry,
    cancel_queued,
    ensure_standby,
    ensure_workers,
    live_workers,
    prebuild_hint,
    shutdown_workers,
    workers_dir,
)
from transfer_core.jobs.queue import (
    QueueCapacity,
    QueueFull,
    check_session_queue,
    live_queue,
    queue_capacity,
    queue_eta,
    queue_position,
    recent_run_times,
    record_run_time,
)
from transfer_core.jobs.runner import finish_run, run_worker, save_model, train_claimed_run, worker_main
from transfer_core.jobs.spawn import STANDBY_OWNER_ENV, settings_env, standby_key
from transfer_core.jobs.standby_worker import resident_mb, standby_main
from transfer_core.jobs.start import StartFailed, follow, start_run
from transfer_core.jobs.stop import enforce_stop, request_stop, stop_and_wait

__all__ = [
    "STANDBY_IDLE_SECONDS",
    "STANDBY_OWNER_ENV",
    "QueueCapacity",
    "QueueFull",
    "StartFailed",
    "WorkerEntry",
    "cancel_queued",
    "check_session_queue",
    "enforce_stop",
    "ensure_standby",
    "ensure_workers",
    "finish_run",
    "follow",
    "live_queue",
    "live_workers",
    "prebuild_hint",
    "queue_capacity",
    "queue_eta",
    "queue_position",
    "recent_run_times",
    "record_run_time",
    "request_stop",
    "resident_mb",
    "run_worker",
    "save_model",
    "settings_env",
    "shutdown_workers",
    "standby_key",
    "standby_main",
    "start_run",
    "stop_and_wait",
    "train_claimed_run",
    "worker_main",
    "workers_dir",
]
