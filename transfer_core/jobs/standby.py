"""The standby worker: a process with TensorFlow already imported, waiting for the next run.

Importing TensorFlow takes ~3 s of every worker's start (more on a weak laptop), longer than a
whole feature-extraction run on cached features. The app server therefore keeps one worker that
has already imported it, waiting in ``<home>/standby``; the next run hands it its run directory.
Each run still gets a fresh process (decision 1). The server starts the first standby; after
that, each worker that came from the server starts the next one when its run has ended, so the
import never takes CPU from a training run. A standby retires after STANDBY_IDLE_SECONDS or
when the server that owns it is gone. (The standby's own loop is in :mod:`.standby_worker`.)

Files, all named ``<key>-<pid>.<state>`` (key: the settings and environment a worker gets, so a
standby only serves runs it would have been started for):
  .warming  written by whoever spawned the standby (at most one warming or ready per key);
  .ready    renamed from .warming by the standby once its imports are done;
  .claimed  renamed from .ready by the server that takes it (rename is atomic: one taker);
  .job      the run directory, written by that server; the standby reads it and trains.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_json, atomic_write_text
from transfer_core.jobs.spawn import STANDBY_KEY_ENV, STANDBY_OWNER_ENV, spawn, standby_key, worker_env
from transfer_core.processes import process_alive, process_start_time

STANDBY_IDLE_SECONDS = 900.0
STANDBY_PREBUILD_ENV = "TL_STANDBY_PREBUILD"  # JSON: the backbone to build while waiting


def standby_dir(settings: Settings) -> Path:
    return Path(settings.home).resolve() / "standby"


class Standby:
    """A standby worker this server has claimed."""

    def __init__(self, directory: Path, key: str, pid: int) -> None:
        self.directory, self.key, self.pid = directory, key, pid

    def assign(self, run_dir: Path) -> None:
        atomic_write_text(self.directory / f"{self.key}-{self.pid}.job", str(Path(run_dir).resolve()))


def standby_entries(directory: Path, key: str, state: str) -> list[tuple[Path, int]]:
    """Files of live standbys in ``state``; files of dead ones are removed."""
    if not directory.exists():
        return []
    entries = []
    for path in sorted(directory.glob(f"{key}-*.{state}")):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])
            start_time = json.loads(path.read_text()).get("start_time")
        except (OSError, ValueError, IndexError, json.JSONDecodeError, AttributeError):
            continue  # Being renamed right now, or not ours.
        if process_alive(pid, start_time):
            entries.append((path, pid))
        else:
            path.unlink(missing_ok=True)
    return entries


def _start_standby_unless_one_exists(directory: Path, key: str, env: dict[str, str]) -> None:
    if standby_entries(directory, key, "warming") or standby_entries(directory, key, "ready"):
        return
    directory.mkdir(parents=True, exist_ok=True)
    pid = spawn(["standby", str(directory), key], env, directory / f"{key}.log")
    atomic_write_json(directory / f"{key}-{pid}.warming", {"start_time": process_start_time(pid)})


def ensure_standby(settings: Settings) -> None:
    """Start a standby worker for ``settings`` unless one is already warming or ready (the app
    calls this once when it starts, so even its first run finds TensorFlow loaded). Nothing with
    the Ray executor: runs train on the cluster, and the server keeps no TensorFlow process."""
    if settings.executor == "ray":
        return
    _start_standby_unless_one_exists(standby_dir(settings), standby_key(settings), worker_env(settings))


def start_successor_standby(settings: Settings, run_dir: Path) -> None:
    """Called by a worker whose run has ended: the next standby, if the server still lives."""
    key, owner = os.environ.get(STANDBY_KEY_ENV), os.environ.get(STANDBY_OWNER_ENV, "")
    if not key or not owner.isdigit() or not process_alive(int(owner), None):
        return
    env = {k: v for k, v in os.environ.items() if k != STANDBY_PREBUILD_ENV}
    prebuild = prebuild_hint(run_dir)
    if prebuild:
        env[STANDBY_PREBUILD_ENV] = prebuild
    with contextlib.suppress(OSError):  # A standby is an optimisation; never fail a run over it.
        _start_standby_unless_one_exists(standby_dir(settings), key, env)


def prebuild_hint(run_dir: Path) -> str | None:
    """The backbone the next standby should build while it waits: after a feature-extraction
    run, the likely next run is another head on the same backbone (it reuses a built one)."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
        model, train = config["model"], config["train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (train.get("strategy") != "feature_extraction" or model.get("weights") != "imagenet"
            or train.get("distribution", "none") != "none"):
        return None
    return json.dumps({"backbone": model.get("backbone"), "input_size": model.get("input_size", 0),
                       "precision": train.get("precision", "float32")})


def claim_standby(settings: Settings) -> Standby | None:
    """Take a ready standby of ``settings`` for one run, or None when none is ready."""
    directory, key = standby_dir(settings), standby_key(settings)
    for path, pid in standby_entries(directory, key, "ready"):
        try:
            os.rename(path, path.with_suffix(".claimed"))
        except FileNotFoundError:
            continue  # Another server took it, or it retired.
        return Standby(directory, key, pid)
    return None


def shutdown_standby(settings: Settings) -> None:
    """End idle standby workers of ``settings`` (tests, a server shutting down)."""
    directory, key = standby_dir(settings), standby_key(settings)
    for state in ("warming", "ready"):
        for path, pid in standby_entries(directory, key, state):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            path.unlink(missing_ok=True)
