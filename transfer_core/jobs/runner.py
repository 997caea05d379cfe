"""The code that runs inside a worker: wait for the previous run and a slot, train, write artefacts.

The same code runs in a warm worker (:mod:`.standby_worker`, several runs in turn), in a one-run
worker process (``python -m transfer_core worker``) and in a Ray task; it reads and writes only the run directory (and the
queue/slot files under ``Settings.home``; a run on a class assignment's data also gets its score
written under ``<home>/assignments/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from transfer_core.config import RunConfig, Settings
from transfer_core.fileio import atomic_path, atomic_write_json
from transfer_core.jobs.queue import acquire_slot, queue_entry, record_run_time
from transfer_core.processes import lower_priority
from transfer_core.runs import EventLog, RunStatus, load_run, write_pid


def worker_main(run_dir: Path) -> int:
    """Entry point of a one-run worker process (``python -m transfer_core worker RUN_DIR``):
    wait for a slot, train, write artefacts. The app and ``start_run`` use warm workers instead."""
    return run_worker(Path(run_dir).resolve(), Settings.from_env())


def run_worker(run_dir: Path, settings: Settings, *, record_pid: bool = True) -> int:
    """Train the run at ``run_dir`` in this process; returns the worker's exit status.

    Args:
        run_dir: A run directory made by :func:`transfer_core.jobs.start_run`.
        settings: The server's settings.
        record_pid: Write this process into ``worker.pid`` (whose liveness makes the run
            active). False for a Ray task on another machine than the server: a pid there
            means nothing here, so the pid of the task's owner stays.

    With ``settings.executor == "ray"`` the Ray cluster's resources are the training slots:
    the run leaves the queue as soon as its task starts.
    """
    lower_priority(settings.worker_nice)  # The server and its pages go first on a shared machine.
    if record_pid:
        write_pid(run_dir)
    stop_file = run_dir / "stop"

    def should_stop() -> bool:
        return stop_file.exists()

    with EventLog(run_dir / "events.jsonl") as log:
        if not _wait_for_predecessor(run_dir, log, should_stop):
            finish_run(run_dir, log, RunStatus.STOPPED, "stopped while waiting for the previous run", {})
            return 0
        slot = None
        if settings.executor == "ray":
            queue_entry(settings, run_dir).unlink(missing_ok=True)
        else:
            slot = acquire_slot(settings, run_dir, log, should_stop)
            if slot is None:
                finish_run(run_dir, log, RunStatus.STOPPED, "stopped while waiting in the queue", {})
                return 0
    return train_claimed_run(run_dir, settings, slot)


def train_claimed_run(run_dir: Path, settings: Settings, slot: IO[str] | None) -> int:
    """Train a run this process has taken (holding ``slot``, closed at the end) and write its
    artefacts; returns the worker's exit status. Everything of the run lives inside this call."""
    stop_file = run_dir / "stop"
    try:
        with EventLog(run_dir / "events.jsonl") as log:
            should_stop = _stop_check(stop_file, log)
            try:
                config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
            except (OSError, ValueError, TypeError) as error:
                finish_run(run_dir, log, RunStatus.FAILED, f"config.json is unreadable: {error}", {})
                return 1
            if stop_file.exists():
                finish_run(run_dir, log, RunStatus.STOPPED, "stopped while waiting in the queue", {})
                return 0
            log.write({"type": "starting", "message": "got a training slot; loading TensorFlow and the model"})
            started = time.time()
            try:
                from transfer_core.training import train

                result = train(config, emit=log, should_stop=should_stop, settings=settings)
                if result.classifier is not None:
                    save_model(result.classifier.model, run_dir / "model.keras")
                result.history.to_csv(run_dir / ".metrics.csv.tmp", index=False)
                os.replace(run_dir / ".metrics.csv.tmp", run_dir / "metrics.csv")
                finish_run(run_dir, log, RunStatus(result.status), result.reason, result.report)
                if result.status == "finished" and result.classifier is not None:
                    score_assignment_run(run_dir, config, result.classifier.model, result.report, settings)
                if result.status == "finished":
                    with contextlib.suppress(OSError):  # Only feeds the queue's ETA.
                        record_run_time(settings, config.train.strategy, time.time() - started)
            except Exception as error:  # noqa: BLE001 - the run must end with a readable reason.
                finish_run(run_dir, log, RunStatus.FAILED, f"{type(error).__name__}: {error}", {})
                return 1
    finally:
        if slot is not None:
            slot.close()
    return 0


def _stop_check(stop_file: Path, log: EventLog) -> Callable[[], bool]:
    """The engine's ``should_stop``: True once Stop was asked for. The first True also writes a
    ``stopping`` event, so the server knows this worker answered and is saving, not stuck in a
    batch (on a busy machine saving can take many seconds without another event)."""
    answered = False

    def should_stop() -> bool:
        nonlocal answered
        if not stop_file.exists():
            return False
        if not answered:
            answered = True
            log.write({"type": "stopping", "message": "saw Stop: ending the run, keeping its best epoch so far if one has ended"})
        return True

    return should_stop


def score_assignment_run(run_dir: Path, config: RunConfig, model, report: dict[str, Any], settings: Settings) -> None:
    """Score a run on its class assignment's hidden test split (when its data belongs to one).

    After the report, so the run shows as finished at once; a failure here never fails the run.
    """
    from transfer_core.sessions.scoring import score_run

    try:
        score_run(run_dir, config, model, report, settings)
    except Exception as error:  # noqa: BLE001 - the run itself finished; it just has no score.
        # The type only: a message could name a hidden test image, and this log is in the student's run folder.
        print(f"Scoring on the assignment's hidden test split failed ({type(error).__name__}).", file=sys.stderr)


@contextlib.contextmanager
def output_to(run_dir: Path) -> Iterator[None]:
    """Send this process's stdout and stderr to the run's ``worker.log`` while it trains the run
    (a warm worker, a reused Ray worker), then back where they went before."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    log = os.open(Path(run_dir) / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _wait_for_predecessor(run_dir: Path, log: EventLog, should_stop: Callable[[], bool]) -> bool:
    """Wait until the run named in ``run_dir/after`` has ended; False if stopped meanwhile."""
    after_file = run_dir / "after"
    if not after_file.exists():
        return True
    predecessor = Path(after_file.read_text().strip())
    announced = False
    while True:
        if should_stop():
            return False
        try:
            info = load_run(predecessor)
        except FileNotFoundError:
            return True  # Deleted: nothing to wait for.
        if not info.is_active:
            return True
        if not announced:
            log.write({"type": "queued", "position": None,
                       "message": f"waiting for the {info.strategy} run to finish first"})
            announced = True
        time.sleep(0.25)


def save_model(model, path: Path) -> None:
    """Save a Keras model atomically (``.keras`` files are zips; half a zip is useless).

    A disk that fills up mid-save leaves no half file behind.
    """
    with atomic_path(path, keep_suffix=True) as tmp:
        model.save(tmp)


def finish_run(run_dir: Path, log: EventLog, status: RunStatus, reason: str, report: dict[str, Any]) -> None:
    """Write the report, then the terminal event (a report is what makes a run count as finished).

    When the report cannot be written (a full disk), the run ends as ``failed`` with that reason: a
    terminal event without a report never shows as finished (see :func:`transfer_core.runs.load_run`).
    """
    report = {**report, "status": status, "reason": reason}
    try:
        atomic_write_json(run_dir / "report.json", report)
    except OSError as error:
        reason = (f"the run's results could not be written ({error.strerror or error}); "
                  "free some disk space and train again")
        with contextlib.suppress(OSError):
            log.write({"type": "failed", "reason": reason})
        return
    summary = {k: report.get(k) for k in ("val_accuracy", "best_val_accuracy", "seconds", "epochs")}
    log.write({"type": status, "reason": reason, **summary})
