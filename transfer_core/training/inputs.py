"""A run's inputs: the splits from the manifest, tf.data image pipelines, the decode-once cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from transfer_core.data.augment import build_augmenter
from transfer_core.training.context import RunContext, SplitData
from transfer_core.training.errors import RunFailed


def load_split(spec, split: str, manifest: pd.DataFrame | None = None) -> SplitData:
    """Absolute paths, integer labels and content hashes of one split, in manifest order."""
    from transfer_core.data import read_manifest

    frame = read_manifest(spec) if manifest is None else manifest
    frame = frame[frame["split"] == split]
    index = {name: i for i, name in enumerate(spec.class_names)}
    root = Path(spec.root)
    return SplitData(
        paths=[str(root / p) for p in frame["path"]],
        labels=np.array([index[label] for label in frame["label"]], dtype=np.int32),
        shas=list(frame["sha256"]),
    )


def load_splits(ctx: RunContext) -> None:
    """Fill the context's three splits; refuse a run that could not be measured honestly."""
    from transfer_core.data import read_manifest

    manifest = read_manifest(ctx.spec)
    ctx.train_data = load_split(ctx.spec, "train", manifest)
    ctx.val_data = load_split(ctx.spec, "val", manifest)
    ctx.test_data = load_split(ctx.spec, "test", manifest)
    if len(ctx.train_data.paths) == 0:
        raise RunFailed("The training split is empty: add images or lower the validation share.")
    if len(ctx.val_data.paths) == 0:
        raise RunFailed(
            "The validation split is empty, so accuracy could not be measured honestly: "
            "add images (at least 2 per class) or raise the validation share."
        )
    present = set(ctx.train_data.labels.tolist())
    if len(present) < 2:
        raise RunFailed("The training split holds fewer than 2 classes.")


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse class frequencies (Keras' ``class_weight``); a class without images weighs 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    total = counts.sum()
    return {i: float(total / (num_classes * c)) if c > 0 else 0.0 for i, c in enumerate(counts)}


def image_dataset(ctx: RunContext, data: SplitData, *, training: bool, every_epoch: bool = False,
                  autotune: bool = True):
    """The split's image pipeline; one read ``every_epoch`` comes from the decoded-image cache."""
    import tensorflow as tf

    from transfer_core.data import make_tf_dataset

    train_config = ctx.train_config
    split = "train" if data is ctx.train_data else ("val" if data is ctx.val_data else "test")
    cache_dir = None
    if every_epoch and train_config.use_cache:
        cache_dir = ctx.settings.cache_dir / "images"
        decode_once(ctx, split, cache_dir)
    ds = make_tf_dataset(
        ctx.spec,
        split,
        image_size=ctx.classifier.input_size,
        batch_size=train_config.batch_size,
        shuffle=training,
        seed=train_config.seed,
        cache_dir=cache_dir,
        autotune=autotune,
    )
    if training and train_config.augmentation:
        augmenter = build_augmenter(train_config.augmentation, train_config.seed)
        ds = ds.map(
            lambda x, y: (augmenter(x, training=True), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).prefetch(tf.data.AUTOTUNE)
    return ds


def one_pass_dataset(ctx: RunContext, data: SplitData):
    """The split's images for a one-pass stage (features, frozen prefix), in manifest order.

    Read back from the decoded-image cache when it holds the split (filled by :func:`decode_for_passes`
    or an earlier run on the same images and size): reading pixels costs microseconds, decoding a
    photo about a millisecond. Otherwise decoded on the fly, overlapped with the forward pass.
    Without tf.data's autotuning: its thread held up the end of each pass by 0.5-1 s about every
    other time (``make_tf_dataset``'s ``autotune``), a third of a 1,000-photo features stage on LiteRT.
    """
    if ctx.train_config.use_cache:
        from transfer_core.data.image_cache import cache_path

        if cache_path(ctx.settings.cache_dir / "images", data.shas, ctx.classifier.input_size).exists():
            return image_dataset(ctx, data, training=False, every_epoch=True, autotune=False)
    return image_dataset(ctx, data, training=False, autotune=False)


def decode_for_passes(ctx: RunContext) -> None:
    """Decode the training and validation images once, for a run that reads them more than once.

    Fine-tuning reads every image at least twice (the features for the head, then the frozen
    prefix or whole epochs); decoding once into the image cache saves the second decode.
    """
    if ctx.train_config.use_cache:
        cache_dir = ctx.settings.cache_dir / "images"
        for split in ("train", "val"):
            decode_once(ctx, split, cache_dir)


def epoch_datasets(ctx: RunContext):
    """Training and validation pipelines for a stage that reads the images every epoch."""
    return (image_dataset(ctx, ctx.train_data, training=True, every_epoch=True),
            image_dataset(ctx, ctx.val_data, training=False, every_epoch=True))


def decode_once(ctx: RunContext, split: str, cache_dir: Path) -> None:
    """Fill the split's decoded-image cache (if needed) with progress events and stop checks."""
    from transfer_core.data.image_cache import ensure_image_cache

    def progress(done: int, total: int) -> None:
        if not ctx.decode_announced:  # One stage for the training and validation splits.
            ctx.emit({"type": "stage", "stage": "decode", "epochs": 0, "cached": True,
                      "description": "Decoding and resizing each image once, kept on disk for every epoch"})
            ctx.decode_announced = True
        ctx.progress.check_stop()
        ctx.emit({"type": "progress", "stage": "decode", "done": done, "total": total})

    ensure_image_cache(ctx.spec, split, ctx.classifier.input_size, cache_dir, progress=progress)
