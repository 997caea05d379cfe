"""Look inside a trained classifier: predictions and Grad-CAM.

Embeddings live in :mod:`transfer_core.explore.embeddings`, the preprocessing view in
:mod:`transfer_core.explore.model_view`.

Every function works on the classifier :func:`transfer_core.models.build_classifier`
makes, or on the same model loaded back from a run's ``model.keras``::

    image -> preprocessing layers -> backbone (nested) -> "pool" -> "head" (nested)

Grad-CAM (Selvaraju et al., 2017) needs the backbone's last feature map and the
gradient of a class score with respect to it. Because the backbone is a nested
model, the graph is walked by hand: preprocessing, then the backbone (in
inference mode), then pooling and the head, all inside one
``tf.GradientTape``. The class score is the logit (the classifier's input to
the softmax), so a confident prediction still has a useful gradient.

Nothing here trains or changes a model, so a loaded model may be shared
read-only (the inference worker keeps recently used ones). TensorFlow is imported
inside functions; the app calls them only in its inference worker, never in the web server.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from transfer_core.config import ModelSpec, RunConfig, Settings

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras

    from transfer_core.frozen_runtime import FrozenPass

log = logging.getLogger(__name__)

__all__ = [
    "ClassifierParts",
    "GradCam",
    "as_batch",
    "classifier_parts",
    "colorize",
    "frozen_backbone",
    "grad_cam",
    "grad_cam_batch",
    "head_probabilities",
    "load_model",
    "overlay",
    "predict",
    "top_k",
    "validation_predictions",
]

def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model file in safe mode (no arbitrary code runs).

    Args:
        path: A ``model.keras`` file, or a run directory that holds one.

    Returns:
        The model, ready for inference.

    Raises:
        FileNotFoundError: No model file at ``path``.
    """
    import keras

    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"No trained model at {path}: the run has not finished or was deleted.")
    return keras.saving.load_model(path, safe_mode=True, compile=False)


@dataclass
class ClassifierParts:
    """The pieces of a classifier model that Grad-CAM and embeddings need (all shared, not copies)."""

    preprocessing: list
    backbone: Any
    pool: Any
    head: Any
    input_size: int


def classifier_parts(model: keras.Model) -> ClassifierParts:
    """Find preprocessing, backbone, pooling and head inside a classifier model.

    Args:
        model: A model from ``build_classifier(...).model`` or loaded from ``model.keras``.

    Returns:
        The parts, sharing layers and weights with ``model``.

    Raises:
        ValueError: The model does not have the ``backbone``/``pool``/``head`` structure.
    """
    import keras

    from transfer_core.models import BACKBONE_LAYER, HEAD_LAYER, POOL_LAYER

    names = [layer.name for layer in model.layers]
    missing = [n for n in (BACKBONE_LAYER, POOL_LAYER, HEAD_LAYER) if n not in names]
    if missing:
        raise ValueError(
            f"Not a Transfer Lab classifier: layers {missing} are missing. Received: layers={names}"
        )
    backbone_index = names.index(BACKBONE_LAYER)
    preprocessing = [
        layer for layer in model.layers[:backbone_index] if not isinstance(layer, keras.layers.InputLayer)
    ]
    input_size = int(model.inputs[0].shape[1])
    return ClassifierParts(
        preprocessing=preprocessing,
        backbone=model.get_layer(BACKBONE_LAYER),
        pool=model.get_layer(POOL_LAYER),
        head=model.get_layer(HEAD_LAYER),
        input_size=input_size,
    )


def as_batch(images: np.ndarray, input_size: int) -> np.ndarray:
    """Float32 ``(N, S, S, 3)`` at the model's size (bilinear resize when needed, like the pipeline)."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3) or (H, W, 3). Received: shape={array.shape}")
    if array.shape[1:3] != (input_size, input_size):
        import tensorflow as tf

        array = tf.image.resize(array, (input_size, input_size), method="bilinear").numpy()
    return array


def predict(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for raw 0..255 RGB images.

    Args:
        model: The classifier.
        images: ``(N, H, W, 3)`` or one ``(H, W, 3)`` image, values 0..255;
            resized to the model's input size when needed.
        batch_size: Images per forward pass.

    Returns:
        Probabilities ``(N, num_classes)``.
    """
    parts_size = int(model.inputs[0].shape[1])
    batch = as_batch(images, parts_size)
    if len(batch) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    chunks = [np.asarray(model(batch[i : i + batch_size], training=False)) for i in range(0, len(batch), batch_size)]
    return np.concatenate(chunks, axis=0)


def frozen_backbone(model: keras.Model, images: np.ndarray, spec: ModelSpec, settings: Settings) -> FrozenPass:
    """Where ``model``'s pooled backbone runs: LiteRT when ``spec`` names an ImageNet backbone that
    converts and matches ``model``'s own pooled features on the first of ``images``, else TensorFlow.

    Only for a backbone nobody trained (a fresh ImageNet classifier, a feature-extraction run's
    model): the converted network holds the weights file's values, and the check refuses it for
    any model whose backbone differs from them.
    """
    import keras

    from transfer_core.frozen_runtime import CHECK_IMAGES, frozen_pass
    from transfer_core.models import POOL_LAYER, features_cache_name

    extractor = keras.Model(model.inputs[0], model.get_layer(POOL_LAYER).output, name="pooled_features")
    first = as_batch(np.asarray(images)[:CHECK_IMAGES], int(model.inputs[0].shape[1]))
    frozen = frozen_pass(extractor, settings=settings, backbone=spec.backbone, weights=spec.weights,
                         cut=features_cache_name(spec), check_images=first)  # Each head's pooling apart.
    log.info("Explore: %s", frozen.describe("pooled features"))
    return frozen


def head_probabilities(model: keras.Model, features: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities from pooled features: the classifier's head alone."""
    head = classifier_parts(model).head
    if len(features) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    return np.concatenate([np.asarray(head(features[i : i + batch_size], training=False), dtype=np.float32)
                           for i in range(0, len(features), batch_size)])


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int = 3) -> pd.DataFrame:
    """The ``k`` most likely classes of one image.

    Args:
        probabilities: ``(num_classes,)`` probabilities of one image.
        class_names: Names in output order.
        k: How many classes to keep (capped at the number of classes).

    Returns:
        Columns ``rank``, ``class``, ``probability``; most likely first.

    Raises:
        ValueError: ``k`` < 1 or a length mismatch.
    """
    probabilities = np.asarray(probabilities, dtype=float).reshape(-1)
    if k < 1:
        raise ValueError(f"k must be >= 1. Received: k={k}")
    if len(probabilities) != len(class_names):
        raise ValueError(
            f"One probability per class is needed. Received: {len(probabilities)} probabilities, "
            f"{len(class_names)} classes"
        )
    order = np.argsort(-probabilities, kind="stable")[: min(k, len(class_names))]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "class": [class_names[i] for i in order],
            "probability": probabilities[order],
        }
    )


# ----- Grad-CAM -------------------------------------------------------------------------------


@dataclass
class GradCam:
    """Grad-CAM of one image.

    Attributes:
        heatmap: ``(H, W)`` floats in 0..1 at the image's size (1 = most evidence for the class).
        overlay: ``(H, W, 3)`` uint8: the image with the heat map blended on top.
        class_index: The class explained.
        probability: The model's probability of that class.
        feature_map_size: Side of the backbone's last feature map (the heat map's real resolution).
        has_evidence: False when no location had positive evidence (the heat map is all zeros).
    """

    heatmap: np.ndarray
    overlay: np.ndarray
    class_index: int
    probability: float
    feature_map_size: int
    has_evidence: bool = True


def _head_logits(head: Any, features: Any) -> Any:
    """Run the head, but return the classifier's logits instead of its softmax output."""
    import keras

    layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]
    *body, classifier = layers
    x = features
    for layer in body:
        x = layer(x, training=False)
    return keras.ops.matmul(x, classifier.kernel) + classifier.bias


def grad_cam_batch(
    model: keras.Model, images: np.ndarray, class_indices: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Grad-CAM heat maps for a batch of images at the model's input size.

    Args:
        model: The classifier.
        images: ``(N, H, W, 3)`` raw 0..255 RGB; resized to the input size when needed.
        class_indices: The class to explain per image; the predicted class when None.

    Returns:
        ``(heatmaps, probabilities, feature_map_size)``: heat maps ``(N, S, S)`` in 0..1 at
        the input size, probabilities ``(N, num_classes)``, and the feature map's side.

    Raises:
        ValueError: Wrong image shape, a class index out of range, or not a Transfer Lab classifier.
    """
    import tensorflow as tf

    parts = classifier_parts(model)
    batch = tf.constant(as_batch(images, parts.input_size))
    num_classes = int(model.outputs[0].shape[-1])
    with tf.GradientTape() as tape:
        x = batch
        for layer in parts.preprocessing:
            x = layer(x)
        feature_map = parts.backbone(x, training=False)
        tape.watch(feature_map)
        logits = _head_logits(parts.head, parts.pool(feature_map))
        probabilities = tf.nn.softmax(logits, axis=-1)
        if class_indices is None:
            targets = tf.argmax(logits, axis=-1)
        else:
            targets = tf.constant(np.asarray(class_indices, dtype=np.int64).reshape(-1))
            if int(tf.size(targets)) != int(batch.shape[0]):
                raise ValueError(
                    f"One class index per image is needed. Received: {int(tf.size(targets))} for "
                    f"{int(batch.shape[0])} images"
                )
            if bool(tf.reduce_any((targets < 0) | (targets >= num_classes))):
                raise ValueError(
                    f"class_indices must lie in 0..{num_classes - 1}. Received: class_indices={list(class_indices)}"
                )
        score = tf.reduce_sum(logits * tf.one_hot(targets, num_classes), axis=-1)
    gradients = tape.gradient(score, feature_map)
    # Channel weights: the gradient averaged over positions (the "global average" of Grad-CAM).
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * feature_map, axis=-1))  # (N, h, w)
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)
    resized = tf.image.resize(cam[..., None], (parts.input_size, parts.input_size), method="bilinear")[..., 0]
    # Bilinear resizing may miss the peak by a little: scale again so the strongest evidence is exactly 1.
    resized = tf.math.divide_no_nan(resized, tf.reduce_max(resized, axis=(1, 2), keepdims=True))
    heatmaps = np.clip(resized.numpy(), 0.0, 1.0).astype(np.float32)
    return heatmaps, probabilities.numpy(), int(feature_map.shape[1])


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """Map 0..1 values to RGB with a "jet"-like colour scale (blue = low, red = high).

    Args:
        heatmap: ``(H, W)`` floats in 0..1.

    Returns:
        ``(H, W, 3)`` uint8 colours.
    """
    x = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    red = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return (np.stack([red, green, blue], axis=-1) * 255.0 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a heat map over a grey copy of an image; stronger evidence is more opaque.

    The image is shown in grey so that the heat map's colours cannot be confused with the picture's own.

    Args:
        image: ``(H, W, 3)`` RGB, 0..255.
        heatmap: ``(h, w)`` in 0..1; resized to ``(H, W)`` when it differs.
        alpha: Opacity of the heat map where it is 1 (a third of that where it is 0).

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ValueError: ``alpha`` outside 0..1 or a wrong image shape.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in 0..1. Received: alpha={alpha}")
    base = np.asarray(image, dtype=np.float32)
    if base.ndim != 3 or base.shape[-1] != 3:
        raise ValueError(f"image must have shape (H, W, 3). Received: shape={base.shape}")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != base.shape[:2]:
        import tensorflow as tf

        heat = tf.image.resize(heat[..., None], base.shape[:2], method="bilinear").numpy()[..., 0]
    heat = np.clip(heat, 0.0, 1.0)
    grey = (base @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None].repeat(3, axis=-1)
    colours = colorize(heat).astype(np.float32)
    weight = (alpha * (1.0 / 3.0 + 2.0 / 3.0 * heat))[..., None]
    return np.clip(grey * (1.0 - weight) + colours * weight, 0, 255).astype(np.uint8)


def grad_cam(
    model: keras.Model, image: np.ndarray, class_index: int | None = None, alpha: float = 0.6
) -> GradCam:
    """Grad-CAM of one image: where the model found evidence for a class.

    Args:
        model: The classifier.
        image: ``(H, W, 3)`` raw 0..255 RGB at any size (``decode_for_model`` gives
            exactly what the pipeline sees); the heat map comes back at this size.
        class_index: The class to explain; the predicted class when None.
        alpha: Opacity of the heat map in the overlay.

    Returns:
        A :class:`GradCam`.

    Raises:
        ValueError: Wrong image shape or class index.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must have shape (H, W, 3). Received: shape={image.shape}")
    heatmaps, probabilities, size = grad_cam_batch(
        model, image[None], None if class_index is None else [class_index]
    )
    index = int(np.argmax(probabilities[0])) if class_index is None else int(class_index)
    heatmap = heatmaps[0]
    if heatmap.shape != image.shape[:2]:
        import tensorflow as tf

        heatmap = tf.image.resize(heatmap[..., None], image.shape[:2], method="bilinear").numpy()[..., 0]
        peak = float(heatmap.max())
        heatmap = np.clip(heatmap / peak if peak > 0 else heatmap, 0.0, 1.0).astype(np.float32)
    return GradCam(
        heatmap=heatmap,
        overlay=overlay(image, heatmap, alpha),
        class_index=index,
        probability=float(probabilities[0, index]),
        feature_map_size=size,
        has_evidence=bool(heatmap.max() > 0),
    )


# ----- validation predictions ------------------------------------------------------------------


def validation_predictions(
    model: keras.Model, config: RunConfig, settings: Settings | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Predictions of ``model`` for every validation image of the run's data set.

    Args:
        model: The run's classifier.
        config: The run's configuration (data set and split).
        settings: With settings, a feature-extraction run's frozen backbone runs on LiteRT
            (:func:`frozen_backbone`) and only the head on Keras.

    Returns:
        ``(frame, images)``: one row per validation image (manifest order) with
        ``path`` (relative to the data set root), ``true``, ``predicted``,
        ``confidence``, ``true_index``, ``predicted_index``; and the images
        ``(N, S, S, 3)`` exactly as the pipeline gives them.
    """
    from transfer_core.data import load_split_arrays, read_manifest

    spec = config.dataset
    size = int(model.inputs[0].shape[1])
    images, labels = load_split_arrays(spec, "val", size)
    manifest = read_manifest(spec)
    paths = list(manifest.loc[manifest["split"] == "val", "path"])
    probabilities = None
    if settings is not None and config.train.strategy == "feature_extraction" and len(images):
        frozen = frozen_backbone(model, images, config.model, settings)
        if frozen.model is not None:
            probabilities = head_probabilities(model, frozen.model.run(images))
    if probabilities is None:
        probabilities = predict(model, images)
    predicted = probabilities.argmax(axis=1) if len(images) else np.zeros((0,), int)
    names = list(spec.class_names)
    frame = pd.DataFrame(
        {
            "path": paths,
            "true": [names[i] for i in labels],
            "predicted": [names[i] for i in predicted],
            "confidence": probabilities.max(axis=1) if len(images) else np.zeros((0,)),
            "true_index": labels.astype(int),
            "predicted_index": predicted.astype(int),
        }
    )
    return frame, images
