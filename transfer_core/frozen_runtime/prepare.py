"""Convert and load the demo's frozen networks ahead of a run (a standby worker's idle time).

"Try the demo" fine-tunes in two stages: the head on pooled features, then the top blocks on the
frozen prefix's output. Both frozen networks are converted here (once per machine: the files
stay in the cache) and loaded into this process, so the demo run that this worker takes next
starts both stages on LiteRT without converting anything.

``python -m transfer_core prepare --if-needed`` (run by ``scripts/start.sh`` before the server starts)
does the same once per machine, so that a class pressing Start the moment a brand-new server is up
does not wait for the first-ever conversion. A stamp beside the converted files says what was
prepared; checking it needs no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from transfer_core.config import Settings
from transfer_core.fileio import atomic_write_json
from transfer_core.frozen_runtime.api import frozen_pass
from transfer_core.frozen_runtime.convert import CONVERTER_VERSION
from transfer_core.frozen_runtime.store import folder_of

STAMP = "demo-prepared.json"
_VERSIONED = ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert")


def demo_fingerprint(settings: Settings) -> dict[str, Any] | None:
    """What decides the demo's converted networks, read without importing TensorFlow.

    None when the demo would not use LiteRT networks (random weights, or LiteRT off).
    """
    from transfer_core import zoo
    from transfer_core.sessions.presets import choose_demo_backbone, demo_freeze_plan

    choice = choose_demo_backbone(settings)
    if choice.weights != "imagenet" or settings.frozen_runtime != "litert":
        return None
    weights = Path(zoo.resolve_weights(choice.backbone, choice.input_size, settings=settings))
    stat = weights.stat()
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    fingerprint = {"backbone": choice.backbone, "input_size": choice.input_size, "weights_file": str(weights),
                   "weights_bytes": stat.st_size, "weights_mtime_ns": stat.st_mtime_ns,
                   "freeze_plan": dataclasses.asdict(demo_freeze_plan()), "converter": CONVERTER_VERSION,
                   "versions": versions}
    return json.loads(json.dumps(fingerprint))  # As the stamp gives it back (tuples become lists).


def demo_is_prepared(settings: Settings) -> bool:
    """Whether :func:`prepare_demo` already converted the demo's networks for these settings."""
    try:
        fingerprint = demo_fingerprint(settings)
        stamp = json.loads((folder_of(settings.cache_dir) / STAMP).read_text())
    except (OSError, ValueError):  # No stamp, an unreadable one, or no weights file.
        return False
    if fingerprint is None:
        return True  # Nothing to convert.
    return stamp.get("fingerprint") == fingerprint and all(
        (folder_of(settings.cache_dir) / f"{key}.tflite").is_file() for key in stamp.get("keys", ["-"]))


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
        done, keys = [], []
        for what, network in networks:
            prepared = frozen_pass(network, settings=settings, backbone=spec.backbone, weights=spec.weights,
                                   cut=what, check_images=None)
            done.append(f"{what}: {prepared.reason}")
            if prepared.model is not None:
                keys.append(prepared.model.key)
        if len(keys) == len(networks):
            atomic_write_json(folder_of(settings.cache_dir) / STAMP,
                              {"fingerprint": demo_fingerprint(settings), "keys": keys})
        return done
    except Exception as error:  # noqa: BLE001 - an optimisation only.
        return [f"not prepared: {type(error).__name__}: {error}"]
