"""The backbone zoo: which pretrained networks exist, their facts, and their weights.

A backbone is one of the ``keras.applications`` constructors at a fixed width
(``alpha``), described by a frozen :class:`BackboneInfo`. This module answers
"what can I pick and is it usable offline?" without importing TensorFlow, so the
app's Model page and ``python -m transfer_core zoo`` stay fast; Keras is imported
lazily, inside the functions that build models or layers.

Pretrained weights are resolved offline first (DESIGN decision 4):

1. the offline weights folder (``Settings.weights_dir``, ``TRANSFER_WEIGHTS_DIR``),
2. the Keras cache (``$KERAS_HOME/models``, default ``~/.keras/models``),
3. a download by ``keras.utils.get_file`` from Keras' own URL (skipped when the
   environment variable ``TRANSFER_OFFLINE`` is ``1`` or ``true``),
4. otherwise :class:`WeightsUnavailableError`, whose message names the file,
   the folders searched and where to put the file, and offers random
   initialisation (no transfer) as the alternative.

Local files are used as found: no hash is checked (Keras checks none for
MobileNet v1/v2 either), so a truncated file shows up when it is loaded, as a
:class:`WeightsUnavailableError` from :func:`build_backbone`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from transfer_core.config import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps TensorFlow out of imports.
    import keras
    import numpy as np
    import pandas as pd

__all__ = [
    "BACKBONES",
    "MAX_INPUT_SIZE",
    "PREPROCESSING_MODES",
    "BackboneInfo",
    "WeightsUnavailableError",
    "build_backbone",
    "build_imagenet_classifier",
    "check_input_size",
    "decode_imagenet",
    "get_backbone_info",
    "imagenet_class_names",
    "offline_backbones",
    "preprocessing_layers",
    "resolve_weights",
    "weights_available_offline",
    "zoo_table",
]

# "tf": x / 127.5 - 1 (range [-1, 1]); "torch": x / 255, then ImageNet mean/std per
# channel; "caffe": RGB -> BGR, then minus the ImageNet mean (BGR, 0..255 scale);
# "none": the model holds its own preprocessing and takes raw 0..255 pixels.
PREPROCESSING_MODES = ("tf", "torch", "caffe", "none")

# The project's upper bound on the input side (ModelSpec accepts 32..1024).
MAX_INPUT_SIZE = 1024

CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"

# ImageNet statistics used by Keras' ``imagenet_utils.preprocess_input``.
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

_KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found offline nor downloaded."""


@dataclass(frozen=True)
class BackboneInfo:
    """Facts about one pretrained backbone and where its ImageNet weights live.

    Args:
        key: Zoo key, e.g. ``"mobilenet_v2_0.35"``.
        display_name: Human name, e.g. ``"MobileNetV2 (alpha 0.35)"``.
        family: Architecture family, e.g. ``"mobilenet_v2"``; decides block names.
        constructor: Name of the function in ``keras.applications``.
        constructor_kwargs: Extra keyword arguments for it (e.g. ``alpha``).
        preprocessing: One of :data:`PREPROCESSING_MODES`: what raw 0..255 RGB
            pixels must go through before the backbone; ``"none"`` when the
            model holds its own preprocessing layers.
        default_input_size: Side in pixels used when the input size is 0.
        min_input_size: Smallest side Keras accepts (32, 71 for Xception,
            75 for InceptionV3). Any side from this to :data:`MAX_INPUT_SIZE`
            works without a top; weights are the same at every size.
        allowed_input_sizes: Sizes the app offers (a convenient subset).
        pretrained_sizes: Sizes Keras publishes weight files for. Only the
            MobileNet v1/v2 files depend on the size; for every other family
            one file serves all sizes.
        has_top_weights_for: Sizes at which the ImageNet classifier (with top)
            can be built with pretrained weights.
        params: Total parameters with the ImageNet top (from Keras' table,
            checked against ``count_params()`` of ``keras.applications``).
        depth: Depth as listed in the Keras applications table (``None``: not listed).
        imagenet_top1: ImageNet top-1 accuracy in percent (source in
            ``top1_source``).
        size_mb: Size of the with-top weights in MB (Keras' table, or
            parameters x 4 bytes where the table has no row).
        weights_origin: URL folder Keras downloads the weight files from.
        no_top_file: File name of the no-top weights, exactly as Keras names it;
            ``{size}`` stands for the input size where the name depends on it.
        top_file: Same for the with-top weights.
        no_top_hash: The hash Keras checks after download (``None``: Keras checks none).
        top_hash: Same for the with-top weights.
        top1_source: Where ``imagenet_top1`` comes from.
    """

    key: str
    display_name: str
    family: str
    constructor: str
    constructor_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    preprocessing: str = "tf"
    default_input_size: int = 224
    min_input_size: int = 32
    allowed_input_sizes: tuple[int, ...] = (96, 128, 160, 192, 224)
    pretrained_sizes: tuple[int, ...] = (224,)
    has_top_weights_for: tuple[int, ...] = (224,)
    params: int = 0
    depth: int | None = None
    imagenet_top1: float | None = None
    size_mb: float = 0.0
    weights_origin: str = ""
    no_top_file: str = ""
    top_file: str = ""
    no_top_hash: str | None = None
    top_hash: str | None = None
    top1_source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "constructor_kwargs", MappingProxyType(dict(self.constructor_kwargs)))
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(
                f"preprocessing must be one of {PREPROCESSING_MODES}. Received: preprocessing={self.preprocessing!r}"
            )
        if not self.min_input_size <= self.default_input_size <= MAX_INPUT_SIZE:
            raise ValueError(
                "default_input_size must lie between min_input_size and MAX_INPUT_SIZE. "
                f"Received: default_input_size={self.default_input_size}"
            )

    @property
    def params_millions(self) -> float:
        """Total parameters with the top, in millions."""
        return round(self.params / 1e6, 2)

    def weights_file(self, include_top: bool = False, input_size: int = 0) -> str:
        """Keras' file name of the ImageNet weights for this input size.

        Args:
            include_top: With-top (classifier) weights instead of no-top ones.
            input_size: Input side; 0 means the default. Only matters for the
                MobileNet v1/v2 files, whose names carry the size.

        Returns:
            The file name, e.g. ``"mobilenet_2_5_224_tf_no_top.h5"``.
        """
        size = input_size or self.default_input_size
        template = self.top_file if include_top else self.no_top_file
        return template.format(size=size)

    def weights_url(self, include_top: bool = False, input_size: int = 0) -> str:
        """The URL Keras downloads :meth:`weights_file` from."""
        return self.weights_origin + self.weights_file(include_top, input_size)

    def weights_hash(self, include_top: bool = False) -> str | None:
        """The hash Keras verifies after download (``None`` when it checks none)."""
        return self.top_hash if include_top else self.no_top_hash


# ---------------------------------------------------------------------------------------------
# The registry. Numbers come from the Keras applications table
# (https://keras.io/api/applications/, keras-io templates/api/applications/index.md) unless a
# comment says otherwise; parameter counts were checked against keras.applications 3.15
# (count_params() of the with-top model). File names, URLs and hashes are copied from
# keras/src/applications/*.py of Keras 3.15.
# ---------------------------------------------------------------------------------------------

_MOBILENET_SIZES = (128, 160, 192, 224)
_MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)


def _mobilenet_v1(key: str, alpha: float, alpha_text: str, **facts: Any) -> BackboneInfo:
    return BackboneInfo(
        key=key,
        display_name="MobileNet" if alpha == 1.0 else f"MobileNet (alpha {alpha:g})",
        family="mobilenet",
        constructor="MobileNet",
        constructor_kwargs={"alpha": alpha},
        preprocessing="tf",
        allowed_input_sizes=_MOBILENET_V2_SIZES,
        pretrained_sizes=_MOBILENET_SIZES,
        has_top_weights_for=_MOBILENET_SIZES,
        depth=55,
        weights_origin=_KERAS_BASE + "mobilenet/",
        no_top_file=f"mobilenet_{alpha_text}_{{size}}_tf_no_top.h5",
        top_file=f"mobilenet_{alpha_text}_{{size}}_tf.h5",
        **facts,
    )


def _mobilenet_v2(key: str, alpha: float, **facts: Any) -> BackboneInfo:
    return BackboneInfo(
        key=key,
        display_name="MobileNetV2" if alpha == 1.0 else f"MobileNetV2 (alpha {alpha:g})",
        family="mobilenet_v2",
        constructor="MobileNetV2",
        constructor_kwargs={"alpha": alpha},
        preprocessing="tf",
        allowed_input_sizes=_MOBILENET_V2_SIZES,
        pretrained_sizes=_MOBILENET_V2_SIZES,
        has_top_weights_for=_MOBILENET_V2_SIZES,
        depth=105,
        weights_origin=_KERAS_BASE + "mobilenet_v2/",
        no_top_file=f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{{size}}_no_top.h5",
        top_file=f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{{size}}.h5",
        **facts,
    )


def _mobilenet_v3(key: str, kind: str, **facts: Any) -> BackboneInfo:
    model_name = f"{kind}_224_1.0_float"
    return BackboneInfo(
        key=key,
        display_name=f"MobileNetV3{kind.capitalize()}",
        family="mobilenet_v3",
        constructor=f"MobileNetV3{kind.capitalize()}",
        # Keras puts a Rescaling layer inside (include_preprocessing=True): raw pixels in.
        constructor_kwargs={"include_preprocessing": True},
        preprocessing="none",
        allowed_input_sizes=_MOBILENET_V2_SIZES,
        depth=None,  # Not in the Keras applications table.
        weights_origin=_KERAS_BASE + "mobilenet_v3/",
        no_top_file=f"weights_mobilenet_v3_{model_name}_no_top_v2.h5",
        top_file=f"weights_mobilenet_v3_{model_name}.h5",
        # The MobileNetV3 docstring table in keras/src/applications/mobilenet_v3.py.
        top1_source="Keras MobileNetV3 docstring table (mobilenet_v3_*_1.0_224)",
        **facts,
    )


def _plain(
    key: str,
    display_name: str,
    family: str,
    constructor: str,
    folder: str,
    no_top_file: str,
    top_file: str,
    **facts: Any,
) -> BackboneInfo:
    facts.setdefault("top1_source", "Keras applications table")
    return BackboneInfo(
        key=key,
        display_name=display_name,
        family=family,
        constructor=constructor,
        weights_origin=folder,
        no_top_file=no_top_file,
        top_file=top_file,
        **facts,
    )


_BACKBONE_LIST: tuple[BackboneInfo, ...] = (
    _mobilenet_v1(
        "mobilenet_0.25",
        0.25,
        "2_5",
        params=475_544,
        # Not in the Keras table: parameters x 4 bytes.
        size_mb=1.9,
        # MobileNet paper (Howard et al. 2017) Table 6, also in the Keras MobileNet v1 docstring:
        # 0.25 MobileNet-224 = 50.6 %.
        imagenet_top1=50.6,
        top1_source="MobileNet paper, Table 6 (0.25 MobileNet-224)",
    ),
    _mobilenet_v1(
        "mobilenet",
        1.0,
        "1_0",
        params=4_253_864,
        size_mb=16.0,
        imagenet_top1=70.4,
        top1_source="Keras applications table",
    ),
    _mobilenet_v2(
        "mobilenet_v2_0.35",
        0.35,
        params=1_691_208,
        size_mb=6.8,  # Not in the Keras table: parameters x 4 bytes.
        # TF-slim MobileNetV2 checkpoint table (also in the Keras MobileNetV2 docstring):
        # mobilenet_v2_0.35_224 = 60.3 %.
        imagenet_top1=60.3,
        top1_source="TF-slim MobileNetV2 checkpoint table (mobilenet_v2_0.35_224)",
    ),
    _mobilenet_v2(
        "mobilenet_v2",
        1.0,
        params=3_538_984,
        size_mb=14.0,
        imagenet_top1=71.3,
        top1_source="Keras applications table",
    ),
    _mobilenet_v3(
        "mobilenet_v3_small",
        "small",
        params=2_554_968,
        size_mb=10.2,  # Not in the Keras table: parameters x 4 bytes.
        imagenet_top1=68.1,
        no_top_hash="d3e8ec802a04aa4fc771ee12a9a9b836",
        top_hash="8768d4c2e7dee89b9d02b2d03d65d862",
    ),
    _mobilenet_v3(
        "mobilenet_v3_large",
        "large",
        params=5_507_432,
        size_mb=22.0,  # Not in the Keras table: parameters x 4 bytes.
        imagenet_top1=75.6,
        no_top_hash="07fb09a5933dd0c8eaafa16978110389",
        top_hash="59e551e166be033d707958cf9e29a6a7",
    ),
    _plain(
        "efficientnet_b0",
        "EfficientNetB0",
        "efficientnet",
        "EfficientNetB0",
        "https://storage.googleapis.com/keras-applications/",
        "efficientnetb0_notop.h5",
        "efficientnetb0.h5",
        # EfficientNet always builds its preprocessing (Rescaling + Normalization) inside.
        preprocessing="none",
        params=5_330_571,
        depth=132,
        imagenet_top1=77.1,
        size_mb=29.0,
        no_top_hash="50bc09e76180e00e4465e1a485ddc09d",
        top_hash="902e53a9f72be733fc0bcb005b3ebbac",
    ),
    _plain(
        "efficientnet_v2_b0",
        "EfficientNetV2B0",
        "efficientnet_v2",
        "EfficientNetV2B0",
        _KERAS_BASE + "efficientnet_v2/",
        "efficientnetv2-b0_notop.h5",
        "efficientnetv2-b0.h5",
        constructor_kwargs={"include_preprocessing": True},
        preprocessing="none",
        params=7_200_312,
        depth=None,  # "-" in the Keras table.
        imagenet_top1=78.7,
        size_mb=29.0,
        no_top_hash="893217f2bb855e2983157299931e43ff",
        top_hash="21ecbf6da12460d5c40bb2f29ceb2188",
    ),
    _plain(
        "resnet50",
        "ResNet50",
        "resnet",
        "ResNet50",
        _KERAS_BASE + "resnet/",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        preprocessing="caffe",
        params=25_636_712,
        depth=107,
        imagenet_top1=74.9,
        size_mb=98.0,
        no_top_hash="4d473c1dd8becc155b73f8504c6f6626",
        top_hash="2cb95161c43110f7111970584f804107",
    ),
    _plain(
        "resnet50_v2",
        "ResNet50V2",
        "resnet_v2",
        "ResNet50V2",
        _KERAS_BASE + "resnet/",
        "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
        preprocessing="tf",
        params=25_613_800,
        depth=103,
        imagenet_top1=76.0,
        size_mb=98.0,
        no_top_hash="fac2f116257151a9d068a22e544a4917",
        top_hash="3ef43a0b657b3be2300d5770ece849e0",
    ),
    _plain(
        "vgg16",
        "VGG16",
        "vgg",
        "VGG16",
        _KERAS_BASE + "vgg16/",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        preprocessing="caffe",
        params=138_357_544,
        depth=16,
        imagenet_top1=71.3,
        size_mb=528.0,
        no_top_hash="6d6bbae143d832006294945121d1f1fc",
        top_hash="64373286793e3c8b2b4e3219cbf3544b",
    ),
    _plain(
        "inception_v3",
        "InceptionV3",
        "inception_v3",
        "InceptionV3",
        _KERAS_BASE + "inception_v3/",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        preprocessing="tf",
        default_input_size=299,
        min_input_size=75,
        allowed_input_sizes=(75, 139, 224, 299),
        pretrained_sizes=(299,),
        has_top_weights_for=(299,),
        params=23_851_784,
        depth=189,
        imagenet_top1=77.9,
        size_mb=92.0,
        no_top_hash="bcbd6486424b2319ff4ef7d526e38f63",
        top_hash="9a0d58056eeedaa3f26cb7ebd46da564",
    ),
    _plain(
        "xception",
        "Xception",
        "xception",
        "Xception",
        _KERAS_BASE + "xception/",
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "xception_weights_tf_dim_ordering_tf_kernels.h5",
        preprocessing="tf",
        default_input_size=299,
        min_input_size=71,  # keras/src/applications/xception.py: min_size=71.
        allowed_input_sizes=(71, 128, 224, 299),
        pretrained_sizes=(299,),
        has_top_weights_for=(299,),
        params=22_910_480,
        depth=81,
        imagenet_top1=79.0,
        size_mb=88.0,
        no_top_hash="b0042744bf5b25fce3cb969f33bebb97",
        top_hash="0a58e3b7378bc2990ea3b43d5981f1f6",
    ),
    _plain(
        "densenet121",
        "DenseNet121",
        "densenet",
        "DenseNet121",
        _KERAS_BASE + "densenet/",
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        preprocessing="torch",
        params=8_062_504,
        depth=242,
        imagenet_top1=75.0,
        size_mb=33.0,
        no_top_hash="30ee3e1110167f948a6b9946edeeb738",
        top_hash="9d60b8095a5708f2dcce2bca79d332c7",
    ),
    _plain(
        "convnext_tiny",
        "ConvNeXtTiny",
        "convnext",
        "ConvNeXtTiny",
        _KERAS_BASE + "convnext/",
        "convnext_tiny_notop.h5",
        "convnext_tiny.h5",
        constructor_kwargs={"include_preprocessing": True},
        preprocessing="none",
        params=28_589_128,
        depth=None,
        # ConvNeXt paper (Liu et al. 2022), Table 1: ConvNeXt-T, ImageNet-1K, 224 px = 82.1 %.
        imagenet_top1=82.1,
        top1_source="ConvNeXt paper, Table 1 (ConvNeXt-T, ImageNet-1K)",
        size_mb=114.4,  # Parameters x 4 bytes.
        no_top_hash="d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
        top_hash="8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
    ),
)

BACKBONES: dict[str, BackboneInfo] = {info.key: info for info in _BACKBONE_LIST}


# ---------------------------------------------------------------------------------------------
# Look-ups and validation
# ---------------------------------------------------------------------------------------------


def get_backbone_info(key: str) -> BackboneInfo:
    """Return the zoo entry for ``key``.

    Args:
        key: A key of :data:`BACKBONES`, e.g. ``"mobilenet_v2_0.35"``.

    Returns:
        The backbone's :class:`BackboneInfo`.

    Raises:
        ValueError: ``key`` is not in the zoo; the message lists the valid keys.
    """
    try:
        return BACKBONES[key]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown backbone. Valid keys: {sorted(BACKBONES)}. Received: key={key!r}"
        ) from None


def check_input_size(key: str, input_size: int) -> int:
    """Validate an input side for a backbone before any work is done.

    Args:
        key: Zoo key.
        input_size: Square input side in pixels; 0 means the backbone's default.

    Returns:
        The input side to use.

    Raises:
        ValueError: Unknown key, or a side the backbone rejects; the message gives
            the allowed range.
    """
    info = get_backbone_info(key)
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ValueError(f"input_size must be an integer. Received: input_size={input_size!r}")
    if input_size == 0:
        return info.default_input_size
    if not info.min_input_size <= input_size <= MAX_INPUT_SIZE:
        raise ValueError(
            f"{info.display_name} accepts input sizes from {info.min_input_size} to {MAX_INPUT_SIZE} "
            f"pixels (0 = default {info.default_input_size}). Received: input_size={input_size}"
        )
    return input_size


# ---------------------------------------------------------------------------------------------
# Weight resolution
# ---------------------------------------------------------------------------------------------


def offline_only() -> bool:
    """True when TRANSFER_OFFLINE forbids downloading weights."""
    return os.environ.get("TRANSFER_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def _keras_cache_dirs() -> list[Path]:
    """Where Keras keeps downloaded files, computed the way Keras does, without importing it."""
    keras_home = os.environ.get("KERAS_HOME", "").strip()
    base = Path(keras_home).expanduser() if keras_home else Path.home() / ".keras"
    dirs = [base / "models"]
    # Like keras.utils.get_file: when that folder is not writable Keras uses /tmp/.keras.
    if not os.access(base, os.W_OK):
        dirs.append(Path("/tmp") / ".keras" / "models")
    return dirs


def _search_dirs(settings: Settings) -> list[Path]:
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


def _find_local(names: list[str], dirs: list[Path]) -> Path | None:
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
    settings: Settings | None = None,
) -> str:
    """Find (or, when allowed, download) the ImageNet weights file of a backbone.

    Looks in the offline weights folder, then in the Keras cache, then downloads
    with ``keras.utils.get_file`` from Keras' own URL unless ``TRANSFER_OFFLINE``
    is ``1``/``true``. For no-top weights at a size with no file of its own, the
    default-size file is used (convolution weights do not depend on the size).

    Args:
        key: Zoo key.
        input_size: Input side; 0 means the default.
        include_top: Resolve the with-top (ImageNet classifier) weights.
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

    Returns:
        The path of a local weights file.

    Raises:
        ValueError: Unknown key or an input size the backbone rejects.
        WeightsUnavailableError: No local file, and downloading is off or failed;
            the message names the file, the folders searched and what to do.
    """
    info = get_backbone_info(key)
    size = check_input_size(key, input_size)
    settings = settings if settings is not None else Settings.from_env()
    dirs = _search_dirs(settings)
    names = _candidate_files(info, size, include_top)
    if not names:
        raise WeightsUnavailableError(
            f"Keras publishes no ImageNet classifier (with-top) weights for {info.display_name} at "
            f"{size}x{size}; sizes with top weights: {list(info.has_top_weights_for)}. "
            f"Received: input_size={input_size}"
        )
    found = _find_local(names, dirs)
    if found is not None:
        return str(found)
    if offline_only():
        raise WeightsUnavailableError(
            _unavailable_message(
                info, names, dirs, "no local copy, and downloads are off (TRANSFER_OFFLINE=1)."
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
    settings: Settings | None = None,
) -> bool:
    """Whether the ImageNet weights are on this machine (no download needed).

    Args:
        key: Zoo key.
        input_size: Input side; 0 means the default.
        include_top: Ask about the with-top (classifier) weights.
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

    Returns:
        True when a usable weights file is in the offline folder or the Keras cache.

    Raises:
        ValueError: Unknown key or an input size the backbone rejects.
    """
    info = get_backbone_info(key)
    size = check_input_size(key, input_size)
    settings = settings if settings is not None else Settings.from_env()
    names = _candidate_files(info, size, include_top)
    return bool(names) and _find_local(names, _search_dirs(settings)) is not None


def offline_backbones(settings: Settings | None = None) -> list[str]:
    """Zoo keys whose no-top ImageNet weights (default size) are available offline.

    Args:
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

    Returns:
        Keys in zoo order.
    """
    settings = settings if settings is not None else Settings.from_env()
    return [key for key in BACKBONES if weights_available_offline(key, settings=settings)]


def zoo_table(settings: Settings | None = None) -> pd.DataFrame:
    """The zoo as a table for the app and the command line (no TensorFlow import).

    Args:
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

    Returns:
        One row per backbone with columns ``key``, ``name``, ``params_millions``,
        ``depth``, ``default_input_size``, ``imagenet_top1`` (percent),
        ``size_mb``, ``family``, ``weights_offline`` and ``top_weights_offline``.
    """
    import pandas as pd

    settings = settings if settings is not None else Settings.from_env()
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
    norm.adapt_variance.assign(variance * np.asarray(_TORCH_STD, dtype="float32"))
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
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

    Returns:
        A functional ``keras.Model`` named ``"backbone"`` taking ``(S, S, 3)``
        inputs prepared as :func:`preprocessing_layers` does (raw 0..255 pixels
        for preprocessing mode ``"none"``) and returning the last feature map
        (no pooling).

    Raises:
        ValueError: Unknown key, bad input size or bad ``weights`` value.
        WeightsUnavailableError: ImageNet weights were asked for and cannot be
            found, downloaded or loaded.
    """
    info = get_backbone_info(key)
    size = check_input_size(key, input_size)
    if weights not in ("imagenet", "random"):
        raise ValueError(f'weights must be "imagenet" or "random". Received: weights={weights!r}')
    path = resolve_weights(key, size, settings=settings) if weights == "imagenet" else None
    model = _build_application(info, size, path, include_top=False)
    import keras

    # Re-wrap to name it; the layers (and weights) are shared, not copied.
    return keras.Model(model.input, model.output, name="backbone")


def build_imagenet_classifier(key: str, *, settings: Settings | None = None) -> keras.Model:
    """Build the pretrained ImageNet classifier (with top) at the default size.

    Used to show what the base "sees" before transfer. Inputs must be prepared
    with :func:`preprocessing_layers`; outputs are 1000 softmax probabilities.

    Args:
        key: Zoo key.
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

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
                mean=list(_TORCH_MEAN),
                variance=[s * s for s in _TORCH_STD],
                name="preprocess_torch_normalize",
            ),
        ]
    # "caffe": out[..., c] = in[..., 2 - c] - mean_bgr[c], as one frozen 1x1 convolution.
    flip = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name="preprocess_caffe_bgr")
    flip.build((None, None, None, 3))
    kernel = np.zeros((1, 1, 3, 3), dtype="float32")
    for out_channel in range(3):
        kernel[0, 0, 2 - out_channel, out_channel] = 1.0
    bias = -np.asarray(_CAFFE_MEAN_BGR, dtype="float32")
    flip.set_weights([kernel, bias])
    return [flip]


# ---------------------------------------------------------------------------------------------
# ImageNet class names
# ---------------------------------------------------------------------------------------------


def imagenet_class_names(settings: Settings | None = None) -> list[str]:
    """The 1000 ImageNet class names in output order, read from a local file.

    Reads ``imagenet_class_index.json`` from the offline weights folder or the
    Keras cache; it is never downloaded here.

    Args:
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

    Returns:
        Class names, e.g. ``"African_elephant"``, indexed like the classifier's output.

    Raises:
        WeightsUnavailableError: The file is in none of the folders searched.
    """
    settings = settings if settings is not None else Settings.from_env()
    dirs = _search_dirs(settings)
    path = _find_local([CLASS_INDEX_FILE], dirs)
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
    settings: Settings | None = None,
) -> list[list[tuple[str, float]]]:
    """Turn ImageNet classifier outputs into the ``top`` (class name, probability) pairs.

    Args:
        probs: Probabilities of shape ``(batch, 1000)`` (or ``(1000,)`` for one image).
        top: How many classes to keep per image, best first.
        settings: Where the offline folder is; ``Settings.from_env()`` when None.

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
