"""Build the transfer-learning classifier: preprocessing + backbone + head.

The full model takes raw RGB pixels (float, 0..255) at the backbone's input
size, so an exported model needs no separate preprocessing step:

    image -> preprocessing layers -> backbone (nested, BatchNorm in inference
    mode) -> global average pooling -> head (dropout, optional hidden Dense,
    softmax classifier)

The backbone and the head are nested models named ``backbone`` and ``head``,
so the training engine can train the head alone on cached pooled features and
the weights it learns are the ones the full model uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from transfer_core.config import ModelSpec, Settings

if TYPE_CHECKING:
    import keras

BACKBONE_LAYER = "backbone"
HEAD_LAYER = "head"
POOL_LAYER = "pool"


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


def build_classifier(
    spec: ModelSpec,
    num_classes: int,
    *,
    settings: Settings | None = None,
    train_batchnorm: bool = False,
) -> Classifier:
    """Build the full classifier for ``spec``.

    Args:
        spec: Backbone, input size, weights and head settings.
        num_classes: Number of output classes (>= 2).
        settings: Where offline weights live (``Settings.from_env()`` when None).
        train_batchnorm: The "BatchNorm pitfall": call the backbone in training
            mode so unfrozen BatchNormalization layers update their statistics.
            The Keras recipe (default False) keeps the backbone in inference mode.

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
    backbone = zoo.build_backbone(spec.backbone, input_size, weights=spec.weights, settings=settings)
    backbone.trainable = False  # The training engine unfreezes per the freeze plan.

    image = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = image
    preprocessing = zoo.preprocessing_layers(spec.backbone)
    for layer in preprocessing:
        x = layer(x)
    # training=False keeps BatchNormalization in inference mode even when the
    # backbone is unfrozen (the Keras fine-tuning recipe). None follows fit().
    x = backbone(x, training=None if train_batchnorm else False)
    features = keras.layers.GlobalAveragePooling2D(name=POOL_LAYER)(x)
    head = build_head(int(features.shape[-1]), num_classes, spec)
    outputs = head(features)
    model = keras.Model(image, outputs, name="classifier")
    feature_extractor = keras.Model(image, features, name="feature_extractor")
    return Classifier(model, backbone, head, feature_extractor, preprocessing, input_size, train_batchnorm)


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
