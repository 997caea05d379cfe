"""One run's progress: the epoch rows, the stop/divergence/early-stopping state and its events.

:class:`ProgressTracker` lives for the whole run (epochs are counted across stages);
:class:`StageCallback` follows one stage's fit and keeps the best weights seen. The callback
speaks Keras' callback protocol, so the lean loop and Keras' own ``fit`` (under
``tf.distribute``) drive it alike. This module imports Keras; import it only inside a run.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras

from transfer_core.events import Emit, ShouldStop
from transfer_core.training.errors import RunStopped


class ProgressTracker:
    """Shared state of one run's event stream: global epoch and step, rows, why it stopped."""

    def __init__(self, emit: Emit, should_stop: ShouldStop, patience: int, num_classes: int) -> None:
        self.emit = emit
        # Cross-entropy at chance level is ln(num_classes); a hundred times that means the
        # weights have blown up even when Keras' probability clipping keeps the loss finite.
        self.divergence_loss = 100.0 * math.log(max(num_classes, 2))
        self.should_stop = should_stop
        self.patience = patience
        self.started = time.perf_counter()
        self.epoch = 0  # Global epoch counter across stages.
        self.step = 0
        self.rows: list[dict[str, Any]] = []
        self.stop_reason = ""  # "stopped" | "nan" | "early" | "budget" | ""
        self.nan_detail = ""
        # Training seconds (sum of epoch times) after which the run ends its epoch and evaluates.
        self.time_budget: float | None = None
        # The last epoch's validation pass: a budgeted epoch ends early enough to leave time for it.
        self.last_validation_seconds = 0.0
        self.partial_epoch: tuple[int, int] | None = None  # (batches trained, per epoch) of a cut epoch.
        # The run's best validation loss over all stages, and the whole model's weights at it.
        self.best_loss = math.inf
        self.best_snapshot: list | None = None

    def training_seconds(self) -> float:
        """Training time so far: the sum of finished epochs' times (feature computation excluded)."""
        return sum(row["seconds"] for row in self.rows)

    def budget_used(self) -> bool:
        return self.time_budget is not None and self.training_seconds() >= self.time_budget

    def budget_reached(self, epoch_seconds: float) -> bool:
        """Whether the budget is used once this epoch's batches so far and its validation are counted.

        Checked after every batch, so a run ends within one batch of its budget even when one
        epoch is longer than the whole budget (from scratch at fine-tuning's time).
        """
        if self.time_budget is None:
            return False
        return self.training_seconds() + epoch_seconds + self.last_validation_seconds >= self.time_budget

    def diverged(self, loss: float) -> bool:
        return not math.isfinite(loss) or loss > self.divergence_loss

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def check_stop(self) -> None:
        if self.should_stop():
            raise RunStopped()

    def callback(self, stage: str, batches: int, num_images: int) -> StageCallback:
        """A fresh callback for one stage's fit."""
        return StageCallback(self, stage, batches, num_images)


class StageCallback(keras.callbacks.Callback):
    """Emits batch and epoch events, stops on request or divergence, keeps the best weights."""

    def __init__(self, progress: ProgressTracker, stage: str, batches: int, num_images: int) -> None:
        super().__init__()
        self.progress = progress
        self.stage = stage
        self.batches = batches
        self.num_images = num_images
        self.best_loss = math.inf
        self.best_weights = None
        self.best_epoch = 0
        self.waited = 0
        self.epoch_started = 0.0
        self.last_batch_ended = 0.0
        self.stage_epoch = 0
        self.batches_run = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        self.last_batch_ended = self.epoch_started
        self.stage_epoch = epoch + 1
        self.batches_run = 0

    def on_train_batch_end(self, batch, logs=None):
        progress = self.progress
        logs = logs or {}
        progress.step += 1
        self.batches_run = batch + 1
        self.last_batch_ended = time.perf_counter()
        loss = float(logs.get("loss", float("nan")))
        progress.emit(
            {
                "type": "batch_end",
                "stage": self.stage,
                "epoch": progress.epoch + 1,
                "batch": batch + 1,
                "batches": self.batches,
                "step": progress.step,
                "loss": loss,
                "accuracy": float(logs.get("accuracy", float("nan"))),
            }
        )
        if progress.diverged(loss):
            progress.stop_reason = "nan"
            progress.nan_detail = f"loss {loss:g} at epoch {progress.epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True
        elif progress.should_stop():
            progress.stop_reason = "stopped"
            self.model.stop_training = True
        elif progress.budget_reached(self.last_batch_ended - self.epoch_started):
            # End the epoch here; the loop still validates it, so the partial epoch is a real row.
            progress.stop_reason = "budget"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        progress = self.progress
        if progress.stop_reason in ("nan", "stopped"):
            return  # A partial epoch is not an epoch: no row, no snapshot.
        logs = logs or {}
        progress.epoch += 1
        ended = time.perf_counter()
        seconds = ended - self.epoch_started
        if self.batches_run:
            progress.last_validation_seconds = max(0.0, ended - self.last_batch_ended)
        row = {
            "epoch": progress.epoch,
            "stage": self.stage,
            "loss": float(logs.get("loss", float("nan"))),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": float(logs.get("val_loss", float("nan"))),
            "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
            "seconds": round(seconds, 4),
            "elapsed": round(progress.elapsed(), 4),
            "images_per_second": round(self.num_images * self._fraction() / seconds, 2) if seconds > 0 else None,
        }
        if self.batches_run and self.batches_run < self.batches:
            row["batches"] = self.batches_run  # A budget ended this epoch part-way.
            progress.partial_epoch = (self.batches_run, self.batches)
        progress.rows.append(row)
        progress.emit({"type": "epoch_end", "stage_epoch": self.stage_epoch, **row})
        if progress.diverged(row["loss"]):
            progress.stop_reason = "nan"
            progress.nan_detail = f"loss {row['loss']:g} at epoch {progress.epoch}"
            self.model.stop_training = True
            return
        val_loss = row["val_loss"] if math.isfinite(row["val_loss"]) else math.inf
        if val_loss < self.best_loss:
            self.best_loss = val_loss
            self.best_weights = self.model.get_weights()
            self.best_epoch = progress.epoch
            self.waited = 0
        else:
            self.waited += 1
            if progress.patience and self.waited >= progress.patience:
                progress.stop_reason = "early"
                self.model.stop_training = True
        if progress.stop_reason == "budget" or progress.budget_used():
            progress.stop_reason = "budget"
            self.model.stop_training = True

    def _fraction(self) -> float:
        """The share of the epoch's images trained (1 unless the budget ended it part-way)."""
        if not self.batches_run or self.batches_run >= self.batches:
            return 1.0
        return self.batches_run / self.batches

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
