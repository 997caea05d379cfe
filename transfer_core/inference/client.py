"""Ask the inference worker to compute something; wait for the answer (no TensorFlow here).

The web server only serves (ARCHITECTURE.md, decision 8): every TensorFlow call of the pages
(block maps, ImageNet guesses, predictions, Grad-CAM, embeddings, parity checks, the
learning-rate finder) runs in one long-lived worker process per server process and
settings, started here on first use. It keeps TensorFlow and recently used models
loaded, so a Grad-CAM costs a forward and a backward pass, not an import. It retires
after :data:`IDLE_SECONDS` without work, or when the process that started it is gone.

    value = call(settings, "block_map", settings, "mobilenet_v2_0.35", 96, on_progress=show)

A request is a file; see :mod:`transfer_core.inference.protocol` for the layout and why.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_json
from transfer_core.inference.protocol import (
    REPO_ROOT,
    InferenceTaskError,
    InferenceTimeout,
    InferenceWorkerDied,
    locked,
    read_json,
    read_pickle,
    worker_dir,
    write_pickle,
)
from transfer_core.processes import process_alive, process_start_time

__all__ = ["DEFAULT_TIMEOUT", "IDLE_SECONDS", "Progress", "call", "ensure_worker", "shutdown", "worker_pid"]

IDLE_SECONDS = 600.0  # A class pauses for minutes; re-importing TensorFlow costs seconds of every student's time.
DEFAULT_TIMEOUT = 900.0
_POLL_SECONDS = 0.05
_MAX_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Progress:
    """How far a request has come: ``fraction`` 0..1 (None while unknown) and what it does now."""

    fraction: float | None
    text: str


def _owner_pid() -> int:
    return os.getpid()


def _worker_env(settings: Settings) -> dict[str, str]:
    from transfer_core.jobs import settings_env

    env = {**os.environ, **settings_env(settings)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _live_pid(directory: Path) -> int | None:
    info = read_json(directory / "worker.json")
    if info is None or not isinstance(info.get("pid"), int):
        return None
    return info["pid"] if process_alive(info["pid"], info.get("start_time")) else None


def _spawn(directory: Path, settings: Settings, owner: int, idle_seconds: float) -> int:
    """Start a worker for ``directory`` (the caller holds the folder's lock)."""
    with open(directory / "worker.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "transfer_core.inference.worker", str(directory), str(owner), str(idle_seconds)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_worker_env(settings),
            cwd=str(REPO_ROOT), start_new_session=True)
    threading.Thread(target=process.wait, daemon=True).start()  # Reap it: no zombie in a long-lived server.
    atomic_write_json(directory / "worker.json", {"pid": process.pid, "start_time": process_start_time(process.pid),
                                                  "owner": owner})
    return process.pid


def ensure_worker(settings: Settings, *, idle_seconds: float = IDLE_SECONDS) -> int:
    """Start this process's inference worker for ``settings`` unless it runs; returns its pid."""
    owner = _owner_pid()
    directory = worker_dir(settings, owner)
    with locked(directory):
        return _live_pid(directory) or _spawn(directory, settings, owner, idle_seconds)


def worker_pid(settings: Settings) -> int | None:
    """The pid of this process's running inference worker for ``settings``, or None."""
    return _live_pid(worker_dir(settings, _owner_pid()))


def shutdown(home: str | os.PathLike, timeout: float = 10.0) -> None:
    """Stop the inference workers this process started under ``home`` (tests, a server shutting down)."""
    import signal

    stopping = []
    for directory in sorted((Path(home).resolve() / "inference").glob("*/")):
        info = read_json(directory / "worker.json")
        if info is None or info.get("owner") != _owner_pid():
            continue
        with locked(directory):
            pid = _live_pid(directory)
            (directory / "worker.json").unlink(missing_ok=True)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
                stopping.append(pid)
    deadline = time.time() + timeout
    while time.time() < deadline and any(process_alive(pid, None) for pid in stopping):
        time.sleep(0.05)


def _submit(directory: Path, settings: Settings, request_id: str, request: dict[str, Any]) -> None:
    # Under the lock: a worker retiring at this moment either sees the request or is replaced.
    with locked(directory):
        write_pickle(directory / "requests" / f"{request_id}.pkl", request)
        if _live_pid(directory) is None:
            _spawn(directory, settings, _owner_pid(), IDLE_SECONDS)


def _log_tail(directory: Path, chars: int = 2000) -> str:
    try:
        return (directory / "worker.log").read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def call(
    settings: Settings,
    task: str,
    *args: Any,
    on_progress: Callable[[Progress], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> Any:
    """Run ``task`` (a name in ``transfer_core.inference.tasks.TASKS``) in the worker and return its result.

    Args:
        settings: Which worker (its settings); tasks get their own arguments.
        task: The task's name.
        *args: Positional arguments of the task (plain data: they are pickled).
        on_progress: Called with a :class:`Progress` whenever the worker reports one.
        timeout: Seconds to wait for the result.
        **kwargs: Keyword arguments of the task.

    Returns:
        The task's result (plain data: dataclasses, arrays, frames).

    Raises:
        InferenceTimeout: No result within ``timeout`` seconds.
        InferenceWorkerDied: The worker ended without answering, also after one restart.
        Exception: Whatever the task raised (e.g. ``ValueError``, ``WeightsUnavailableError``), as itself.
    """
    directory = worker_dir(settings, _owner_pid())
    request_id = secrets.token_hex(16)
    request = {"task": task, "args": args, "kwargs": kwargs}
    result_path = directory / "results" / f"{request_id}.pkl"
    progress_path = directory / "progress" / f"{request_id}.json"
    _submit(directory, settings, request_id, request)
    if on_progress is not None:
        on_progress(Progress(None, "Waiting for the inference worker..."))
    deadline = time.time() + timeout
    restarted = False
    last_progress: dict[str, Any] | None = None
    pause = _POLL_SECONDS
    while not result_path.exists():
        if time.time() > deadline:
            (directory / "requests" / f"{request_id}.pkl").unlink(missing_ok=True)  # Not started: never start it.
            raise InferenceTimeout(f"The inference worker gave no answer to {task!r} within {timeout:.0f} s.")
        if on_progress is not None:
            current = read_json(progress_path)
            if current is not None and current != last_progress:
                last_progress = current
                on_progress(Progress(current.get("fraction"), str(current.get("text", ""))))
        if _live_pid(directory) is None and not result_path.exists():
            if restarted:
                raise InferenceWorkerDied(
                    f"The inference worker ended while computing {task!r}. Its log ends with:\n{_log_tail(directory)}")
            restarted = True  # Once: a worker that retired or crashed; a request that kills it twice is reported.
            (directory / "running" / f"{request_id}.pkl").unlink(missing_ok=True)
            _submit(directory, settings, request_id, request)
        time.sleep(pause)
        pause = min(pause * 1.5, _MAX_POLL_SECONDS)
    try:
        envelope = read_pickle(result_path)
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as error:
        raise InferenceTaskError(f"The result of {task!r} could not be read: {error}") from error
    finally:
        result_path.unlink(missing_ok=True)
        progress_path.unlink(missing_ok=True)
    if envelope.get("ok"):
        return envelope["value"]
    error = envelope.get("error")
    if isinstance(error, BaseException):
        raise error
    raise InferenceTaskError(str(envelope.get("message", f"The task {task!r} failed.")))
