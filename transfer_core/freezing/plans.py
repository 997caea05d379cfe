"""Freeze plans applied to a backbone (the BatchNorm recipe built in), and parameter counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from transfer_core.config import FreezePlan
from transfer_core.freezing.blocks import Block, backbone_blocks, weight_count

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras
    import pandas as pd


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
        trainable=weight_count(model.trainable_weights),
        frozen=weight_count(model.non_trainable_weights),
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
        return weight_count(_trainable_by_design(layer)) if train_batchnorm else 0
    if not train_batchnorm and getattr(layer, "layers", None):
        return sum(_trainable_params_under(sub, True, False) for sub in layer.layers)
    return weight_count(_trainable_by_design(layer))


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
