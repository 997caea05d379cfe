"""The teacher's class view: every session's finished runs on this server, read-only.

A student may give their session a nickname (kept in a small file in their
workspace). The teacher, who knows ``TRANSFER_TEACHER_TOKEN``, sees one row per
finished run of every workspace under ``TRANSFER_HOME``: nickname, data set,
backbone, strategy, freeze plan, accuracy, time and trainable parameters.

Nothing here writes outside one workspace (the nickname) and a damaged run is
skipped, never fatal: one student's broken folder must not hide the class.
No Streamlit, no TensorFlow.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from transfer_core.config import FreezePlan, RunConfig, Settings
from transfer_core.display.run_text import format_seconds
from transfer_core.display.views import dataset_name
from transfer_core.fileio import atomic_write_text
from transfer_core.jobs.queue import QueueCapacity
from transfer_core.runs import RunStatus, RunStore, load_run
from transfer_core.sessions.presets import describe_plan

NICKNAME_FILE = "nickname.txt"
MAX_NICKNAME_LENGTH = 40
# Workspace folders are 32 hex digits (transfer_core.sessions.workspace); anything else under workspaces/ is not one.
_WORKSPACE_ID = re.compile(r"^[0-9a-f]{32}$")

CLASS_COLUMNS = [
    "nickname",
    "dataset",
    "backbone",
    "strategy",
    "freeze_plan",
    "val_accuracy",
    "test_accuracy",
    "seconds",
    "trainable_params",
    "run_id",
    "workspace_id",
]


def teacher_token_matches(settings: Settings, given: str | None) -> bool:
    """Whether ``given`` is the server's teacher token (constant-time comparison).

    Args:
        settings: Holds ``teacher_token``; an empty token means there is no teacher view.
        given: What the visitor supplied (``?teacher=...``), or None.

    Returns:
        True only when a token is configured and ``given`` equals it.
    """
    if not settings.teacher_token or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), settings.teacher_token.encode("utf-8"))


def clean_nickname(text: str) -> str:
    """A nickname fit to show: printable characters, single spaces, at most 40 characters."""
    printable = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(text))
    return " ".join(printable.split())[:MAX_NICKNAME_LENGTH].strip()


def save_nickname(workspace_root: str | Path, nickname: str) -> str:
    """Store a session's nickname in its workspace (an empty one removes it).

    Args:
        workspace_root: The session's workspace folder (``Workspace.root``).
        nickname: What the student typed.

    Returns:
        The nickname as stored (see :func:`clean_nickname`).
    """
    cleaned = clean_nickname(nickname)
    path = Path(workspace_root) / NICKNAME_FILE
    if cleaned:
        atomic_write_text(path, cleaned + "\n")
    else:
        path.unlink(missing_ok=True)
    return cleaned


def read_nickname(workspace_root: str | Path) -> str:
    """A workspace's nickname, or ``""`` when none was set (or the file is unreadable)."""
    try:
        return clean_nickname((Path(workspace_root) / NICKNAME_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return ""


@dataclass(frozen=True)
class ClassRun:
    """One finished run of one session, as the class view lists it."""

    nickname: str
    dataset: str
    backbone: str
    strategy: str
    freeze_plan: str
    val_accuracy: float | None
    test_accuracy: float | None
    seconds: float | None
    trainable_params: int | None
    run_id: str
    workspace_id: str
    path: Path


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is "unknown", not a score.


def _freeze_text(config: RunConfig) -> str:
    """What the run froze: feature extraction and from scratch ignore the stored freeze plan."""
    if config.train.strategy == "feature_extraction":
        return describe_plan(FreezePlan(mode="all_frozen"))
    if config.train.strategy == "from_scratch":
        return "every layer (random weights)"
    return describe_plan(config.freeze)


def _class_run(run_dir: Path, workspace_id: str, nickname: str) -> ClassRun | None:
    """The row of one run directory, or None when it is not finished or cannot be read."""
    try:
        info = load_run(run_dir)
    except (OSError, ValueError):
        return None
    if info.status != RunStatus.FINISHED or info.config is None or info.report is None:
        return None
    report, config = info.report, info.config
    return ClassRun(
        nickname=nickname,
        dataset=dataset_name(config.dataset.root),
        backbone=config.model.backbone,
        strategy=config.train.strategy,
        freeze_plan=_freeze_text(config),
        val_accuracy=_number(report.val_accuracy),
        test_accuracy=_number(report.test_accuracy),
        seconds=_number(report.seconds),
        trainable_params=report.trainable_params,
        run_id=info.run_id,
        workspace_id=workspace_id,
        path=info.path,
    )


def class_runs(settings: Settings) -> list[ClassRun]:
    """Every finished run of every workspace under ``settings.home``, newest first per workspace.

    Reads only; unreadable workspaces and damaged or unfinished runs are left out.

    Args:
        settings: Where the workspaces are.

    Returns:
        One :class:`ClassRun` per finished run.
    """
    root = Path(settings.workspaces_dir)
    try:
        workspaces = sorted(p for p in root.iterdir() if p.is_dir() and _WORKSPACE_ID.match(p.name))
    except OSError:
        return []
    found: list[ClassRun] = []
    for workspace in workspaces:
        nickname = read_nickname(workspace)
        store = RunStore(workspace / "runs")
        try:
            run_ids = store.ids()
        except OSError:
            continue
        for run_id in run_ids:
            row = _class_run(store.root / run_id, workspace.name, nickname)
            if row is not None:
                found.append(row)
    return found


def class_table(runs: list[ClassRun]) -> pd.DataFrame:
    """The runs as a frame with :data:`CLASS_COLUMNS` (unnamed sessions show as ``(no nickname)``)."""
    rows = []
    for run in runs:
        row = asdict(run)
        row.pop("path")
        row["nickname"] = run.nickname or "(no nickname)"
        rows.append(row)
    return pd.DataFrame(rows, columns=CLASS_COLUMNS)


def run_curves(run: ClassRun) -> pd.DataFrame:
    """Per-epoch metrics of one run (empty when its files became unreadable)."""
    try:
        return load_run(run.path).metrics()
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return pd.DataFrame()


# Measured on a 2-core machine (BENCHMARKS.md, "A classroom on one server"): a training worker's
# peak resident memory was 0.76-1.47 GB, and one run keeps every core busy while it trains.
WORKER_MEMORY_TEXT = "about 1-1.5 GB"


def capacity_text(capacity: QueueCapacity, settings: Settings, students: int = 30) -> str:
    """The teacher's view of the training queue: what the concurrent-runs setting costs, from measured runs."""
    if capacity.median_run_seconds is None:
        measured = "No run has finished on this server yet: the estimate for a class appears after the first."
    else:
        measured = (f"The last {capacity.runs_measured} run(s) took a median of "
                    f"{format_seconds(capacity.median_run_seconds)} each, Start to finished.")
    waiting = f"{capacity.waiting} run(s) are waiting now."
    if settings.executor == "ray":
        return (
            f"Runs go to the Ray cluster at `{settings.ray_address or 'auto'}`: each reserves "
            f"{settings.ray_num_cpus:g} CPU(s) and {settings.ray_num_gpus:g} GPU(s) "
            "(`TRANSFER_RAY_NUM_CPUS`, `TRANSFER_RAY_NUM_GPUS`), and the cluster trains as many at once as "
            f"its machines have free. {waiting} {measured} Each lab machine that joins with "
            "`ray start --address=...` adds its own slots."
        )
    whole_class = capacity.class_seconds(students)
    estimate = (f" If {students} students press Start together, the last run finishes after about "
                f"{format_seconds(whole_class)} at this setting." if whole_class is not None else "")
    return (
        f"This server trains **{capacity.slots} run(s) at a time** (`TRANSFER_MAX_CONCURRENT_RUNS`) on "
        f"{capacity.cores} CPU cores; the rest wait in one queue, first come, first served. {waiting} "
        f"{measured}{estimate}\n\n"
        "A training run keeps every core busy: a second run at the same time shares the same cores (each "
        f"takes about twice as long, so the class finishes no sooner) and needs {WORKER_MEMORY_TEXT} more "
        "memory. Raise the limit only to about the number of cores / 2 on a bigger machine, or add "
        "machines with the Ray executor (README, \"Ray cluster (optional)\")."
    )
