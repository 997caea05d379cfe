"""Make finished runs for tests, in-process and fast, with the same files a worker writes.

Was ``tests/run_factory.py``; see ``helpers/__init__.py`` for how tests import it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from helpers.models import TINY_MODEL
from helpers.patience import patience
from transfer_core.config import FreezePlan, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.fileio import atomic_write_json
from transfer_core.jobs import save_model
from transfer_core.runs import EventLog, RunStore
from transfer_core.training import TrainResult, train


def tiny_config(dataset, *, model: ModelSpec = TINY_MODEL, name: str = "", **train_kwargs) -> RunConfig:
    """A RunConfig for fast tests: 2 epochs, batch 8, the top 2 blocks for fine-tuning."""
    freeze = train_kwargs.pop("freeze", FreezePlan(mode="top_blocks", top_blocks=2))
    return RunConfig(dataset=dataset, model=model, freeze=freeze,
                     train=TrainConfig(**{"epochs": 2, "batch_size": 8, **train_kwargs}), name=name)


def make_finished_run(runs_dir: Path, config: RunConfig, settings: Settings) -> tuple[Path, TrainResult]:
    """Train ``config`` in this process and write a complete run directory (as ``jobs.worker_main`` does).

    Returns:
        ``(run_dir, result)``; ``result.classifier.model`` is the live model that was saved.
    """
    run_dir = RunStore(runs_dir).create(config)
    with EventLog(run_dir / "events.jsonl") as log:
        result = train(config, emit=log, settings=settings)
        assert result.status == "finished", result.reason
        save_model(result.classifier.model, run_dir / "model.keras")
        result.history.to_csv(run_dir / "metrics.csv", index=False)
        atomic_write_json(run_dir / "report.json", {**result.report, "status": "finished", "reason": ""})
        log.write({"type": "finished", "reason": "", "val_accuracy": result.report.get("val_accuracy")})
    return run_dir, result


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, *, interval: float = 0.1) -> bool:
    """Poll ``predicate`` every ``interval`` seconds until it is true (True) or :func:`patience` of
    ``timeout`` seconds has passed (False)."""
    started = time.time()
    while time.time() - started < patience(timeout):
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
