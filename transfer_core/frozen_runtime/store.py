"""Converted networks on disk (``<cache_dir>/litert/``) and loaded ones in this process.

One conversion per key: the key hashes the backbone, its weights file (name, size and
modification time, so a replaced file gets a new key), the input size, the cut (``pool`` or
``prefix:<layer>``), the precision, the converter's version and TensorFlow's and Keras' versions.
Files::

    <key>.tflite    the flatbuffer, written to a temporary name and renamed into place
    <key>.json      what it is (the key's parts), its SHA-256 and size, the conversion's seconds, and
                    the numeric check once one ran: the weights' fingerprint and the difference found
    <key>.failed    why converting it failed (so that later runs do not try again)
    <key>.lock      held while one process converts; a second one waits, then reads its result

A reader trusts a flatbuffer only when its SHA-256 matches ``<key>.json`` (a damaged flatbuffer
could crash the interpreter, and with it the run). Two processes that convert at once without
the lock (a folder where locking is unsupported) each write whole files by atomic rename: the
last writer wins, and the contents are identical.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from transfer_core.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from transfer_core.frozen_runtime.runner import FrozenModel

log = logging.getLogger(__name__)

FOLDER = "litert"
# Loaded interpreters kept per process (a warm worker's next run, the inference worker's next
# request); each holds its weights and, once run, its tensors for one batch.
MAX_LOADED = 3
# The folder is kept under this size: after a new file is written, the least recently used go first.
MAX_FOLDER_BYTES = 4 * 1024**3
_LOCK_WAIT_SECONDS = 600.0

_loaded: OrderedDict[tuple[str, int], FrozenModel] = OrderedDict()
_loaded_lock = threading.Lock()


def model_key(parts: dict[str, Any]) -> str:
    """The cache key of a converted network described by ``parts`` (JSON-serialisable)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def folder_of(cache_dir: Path) -> Path:
    """Where converted networks live, beside ``features/`` and ``images/``."""
    return Path(cache_dir) / FOLDER


def read_flatbuffer(folder: Path, key: str) -> bytes | None:
    """The stored flatbuffer of ``key`` when it is whole (its SHA-256 matches); else None."""
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        content = (folder / f"{key}.tflite").read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(content).hexdigest():
        return None
    with contextlib.suppress(OSError):  # Recently used, for pruning (the access time only).
        os.utime(folder / f"{key}.tflite")
    return content


def recorded_check(folder: Path, key: str) -> tuple[str, float] | None:
    """``(weights fingerprint, difference)`` of the last passed check of ``key``, or None."""
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        return str(meta["check"]["fingerprint"]), float(meta["check"]["difference"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_check(folder: Path, key: str, fingerprint: str, difference: float) -> None:
    """Remember a passed check in ``<key>.json``, so later workers with the same weights skip it."""
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        meta["check"] = {"fingerprint": fingerprint, "difference": difference}
        atomic_write_json(folder / f"{key}.json", meta)
    except (OSError, ValueError, TypeError) as error:
        log.info("Could not record the check of %s: %s", key, error)


def failure_of(folder: Path, key: str) -> str | None:
    """Why converting ``key`` failed before, or None."""
    try:
        return (folder / f"{key}.failed").read_text().strip() or "unknown error"
    except OSError:
        return None


def convert_once(
    folder: Path, key: str, parts: dict[str, Any], convert: Callable[[], bytes]
) -> tuple[bytes, float]:
    """The flatbuffer of ``key``: read from ``folder``, or made by ``convert()`` now and stored.

    Returns:
        ``(content, seconds spent converting here)``; 0.0 when it was on disk (or another process
        converted it while this one waited for the lock).

    Raises:
        Exception: Whatever ``convert`` raises; the reason is also stored in ``<key>.failed``.
    """
    content = read_flatbuffer(folder, key)
    if content is not None:
        return content, 0.0
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(folder / f"{key}.lock"):
        content = read_flatbuffer(folder, key)  # Converted by another process while we waited.
        if content is not None:
            return content, 0.0
        started = time.perf_counter()
        try:
            content = convert()
        except Exception as error:
            with contextlib.suppress(OSError):
                atomic_write_text(folder / f"{key}.failed", f"{type(error).__name__}: {error}"[:2000])
            raise
        seconds = time.perf_counter() - started
        try:
            atomic_write_bytes(folder / f"{key}.tflite", content)
            atomic_write_json(folder / f"{key}.json", {
                **parts, "key": key, "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content),
                "convert_seconds": round(seconds, 3)})
        except OSError as error:  # A read-only or full disk: the run still uses what it converted.
            log.warning("Could not store the converted network in %s: %s", folder, error)
    _prune(folder, keep=key)
    return content, seconds


def loaded_model(key: str, threads: int, content: Callable[[], bytes]) -> tuple[FrozenModel, bool]:
    """The interpreter of ``key`` kept in this process, or a new one over ``content()``.

    Returns:
        ``(model, True when it was already loaded)``.
    """
    with _loaded_lock:
        model = _loaded.get((key, threads))
        if model is not None:
            _loaded.move_to_end((key, threads))
            return model, True
    model = FrozenModel(content(), threads=threads, key=key)
    with _loaded_lock:
        _loaded[(key, threads)] = model
        while len(_loaded) > MAX_LOADED:
            _loaded.popitem(last=False)
    return model, False


def forget_loaded() -> None:
    """Drop every interpreter kept in this process (tests, benchmarks of a first run)."""
    with _loaded_lock:
        _loaded.clear()


@contextlib.contextmanager
def _conversion_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for up to ``_LOCK_WAIT_SECONDS``; without it when locking fails."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            except OSError:
                break
        yield
    finally:
        os.close(fd)  # Releases the lock.


def _prune(folder: Path, keep: str) -> None:
    """Delete the least recently used flatbuffers (and their files) beyond ``MAX_FOLDER_BYTES``."""
    try:
        entries = [(entry.stat().st_atime, entry.stat().st_size, Path(entry.path))
                   for entry in os.scandir(folder) if entry.name.endswith(".tflite")]
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= MAX_FOLDER_BYTES:
                break
            if path.stem == keep:
                continue
            for suffix in (".tflite", ".json", ".lock"):
                path.with_suffix(suffix).unlink(missing_ok=True)
            total -= size
    except OSError as error:
        log.info("Could not prune %s: %s", folder, error)
