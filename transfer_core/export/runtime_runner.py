"""Run one TFLite or ONNX file on a set of images through its own runtime, in a process of its own.

Usage: python -P runtime_runner.py FOLDER MODEL_FILE

FOLDER holds ``images.npy`` (float32, ``(N, H, W, 3)``, raw pixels 0..255). The file runs
one image at a time (batch 1, how a phone or a board predicts), each call timed. It writes
``out.npy`` (the outputs, ``(N, classes)``) and ``timing.json`` (the median milliseconds per
image, the runtime and its threads), or ``err.txt`` when the runtime raises. A damaged file
can also crash a runtime outright (a segmentation fault): then neither file appears, and the
caller reports it (that is why this is a process of its own).

Runtimes: ``.tflite`` through LiteRT (``ai_edge_litert``, with XNNPACK) when installed, else
TensorFlow's ``tf.lite.Interpreter``; ``.onnx`` through onnxruntime's CPU provider. Imports only
NumPy and the runtime, never this project or (with LiteRT) TensorFlow.
"""

import json
import os
import sys
import time
import warnings

import numpy as np


def _tflite_predictor(path: str, threads: int):
    """A ``predict(image_batch) -> outputs`` for a TFLite file, and the runtime's name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "LiteRT"
    except ImportError:
        import tensorflow as tf

        Interpreter, runtime = tf.lite.Interpreter, "tf.lite"
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]

    def predict(batch: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    return predict, runtime


def _onnx_predictor(path: str, threads: int):
    """A ``predict(image_batch) -> outputs`` for an ONNX file, and the runtime's name."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return (lambda batch: session.run(None, {input_name: batch})[0]), f"onnxruntime {onnxruntime.__version__}"


def run_model(folder: str, path: str) -> None:
    """Run ``path`` on ``folder/images.npy`` one image at a time; write its outputs and timing, or its error."""
    warnings.simplefilter("ignore")
    try:
        images = np.load(os.path.join(folder, "images.npy")).astype(np.float32)
        threads = os.cpu_count() or 1
        make = _onnx_predictor if path.endswith(".onnx") else _tflite_predictor
        predict, runtime = make(path, threads)
        outputs, seconds = [], []
        if len(images):
            predict(images[:1])  # Warm-up: the first call allocates and packs weights.
        for index in range(len(images)):
            started = time.perf_counter()
            outputs.append(predict(images[index : index + 1])[0])
            seconds.append(time.perf_counter() - started)
        np.save(os.path.join(folder, "out.npy"), np.asarray(outputs, dtype=np.float32))
        timing = {"ms_per_image": 1000 * float(np.median(seconds)) if seconds else None,
                  "runtime": runtime, "threads": threads}
        with open(os.path.join(folder, "timing.json"), "w") as handle:
            json.dump(timing, handle)
    except Exception as error:  # noqa: BLE001 - reported to the caller as this file's failure.
        with open(os.path.join(folder, "err.txt"), "w") as handle:
            handle.write(f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    run_model(sys.argv[1], sys.argv[2])
