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

The package is split by job: ``blocks`` (grouping layers into blocks), ``plans`` (applying a
freeze plan, parameter counts) and ``cuts`` (where a backbone can be split). Keras is imported
lazily; importing this package does not import TensorFlow.
"""

from transfer_core.freezing.blocks import FALLBACK_BLOCK_SIZE, Block, backbone_blocks
from transfer_core.freezing.cuts import cut_layer, split_at
from transfer_core.freezing.plans import (
    ParamCounts,
    apply_freeze_plan,
    first_trainable_layer,
    freeze_table,
    parameter_counts,
)

__all__ = [
    "FALLBACK_BLOCK_SIZE",
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
