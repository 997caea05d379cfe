"""Data augmentation: the Keras layers training uses, and a preview of what they do.

The preview applies the same random layers, with the same strengths, as the
training pipeline, so what the Data page shows is what the model will see.
TensorFlow/Keras is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transfer_core.config import AUGMENTATIONS

# Strength of each augmentation (what a person can expect to see).
AUGMENTATION_HELP = {
    "flip": "mirror left-right at random",
    "rotate": "rotate by up to ±36° (0.1 of a turn)",
    "zoom": "zoom in or out by up to 15%",
    "contrast": "change contrast by up to ±20%",
}


def build_augmenter(augmentation: Sequence[str], seed: int = 0):
    """The random augmentation layers for ``augmentation`` (names from ``AUGMENTATIONS``).

    Args:
        augmentation: Any of ``flip``, ``rotate``, ``zoom``, ``contrast``.
        seed: Seed of the random layers.

    Returns:
        A ``keras.Sequential`` named ``augmentation`` that works on 0..255 pixels
        and only changes images when called with ``training=True``.

    Raises:
        ValueError: An unknown augmentation name.
    """
    import keras

    unknown = [name for name in augmentation if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"augmentation must be among {AUGMENTATIONS}. Received: augmentation={tuple(augmentation)}"
        )
    layers = []
    if "flip" in augmentation:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if "rotate" in augmentation:
        layers.append(keras.layers.RandomRotation(0.1, seed=seed))
    if "zoom" in augmentation:
        layers.append(keras.layers.RandomZoom(0.15, seed=seed))
    if "contrast" in augmentation:
        layers.append(keras.layers.RandomContrast(0.2, seed=seed, value_range=(0, 255)))
    return keras.Sequential(layers, name="augmentation")


def augmentation_preview(
    image: np.ndarray, augmentation: Sequence[str], n: int = 8, seed: int = 0
) -> list[np.ndarray]:
    """``n`` randomly augmented copies of one image.

    Args:
        image: ``(H, W, 3)`` pixels, 0..255 (uint8 or float).
        augmentation: Any of ``flip``, ``rotate``, ``zoom``, ``contrast``; empty
            gives ``n`` unchanged copies.
        n: Number of copies (1..64).
        seed: Seed; the same seed gives the same copies.

    Returns:
        ``n`` uint8 arrays of the image's shape.

    Raises:
        ValueError: ``image`` is not ``(H, W, 3)``, ``n`` is out of range, or an
            augmentation name is unknown.
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must have shape (H, W, 3). Received: image.shape={array.shape}")
    if not 1 <= n <= 64:
        raise ValueError(f"n must be between 1 and 64. Received: n={n}")
    augmenter = build_augmenter(tuple(augmentation), seed)
    batch = np.repeat(array[None].astype("float32"), n, axis=0)
    if augmentation:
        batch = np.asarray(augmenter(batch, training=True))
    return [np.clip(np.rint(item), 0, 255).astype("uint8") for item in batch]
