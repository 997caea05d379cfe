"""What a worker process gets: its environment, the key of that environment, and its start."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from transfer_core.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDBY_KEY_ENV = "TL_STANDBY_KEY"
STANDBY_OWNER_ENV = "TL_STANDBY_OWNER_PID"


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a worker process."""
    env = {
        "TRANSFER_HOME": str(Path(settings.home).resolve()),
        "TRANSFER_MAX_CONCURRENT_RUNS": str(settings.max_concurrent_runs),
        "TRANSFER_MAX_UPLOAD_MB": str(settings.max_upload_mb),
        "TRANSFER_MAX_FILES": str(settings.max_files),
        "TRANSFER_MAX_PIXELS": str(settings.max_pixels),
        "TRANSFER_MAX_SESSION_DISK_MB": str(settings.max_session_disk_mb),
        "TRANSFER_ALLOWED_DATA_DIRS": os.pathsep.join(str(Path(p).resolve()) for p in settings.allowed_data_dirs),
        "TRANSFER_STANDBY_WORKER": "1" if settings.standby_worker else "0",
        "TRANSFER_EXECUTOR": settings.executor,
        "TRANSFER_RAY_NUM_CPUS": str(settings.ray_num_cpus),
        "TRANSFER_RAY_NUM_GPUS": str(settings.ray_num_gpus),
        "TRANSFER_MAX_QUEUED_PER_SESSION": str(settings.max_queued_per_session),
        "TRANSFER_WORKER_NICE": str(settings.worker_nice),
        "TRANSFER_WORKER_MAX_RUNS": str(settings.worker_max_runs),
        "TRANSFER_WORKER_MAX_MEMORY_MB": str(settings.worker_max_memory_mb),
        "TRANSFER_OFFLINE": "1" if settings.offline else "0",
        "TRANSFER_FROZEN_RUNTIME": settings.frozen_runtime,
    }
    if settings.ray_address:
        env["RAY_ADDRESS"] = settings.ray_address
    if settings.weights_dir is not None:
        env["TRANSFER_WEIGHTS_DIR"] = str(Path(settings.weights_dir).resolve())
    return env


def standby_key(settings: Settings) -> str:
    """A standby only serves runs it would have been started for: same settings, same environment."""
    inherited = {k: v for k, v in os.environ.items() if k.startswith(("TRANSFER_", "TF_", "KERAS_", "CUDA_"))}
    payload = json.dumps([sys.executable, str(REPO_ROOT), sorted({**inherited, **settings_env(settings)}.items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def worker_env(settings: Settings) -> dict[str, str]:
    """The full environment of a worker (or standby) process started by this process."""
    env = {**os.environ, **settings_env(settings)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if settings.standby_worker:
        env[STANDBY_KEY_ENV] = standby_key(settings)
        env.setdefault(STANDBY_OWNER_ENV, str(os.getpid()))  # The server's pid, handed down.
    return env


def spawn(arguments: list[str], env: dict[str, str], log_path: Path) -> int:
    """Start ``python -m transfer_core <arguments>`` in its own process group; returns its pid."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "transfer_core", *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO_ROOT),
            start_new_session=True,  # Its own process group, so a kill takes its children too.
        )
    # Reap the child when it exits so it never lingers as a zombie in a long-lived server.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid
