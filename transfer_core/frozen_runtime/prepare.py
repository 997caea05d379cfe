"""Convert and load the demo's frozen networks ahead of a run (a standby worker's idle time).

"Try the demo" fine-tunes in two stages: the head on pooled features, then the top blocks on the
frozen prefix's output. Both frozen networks are converted here (once per machine: the files
stay in the cache) and loaded into this process, so the demo run that this worker takes next
starts both stages on LiteRT without converting anything.
"""

from __future__ import annotations

from transfer_core.config import Settings
from transfer_core.frozen_runtime.api import frozen_pass


def prepare_demo(settings: Settings) -> list[str]:
    """Convert (when not cached) and load the demo's pooled backbone and frozen prefix.

    Does nothing when the demo would use random weights or LiteRT is off. Never raises: a
    failure only means the run converts (or falls back) itself.

    Returns:
        One line per network, e.g. ``"pool: converted earlier, read from the cache"`` (for logs and tests).
    """
    from transfer_core import freezing
    from transfer_core.models import build_classifier, prebuild_backbone, split_classifier
    from transfer_core.sessions.presets import choose_demo_backbone, demo_freeze_plan, demo_model_spec

    try:
        choice = choose_demo_backbone(settings)
        if choice.weights != "imagenet" or settings.frozen_runtime != "litert":
            return []
        spec = demo_model_spec(choice)
        prebuild_backbone(spec, settings)  # Kept: the demo run that follows takes it instead of building it.
        classifier = build_classifier(spec, 2, settings=settings, reuse_backbone=True)
        networks = [("pool", classifier.feature_extractor)]
        freezing.apply_freeze_plan(classifier.backbone, demo_freeze_plan())
        first = freezing.first_trainable_layer(classifier.backbone)
        cut = freezing.cut_layer(classifier.backbone, first) if first is not None else None
        if cut is not None:
            networks.append((f"prefix:{cut}", split_classifier(classifier, cut)[0]))
        done = []
        for what, network in networks:
            prepared = frozen_pass(network, settings=settings, backbone=spec.backbone, weights=spec.weights,
                                   cut=what, check_images=None)
            done.append(f"{what}: {prepared.reason}")
        return done
    except Exception as error:  # noqa: BLE001 - an optimisation only.
        return [f"not prepared: {type(error).__name__}: {error}"]
