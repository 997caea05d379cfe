"""The small state one run's steps pass along: what to train, the data, the model, what was measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from transfer_core.config import RunConfig, Settings
from transfer_core.events import Emit

if TYPE_CHECKING:  # progress imports Keras at import time; this module must not.
    from transfer_core.training.progress import ProgressTracker

# The epoch stages (name, on cached inputs) this process has trained before. A warm worker's later run
# traces the same kind of step faster than a new process's first (Keras and TensorFlow's one-time costs:
# ~6 s against ~9 s for MobileNetV2-0.35 from scratch at 224 px), so the estimate keeps the two apart.
_EPOCH_STAGES_SEEN: set[tuple[str, bool]] = set()


@dataclass
class SplitData:
    """One split in manifest order: absolute image paths, integer labels, content hashes."""

    paths: list[str]
    labels: np.ndarray
    shas: list[str]


@dataclass
class RunContext:
    """One run of :func:`transfer_core.training.train`; each step reads and fills a few fields."""

    config: RunConfig
    settings: Settings
    emit: Emit
    progress: ProgressTracker
    classifier: Any = None  # transfer_core.models.Classifier
    train_data: SplitData | None = None
    val_data: SplitData | None = None
    test_data: SplitData | None = None
    cache_hits: list[str] = field(default_factory=list)
    feature_seconds: float = 0.0
    best_epoch: int = 0
    final_inputs: tuple[Any, Any] | None = None  # (model, val inputs) for evaluation
    # The frozen network (and its cache name) whose outputs the training arrays are: the test split
    # goes through it too (LiteRT, cached) instead of through the whole network in Keras.
    arrays_from: tuple[Any, str, str] | None = None  # (network, cache name, stage)
    inference_functions: dict[int, Any] = field(default_factory=dict)
    frozen_passes: dict[str, Any] = field(default_factory=dict)  # what -> frozen_runtime.FrozenPass
    decode_announced: bool = False

    @property
    def spec(self):
        return self.config.dataset

    @property
    def train_config(self):
        return self.config.train

    def stage(self, stage: str, description: str, epochs: int, cached: bool) -> None:
        """Announce a stage (after a stop check: a stop between stages ends the run here)."""
        self.progress.check_stop()
        event = {"type": "stage", "stage": stage, "description": description, "epochs": epochs, "cached": cached}
        if epochs:
            event["traced_before"] = (stage, cached) in _EPOCH_STAGES_SEEN
            _EPOCH_STAGES_SEEN.add((stage, cached))
        self.emit(event)
