"""The named tasks of the inference worker (run there, where TensorFlow is loaded).

Each task takes ``progress(fraction, text)`` first, then plain-data arguments, and
returns plain data (dataclasses, arrays, frames), never a Keras object. Loaded
models are kept in small per-process caches keyed by file and modification time,
so the next Grad-CAM of the same run skips loading the model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.config import RunConfig, Settings
from transfer_core.explore.embeddings import EmbeddingResult
from transfer_core.explore.model_view import ModelView
from transfer_core.explore.pretrained import ImagenetPrediction
from transfer_core.freezing.blockmap import BlockMap
from transfer_core.inference.results import ImageExplanation, UserModelInfo
from transfer_core.training.lr_finder import LRFinderResult

ProgressFn = Callable[[float | None, str], None]


class _Recent:
    """The last few loaded models (each takes memory; a class uses one or two runs at a time)."""

    def __init__(self, size: int) -> None:
        self.size, self.items = size, OrderedDict()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.items[key] = load()
        while len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


_run_models = _Recent(3)
_user_models = _Recent(2)
_imagenet_models = _Recent(1)


def _run_model(model_path: str, modified: float) -> Any:
    from transfer_core.explore.explain import load_model

    # Read-only: used for inference only, so one copy serves every session. `modified` reloads a replaced file.
    return _run_models.get((str(model_path), float(modified)), lambda: load_model(model_path))


def block_map(progress: ProgressFn, settings: Settings, key: str, input_size: int) -> BlockMap:
    """The block map of ``key`` at ``input_size``, read from or written to the on-disk cache."""
    from transfer_core import zoo
    from transfer_core.freezing import blockmap

    size = zoo.check_input_size(key, input_size)
    path = blockmap.block_map_path(settings.home, key, size)
    cached = blockmap.load_block_map(path)
    if cached is not None:
        return cached
    progress(None, f"Building {key} at {size}x{size} to read its blocks...")
    blocks = blockmap.block_map(key, size)
    blockmap.save_block_map(blocks, path)
    return blocks


def imagenet_preview(
    progress: ProgressFn, settings: Settings, paths: Sequence[str], key: str, top: int = 3
) -> list[ImagenetPrediction]:
    """The ImageNet classifier ``key``'s top classes for image files (the "before transfer" view)."""
    from transfer_core import zoo
    from transfer_core.explore.pretrained import predict_top_classes

    progress(None, "Loading the ImageNet classifier...")
    model = _imagenet_models.get((key, str(settings.weights_dir)),
                                 lambda: zoo.build_imagenet_classifier(key, settings=settings))
    progress(None, "Running the ImageNet classifier...")
    return predict_top_classes(model, zoo.preprocessing_layers(key), paths, zoo.imagenet_class_names(settings),
                               top=top)


def model_input_size(progress: ProgressFn, model_path: str, modified: float) -> int:
    """The image side a run's model takes."""
    return int(_run_model(model_path, modified).inputs[0].shape[1])


def explain_images(
    progress: ProgressFn, model_path: str, modified: float, pictures: Sequence[tuple[str, bytes]],
    max_pixels: int | None = None,
) -> list[ImageExplanation]:
    """Probabilities and Grad-CAM of new images (bytes), each decoded like a training image."""
    from transfer_core.data import ImageRejected, decode_for_model
    from transfer_core.explore import explain

    model = _run_model(model_path, modified)
    size = int(model.inputs[0].shape[1])
    results = []
    for number, (name, data) in enumerate(pictures):
        progress(number / max(len(pictures), 1), f"Explaining {name}...")
        try:
            image = decode_for_model(bytes(data), size, max_pixels)
        except ImageRejected as error:
            results.append(ImageExplanation(name, error=str(error)))
            continue
        cam = explain.grad_cam(model, image)
        results.append(ImageExplanation(name, cam=cam, probabilities=explain.predict(model, image)[0]))
    return results


def validation_predictions(
    progress: ProgressFn, settings: Settings, run_path: str, model_path: str, modified: float
) -> pd.DataFrame:
    """The run's model's prediction of every validation image (``explain.validation_predictions``' frame);
    a feature-extraction run's frozen backbone runs on LiteRT."""
    from transfer_core.explore.explain import validation_predictions as predictions
    from transfer_core.runs import load_run

    progress(None, "Predicting the validation images...")
    frame, _ = predictions(_run_model(model_path, modified), load_run(Path(run_path)).config, settings)
    return frame


def cell_grad_cams(
    progress: ProgressFn, model_path: str, modified: float, items: Sequence[tuple[str, int]]
) -> list[tuple[np.ndarray, float]]:
    """Grad-CAM overlays of image files, each for a given class: ``[(overlay, probability), ...]``."""
    from transfer_core.data import decode_for_model
    from transfer_core.explore import explain

    model = _run_model(model_path, modified)
    size = int(model.inputs[0].shape[1])
    results = []
    for number, (image_path, class_index) in enumerate(items):
        progress(number / max(len(items), 1), "Computing Grad-CAM...")
        cam = explain.grad_cam(model, decode_for_model(image_path, size), int(class_index))
        results.append((cam.overlay, cam.probability))
    return results


def embeddings(
    progress: ProgressFn, settings: Settings, model_path: str, modified: float, config: RunConfig
) -> EmbeddingResult:
    """Validation images' pooled features before and after training, projected to 2-D."""
    from transfer_core.explore.embeddings import embeddings as compute

    progress(None, "Computing features before and after, and projecting them...")
    return compute(_run_model(model_path, modified), config, settings=settings)


def model_view(progress: ProgressFn, source: bytes | str, backbone: str, input_size: int) -> ModelView:
    """What the preprocessing of ``backbone`` does to one image (bytes or a file path)."""
    from transfer_core.explore.model_view import model_view as view

    return view(source, backbone, input_size)


def _user_model(digest: str, data: bytes, name: str, max_bytes: int) -> Any:
    from transfer_core.explore.safe_load import load_keras_model

    # Keyed by content; safe_load refuses files that carry code.
    return _user_models.get(digest, lambda: load_keras_model(bytes(data), name=name, max_bytes=max_bytes))


def user_model_info(progress: ProgressFn, digest: str, data: bytes, name: str, max_bytes: int) -> UserModelInfo:
    """Check and load a person's ``.keras`` file; its input side and number of classes."""
    from transfer_core.explore.safe_load import image_input_size

    progress(None, "Checking and loading the model file...")
    return UserModelInfo(*image_input_size(_user_model(digest, data, name, max_bytes)))


def user_model_predict(
    progress: ProgressFn, digest: str, data: bytes, name: str, max_bytes: int, image: bytes,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Probabilities of a person's ``.keras`` classifier for one image (bytes).

    Raises:
        transfer_core.data.ImageRejected: The image cannot be used.
    """
    from transfer_core.data import decode_for_model
    from transfer_core.explore.explain import predict
    from transfer_core.explore.safe_load import image_input_size

    model = _user_model(digest, data, name, max_bytes)
    side, _ = image_input_size(model)
    return predict(model, decode_for_model(bytes(image), side, max_pixels))[0]


def export_and_check(progress: ProgressFn, run_path: str, model_path: str, modified: float) -> pd.DataFrame:
    """Export a run in every available format, run each file through its own runtime; the cost table (saved)."""
    from transfer_core import export

    model = _run_model(model_path, modified)
    progress(0.0, "Exporting .keras, SavedModel, TFLite (float32, float16, 8-bit, int8) and ONNX...")
    bundle = export.export_run(run_path, model=model)
    progress(0.6, "Running each file through its own runtime on the held-out images...")
    parity = export.parity_check(run_path, bundle, reference_model=model)
    export.save_parity(parity, run_path, bundle)
    return parity


def reproduction_script(progress: ProgressFn, config: RunConfig, run_id: str, val_accuracy: float | None) -> str:
    """The standalone script that reproduces a run (it builds the backbone to name the layers that train)."""
    from transfer_core.export import generate_script

    return generate_script(config, run_id, val_accuracy)


def lr_find(progress: ProgressFn, settings: Settings, config: RunConfig) -> LRFinderResult:
    """The learning-rate range test of ``config`` (its features computed once, or read from the cache)."""
    from transfer_core.training.lr_finder import find_learning_rate

    progress(0.0, "Computing the backbone's features of the training images (or reading them from the cache)...")

    def on_step(step: int, steps: int) -> None:
        progress(step / steps, f"Sweeping learning rates: step {step} of {steps}")

    return find_learning_rate(config, settings=settings, on_step=on_step)


def augmentation_preview(
    progress: ProgressFn, image_path: str, augmentation: list[str], n: int, seed: int, size: int
) -> list[np.ndarray]:
    """One training image decoded like training does, then ``n`` augmented copies: ``[original, *copies]``."""
    from transfer_core import data
    from transfer_core.data import augment

    pixels = data.decode_for_model(image_path, size)
    return [pixels.clip(0, 255).astype("uint8"), *augment.augmentation_preview(pixels, augmentation, n=n, seed=seed)]


TASKS: dict[str, Callable[..., Any]] = {
    task.__name__: task
    for task in (block_map, imagenet_preview, model_input_size, explain_images, validation_predictions,
                 cell_grad_cams, embeddings, model_view, user_model_info, user_model_predict, export_and_check,
                 reproduction_script, lr_find, augmentation_preview)
}

__all__ = ["TASKS", *sorted(TASKS)]
