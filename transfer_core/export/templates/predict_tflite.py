"""Predict one image with the exported TFLite model. Usage: python predict_tflite.py IMAGE

Needs NumPy, Pillow and a TFLite runtime: `pip install ai-edge-litert numpy pillow` (LiteRT, also on a
Raspberry Pi or other ARM board), or full TensorFlow when LiteRT is not installed. No Keras.
"""

import sys

import numpy as np

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # Full TensorFlow has the same interpreter.
    import tensorflow as tf

    Interpreter = tf.lite.Interpreter

# <generated>: Transfer Lab replaces everything up to </generated> with the run's values.
# CLASS_NAMES are also in labels.txt, one per line, in this order.
CLASS_NAMES = ["cat", "dog"]
INPUT_SIZE = 96
MODEL_FILE = "model_float32.tflite"
# </generated>


# <shared: transfer_core.export.pixels.load_pixels>: Transfer Lab writes its own function's source here.
def load_pixels(path, size):
    raise NotImplementedError("Placeholder: a generated runner holds transfer_core.export.pixels.load_pixels here.")
# </shared>


interpreter = Interpreter(model_path=MODEL_FILE)
interpreter.allocate_tensors()
# Raw RGB pixels in 0..255, float32, batch of one: the preprocessing (and, for int8, the quantisation) is inside.
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], load_pixels(sys.argv[1], INPUT_SIZE)[None])
interpreter.invoke()
probabilities = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
for index in np.argsort(-probabilities)[:3]:
    print(f"{CLASS_NAMES[index]}: {probabilities[index]:.1%}")
