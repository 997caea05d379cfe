"""The engine's entry points: :func:`train`, :func:`preflight`, :func:`compute_head_features`.

Progress is a stream of plain dict events passed to ``emit`` (declared in
:mod:`transfer_core.events`). ``should_stop`` is polled after every batch; a stop keeps the
best weights seen so far. Keras' global state is reset once at the start of each run, in
:func:`transfer_core.training.keras_state.reset_keras_state` (see ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.config import RunConfig, Settings
from transfer_core.events import Emit, ShouldStop
from transfer_core.runs import EPOCH_COLUMNS
from transfer_core.training.budget import budget_reason, planned_epochs, resolve_time_budget
from transfer_core.training.errors import BudgetUsed, RunFailed, RunStopped
from transfer_core.training.keras_state import distribution_scope, reset_keras_state


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    status: str  # finished | stopped | failed
    reason: str
    classifier: Any | None  # transfer_core.models.Classifier
    history: pd.DataFrame
    # What report.json holds (transfer_core.report.RunReport.to_dict()).
    report: dict[str, Any] = field(default_factory=dict)


def train(
    config: RunConfig,
    *,
    emit: Emit | None = None,
    should_stop: ShouldStop | None = None,
    settings: Settings,
) -> TrainResult:
    """Train one run in this process and evaluate it.

    Args:
        config: What to train (data set, model, freeze plan, training settings).
        emit: Receives every progress event (a dict with a ``type``); see :mod:`transfer_core.events`.
        should_stop: Polled after every batch; returning True stops the run
            within one batch and keeps the best weights so far.
        settings: Weights folder and cache location.

    Returns:
        A :class:`TrainResult`. Failures (missing weights, empty splits, NaN
        loss, ...) come back as ``status="failed"`` with a reason, not as exceptions.
    """
    from transfer_core.training.evaluation import build_report
    from transfer_core.training.inputs import load_splits
    from transfer_core.training.recipes import run_strategy

    emit = emit or (lambda event: None)
    should_stop = should_stop or (lambda: False)
    ctx = _new_context(config, emit, should_stop, settings)
    status, reason = "finished", ""
    try:
        policy = reset_keras_state(config.train.seed, config.train.precision)
        load_splits(ctx)
        ctx.progress.time_budget = resolve_time_budget(config.train)
        emit(
            {
                "type": "run_started",
                "strategy": config.train.strategy,
                "backbone": config.model.backbone,
                "weights": config.model.weights,
                "classes": list(config.dataset.class_names),
                "num_train": len(ctx.train_data.paths),
                "num_val": len(ctx.val_data.paths),
                "epochs_total": planned_epochs(config.train),
                "batch_size": config.train.batch_size,
                "precision": policy,
                "distribution": config.train.distribution,
                "time_budget_seconds": ctx.progress.time_budget,
            }
        )
        with distribution_scope(config.train.distribution):
            ctx.classifier = _build(config, settings)
            run_strategy(ctx)
    except RunStopped:
        status, reason = "stopped", "stopped on request; the best weights so far were kept"
    except BudgetUsed:  # A clean end within one batch of the budget: the run finished.
        reason = budget_reason(ctx.progress.training_seconds(), ctx.progress.time_budget,
                               len(ctx.progress.rows), planned_epochs(config.train), ctx.progress.partial_epoch)
    except RunFailed as error:
        status, reason = "failed", str(error)
    except Exception as error:  # noqa: BLE001 - every failure becomes a reason a person can read.
        from transfer_core.zoo import WeightsUnavailableError

        status = "failed"
        if isinstance(error, (WeightsUnavailableError, ValueError)):
            reason = str(error)
        else:
            reason = f"{type(error).__name__}: {error}"
    history = pd.DataFrame(ctx.progress.rows, columns=EPOCH_COLUMNS)
    if status != "failed" and ctx.final_inputs is None:
        # Stopped before any epoch finished: there is nothing worth keeping.
        if status == "stopped":
            reason = "stopped on request before the first epoch ended: there was no model to keep"
        return TrainResult(status, reason, None, history, {"status": status, "reason": reason})
    report: dict[str, Any] = {}
    if status != "failed":
        try:
            report = build_report(ctx, history, status, reason).to_dict()
        except Exception as error:  # noqa: BLE001
            status, reason = "failed", f"Evaluation failed: {type(error).__name__}: {error}"
    if status == "failed":
        return TrainResult(status, reason, None, history, {"status": status, "reason": reason})
    if _shares_backbone(config):
        from transfer_core.models import keep_backbone

        keep_backbone(ctx.classifier, config.model, settings)
    return TrainResult(status, reason, ctx.classifier, history, report)


def compute_head_features(
    config: RunConfig, settings: Settings, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features of one split, through the engine's on-disk cache.

    The same cache key as a feature-extraction run, so a run and this call reuse
    each other's work.

    Returns:
        ``(features, labels)``.

    Raises:
        ValueError: The split is empty.
    """
    from transfer_core.models import build_classifier, features_cache_name
    from transfer_core.training.feature_cache import compute_outputs
    from transfer_core.training.inputs import load_split

    ctx = _new_context(config, lambda event: None, lambda: False, settings)
    data = load_split(config.dataset, split)
    if not data.paths:
        raise ValueError(f"The {split} split of {config.dataset.root} is empty. Received: 0 images")
    ctx.train_data = data
    ctx.classifier = build_classifier(config.model, config.dataset.num_classes, settings=settings)
    features = compute_outputs(ctx, ctx.classifier.feature_extractor, data, features_cache_name(config.model),
                               "features")
    return features, data.labels


def preflight(config: RunConfig, settings: Settings) -> None:
    """Check a run before any work starts; cheap (no TensorFlow).

    Raises:
        ValueError: Unknown backbone, an input size the backbone rejects, a data
            set that is missing or has an empty training or validation split.
        transfer_core.zoo.WeightsUnavailableError: ImageNet weights are needed,
            are not available offline and downloads are off.
    """
    from transfer_core import zoo
    from transfer_core.data import DataError, read_manifest

    zoo.get_backbone_info(config.model.backbone)
    input_size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    try:
        manifest = read_manifest(config.dataset)
    except (DataError, OSError) as error:
        raise ValueError(f"The data set at {config.dataset.root} cannot be read: {error}") from None
    counts = manifest["split"].value_counts()
    if counts.get("train", 0) == 0 or counts.get("val", 0) == 0:
        raise ValueError(
            "Training needs images in both the training and the validation split. "
            f"Received: train={int(counts.get('train', 0))}, val={int(counts.get('val', 0))} images"
        )
    if config.model.weights == "imagenet" and settings.offline:
        # Resolving raises WeightsUnavailableError with the file name and where to put it.
        zoo.resolve_weights(config.model.backbone, input_size, settings=settings)


def _new_context(config: RunConfig, emit: Emit, should_stop: ShouldStop, settings: Settings):
    from transfer_core.training.context import RunContext
    from transfer_core.training.progress import ProgressTracker

    progress = ProgressTracker(emit, should_stop, config.train.early_stopping_patience, config.dataset.num_classes)
    return RunContext(config=config, settings=settings, emit=emit, progress=progress)


def _build(config: RunConfig, settings: Settings):
    from transfer_core.models import build_classifier, forget_kept_backbone, recycles_backbones
    from transfer_core.training import step_cache

    train_batchnorm = config.freeze.train_batchnorm or config.train.strategy == "from_scratch"
    if not _shares_backbone(config):
        # This run builds its own; a kept one (and the classifier kept on it) would only take memory.
        forget_kept_backbone()
        step_cache.forget()

    def build():
        return build_classifier(
            config.model, config.dataset.num_classes, settings=settings, train_batchnorm=train_batchnorm,
            reuse_backbone=_shares_backbone(config), seed=config.train.seed,
        )

    if _shares_backbone(config) and recycles_backbones():
        # A warm worker: the classifier and traced steps of an earlier run of the same shapes, reset.
        return step_cache.classifier_for(config.model, config.dataset.num_classes, settings=settings,
                              train_batchnorm=train_batchnorm, seed=config.train.seed, build=build)
    return build()


def _shares_backbone(config: RunConfig) -> bool:
    """Feature extraction never changes the backbone, so it may share the one an earlier run in
    this process kept (or a standby worker prebuilt); the head's seed keeps the result the same.
    Fine-tuning too in a process that recycles backbones (a warm worker: the ImageNet weights are
    put back after the run). Not under tf.distribute: its variables belong to that strategy."""
    from transfer_core.models import recycles_backbones

    if config.train.distribution != "none":
        return False
    return config.train.strategy == "feature_extraction" or (
        config.train.strategy == "fine_tuning" and recycles_backbones())

