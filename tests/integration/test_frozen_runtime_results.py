"""Same results with frozen passes on LiteRT as on TensorFlow (issue 19, "same results").

The same seeds, once with ``frozen_runtime="tensorflow"`` (the path before LiteRT) and once with
``"litert"``, in separate homes so neither reads the other's cached features:

- feature extraction (the demo, ants vs bees): within one validation image, seed by seed;
- fine-tuning on ants vs bees at 224 px: within one validation image, seed by seed;
- fine-tuning on the demo ("where", 36 validation images, 45 steps at a high learning rate): within
  one image at the median over seeds and two for any seed. That run amplifies float32 noise: on
  TensorFlow alone, turning oneDNN's kernels off (``TF_ENABLE_ONEDNN_OPTS=0``, outputs ~1e-6 apart)
  moves it by 1-2 images on 4 of 4 seeds tried (BENCHMARKS.md, "Frozen passes on LiteRT").

From scratch runs no frozen pass, so LiteRT cannot change it.
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from transfer_core import frozen_runtime
from transfer_core.compare import comparison_configs
from transfer_core.config import FreezePlan, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.sessions import presets

pytestmark = pytest.mark.slow

RUNTIMES = ("tensorflow", "litert")


def _accuracies(configs, homes) -> dict[str, dict[str, float]]:
    from transfer_core.training import train

    found: dict[str, dict[str, float]] = {}
    for runtime in RUNTIMES:
        frozen_runtime.forget_loaded()
        for config in configs:
            events = []
            result = train(config, settings=homes[runtime], emit=events.append)
            assert result.status == "finished", result.reason
            used = {e["runtime"] for e in events if e["type"] == "frozen_runtime"}
            assert used == ({"litert"} if runtime == "litert" else {"tensorflow"}), events
            found.setdefault(config.train.strategy, {})[runtime] = result.report["val_accuracy"]
    return found


def _homes(tmp_path, weights_dir) -> dict[str, Settings]:
    return {runtime: Settings(home=tmp_path / runtime, weights_dir=weights_dir, frozen_runtime=runtime)
            for runtime in RUNTIMES}


def test_the_demo_scores_the_same_on_litert(shared_weights_dir, tmp_path):
    from transfer_core.data import make_demo_dataset, read_manifest

    images = {}
    for seed in (0, 1, 2):
        spec = make_demo_dataset(tmp_path / f"data{seed}", images_per_class=presets.DEMO_IMAGES_PER_CLASS,
                                 image_size=presets.DEMO_IMAGE_SIZE, seed=seed, kind=presets.DEMO_KIND)
        homes = _homes(tmp_path / f"homes{seed}", shared_weights_dir)
        choice = presets.choose_demo_backbone(homes["litert"])
        train_config = dataclasses.replace(presets.demo_train_config(choice), seed=seed)
        configs = comparison_configs(spec, presets.demo_model_spec(choice), presets.demo_freeze_plan(),
                                     train_config, ("feature_extraction", "fine_tuning"))
        num_val = int((read_manifest(spec)["split"] == "val").sum())
        for strategy, scores in _accuracies(configs, homes).items():
            images.setdefault(strategy, []).append(
                round((scores["litert"] - scores["tensorflow"]) * num_val))
    assert all(abs(d) <= 1 for d in images["feature_extraction"]), images
    assert all(abs(d) <= 2 for d in images["fine_tuning"]), images
    assert abs(statistics.median(images["fine_tuning"])) <= 1, images


def test_ants_and_bees_score_the_same_on_litert(hymenoptera_dir, shared_weights_dir, tmp_path):
    from transfer_core.data import ingest_folder, read_manifest

    spec = ingest_folder(hymenoptera_dir, tmp_path / "data", settings=Settings(home=tmp_path)).spec
    num_val = int((read_manifest(spec)["split"] == "val").sum())
    model = ModelSpec(backbone="mobilenet_v2_0.35", input_size=224, weights="imagenet")
    for seed in (0, 1):
        homes = _homes(tmp_path / f"homes{seed}", shared_weights_dir)  # Nothing cached from the other seed.
        configs = [
            RunConfig(dataset=spec, model=model, train=TrainConfig(epochs=5, seed=seed)),
            RunConfig(dataset=spec, model=model, freeze=FreezePlan(mode="top_blocks", top_blocks=2),
                      train=TrainConfig(strategy="fine_tuning", epochs=3, fine_tune_epochs=3, seed=seed)),
        ]
        for strategy, scores in _accuracies(configs, homes).items():
            assert abs(scores["litert"] - scores["tensorflow"]) <= 1 / num_val + 1e-9, (seed, strategy, scores)
