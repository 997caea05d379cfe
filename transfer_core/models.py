"""Build the transfer-learning classifier: preprocessing + backbone + head.

The full model takes raw RGB pixels (float, 0..255) at the backbone's input
size, so an exported model needs no separate preprocessing step:

    image -> preprocessing layers -> backbone (nested, BatchNorm in inference
    mode) -> pooling ("pool": global average or max pooling, or Flatten; see
    ``ModelSpec.head``) -> head (dropout, optional hidden Dense, softmax classifier)

The backbone and the head are nested models named ``backbone`` and ``head``,
so the training engine can train the head alone on cached pooled features and
the weights it learns are the ones the full model uses. The pooling layer sits
between them, so the cached features are whatever the chosen head reads (the
average or maximum of each channel, or the whole flattened feature map).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from transfer_core.config import ModelSpec, Settings

if TYPE_CHECKING:
    import keras

BACKBONE_LAYER = "backbone"
HEAD_LAYER = "head"
POOL_LAYER = "pool"

# One ImageNet backbone per process, kept for the next run on the same backbone: building one
# (Keras creates every layer and variable, then loads the file) costs ~0.4 s for the smallest
# MobileNet, more than a whole run on cached features. Feature extraction never changes the
# backbone, so runs may share it; a fingerprint of its weights guards against anyone having
# trained it since (a shared one is never handed out changed). A process that drops each run's
# model once saved (a warm worker: recycle_backbones) also reuses it for fine-tuning: the kept
# ImageNet weights are put back after the run (restore_kept_backbone). Each run gets its own
# wrapper model over the kept layers: Keras records every call of a model, and a kept object that
# runs called would keep every earlier run's head reachable.
@dataclass
class _Kept:
    key: tuple
    backbone: keras.Model
    fingerprint: tuple[float, ...]  # of the ImageNet weights, as the file gave them
    pristine: list[np.ndarray] | None = None  # a copy of them, kept only where fine-tuning recycles


_kept_backbone: _Kept | None = None
_recycling = False


def recycle_backbones(enabled: bool = True) -> None:
    """This process saves and drops each run's model before the next run (a warm worker): a
    fine-tuning run may train the kept backbone, whose ImageNet weights
    :func:`restore_kept_backbone` puts back after it."""
    global _recycling
    _recycling = enabled


def recycles_backbones() -> bool:
    """Whether :func:`recycle_backbones` was called in this process."""
    return _recycling


@dataclass
class Classifier:
    """The pieces of one classifier; all share weights with ``model``."""

    model: keras.Model
    backbone: keras.Model
    head: keras.Model
    feature_extractor: keras.Model  # image -> pooled features
    preprocessing: list  # the stock Keras layers that map 0..255 pixels to the backbone's range
    input_size: int
    train_batchnorm: bool = False
    reused_backbone: bool = False  # the kept/prebuilt backbone (see keep_backbone), not built anew
    pristine_backbone: list[np.ndarray] | None = None  # its ImageNet weights, where fine-tuning recycles it


def build_head(feature_dim: int, num_classes: int, spec: ModelSpec) -> keras.Model:
    """Build the classification head that sits on pooled backbone features.

    Args:
        feature_dim: Width of the pooled feature vector.
        num_classes: Number of output classes.
        spec: Head settings (``dropout_rate``, ``hidden_units``).

    Returns:
        A ``keras.Model`` named ``head`` mapping features to class probabilities.
    """
    import keras

    features = keras.Input(shape=(feature_dim,), name="features")
    x = features
    if spec.dropout_rate > 0:
        x = keras.layers.Dropout(spec.dropout_rate, name="dropout")(x)
    if spec.hidden_units > 0:
        x = keras.layers.Dense(spec.hidden_units, activation="relu", name="hidden")(x)
        if spec.dropout_rate > 0:
            x = keras.layers.Dropout(spec.dropout_rate, name="hidden_dropout")(x)
    # float32 output even under a mixed-precision policy: softmax in 16 bits loses the
    # small probabilities that the loss and the parity checks depend on.
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier", dtype="float32")(x)
    return keras.Model(features, outputs, name=HEAD_LAYER)


def pooling_layer(head: str) -> keras.layers.Layer:
    """The layer (named ``pool``) that turns the backbone's feature map into the head's input.

    Args:
        head: ``"avg"``, ``"max"`` or ``"flatten"`` (``ModelSpec.head``).

    Raises:
        ValueError: Unknown head.
    """
    import keras

    layers = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
        "flatten": keras.layers.Flatten,
    }
    if head not in layers:
        raise ValueError(f"head must be one of {sorted(layers)}. Received: head={head!r}")
    return layers[head](name=POOL_LAYER)


def features_cache_name(spec: ModelSpec) -> str:
    """What the feature cache calls the head's input: ``pool`` (average pooling, as always), else
    ``pool:max`` / ``pool:flatten``, so features pooled one way are never read for another."""
    return "pool" if spec.head == "avg" else f"pool:{spec.head}"


def _backbone_key(spec: ModelSpec, input_size: int, settings: Settings | None) -> tuple | None:
    """What makes two ImageNet backbones identical: model, size, weights file, dtype policy."""
    import keras

    from transfer_core import zoo

    if spec.weights != "imagenet" or settings is None:
        return None  # Random weights are drawn per seed; nothing to share.
    try:
        path = Path(zoo.resolve_weights(spec.backbone, input_size, settings=settings)).resolve()
        stat = path.stat()
    except Exception:  # noqa: BLE001 - build_backbone reports a missing file properly.
        return None
    policy = keras.mixed_precision.global_policy().name
    return (spec.backbone, input_size, str(path), stat.st_size, stat.st_mtime_ns, policy)


def _fingerprint(weights: list[np.ndarray]) -> tuple[float, ...]:
    # Sums of every weight (BatchNorm statistics included): 5 ms for mobilenet_v2_0.35 (it reads a
    # copy of each weight, so it grows with the backbone), and any training step changes them.
    return tuple(float(np.sum(weight)) for weight in weights)


def _take_kept_backbone(key: tuple | None) -> tuple[keras.Model, list[np.ndarray] | None] | None:
    global _kept_backbone
    if key is None or _kept_backbone is None or _kept_backbone.key != key:
        return None
    if _fingerprint(_kept_backbone.backbone.get_weights()) != _kept_backbone.fingerprint:
        _kept_backbone = None  # Trained since it was kept, and not restored: build a fresh one.
        return None
    return _rewrap(_kept_backbone.backbone), _kept_backbone.pristine


def _rewrap(backbone: keras.Model) -> keras.Model:
    """A new model over the same layers and variables (no copy; ~10 ms)."""
    import keras

    return keras.Model(backbone.input, backbone.output, name=BACKBONE_LAYER)


def keep_backbone(classifier: Classifier, spec: ModelSpec, settings: Settings) -> None:
    """Keep ``classifier``'s ImageNet backbone for the next ``build_classifier(...,
    reuse_backbone=True)`` in this process (one at a time; the previous one is dropped): unchanged
    (feature extraction), or trained by a fine-tuning run of a recycling process, whose ImageNet
    weights :func:`restore_kept_backbone` puts back."""
    global _kept_backbone
    key = _backbone_key(spec, classifier.input_size, settings)
    if key is None:
        return
    if classifier.pristine_backbone is not None:
        pristine = classifier.pristine_backbone
        _kept_backbone = _Kept(key, _rewrap(classifier.backbone), _fingerprint(pristine), pristine)
        return
    if _kept_backbone is not None and _kept_backbone.key == key and classifier.reused_backbone:
        return  # The run used the kept one, frozen: its fingerprint still holds.
    weights = classifier.backbone.get_weights()
    _kept_backbone = _Kept(key, _rewrap(classifier.backbone), _fingerprint(weights),
                           weights if _recycling else None)


def restore_kept_backbone() -> None:
    """Put the kept backbone's ImageNet weights back after a run trained it (a recycling process,
    once the run's model is saved and no longer used); a backbone that cannot be restored is dropped."""
    global _kept_backbone
    kept = _kept_backbone
    if kept is None or kept.pristine is None:
        return
    if _fingerprint(kept.backbone.get_weights()) == kept.fingerprint:
        return  # Not trained (feature extraction, or a run that stopped before a step).
    kept.backbone.set_weights(kept.pristine)
    if _fingerprint(kept.backbone.get_weights()) != kept.fingerprint:
        _kept_backbone = None


def is_kept_backbone(backbone: keras.Model, spec: ModelSpec, settings: Settings | None) -> bool:
    """Whether ``backbone`` holds the kept backbone's layers, kept for ``spec``'s model, size, weights
    file and dtype policy, with its ImageNet weights intact (what a classifier built on it may be
    reused for: :mod:`transfer_core.training.step_cache`)."""
    from transfer_core import zoo

    kept = _kept_backbone
    if kept is None or not backbone.weights or backbone.weights[0] is not kept.backbone.weights[0]:
        return False
    key = _backbone_key(spec, zoo.check_input_size(spec.backbone, spec.input_size), settings)
    return key == kept.key and _fingerprint(kept.backbone.get_weights()) == kept.fingerprint


def prebuild_backbone(spec: ModelSpec, settings: Settings) -> None:
    """Build ``spec``'s ImageNet backbone now and keep it (a standby worker's idle time)."""
    from transfer_core import zoo

    global _kept_backbone
    input_size = zoo.check_input_size(spec.backbone, spec.input_size)
    key = _backbone_key(spec, input_size, settings)
    if key is None or (_kept_backbone is not None and _kept_backbone.key == key):
        return  # Already kept (a run that takes it checks its fingerprint then).
    backbone = zoo.build_backbone(spec.backbone, input_size, weights="imagenet", settings=settings)
    backbone.trainable = False
    weights = backbone.get_weights()
    _kept_backbone = _Kept(key, backbone, _fingerprint(weights), weights if _recycling else None)


def forget_kept_backbone() -> None:
    """Drop the kept backbone (benchmarks of a first run; freeing memory)."""
    global _kept_backbone
    _kept_backbone = None


def build_classifier(
    spec: ModelSpec,
    num_classes: int,
    *,
    settings: Settings | None = None,
    train_batchnorm: bool = False,
    reuse_backbone: bool = False,
    seed: int | None = None,
) -> Classifier:
    """Build the full classifier for ``spec``.

    Args:
        spec: Backbone, input size, weights and head settings.
        num_classes: Number of output classes (>= 2).
        settings: Where offline weights live; required for ImageNet weights.
        train_batchnorm: The "BatchNorm pitfall": call the backbone in training
            mode so unfrozen BatchNormalization layers update their statistics.
            The Keras recipe (default False) keeps the backbone in inference mode.
        reuse_backbone: Use the backbone kept by :func:`keep_backbone` or
            :func:`prebuild_backbone` when it matches (same model, size, weights
            file and dtype policy). Only for a backbone that stays frozen (the
            classifier shares it with earlier ones), or in a process that
            recycles backbones (:func:`recycle_backbones`).
        seed: Seed the head's initial weights just before building it, so they
            do not depend on whether the backbone was built or reused.

    Returns:
        A :class:`Classifier` whose ``model`` takes raw 0..255 RGB pixels.

    Raises:
        ValueError: Unknown backbone, rejected input size or fewer than 2 classes.
        transfer_core.zoo.WeightsUnavailableError: ImageNet weights were asked for
            and cannot be found offline or downloaded.
    """
    import keras

    from transfer_core import zoo

    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}")
    input_size = zoo.check_input_size(spec.backbone, spec.input_size)
    kept = _take_kept_backbone(_backbone_key(spec, input_size, settings)) if reuse_backbone else None
    backbone, pristine = kept if kept is not None else (None, None)
    reused = backbone is not None
    if backbone is None:
        backbone = zoo.build_backbone(spec.backbone, input_size, weights=spec.weights, settings=settings)
    if reuse_backbone and _recycling and pristine is None and spec.weights == "imagenet":
        pristine = backbone.get_weights()  # Before any training: what restore_kept_backbone puts back.
    backbone.trainable = False  # The training engine unfreezes per the freeze plan.

    image = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = image
    preprocessing = zoo.preprocessing_layers(spec.backbone)
    for layer in preprocessing:
        x = layer(x)
    # training=False keeps BatchNormalization in inference mode even when the
    # backbone is unfrozen (the Keras fine-tuning recipe). None follows fit().
    x = backbone(x, training=None if train_batchnorm else False)
    features = pooling_layer(spec.head)(x)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    head = build_head(int(features.shape[-1]), num_classes, spec)
    outputs = head(features)
    model = keras.Model(image, outputs, name="classifier")
    feature_extractor = keras.Model(image, features, name="feature_extractor")
    return Classifier(model, backbone, head, feature_extractor, preprocessing, input_size, train_batchnorm,
                      reused_backbone=reused, pristine_backbone=pristine)


def split_classifier(classifier: Classifier, cut_layer: str) -> tuple[keras.Model, keras.Model]:
    """Split a classifier at a backbone layer for the frozen-prefix cache.

    Args:
        classifier: A classifier from :func:`build_classifier`.
        cut_layer: Name of a backbone layer whose output is a valid cut of the graph.

    Returns:
        ``(prefix, trainable_part)``: ``prefix`` maps images to the cut layer's
        output (including preprocessing); ``trainable_part`` maps that output
        through the rest of the backbone, pooling and head to probabilities.
        Both share layers (and weights) with ``classifier.model``.
    """
    import keras

    from transfer_core import freezing

    backbone_prefix, backbone_suffix = freezing.split_at(classifier.backbone, cut_layer)
    image = keras.Input(shape=(classifier.input_size, classifier.input_size, 3), name="image")
    x = image
    for layer in classifier.preprocessing:
        x = layer(x)
    # The prefix is frozen, so it always runs in inference mode.
    prefix = keras.Model(image, backbone_prefix(x, training=False), name="prefix")

    cut_input = keras.Input(shape=tuple(backbone_prefix.output.shape[1:]), name="cut_features")
    y = backbone_suffix(cut_input, training=None if classifier.train_batchnorm else False)
    y = classifier.model.get_layer(POOL_LAYER)(y)
    trainable_part = keras.Model(cut_input, classifier.head(y), name="trainable_part")
    return prefix, trainable_part
