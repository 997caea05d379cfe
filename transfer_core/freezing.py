"""Backbone layers grouped into named blocks, freeze plans, and parameter counts.

A :class:`Block` is a contiguous run of ``base.layers`` that belongs together
(an inverted-residual block of MobileNetV2, a ``convK_blockM`` of ResNet, an
Inception module, ...). Blocks are what the app's freeze controls work on and
what a :class:`~transfer_core.config.FreezePlan` names.

The Keras recipe for fine-tuning is built in: BatchNormalization layers stay
frozen (``trainable=False``, so they run in inference mode and keep their
ImageNet statistics) unless a plan asks for ``train_batchnorm``. After changing
``trainable`` the model must be compiled again before training.

The module also finds *cuts*: layers whose single output carries everything the
rest of the network needs from the input. A frozen prefix ending at a cut can
be computed once and cached (ARCHITECTURE.md, decision 3); :func:`split_at` splits a
backbone there into a prefix and a suffix that share the backbone's layers.

Keras is imported lazily; importing this module does not import TensorFlow.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transfer_core.config import FreezePlan

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras
    import pandas as pd

__all__ = [
    "Block",
    "ParamCounts",
    "apply_freeze_plan",
    "backbone_blocks",
    "cut_layer",
    "first_trainable_layer",
    "freeze_table",
    "parameter_counts",
    "split_at",
]

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


@dataclass(frozen=True)
class ParamCounts:
    """Trainable and frozen parameters, counted as Keras counts them.

    Args:
        trainable: Sum of the sizes of ``model.trainable_weights``.
        frozen: Sum of the sizes of ``model.non_trainable_weights`` (this
            includes BatchNormalization moving statistics, which never train).
    """

    trainable: int
    frozen: int

    @property
    def total(self) -> int:
        """All parameters (``model.count_params()``)."""
        return self.trainable + self.frozen


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


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


def _weight_count(weights: Iterable[Any]) -> int:
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
                params=_weight_count(w for layer in members for w in layer.weights),
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
    graph = _Graph(base)
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


# ---------------------------------------------------------------------------------------------
# Freeze plans
# ---------------------------------------------------------------------------------------------


def _trainable_mask(base: Any, blocks: list[Block], plan: FreezePlan) -> list[bool]:
    """Which layers of ``base.layers`` the plan makes trainable (before the BatchNorm rule)."""
    count = len(base.layers)
    if plan.mode == "all_frozen":
        return [False] * count
    if plan.mode == "all_trainable":
        return [True] * count
    if plan.mode == "top_blocks":
        if not 1 <= plan.top_blocks <= len(blocks):
            raise ValueError(
                f"top_blocks must be between 1 and {len(blocks)} (the number of blocks of this backbone). "
                f"Received: top_blocks={plan.top_blocks}"
            )
        first = blocks[-plan.top_blocks].first_layer
        return [index >= first for index in range(count)]
    if plan.mode == "from_layer":
        if not 0 <= plan.from_layer < count:
            raise ValueError(
                f"from_layer must be a layer index between 0 and {count - 1}. Received: from_layer={plan.from_layer}"
            )
        return [index >= plan.from_layer for index in range(count)]
    if plan.mode == "custom":
        names = [block.name for block in blocks]
        unknown = [name for name in plan.trainable_blocks if name not in names]
        if unknown:
            raise ValueError(
                f"Unknown block names {unknown}; this backbone's blocks are {names}. "
                f"Received: trainable_blocks={list(plan.trainable_blocks)}"
            )
        mask = [False] * count
        for block in blocks:
            if block.name in plan.trainable_blocks:
                for index in range(block.first_layer, block.last_layer + 1):
                    mask[index] = True
        return mask
    raise ValueError(f"Unknown freeze mode. Received: mode={plan.mode!r}")


def _is_batchnorm(layer: Any) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def _freeze_batchnorm(layer: Any) -> None:
    """Set BatchNormalization layers (also nested ones) to ``trainable=False``."""
    if _is_batchnorm(layer):
        layer.trainable = False
        return
    for sublayer in getattr(layer, "layers", ()) or ():
        _freeze_batchnorm(sublayer)


def apply_freeze_plan(base: keras.Model, plan: FreezePlan) -> None:
    """Set ``layer.trainable`` on the backbone's layers as the plan says.

    ``all_frozen`` sets ``base.trainable = False``; ``all_trainable`` makes every
    layer trainable; ``top_blocks`` the last ``plan.top_blocks`` blocks;
    ``from_layer`` the layers with index >= ``plan.from_layer``; ``custom`` the
    blocks named in ``plan.trainable_blocks``. BatchNormalization layers stay
    frozen (inference mode) unless ``plan.train_batchnorm``. Compile the model
    again afterwards.

    Args:
        base: The backbone, changed in place.
        plan: The freeze plan.

    Raises:
        ValueError: ``top_blocks`` exceeds the number of blocks, ``from_layer`` is
            not a layer index, or a custom block name is unknown; the message
            shows the received value and the valid range or names.
    """
    blocks = backbone_blocks(base)
    mask = _trainable_mask(base, blocks, plan)
    if plan.mode == "all_frozen":
        base.trainable = False
        return
    # Setting the model trainable resets every layer (recursively) before the plan applies.
    base.trainable = True
    for layer, trainable in zip(base.layers, mask, strict=True):
        layer.trainable = trainable
        if trainable and not plan.train_batchnorm:
            _freeze_batchnorm(layer)


def parameter_counts(model: keras.Model) -> ParamCounts:
    """Count trainable and frozen parameters exactly as Keras does.

    Args:
        model: Any Keras model or layer.

    Returns:
        Sizes of ``model.trainable_weights`` and ``model.non_trainable_weights``.
    """
    return ParamCounts(
        trainable=_weight_count(model.trainable_weights),
        frozen=_weight_count(model.non_trainable_weights),
    )


def _trainable_by_design(layer: Any) -> list[Any]:
    """Variables a layer trains when it is trainable (BN moving statistics never are).

    Keras 3 keeps these in ``_trainable_variables`` (the ``trainable`` flag of the
    variables themselves follows the layer's flag, so it cannot tell).
    """
    own = getattr(layer, "_trainable_variables", None)
    if own is None:
        return [w for w in layer.weights if w.trainable]
    variables = list(own)
    for sublayer in getattr(layer, "_layers", ()) or ():
        variables.extend(_trainable_by_design(sublayer))
    return variables


def _trainable_params_under(layer: Any, trainable: bool, train_batchnorm: bool) -> int:
    if not trainable:
        return 0
    if _is_batchnorm(layer):
        return _weight_count(_trainable_by_design(layer)) if train_batchnorm else 0
    if not train_batchnorm and getattr(layer, "layers", None):
        return sum(_trainable_params_under(sub, True, False) for sub in layer.layers)
    return _weight_count(_trainable_by_design(layer))


def freeze_table(base: keras.Model, plan: FreezePlan) -> pd.DataFrame:
    """The block map of a backbone under a freeze plan, for the app (``base`` is not changed).

    Args:
        base: The backbone.
        plan: The freeze plan to show.

    Returns:
        One row per block with columns ``block``, ``first_layer``, ``last_layer``,
        ``layers``, ``params``, ``trainable`` (bool: some layer of the block
        trains) and ``trainable_params`` (what the optimizer would update).

    Raises:
        ValueError: The plan does not fit this backbone (see :func:`apply_freeze_plan`).
    """
    import pandas as pd

    blocks = backbone_blocks(base)
    mask = _trainable_mask(base, blocks, plan)
    rows = []
    for block in blocks:
        indices = range(block.first_layer, block.last_layer + 1)
        rows.append(
            {
                "block": block.name,
                "first_layer": block.first_layer,
                "last_layer": block.last_layer,
                "layers": block.num_layers,
                "params": block.params,
                "trainable": any(mask[i] for i in indices),
                "trainable_params": sum(
                    _trainable_params_under(base.layers[i], mask[i], plan.train_batchnorm) for i in indices
                ),
            }
        )
    return pd.DataFrame(rows)


def first_trainable_layer(base: keras.Model) -> int | None:
    """Index of the first layer of ``base.layers`` that has trainable weights.

    Args:
        base: The backbone (after :func:`apply_freeze_plan`).

    Returns:
        The index, or None when nothing in the backbone trains.
    """
    for index, layer in enumerate(base.layers):
        if layer.trainable_weights:
            return index
    return None


# ---------------------------------------------------------------------------------------------
# Cuts: where a frozen prefix can be computed once and cached
# ---------------------------------------------------------------------------------------------


class _Graph:
    """The backbone's functional graph, walked back from its outputs (Keras 3 nodes)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.nodes: dict[int, Any] = {}
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        stack = list(base.outputs)
        seen: set[int] = set()
        while stack:
            tensor = stack.pop()
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            operation, node_index, _ = tensor._keras_history
            node = operation._inbound_nodes[node_index]
            self.producer[id(tensor)] = id(node)
            if id(node) in self.nodes:
                continue
            self.nodes[id(node)] = node
            for parent in node.input_tensors:
                self.consumers.setdefault(id(parent), []).append(id(node))
                stack.append(parent)
        # The node of each layer inside this graph (None when absent or called more than once).
        self.layer_nodes: list[int | None] = []
        for layer in base.layers:
            mine = [id(n) for n in layer._inbound_nodes if id(n) in self.nodes]
            self.layer_nodes.append(mine[0] if len(mine) == 1 else None)

    def output_of(self, index: int) -> Any | None:
        node_id = self.layer_nodes[index]
        if node_id is None:
            return None
        outputs = self.nodes[node_id].outputs
        return outputs[0] if len(outputs) == 1 else None

    def is_cut(self, index: int) -> bool:
        """Whether everything after layer ``index`` depends on the input only through its output."""
        tensor = self.output_of(index)
        if tensor is None:
            return False
        # Nodes that (transitively) consume the cut tensor.
        downstream: set[int] = set()
        frontier = list(self.consumers.get(id(tensor), ()))
        while frontier:
            node_id = frontier.pop()
            if node_id in downstream:
                continue
            downstream.add(node_id)
            for out in self.nodes[node_id].outputs:
                frontier.extend(self.consumers.get(id(out), ()))
        # Every downstream node must take its inputs from the cut or from downstream nodes.
        for node_id in downstream:
            for parent in self.nodes[node_id].input_tensors:
                if id(parent) != id(tensor) and self.producer.get(id(parent)) not in downstream:
                    return False
        for out in self.base.outputs:
            if id(out) != id(tensor) and self.producer.get(id(out)) not in downstream:
                return False
        # Layer order must agree: later layers downstream, earlier ones not.
        for other, node_id in enumerate(self.layer_nodes):
            if other == index or node_id is None:
                continue
            if (other > index) != (node_id in downstream):
                return False
        return True


def cut_layer(base: keras.Model, before_index: int) -> str | None:
    """The latest layer before ``before_index`` whose output is a valid cut of the graph.

    A valid cut is a layer with a single output tensor through which every later
    layer depends on the input (e.g. MobileNetV2's ``block_12_add`` or a ResNet
    block's ``_out``; the inner layers of a residual block are not cuts). With
    ``before_index = first_trainable_layer(base)`` the prefix up to the cut is
    frozen and its output can be cached.

    Args:
        base: The backbone.
        before_index: Only layers with a smaller index are considered
            (``len(base.layers)`` allows the last layer).

    Returns:
        The layer name, or None when no layer after the input qualifies.

    Raises:
        ValueError: ``before_index`` is outside ``0..len(base.layers)``.
    """
    count = len(base.layers)
    if not 0 <= before_index <= count:
        raise ValueError(f"before_index must be between 0 and {count}. Received: before_index={before_index}")
    graph = _Graph(base)
    for index in range(before_index - 1, 0, -1):
        if graph.is_cut(index):
            return base.layers[index].name
    return None


def split_at(base: keras.Model, layer_name: str) -> tuple[keras.Model, keras.Model]:
    """Split a backbone at a cut into a prefix and a suffix that share its layers.

    ``suffix(prefix(x))`` equals ``base(x)``; the suffix holds the very same
    layer and weight objects as ``base``, so training it trains ``base``.

    Args:
        base: The backbone.
        layer_name: A layer whose output is a valid cut (see :func:`cut_layer`).

    Returns:
        ``(prefix, suffix)``: ``base.input -> layer output`` and ``layer output -> base.output``
        (the identity when the layer is the output layer).

    Raises:
        ValueError: Unknown layer name, or the layer's output is not a valid cut
            (the message names the nearest valid cut before it).
    """
    import keras

    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise ValueError(f"No layer named {layer_name!r} in {base.name}. Received: layer_name={layer_name!r}")
    index = names.index(layer_name)
    graph = _Graph(base)
    if index == 0 or not graph.is_cut(index):
        nearest = cut_layer(base, index)
        raise ValueError(
            f"Layer {layer_name!r} (index {index}) is not a valid cut of {base.name}: later layers also "
            f"depend on earlier ones. The nearest valid cut before it is {nearest!r}. "
            f"Received: layer_name={layer_name!r}"
        )
    tensor = graph.output_of(index)
    prefix = keras.Model(base.input, tensor, name=f"{base.name}_prefix")
    if index == len(base.layers) - 1 and len(base.outputs) == 1:
        # Cut at the output: nothing remains after it, so the suffix is the identity.
        identity = keras.Input(shape=tuple(tensor.shape[1:]), dtype=tensor.dtype)
        suffix = keras.Model(identity, identity, name=f"{base.name}_suffix")
    else:
        suffix = keras.Model(tensor, base.output, name=f"{base.name}_suffix")
    return prefix, suffix
