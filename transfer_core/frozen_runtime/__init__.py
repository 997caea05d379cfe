"""Frozen forward passes on LiteRT with XNNPACK (ARCHITECTURE.md, decision 12).

A frozen network (the pooled backbone with its preprocessing, or a frozen prefix) is a pure
function: it is converted once to a float32 LiteRT flatbuffer, stored under
``<cache_dir>/litert/``, checked against Keras on a run's real images and run by the LiteRT
interpreter with XNNPACK on every core, about 3-4x TensorFlow's speed on a laptop CPU. When a
network does not convert or fails the check, TensorFlow runs it and the run's events say why.

The package is split by job: ``convert`` (Keras model -> flatbuffer), ``runner`` (a loaded
interpreter running batches), ``store`` (the on-disk cache and the loaded interpreters kept in
this process), ``api`` (the decision, the check and the run event) and ``prepare`` (the demo's
networks, ahead of a run). TensorFlow and LiteRT are imported inside functions.
"""

from transfer_core.frozen_runtime.api import (
    CHECK_IMAGES,
    TOLERANCE,
    FrozenPass,
    check_difference,
    frozen_pass,
)
from transfer_core.frozen_runtime.convert import CONVERTER_VERSION, to_flatbuffer
from transfer_core.frozen_runtime.prepare import prepare_demo
from transfer_core.frozen_runtime.runner import FrozenModel, available_cores, interpreter_class
from transfer_core.frozen_runtime.store import FOLDER, forget_loaded, model_key

__all__ = [
    "CHECK_IMAGES",
    "CONVERTER_VERSION",
    "FOLDER",
    "TOLERANCE",
    "FrozenModel",
    "FrozenPass",
    "available_cores",
    "check_difference",
    "forget_loaded",
    "frozen_pass",
    "interpreter_class",
    "model_key",
    "prepare_demo",
    "to_flatbuffer",
]
