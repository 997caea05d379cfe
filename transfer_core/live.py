"""Follow a run while it trains: read its events incrementally and summarise them.

The Train page polls a run every second. :class:`EventFollower` reads only the
bytes appended to ``events.jsonl`` since the last poll, and
:func:`summarise_progress` turns the events seen so far into what a person
reads: the stage, epoch x of y, batch b of n, a fraction done and an ETA.
Pure Python (no Streamlit, no TensorFlow), so it is tested without a browser.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from transfer_core.config import RunConfig
from transfer_core.display.run_text import (
    STAGE_LABELS,
    format_seconds,
)
from transfer_core.processes import process_alive
from transfer_core.runs import (
    TERMINAL_EVENTS,
    RunInfo,
    RunStatus,
    batch_frame,
    epoch_frame,
    load_run,
    read_events,
    read_pid,
    worker_alive,
)

ONE_PASS_STAGES = ("decode", "features", "prefix")

# How often a page watching a run polls it: a queued run changes rarely (its place in the
# queue), a running one shows its batches; an ended run is not polled at all.
RUNNING_POLL_SECONDS = 3.0  # Every poll is a server rerun per watching student (BENCHMARKS.md, "Watching").
QUEUED_POLL_SECONDS = 5.0
# The heavy parts of a live page (charts, event log) are drawn again at most this often:
# after an epoch ended, or, within a long epoch, for the per-batch curve. The Train page draws
# them in a fragment of their own that reruns every CURVES_POLL_SECONDS while the run trains
# (rebuilding a figure only when its data changed), so a new epoch costs no full page rerun.
EPOCH_REDRAW_SECONDS = 3.0
BATCH_REDRAW_SECONDS = 30.0
CURVES_POLL_SECONDS = 5.0


def poll_seconds(status: str) -> float | None:
    """Seconds between polls of a run in ``status`` (``queued``/``running``); None once it ended."""
    if status == RunStatus.QUEUED:
        return QUEUED_POLL_SECONDS
    if status == RunStatus.RUNNING:
        return RUNNING_POLL_SECONDS
    return None


@dataclass(frozen=True)
class LiveSnapshot:
    """What a page knew of a run when it drew it: status, epochs and batches seen, and when."""

    status: str
    epochs: int
    batches: int
    time: float


def needs_redraw(
    drawn: LiveSnapshot,
    current: LiveSnapshot,
    epoch_seconds: float = EPOCH_REDRAW_SECONDS,
    batch_seconds: float = BATCH_REDRAW_SECONDS,
) -> bool:
    """Whether the heavy parts drawn at ``drawn`` are worth drawing again at ``current``.

    Always on a status change (queued -> running, or the end); after a new epoch at most
    every ``epoch_seconds``; for new batches only at most every ``batch_seconds``.
    """
    if current.status != drawn.status:
        return True
    waited = current.time - drawn.time
    if current.epochs != drawn.epochs and waited >= epoch_seconds:
        return True
    return current.batches != drawn.batches and waited >= batch_seconds


class EventFollower:
    """Incremental reader of one run's ``events.jsonl``.

    Keeps the byte offset of the last complete line read and every event seen,
    so each :meth:`poll` costs only the new bytes. Safe to keep in
    ``st.session_state`` (plain attributes, defined in a module).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.offset = 0
        self.events: list[dict[str, Any]] = []
        self.started = False  # A run_started event was seen.
        self.ended = False  # A terminal event was seen.
        self.epochs_seen = 0  # epoch_end events seen.
        self.batches_seen = 0  # batch_end events seen.
        self.tracker = ProgressTracker()
        self._config: RunConfig | None = None
        self._pid_stamp: int | None = None  # mtime_ns of worker.pid when last read.
        self._pid_info: tuple[int, float | None] | None = None
        self._created: float | None = None
        self._ended_info: tuple[tuple[int, int | None], RunInfo] | None = None

    @property
    def path(self) -> Path:
        return self.run_dir / "events.jsonl"

    def poll(self) -> list[dict[str, Any]]:
        """Read events appended since the last call; returns only the new ones."""
        new, self.offset = read_events(self.path, self.offset)
        self.events.extend(new)
        self.tracker.feed(new)
        for event in new:
            kind = event.get("type")
            self.started = self.started or kind in ("run_started", "starting")
            self.ended = self.ended or kind in TERMINAL_EVENTS
            self.epochs_seen += kind == "epoch_end"
            self.batches_seen += kind == "batch_end"
        return new

    def progress(self, now: float | None = None) -> RunProgress:
        """:func:`summarise_progress` of the events seen so far, without walking them again."""
        return self.tracker.summary(now)

    def snapshot(self, now: float | None = None) -> LiveSnapshot:
        """The status and event counts seen so far (call :meth:`poll` first)."""
        return LiveSnapshot(
            self.status(), self.epochs_seen, self.batches_seen, time.time() if now is None else now
        )

    @property
    def config(self) -> RunConfig | None:
        """The run's config (read once; None if unreadable)."""
        if self._config is None:
            try:
                self._config = RunConfig.from_dict(json.loads((self.run_dir / "config.json").read_text()))
            except (OSError, ValueError, TypeError):
                return None
        return self._config

    def status(self) -> str:
        """``queued``, ``running`` or ``ended``, from the events seen and a pid check.

        Cheaper than :func:`transfer_core.runs.load_run` (which rereads every event),
        so it suits a once-a-second poll; load the run for the details once it ended.
        """
        if self.ended or not self._worker_alive():
            return "ended"
        return "running" if self.started else "queued"

    def _worker_alive(self) -> bool:
        # worker.pid is read again only when it was rewritten (a stat per poll, not a parse).
        try:
            stamp = (self.run_dir / "worker.pid").stat().st_mtime_ns
        except OSError:
            return worker_alive(self.run_dir)  # No pid yet: the just-created rule applies.
        if stamp != self._pid_stamp:
            self._pid_stamp, self._pid_info = stamp, read_pid(self.run_dir)
        if self._pid_info is None:
            return worker_alive(self.run_dir)
        return process_alive(*self._pid_info)

    def run_info(self) -> RunInfo:
        """The run as :func:`transfer_core.runs.load_run` reads it, without rereading an active run.

        While the run is queued or running the info is built from the events seen (its report
        does not exist yet); once it ended the run is loaded from its files, again only when
        they changed. Call :meth:`poll` first. Raises FileNotFoundError for a deleted run.
        """
        status = self.status()
        config = self.config
        if status == "ended" or config is None:
            try:
                report_stamp = (self.run_dir / "report.json").stat().st_mtime_ns
            except OSError:
                report_stamp = None
            stamp = (self.offset, report_stamp)
            if self._ended_info is None or self._ended_info[0] != stamp:
                self._ended_info = (stamp, load_run(self.run_dir))
            return self._ended_info[1]
        if self._created is None:
            self._created = (self.run_dir / "config.json").stat().st_mtime
        last = next((event for event in reversed(self.events) if "type" in event), None)
        return RunInfo(
            run_id=self.run_dir.name,
            path=self.run_dir,
            config=config,
            status=status,
            reason="",
            created=self._created,
            last_event=last,
            report=None,
        )

    def epochs(self) -> pd.DataFrame:
        return epoch_frame(self.events)

    def batches(self) -> pd.DataFrame:
        return batch_frame(self.events)


@dataclass
class RunProgress:
    """What the progress bar and status line show for a run's events so far."""

    stage: str = ""
    description: str = ""
    epoch: int = 0  # Epochs finished, all stages together.
    epochs_total: int = 0
    batch: int = 0  # Batches finished in the current epoch.
    batches: int = 0
    features_done: int = 0
    features_total: int = 0
    fraction: float = 0.0  # 0..1 of the whole run.
    eta_seconds: float | None = None
    elapsed_seconds: float = 0.0
    last_loss: float | None = None
    last_val_accuracy: float | None = None
    queued_position: int | None = None
    num_train: int = 0
    num_val: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """One line for the progress bar: stage, epoch, batch, ETA."""
        if self.queued_position is not None and not self.stage:
            return f"Waiting for a free training slot ({self.queued_position} run(s) ahead)"
        parts = [STAGE_LABELS.get(self.stage, self.stage or "starting")]
        if self.stage in ONE_PASS_STAGES and self.features_total:
            parts.append(f"{self.features_done}/{self.features_total} images")
        elif self.epochs_total:
            if self.batch:
                parts.append(f"epoch {min(self.epoch + 1, self.epochs_total)} of {self.epochs_total}")
                parts.append(f"batch {self.batch} of {self.batches}")
            else:
                parts.append(f"{self.epoch} of {self.epochs_total} epochs done")
                if self.epoch == 0 and self.stage in ("head", "fine_tune", "scratch") and not self.batches:
                    parts.append("preparing the first batch (building the training step)")
        if self.last_val_accuracy is not None:
            parts.append(f"val accuracy {self.last_val_accuracy:.1%}")
        parts.append(f"ETA {format_seconds(self.eta_seconds)}" if self.eta_seconds is not None else "ETA …")
        return " · ".join(parts)


def summarise_progress(events: list[dict[str, Any]], now: float | None = None) -> RunProgress:
    """Summarise a run's events into a :class:`RunProgress`.

    The ETA uses the measured pace of the current stage: seconds per batch
    within the stage (from batch timestamps), else seconds per finished epoch.
    Feature computation is counted as one extra epoch's worth of work.

    Args:
        events: Events in the order written (``time`` field in epoch seconds).
        now: The current time (``time.time()`` when None), for the elapsed time.

    Returns:
        The summary; fields stay at their defaults until events fill them.
    """
    now = time.time() if now is None else now
    tracker = ProgressTracker()
    tracker.feed(events, now)
    return tracker.summary(now)


class ProgressTracker:
    """:func:`summarise_progress` fed incrementally: each event is read once, not once per poll.

    A page polling a long run would otherwise walk all its events (thousands of batches) every poll.
    """

    def __init__(self) -> None:
        self.progress = RunProgress()
        self.started_at: float | None = None
        self.stage_started_at: float | None = None
        self.stage_first_batch: tuple[float, int] | None = None  # (time, global step) of the stage's first batch
        self.stage_epochs_done_at_start = 0
        self.stage_epochs = 0
        self.last_step = 0
        self.last_time: float | None = None

    def feed(self, events: list[dict[str, Any]], now: float | None = None) -> None:
        """Take in events that follow those fed before (``now`` stands in for a missing ``time``)."""
        now = time.time() if now is None else now
        progress = self.progress
        for event in events:
            kind = event.get("type")
            moment = float(event.get("time", now))
            self.last_time = moment
            if self.started_at is None:
                self.started_at = moment
            if kind == "queued":
                progress.queued_position = int(event.get("position") or 0)
            elif kind in ("run_started", "starting"):
                progress.queued_position = None
                progress.epochs_total = int(event.get("epochs_total", 0))
                progress.num_train = int(event.get("num_train", 0))
                progress.num_val = int(event.get("num_val", 0))
                self.started_at = moment
            elif kind == "stage":
                progress.stage = str(event.get("stage", ""))
                progress.description = str(event.get("description", ""))
                progress.batch = progress.batches = 0
                self.stage_started_at = moment
                self.stage_first_batch = None
                self.stage_epochs_done_at_start = progress.epoch
                self.stage_epochs = int(event.get("epochs", 0))
            elif kind == "progress":
                progress.features_done = int(event.get("done", 0))
                progress.features_total = int(event.get("total", 0))
            elif kind == "batch_end":
                progress.batch = int(event.get("batch", 0))
                progress.batches = int(event.get("batches", 0))
                self.last_step = int(event.get("step", self.last_step + 1))
                loss = event.get("loss")
                progress.last_loss = float(loss) if loss is not None else None
                if self.stage_first_batch is None:
                    self.stage_first_batch = (moment, self.last_step)
            elif kind == "epoch_end":
                progress.epoch = int(event.get("epoch", progress.epoch + 1))
                progress.batch = 0
                value = event.get("val_accuracy")
                if value is not None and math.isfinite(float(value)):
                    progress.last_val_accuracy = float(value)

    def summary(self, now: float | None = None) -> RunProgress:
        """The :class:`RunProgress` of the events fed so far, at ``now`` (a fresh copy each call)."""
        now = time.time() if now is None else now
        progress = dataclasses.replace(self.progress, notes=list(self.progress.notes))
        last_time = self.last_time if self.last_time is not None else now
        progress.elapsed_seconds = max(0.0, now - self.started_at) if self.started_at is not None else 0.0
        total = max(progress.epochs_total, 1)
        epoch_part = progress.batch / progress.batches if progress.batches else 0.0
        done = min(progress.epoch + epoch_part, total)
        progress.fraction = max(0.0, min(1.0, done / total))
        progress.eta_seconds = _eta(
            progress,
            self.stage_started_at,
            self.stage_first_batch,
            self.last_step,
            last_time,
            self.stage_epochs_done_at_start,
            self.stage_epochs,
        )
        return progress


def _eta(
    progress: RunProgress,
    stage_started_at: float | None,
    stage_first_batch: tuple[float, int] | None,
    last_step: int,
    last_time: float,
    stage_epochs_done_at_start: int,
    stage_epochs: int,
) -> float | None:
    remaining_epochs = max(progress.epochs_total - progress.epoch, 0)
    if progress.epochs_total and remaining_epochs == 0:
        return 0.0
    if progress.stage in ONE_PASS_STAGES and progress.features_total and stage_started_at is not None:
        done = progress.features_done
        if done <= 0:
            return None
        seconds_per_image = (last_time - stage_started_at) / done
        return seconds_per_image * (progress.features_total - done)
    if stage_first_batch is not None and progress.batches:
        first_time, first_step = stage_first_batch
        steps = last_step - first_step
        if steps > 0:
            seconds_per_batch = (last_time - first_time) / steps
            left_in_epoch = progress.batches - progress.batch if progress.batch else 0
            later_epochs = remaining_epochs - (1 if progress.batch else 0)
            return seconds_per_batch * (left_in_epoch + max(later_epochs, 0) * progress.batches)
    if stage_started_at is not None and progress.epoch > stage_epochs_done_at_start:
        per_epoch = (last_time - stage_started_at) / (progress.epoch - stage_epochs_done_at_start)
        return per_epoch * remaining_epochs
    return None
