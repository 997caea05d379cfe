"""Where a frozen network runs: LiteRT with XNNPACK when it converts and checks out, else TensorFlow.

:func:`frozen_pass` is the one decision every frozen forward pass goes through (feature
extraction's features, fine-tuning's frozen prefix, embeddings, the inference worker's predictions
of feature-extraction runs). It never raises: whatever goes wrong, the answer is "TensorFlow,
because ...", and the caller writes that reason where a person reads it (the run's events).

The numeric check: on the caller's first few real images, the converted network's outputs must
equal Keras' within :data:`TOLERANCE` of the largest Keras output (the outputs' own scale, so one
tolerance serves pooled features around 1 and ResNet's feature maps in the hundreds alike). Every
zoo backbone lands near 1e-6 (float32 arithmetic in another order), so 1e-4 leaves room for
deeper networks and larger images while still catching a wrong weight, a missing preprocessing
layer or a BatchNorm in the wrong mode, each of which moves outputs by whole percents.

The check runs Keras eagerly (0.1-0.3 s, more than the converted pass of a small data set), so a
passed check is remembered with a fingerprint of the Keras network's weights (a hash of every
weight, ~2 ms for MobileNetV2-0.35): in this process and in the converted file's ``.json``. A later network with the very same weights (the next run, a feature-extraction run's
model in Explore) is not checked again; any other network (a fine-tuned backbone) is.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from transfer_core.config import Settings
from transfer_core.frozen_runtime.convert import CONVERTER_VERSION, to_flatbuffer
from transfer_core.frozen_runtime.runner import FrozenModel, available_cores
from transfer_core.frozen_runtime.store import (
    convert_once,
    failure_of,
    folder_of,
    loaded_model,
    model_key,
    record_check,
    recorded_check,
)

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras

log = logging.getLogger(__name__)

# Largest difference from Keras, relative to the largest Keras output, that a converted network may show.
TOLERANCE = 1e-4
# Images of the caller's first batch the check runs Keras on (eagerly: no tracing).
CHECK_IMAGES = 4


class ConversionRefused(RuntimeError):
    """Converting this network failed before (its ``.failed`` file says why); not tried again."""


@dataclass
class FrozenPass:
    """Where one frozen network runs, and why.

    Attributes:
        runtime: ``"litert"`` (ai-edge-litert), ``"tflite"`` (TensorFlow's interpreter) or ``"tensorflow"``.
        reason: How the converted network was obtained, or why TensorFlow runs it.
        model: The loaded interpreter; None on TensorFlow.
        convert_seconds: Seconds spent converting now; 0.0 when converted earlier; None when not converted.
        difference: The check's largest difference from Keras (relative); None when not checked.
    """

    runtime: str
    reason: str
    model: FrozenModel | None = None
    convert_seconds: float | None = None
    difference: float | None = None

    @property
    def threads(self) -> int | None:
        return self.model.threads if self.model is not None else None

    def event(self, stage: str) -> dict[str, Any]:
        """The run's ``frozen_runtime`` event (``transfer_core.events.FrozenRuntimeEvent``) for ``stage``."""
        return {"type": "frozen_runtime", "stage": stage, "runtime": self.runtime, "threads": self.threads,
                "reason": self.reason, "convert_seconds": self.convert_seconds, "difference": self.difference}

    def describe(self, what: str) -> str:
        """E.g. ``"features on LiteRT (XNNPACK, 2 threads): converted earlier"``."""
        if self.model is None:
            return f"{what} on TensorFlow: {self.reason}"
        return f"{what} on {self.model.description}: {self.reason}"


def frozen_pass(
    network: keras.Model,
    *,
    settings: Settings,
    backbone: str,
    weights: str,
    cut: str,
    check_images: np.ndarray | None,
) -> FrozenPass:
    """Decide where ``network`` runs; convert (once, cached) and check it when LiteRT may run it.

    Args:
        network: The frozen Keras model: raw 0..255 images in (its preprocessing inside), the
            pooled features (``cut="pool"``) or a frozen prefix's output (``cut="prefix:<layer>"``) out.
        settings: ``frozen_runtime`` (may turn LiteRT off), the cache folder, the weights folder.
        backbone: Zoo key of the backbone inside ``network``.
        weights: ``"imagenet"`` or ``"random"``; only ImageNet networks are converted (random
            weights differ in every run, so a converted copy would never be used again).
        cut: What ``network`` computes, as in the feature cache's keys: ``"pool"`` or ``"prefix:<layer>"``.
        check_images: The caller's first real images ``(N, S, S, 3)``; the first
            :data:`CHECK_IMAGES` are compared with Keras. None: no check (preparing ahead of a run).

    Returns:
        A :class:`FrozenPass`; its ``model`` is None when TensorFlow must run the network.
    """
    why_not = _why_not_litert(settings, weights)
    if why_not is not None:
        return FrozenPass("tensorflow", why_not)
    try:
        parts = key_parts(settings, backbone, int(network.inputs[0].shape[1]), cut)
        key = model_key(parts)
        model, how, seconds = _load(settings, key, parts, network)
    except ConversionRefused as error:
        return FrozenPass("tensorflow", f"{error}; TensorFlow runs it")
    except Exception as error:  # noqa: BLE001 - any failure of the converter or the interpreter: TensorFlow runs it.
        log.warning("Converting %s (%s) to LiteRT failed", backbone, cut, exc_info=True)
        return FrozenPass("tensorflow", f"the network did not convert to LiteRT ({_short(error)}); TensorFlow runs it")
    fingerprint = weights_fingerprint(network)
    difference = _passed_check(settings, key, model, fingerprint)
    if difference is not None:
        how += "; the same weights passed the check against Keras before"
    elif check_images is not None and len(check_images):
        try:
            difference = check_difference(model, network, np.asarray(check_images[:CHECK_IMAGES], np.float32))
        except Exception as error:  # noqa: BLE001
            return FrozenPass("tensorflow", f"running the converted network failed ({_short(error)}); "
                                            "TensorFlow runs it", convert_seconds=seconds)
        if not difference <= TOLERANCE:  # NaN fails too.
            return FrozenPass(
                "tensorflow",
                f"the converted network's outputs differ from Keras' by {difference:.2g} of their scale "
                f"(more than {TOLERANCE:g}); TensorFlow runs it",
                convert_seconds=seconds, difference=difference)
        model.passed_checks[fingerprint] = difference
        record_check(folder_of(settings.cache_dir), key, fingerprint, difference)
    return FrozenPass(model.runtime, how, model, seconds, difference)


def key_parts(settings: Settings, backbone: str, input_size: int, cut: str) -> dict[str, Any]:
    """What identifies one converted network; the weights file by name, size and modification time.

    Raises:
        transfer_core.zoo.WeightsUnavailableError: The weights file cannot be found.
    """
    import keras
    import tensorflow as tf

    from transfer_core import zoo

    path = Path(zoo.resolve_weights(backbone, input_size, settings=settings))
    stat = path.stat()
    return {
        "converter": CONVERTER_VERSION,
        "backbone": backbone,
        "weights": f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}",
        "input_size": int(input_size),
        "cut": cut,
        "precision": "float32",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def check_difference(model: FrozenModel, network: keras.Model, images: np.ndarray) -> float:
    """Largest ``|LiteRT - Keras|`` over ``images``, divided by the largest ``|Keras|`` output."""
    reference = np.asarray(network(images, training=False), dtype=np.float32)
    converted = model.run_batch(images)
    if converted.shape != reference.shape:
        return float("inf")
    difference = float(np.max(np.abs(converted - reference)))
    scale = float(np.max(np.abs(reference)))
    if not (np.isfinite(difference) and np.isfinite(scale)):
        return float("inf")
    return difference / scale if scale > 0 else difference


def weights_fingerprint(network: keras.Model) -> str:
    """A hash of every weight of ``network`` (values and shapes): equal for the same weights only."""
    digest = hashlib.blake2b(digest_size=16)
    for weight in network.get_weights():
        array = np.ascontiguousarray(weight)
        digest.update(str(array.shape).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _passed_check(settings: Settings, key: str, model: FrozenModel, fingerprint: str) -> float | None:
    """The difference of an earlier passed check of these very weights, or None."""
    if fingerprint in model.passed_checks:
        return model.passed_checks[fingerprint]
    recorded = recorded_check(folder_of(settings.cache_dir), key)
    if recorded is not None and recorded[0] == fingerprint and recorded[1] <= TOLERANCE:
        model.passed_checks[fingerprint] = recorded[1]
        return recorded[1]
    return None


def _why_not_litert(settings: Settings, weights: str) -> str | None:
    if settings.frozen_runtime == "tensorflow":
        return "LiteRT is turned off (TRANSFER_FROZEN_RUNTIME=tensorflow)"
    if weights != "imagenet":
        return "random weights differ in every run, so converting them would not pay off"
    import keras
    import tensorflow as tf

    policy = keras.mixed_precision.global_policy().name
    if policy != "float32":
        return f"the {policy} precision policy computes in 16 bits, which TensorFlow runs; LiteRT runs float32"
    if tf.config.list_physical_devices("GPU"):
        return "TensorFlow has a GPU to run it on"
    return None


def _load(settings: Settings, key: str, parts: dict[str, Any], network: keras.Model) -> tuple[FrozenModel, str, float]:
    """The loaded interpreter of ``key``, how it was obtained, and the seconds spent converting now."""
    folder = folder_of(settings.cache_dir)
    spent = [0.0]

    def content() -> bytes:
        failure = failure_of(folder, key)
        if failure is not None:
            raise ConversionRefused(f"converting this network to LiteRT failed before ({failure[:300]})")
        data, spent[0] = convert_once(folder, key, parts, lambda: to_flatbuffer(network))
        return data

    model, was_loaded = loaded_model(key, available_cores(), content)
    if was_loaded:
        how = "converted earlier, already loaded in this worker"
    elif spent[0] > 0:
        how = f"converted now in {spent[0]:.1f} s (kept for later runs)"
    else:
        how = "converted earlier, read from the cache"
    return model, how, round(spent[0], 3)


def _short(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first[:300]
