"""Traced train steps a warm worker reuses across runs of the same shapes (ARCHITECTURE.md, decision 11).

Tracing a step (TensorFlow builds and optimises its graph on the first call) costs ~0.06 s for the
head and ~0.35 s for the demo's fine-tuning suffix, about 40% of a warm demo run (BENCHMARKS.md).
A traced step closes over one model and one optimizer, so reusing it means reusing them: this
module keeps the last classifier built on the kept ImageNet backbone, its splits at the cuts runs
used, and the traced steps of those models with their optimizers. A run whose classifier key
matches gets them back with every state reset, so nothing of one run is visible to the next:

- the head's variables (weights and the dropout seed state) copied from a throwaway head built
  with the run's seed, exactly what a fresh build gives (the global random state ends the same);
- the backbone's ImageNet weights (``release_run_state`` put them back; checked by fingerprint)
  and its trainable flags (all frozen, as a fresh build leaves them; the freeze plan then applies);
- the optimizer's variables (iterations, slots, learning rate) copied from a fresh optimizer built
  for the same variables.

A step is reused only for the same model object, optimizer class and settings (learning rate
aside), input signature, dtype policy and the very trainable variables it captured when traced
(the freeze plan decides those). Anything else builds and traces as before. Only in a process
that recycles backbones (:func:`transfer_core.models.recycle_backbones`: each run's model is saved
and dropped before the next), because the next run changes the classifier a run returned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transfer_core.config import ModelSpec, Settings

_MAX_STEPS = 8  # Traced steps kept at most (a stage's head, suffix or whole model, per freeze plan).


@dataclass
class TrainSteps:
    """One model's traced train step and forward pass, with the optimizer the step updates."""

    train_step: Callable
    forward: Callable
    optimizer: Any
    reused: bool = False  # Taken from the cache (reset), not traced for this run.


@dataclass
class _Kept:
    key: tuple
    classifier: Any  # transfer_core.models.Classifier
    splits: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # cut -> (prefix, trainable_part)
    steps: dict[tuple, TrainSteps] = field(default_factory=dict)


_kept: _Kept | None = None


def classifier_for(spec: ModelSpec, num_classes: int, *, settings: Settings, train_batchnorm: bool, seed: int,
                   build: Callable[[], Any]) -> Any:
    """The classifier an earlier run of the same key left, reset as ``build()`` would give it, or a
    new one from ``build()`` (kept for the next run). Call only in a recycling process, for a run
    that may share the kept backbone."""
    import keras

    from transfer_core.models import build_head, is_kept_backbone

    global _kept
    key = (spec.backbone, spec.input_size, spec.weights, spec.head, spec.dropout_rate, spec.hidden_units,
           num_classes, train_batchnorm, keras.mixed_precision.global_policy().name)
    kept = _kept
    if kept is not None and kept.key == key and is_kept_backbone(kept.classifier.backbone, spec, settings):
        classifier = kept.classifier
        classifier.backbone.trainable = False  # As a fresh build leaves it; the freeze plan applies later.
        keras.utils.set_random_seed(seed)  # What build_classifier does just before building the head.
        fresh = build_head(int(classifier.head.inputs[0].shape[-1]), num_classes, spec)
        for mine, theirs in zip(classifier.head.variables, fresh.variables, strict=True):
            mine.assign(theirs)
        classifier.reused_backbone = True
        return classifier
    _kept = None  # Frees the earlier classifier before the new one is built.
    classifier = build()
    if spec.weights == "imagenet":
        _kept = _Kept(key, classifier)
    return classifier


def split(classifier: Any, cut: str) -> tuple[Any, Any]:
    """:func:`transfer_core.models.split_classifier`, the same models again for the kept classifier."""
    from transfer_core.models import split_classifier

    kept = _kept
    if kept is None or kept.classifier is not classifier:
        return split_classifier(classifier, cut)
    if cut not in kept.splits:
        kept.splits[cut] = split_classifier(classifier, cut)
    return kept.splits[cut]


def train_steps(model: Any, optimizer: Any, signature: list, trace: Callable[[Any, Any], tuple[Callable, Callable]]
                ) -> TrainSteps:
    """The traced steps of ``model`` with a built optimizer: ``trace(model, optimizer)`` on a fresh
    optimizer, or the steps kept for this model and signature with their optimizer reset to
    ``optimizer``'s fresh state (its learning rate included)."""
    import keras

    kept = _kept
    held = kept is not None and (model is kept.classifier.head or model is kept.classifier.model
                                 or any(model is part for _, part in kept.splits.values()))
    key = None
    if held:
        settings = {k: v for k, v in optimizer.get_config().items() if k != "learning_rate"}
        key = (id(model), type(optimizer).__name__, repr(sorted(settings.items())),
               tuple((tuple(spec.shape), spec.dtype.name) for spec in signature),
               keras.mixed_precision.global_policy().name, tuple(id(v) for v in model.trainable_variables))
    optimizer.build(model.trainable_variables)
    steps = kept.steps.get(key) if held else None
    if steps is not None and _reset_optimizer(steps.optimizer, optimizer):
        return TrainSteps(steps.train_step, steps.forward, steps.optimizer, reused=True)
    train_step, forward = trace(model, optimizer)
    steps = TrainSteps(train_step, forward, optimizer)
    if held:
        if len(kept.steps) >= _MAX_STEPS:
            kept.steps.pop(next(iter(kept.steps)))
        kept.steps[key] = steps
    return steps


def _reset_optimizer(kept: Any, fresh: Any) -> bool:
    """Copy a freshly built optimizer's variables into the kept one; False if they do not match."""
    if len(kept.variables) != len(fresh.variables) or any(
            tuple(a.shape) != tuple(b.shape) for a, b in zip(kept.variables, fresh.variables, strict=True)):
        return False
    for mine, theirs in zip(kept.variables, fresh.variables, strict=True):
        mine.assign(theirs)
    return True


def kept_steps() -> list[TrainSteps]:
    """The traced steps kept now (tests and benchmarks check what a run reused)."""
    return list(_kept.steps.values()) if _kept is not None else []


def forget() -> None:
    """Drop what is kept (tests; a run that builds its own backbone)."""
    global _kept
    _kept = None
