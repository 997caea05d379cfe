"""How runs read as text: stage names, durations, event lines, status lines, the runs table.

Pure Python (no Streamlit, no TensorFlow); :mod:`transfer_core.live` re-exports these names.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd

from transfer_core.config import ModelSpec
from transfer_core.display.views import dataset_name
from transfer_core.report import EMPTY_REPORT
from transfer_core.runs import RunInfo, RunStatus

# The stages of a run, in the words the page shows.
STAGE_LABELS = {
    "decode": "decoding images once",
    "features": "computing backbone features",
    "prefix": "caching the frozen layers' output",
    "head": "training the head",
    "fine_tune": "fine-tuning",
    "scratch": "training from scratch",
}
# Stages that pass over the images once, reporting images done rather than epochs.

def format_seconds(seconds: float | None) -> str:
    """``75`` -> ``"1 min 15 s"``, ``0.26`` -> ``"0.3 s"``, ``0.031`` -> ``"0.03 s"``; ``None`` -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if 0 < seconds < 0.005:
        return "under 0.01 s"
    if 0 < seconds < 0.095:  # A head epoch on cached features: hundredths, where one decimal said "0.0 s".
        return f"{seconds:.2f} s"
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f} s"  # A run on cached features takes well under a second.
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# How the head reads the backbone's feature map, in the words a run's summary uses.
HEAD_POOLING_WORDS = {"avg": "global average pooling", "max": "global max pooling", "flatten": "Flatten"}


def describe_head(model: ModelSpec) -> str:
    """The head's layers in plain words, e.g. ``"Flatten → Dense(128, ReLU) → softmax"`` or
    ``"global average pooling → softmax (dropout 0.2)"``."""
    parts = [HEAD_POOLING_WORDS.get(model.head, model.head)]
    if model.hidden_units > 0:
        parts.append(f"Dense({model.hidden_units}, ReLU)")
    parts.append("softmax")
    dropout = f" (dropout {model.dropout_rate:g})" if model.dropout_rate > 0 else ""
    return " → ".join(parts) + dropout


def describe_event(event: dict[str, Any]) -> str:
    """One readable line for the event log (batch events are summarised elsewhere)."""
    kind = event.get("type", "?")
    stamp = time.strftime("%H:%M:%S", time.localtime(float(event.get("time", 0))))
    if kind in ("queued", "starting", "stopping"):
        text = event.get("message") or f"{kind}, position {event.get('position')}"
    elif kind == "run_started":
        text = (
            f"started {event.get('strategy')} with {event.get('backbone')} ({event.get('weights')} weights): "
            f"{event.get('num_train')} training and {event.get('num_val')} validation images, "
            f"{event.get('epochs_total')} epoch(s)"
        )
    elif kind == "stage":
        text = str(event.get("description", event.get("stage")))
    elif kind == "progress":
        cached = " (from cache)" if event.get("cached") else ""
        text = f"{STAGE_LABELS.get(event.get('stage'), event.get('stage'))}: {event.get('done')}/{event.get('total')}{cached}"
    elif kind == "frozen_runtime":
        text = frozen_runtime_text(event)
    elif kind == "batch_end":
        text = f"epoch {event.get('epoch')} batch {event.get('batch')}/{event.get('batches')}: loss {_num(event.get('loss'))}"
    elif kind == "epoch_end":
        text = (
            f"epoch {event.get('epoch')} ({event.get('stage')}): loss {_num(event.get('loss'))}, "
            f"accuracy {_num(event.get('accuracy'))}, val loss {_num(event.get('val_loss'))}, "
            f"val accuracy {_num(event.get('val_accuracy'))} in {_num(event.get('seconds'), 1)} s"
        )
    elif kind == "evaluated":
        text = (f"evaluated the {event.get('split')} images ({event.get('images')}) through the kept model "
                f"in {_num(event.get('seconds'), 1)} s")
    elif kind in ("finished", "stopped", "failed"):
        reason = f": {event['reason']}" if event.get("reason") else ""
        text = f"{kind}{reason}"
    else:
        text = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "time"))
    return f"{stamp}  {kind:<11} {text}"


def frozen_runtime_text(event: dict[str, Any]) -> str:
    """E.g. "features on LiteRT (XNNPACK, 2 threads): converted earlier, read from the cache"."""
    what = {"features": "features", "prefix": "frozen layers"}.get(str(event.get("stage")), str(event.get("stage")))
    runtime = event.get("runtime")
    if runtime in ("litert", "tflite"):
        threads = event.get("threads")
        name = "LiteRT" if runtime == "litert" else "TensorFlow Lite"
        where = f"{name} (XNNPACK, {threads} thread{'s' if threads != 1 else ''})"
    else:
        where = "TensorFlow"
    return f"{what} on {where}: {event.get('reason', '')}"


def event_log(events: list[dict[str, Any]], limit: int = 200) -> list[str]:
    """The event log as lines, newest last, without per-batch events (which the chart shows)."""
    lines = [describe_event(e) for e in events if e.get("type") not in ("batch_end", "progress")]
    progress = [e for e in events if e.get("type") == "progress"]
    if progress:
        lines.append(describe_event(progress[-1]))
    return lines[-limit:]


def _num(value: Any, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "-"
    return f"{number:.{digits}f}" if math.isfinite(number) else str(number)


def eta_text(seconds: float) -> str:
    """"starts in about 40 s" / "starts in about 3 min", for a queued run's estimate."""
    if seconds < 90:
        return f"starts in about {max(5, round(seconds / 5) * 5):.0f} s"
    return f"starts in about {round(seconds / 60):.0f} min"


def status_line(info: RunInfo, queue_position: int | None = None, eta_seconds: float | None = None) -> str:
    """Short state of a run for the sidebar and the run list (``eta_seconds``: see ``jobs.queue_eta``)."""
    report = info.report or EMPTY_REPORT
    if info.status == RunStatus.QUEUED:
        if queue_position is None:
            return "queued"
        text = f"queued ({queue_position} run(s) ahead)" if queue_position else "queued (next)"
        return f"{text}, {eta_text(eta_seconds)}" if eta_seconds is not None else text
    if info.status == RunStatus.RUNNING:
        last = info.last_event or {}
        total = _epochs_total(info)
        epoch = last.get("epoch")
        if last.get("type") == "batch_end" and epoch:
            return f"running: epoch {epoch} of {total}" if total else f"running: epoch {epoch}"
        if last.get("type") == "epoch_end" and epoch:
            return f"running: epoch {min(epoch + 1, total or epoch + 1)} of {total}" if total else "running"
        return f"running: {STAGE_LABELS.get(last.get('stage'), 'starting')}"
    if info.status == RunStatus.FINISHED:
        accuracy = report.val_accuracy
        return f"finished: val accuracy {accuracy:.1%}" if isinstance(accuracy, (int, float)) else "finished"
    if info.status == RunStatus.STOPPED:
        accuracy = report.val_accuracy
        kept = f", val accuracy {accuracy:.1%}" if isinstance(accuracy, (int, float)) else ""
        return f"stopped{kept}"
    reason = info.reason or "no reason recorded"
    return f"{info.status}: {reason}"


def _epochs_total(info: RunInfo) -> int:
    if info.config is None:
        return 0
    train = info.config.train
    return train.epochs + (train.fine_tune_epochs if train.strategy == "fine_tuning" else 0)


def runs_table(runs: list[RunInfo]) -> pd.DataFrame:
    """One row per run for the list of earlier runs."""
    rows = []
    for info in runs:
        report = info.report or EMPTY_REPORT
        config = info.config
        rows.append(
            {
                "run": info.run_id,
                "created": pd.Timestamp.fromtimestamp(info.created).floor("s") if info.created else None,
                "status": info.status,
                "strategy": info.strategy,
                "backbone": config.model.backbone if config else "?",
                "weights": config.model.weights if config else "?",
                "data": f"{dataset_name(config.dataset.root)} v{config.dataset.version}" if config else "?",
                "val accuracy": report.val_accuracy,
                "epochs": report.epochs,
                "seconds": report.seconds,
                "name": config.name if config else "",
            }
        )
    columns = [
        "run",
        "created",
        "status",
        "strategy",
        "backbone",
        "weights",
        "data",
        "val accuracy",
        "epochs",
        "seconds",
        "name",
    ]
    return pd.DataFrame(rows, columns=columns)
