"""Convert the exported SavedModel to other runtimes' files: TFLite (four precisions) and ONNX.

Every conversion starts from the one SavedModel that :func:`~transfer_core.export.writers.export_saved_model`
writes with Keras 3's ``model.export`` (its ``serve`` endpoint), so every file holds the same
forward pass, preprocessing included, and takes the same raw pixels.

- TFLite float32 / float16 / dynamic range: ``tf.lite.TFLiteConverter``, no data needed.
- TFLite int8: full-integer quantisation calibrated on training images
  (:mod:`~transfer_core.export.calibration`), with float32 input and output so the file takes
  raw pixels and returns probabilities like every other format; inside, every op runs in int8
  (``TFLITE_BUILTINS_INT8``: the conversion fails rather than leave a float op behind).
- ONNX: ``tf2onnx.convert.from_function`` on the SavedModel's ``serve`` function. tf2onnx's
  ``from_keras`` expects Keras 2 models; the SavedModel route does not depend on Keras at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from transfer_core.export.calibration import Calibration
from transfer_core.export.formats import PRECISIONS
from transfer_core.fileio import atomic_write_bytes

__all__ = ["ONNX_INPUT_NAME", "ONNX_OPSET", "export_onnx", "export_tflite"]

# Opset 17 runs on every onnxruntime of the last years (1.12+) and covers MobileNet/EfficientNet ops.
ONNX_OPSET = 17
ONNX_INPUT_NAME = "image"


def export_tflite(
    saved_model_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    precision: str = "float32",
    calibration: Calibration | None = None,
) -> Path:
    """Convert a SavedModel folder to TensorFlow Lite.

    Args:
        saved_model_dir: From :func:`~transfer_core.export.writers.export_saved_model`.
        out_path: The ``.tflite`` file to write.
        precision: One of :data:`~transfer_core.export.formats.PRECISIONS`: ``float32`` (the model's
            numbers), ``float16`` (weights in 16 bits), ``dynamic_range`` (weights in 8 bits,
            activations float) or ``int8`` (weights and activations in 8 bits, float input and output).
        calibration: The training images ``int8`` calibrates on (required for it, unused otherwise).

    Returns:
        ``out_path``.

    Raises:
        ValueError: An unknown precision, or ``int8`` without calibration images.
    """
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be among {PRECISIONS}. Received: precision={precision!r}")
    if precision == "int8" and calibration is None:
        raise ValueError("int8 quantisation needs calibration images (training_calibration). Received: None")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        converter.representative_dataset = calibration.representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Float at the edges: the file takes the same raw pixels and returns probabilities; it quantises
        # the input and dequantises the output itself.
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    flatbuffer = converter.convert()
    out_path = Path(out_path)
    atomic_write_bytes(out_path, bytes(flatbuffer))
    return out_path


def export_onnx(saved_model_dir: str | os.PathLike, out_path: str | os.PathLike, opset: int = ONNX_OPSET) -> Path:
    """Convert a SavedModel folder to ONNX with tf2onnx (an optional package: requirements-export.txt).

    The ONNX graph takes one float32 input named ``image``, shape ``(batch, S, S, 3)`` with a free
    batch size, raw pixels 0..255, and returns the class probabilities.

    Args:
        saved_model_dir: From :func:`~transfer_core.export.writers.export_saved_model`.
        out_path: The ``.onnx`` file to write.
        opset: The ONNX opset.

    Returns:
        ``out_path``.

    Raises:
        ModuleNotFoundError: tf2onnx is not installed.
    """
    import tensorflow as tf
    import tf2onnx

    loaded = tf.saved_model.load(str(saved_model_dir))
    shape = loaded.serve.concrete_functions[0].structured_input_signature[0][0].shape
    signature = (tf.TensorSpec([None, *shape[1:]], tf.float32, name=ONNX_INPUT_NAME),)
    model_proto, _ = tf2onnx.convert.from_function(loaded.serve, input_signature=signature, opset=opset)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, model_proto.SerializeToString())
    return out_path
