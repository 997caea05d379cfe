"""The three strategies as small named steps over one :class:`RunContext`.

- ``feature_extraction``: the backbone is frozen. Its pooled features are
  computed once per image (and cached on disk, keyed by backbone, weights,
  input size and image content), then only the head trains on them. This
  costs one forward pass instead of one per epoch.
- ``fine_tuning``: stage 1 trains the head as above; stage 2 unfreezes the
  blocks of the freeze plan, recompiles with a lower learning rate and trains
  on. Without augmentation the frozen prefix's output is cached too, so each
  epoch only runs the trainable top of the network.
- ``from_scratch``: the same architecture with random weights, all trainable:
  the no-transfer baseline.
"""

from __future__ import annotations

from transfer_core.config import FreezePlan
from transfer_core.training import step_cache
from transfer_core.training.context import RunContext
from transfer_core.training.feature_cache import MAX_PREFIX_CACHE_BYTES, compute_outputs, estimated_bytes
from transfer_core.training.inputs import decode_for_passes, epoch_datasets
from transfer_core.training.loop import fit_stage


def run_strategy(ctx: RunContext) -> None:
    """Train ``ctx.classifier`` with the run's strategy."""
    strategy = ctx.train_config.strategy
    if strategy == "from_scratch":
        train_from_scratch(ctx)
        return
    train_head(ctx)
    if strategy == "fine_tuning":
        fine_tune(ctx)


def train_head(ctx: RunContext) -> None:
    """Feature extraction (and stage 1 of fine-tuning)."""
    from transfer_core.models import features_cache_name

    classifier = ctx.classifier
    train_config = ctx.train_config
    epochs = train_config.epochs
    lr = train_config.learning_rate
    if train_config.caches_features:
        pooled = features_cache_name(ctx.config.model)  # The cache key names the head's pooling.
        if train_config.strategy == "fine_tuning":
            decode_for_passes(ctx)  # Read again by the frozen prefix (or whole epochs): decode once.
        ctx.stage("features", "Computing backbone features once for every image", 0, True)
        train_features = compute_outputs(ctx, classifier.feature_extractor, ctx.train_data, pooled, "features")
        val_features = compute_outputs(ctx, classifier.feature_extractor, ctx.val_data, pooled, "features")
        ctx.arrays_from = (classifier.feature_extractor, pooled, "features")
        ctx.stage("head", "Training the new head on cached features", epochs, True)
        fit_stage(ctx, classifier.head, "head", epochs, lr, train_features, val_features)
    else:
        why = "augmentation is on" if train_config.augmentation else "caching is off"
        train_images, val_images = epoch_datasets(ctx)
        ctx.stage("head", f"Training the head; the frozen backbone runs every epoch ({why})", epochs, False)
        fit_stage(ctx, classifier.model, "head", epochs, lr, train_images, val_images)


def fine_tune(ctx: RunContext) -> None:
    """Stage 2 of fine-tuning: unfreeze per the plan, lower LR, recompile, train."""
    from transfer_core import freezing
    classifier = ctx.classifier
    train_config = ctx.train_config
    freezing.apply_freeze_plan(classifier.backbone, ctx.config.freeze)
    epochs = train_config.fine_tune_epochs
    lr = train_config.fine_tune_learning_rate
    first = freezing.first_trainable_layer(classifier.backbone)
    cut = None
    if train_config.caches_features and first is not None:
        cut = freezing.cut_layer(classifier.backbone, first)
    if cut is not None:
        prefix, trainable_part = step_cache.split(classifier, cut)  # The same models in a warm worker.
        size = estimated_bytes(prefix, len(ctx.train_data.paths) + len(ctx.val_data.paths))
        if size <= MAX_PREFIX_CACHE_BYTES:
            ctx.stage("prefix", f"Caching the frozen layers' output (up to '{cut}') once", 0, True)
            train_cut = compute_outputs(ctx, prefix, ctx.train_data, f"prefix:{cut}", "prefix")
            val_cut = compute_outputs(ctx, prefix, ctx.val_data, f"prefix:{cut}", "prefix")
            ctx.arrays_from = (prefix, f"prefix:{cut}", "prefix")
            ctx.stage("fine_tune", "Fine-tuning the unfrozen top blocks on the cached prefix", epochs, True)
            fit_stage(ctx, trainable_part, "fine_tune", epochs, lr, train_cut, val_cut)
            return
    if train_config.augmentation:
        why = "augmentation is on, so every epoch sees new images"
    elif first is None:
        why = "nothing is frozen"
    else:
        why = "no single cut point before the first trainable layer"
    train_images, val_images = epoch_datasets(ctx)
    ctx.stage("fine_tune", f"Fine-tuning the whole network each epoch ({why})", epochs, False)
    fit_stage(ctx, classifier.model, "fine_tune", epochs, lr, train_images, val_images)


def train_from_scratch(ctx: RunContext) -> None:
    """Every layer trainable from random weights: the no-transfer baseline."""
    import keras

    from transfer_core import freezing

    freezing.apply_freeze_plan(ctx.classifier.backbone, FreezePlan(mode="all_trainable", train_batchnorm=True))
    # Keras' MobileNets use BatchNorm momentum 0.999, tuned for long ImageNet runs: in a
    # few epochs from random weights the moving statistics barely leave their start, and
    # validation (which uses them) sits at chance. 0.9 lets them follow, so the baseline
    # is an honest one rather than a broken one.
    for layer in ctx.classifier.backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, 0.9)
    epochs = ctx.train_config.epochs
    train_images, val_images = epoch_datasets(ctx)
    ctx.stage("scratch", "Training every layer from random weights (no transfer)", epochs, False)
    fit_stage(ctx, ctx.classifier.model, "scratch", epochs, ctx.train_config.learning_rate,
              train_images, val_images)
