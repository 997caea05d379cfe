"""The tf.data input pipeline over a data set's manifest.

TensorFlow is imported inside the functions: importing ``transfer_core.data``
must stay fast, because the app's first page imports it and TensorFlow takes
seconds to load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from transfer_core.config import DatasetSpec
from transfer_core.data.decode import decode_and_resize
from transfer_core.data.manifest import DataError, split_paths

if TYPE_CHECKING:
    import tensorflow as tf

def make_tf_dataset(
    spec: DatasetSpec,
    split: str,
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    repeat: bool = False,
    cache_dir: Path | None = None,
    autotune: bool = True,
) -> tf.data.Dataset:
    """A batched ``tf.data.Dataset`` of one split.

    Each element is ``(images, labels)``: images float32 ``(B, S, S, 3)`` with
    whole-number values in 0..255 (the model's own preprocessing layer scales them), labels
    int32 ``(B,)`` indexing ``spec.class_names``. Images are resized with
    bilinear interpolation, not cropped, exactly like ``decode_for_model``.

    Args:
        spec: The data set.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: Side of the square images in pixels.
        batch_size: Images per batch (the last batch may be smaller).
        shuffle: Shuffle the whole split, differently each epoch but
            reproducibly for a given ``seed``.
        seed: Shuffle seed.
        repeat: Repeat forever (for ``steps_per_epoch`` style training).
        cache_dir: A folder for decoded images (``transfer_core.data.image_cache``).
            When given, the split is decoded once into a file there (now, if
            that file is missing or damaged) and every pass reads the resized
            pixels back instead of decoding: the batches, their order and the
            shuffle are identical to the decoding pipeline's. A split too large
            for the cache, or a folder that cannot be written, silently falls
            back to decoding. ``None`` (the default) decodes every pass.
        autotune: Let tf.data tune its parallelism while it runs (the default). ``False`` runs one
            call per core without tuning: as fast for a single pass, and deleting the finished
            iterator is instant, where tf.data's tuning thread holds it up by 0.5-1 s about every
            other pass on a busy 2-core machine.

    Returns:
        The dataset, prefetching in the background.

    Raises:
        ValueError: When ``split``, ``image_size`` or ``batch_size`` is invalid.
        DataError: When the split has no images.
    """
    import tensorflow as tf

    _check_sizes(image_size, batch_size)
    paths, labels = split_paths(spec, split)
    if not paths:
        raise DataError(f"The {split!r} split of the data set at {spec.root} has no images.")
    if cache_dir is not None:
        from transfer_core.data.image_cache import ensure_image_cache, make_cached_dataset

        cached = ensure_image_cache(spec, split, int(image_size), Path(cache_dir), paths=paths)
        if cached is not None and cached.count == len(paths):
            return make_cached_dataset(cached, labels, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                       repeat=repeat, autotune=autotune)
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels.astype(np.int32)))
    if shuffle:
        # Shuffling file names (not decoded images) keeps the buffer tiny, so the
        # whole split fits in it and the shuffle is uniform.
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return decode_and_resize(tf.io.read_file(path), image_size), label

    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return with_autotune(dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE), autotune)


def with_autotune(dataset: tf.data.Dataset, autotune: bool) -> tf.data.Dataset:
    """``dataset``, with tf.data's autotuning turned off unless ``autotune`` (see ``make_tf_dataset``)."""
    if autotune:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def load_split_arrays(spec: DatasetSpec, split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One whole split as NumPy arrays, for small data sets (explanations, tests, plots).

    Args:
        spec: The data set.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: Side of the square images in pixels.

    Returns:
        Images float32 ``(N, S, S, 3)`` in 0..255 and labels int32 ``(N,)``,
        in manifest order. An empty split gives arrays with ``N = 0``.

    Raises:
        ValueError: When ``split`` or ``image_size`` is invalid.
    """
    _check_sizes(image_size, 1)
    paths, _ = split_paths(spec, split)
    if not paths:
        return np.zeros((0, image_size, image_size, 3), np.float32), np.zeros((0,), np.int32)
    batches = list(make_tf_dataset(spec, split, image_size=image_size, batch_size=64).as_numpy_iterator())
    images = np.concatenate([batch[0] for batch in batches]).astype(np.float32, copy=False)
    labels = np.concatenate([batch[1] for batch in batches]).astype(np.int32, copy=False)
    return images, labels


def _check_sizes(image_size: int, batch_size: int) -> None:
    if not isinstance(image_size, int | np.integer) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer. Received: image_size={image_size!r}")
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
