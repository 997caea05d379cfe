"""Learning-rate range test ("LR finder", Smith 2017) on the head, using cached backbone features.

Train a fresh head for about a hundred mini-batches while the learning rate
grows exponentially from tiny to huge, and record the loss after each batch.
At first nothing happens (too small), then the loss falls fast (good rates),
then it explodes (too large). A good starting learning rate lies where the
loss falls fastest, somewhat below the minimum; a classic rule of thumb is
"the minimum's learning rate divided by 10".

The head trains on pooled backbone features computed once per image (and
shared with the training engine's on-disk cache), so the sweep itself takes
seconds. Nothing here touches a run; :func:`lr_range_test` seeds Keras' random
state (for a repeatable curve), so the app runs it in the inference worker
(``transfer_core.inference``), never in the server process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.config import ModelSpec, RunConfig, Settings

__all__ = ["LRFinderResult", "find_learning_rate", "lr_range_test", "suggest_learning_rate"]


@dataclass
class LRFinderResult:
    """Outcome of a learning-rate range test.

    Attributes:
        frame: One row per step: ``step``, ``lr``, ``loss`` (that batch), ``smoothed_loss``.
        suggested_lr: The learning rate to try (``steepest_lr`` when it is usable, else ``min_loss_lr / 10``).
        steepest_lr: Where the smoothed loss fell fastest (per log-step of learning rate).
        min_loss_lr: Where the smoothed loss was lowest.
        explanation: How to read the curve, with the numbers filled in.
        diverged: Whether the sweep stopped early because the loss exploded.
    """

    frame: pd.DataFrame
    suggested_lr: float
    steepest_lr: float
    min_loss_lr: float
    explanation: str
    diverged: bool


def suggest_learning_rate(frame: pd.DataFrame, skip_start: int = 5, skip_end: int = 3) -> tuple[float, float, float]:
    """Pick learning rates from a range test's curve.

    Args:
        frame: Columns ``lr`` and ``smoothed_loss``, learning rate increasing.
        skip_start: Steps ignored at the start (the smoothing has not settled).
        skip_end: Steps ignored at the end (the explosion).

    Returns:
        ``(suggested, steepest, min_loss)``: ``steepest`` is the learning rate of the
        most negative slope of smoothed loss against log(lr) before the minimum;
        ``min_loss`` the learning rate of the lowest smoothed loss; ``suggested`` is
        ``steepest`` unless it lies above ``min_loss / 3`` or could not be found,
        else ``min_loss / 10``.

    Raises:
        ValueError: Fewer than 4 usable points.
    """
    lrs = np.asarray(frame["lr"], dtype=float)
    losses = np.asarray(frame["smoothed_loss"], dtype=float)
    finite = np.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(lrs) < 4:
        raise ValueError(f"At least 4 finite loss values are needed. Received: {len(lrs)} points")
    end = max(len(lrs) - skip_end, 4)
    start = min(skip_start, end - 3)
    lrs, losses = lrs[start:end], losses[start:end]
    minimum = int(np.argmin(losses))
    min_loss_lr = float(lrs[minimum])
    slopes = np.gradient(losses, np.log(lrs))
    window = slopes[: max(minimum, 1) + 1]
    steepest_index = int(np.argmin(window))
    steepest_lr = float(lrs[steepest_index])
    usable = window[steepest_index] < 0 and steepest_lr <= min_loss_lr / 3
    suggested = steepest_lr if usable else min_loss_lr / 10
    return float(suggested), steepest_lr, min_loss_lr


def lr_range_test(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    head_spec: ModelSpec | None = None,
    optimizer: str = "adam",
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    batch_size: int = 32,
    seed: int = 0,
    smoothing: float = 0.9,
    divergence_factor: float = 4.0,
    on_step: Callable[[int, int], None] | None = None,
) -> LRFinderResult:
    """Run the range test on precomputed features.

    Args:
        features: ``(N, D)`` pooled backbone features of the training images.
        labels: ``(N,)`` integer labels.
        num_classes: Number of classes.
        head_spec: Head settings (dropout, hidden units); defaults to ``ModelSpec()``.
        optimizer: ``adam``, ``sgd``, ``rmsprop`` or ``adamw`` (as in training).
        min_lr: First learning rate.
        max_lr: Last learning rate.
        steps: Mini-batches in the sweep.
        batch_size: Images per mini-batch.
        seed: Seed of the head's initial weights and of the batch order.
        smoothing: Exponential smoothing of the loss (0 = none).
        divergence_factor: Stop when the smoothed loss exceeds this times its minimum.
        on_step: Called as ``on_step(step, steps)`` after each mini-batch (progress).

    Returns:
        An :class:`LRFinderResult`.

    Raises:
        ValueError: Inconsistent shapes or a bad range.
    """
    import keras

    from transfer_core.models import build_head
    from transfer_core.training import make_optimizer

    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int32)
    if features.ndim != 2 or len(features) != len(labels) or len(features) == 0:
        raise ValueError(
            "features must be (N, D) with one label per row. "
            f"Received: features.shape={features.shape}, labels.shape={labels.shape}"
        )
    if not 0 < min_lr < max_lr:
        raise ValueError(f"Need 0 < min_lr < max_lr. Received: min_lr={min_lr}, max_lr={max_lr}")
    if steps < 10:
        raise ValueError(f"steps must be >= 10. Received: steps={steps}")
    head_spec = head_spec or ModelSpec()
    rng = np.random.default_rng(seed)
    # Seeds the head's initial weights so the same settings give the same curve.
    keras.utils.set_random_seed(seed)
    head = build_head(features.shape[1], num_classes, head_spec)
    head.compile(optimizer=make_optimizer(optimizer, min_lr), loss="sparse_categorical_crossentropy")
    factor = (max_lr / min_lr) ** (1.0 / (steps - 1))
    order = rng.permutation(len(features))
    position = 0
    rows: list[dict[str, Any]] = []
    average = 0.0
    best = math.inf
    diverged = False
    for step in range(steps):
        lr = min_lr * factor**step
        head.optimizer.learning_rate.assign(lr)
        if position + batch_size > len(order):
            order = rng.permutation(len(features))
            position = 0
        index = order[position : position + batch_size]
        position += batch_size
        loss = float(head.train_on_batch(features[index], labels[index]))
        average = smoothing * average + (1 - smoothing) * loss if math.isfinite(loss) else math.inf
        smoothed = average / (1 - smoothing ** (step + 1)) if smoothing > 0 else average
        rows.append({"step": step + 1, "lr": lr, "loss": loss, "smoothed_loss": smoothed})
        if on_step is not None:
            on_step(step + 1, steps)
        if not math.isfinite(smoothed) or (step > 5 and smoothed > divergence_factor * best):
            diverged = True
            break
        best = min(best, smoothed)
    frame = pd.DataFrame(rows, columns=["step", "lr", "loss", "smoothed_loss"])
    suggested, steepest, min_loss_lr = suggest_learning_rate(frame)
    explanation = (
        f"The loss fell fastest at a learning rate of about {steepest:.1e} and was lowest at about "
        f"{min_loss_lr:.1e}. Start the head around {suggested:.1e}: fast enough to learn quickly, far enough "
        "below the point where training becomes unstable. For fine-tuning use about 10x lower."
    )
    if diverged:
        explanation += f" The sweep stopped at {frame['lr'].iloc[-1]:.1e} because the loss exploded."
    return LRFinderResult(frame, suggested, steepest, min_loss_lr, explanation, diverged)


def find_learning_rate(
    config: RunConfig,
    *,
    settings: Settings,
    steps: int = 100,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    on_step: Callable[[int, int], None] | None = None,
) -> LRFinderResult:
    """Run the range test for a run configuration on its training split.

    The training split's pooled features are computed with the configured
    backbone (or read from the training engine's feature cache when an earlier
    run with the same images, backbone, weights and size computed them, and
    written to it otherwise).

    Args:
        config: Data set, backbone and head settings, optimizer, batch size and seed.
        settings: Weights folder and cache location.
        steps: Mini-batches in the sweep.
        min_lr: First learning rate.
        max_lr: Last learning rate.
        on_step: Called as ``on_step(step, steps)`` after each mini-batch of the sweep.

    Returns:
        An :class:`LRFinderResult`.

    Raises:
        ValueError: Empty training split or bad settings.
        transfer_core.zoo.WeightsUnavailableError: The pretrained weights are missing.
    """
    from transfer_core.training import compute_head_features

    # The engine's feature step (with its on-disk cache) is reused as is: same key, same files.
    features, labels = compute_head_features(config, settings, "train")
    return lr_range_test(
        features,
        labels,
        config.dataset.num_classes,
        head_spec=config.model,
        optimizer=config.train.optimizer,
        min_lr=min_lr,
        max_lr=max_lr,
        steps=steps,
        batch_size=config.train.batch_size,
        seed=config.train.seed,
        on_step=on_step,
    )


