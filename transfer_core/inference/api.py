"""Typed calls of the inference worker's tasks, for the pages (no TensorFlow here).

Each function has the signature of its task in :mod:`transfer_core.inference.tasks`,
with ``settings`` first (which worker) and ``on_progress`` last; it blocks until the
result is back. Block maps are read from their on-disk cache without asking the worker.

Every request a page makes also has a ``*_request`` form that never waits, for a page to
follow from a polling fragment (``ui.worker_progress.await_request``); same inputs, same
request as the blocking form. Those a person starts with a button (the learning-rate
finder, export and check, embeddings, the ImageNet preview, the augmentation preview)
take ``submit``: True asks (once, whatever the reruns), False only looks; they return
``Pending`` / ``Done`` (or None: never asked). Those a page shows without a click
(predictions, Grad-CAM, block maps, what the model sees, the reproduce script, a
.keras file of one's own) ask unless asked already (``client.ask``).
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
from transfer_core.inference.client import Done, Pending, Progress, ask, asked, call, peek, request
from transfer_core.inference.results import ImageExplanation, UserModelInfo
from transfer_core.training.lr_finder import LRFinderResult

OnProgress = Callable[[Progress], None] | None
Outcome = Pending | Done | None
_MAX_PREVIEW_SEED = 200  # Clicks remembered per image and choice (each answer is kept an hour).


def _ask(submit: bool, settings: Settings, task: str, *args) -> Outcome:
    return request(settings, task, *args) if submit else peek(settings, task, *args)


def block_map(settings: Settings, key: str, input_size: int, on_progress: OnProgress = None) -> BlockMap:
    """The block map of ``key`` at ``input_size``: from ``<home>/cache/blockmaps/`` or computed once by the worker."""
    size = zoo.check_input_size(key, input_size)
    cached = blockmap.load_block_map(blockmap.block_map_path(settings.home, key, size))
    if cached is not None:
        return cached
    return call(settings, "block_map", settings, key, size, on_progress=on_progress)


def block_map_request(settings: Settings, key: str, input_size: int) -> Pending | Done:
    """:func:`block_map` without waiting: a ``Done`` at once from the disk cache, else the worker's request."""
    size = zoo.check_input_size(key, input_size)
    cached = blockmap.load_block_map(blockmap.block_map_path(settings.home, key, size))
    if cached is not None:
        return Done("", {"ok": True, "value": cached}, "block_map")
    return ask(settings, "block_map", settings, key, size)


def imagenet_preview(
    settings: Settings, paths: Sequence[str], key: str, top: int = 3, on_progress: OnProgress = None
) -> list[ImagenetPrediction]:
    """The ImageNet classifier's top classes of image files (``pretrained.imagenet_predictions``)."""
    return call(settings, "imagenet_preview", settings, [str(p) for p in paths], key, top, on_progress=on_progress)


def imagenet_preview_request(settings: Settings, paths: Sequence[str], key: str, top: int = 3, *,
                             submit: bool = False) -> Outcome:
    """:func:`imagenet_preview` without waiting: its ``Pending`` / ``Done`` (None: never asked)."""
    return _ask(submit, settings, "imagenet_preview", settings, [str(p) for p in paths], key, top)


def model_input_size(settings: Settings, model_path: str, modified: float) -> int:
    """The image side a run's ``model.keras`` takes."""
    return call(settings, "model_input_size", str(model_path), float(modified))


def model_input_size_request(settings: Settings, model_path: str, modified: float) -> Pending | Done:
    """:func:`model_input_size` without waiting (asked unless asked already)."""
    return ask(settings, "model_input_size", str(model_path), float(modified))


def explain_images(
    settings: Settings, model_path: str, modified: float, pictures: Sequence[tuple[str, bytes]],
    on_progress: OnProgress = None,
) -> list[ImageExplanation]:
    """Probabilities and Grad-CAM of new images, one :class:`ImageExplanation` each, in order."""
    return call(settings, "explain_images", str(model_path), float(modified), list(pictures), settings.max_pixels,
                on_progress=on_progress)


def explain_request(settings: Settings, model_path: str, modified: float,
                    pictures: Sequence[tuple[str, bytes]]) -> Pending | Done:
    """:func:`explain_images` without waiting (asked unless asked already)."""
    return ask(settings, "explain_images", str(model_path), float(modified), list(pictures), settings.max_pixels)


def validation_predictions(
    settings: Settings, run_path: str, model_path: str, modified: float, on_progress: OnProgress = None
) -> pd.DataFrame:
    """One row per validation image: ``path``, ``true``, ``predicted``, ``confidence`` and the indices."""
    return call(settings, "validation_predictions", settings, str(run_path), str(model_path), float(modified),
                on_progress=on_progress)


def validation_predictions_request(settings: Settings, run_path: str, model_path: str,
                                   modified: float) -> Pending | Done:
    """:func:`validation_predictions` without waiting (asked unless asked already)."""
    return ask(settings, "validation_predictions", settings, str(run_path), str(model_path), float(modified))


def cell_grad_cams(
    settings: Settings, model_path: str, modified: float, items: Sequence[tuple[str, int]],
    on_progress: OnProgress = None,
) -> list[tuple[np.ndarray, float]]:
    """Grad-CAM overlays of image files, each for its class index: ``[(overlay, probability), ...]``."""
    return call(settings, "cell_grad_cams", str(model_path), float(modified), [(str(p), int(c)) for p, c in items],
                on_progress=on_progress)


def cell_grad_cams_request(settings: Settings, model_path: str, modified: float,
                           items: Sequence[tuple[str, int]]) -> Pending | Done:
    """:func:`cell_grad_cams` without waiting (asked unless asked already)."""
    return ask(settings, "cell_grad_cams", str(model_path), float(modified), [(str(p), int(c)) for p, c in items])


def embeddings(
    settings: Settings, model_path: str, modified: float, config: RunConfig, on_progress: OnProgress = None
) -> EmbeddingResult:
    """Validation images' features before and after training, projected to 2-D."""
    return call(settings, "embeddings", settings, str(model_path), float(modified), config, on_progress=on_progress)


def embeddings_request(settings: Settings, model_path: str, modified: float, config: RunConfig, *,
                       submit: bool = False) -> Outcome:
    """:func:`embeddings` without waiting: its ``Pending`` / ``Done`` (None: never asked)."""
    return _ask(submit, settings, "embeddings", settings, str(model_path), float(modified), config)


def model_view(settings: Settings, source: bytes | str, backbone: str, input_size: int) -> ModelView:
    """What the preprocessing of ``backbone`` does to one image (bytes or a file path)."""
    return call(settings, "model_view", source if isinstance(source, bytes) else str(source), backbone,
                int(input_size))


def model_view_request(settings: Settings, source: bytes | str, backbone: str, input_size: int) -> Pending | Done:
    """:func:`model_view` without waiting (asked unless asked already)."""
    return ask(settings, "model_view", source if isinstance(source, bytes) else str(source), backbone,
               int(input_size))


def user_model_info(settings: Settings, digest: str, data: bytes, name: str) -> UserModelInfo:
    """Check (safe mode) and load a person's ``.keras`` file.

    Raises:
        transfer_core.explore.safe_load.UnsafeModelError: The file is refused.
    """
    return call(settings, "user_model_info", digest, data, name, settings.max_upload_mb * 1024 * 1024)


def user_model_info_request(settings: Settings, digest: str, data: bytes, name: str) -> Pending | Done:
    """:func:`user_model_info` without waiting (asked unless asked already)."""
    return ask(settings, "user_model_info", digest, data, name, settings.max_upload_mb * 1024 * 1024)


def user_model_predict(settings: Settings, digest: str, data: bytes, name: str, image: bytes) -> np.ndarray:
    """Probabilities of a person's ``.keras`` classifier for one image.

    Raises:
        transfer_core.data.ImageRejected: The image cannot be used.
    """
    return call(settings, "user_model_predict", digest, data, name, settings.max_upload_mb * 1024 * 1024, image,
                settings.max_pixels)


def user_model_predict_request(settings: Settings, digest: str, data: bytes, name: str,
                               image: bytes) -> Pending | Done:
    """:func:`user_model_predict` without waiting (asked unless asked already)."""
    return ask(settings, "user_model_predict", digest, data, name, settings.max_upload_mb * 1024 * 1024, image,
               settings.max_pixels)


def export_and_check(
    settings: Settings, run_path: str, model_path: str, modified: float, on_progress: OnProgress = None
) -> pd.DataFrame:
    """Export a run in every format and check each file's predictions (the parity report, also saved)."""
    return call(settings, "export_and_check", str(run_path), str(model_path), float(modified),
                on_progress=on_progress)


def export_request(settings: Settings, run_path: str, model_path: str, modified: float, *,
                   submit: bool = False) -> Outcome:
    """:func:`export_and_check` without waiting: its ``Pending`` / ``Done`` (None: never asked)."""
    return _ask(submit, settings, "export_and_check", str(run_path), str(model_path), float(modified))


def reproduction_script(settings: Settings, config: RunConfig, run_id: str, val_accuracy: float | None) -> str:
    """The standalone Python script that reproduces a run (``export.generate_script``)."""
    return call(settings, "reproduction_script", config, run_id, val_accuracy)


def reproduction_script_request(settings: Settings, config: RunConfig, run_id: str,
                                val_accuracy: float | None) -> Pending | Done:
    """:func:`reproduction_script` without waiting (asked unless asked already)."""
    return ask(settings, "reproduction_script", config, run_id, val_accuracy)


def lr_find(settings: Settings, config: RunConfig, on_progress: OnProgress = None) -> LRFinderResult:
    """The learning-rate range test of ``config``, run in the worker."""
    return call(settings, "lr_find", settings, config, on_progress=on_progress)


def lr_find_request(settings: Settings, config: RunConfig, *, submit: bool = False) -> Outcome:
    """:func:`lr_find` without waiting: its ``Pending`` / ``Done`` (None: never asked)."""
    return _ask(submit, settings, "lr_find", settings, config)


def augmentation_preview(
    settings: Settings, image_path: str, augmentation: Sequence[str], n: int = 7, seed: int = 0, size: int = 128
) -> list[np.ndarray]:
    """``[original, *n augmented copies]`` of a training image, made with the augmenter training uses."""
    return call(settings, "augmentation_preview", str(image_path), list(augmentation), n, seed, size)


def augmentation_request(settings: Settings, image_path: str, augmentation: Sequence[str], n: int = 7,
                         size: int = 128) -> Outcome:
    """The newest :func:`augmentation_preview` of this image asked for, without waiting or asking
    (None: never asked). A reload finds the newest again by its inputs, the highest seed asked."""
    seed = _newest_preview_seed(settings, image_path, augmentation, n, size)
    return peek(settings, "augmentation_preview", str(image_path), list(augmentation), n, seed, size) if seed else None


def ask_augmentation(settings: Settings, image_path: str, augmentation: Sequence[str], n: int = 7,
                     size: int = 128) -> Outcome:
    """Ask for new augmented copies of this image: each click the next seed (1, 2, ...), so no click
    is lost and none is run twice. Read the answer with :func:`augmentation_request`."""
    seed = _newest_preview_seed(settings, image_path, augmentation, n, size)
    return request(settings, "augmentation_preview", str(image_path), list(augmentation), n,
                   seed % _MAX_PREVIEW_SEED + 1, size)


def _newest_preview_seed(settings: Settings, image_path: str, augmentation: Sequence[str], n: int, size: int) -> int:
    args = (str(image_path), list(augmentation), n)
    seed = 0
    while seed < _MAX_PREVIEW_SEED and asked(settings, "augmentation_preview", *args, seed + 1, size):
        seed += 1
    return seed
