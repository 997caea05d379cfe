"""Calibration images for full-integer int8 TFLite: the run's training images, never validation or test.

Full-integer quantisation measures the range of every activation on sample images
(the converter's "representative dataset") and fixes an 8-bit scale for it. The
samples come from the training split only: calibrating on validation or test images
would let the files that measure the export's accuracy shape it. The
:class:`Calibration` records which files the converter actually read, so a test (and
the export report) can show it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from transfer_core.config import DatasetSpec

__all__ = ["DEFAULT_CALIBRATION_IMAGES", "Calibration", "training_calibration"]

# TensorFlow's guide suggests a few hundred samples; a hundred covers small data sets and keeps the export fast.
DEFAULT_CALIBRATION_IMAGES = 100


@dataclass
class Calibration:
    """The training images an int8 conversion calibrates on.

    Attributes:
        paths: Training image files, in the order they are given to the converter.
        image_size: The model's input side (images are decoded to it like training does).
        read: Files the converter has read so far (filled while it runs).
    """

    paths: tuple[str, ...]
    image_size: int
    read: list[str] = field(default_factory=list)

    def images(self) -> Iterator[np.ndarray]:
        """Each training image as a ``(1, S, S, 3)`` float32 batch of raw 0..255 pixels, recording the file."""
        from transfer_core.data import decode_for_model

        for path in self.paths:
            pixels = decode_for_model(path, self.image_size)
            self.read.append(path)
            yield pixels[None].astype(np.float32)

    def representative_dataset(self) -> Iterator[list[np.ndarray]]:
        """The converter's ``representative_dataset``: one input list per training image."""
        for batch in self.images():
            yield [batch]


def training_calibration(
    spec: DatasetSpec, image_size: int, max_images: int = DEFAULT_CALIBRATION_IMAGES
) -> Calibration:
    """Pick up to ``max_images`` training images, taking the classes in turn so each is represented.

    Args:
        spec: The run's data set (its manifest fixes the split).
        image_size: The model's input side.
        max_images: At most this many images.

    Returns:
        A :class:`Calibration` over training files only.

    Raises:
        ValueError: ``max_images`` is below 1, or the data set has no training images.
    """
    from transfer_core.data import split_paths

    if max_images < 1:
        raise ValueError(f"max_images must be at least 1. Received: max_images={max_images!r}")
    paths, labels = split_paths(spec, "train")
    if not paths:
        raise ValueError(f"The data set at {spec.root} has no training images to calibrate int8 quantisation on.")
    per_class = [[p for p, label in zip(paths, labels, strict=True) if label == index]
                 for index in range(len(spec.class_names))]
    chosen: list[str] = []
    for position in range(max(len(group) for group in per_class)):
        chosen.extend(group[position] for group in per_class if position < len(group))
    return Calibration(tuple(chosen[:max_images]), int(image_size))
