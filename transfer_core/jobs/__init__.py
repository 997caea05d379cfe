"""Run training outside the caller: a worker per run, a FIFO queue, stop, two executors.

Why a worker per run (ARCHITECTURE.md, decision 1): a Streamlit rerun can interrupt the script thread
at any moment, Keras' global state is process-wide, and a crash in TensorFlow must not take
the server down. The worker writes everything to its run directory (see
:mod:`transfer_core.runs`); callers only read files.

Modules, one job each:

- :mod:`.start`          ``start_run`` (on the configured executor) and ``follow``
- :mod:`.local`          the local executor: a worker process per run (the default)
- :mod:`.ray_executor`   the Ray executor: a Ray task per run (``TRANSFER_EXECUTOR=ray``)
- :mod:`.runner`         the code inside a worker: wait, take a slot, train, write artefacts
- :mod:`.queue`          the FIFO, slots, per-session limits, queue ETA
- :mod:`.stop`           the stop file, then a kill (or ``ray.cancel``)
- :mod:`.standby`, :mod:`.standby_worker`  a worker with TensorFlow already imported
- :mod:`.spawn`          a worker's environment and process start
"""

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
from transfer_core.jobs.runner import finish_run, run_worker, save_model, worker_main
from transfer_core.jobs.spawn import STANDBY_OWNER_ENV, settings_env, standby_key
from transfer_core.jobs.standby import (
    STANDBY_IDLE_SECONDS,
    claim_standby,
    ensure_standby,
    prebuild_hint,
    shutdown_standby,
    standby_dir,
    standby_entries,
)
from transfer_core.jobs.standby_worker import standby_main
from transfer_core.jobs.start import StartFailed, follow, start_run
from transfer_core.jobs.stop import enforce_stop, request_stop, stop_and_wait

__all__ = [
    "STANDBY_IDLE_SECONDS",
    "STANDBY_OWNER_ENV",
    "QueueCapacity",
    "QueueFull",
    "StartFailed",
    "check_session_queue",
    "claim_standby",
    "enforce_stop",
    "ensure_standby",
    "finish_run",
    "follow",
    "live_queue",
    "prebuild_hint",
    "queue_capacity",
    "queue_eta",
    "queue_position",
    "recent_run_times",
    "record_run_time",
    "request_stop",
    "run_worker",
    "save_model",
    "settings_env",
    "shutdown_standby",
    "standby_dir",
    "standby_entries",
    "standby_key",
    "standby_main",
    "start_run",
    "stop_and_wait",
    "worker_main",
]
