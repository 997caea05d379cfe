"""The inference worker's loop: claim a request, run its task, write the result.

Started by :func:`transfer_core.inference.client.ensure_worker` as
``python -m transfer_core.inference.worker <folder> <owner pid> <idle seconds>``.
TensorFlow is imported here, once; requests run one at a time (Keras' state is
per process, and two forward passes would only share the same CPU cores).
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from transfer_core.fileio import atomic_write_json
from transfer_core.inference.protocol import PLAIN_DATA_MODULES, locked, read_json, read_pickle, write_pickle
from transfer_core.processes import process_alive

_POLL_SECONDS = 0.05
_ORPHAN_SECONDS = 3600.0  # Results are kept this long for reruns, reloads and other tabs that ask again.


def _next_request(directory: Path) -> tuple[str, Path] | None:
    """Claim the oldest waiting request by renaming it (only one claimer can win a rename)."""
    waiting = sorted((directory / "requests").glob("*.pkl"), key=lambda p: (_mtime(p), p.name))
    for path in waiting:
        running = directory / "running" / path.name
        try:
            os.rename(path, running)
        except FileNotFoundError:
            continue  # Withdrawn by a client that gave up.
        return path.stem, running
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _serve(directory: Path, request_id: str, path: Path) -> None:
    from transfer_core.inference.tasks import TASKS

    progress_path = directory / "progress" / f"{request_id}.json"
    last = [0.0]

    def progress(fraction: float | None, text: str) -> None:
        now = time.time()
        if now - last[0] >= 0.2 or fraction == 1.0:  # At most 5 writes a second.
            last[0] = now
            atomic_write_json(progress_path, {"fraction": fraction, "text": text})

    started = time.time()
    request: dict = {}
    try:
        request = read_pickle(path)
        task = TASKS[request["task"]]
        envelope = {"ok": True, "value": task(progress, *request["args"], **request["kwargs"])}
    except Exception as error:  # noqa: BLE001 - every failure goes back to the caller.
        detail = traceback.format_exc()
        print(detail, file=sys.stderr, flush=True)
        envelope = {"ok": False, "message": f"{type(error).__name__}: {error}"}
        if type(error).__module__.split(".", 1)[0] in PLAIN_DATA_MODULES:
            envelope["error"] = error  # Raised again, as itself, in the caller (e.g. ValueError, ImageRejected).
    # One line per request served, in worker.log before the result appears: what ran, and how long.
    print(f"served {request.get('task', '?')} {request_id} in {time.time() - started:.1f} s", flush=True)
    result = directory / "results" / f"{request_id}.pkl"
    try:
        write_pickle(result, envelope)
    except Exception as error:  # noqa: BLE001 - e.g. an exception that does not pickle.
        write_pickle(result, {"ok": False, "message": f"{type(error).__name__} while sending the result: {error}; "
                                                      f"the task said: {envelope.get('message', 'ok')}"})
    path.unlink(missing_ok=True)


def _remove_orphans(directory: Path) -> None:
    cutoff = time.time() - _ORPHAN_SECONDS
    for sub in ("results", "progress"):
        for path in (directory / sub).iterdir():
            if _mtime(path) < cutoff:
                path.unlink(missing_ok=True)


def _retire(directory: Path) -> bool:
    """Leave unless a request arrived meanwhile; under the lock, so no client submits to a leaving worker."""
    with locked(directory):
        if any((directory / "requests").glob("*.pkl")):
            return False
        info = read_json(directory / "worker.json")
        if info is not None and info.get("pid") == os.getpid():
            (directory / "worker.json").unlink(missing_ok=True)
        return True


def main(directory: Path, owner: int, idle_seconds: float) -> int:
    """Serve requests in ``directory`` until idle for ``idle_seconds`` or ``owner`` has ended."""
    import tensorflow as tf

    import transfer_core.inference.tasks  # noqa: F401 - the imports are the slow part; do them once, now.

    tf.constant(1.0) + 1.0  # Starts TensorFlow's runtime too.
    idle_until = time.time() + idle_seconds
    next_sweep = 0.0
    while True:
        claimed = _next_request(directory)
        if claimed is not None:
            _serve(directory, *claimed)
            idle_until = time.time() + idle_seconds
            continue
        if (time.time() > idle_until or not process_alive(owner, None)) and _retire(directory):
            return 0
        if time.time() > next_sweep:
            _remove_orphans(directory)
            next_sweep = time.time() + 60
        time.sleep(_POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
