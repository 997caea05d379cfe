"""``python -m transfer_core doctor``: what this machine gives TensorFlow, in one screen.

The devices TensorFlow sees, its build (CPU-only or CUDA, and which CUDA/cuDNN), whether oneDNN
(TensorFlow's x86 CPU kernels) and XNNPACK (the TFLite/LiteRT CPU delegate) are in use, which
offline ImageNet weights are present, and which executor runs the training. Every fact is read
from the running software, never assumed from the requirements files.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transfer_core.config import Settings

__all__ = ["Diagnosis", "add_doctor_command", "diagnose", "diagnosis_text"]


@dataclass
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes:
        tensorflow: TensorFlow's version and the pip package it came from (``tensorflow-cpu``, ...).
        devices: ``"CPU:0"``, ``"GPU:0"``, ... as TensorFlow lists them.
        build: ``tf.sysconfig.get_build_info()`` (``is_cuda_build``, ``cuda_version``, ...).
        onednn: Whether oneDNN kernels are on, and why.
        xnnpack: Whether the TFLite interpreter applied the XNNPACK delegate, and which interpreter.
        offline_weights: Zoo keys whose ImageNet weights are on this machine, and where it looked.
        executor: The configured executor (and the Ray address for ``ray``).
    """

    tensorflow: str
    devices: list[str]
    build: dict[str, Any]
    onednn: str
    xnnpack: str
    offline_weights: list[str] = field(default_factory=list)
    weights_dirs: list[str] = field(default_factory=list)
    executor: str = "local"


def _package_of_tensorflow() -> str:
    for name in ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-nightly"):
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown package"


def _onednn() -> str:
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    try:
        from tensorflow.python.util import _pywrap_util_port

        enabled = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return f"unknown (TF_ENABLE_ONEDNN_OPTS={setting!r})"
    source = f"TF_ENABLE_ONEDNN_OPTS={setting}" if setting is not None else "the build's default"
    return f"{'on' if enabled else 'off'} ({source})"


_XNNPACK_PROBE = """
import sys
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
    name = "LiteRT"
except ImportError:
    import tensorflow as tf
    Interpreter, name = tf.lite.Interpreter, "tf.lite"
interpreter = Interpreter(model_path=sys.argv[1])
interpreter.allocate_tensors()
interpreter.invoke()
print(name)
"""


def _xnnpack() -> str:
    """Convert a one-layer model, run it in a child process and read whether the XNNPACK delegate was made."""
    import tempfile

    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def probe(x):
        return tf.nn.relu(tf.nn.conv2d(x, tf.ones([3, 3, 3, 4]), 1, "SAME"))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([probe.get_concrete_function()], probe)
    with tempfile.TemporaryDirectory(prefix="doctor-") as tmp:
        path = os.path.join(tmp, "probe.tflite")
        with open(path, "wb") as handle:
            handle.write(converter.convert())
        completed = subprocess.run([sys.executable, "-c", _XNNPACK_PROBE, path], capture_output=True, text=True,
                                   timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    if completed.returncode != 0:
        return f"could not run a TFLite model: {completed.stderr.strip().splitlines()[-1:]}"
    used = "XNNPACK delegate" in completed.stderr
    return f"{'yes' if used else 'no'} (interpreter: {completed.stdout.strip()})"


def diagnose(settings: Settings) -> Diagnosis:
    """Look at this machine's TensorFlow, TFLite interpreter, weights and executor.

    Args:
        settings: The offline weights folder and the executor come from here.

    Returns:
        A :class:`Diagnosis`.
    """
    import warnings

    warnings.simplefilter("ignore")
    import tensorflow as tf

    from transfer_core import zoo
    from transfer_core.zoo.weights import weight_search_dirs

    build = {key: value for key, value in dict(tf.sysconfig.get_build_info()).items()
             if key in ("is_cuda_build", "is_rocm_build", "is_tensorrt_build", "cuda_version", "cudnn_version")}
    executor = settings.executor + (f" (RAY_ADDRESS={settings.ray_address or 'auto'})"
                                    if settings.executor == "ray" else " (worker processes on this machine)")
    return Diagnosis(
        tensorflow=f"{tf.__version__} from {_package_of_tensorflow()}",
        devices=[f"{device.device_type}:{device.name.rsplit(':', 1)[-1]}" for device in tf.config.list_physical_devices()],
        build=build,
        onednn=_onednn(),
        xnnpack=_xnnpack(),
        offline_weights=zoo.offline_backbones(settings),
        weights_dirs=[str(path) for path in weight_search_dirs(settings)],
        executor=executor,
    )


def diagnosis_text(found: Diagnosis) -> str:
    """The diagnosis as the lines ``doctor`` prints."""
    gpus = [device for device in found.devices if device.startswith("GPU")]
    if gpus:
        gpu_line = f"training uses {', '.join(gpus)}"
    elif found.build.get("is_cuda_build"):
        gpu_line = "a CUDA build, but no GPU visible (driver? CUDA_VISIBLE_DEVICES?)"
    else:
        gpu_line = "CPU-only build: a GPU would not be used (bash scripts/setup.sh --gpu installs the CUDA build)"
    build = ", ".join(f"{key}={value}" for key, value in found.build.items()) or "no build info"
    return "\n".join([
        f"TensorFlow   {found.tensorflow}",
        f"devices      {', '.join(found.devices)}: {gpu_line}",
        f"build        {build}",
        f"oneDNN       {found.onednn}",
        f"XNNPACK      {found.xnnpack}",
        f"weights      offline: {', '.join(found.offline_weights) or 'none'} "
        f"(looked in {', '.join(found.weights_dirs) or 'nowhere'})",
        f"executor     {found.executor}",
    ])


def add_doctor_command(
    sub: Any, add_common: Callable[[argparse.ArgumentParser], None],
    settings_of: Callable[[argparse.Namespace], Settings],
) -> None:
    """Add the ``doctor`` sub-command to the CLI's sub-parsers."""
    parser = sub.add_parser("doctor", help="devices, TensorFlow build, oneDNN, XNNPACK, offline weights, executor")
    add_common(parser)

    def run(args: argparse.Namespace) -> int:
        print(diagnosis_text(diagnose(settings_of(args))))
        return 0

    parser.set_defaults(func=run)
