"""Plain results of inference tasks that have no home elsewhere (no TensorFlow here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transfer_core.explore.explain import GradCam


@dataclass(frozen=True)
class ImageExplanation:
    """One new image through a classifier: its probabilities and Grad-CAM, or why it was refused.

    Attributes:
        name: The name the person gave the image.
        error: Why the image could not be used (e.g. not an image); None when it was.
        cam: Grad-CAM of the predicted class (None when refused).
        probabilities: ``(num_classes,)`` (None when refused).
    """

    name: str
    error: str | None = None
    cam: GradCam | None = None
    probabilities: np.ndarray | None = None


@dataclass(frozen=True)
class UserModelInfo:
    """A person's uploaded ``.keras`` classifier: the image side it takes and its number of classes."""

    input_size: int
    num_classes: int
