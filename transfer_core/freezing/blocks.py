"""Backbone layers grouped into named blocks, from the layer names Keras gives each family."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transfer_core.freezing.cuts import LayerGraph

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras

# Layers per block when a model's layer names follow no known pattern.
FALLBACK_BLOCK_SIZE = 10


@dataclass(frozen=True)
class Block:
    """A contiguous, named group of backbone layers.

    Args:
        name: Block name, e.g. ``"block_13"``, ``"conv4_block3"``, ``"stem"``, ``"top"``.
        first_layer: Index of its first layer in ``base.layers``.
        last_layer: Index of its last layer (inclusive).
        layer_names: Names of its layers, in order.
        params: Parameters of its layers (trainable and not).
    """

    name: str
    first_layer: int
    last_layer: int
    layer_names: tuple[str, ...]
    params: int

    @property
    def num_layers(self) -> int:
        """How many layers the block holds."""
        return self.last_layer - self.first_layer + 1


def _group1(match: re.Match) -> str:
    return match.group(1)


# A layer whose name matches one of these starts (or continues) the named block;
# the first pattern that matches wins. Layers that match none join the block before.
_BLOCK_PATTERNS: tuple[tuple[re.Pattern, Callable[[re.Match], str]], ...] = (
    # ConvNeXt: "<model>_stage_S_block_B_*"; the downsampling layer opens the next stage.
    (re.compile(r"_stage_(\d+)_block_(\d+)_"), lambda m: f"stage_{m.group(1)}_block_{m.group(2)}"),
    (re.compile(r"_downsampling_block_(\d+)$"), lambda m: f"stage_{int(m.group(1)) + 1}_block_0"),
    # MobileNet v1: conv_pad_N / conv_dw_N / conv_pw_N form block N.
    (re.compile(r"^conv_(?:pad|dw|pw)_(\d+)(?:_|$)"), lambda m: f"block_{m.group(1)}"),
    # MobileNetV2 block 0 and MobileNetV3 blocks: expanded_conv, expanded_conv_N.
    (re.compile(r"^(expanded_conv(?:_\d+)?)_"), _group1),
    # MobileNetV2: block_N_*.
    (re.compile(r"^(block_\d+)_"), _group1),
    # EfficientNet and EfficientNetV2: blockNx_*.
    (re.compile(r"^(block\d+[a-z])_"), _group1),
    # ResNet, ResNetV2, DenseNet: convK_blockM_*; DenseNet transitions poolK_* (pool1 is stem).
    (re.compile(r"^(conv\d+_block\d+)_"), _group1),
    (re.compile(r"^(pool[2-9])_"), _group1),
    # VGG and Xception: blockN_*.
    (re.compile(r"^(block\d+)_"), _group1),
)


# A layer named like this opens the "top" block (the last convolution / normalisation).
_TOP_PATTERN = re.compile(r"^(?:Conv_1|conv_1|top_conv|post_bn|bn|layer_normalization(?:_\d+)?)$")


# InceptionV3 names only the concatenation that *ends* each module: mixed0 .. mixed10.
_END_PATTERN = re.compile(r"^(mixed\d+)$")


def _block_name(layer_name: str) -> str | None:
    for pattern, namer in _BLOCK_PATTERNS:
        match = pattern.search(layer_name)
        if match:
            return namer(match)
    if _TOP_PATTERN.match(layer_name):
        return "top"
    return None


def weight_count(weights: Iterable[Any]) -> int:
    """Sum of sizes, each variable counted once."""
    seen: set[int] = set()
    total = 0
    for weight in weights:
        if id(weight) in seen:
            continue
        seen.add(id(weight))
        total += math.prod(int(d) for d in weight.shape)
    return total


def _make_blocks(layers: list[Any], labels: list[str]) -> list[Block]:
    """Group consecutive equal labels into blocks; keep names unique."""
    blocks: list[Block] = []
    used: dict[str, int] = {}
    start = 0
    for index in range(1, len(labels) + 1):
        if index < len(labels) and labels[index] == labels[start]:
            continue
        name = labels[start]
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name}_{used[name]}"
        members = layers[start:index]
        blocks.append(
            Block(
                name=name,
                first_layer=start,
                last_layer=index - 1,
                layer_names=tuple(layer.name for layer in members),
                params=weight_count(w for layer in members for w in layer.weights),
            )
        )
        start = index
    return blocks


def _labels_by_start_markers(layers: list[Any]) -> list[str]:
    labels: list[str] = []
    current = "stem"
    for layer in layers:
        name = _block_name(layer.name)
        if name is not None:
            current = name
        labels.append(current)
    return labels


def _labels_by_end_markers(base: Any, ends: list[int]) -> list[str]:
    """Inception: a module is everything after the previous module up to its mixedN layer."""
    layers = base.layers
    graph = LayerGraph(base)
    # The stem ends at the latest cut before the first module (the last pooling layer).
    stem_end = next((i for i in range(ends[0] - 1, 0, -1) if graph.is_cut(i)), 0)
    labels = ["stem"] * (stem_end + 1)
    previous = stem_end
    for end in ends:
        labels.extend([layers[end].name] * (end - previous))
        previous = end
    # Anything after the last module joins it.
    labels.extend([layers[ends[-1]].name] * (len(layers) - 1 - previous))
    return labels


def _fallback_labels(count: int) -> list[str]:
    labels = []
    for index in range(count):
        start = (index // FALLBACK_BLOCK_SIZE) * FALLBACK_BLOCK_SIZE
        end = min(start + FALLBACK_BLOCK_SIZE, count) - 1
        labels.append(f"layers_{start}_{end}")
    return labels


def backbone_blocks(base: keras.Model) -> list[Block]:
    """Group a backbone's layers into named, contiguous blocks, in order.

    Blocks follow each family's layer names: MobileNet v1 ``conv_dw_N``/``conv_pw_N``
    pairs (``block_N``), MobileNetV2 ``expanded_conv`` and ``block_N``, MobileNetV3
    ``expanded_conv_N``, EfficientNet(V2) ``blockNx``, ResNet(V2) and DenseNet
    ``convK_blockM`` (DenseNet transitions ``poolK``), VGG and Xception ``blockN``,
    InceptionV3 modules ``mixedN``, ConvNeXt ``stage_S_block_B``. Layers before
    the first block form ``"stem"``; the final convolution/normalisation layers
    form ``"top"``; other unmatched layers join the block before them. A model
    whose names follow no known pattern is cut into chunks of
    :data:`FALLBACK_BLOCK_SIZE` layers.

    Args:
        base: A functional Keras model (typically from :func:`transfer_core.zoo.build_backbone`).

    Returns:
        Blocks covering every layer exactly once, in layer order.
    """
    layers = list(base.layers)
    if not layers:
        return []
    ends = [i for i, layer in enumerate(layers) if _END_PATTERN.match(layer.name)]
    starts = [i for i, layer in enumerate(layers) if _block_name(layer.name) not in (None, "top")]
    # InceptionV3 names only the layer that ends each module; the other families name block starts.
    by_end = bool(ends) and not starts
    labels = _labels_by_end_markers(base, ends) if by_end else _labels_by_start_markers(layers)
    if len(set(labels) - {"stem", "top"}) < 2:
        labels = _fallback_labels(len(layers))
    return _make_blocks(layers, labels)
