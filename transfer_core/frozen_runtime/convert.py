"""Convert a frozen Keras model to a float32 LiteRT (TFLite) flatbuffer with a dynamic batch.

The model is traced once into a TensorFlow graph whose variables are frozen into constants, then
lowered by TensorFlow's converter to builtin LiteRT ops only (no TensorFlow "flex" ops), so
XNNPACK can run every one of them. No quantisation: float32 in, float32 out, the same arithmetic
as Keras up to the order of additions (about 1e-6 relative for every zoo backbone).

Converting through a SavedModel (what ``keras.Model.export(format="litert")`` does) gives the same
file but takes three times as long: writing the SavedModel's checkpoint is most of it.
TensorFlow is imported inside the function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras

# Bump when the conversion below can produce a different file: part of every cache key.
CONVERTER_VERSION = 1


def to_flatbuffer(model: keras.Model) -> bytes:
    """The float32 LiteRT flatbuffer of ``model`` called in inference mode.

    Args:
        model: A Keras model with one image input ``(None, H, W, C)`` and one output; called with
            ``training=False`` (BatchNormalization uses its moving statistics, Dropout is off).

    Returns:
        The flatbuffer; its input batch is dynamic (resize it in the interpreter).

    Raises:
        ValueError: The model has more than one input or output.
        Exception: Whatever TensorFlow's converter raises for a network it cannot convert.
    """
    import tensorflow as tf

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Only a model with one input and one output converts. Received: {len(model.inputs)} inputs, "
            f"{len(model.outputs)} outputs"
        )
    shape = [None, *(int(d) for d in model.inputs[0].shape[1:])]
    signature = [tf.TensorSpec(shape, tf.float32, name="images")]
    # A tf.Module that tracks the variables keeps them alive while the converter freezes them.
    holder = tf.Module()
    holder.model_variables = [getattr(v, "value", v) for v in model.variables]
    holder.forward = tf.function(lambda images: model(images, training=False), input_signature=signature)
    concrete = holder.forward.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    converter.experimental_lower_to_saved_model = False  # Freeze in memory; no SavedModel round trip.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = []  # float32: no quantisation.
    return bytes(converter.convert())
