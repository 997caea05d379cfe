"""A run's wall-clock training budget: resolved when the run starts, explained when it ends.

A comparison gives its from-scratch run the training time fine-tuning used, so the two are
compared at equal cost. The budget counts training time (the sum of epoch times, validation
included, feature computation excluded) and is checked after every batch, leaving time for the
last epoch's validation pass: the run ends its epoch there, validates it and still finishes, so it
trains at most one batch (plus a validation pass longer than the last one) past its budget.
"""

from __future__ import annotations

import json
from pathlib import Path

from transfer_core.config import TrainConfig
from transfer_core.report import RunReport


def planned_epochs(train_config: TrainConfig) -> int:
    """Epochs the run would train without a stop: both stages for fine-tuning."""
    if train_config.strategy == "fine_tuning":
        return train_config.epochs + train_config.fine_tune_epochs
    return train_config.epochs


def resolve_time_budget(train_config: TrainConfig) -> float | None:
    """The run's budget in training seconds, or None (no budget, or none could be read).

    ``time_budget_seconds`` wins; otherwise ``time_budget_from`` names a run directory whose
    report's ``training_seconds`` is the budget. A source run that failed or left no report
    gives no budget: the run then trains its planned epochs.
    """
    if train_config.time_budget_seconds is not None:
        return float(train_config.time_budget_seconds)
    if not train_config.time_budget_from:
        return None
    try:
        report = RunReport.from_dict(json.loads((Path(train_config.time_budget_from) / "report.json").read_text()))
    except (OSError, ValueError):  # json.JSONDecodeError is a ValueError.
        return None
    seconds = report.training_seconds
    return float(seconds) if seconds and report.status in ("finished", "stopped") else None


def budget_reason(training_seconds: float, budget: float, epochs_run: int, epochs_planned: int,
                  partial: tuple[int, int] | None = None) -> str:
    """The reason a run that used its budget records, e.g. ``"time budget used: 41 s ... 7 of 40 epochs"``.

    ``partial`` is ``(batches trained, batches per epoch)`` when the budget ended the last epoch part-way.
    """
    cut = f" (the last one cut after {partial[0]} of {partial[1]} batches)" if partial else ""
    return (f"time budget used: {training_seconds:.1f} s of training for a budget of {budget:.1f} s, "
            f"after {epochs_run} of {epochs_planned} epochs{cut}")
