"""A time budget holds to within one batch, and the kept model is the best validation-loss epoch.

Real training on the tiny synthetic set (random weights, 32 px). The slow epoch is real too: the
test's event receiver sleeps on every batch, as a big network on a slow CPU would take.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers.models import TINY_MODEL

from transfer_core.config import FreezePlan, RunConfig, Settings, TrainConfig
from transfer_core.training import train

SLOW_BATCH_SECONDS = 0.2


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


def _config(spec, **train_kwargs) -> RunConfig:
    return RunConfig(dataset=spec, model=TINY_MODEL, freeze=FreezePlan(mode="top_blocks", top_blocks=2),
                     train=TrainConfig(**{"epochs": 2, "batch_size": 8, **train_kwargs}))


def test_time_budget_ends_a_long_epoch_within_one_batch_and_evaluates_it(tiny_dataset, settings):
    events: list[tuple[float, dict]] = []

    def slow_emit(event: dict) -> None:
        events.append((time.perf_counter(), event))
        if event["type"] == "batch_end":
            time.sleep(SLOW_BATCH_SECONDS)  # Every batch is slow: one epoch far outlasts the budget.

    budget = 2.0
    config = _config(tiny_dataset, strategy="from_scratch", epochs=3, batch_size=1, time_budget_seconds=budget)
    result = train(config, emit=slow_emit, settings=settings)

    assert result.status == "finished", result.reason
    batches = [(t, e) for t, e in events if e["type"] == "batch_end"]
    (epoch_time, epoch_end), = [(t, e) for t, e in events if e["type"] == "epoch_end"]
    per_epoch = batches[0][1]["batches"]
    assert per_epoch * SLOW_BATCH_SECONDS > 1.5 * budget  # A whole epoch would have blown the budget.
    assert epoch_end["batches"] == len(batches) < per_epoch  # The epoch ended part-way, and says so.
    # Training time over the budget is at most the last batch and the validation pass.
    started = [t for t, e in events if e["type"] == "stage" and e["stage"] == "scratch"][0]
    ends = [started] + [t for t, _ in batches]
    longest_batch = max(later - earlier for earlier, later in zip(ends, ends[1:], strict=False))
    validation = epoch_time - batches[-1][0]
    report = result.report
    assert report["stopped_by_budget"] is True
    assert report["time_budget_seconds"] == budget
    assert report["training_seconds"] <= budget + longest_batch + validation
    assert report["training_seconds"] == pytest.approx(epoch_end["seconds"], abs=1e-3)
    assert report["val_accuracy"] is not None  # The cut epoch was evaluated.
    assert "cut after" in result.reason and f"of {per_epoch} batches" in result.reason


@pytest.fixture
def epoch_weights(monkeypatch):
    """Every epoch's weights as its stage model had them at the epoch's end, recorded during training."""
    # Imported here: the module subclasses a Keras callback, and collecting the fast tier imports no Keras.
    from transfer_core.training.progress import StageCallback

    recorded: list[dict] = []
    original = StageCallback.on_epoch_end

    def recording(self, epoch, logs=None):
        original(self, epoch, logs)
        if self.progress.rows and self.progress.rows[-1]["epoch"] == self.progress.epoch:
            recorded.append({"epoch": self.progress.epoch, "stage": self.stage,
                             "val_loss": self.progress.rows[-1]["val_loss"],
                             "weights": self.model.get_weights()})

    monkeypatch.setattr(StageCallback, "on_epoch_end", recording)
    return recorded


def _same(left: list[np.ndarray], right: list[np.ndarray]) -> bool:
    return len(left) == len(right) and all(np.array_equal(a, b) for a, b in zip(left, right, strict=True))


def test_a_completed_run_keeps_its_best_epoch_not_its_last(tiny_dataset, settings, epoch_weights):
    # A learning rate high enough that validation loss goes up and down over the epochs.
    config = _config(tiny_dataset, strategy="feature_extraction", epochs=8, learning_rate=0.3, optimizer="sgd")
    result = train(config, settings=settings)
    assert result.status == "finished", result.reason
    best = min(epoch_weights, key=lambda row: row["val_loss"])
    assert best["epoch"] != epoch_weights[-1]["epoch"], "this run's last epoch was its best: the test shows nothing"
    assert result.report["best_epoch"] == best["epoch"]
    assert _same(result.classifier.head.get_weights(), best["weights"])
    assert not _same(result.classifier.head.get_weights(), epoch_weights[-1]["weights"])
    assert result.report["val_loss"] == pytest.approx(best["val_loss"], rel=1e-4)


def test_fine_tuning_that_only_got_worse_keeps_the_head_stage_best(tiny_dataset, settings, epoch_weights):
    # Fine-tuning at a learning rate that wrecks the network: its epochs are all worse than the head's best.
    config = _config(tiny_dataset, strategy="fine_tuning", epochs=3, fine_tune_epochs=2, learning_rate=0.01,
                     fine_tune_learning_rate=5.0, optimizer="sgd")
    result = train(config, settings=settings)
    assert result.status in ("finished", "failed"), result.reason
    head_rows = [row for row in epoch_weights if row["stage"] == "head"]
    tune_rows = [row for row in epoch_weights if row["stage"] == "fine_tune"]
    assert tune_rows and min(r["val_loss"] for r in tune_rows) > min(r["val_loss"] for r in head_rows)
    best = min(head_rows, key=lambda row: row["val_loss"])
    assert result.status == "finished", result.reason
    assert result.report["best_epoch"] == best["epoch"]
    assert _same(result.classifier.head.get_weights(), best["weights"])
    assert result.report["val_loss"] == pytest.approx(best["val_loss"], rel=1e-4)
