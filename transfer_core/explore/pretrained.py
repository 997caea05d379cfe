"""What an unmodified ImageNet model predicts for your images ("before transfer").

Shows a student what the pretrained network already "sees": its top ImageNet
classes for a few of their images, before any new head is trained. TensorFlow
is imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transfer_core.config import Settings


@dataclass(frozen=True)
class ImagenetPrediction:
    """The top ImageNet classes of one image."""

    path: str
    top: list[tuple[str, float]]  # (class name, probability), best first


def imagenet_predictions(
    paths: Sequence[str | os.PathLike],
    key: str,
    settings: Settings,
    top: int = 3,
) -> list[ImagenetPrediction]:
    """Predict ImageNet classes for ``paths`` with the pretrained classifier ``key``.

    Args:
        paths: Image files.
        key: Zoo key of a backbone whose with-top weights are available
            (``zoo.weights_available_offline(key, include_top=True)``).
        settings: Where the offline weights live.
        top: Classes kept per image.

    Returns:
        One :class:`ImagenetPrediction` per path, in order.

    Raises:
        transfer_core.zoo.WeightsUnavailableError: No with-top weights or class index file.
        ValueError: Unknown backbone or ``top`` < 1.
    """
    from transfer_core import zoo

    model = zoo.build_imagenet_classifier(key, settings=settings)
    class_names = zoo.imagenet_class_names(settings)
    return predict_top_classes(model, zoo.preprocessing_layers(key), paths, class_names, top=top)


def predict_top_classes(
    model: Any,
    preprocessing: Sequence[Any],
    paths: Sequence[str | os.PathLike],
    class_names: Sequence[str],
    top: int = 3,
) -> list[ImagenetPrediction]:
    """Run a classifier (with its preprocessing layers) on image files; keep the ``top`` classes.

    Args:
        model: A Keras model taking ``(S, S, 3)`` inputs and returning one
            probability per class in ``class_names``.
        preprocessing: Layers that map raw 0..255 pixels to the model's input range.
        paths: Image files (decoded like training images: EXIF-rotated, RGB, resized).
        class_names: Names of the model's outputs, in order.
        top: Classes kept per image.

    Returns:
        One :class:`ImagenetPrediction` per path, in order.

    Raises:
        ValueError: ``top`` < 1, or ``class_names`` does not match the model's outputs.
    """
    import numpy as np

    from transfer_core.data import decode_for_model

    if top < 1:
        raise ValueError(f"top must be >= 1. Received: top={top}")
    if not paths:
        return []
    size = int(model.input_shape[1])
    batch = np.stack([decode_for_model(str(p), size) for p in paths]).astype("float32")
    x = batch
    for layer in preprocessing:
        x = layer(x)
    probabilities = np.asarray(model(x, training=False))
    if probabilities.shape[1] != len(class_names):
        raise ValueError(
            "class_names must name every output of the model. "
            f"Received: {len(class_names)} names for {probabilities.shape[1]} outputs"
        )
    results = []
    for path, row in zip(paths, probabilities, strict=True):
        best = np.argsort(-row, kind="stable")[:top]
        results.append(ImagenetPrediction(str(path), [(str(class_names[i]), float(row[i])) for i in best]))
    return results
