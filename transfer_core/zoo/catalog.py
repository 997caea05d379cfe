"""The backbone catalog: every backbone's constructor, facts, sizes and weight file names.

No TensorFlow import: the app's Model page and ``python -m transfer_core zoo`` read it fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps TensorFlow out of imports.
    pass

# "tf": x / 127.5 - 1 (range [-1, 1]); "torch": x / 255, then ImageNet mean/std per
# channel; "caffe": RGB -> BGR, then minus the ImageNet mean (BGR, 0..255 scale);
# "none": the model holds its own preprocessing and takes raw 0..255 pixels.
PREPROCESSING_MODES = ("tf", "torch", "caffe", "none")

# The project's upper bound on the input side (ModelSpec accepts 32..1024).
MAX_INPUT_SIZE = 1024

CLASS_INDEX_FILE = "imagenet_class_index.json"
CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"

# ImageNet statistics used by Keras' ``imagenet_utils.preprocess_input``.
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

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
