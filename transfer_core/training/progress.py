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
        # Training seconds (sum of epoch times) after which the run ends at an epoch boundary.
        self.time_budget: float | None = None

    def training_seconds(self) -> float:
        """Training time so far: the sum of finished epochs' times (feature computation excluded)."""
        return sum(row["seconds"] for row in self.rows)

    def budget_used(self) -> bool:
        return self.time_budget is not None and self.training_seconds() >= self.time_budget

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
        self.stage_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        self.stage_epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        progress = self.progress
        logs = logs or {}
        progress.step += 1
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

    def on_epoch_end(self, epoch, logs=None):
        progress = self.progress
        if progress.stop_reason in ("nan", "stopped"):
            return  # A partial epoch is not an epoch: no row, no snapshot.
        logs = logs or {}
        progress.epoch += 1
        seconds = time.perf_counter() - self.epoch_started
        row = {
            "epoch": progress.epoch,
            "stage": self.stage,
            "loss": float(logs.get("loss", float("nan"))),
            "accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": float(logs.get("val_loss", float("nan"))),
            "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
            "seconds": round(seconds, 4),
            "elapsed": round(progress.elapsed(), 4),
            "images_per_second": round(self.num_images / seconds, 2) if seconds > 0 else None,
        }
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
        if progress.budget_used():
            progress.stop_reason = "budget"
            self.model.stop_training = True

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
