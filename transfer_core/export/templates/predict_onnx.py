"""Predict one image with the exported ONNX model. Usage: python predict_onnx.py IMAGE

Needs NumPy, Pillow and ONNX Runtime: `pip install onnxruntime numpy pillow`. No TensorFlow, no Keras.
"""

import sys

import numpy as np
import onnxruntime

# <generated>: Transfer Lab replaces everything up to </generated> with the run's values.
# CLASS_NAMES are also in labels.txt, one per line, in this order.
CLASS_NAMES = ["cat", "dog"]
INPUT_SIZE = 96
MODEL_FILE = "model.onnx"
# </generated>


# <shared: transfer_core.export.pixels.load_pixels>: Transfer Lab writes its own function's source here.
def load_pixels(path, size):
    raise NotImplementedError("Placeholder: a generated runner holds transfer_core.export.pixels.load_pixels here.")
# </shared>


session = onnxruntime.InferenceSession(MODEL_FILE, providers=["CPUExecutionProvider"])
# Input "image": raw RGB pixels in 0..255, float32, shape (batch, size, size, 3); the preprocessing is inside.
probabilities = session.run(None, {session.get_inputs()[0].name: load_pixels(sys.argv[1], INPUT_SIZE)[None]})[0][0]
for index in np.argsort(-probabilities)[:3]:
    print(f"{CLASS_NAMES[index]}: {probabilities[index]:.1%}")
