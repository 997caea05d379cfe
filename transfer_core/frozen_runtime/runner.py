"""A converted frozen network, loaded into a LiteRT interpreter with XNNPACK, run on image batches.

The interpreter comes from the ``ai-edge-litert`` package; where that package is missing,
TensorFlow's own ``tf.lite.Interpreter`` (the same kernels, an older copy) is used. Both apply the
XNNPACK delegate by default. ``num_threads`` is the number of cores this process may use.

Batches: the interpreter always runs a fixed chunk of a few images (about 200,000 pixels: 4 at
224 px, 21 at 96 px), whatever batch the caller hands over. Small chunks keep each layer's
activations in the CPU's caches: at 224 px MobileNetV2-0.35 costs 1.7 ms of CPU per image in
chunks of 4 against 2.3 ms in batches of 32 (BENCHMARKS.md, "Frozen passes on LiteRT"); at 96 px
the chunk size hardly matters. The converted model's batch is dynamic, so the input is resized
once, to the chunk; a short last chunk is padded with zeros (at most chunk - 1 wasted images)
rather than resized twice (~10-25 ms each).
"""

from __future__ import annotations

import os
import threading

import numpy as np

# Pixels per interpreter call (a chunk of images); see the module docstring.
CHUNK_PIXELS = 4 * 224 * 224
MAX_CHUNK = 32


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def interpreter_class() -> tuple[type, str]:
    """``(Interpreter class, runtime name)``: ``ai_edge_litert``'s (``"litert"``), else TensorFlow's (``"tflite"``)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "litert"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tflite"


class FrozenModel:
    """One loaded flatbuffer: ``run(images)`` gives the network's outputs as float32.

    Not thread-safe by itself (an interpreter holds one input tensor); a lock serialises callers.

    Args:
        content: The flatbuffer (``convert.to_flatbuffer``).
        threads: Interpreter threads (XNNPACK's thread pool).
        key: The cache key it was stored under (for messages).
    """

    def __init__(self, content: bytes, *, threads: int, key: str = "") -> None:
        interpreter, self.runtime = interpreter_class()
        self.key = key
        self.threads = int(threads)
        self.content_bytes = len(content)
        self._interpreter = interpreter(model_content=content, num_threads=self.threads)
        detail = self._interpreter.get_input_details()[0]
        self._input = detail["index"]
        self.input_shape = tuple(int(d) for d in detail["shape_signature"][1:])
        self._output = self._interpreter.get_output_details()[0]["index"]
        height, width = self.input_shape[0], self.input_shape[1]
        self.chunk = max(1, min(MAX_CHUNK, round(CHUNK_PIXELS / max(1, height * width))))
        self._interpreter.resize_tensor_input(self._input, [self.chunk, *self.input_shape], strict=False)
        self._interpreter.allocate_tensors()
        self._lock = threading.Lock()
        # Weights fingerprints of Keras networks this model matched, with the difference found.
        self.passed_checks: dict[str, float] = {}

    @property
    def description(self) -> str:
        """In words, e.g. ``"LiteRT (XNNPACK, 2 threads)"``."""
        name = "LiteRT" if self.runtime == "litert" else "TensorFlow Lite"
        return f"{name} (XNNPACK, {self.threads} thread{'s' if self.threads != 1 else ''})"

    def run_batch(self, images: np.ndarray) -> np.ndarray:
        """Outputs of one batch ``(B, H, W, C)`` of any size, as a new float32 array."""
        batch = np.asarray(images, dtype=np.float32)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(f"images must have shape (B, {', '.join(map(str, self.input_shape))}). "
                             f"Received: shape={batch.shape}")
        outputs = []
        with self._lock:
            for start in range(0, len(batch), self.chunk):
                part = batch[start : start + self.chunk]
                count = len(part)
                if count < self.chunk:
                    part = np.concatenate([part, np.zeros((self.chunk - count, *self.input_shape), np.float32)])
                self._interpreter.set_tensor(self._input, np.ascontiguousarray(part))
                self._interpreter.invoke()
                outputs.append(self._interpreter.get_tensor(self._output)[:count].copy())
        if not outputs:
            shape = self._interpreter.get_output_details()[0]["shape"][1:]
            return np.zeros((0, *(int(d) for d in shape)), np.float32)
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def run(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outputs of any number of images, converted to float32 ``batch_size`` at a time."""
        images = np.asarray(images)
        if len(images) <= batch_size:
            return self.run_batch(images)
        return np.concatenate([self.run_batch(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
