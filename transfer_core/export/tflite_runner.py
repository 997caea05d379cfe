"""Run TFLite files on a batch of images, in a process of its own (the parity check starts it).

Usage: python -P tflite_runner.py FOLDER MODEL.tflite [MODEL.tflite ...]

FOLDER holds ``images.npy`` (float32, ``(N, H, W, 3)``). For the i-th model file
this writes ``out{i}.npy`` (the outputs) and ``time{i}.txt`` (seconds of the
invoke), or ``err{i}.txt`` when the interpreter raises. A damaged file can also
crash the interpreter outright (a segmentation fault): then neither file appears,
and the caller reports it. Imports only NumPy and TensorFlow, never this project.
"""

import os
import sys
import time
import warnings

import numpy as np


def run_models(folder: str, paths: list[str]) -> None:
    """Run each TFLite file on ``folder/images.npy``, writing its outputs or its error into ``folder``."""
    warnings.simplefilter("ignore")
    import tensorflow as tf

    images = np.load(os.path.join(folder, "images.npy"))
    for index, path in enumerate(paths):
        try:
            interpreter = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count() or 1)
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], list(images.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(detail["index"], images.astype(np.float32))
            started = time.perf_counter()
            interpreter.invoke()
            with open(os.path.join(folder, f"time{index}.txt"), "w") as handle:
                handle.write(str(time.perf_counter() - started))
            output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            np.save(os.path.join(folder, f"out{index}.npy"), output)
        except Exception as error:  # noqa: BLE001 - reported to the caller as this file's failure.
            with open(os.path.join(folder, f"err{index}.txt"), "w") as handle:
                handle.write(f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    run_models(sys.argv[1], sys.argv[2:])
