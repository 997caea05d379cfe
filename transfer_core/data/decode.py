"""The one decode-and-resize step that training, prediction and the image cache share.

A leaf module: it imports nothing of the project, so ``pipeline``, ``image_cache``
and ``images`` can all use it without importing each other. TensorFlow is imported
inside the function (importing ``transfer_core.data`` must stay fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorflow as tf

# Version of ``decode_and_resize``'s output: part of every key of stored pixels
# (the decoded-image cache and the feature cache). Bump it whenever the
# function's output can change. 2: rounded to whole numbers.
DECODE_VERSION = 2


def decode_and_resize(contents: Any, image_size: int) -> tf.Tensor:
    """Decode stored image bytes and resize them: the one function both training and prediction use.

    The result is rounded to whole numbers 0..255 (float32), so it is exactly
    representable as uint8: the decoded-image cache stores uint8 and gives back
    the very same values. Bump ``DECODE_VERSION`` when this changes.
    """
    import tensorflow as tf

    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    # Bilinear weights are convex, so the float32 result stays within 0..255 (test_data_pipeline.py
    # tries extreme pictures) and rounding alone gives whole numbers in range: a clip
    # would be a no-op costing ~10 % of the decode stage's CPU (BENCHMARKS.md, "Frozen passes").
    return tf.round(tf.image.resize(image, (image_size, image_size), method="bilinear"))
