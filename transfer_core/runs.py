"""The run store: one directory per run, plain files, written atomically.

Layout of ``<runs_dir>/<run_id>/``:

- ``config.json``   the RunConfig (written once, at creation)
- ``events.jsonl``  append-only event stream, one JSON object per line
- ``worker.pid``    pid and start time of the process the run's life hangs on: its worker
                    while it trains, or (``"holder": "owner"``) the process that started it
                    while it waits in the queue with no worker yet
- ``claim``         created once, exclusively: by the warm worker that takes the queued run, or
                    by a Stop that cancels it first (see :mod:`transfer_core.jobs.pool`)
- ``stop``          present when a stop was requested
- ``metrics.csv``   one row per epoch (written at the end)
- ``model.keras``   the trained model (written at the end)
- ``report.json``   evaluation and summary; written last, so its presence
                    means the run's artefacts are complete

A run's status is derived from files, never held in memory: the last terminal
event wins; otherwise a live worker means queued/running; a dead worker without
a terminal event means the run was interrupted.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transfer_core.config import RunConfig
from transfer_core.events import TERMINAL_EVENTS, validate_event
from transfer_core.fileio import atomic_write_json, json_default
from transfer_core.processes import process_alive, process_start_time
from transfer_core.report import RunReport

if TYPE_CHECKING:
    import pandas as pd

# Set (tests/conftest.py does) to make every EventLog refuse an event transfer_core.events does not declare.
CHECK_EVENTS_ENV = "TRANSFER_CHECK_EVENTS"


class EventLog:
    """Append-only JSON-lines writer; each event is one ``write`` on an O_APPEND fd.

    Lines are flushed as they are written so a page polling the file sees each
    batch as it ends. A line is never split between two writers.

    With ``check=True`` (default: ``$TRANSFER_CHECK_EVENTS`` is ``1``) a write whose type or
    fields are not declared in :mod:`transfer_core.events`, or hold the wrong JSON type, raises
    ``ValueError``. Missing fields are not checked here, so a test may write a partial event;
    tests/unit/test_events.py checks that real runs write complete ones.
    """

    def __init__(self, path: Path, *, check: bool | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._started = time.time()
        self.check = os.environ.get(CHECK_EVENTS_ENV) == "1" if check is None else check

    def __call__(self, event: dict[str, Any]) -> None:
        self.write(event)

    def write(self, event: dict[str, Any]) -> None:
        if self.check:
            problems = validate_event(event, complete=False)
            if problems:
                raise ValueError(f"Undeclared event written to {self.path}: {'; '.join(problems)}")
        record = {"time": round(time.time(), 4), **event}
        line = json.dumps(record, default=json_default, allow_nan=True) + "\n"
        os.write(self._fd, line.encode("utf-8"))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Read complete event lines from byte ``offset`` on.

    Returns:
        ``(events, new_offset)``; a trailing partial line (a writer mid-write)
        is left for the next call.
    """
    path = Path(path)
    if not path.exists():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    events = []
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            events.append({"type": "corrupt_line", "text": line[:200].decode("utf-8", "replace")})
    return events, offset + end + 1


class RunStatus(StrEnum):
    """Where a run is, derived from its files (see :func:`load_run`).

    A ``str``: ``info.status == "finished"``, JSON and table cells keep working with the plain words.
    Finished, stopped and failed are also the terminal event types (``events.TERMINAL_EVENTS``).
    """

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def is_active(self) -> bool:
        """Queued or running: the run may still change."""
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass
class RunInfo:
    """What the store knows about one run, read from its files."""

    run_id: str
    path: Path
    config: RunConfig | None
    status: RunStatus
    reason: str
    created: float
    last_event: dict[str, Any] | None
    report: RunReport | None

    def __post_init__(self) -> None:
        self.status = RunStatus(self.status)  # A plain word is accepted; an unknown one is a ValueError.

    @property
    def is_active(self) -> bool:
        return self.status.is_active

    @property
    def strategy(self) -> str:
        return self.config.train.strategy if self.config else "?"

    @property
    def model_path(self) -> Path:
        return self.path / "model.keras"

    def metrics(self) -> pd.DataFrame:
        """Per-epoch metrics: from metrics.csv when finished, else from the events."""
        import pandas as pd  # Here, not at the top: a queued worker imports this module and waits.

        csv_path = self.path / "metrics.csv"
        if csv_path.exists():
            return pd.read_csv(csv_path)
        events, _ = read_events(self.path / "events.jsonl")
        return epoch_frame(events)

    def events(self) -> list[dict[str, Any]]:
        return read_events(self.path / "events.jsonl")[0]


EPOCH_COLUMNS = [
    "epoch",
    "stage",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "seconds",
    "elapsed",
    "images_per_second",
]


def epoch_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ``epoch_end`` event, with the columns of ``metrics.csv``."""
    import pandas as pd

    rows = [{c: e.get(c) for c in EPOCH_COLUMNS} for e in events if e.get("type") == "epoch_end"]
    return pd.DataFrame(rows, columns=EPOCH_COLUMNS)


def batch_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ``batch_end`` event: step (global), epoch, stage, loss, accuracy."""
    import pandas as pd

    rows = [e for e in events if e.get("type") == "batch_end"]
    frame = pd.DataFrame(rows, columns=["step", "epoch", "stage", "batch", "loss", "accuracy"])
    return frame


def new_run_id(config: RunConfig) -> str:
    """Sortable and unguessable: UTC time, strategy, random suffix."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{config.train.strategy}-{secrets.token_hex(4)}"


class RunStore:
    """Runs under one folder. Cheap to construct; holds no state but the path."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def create(self, config: RunConfig) -> Path:
        """Make a new run directory holding ``config.json``; returns its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = new_run_id(config)
        path = self.root / run_id
        path.mkdir()
        atomic_write_json(path / "config.json", config.to_dict())
        return path

    def path_of(self, run_id: str) -> Path:
        """The directory of ``run_id``; refuses ids that would leave the store."""
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise ValueError(f"Not a run id. Received: run_id={run_id!r}")
        return self.root / run_id

    def ids(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            (p.name for p in self.root.iterdir() if p.is_dir() and (p / "config.json").exists()),
            reverse=True,
        )

    def load(self, run_id: str) -> RunInfo:
        """Read one run. Raises FileNotFoundError for an unknown id."""
        return load_run(self.path_of(run_id))

    def list_runs(self) -> list[RunInfo]:
        """All runs, newest first. Unreadable runs are listed as failed, never hidden."""
        return [self.load(run_id) for run_id in self.ids()]

    def delete(self, run_id: str) -> None:
        """Delete a run that is not active. Raises RuntimeError for a live run."""
        info = self.load(run_id)
        if info.is_active:
            raise RuntimeError(f"Run {run_id} is {info.status}; stop it before deleting it.")
        shutil.rmtree(info.path)

    def __iter__(self) -> Iterator[RunInfo]:
        return iter(self.list_runs())


def load_run(path: Path) -> RunInfo:
    """Read a run directory into a :class:`RunInfo` (status derived from its files)."""
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"No run at {path} (config.json is missing).")
    config: RunConfig | None
    reason = ""
    try:
        config = RunConfig.from_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        config, reason = None, f"config.json is unreadable: {error}"
    events, _ = read_events(path / "events.jsonl")
    typed = [e for e in events if "type" in e]
    last = typed[-1] if typed else None
    terminal = next((e for e in reversed(typed) if e["type"] in TERMINAL_EVENTS), None)
    report, report_problem = _read_report(path / "report.json")
    if config is None:
        status = RunStatus.FAILED
    elif terminal is not None:
        status = RunStatus(terminal["type"])
        reason = terminal.get("reason", "")
        if status in (RunStatus.FINISHED, RunStatus.STOPPED) and report is None:
            # A terminal event without the report means the writes did not complete.
            status, reason = RunStatus.INTERRUPTED, report_problem or "the run ended before its report was written"
    elif worker_alive(path):
        # "starting": the worker holds a slot and is loading TensorFlow; no longer queued.
        started = any(e["type"] in ("starting", "run_started") for e in typed)
        status = RunStatus.RUNNING if started else RunStatus.QUEUED
    else:
        status = RunStatus.INTERRUPTED
        reason = "the worker process ended without finishing (killed, crashed or the server restarted)"
    return RunInfo(
        run_id=path.name,
        path=path,
        config=config,
        status=status,
        reason=reason,
        created=config_path.stat().st_mtime,
        last_event=last,
        report=report,
    )


def _read_report(path: Path) -> tuple[RunReport | None, str]:
    """The run's report, or None and why (missing: no reason; damaged: the reason)."""
    if not path.exists():
        return None, ""
    try:
        return RunReport.from_dict(json.loads(path.read_text())), ""
    except json.JSONDecodeError:
        return None, ""  # Half written: the run ended before its report was complete.
    except (OSError, ValueError) as error:
        return None, f"report.json is unreadable: {error}"


def write_pid(path: Path, pid: int | None = None, *, owner: bool = False) -> None:
    """Record the process the run's life hangs on; ``owner``: the process that started the run and
    holds it while it waits for a worker (never a process to kill when the run is stopped)."""
    pid = pid or os.getpid()
    data: dict[str, Any] = {"pid": pid, "start_time": process_start_time(pid)}
    if owner:
        data["holder"] = "owner"
    atomic_write_json(path / "worker.pid", data)


def pid_is_owner(path: Path) -> bool:
    """Whether ``worker.pid`` names the run's owner (queued, no worker yet) rather than a worker."""
    try:
        return json.loads((Path(path) / "worker.pid").read_text()).get("holder") == "owner"
    except (OSError, ValueError, AttributeError):
        return False


def read_pid(path: Path) -> tuple[int, float | None] | None:
    try:
        data = json.loads((Path(path) / "worker.pid").read_text())
        return int(data["pid"]), data.get("start_time")
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def worker_alive(path: Path) -> bool:
    """Whether the worker process of the run at ``path`` still lives."""
    pid_info = read_pid(path)
    if pid_info is None:
        # A run that was just created has no pid yet; give the spawner a moment.
        config = Path(path) / "config.json"
        return config.exists() and time.time() - config.stat().st_mtime < 10 and not (
            Path(path) / "events.jsonl"
        ).exists()
    return process_alive(*pid_info)
