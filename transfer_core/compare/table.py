"""The comparison table, the overlaid curves and their CSV/JSON export, read from the run store."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from transfer_core.compare.labels import as_number, report_of, run_label
from transfer_core.runs import RunInfo, RunStatus

TABLE_COLUMNS = [
    "run_id",
    "label",
    "strategy",
    "status",
    "backbone",
    "input_size",
    "weights",
    "data_version",
    "epochs",
    "num_val",
    "best_val_accuracy",
    "final_val_accuracy",
    "best_val_loss",
    "final_val_loss",
    "test_accuracy",
    "num_test",
    "seconds",
    "training_seconds",
    "seconds_per_epoch",
    "feature_seconds",
    "trainable_params",
    "images_per_second",
    "cached_features",
    "epochs_planned",
    "time_budget_seconds",
    "stopped_by_budget",
]
CURVE_COLUMNS = [
    "run_id",
    "label",
    "epoch",
    "elapsed",
    "stage",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
]


def finished_runs(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """Runs that ended with a kept model and a validation score (finished, or stopped with weights).

    Args:
        runs: Runs of a store.

    Returns:
        Those runs, in the order given.
    """
    return [
        info for info in runs
        if info.status in (RunStatus.FINISHED, RunStatus.STOPPED) and info.config is not None
        and as_number(report_of(info).val_accuracy) is not None
    ]


def default_run_id(runs: Sequence[RunInfo], preferred: Sequence[str | None] = ()) -> str | None:
    """The run a model picker (Explore, Export) should preselect.

    The first of ``preferred`` (the run the session last opened, then the one it follows) that is
    among ``runs``; else the most accurate on validation, the newest of equals. Never simply the
    newest: after a comparison that is the from-scratch baseline, the weakest model.

    Args:
        runs: Runs with a kept model (:func:`finished_runs`).
        preferred: Run ids in order of preference; None entries are skipped.

    Returns:
        A run id, or None when ``runs`` is empty.
    """
    ids = {info.run_id for info in runs}
    for run_id in preferred:
        if run_id in ids:
            return run_id
    if not runs:
        return None
    best = max(runs, key=lambda info: (as_number(report_of(info).val_accuracy) or 0.0, info.created))
    return best.run_id


def describe_run(info: RunInfo) -> str:
    """One line naming a run for pickers: label, backbone, accuracy, date and id.

    Args:
        info: The run.

    Returns:
        E.g. ``"fine-tuning · mobilenet_v2_0.35 96px · 93.8% · 11-28 12:18 · ...-ab12cd34"``.
    """
    config = info.config
    accuracy = as_number(report_of(info).val_accuracy)
    parts = [run_label(config)]
    if config is not None:
        size = report_of(info).input_size or config.model.input_size or "default"
        parts.append(f"{config.model.backbone} {size}px")
    if config is not None and config.dataset.version > 1:
        parts.append(f"data v{config.dataset.version}")
    parts.append(f"{accuracy:.1%}" if accuracy is not None else info.status)
    parts.append(time.strftime("%m-%d %H:%M", time.localtime(info.created)))
    parts.append(info.run_id.rsplit("-", 1)[-1])
    return " · ".join(parts)


def _unique_labels(runs: Sequence[RunInfo]) -> dict[str, str]:
    versions = {info.config.dataset.version for info in runs if info.config is not None}
    labels = {info.run_id: run_label(info.config) for info in runs}
    if len(versions) > 1:  # Before and after fixing the data: the version tells the runs apart.
        labels = {info.run_id: f"{labels[info.run_id]} · data v{info.config.dataset.version}"
                  if info.config is not None else labels[info.run_id] for info in runs}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {
        run_id: label if counts[label] == 1 else f"{label} ({run_id.rsplit('-', 1)[-1]})"
        for run_id, label in labels.items()
    }


def comparison_table(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """One row per run: accuracy, loss, time and size, ready to compare.

    ``final_val_accuracy``/``final_val_loss`` are those of the model the run kept
    (what Explore and Export use); ``best_*`` are the best of any epoch;
    ``test_accuracy`` is the kept model's on the held-out test split (None when
    the data set has none): the number to quote. Runs
    still training show what their finished epochs say so far.

    Args:
        runs: The runs to compare.

    Returns:
        A frame with :data:`TABLE_COLUMNS`, in the order given.
    """
    labels = _unique_labels(runs)
    rows = []
    for info in runs:
        config = info.config
        report = report_of(info)
        metrics = info.metrics()
        has_epochs = len(metrics) > 0
        last = metrics.iloc[-1] if has_epochs else None
        seconds_col = pd.to_numeric(metrics["seconds"], errors="coerce") if has_epochs else None

        def from_report(value, fallback):
            # A report without the value (an old run, a stopped one) falls back to its epochs.
            return as_number(value) if value is not None else fallback

        row = {
            "run_id": info.run_id,
            "label": labels[info.run_id],
            "strategy": config.train.strategy if config else None,
            "status": info.status,
            "backbone": config.model.backbone if config else None,
            "input_size": report.input_size or (config.model.input_size if config else None),
            "weights": config.model.weights if config else None,
            "data_version": config.dataset.version if config else None,
            "epochs": report.epochs if report.epochs is not None else len(metrics),
            "num_val": report.num_val,
            "best_val_accuracy": from_report(
                report.best_val_accuracy, as_number(metrics["val_accuracy"].max()) if has_epochs else None),
            "final_val_accuracy": from_report(
                report.val_accuracy, as_number(last["val_accuracy"]) if last is not None else None),
            "best_val_loss": from_report(
                report.best_val_loss, as_number(metrics["val_loss"].min()) if has_epochs else None),
            "final_val_loss": from_report(
                report.val_loss, as_number(last["val_loss"]) if last is not None else None),
            # Of the held-out test split (None without one): never used to choose anything.
            "test_accuracy": as_number(report.test_accuracy),
            "num_test": report.num_test,
            "seconds": from_report(report.seconds, as_number(last["elapsed"]) if last is not None else None),
            "training_seconds": from_report(
                report.training_seconds, as_number(seconds_col.sum()) if seconds_col is not None else None),
            "seconds_per_epoch": from_report(
                report.seconds_per_epoch, as_number(seconds_col.mean()) if seconds_col is not None else None),
            "feature_seconds": as_number(report.feature_seconds),
            "trainable_params": report.trainable_params,
            "images_per_second": as_number(report.images_per_second),
            "cached_features": bool(report.cache_hits),
            "epochs_planned": report.epochs_planned,
            "time_budget_seconds": as_number(report.time_budget_seconds),
            "stopped_by_budget": bool(report.stopped_by_budget),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def curves_frame(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """Per-epoch metrics of several runs in one long frame, for overlaid curves.

    Args:
        runs: The runs (finished or still training).

    Returns:
        A frame with :data:`CURVE_COLUMNS`; ``elapsed`` is wall-clock seconds
        since the run started (feature computation included).
    """
    labels = _unique_labels(runs)
    frames = []
    for info in runs:
        metrics = info.metrics()
        if len(metrics) == 0:
            continue
        frame = metrics.reindex(columns=CURVE_COLUMNS[2:]).copy()
        frame.insert(0, "label", labels[info.run_id])
        frame.insert(0, "run_id", info.run_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    for column in ("epoch", "elapsed", "loss", "accuracy", "val_loss", "val_accuracy"):
        out[column] = pd.to_numeric(out[column], errors="coerce")
    return out


def results_csv(table: pd.DataFrame) -> str:
    """The comparison table as CSV text.

    Args:
        table: From :func:`comparison_table`.

    Returns:
        CSV with a header row.
    """
    return table.to_csv(index=False)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    records = clean.to_dict(orient="records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                record[key] = None
            elif hasattr(value, "item"):
                record[key] = value.item()
    return records


def results_json(table: pd.DataFrame, curves: pd.DataFrame | None = None,
                 sentences: Sequence[str] | None = None) -> str:
    """The comparison (table, curves and reading) as JSON text.

    Args:
        table: From :func:`comparison_table`.
        curves: From :func:`curves_frame`.
        sentences: From :func:`reading`.

    Returns:
        ``{"runs": [...], "curves": [...], "reading": [...]}`` (NaN written as null).
    """
    payload = {
        "runs": _records(table),
        "curves": _records(curves) if curves is not None else [],
        "reading": list(sentences or []),
    }
    return json.dumps(payload, indent=2)
