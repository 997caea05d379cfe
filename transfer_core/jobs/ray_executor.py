"""The Ray executor: each run is a task on the Ray cluster at ``Settings.ray_address``.

The task runs the same worker code (:func:`transfer_core.jobs.runner.run_worker`) on the run
directory, so run directories must live on storage every node of the cluster shares (README,
"Ray cluster"). The process that submits runs (the app server, the command line) is the
tasks' Ray driver and owner; it trains nothing. Ray is optional: it is imported only here,
inside functions, and only when ``TRANSFER_EXECUTOR=ray``.

Liveness: until its task starts, a run's ``worker.pid`` names its owner (Ray ends the tasks
of an owner that dies, so a dead owner rightly shows the run interrupted). A task on the
owner's machine writes its own pid there, like any worker, so a killed task shows the run
interrupted at once. A task on another machine leaves the owner's pid (a pid from another
machine means nothing here); the owner watches the task and, when Ray reports it lost,
marks the pid file dead.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import threading
from pathlib import Path
from typing import Any

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_json
from transfer_core.jobs.queue import register_in_queue
from transfer_core.jobs.runner import output_to, run_worker
from transfer_core.jobs.spawn import REPO_ROOT, settings_env
from transfer_core.runs import TERMINAL_EVENTS, EventLog, read_events, write_pid

RAY_TASK_FILE = "ray_task.json"  # In a run directory: the run is (or was) a Ray task.

# Resolved run directory -> (ObjectRef, queue entry or None) of the tasks this process submitted.
_tasks: dict[str, tuple[Any, Path | None]] = {}
_tasks_lock = threading.Lock()
# Each browser session's script runs in its own thread of the server: two Starts at once must not
# both call ray.init ("Perhaps you called ray.init twice by accident?").
_connect_lock = threading.Lock()


def is_ray_run(run_dir: Path) -> bool:
    return (Path(run_dir) / RAY_TASK_FILE).exists()


def _connect(settings: Settings):
    """Join the cluster once per process; returns the ``ray`` module."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "TRANSFER_EXECUTOR=ray needs Ray: pip install -r requirements-ray.txt"
        ) from None
    with _connect_lock:
        if not ray.is_initialized():
            _check_reachable(settings.ray_address)
            try:
                ray.init(address=settings.ray_address or "auto", log_to_driver=False, configure_logging=False)
            except ConnectionError as error:
                # Ray only says "Failed to connect"; the reason is in the chained error's text.
                if "InvalidAuthToken" not in f"{error} {error.__cause__}":
                    raise
                raise ConnectionError(
                    f"the Ray cluster at {settings.ray_address or 'auto'} uses token authentication and this "
                    "process has no valid token: start the app server with the cluster's RAY_AUTH_MODE=token and "
                    "its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token; README, \"Ray cluster (optional)\")"
                ) from None
    return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at a ``host:port`` address: ``ray.init`` would wait for it
    without end (a Start click that never returns). ``auto`` and ``ray://`` addresses are left to Ray."""
    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()  # "[::1]:6379" too.
    except (OSError, ValueError) as error:
        raise ConnectionError(
            f"no Ray cluster answers at RAY_ADDRESS={address} ({error}); start one with "
            "`ray start --head` (README, \"Ray cluster (optional)\") or unset TRANSFER_EXECUTOR"
        ) from None


def _task(run_dir: str, settings: dict[str, Any], owner_node: str) -> int:
    """What a Ray worker runs: the worker code. Ray reuses the worker process for the next run
    with the same environment (decision 11: TensorFlow stays imported, backbones stay built), up
    to ``Settings.worker_max_runs`` runs (``max_calls``); Keras is reset between runs."""
    import ray

    from transfer_core.jobs.standby_worker import resident_mb
    from transfer_core.models import recycle_backbones

    recycle_backbones()  # The run's model is saved and dropped before this worker's next run.

    run_path = Path(run_dir)
    worker_settings = Settings.from_dict(settings)
    node = ray.get_runtime_context().get_node_id()
    with output_to(run_path):
        atomic_write_json(run_path / RAY_TASK_FILE, {"pid": os.getpid(), "node": node, "owner_node": owner_node})
        status = run_worker(run_path, worker_settings, record_pid=node == owner_node)
    from transfer_core.training import release_run_state

    release_run_state()
    if resident_mb() > worker_settings.worker_max_memory_mb:
        # Retire above the memory ceiling. The run's files are complete (its terminal event is
        # written); the owner's watcher reads that and does not mark the run lost.
        os._exit(0)
    return status


@functools.cache
def _remote_task(max_runs: int):
    import ray

    # No retries: a lost worker shows the run interrupted; rerunning it would mix two runs' events.
    return ray.remote(max_retries=0, max_calls=max_runs)(_task)


def _task_env(settings: Settings) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k.startswith(("TRANSFER_", "TF_", "KERAS_"))}
    env = {**inherited, **settings_env(settings)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def _resolved(settings: Settings) -> Settings:
    """Absolute paths: the task's working directory is Ray's, not this process's."""
    return dataclasses.replace(
        settings,
        home=Path(settings.home).resolve(),
        weights_dir=Path(settings.weights_dir).resolve() if settings.weights_dir is not None else None,
        allowed_data_dirs=tuple(Path(p).resolve() for p in settings.allowed_data_dirs),
    )


def submit_run(run_dir: Path, settings: Settings, *, queued: bool) -> None:
    """Submit the run at ``run_dir`` as a Ray task; returns at once.

    Args:
        run_dir: A run directory on storage the cluster shares.
        settings: Per-run resources (``ray_num_cpus``, ``ray_num_gpus``) and the worker's settings.
        queued: Take a place in the server's queue view now (False for a run that waits for
            another run first).
    """
    ray = _connect(settings)
    run_dir = Path(run_dir).resolve()
    owner_pid = os.getpid()
    write_pid(run_dir, owner_pid, owner=True)
    atomic_write_json(run_dir / RAY_TASK_FILE, {"owner_pid": owner_pid})
    entry = register_in_queue(settings, run_dir, owner_pid) if queued else None
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "queued", "position": None, "message": "waiting for the Ray cluster to run it"})
    ref = _remote_task(settings.worker_max_runs).options(
        num_cpus=settings.ray_num_cpus,
        num_gpus=settings.ray_num_gpus,
        runtime_env={"env_vars": _task_env(settings)},
    ).remote(str(run_dir), _resolved(settings).to_dict(), ray.get_runtime_context().get_node_id())
    with _tasks_lock:
        _tasks[str(run_dir)] = (ref, entry)
    threading.Thread(target=_watch, args=(run_dir, ref, owner_pid), daemon=True).start()


def _forget(run_dir: Path) -> None:
    """Drop a task that ended or was cancelled; its queue entry too (the task may never have
    started, and the entry's holder, this process, still lives)."""
    with _tasks_lock:
        _, entry = _tasks.pop(str(run_dir), (None, None))
    if entry is not None:
        entry.unlink(missing_ok=True)


def _watch(run_dir: Path, ref, owner_pid: int) -> None:
    """Wait for the task; when Ray lost it before the run ended, mark the run's worker dead."""
    import ray

    try:
        ray.get(ref)
        return
    except SystemExit:
        return  # This process is leaving the cluster (ray.shutdown): its tasks end with it.
    except Exception:  # noqa: BLE001 - any failure of the task itself (lost worker, cancelled, node gone).
        pass
    finally:
        _forget(run_dir)
    events, _ = read_events(run_dir / "events.jsonl")
    if any(e.get("type") in TERMINAL_EVENTS for e in events):
        return
    # Start time 0: no live process matches it, so the run reads as interrupted.
    atomic_write_json(run_dir / "worker.pid", {"pid": owner_pid, "start_time": 0.0, "lost": "ray task lost"})


def cancel_run(run_dir: Path) -> bool:
    """Force-cancel the run's Ray task (the stop file was not honoured in time).

    Returns:
        True if this process had submitted the task and asked Ray to cancel it.
    """
    run_dir = Path(run_dir).resolve()
    with _tasks_lock:
        ref, _ = _tasks.get(str(run_dir), (None, None))
    if ref is None:
        return False
    import ray

    ray.cancel(ref, force=True)
    _forget(run_dir)
    return True
