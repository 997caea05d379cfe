"""Offline-first resolution of pretrained weight files (see ARCHITECTURE.md, "Weights").

Order: the offline weights folder, the Keras cache, a download by Keras (unless
``Settings.offline``), else :class:`WeightsUnavailableError` naming the file and folders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from transfer_core.config import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps TensorFlow out of imports.
    import pandas as pd

from transfer_core.zoo.catalog import (
    BACKBONES,
    BackboneInfo,
    WeightsUnavailableError,
    check_input_size,
    get_backbone_info,
)


def _keras_cache_dirs() -> list[Path]:
    """Where Keras keeps downloaded files, computed the way Keras does, without importing it."""
    keras_home = os.environ.get("KERAS_HOME", "").strip()
    base = Path(keras_home).expanduser() if keras_home else Path.home() / ".keras"
    dirs = [base / "models"]
    # Like keras.utils.get_file: when that folder is not writable Keras uses /tmp/.keras.
    if not os.access(base, os.W_OK):
        dirs.append(Path("/tmp") / ".keras" / "models")
    return dirs


def weight_search_dirs(settings: Settings) -> list[Path]:
    dirs: list[Path] = []
    if settings.weights_dir is not None:
        dirs.append(Path(settings.weights_dir).expanduser())
    dirs.extend(_keras_cache_dirs())
    return dirs


def candidate_weight_files(key: str, input_size: int = 0, *, include_top: bool = False) -> list[str]:
    """Weight file names accepted for ``key`` at ``input_size``, best first."""
    info = get_backbone_info(key)
    return _candidate_files(info, check_input_size(key, input_size), include_top)


def _candidate_files(info: BackboneInfo, size: int, include_top: bool) -> list[str]:
    """File names that hold usable weights for this size, best first."""
    if include_top:
        if size not in info.has_top_weights_for:
            return []
        return [info.weights_file(True, size)]
    names = []
    if size in info.pretrained_sizes:
        names.append(info.weights_file(False, size))
    # Convolution weights do not depend on the input size, so the default-size file
    # serves any other size (this is what Keras itself does for MobileNet v1/v2).
    fallback = info.weights_file(False, info.default_input_size)
    if fallback not in names:
        names.append(fallback)
    return names


def find_local_file(names: list[str], dirs: list[Path]) -> Path | None:
    for name in names:
        for folder in dirs:
            path = folder / name
            if path.is_file():
                return path
    return None


def _unavailable_message(info: BackboneInfo, names: list[str], dirs: list[Path], reason: str) -> str:
    needed = names[0] if names else info.weights_file(False)
    others = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
    searched = ", ".join(str(d) for d in dirs)
    return (
        f"ImageNet weights for {info.display_name} are not available: {reason} "
        f"The file needed is {needed}{others}; searched: {searched}. "
        f"Download it from {info.weights_origin}{needed} and put it in the offline weights folder "
        "(environment variable TRANSFER_WEIGHTS_DIR), or in the Keras cache folder "
        f'({_keras_cache_dirs()[0]}). Or choose "random initialisation (no transfer)" '
        '(weights="random") to train the same architecture from scratch.'
    )


def _download(info: BackboneInfo, name: str, include_top: bool, origin: str) -> Path:
    import keras

    path = keras.utils.get_file(
        name,
        origin=origin,
        cache_subdir="models",
        file_hash=info.weights_hash(include_top),
    )
    return Path(path)


def resolve_weights(
    key: str,
    input_size: int = 0,
    *,
    include_top: bool = False,
    settings: Settings,
) -> str:
    """Find (or, when allowed, download) the ImageNet weights file of a backbone.

    Looks in the offline weights folder, then in the Keras cache, then downloads
    with ``keras.utils.get_file`` from Keras' own URL unless ``settings.offline``
    (``TRANSFER_OFFLINE``). For no-top weights at a size with no file of its own, the
    default-size file is used (convolution weights do not depend on the size).

    Args:
        key: Zoo key.
        input_size: Input side; 0 means the default.
        include_top: Resolve the with-top (ImageNet classifier) weights.
        settings: Where the offline folder is, and whether downloads are off.

    Returns:
        The path of a local weights file.

    Raises:
        ValueError: Unknown key or an input size the backbone rejects.
        WeightsUnavailableError: No local file, and downloading is off or failed;
            the message names the file, the folders searched and what to do.
    """
    info = get_backbone_info(key)
    size = check_input_size(key, input_size)
    dirs = weight_search_dirs(settings)
    names = _candidate_files(info, size, include_top)
    if not names:
        raise WeightsUnavailableError(
            f"Keras publishes no ImageNet classifier (with-top) weights for {info.display_name} at "
            f"{size}x{size}; sizes with top weights: {list(info.has_top_weights_for)}. "
            f"Received: input_size={input_size}"
        )
    found = find_local_file(names, dirs)
    if found is not None:
        return str(found)
    if settings.offline:
        raise WeightsUnavailableError(
            _unavailable_message(
                info, names, dirs, "no local copy, and downloads are off (TRANSFER_OFFLINE=0, or Settings(offline=False), allows them)."
            )
        )
    name = names[0]
    origin = info.weights_origin + name
    try:
        return str(_download(info, name, include_top, origin))
    except Exception as exc:  # Any download failure becomes one clear error.
        reason = f"no local copy, and the download from {origin} failed ({type(exc).__name__}: {exc})."
        raise WeightsUnavailableError(_unavailable_message(info, names, dirs, reason)) from exc


def weights_available_offline(
    key: str,
    input_size: int = 0,
    *,
    include_top: bool = False,
    settings: Settings,
) -> bool:
    """Whether the ImageNet weights are on this machine (no download needed).

    Args:
        key: Zoo key.
        input_size: Input side; 0 means the default.
        include_top: Ask about the with-top (classifier) weights.
        settings: Where the offline folder is.

    Returns:
        True when a usable weights file is in the offline folder or the Keras cache.

    Raises:
        ValueError: Unknown key or an input size the backbone rejects.
    """
    info = get_backbone_info(key)
    size = check_input_size(key, input_size)
    names = _candidate_files(info, size, include_top)
    return bool(names) and find_local_file(names, weight_search_dirs(settings)) is not None


def offline_backbones(settings: Settings) -> list[str]:
    """Zoo keys whose no-top ImageNet weights (default size) are available offline.

    Args:
        settings: Where the offline folder is.

    Returns:
        Keys in zoo order.
    """
    return [key for key in BACKBONES if weights_available_offline(key, settings=settings)]


def zoo_table(settings: Settings) -> pd.DataFrame:
    """The zoo as a table for the app and the command line (no TensorFlow import).

    Args:
        settings: Where the offline folder is.

    Returns:
        One row per backbone with columns ``key``, ``name``, ``params_millions``,
        ``depth``, ``default_input_size``, ``imagenet_top1`` (percent),
        ``size_mb``, ``family``, ``weights_offline`` and ``top_weights_offline``.
    """
    import pandas as pd

    rows = []
    for info in BACKBONES.values():
        rows.append(
            {
                "key": info.key,
                "name": info.display_name,
                "params_millions": info.params_millions,
                "depth": info.depth,
                "default_input_size": info.default_input_size,
                "imagenet_top1": info.imagenet_top1,
                "size_mb": info.size_mb,
                "family": info.family,
                "weights_offline": weights_available_offline(info.key, settings=settings),
                "top_weights_offline": weights_available_offline(
                    info.key, include_top=True, settings=settings
                ),
            }
        )
    frame = pd.DataFrame(rows)
    frame["depth"] = frame["depth"].astype("Int64")
    return frame
