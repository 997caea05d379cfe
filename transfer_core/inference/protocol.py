"""The files the server and the inference worker exchange (no TensorFlow here).

Transport: files under ``<TRANSFER_HOME>/inference/<key>/``, not a socket. Why: the
rest of Transfer Lab already talks to its workers through files (runs, the standby
worker), a request survives a rerun or a server restart, progress is one small file
the page can poll, and a dead worker is seen by the same pid check the job runner
uses. A request costs a few milliseconds of file I/O, nothing next to a forward pass.

Layout of one worker's folder (one worker per server process and settings):

    worker.json       pid and start time of the worker (written by whoever spawned it)
    worker.lock       flock held while spawning, submitting or retiring (no lost request)
    worker.log        its stdout and stderr
    requests/<id>.pkl a request; the worker claims it by renaming it into running/
    running/<id>.pkl  being computed (running/<id>.retried: its first worker died; run once more)
    progress/<id>.json  {"fraction": 0..1, "text": ...} while it runs
    results/<id>.pkl  {"ok": True, "value": ...} or {"ok": False, "error": exception}; kept an hour

A request's id is a hash of its task and inputs (``client.request_key``): asking again with
the same inputs (a rerun, a reload, another tab) finds the same request instead of a new
one. Only a session holding the inputs (its run paths, its uploads) can name a result, so
one session never reads another's. Payloads are pickles written by this user's
own processes in a 0700 folder; they are read back with :func:`read_pickle`, which
only builds classes from NumPy, pandas, the standard library and ``transfer_core``
(results are plain data: dataclasses, arrays, frames; never Keras objects).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBDIRS = ("requests", "running", "progress", "results")
# Modules whose classes a payload may contain: plain data only.
PLAIN_DATA_MODULES = ("builtins", "collections", "copyreg", "datetime", "numpy", "pandas", "pathlib", "_codecs",
                    "transfer_core", "decimal", "zoneinfo", "pytz", "dateutil", "pyarrow")


class InferenceError(RuntimeError):
    """An inference request failed for a reason outside the task (worker died, timed out, bad payload)."""


class InferenceTimeout(InferenceError):
    """No result within the time allowed."""


class InferenceWorkerDied(InferenceError):
    """The worker process ended without answering (twice: once it is restarted)."""


class InferenceTaskError(InferenceError):
    """The task raised an exception that could not be sent back as itself."""


def worker_key(settings: Settings, owner_pid: int) -> str:
    """One worker per (interpreter, code, settings, owner process)."""
    from transfer_core.jobs import settings_env

    inherited = {k: v for k, v in os.environ.items() if k.startswith(("TF_", "KERAS_", "CUDA_"))}
    payload = json.dumps([sys.executable, str(REPO_ROOT), owner_pid,
                          sorted({**inherited, **settings_env(settings)}.items())])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def worker_path(settings: Settings, owner_pid: int) -> Path:
    """Where the folder of the worker that serves ``owner_pid`` is; nothing is created (a page that
    only looks for an answer writes nothing)."""
    return Path(settings.home).resolve() / "inference" / worker_key(settings, owner_pid)


def worker_dir(settings: Settings, owner_pid: int) -> Path:
    """The folder of the worker that serves ``owner_pid`` under ``settings`` (created, mode 0700)."""
    directory = worker_path(settings, owner_pid)
    root = directory.parent
    for sub in SUBDIRS:
        (directory / sub).mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(root, 0o700)
    return directory


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the folder's lock: spawning, submitting and retiring never interleave."""
    with open(directory / "worker.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_pickle(path: Path, value: Any) -> None:
    """Write ``value`` atomically (readers never see half a file)."""
    atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".", 1)[0] not in PLAIN_DATA_MODULES:
            raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from an inference payload.")
        return super().find_class(module, name)


def read_pickle(path: Path) -> Any:
    """Read a payload written by :func:`write_pickle`, building only plain-data classes."""
    return _PlainDataUnpickler(io.BytesIO(Path(path).read_bytes())).load()


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON file, or None while it is missing or being replaced."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
