"""The app's decode-and-resize in NumPy and Pillow, for the TFLite and ONNX runners (no TensorFlow on a board).

:func:`load_pixels` is written verbatim into the runner programs (``templates/predict_tflite.py``,
``templates/predict_onnx.py``), so it must stay self-contained: its imports live inside it. It
reproduces :func:`transfer_core.data.decode.decode_and_resize` (TensorFlow's bilinear resize with
half-pixel centres, no antialiasing, then rounding): identical pixels for PNG and other lossless
files, checked in the tests. JPEG files can differ by a few levels per pixel, because TensorFlow
decodes them with a faster, less exact inverse DCT than Pillow; that moves probabilities a little.
"""

from __future__ import annotations

__all__ = ["load_pixels"]


def load_pixels(path, size):
    """Read an image file as the model's input: ``(size, size, 3)`` float32 RGB, whole numbers 0..255.

    Decodes with Pillow (upright by the photo's EXIF orientation, as the app stores it), then resizes
    like TensorFlow's ``tf.image.resize(method="bilinear")``: half-pixel centres, no antialiasing.
    """
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.seek(0)
        pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.float32)

    def sample_points(length):
        centres = (np.arange(size, dtype=np.float64) + 0.5) * (length / size) - 0.5
        lower = np.floor(centres)
        weight = (centres - lower).astype(np.float32)
        lower = lower.astype(np.int64)
        return np.clip(lower, 0, length - 1), np.clip(lower + 1, 0, length - 1), weight

    top, bottom, row_weight = sample_points(pixels.shape[0])
    left, right, column_weight = sample_points(pixels.shape[1])
    rows = pixels[top] + (pixels[bottom] - pixels[top]) * row_weight[:, None, None]
    resized = rows[:, left] + (rows[:, right] - rows[:, left]) * column_weight[None, :, None]
    return np.clip(np.round(resized), 0.0, 255.0).astype(np.float32)
