"""Building backbones, ImageNet classifiers and preprocessing layers (Keras imported lazily)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from transfer_core.config import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps TensorFlow out of imports.
    import keras
    import numpy as np

from transfer_core.zoo.catalog import (
    CAFFE_MEAN_BGR,
    CLASS_INDEX_FILE,
    CLASS_INDEX_URL,
    TORCH_MEAN,
    TORCH_STD,
    BackboneInfo,
    WeightsUnavailableError,
    check_input_size,
    get_backbone_info,
)
from transfer_core.zoo.weights import find_local_file, resolve_weights, weight_search_dirs

# ---------------------------------------------------------------------------------------------
# Building models and layers (Keras imported lazily)
# ---------------------------------------------------------------------------------------------


def _constructor(info: BackboneInfo):
    import keras

    return getattr(keras.applications, info.constructor)


def _fix_efficientnet_normalization(model: keras.Model) -> None:
    """Make a path-loaded EfficientNet (v1) compute what Keras' ``weights="imagenet"`` one does.

    With ``weights="imagenet"`` Keras inserts an extra ``Rescaling(1 / sqrt(stddev))``
    after the Normalization layer (keras issue tensorflow/tensorflow#49930); with a
    file path it does not. Scaling the Normalization variance by the same stddev
    gives the identical result, ``(x - mean) / sqrt(variance * stddev)``, with stock
    layers only.
    """
    import keras
    import numpy as np

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)]
    if not norms:
        return
    norm = norms[0]
    variance = np.asarray(norm.adapt_variance, dtype="float32")
    norm.adapt_variance.assign(variance * np.asarray(TORCH_STD, dtype="float32"))
    norm.finalize_state()


def _build_application(info: BackboneInfo, size: int, weights_path: str | None, include_top: bool):
    kwargs = dict(info.constructor_kwargs)
    build = _constructor(info)
    try:
        model = build(
            include_top=include_top,
            weights=weights_path,
            input_shape=(size, size, 3),
            pooling=None,
            **kwargs,
        )
    except Exception as exc:
        if weights_path is None:
            raise
        raise WeightsUnavailableError(
            f"The weights file {weights_path} was found but could not be loaded into "
            f"{info.display_name} ({type(exc).__name__}: {exc}). It may be truncated or for another "
            'model: replace it, or choose "random initialisation (no transfer)".'
        ) from exc
    if weights_path is not None and info.family == "efficientnet":
        _fix_efficientnet_normalization(model)
    return model


def build_backbone(
    key: str,
    input_size: int = 0,
    *,
    weights: str = "imagenet",
    settings: Settings | None = None,
) -> keras.Model:
    """Build a backbone without its top, with pretrained or random weights.

    Args:
        key: Zoo key.
        input_size: Square input side; 0 means the default.
        weights: ``"imagenet"`` (resolved offline first, see :func:`resolve_weights`)
            or ``"random"`` (no transfer).
        settings: Where the offline folder is; required for ``"imagenet"`` (random weights
            need no settings).

    Returns:
        A functional ``keras.Model`` named ``"backbone"`` taking ``(S, S, 3)``
        inputs prepared as :func:`preprocessing_layers` does (raw 0..255 pixels
        for preprocessing mode ``"none"``) and returning the last feature map
        (no pooling).

    Raises:
        ValueError: Unknown key, bad input size, bad ``weights`` value, or ImageNet
            weights without ``settings``.
        WeightsUnavailableError: ImageNet weights were asked for and cannot be
            found, downloaded or loaded.
    """
    info = get_backbone_info(key)
    size = check_input_size(key, input_size)
    if weights not in ("imagenet", "random"):
        raise ValueError(f'weights must be "imagenet" or "random". Received: weights={weights!r}')
    if weights == "imagenet" and settings is None:
        raise ValueError(f"ImageNet weights need settings (where the weights are). Received: settings={settings!r}")
    path = resolve_weights(key, size, settings=settings) if weights == "imagenet" else None
    model = _build_application(info, size, path, include_top=False)
    import keras

    # Re-wrap to name it; the layers (and weights) are shared, not copied.
    return keras.Model(model.input, model.output, name="backbone")


def build_imagenet_classifier(key: str, *, settings: Settings) -> keras.Model:
    """Build the pretrained ImageNet classifier (with top) at the default size.

    Used to show what the base "sees" before transfer. Inputs must be prepared
    with :func:`preprocessing_layers`; outputs are 1000 softmax probabilities.

    Args:
        key: Zoo key.
        settings: Where the offline folder is.

    Returns:
        A ``keras.Model`` named ``"imagenet_classifier"``.

    Raises:
        ValueError: Unknown key.
        WeightsUnavailableError: The with-top weights cannot be found,
            downloaded or loaded.
    """
    info = get_backbone_info(key)
    size = info.default_input_size
    path = resolve_weights(key, size, include_top=True, settings=settings)
    model = _build_application(info, size, path, include_top=True)
    import keras

    return keras.Model(model.input, model.output, name="imagenet_classifier")


def preprocessing_layers(key: str) -> list[keras.layers.Layer]:
    """Stock Keras layers that turn raw RGB pixels (floats in 0..255) into backbone input.

    They match ``keras.applications.<module>.preprocess_input`` of the backbone and
    use no Lambda layer or custom class, so a saved ``.keras`` model that holds
    them loads anywhere in safe mode. The ``"caffe"`` mode uses a frozen 1x1
    ``Conv2D`` (channel flip RGB -> BGR and mean subtraction); keep it frozen
    (``trainable=False``) when making a whole model trainable.

    Args:
        key: Zoo key.

    Returns:
        Layers to apply in order; empty when the backbone preprocesses itself
        (mode ``"none"``).

    Raises:
        ValueError: Unknown key.
    """
    import keras
    import numpy as np

    info = get_backbone_info(key)
    mode = info.preprocessing
    if mode == "none":
        return []
    if mode == "tf":
        return [keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="preprocess_tf")]
    if mode == "torch":
        return [
            keras.layers.Rescaling(scale=1.0 / 255.0, name="preprocess_torch_scale"),
            keras.layers.Normalization(
                mean=list(TORCH_MEAN),
                variance=[s * s for s in TORCH_STD],
                name="preprocess_torch_normalize",
            ),
        ]
    # "caffe": out[..., c] = in[..., 2 - c] - mean_bgr[c], as one frozen 1x1 convolution.
    flip = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name="preprocess_caffe_bgr")
    flip.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), dtype="float32")
    for out_channel in range(3):
        kernel[0, 0, 2 - out_channel, out_channel] = 1.0
    bias = -np.asarray(CAFFE_MEAN_BGR, dtype="float32")
    flip.set_weights([kernel, bias])
    return [flip]


# ---------------------------------------------------------------------------------------------
# ImageNet class names
# ---------------------------------------------------------------------------------------------


def imagenet_class_names(settings: Settings) -> list[str]:
    """The 1000 ImageNet class names in output order, read from a local file.

    Reads ``imagenet_class_index.json`` from the offline weights folder or the
    Keras cache; it is never downloaded here.

    Args:
        settings: Where the offline folder is.

    Returns:
        Class names, e.g. ``"African_elephant"``, indexed like the classifier's output.

    Raises:
        WeightsUnavailableError: The file is in none of the folders searched.
    """
    dirs = weight_search_dirs(settings)
    path = find_local_file([CLASS_INDEX_FILE], dirs)
    if path is None:
        raise WeightsUnavailableError(
            f"{CLASS_INDEX_FILE} was not found; searched: {', '.join(str(d) for d in dirs)}. "
            f"Download it from {CLASS_INDEX_URL} into the offline weights folder "
            "(environment variable TRANSFER_WEIGHTS_DIR)."
        )
    with open(path, encoding="utf-8") as handle:
        index = json.load(handle)
    return [index[str(i)][1] for i in range(len(index))]


def decode_imagenet(
    probs: np.ndarray,
    top: int = 5,
    *,
    settings: Settings,
) -> list[list[tuple[str, float]]]:
    """Turn ImageNet classifier outputs into the ``top`` (class name, probability) pairs.

    Args:
        probs: Probabilities of shape ``(batch, 1000)`` (or ``(1000,)`` for one image).
        top: How many classes to keep per image, best first.
        settings: Where the offline folder is.

    Returns:
        One list per image of ``(class name, probability)``.

    Raises:
        ValueError: ``probs`` does not have 1000 classes, or ``top`` < 1.
        WeightsUnavailableError: The class index file is missing.
    """
    import numpy as np

    array = np.asarray(probs, dtype="float64")
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != 1000:
        raise ValueError(f"probs must have shape (batch, 1000). Received: probs.shape={np.shape(probs)}")
    if top < 1:
        raise ValueError(f"top must be >= 1. Received: top={top}")
    names = imagenet_class_names(settings)
    results = []
    for row in array:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(names[i], float(row[i])) for i in best])
    return results
