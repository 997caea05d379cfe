"""What the model sees: an image resized and preprocessed the way a backbone receives it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transfer_core.config import Settings
from transfer_core.explore.explain import as_batch

__all__ = ["ModelView", "model_view"]


@dataclass
class ModelView:
    """An image on its way into the backbone.

    Attributes:
        original_size: ``(width, height)`` of the image as given.
        resized: ``(S, S, 3)`` uint8: the image resized to the input size (no crop,
            so the aspect ratio may change), exactly as the pipeline does.
        preprocessed: ``(S, S, 3)`` float32: what the backbone receives.
        display: ``preprocessed`` rescaled to 0..255 per image, to look at.
        input_range: ``(min, max)`` of the resized pixels.
        output_range: ``(min, max)`` after the preprocessing layers.
        channel_means: Mean of each channel after preprocessing.
        description: What the preprocessing does, in words.
    """

    original_size: tuple[int, int]
    resized: np.ndarray
    preprocessed: np.ndarray
    display: np.ndarray
    input_range: tuple[float, float]
    output_range: tuple[float, float]
    channel_means: tuple[float, float, float]
    description: str


_PREPROCESSING_WORDS = {
    "tf": "scales pixels from 0..255 to -1..1 (x / 127.5 - 1)",
    "torch": "scales pixels to 0..1, then subtracts the ImageNet mean and divides by its standard "
    "deviation per channel (values roughly -2..2.6)",
    "caffe": "swaps the channels to BGR and subtracts the ImageNet mean per channel (values roughly "
    "-124..152), the way the original Caffe model was trained",
    "none": "nothing outside the backbone: this backbone rescales and normalises inside itself, so it "
    "takes raw 0..255 pixels",
}


def model_view(image: bytes | str | os.PathLike | np.ndarray, backbone: str, input_size: int = 0) -> ModelView:
    """Show what the preprocessing of ``backbone`` does to one image.

    Args:
        image: Image bytes, a file path, or an ``(H, W, 3)`` 0..255 array.
        backbone: Zoo key.
        input_size: Input side; 0 means the backbone's default.

    Returns:
        A :class:`ModelView`.

    Raises:
        transfer_core.data.ImageRejected: Bytes or a file that are not a usable image.
        ValueError: Unknown backbone or bad input size.
    """
    from transfer_core import zoo
    from transfer_core.data import decode_for_model, load_image

    size = zoo.check_input_size(backbone, input_size)
    info = zoo.get_backbone_info(backbone)
    if isinstance(image, np.ndarray):
        array = np.asarray(image, dtype=np.float32)
        original = (int(array.shape[1]), int(array.shape[0]))
        resized = as_batch(array, size)[0]
    else:
        data = image if isinstance(image, bytes | bytearray) else Path(image).read_bytes()
        picture, _ = load_image(bytes(data), "image", Settings().max_pixels)
        original = picture.size
        resized = decode_for_model(bytes(data), size)
    x = resized[None]
    for layer in zoo.preprocessing_layers(backbone):
        x = layer(x)
    preprocessed = np.asarray(x)[0].astype(np.float32)
    low, high = float(preprocessed.min()), float(preprocessed.max())
    span = high - low if high > low else 1.0
    display = ((preprocessed - low) / span * 255.0).astype(np.uint8)
    return ModelView(
        original_size=(int(original[0]), int(original[1])),
        resized=np.clip(resized, 0, 255).astype(np.uint8),
        preprocessed=preprocessed,
        display=display,
        input_range=(float(resized.min()), float(resized.max())),
        output_range=(low, high),
        channel_means=tuple(float(v) for v in preprocessed.reshape(-1, 3).mean(axis=0)),
        description=(
            f"{info.display_name} sees a {size}x{size} image (resized without cropping, bilinear). "
            f"Its preprocessing {_PREPROCESSING_WORDS[info.preprocessing]}."
        ),
    )
