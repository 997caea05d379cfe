"""Typed calls of the inference worker's tasks, for the pages (no TensorFlow here).

Each function has the signature of its task in :mod:`transfer_core.inference.tasks`,
with ``settings`` first (which worker) and ``on_progress`` last; it blocks until the
result is back. Block maps are read from their on-disk cache without asking the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from transfer_core import zoo
from transfer_core.config import RunConfig, Settings
from transfer_core.explore.embeddings import EmbeddingResult
from transfer_core.explore.model_view import ModelView
from transfer_core.explore.pretrained import ImagenetPrediction
from transfer_core.freezing import blockmap
from transfer_core.freezing.blockmap import BlockMap
from transfer_core.inference.client import Progress, call
from transfer_core.inference.results import ImageExplanation, UserModelInfo
from transfer_core.training.lr_finder import LRFinderResult

OnProgress = Callable[[Progress], None] | None


def block_map(settings: Settings, key: str, input_size: int, on_progress: OnProgress = None) -> BlockMap:
    """The block map of ``key`` at ``input_size``: from ``<home>/cache/blockmaps/`` or computed once by the worker."""
    size = zoo.check_input_size(key, input_size)
    cached = blockmap.load_block_map(blockmap.block_map_path(settings.home, key, size))
    if cached is not None:
        return cached
    return call(settings, "block_map", settings, key, size, on_progress=on_progress)


def imagenet_preview(
    settings: Settings, paths: Sequence[str], key: str, top: int = 3, on_progress: OnProgress = None
) -> list[ImagenetPrediction]:
    """The ImageNet classifier's top classes of image files (``pretrained.imagenet_predictions``)."""
    return call(settings, "imagenet_preview", settings, [str(p) for p in paths], key, top, on_progress=on_progress)


def model_input_size(settings: Settings, model_path: str, modified: float) -> int:
    """The image side a run's ``model.keras`` takes."""
    return call(settings, "model_input_size", str(model_path), float(modified))


def explain_images(
    settings: Settings, model_path: str, modified: float, pictures: Sequence[tuple[str, bytes]],
    on_progress: OnProgress = None,
) -> list[ImageExplanation]:
    """Probabilities and Grad-CAM of new images, one :class:`ImageExplanation` each, in order."""
    return call(settings, "explain_images", str(model_path), float(modified), list(pictures), settings.max_pixels,
                on_progress=on_progress)


def validation_predictions(
    settings: Settings, run_path: str, model_path: str, modified: float, on_progress: OnProgress = None
) -> pd.DataFrame:
    """One row per validation image: ``path``, ``true``, ``predicted``, ``confidence`` and the indices."""
    return call(settings, "validation_predictions", settings, str(run_path), str(model_path), float(modified),
                on_progress=on_progress)


def cell_grad_cams(
    settings: Settings, model_path: str, modified: float, items: Sequence[tuple[str, int]],
    on_progress: OnProgress = None,
) -> list[tuple[np.ndarray, float]]:
    """Grad-CAM overlays of image files, each for its class index: ``[(overlay, probability), ...]``."""
    return call(settings, "cell_grad_cams", str(model_path), float(modified), [(str(p), int(c)) for p, c in items],
                on_progress=on_progress)


def embeddings(
    settings: Settings, model_path: str, modified: float, config: RunConfig, on_progress: OnProgress = None
) -> EmbeddingResult:
    """Validation images' features before and after training, projected to 2-D."""
    return call(settings, "embeddings", settings, str(model_path), float(modified), config, on_progress=on_progress)


def model_view(settings: Settings, source: bytes | str, backbone: str, input_size: int) -> ModelView:
    """What the preprocessing of ``backbone`` does to one image (bytes or a file path)."""
    return call(settings, "model_view", source if isinstance(source, bytes) else str(source), backbone,
                int(input_size))


def user_model_info(settings: Settings, digest: str, data: bytes, name: str) -> UserModelInfo:
    """Check (safe mode) and load a person's ``.keras`` file.

    Raises:
        transfer_core.explore.safe_load.UnsafeModelError: The file is refused.
    """
    return call(settings, "user_model_info", digest, data, name, settings.max_upload_mb * 1024 * 1024)


def user_model_predict(settings: Settings, digest: str, data: bytes, name: str, image: bytes) -> np.ndarray:
    """Probabilities of a person's ``.keras`` classifier for one image.

    Raises:
        transfer_core.data.ImageRejected: The image cannot be used.
    """
    return call(settings, "user_model_predict", digest, data, name, settings.max_upload_mb * 1024 * 1024, image,
                settings.max_pixels)


def export_and_check(
    settings: Settings, run_path: str, model_path: str, modified: float, on_progress: OnProgress = None
) -> pd.DataFrame:
    """Export a run in every format and check each file's predictions (the parity report, also saved)."""
    return call(settings, "export_and_check", str(run_path), str(model_path), float(modified),
                on_progress=on_progress)


def reproduction_script(settings: Settings, config: RunConfig, run_id: str, val_accuracy: float | None) -> str:
    """The standalone Python script that reproduces a run (``export.generate_script``)."""
    return call(settings, "reproduction_script", config, run_id, val_accuracy)


def lr_find(settings: Settings, config: RunConfig, on_progress: OnProgress = None) -> LRFinderResult:
    """The learning-rate range test of ``config``, run in the worker."""
    return call(settings, "lr_find", settings, config, on_progress=on_progress)


def augmentation_preview(
    settings: Settings, image_path: str, augmentation: Sequence[str], n: int = 7, seed: int = 0, size: int = 128
) -> list[np.ndarray]:
    """``[original, *n augmented copies]`` of a training image, made with the augmenter training uses."""
    return call(settings, "augmentation_preview", str(image_path), list(augmentation), n, seed, size)
