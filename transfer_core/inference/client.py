"""Ask the inference worker to compute something; wait for the answer (no TensorFlow here).

The web server only serves (ARCHITECTURE.md, decision 8): every TensorFlow call of the pages
(block maps, ImageNet guesses, predictions, Grad-CAM, embeddings, parity checks, the
learning-rate finder) runs in one long-lived worker process per server process and
settings, started here on first use. It keeps TensorFlow and recently used models
loaded, so a Grad-CAM costs a forward and a backward pass, not an import. It retires
after :data:`IDLE_SECONDS` without work, or when the process that started it is gone.

    value = call(settings, "block_map", settings, "mobilenet_v2_0.35", 96, on_progress=show)

A request is a file named by a hash of its inputs (:func:`request_key`); see
:mod:`transfer_core.inference.protocol` for the layout and why. So a request is never lost
and never run twice: a page that reruns, is reloaded or is opened in another tab asks again
with the same inputs and finds the request already queued, running or answered.
:func:`request` submits without waiting (``Pending`` or ``Done``), :func:`peek` only looks,
:func:`ask` submits only if never asked; pages poll them from a fragment instead of waiting
inside the script run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
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
    worker_path,
    write_pickle,
)
from transfer_core.processes import process_alive, process_start_time

__all__ = ["DEFAULT_TIMEOUT", "IDLE_SECONDS", "Done", "Pending", "Progress", "ask", "asked", "call", "ensure_worker", "peek",
           "request", "request_key", "shutdown", "worker_pid"]

IDLE_SECONDS = 600.0  # A class pauses for minutes; re-importing TensorFlow costs seconds of every student's time.
DEFAULT_TIMEOUT = 900.0
_POLL_SECONDS = 0.05
_MAX_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Progress:
    """How far a request has come: ``fraction`` 0..1 (None while unknown) and what it does now."""

    fraction: float | None
    text: str


@dataclass(frozen=True)
class Pending:
    """A request queued or running in the worker: its key and how far it has come."""

    key: str
    progress: Progress


@dataclass(frozen=True)
class Done:
    """A request the worker answered: :meth:`result` returns its value or raises what the task raised."""

    key: str
    envelope: dict[str, Any]
    task: str

    @property
    def ok(self) -> bool:
        return bool(self.envelope.get("ok"))

    def result(self) -> Any:
        if self.ok:
            return self.envelope["value"]
        error = self.envelope.get("error")
        if isinstance(error, BaseException):
            raise error
        raise InferenceTaskError(str(self.envelope.get("message", f"The task {self.task!r} failed.")))


def request_key(task: str, args: tuple, kwargs: dict[str, Any]) -> str:
    """The request's id: a hash of the task and its inputs (the same inputs give the same key).

    A session can only name a result whose inputs it holds (its own run paths, uploads and
    settings), so keys keep one session's results from another as the random ids did.
    """
    payload = pickle.dumps((task, args, sorted(kwargs.items())), protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(payload).hexdigest()[:32]


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
        state = _state(directory, request_id)
        if state == "done" and not _succeeded(directory / "results" / f"{request_id}.pkl"):
            (directory / "results" / f"{request_id}.pkl").unlink(missing_ok=True)  # Asked again: try again.
        elif state != "none":
            return  # Another rerun, tab or session asked first: never run it twice.
        write_pickle(directory / "requests" / f"{request_id}.pkl", request)
        if _live_pid(directory) is None:
            _spawn(directory, settings, _owner_pid(), IDLE_SECONDS)


def _state(directory: Path, request_id: str) -> str:
    """``done``, ``running``, ``queued`` or ``none`` (never asked, or withdrawn)."""
    for state, sub in (("done", "results"), ("running", "running"), ("queued", "requests")):
        if (directory / sub / f"{request_id}.pkl").exists():
            return state
    return "none"


def _succeeded(result_path: Path) -> bool:
    try:
        return bool(read_pickle(result_path).get("ok"))
    except (OSError, pickle.UnpicklingError, AttributeError, ImportError, EOFError):
        return False


def _log_tail(directory: Path, chars: int = 2000) -> str:
    try:
        return (directory / "worker.log").read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _read_done(directory: Path, request_id: str, task: str) -> Done:
    result_path = directory / "results" / f"{request_id}.pkl"
    try:
        envelope = read_pickle(result_path)
    except (pickle.UnpicklingError, AttributeError, ImportError, EOFError) as error:
        result_path.unlink(missing_ok=True)
        raise InferenceTaskError(f"The result of {task!r} could not be read: {error}") from error
    (directory / "running" / f"{request_id}.retried").unlink(missing_ok=True)
    return Done(request_id, envelope, task)  # A failure too stays until someone asks again (request()).


def _revive(directory: Path, settings: Settings, request_id: str, task: str) -> None:
    """Run a request again, once, when its worker ended without answering it (retired or crashed)."""
    retried = directory / "running" / f"{request_id}.retried"
    with locked(directory):
        if _live_pid(directory) is not None or _state(directory, request_id) == "done":
            return
        running = directory / "running" / f"{request_id}.pkl"
        if running.exists():
            if retried.exists():
                running.unlink(missing_ok=True)
                retried.unlink(missing_ok=True)
                write_pickle(directory / "results" / f"{request_id}.pkl", {
                    "ok": False, "message": f"The inference worker ended while computing {task!r}. "
                                            f"Its log ends with:\n{_log_tail(directory)}"})
                return
            retried.touch()
            os.replace(running, directory / "requests" / f"{request_id}.pkl")
        if (directory / "requests" / f"{request_id}.pkl").exists():
            _spawn(directory, settings, _owner_pid(), IDLE_SECONDS)


def peek(settings: Settings, task: str, *args: Any, **kwargs: Any) -> Pending | Done | None:
    """Where the request with these inputs stands, without submitting it (None: never asked).

    A pending request whose worker ended is restarted (once); a second death is a failed ``Done``.
    """
    directory = worker_path(settings, _owner_pid())
    request_id = request_key(task, args, kwargs)
    state = _state(directory, request_id)
    if state == "none":
        return None
    if state != "done" and _live_pid(directory) is None:
        _revive(directory, settings, request_id, task)
        state = _state(directory, request_id)
    if state == "done":
        return _read_done(directory, request_id, task)
    current = read_json(directory / "progress" / f"{request_id}.json") if state == "running" else None
    if current is None:
        text = "Waiting for the inference worker..." if state == "queued" else "Starting..."
        return Pending(request_id, Progress(None, text))
    return Pending(request_id, Progress(current.get("fraction"), str(current.get("text", ""))))


def asked(settings: Settings, task: str, *args: Any, **kwargs: Any) -> bool:
    """Whether the request with these inputs was made (queued, running or answered); reads no result."""
    return _state(worker_path(settings, _owner_pid()), request_key(task, args, kwargs)) != "none"


def request(settings: Settings, task: str, *args: Any, **kwargs: Any) -> Pending | Done:
    """Ask for ``task`` with these inputs unless it was asked already; return at once.

    The answer stays on disk (``results/<key>.pkl``, removed an hour after it was last written),
    so every rerun, reload or tab that asks again with the same inputs gets the same answer.
    """
    directory = worker_dir(settings, _owner_pid())
    request_id = request_key(task, args, kwargs)
    _submit(directory, settings, request_id, {"task": task, "args": args, "kwargs": kwargs})
    outcome = peek(settings, task, *args, **kwargs)
    return outcome if outcome is not None else Pending(request_id, Progress(None, "Waiting for the inference worker..."))


def ask(settings: Settings, task: str, *args: Any, **kwargs: Any) -> Pending | Done:
    """Ask for ``task`` with these inputs only if never asked: what a page shows without a click.

    Unlike :func:`request`, a failed answer stays (it is shown, not recomputed on every rerun);
    a person's click asks again with :func:`request`.
    """
    outcome = peek(settings, task, *args, **kwargs)
    return outcome if outcome is not None else request(settings, task, *args, **kwargs)


def call(
    settings: Settings,
    task: str,
    *args: Any,
    on_progress: Callable[[Progress], None] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> Any:
    """Run ``task`` (a name in ``transfer_core.inference.tasks.TASKS``) in the worker and return its result.

    The blocking form of :func:`request`: a call interrupted by a rerun leaves its request
    running, and the next call with the same inputs waits for that one.

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
    outcome = request(settings, task, *args, **kwargs)
    deadline = time.time() + timeout
    last_progress: Progress | None = None
    pause = _POLL_SECONDS
    while isinstance(outcome, Pending):
        if on_progress is not None and outcome.progress != last_progress:
            last_progress = outcome.progress
            on_progress(outcome.progress)
        if time.time() > deadline:
            directory = worker_dir(settings, _owner_pid())
            (directory / "requests" / f"{outcome.key}.pkl").unlink(missing_ok=True)  # Not started: never start it.
            raise InferenceTimeout(f"The inference worker gave no answer to {task!r} within {timeout:.0f} s.")
        time.sleep(pause)
        pause = min(pause * 1.5, _MAX_POLL_SECONDS)
        outcome = peek(settings, task, *args, **kwargs)
        if outcome is None:  # Withdrawn by a caller that timed out: ask again.
            outcome = request(settings, task, *args, **kwargs)
    if not outcome.ok and "ended while computing" in str(outcome.envelope.get("message", "")):
        raise InferenceWorkerDied(outcome.envelope["message"])
    return outcome.result()
