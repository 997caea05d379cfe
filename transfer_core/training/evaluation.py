"""After training: the kept model's validation (and test) metrics and the run's report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from transfer_core.metrics import evaluate_predictions
from transfer_core.report import RunReport, SplitEvaluation
from transfer_core.training.budget import planned_epochs
from transfer_core.training.context import RunContext
from transfer_core.training.feature_cache import compute_outputs, inference_function
from transfer_core.training.inputs import image_dataset
from transfer_core.training.keras_state import resolve_precision


def evaluate(ctx: RunContext) -> dict[str, SplitEvaluation]:
    """Validation (and test) metrics of the final model."""
    model, val_inputs = ctx.final_inputs
    on_arrays = isinstance(val_inputs, np.ndarray)
    val_probs = _predict_arrays(model, val_inputs) if on_arrays else _predict_images(ctx, ctx.val_data, "val")
    spec = ctx.spec
    root = Path(spec.root)
    rel = [str(Path(p).relative_to(root)) for p in ctx.val_data.paths]
    result = {"val": evaluate_predictions(ctx.val_data.labels, val_probs, spec.class_names, rel)}
    if ctx.test_data.paths:
        if on_arrays and ctx.arrays_from is not None:
            # The frozen part on LiteRT (its outputs cached like the training splits'), then the
            # trained part: the same two steps validation was measured with, several times faster
            # than Keras' predict through the whole network (which would trace it first).
            network, what, stage = ctx.arrays_from
            test_probs = _predict_arrays(model, compute_outputs(ctx, network, ctx.test_data, what, stage,
                                                                announce=False))
        else:
            test_probs = _predict_images(ctx, ctx.test_data, "test")
        rel_test = [str(Path(p).relative_to(root)) for p in ctx.test_data.paths]
        result["test"] = evaluate_predictions(ctx.test_data.labels, test_probs, spec.class_names, rel_test)
    return result


def _predict_arrays(model, inputs: np.ndarray) -> np.ndarray:
    """Probabilities of ``model`` on in-memory inputs, called directly: Keras' predict would build a
    predict function first (~0.05 s, as long as the rest of a warm feature-extraction run's evaluation)."""
    return np.concatenate([
        np.asarray(model(inputs[start:start + 256], training=False), dtype="float32")
        for start in range(0, len(inputs), 256)
    ])


def _predict_images(ctx: RunContext, data, split: str) -> np.ndarray:
    """Probabilities of the whole network over a split's images, timed in an ``evaluated`` event.

    One traced forward pass per run (:func:`inference_function`), shared by both splits: the first
    batch that traces it is timed apart, so the estimate can scale the rest to another split's size.
    """
    model = ctx.classifier.model
    tracing = id(model) not in ctx.inference_functions
    forward = inference_function(ctx, model)
    chunks: list[np.ndarray] = []
    first_images, first_seconds = 0, 0.0
    started = time.perf_counter()
    for images, _ in image_dataset(ctx, data, training=False, autotune=False):
        chunks.append(np.asarray(forward(images), dtype="float32"))
        if tracing and not first_images:
            first_images, first_seconds = int(images.shape[0]), time.perf_counter() - started
    ctx.emit({"type": "evaluated", "split": split, "images": len(data.paths),
              "seconds": round(time.perf_counter() - started, 4), "first_batch_images": first_images,
              "first_batch_seconds": round(first_seconds, 4)})
    return np.concatenate(chunks, axis=0)


def build_report(ctx: RunContext, history: pd.DataFrame, status: str, reason: str) -> RunReport:
    """Evaluate the kept model and summarise the run (what report.json holds)."""
    config = ctx.config
    evaluation = evaluate(ctx)
    trainable, frozen = _param_counts(ctx.classifier.model)
    training_seconds = float(history["seconds"].sum()) if len(history) else 0.0
    epochs_run = len(history)
    num_train = len(ctx.train_data.paths)
    val = evaluation["val"]
    return RunReport(
        status=status,
        reason=reason,
        strategy=config.train.strategy,
        backbone=config.model.backbone,
        weights=config.model.weights,
        input_size=int(ctx.classifier.input_size),
        precision=resolve_precision(config.train.precision),
        distribution=config.train.distribution,
        class_names=tuple(config.dataset.class_names),
        num_train=num_train,
        num_val=len(ctx.val_data.paths),
        val_accuracy=float(val.accuracy),
        val_loss=float(val.loss),
        best_val_accuracy=float(history["val_accuracy"].max()) if epochs_run else None,
        best_val_loss=float(history["val_loss"].min()) if epochs_run else None,
        best_epoch=int(ctx.best_epoch),
        epochs=epochs_run,
        epochs_planned=planned_epochs(config.train),
        time_budget_seconds=ctx.progress.time_budget,
        stopped_by_budget=ctx.progress.stop_reason == "budget",
        seconds=round(ctx.progress.elapsed(), 3),
        training_seconds=round(training_seconds, 3),
        feature_seconds=round(ctx.feature_seconds, 3),
        seconds_per_epoch=round(training_seconds / epochs_run, 4) if epochs_run else None,
        images_per_second=round(num_train * epochs_run / training_seconds, 2) if training_seconds else None,
        trainable_params=trainable,
        frozen_params=frozen,
        cache_hits=tuple(ctx.cache_hits),
        reused_backbone=bool(ctx.classifier.reused_backbone),
        peak_rss_mb=_peak_rss_mb(),
        evaluation=evaluation,
    )


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _param_counts(model) -> tuple[int, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return trainable, frozen
