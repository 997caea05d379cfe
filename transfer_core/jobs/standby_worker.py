"""The standby worker's own loop: import TensorFlow, wait to be handed a run, then train it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transfer_core.config import Settings
from transfer_core.jobs.runner import redirect_output, worker_main
from transfer_core.jobs.spawn import STANDBY_OWNER_ENV
from transfer_core.jobs.standby import STANDBY_IDLE_SECONDS, STANDBY_PREBUILD_ENV
from transfer_core.processes import lower_priority, process_alive

_STANDBY_POLL_SECONDS = 0.05


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


def standby_main(directory: Path, key: str, idle_seconds: float = STANDBY_IDLE_SECONDS) -> int:
    """Entry point of a standby worker: import TensorFlow, wait for a run, then be its worker."""
    lower_priority(Settings.from_env().worker_nice)  # Before TensorFlow's threads, which inherit it.
    import keras  # noqa: F401 - the imports are the point: they take seconds.
    import tensorflow as tf

    import transfer_core.models  # noqa: F401
    import transfer_core.training  # noqa: F401

    tf.constant(1.0) + 1.0  # Starts TensorFlow's runtime (thread pools, kernels) too.

    directory = Path(directory)
    name = f"{key}-{os.getpid()}"
    warming, ready, claimed, job = (directory / f"{name}.{s}" for s in ("warming", "ready", "claimed", "job"))
    owner = int(os.environ.get(STANDBY_OWNER_ENV, os.getppid()))
    deadline = time.time() + 10  # The server writes .warming right after starting us.
    while True:
        try:
            os.rename(warming, ready)
            break
        except FileNotFoundError:
            if time.time() > deadline:
                return 0
            time.sleep(_STANDBY_POLL_SECONDS)
    if os.environ.get(STANDBY_PREBUILD_ENV):
        _prebuild_backbone(os.environ[STANDBY_PREBUILD_ENV])
    from transfer_core.frozen_runtime import prepare_demo

    prepare_demo(Settings.from_env())  # The demo's LiteRT networks: converted once per machine, loaded here.
    idle_until = time.time() + idle_seconds
    claimed_at = None
    while not job.exists():
        if not directory.exists():
            return 0  # The server's home was deleted (tests, benchmarks): nobody will hand us a run.
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
                if not (claimed.exists() or job.exists()):
                    return 0  # Neither ready nor claimed: the folder went away under us.
        time.sleep(_STANDBY_POLL_SECONDS)
    run_dir = Path(job.read_text().strip())
    job.unlink(missing_ok=True)
    claimed.unlink(missing_ok=True)
    redirect_output(run_dir)  # From here on this process is the run's worker.
    return worker_main(run_dir)
