"""The warm worker's own loop: import TensorFlow once, then train queued runs one after another.

Between runs it resets Keras (:func:`transfer_core.training.release_run_state`; the next run's
:func:`~transfer_core.training.reset_keras_state` sets its seed and precision), sends its output
back to its own log, and retires after ``Settings.worker_max_runs`` runs or above
``Settings.worker_max_memory_mb`` resident; the owner's keeper (:mod:`.pool`) starts the next.
An idle worker retires when its owner is gone, its home is deleted, or it has waited long enough.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO

from transfer_core.config import Settings
from transfer_core.jobs.pool import (
    STANDBY_IDLE_SECONDS,
    STANDBY_PREBUILD_ENV,
    WORKER_LINGER_SECONDS,
    claim_run,
    live_workers,
    set_worker_state,
)
from transfer_core.jobs.queue import live_queue, try_slot
from transfer_core.jobs.runner import output_to, train_claimed_run
from transfer_core.jobs.spawn import STANDBY_OWNER_ENV
from transfer_core.processes import lower_priority, process_alive
from transfer_core.runs import write_pid

_POLL_SECONDS = 0.05


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


def resident_mb() -> float:
    """This process's resident memory now, in MB (Linux); 0 where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def take_next_run(settings: Settings, key: str) -> tuple[Path, IO[str]] | None:
    """The oldest queued run of ``key`` and a locked slot to train it in, or None.

    The run is taken by an exclusive create of its ``claim`` file (one taker, even against a
    Stop), then its ``worker.pid`` names this process.
    """
    entries = []
    for entry in live_queue(settings):
        try:
            data = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if data.get("key") == key:
            entries.append((entry, Path(data["run_dir"])))
    if not entries:
        return None
    slot = try_slot(settings)
    if slot is None:
        return None
    for entry, run_dir in entries:
        if claim_run(run_dir, f"worker {os.getpid()}"):
            write_pid(run_dir)
            entry.unlink(missing_ok=True)
            return run_dir, slot
        entry.unlink(missing_ok=True)  # Cancelled, or taken by another worker.
    slot.close()
    return None


def _idle_limit(settings: Settings, directory: Path, key: str) -> float:
    """How long this idle worker waits: the app's standby (the oldest idle worker) long, others
    briefly (a burst has ended; one warm worker is enough for the next run)."""
    if not settings.standby_worker:
        return WORKER_LINGER_SECONDS
    idle = [w.pid for w in live_workers(directory, key) if w.state == "idle"]
    return STANDBY_IDLE_SECONDS if not idle or min(idle) == os.getpid() else WORKER_LINGER_SECONDS


def standby_main(directory: Path, key: str) -> int:
    """Entry point of a warm worker (``python -m transfer_core standby DIRECTORY KEY``)."""
    settings = Settings.from_env()
    lower_priority(settings.worker_nice)  # Before TensorFlow's threads, which inherit it.
    import keras  # noqa: F401 - the imports are the point: they take seconds.
    import tensorflow as tf

    from transfer_core.models import recycle_backbones
    from transfer_core.training import release_run_state

    recycle_backbones()  # Each run's model is saved and dropped before the next: fine-tuning reuses the backbone.

    tf.constant(1.0) + 1.0  # Starts TensorFlow's runtime (thread pools, kernels) too.

    directory = Path(directory)
    state_file = directory / f"{key}-{os.getpid()}.json"
    owner = int(os.environ.get(STANDBY_OWNER_ENV, os.getppid()))
    if not directory.exists():
        return 0
    if os.environ.get(STANDBY_PREBUILD_ENV):
        _prebuild_backbone(os.environ[STANDBY_PREBUILD_ENV])
    if settings.standby_worker:  # A server that prepares ahead (the app; off in tests and one-shot commands).
        from transfer_core.frozen_runtime import prepare_demo

        prepare_demo(settings)  # The demo's LiteRT networks: converted once per machine, loaded here.
    set_worker_state(state_file, "idle")  # Ready: what a run would wait for is done (queued runs are taken anyway).
    runs = 0
    idle_since = time.time()
    try:
        while True:
            if not directory.exists() or not process_alive(owner, None):
                return 0  # The home was deleted (tests, benchmarks) or the server is gone.
            taken = take_next_run(settings, key)
            if taken is None:
                if time.time() - idle_since > _idle_limit(settings, directory, key):
                    return 0
                time.sleep(_POLL_SECONDS)
                continue
            run_dir, slot = taken
            runs += 1
            # On its last run the keeper already starts the next worker, so the queue never waits for it.
            set_worker_state(state_file, "retiring" if runs >= settings.worker_max_runs else "busy")
            with output_to(run_dir):
                train_claimed_run(run_dir, settings, slot)
            release_run_state()
            if runs >= settings.worker_max_runs or resident_mb() > settings.worker_max_memory_mb:
                return 0
            set_worker_state(state_file, "idle")
            idle_since = time.time()
    finally:
        state_file.unlink(missing_ok=True)
