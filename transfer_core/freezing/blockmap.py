"""The block map of a backbone and parameter counts of a freeze plan, as plain data.

The Model page shows which blocks a freeze plan trains and how many parameters
the whole classifier (backbone + head) then trains, updating as a slider moves.
Building a backbone for every slider position would be slow, and a model must
not be shared between browser sessions, so :func:`block_map` builds the
backbone once (random weights: same structure, no download) and keeps only
numbers; :func:`classifier_counts` then answers for any block-aligned plan
without TensorFlow. The inference worker computes each map once per (backbone,
input size) and keeps it as JSON under ``<TRANSFER_HOME>/cache/blockmaps/``
(:func:`save_block_map`); the Model page only reads that file
(:func:`load_block_map`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from transfer_core.config import FreezePlan
from transfer_core.fileio import atomic_write_json
from transfer_core.freezing import ParamCounts

# Bump when the saved fields change: older files are then recomputed, never misread.
BLOCK_MAP_FORMAT = 2  # 2: the feature map's shape (for the Flatten head's size)
BLOCK_COLUMNS = [
    "block",
    "first_layer",
    "last_layer",
    "layers",
    "params",
    "trainable_params",
    "trainable_params_with_bn",
]


@dataclass(frozen=True)
class BlockMap:
    """Blocks of one backbone at one input size, with what each trains when unfrozen.

    Args:
        key: Zoo key.
        input_size: Input side in pixels.
        blocks: One row per block (``BLOCK_COLUMNS``): ``trainable_params`` is what
            the block trains when unfrozen with BatchNorm kept frozen (the Keras
            recipe), ``trainable_params_with_bn`` with BatchNorm training too.
        backbone_params: All backbone parameters (including BatchNorm statistics).
        feature_dim: Channels of the backbone's last feature map (the width of the
            pooled features an average- or max-pooling head receives).
        feature_shape: ``(height, width, channels)`` of that feature map (a Flatten
            head receives ``height * width * channels`` numbers).
    """

    key: str
    input_size: int
    blocks: pd.DataFrame
    backbone_params: int
    feature_dim: int
    feature_shape: tuple[int, int, int]

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks["block"])


def block_map(key: str, input_size: int = 0) -> BlockMap:
    """Build ``key`` once with random weights and record its blocks and parameter counts.

    Args:
        key: Zoo key.
        input_size: Input side; 0 means the backbone's default.

    Returns:
        The :class:`BlockMap`; it holds no model.

    Raises:
        ValueError: Unknown key or rejected input size.
    """
    from transfer_core import freezing, zoo

    size = zoo.check_input_size(key, input_size)
    base = zoo.build_backbone(key, size, weights="random")
    frozen_bn = freezing.freeze_table(base, FreezePlan(mode="all_trainable", train_batchnorm=False))
    with_bn = freezing.freeze_table(base, FreezePlan(mode="all_trainable", train_batchnorm=True))
    blocks = frozen_bn[["block", "first_layer", "last_layer", "layers", "params", "trainable_params"]].copy()
    blocks["trainable_params_with_bn"] = with_bn["trainable_params"].to_numpy()
    for column in blocks.columns[1:]:
        blocks[column] = blocks[column].astype("int64")
    shape = tuple(int(d) for d in base.output.shape[1:])
    return BlockMap(
        key, size, blocks.reset_index(drop=True), int(base.count_params()), int(base.output.shape[-1]),
        (shape[0], shape[1], shape[2]),
    )


def block_map_path(home: str | os.PathLike, key: str, input_size: int) -> Path:
    """Where the block map of ``key`` at ``input_size`` (already resolved, not 0) is cached."""
    return Path(home) / "cache" / "blockmaps" / f"{key}-{int(input_size)}.json"


def save_block_map(blocks: BlockMap, path: str | os.PathLike) -> None:
    """Write ``blocks`` as JSON, atomically (a reader sees the whole file or none)."""
    atomic_write_json(path, {
        "format": BLOCK_MAP_FORMAT,
        "key": blocks.key,
        "input_size": blocks.input_size,
        "backbone_params": blocks.backbone_params,
        "feature_dim": blocks.feature_dim,
        "feature_shape": list(blocks.feature_shape),
        "blocks": blocks.blocks[BLOCK_COLUMNS].to_dict(orient="list"),
    })


def load_block_map(path: str | os.PathLike) -> BlockMap | None:
    """The block map saved at ``path``, or None when there is none (or it is of another format)."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != BLOCK_MAP_FORMAT:
            return None
        frame = pd.DataFrame(data["blocks"], columns=BLOCK_COLUMNS)
        for column in BLOCK_COLUMNS[1:]:
            frame[column] = frame[column].astype("int64")
        height, width, channels = (int(d) for d in data["feature_shape"])
        return BlockMap(str(data["key"]), int(data["input_size"]), frame, int(data["backbone_params"]),
                        int(data["feature_dim"]), (height, width, channels))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def head_input_dim(blocks: BlockMap, head: str = "avg") -> int:
    """Numbers the head's first Dense layer reads: the channels after global pooling
    (``"avg"``, ``"max"``), or every position's channels after ``"flatten"``.

    Raises:
        ValueError: Unknown head.
    """
    if head in ("avg", "max"):
        return blocks.feature_dim
    if head == "flatten":
        height, width, channels = blocks.feature_shape
        return height * width * channels
    raise ValueError(f"head must be 'avg', 'max' or 'flatten'. Received: head={head!r}")


def head_params(feature_dim: int, num_classes: int, hidden_units: int = 0) -> int:
    """Parameters of the classification head (all trainable): Dense layers' weights and biases."""
    if hidden_units > 0:
        return feature_dim * hidden_units + hidden_units + hidden_units * num_classes + num_classes
    return feature_dim * num_classes + num_classes


def trainable_blocks(blocks: BlockMap, plan: FreezePlan) -> list[bool]:
    """Which blocks ``plan`` unfreezes, in block order.

    Raises:
        ValueError: ``from_layer`` plans (not block-aligned), ``top_blocks`` out of
            range, or unknown custom block names.
    """
    names = blocks.block_names
    if plan.mode == "all_frozen":
        return [False] * len(names)
    if plan.mode == "all_trainable":
        return [True] * len(names)
    if plan.mode == "top_blocks":
        if not 1 <= plan.top_blocks <= len(names):
            raise ValueError(
                f"top_blocks must be between 1 and {len(names)} (the number of blocks of this backbone). "
                f"Received: top_blocks={plan.top_blocks}"
            )
        return [index >= len(names) - plan.top_blocks for index in range(len(names))]
    if plan.mode == "custom":
        unknown = [name for name in plan.trainable_blocks if name not in names]
        if unknown:
            raise ValueError(
                f"Unknown block names {unknown}. Received: trainable_blocks={list(plan.trainable_blocks)}"
            )
        return [name in plan.trainable_blocks for name in names]
    raise ValueError(f"The block map shows block-aligned plans only. Received: mode={plan.mode!r}")


def plan_table(blocks: BlockMap, plan: FreezePlan) -> pd.DataFrame:
    """The block map under ``plan``: ``block``, ``layers``, ``params``, ``trains`` and ``trainable_params``."""
    mask = trainable_blocks(blocks, plan)
    column = "trainable_params_with_bn" if plan.train_batchnorm else "trainable_params"
    frame = blocks.blocks[["block", "first_layer", "last_layer", "layers", "params"]].copy()
    frame["trains"] = mask
    frame["trainable_params"] = [int(v) if m else 0 for v, m in zip(blocks.blocks[column], mask, strict=True)]
    return frame


def classifier_counts(
    blocks: BlockMap, plan: FreezePlan, num_classes: int, hidden_units: int = 0, head: str = "avg"
) -> ParamCounts:
    """Trainable and frozen parameters of the whole classifier (backbone + head) under ``plan``.

    Matches ``freezing.parameter_counts`` of the built classifier after
    ``apply_freeze_plan`` (the head always trains).
    """
    trainable_backbone = int(plan_table(blocks, plan)["trainable_params"].sum())
    head_count = head_params(head_input_dim(blocks, head), num_classes, hidden_units)
    return ParamCounts(
        trainable=trainable_backbone + head_count, frozen=blocks.backbone_params - trainable_backbone
    )
