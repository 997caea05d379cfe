"""Backbone and frozen-prefix outputs, computed once per image and cached on disk.

The key names the backbone, its weights file, the input size, the precision, every image's
content hash, the decoder version and Keras' version, so a cached file is reused only for the
very same features.

The frozen network itself runs where :mod:`transfer_core.frozen_runtime` decides on the first
batch: LiteRT with XNNPACK when it converts and matches Keras on those images, else TensorFlow;
either way a ``frozen_runtime`` event says which and why. The cache key does not name the runtime:
both give the same features to about 1e-6 of their scale.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np

from transfer_core.training.context import RunContext, SplitData
from transfer_core.training.inputs import one_pass_dataset
from transfer_core.training.keras_state import resolve_precision

# Frozen-prefix outputs larger than this are not cached (they would not fit
# comfortably in memory on a laptop); training then runs the whole network.
MAX_PREFIX_CACHE_BYTES = 1_500_000_000


def cache_key(ctx: RunContext, what: str, data: SplitData) -> str | None:
    """The file name of ``what`` (``pool`` or ``prefix:<layer>``) for ``data``; None: not cacheable."""
    from transfer_core import zoo

    model = ctx.config.model
    if model.weights != "imagenet":
        return None  # Random weights differ per seed; nothing worth reusing.
    try:
        weights_file = Path(zoo.resolve_weights(model.backbone, ctx.classifier.input_size, settings=ctx.settings))
        weights_id = f"{weights_file.name}:{weights_file.stat().st_size}"
    except Exception:  # noqa: BLE001 - an unresolvable file just means no cache.
        return None
    import keras

    from transfer_core.data.decode import DECODE_VERSION

    payload = {
        "what": what,
        "backbone": model.backbone,
        "weights": weights_id,
        "input_size": ctx.classifier.input_size,
        "precision": resolve_precision(ctx.train_config.precision),
        "images": data.shas,
        "decode": DECODE_VERSION,  # Features of differently decoded pixels are not reused.
        "keras": keras.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def compute_outputs(ctx: RunContext, model, data: SplitData, what: str, stage: str, *,
                    announce: bool = True) -> np.ndarray:
    """Run ``model`` over ``data``'s images once, with an on-disk cache.

    ``announce=False``: no ``progress`` events (a pass inside the run's evaluation, not a stage).
    """
    key = cache_key(ctx, what, data) if ctx.train_config.use_cache else None
    cache_path = ctx.settings.cache_dir / "features" / f"{key}.npy" if key else None
    if cache_path is not None and cache_path.exists():
        try:
            outputs = np.load(cache_path, allow_pickle=False)
            if outputs.shape[0] == len(data.paths):
                ctx.cache_hits.append(what)
                if announce:
                    ctx.emit({"type": "progress", "stage": stage, "done": len(data.paths),
                              "total": len(data.paths), "cached": True})
                return outputs
        except (OSError, ValueError):
            pass  # A damaged cache file is recomputed.
    started = time.perf_counter()
    outputs = _predict_with_progress(ctx, model, data, what, stage, announce)
    ctx.feature_seconds += time.perf_counter() - started
    if cache_path is not None and outputs.nbytes <= MAX_PREFIX_CACHE_BYTES:
        from transfer_core.fileio import atomic_write_bytes

        buffer = io.BytesIO()
        np.save(buffer, outputs, allow_pickle=False)
        atomic_write_bytes(cache_path, buffer.getvalue())
    return outputs


def estimated_bytes(prefix, num_images: int) -> int:
    """Bytes of ``prefix``'s float32 outputs for ``num_images`` images."""
    shape = prefix.output.shape[1:]
    return int(np.prod([int(d) for d in shape])) * 4 * num_images


def _predict_with_progress(ctx: RunContext, model, data: SplitData, what: str, stage: str,
                           announce: bool) -> np.ndarray:
    ds = one_pass_dataset(ctx, data)
    total = len(data.paths)
    done = 0
    chunks = []
    for images, _ in ds:
        ctx.progress.check_stop()
        frozen = ctx.frozen_passes.get(what)
        if frozen is None:  # Decided on the first batch: the check compares it with Keras.
            frozen = ctx.frozen_passes[what] = _frozen_pass(ctx, model, what, stage, images.numpy())
        if frozen.model is not None:
            chunks.append(frozen.model.run_batch(images.numpy()))
        else:
            chunks.append(inference_function(ctx, model)(images).numpy())
        done += int(images.shape[0])
        if announce:
            ctx.emit({"type": "progress", "stage": stage, "done": done, "total": total})
    return np.concatenate(chunks, axis=0)


def _frozen_pass(ctx: RunContext, model, what: str, stage: str, first_images: np.ndarray):
    """Where ``model`` runs this run (LiteRT or TensorFlow), announced in a ``frozen_runtime`` event."""
    from transfer_core.frozen_runtime import frozen_pass

    frozen = frozen_pass(model, settings=ctx.settings, backbone=ctx.config.model.backbone,
                         weights=ctx.config.model.weights, cut=what, check_images=first_images)
    ctx.emit(frozen.event(stage))
    return frozen


def inference_function(ctx: RunContext, model):
    """One traced graph per model, for any batch size: tracing costs more than the
    forward pass itself on a small data set, so it must happen once per run."""
    import tensorflow as tf

    if id(model) not in ctx.inference_functions:
        size = ctx.classifier.input_size
        signature = [tf.TensorSpec([None, size, size, 3], tf.float32)]
        ctx.inference_functions[id(model)] = tf.function(
            lambda images: model(images, training=False), input_signature=signature
        )
    return ctx.inference_functions[id(model)]
