"""The head as a choice: average pooling, max pooling or Flatten, and the classic Keras recipe."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from helpers.models import TINY_MODEL

from transfer_core import export, freezing
from transfer_core.config import HEAD_POOLINGS, FreezePlan, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.freezing import blockmap
from transfer_core.sessions import presets
from transfer_core.training import train

# 64 px: MobileNetV2's last feature map is 2x2x1280, so Flatten differs from pooling (at 32 px it is 1x1).
SIZE = 64


@pytest.fixture(scope="module")
def blocks() -> blockmap.BlockMap:
    return blockmap.block_map("mobilenet_v2_0.35", SIZE)


def _spec(head: str, **changes) -> ModelSpec:
    return dataclasses.replace(TINY_MODEL, input_size=SIZE, head=head, **changes)


def test_an_old_config_without_a_head_loads_with_average_pooling():
    old = {"backbone": "mobilenet_v2_0.35", "input_size": 96, "weights": "imagenet", "dropout_rate": 0.2,
           "hidden_units": 0}
    assert ModelSpec.from_dict(old).head == "avg"
    with pytest.raises(ValueError, match="head must be one of .* Received: head='mean'"):
        ModelSpec(head="mean")


def test_the_block_map_knows_the_feature_map_shape(blocks, tmp_path):
    assert blocks.feature_shape == (2, 2, 1280)
    path = tmp_path / "map.json"
    blockmap.save_block_map(blocks, path)
    assert blockmap.load_block_map(path).feature_shape == (2, 2, 1280)


@pytest.mark.parametrize("head", HEAD_POOLINGS)
def test_counts_of_each_head_match_keras_on_the_built_classifier(blocks, head):
    import keras

    from transfer_core.models import POOL_LAYER, build_classifier

    classifier = build_classifier(_spec(head, hidden_units=16), 3)
    pool = classifier.model.get_layer(POOL_LAYER)
    expected_type = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D,
                     "flatten": keras.layers.Flatten}[head]
    assert type(pool) is expected_type
    plan = FreezePlan(mode="all_frozen")
    freezing.apply_freeze_plan(classifier.backbone, plan)
    assert blockmap.classifier_counts(blocks, plan, 3, 16, head) == freezing.parameter_counts(classifier.model)
    assert blockmap.head_params(blockmap.head_input_dim(blocks, head), 3, 16) == classifier.head.count_params()


def test_flatten_on_resnet50_at_224_with_dense_128_has_about_12_8_million_weights(blocks):
    # ResNet50's last feature map at 224 px is 7x7x2048 (keras.applications); the block map of it holds that shape.
    resnet = dataclasses.replace(blocks, key="resnet50", feature_dim=2048, feature_shape=(7, 7, 2048))
    weights = blockmap.head_params(blockmap.head_input_dim(resnet, "flatten"), 2, 128)
    assert weights == 7 * 7 * 2048 * 128 + 128 + 128 * 2 + 2
    assert round(weights / 1e6, 1) == 12.8
    assert blockmap.head_params(blockmap.head_input_dim(resnet, "avg"), 2, 128) < weights / 40


@pytest.mark.parametrize("head", ["max", "flatten"])
def test_feature_extraction_trains_each_head_on_features_the_full_model_computes(tiny_dataset, tmp_path, head):
    config = RunConfig(dataset=tiny_dataset, model=_spec(head), freeze=FreezePlan(mode="all_frozen"),
                       train=TrainConfig(epochs=1, batch_size=8))
    result = train(config, emit=lambda event: None, settings=Settings(home=tmp_path))
    assert result.status == "finished", result.reason
    classifier = result.classifier
    width = 1280 if head == "max" else 2 * 2 * 1280
    assert int(classifier.feature_extractor.output.shape[-1]) == width
    assert result.report["trainable_params"] == width * tiny_dataset.num_classes + tiny_dataset.num_classes
    images = np.random.default_rng(0).uniform(0, 255, size=(3, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(classifier.head(classifier.feature_extractor(images)), classifier.model(images),
                               atol=1e-5)


def test_cached_features_are_kept_per_head(tiny_dataset, shared_weights_dir, tmp_path):
    settings = Settings(home=tmp_path, weights_dir=shared_weights_dir)

    def run(head):
        model = ModelSpec(backbone="mobilenet_v2_0.35", input_size=SIZE, weights="imagenet", dropout_rate=0.0,
                          head=head)
        config = RunConfig(dataset=tiny_dataset, model=model, freeze=FreezePlan(mode="all_frozen"),
                           train=TrainConfig(epochs=1, batch_size=8))
        result = train(config, emit=lambda event: None, settings=settings)
        assert result.status == "finished", result.reason
        return tuple(result.report["cache_hits"])

    assert run("avg") == ()
    assert run("flatten") == ()  # Average-pooled features are never read for a Flatten head.
    assert run("flatten") == ("pool:flatten", "pool:flatten")
    assert run("avg") == ("pool", "pool")  # The average head keeps its old cache name.


def test_grad_cam_and_embeddings_work_on_a_flatten_head():
    from transfer_core.explore import embeddings, explain
    from transfer_core.models import build_classifier

    classifier = build_classifier(_spec("flatten"), 2)
    images = np.random.default_rng(1).uniform(0, 255, size=(2, SIZE, SIZE, 3)).astype("float32")
    heatmaps, probabilities, side = explain.grad_cam_batch(classifier.model, images)
    assert heatmaps.shape == (2, SIZE, SIZE) and side == 2
    np.testing.assert_allclose(probabilities, classifier.model(images), atol=1e-5)
    features = embeddings.pooled_features(classifier.model, images)
    assert features.shape == (2, 2 * 2 * 1280)


@pytest.mark.parametrize("head", HEAD_POOLINGS)
def test_the_reproduce_script_builds_the_same_head(tiny_dataset, tmp_path, head):
    config = RunConfig(dataset=tiny_dataset, model=_spec(head, hidden_units=8),
                       freeze=FreezePlan(mode="all_frozen"), train=TrainConfig(epochs=1))
    script = export.generate_script(config, run_id="r1")
    assert f"HEAD_POOLING = '{head}'" in script
    path = tmp_path / f"reproduce_{head}.py"
    path.write_text(script)
    spec = importlib.util.spec_from_file_location(f"reproduce_{head}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model, _, head_model, _ = module.build_model(None)
    from transfer_core.models import build_classifier

    ours = build_classifier(config.model, tiny_dataset.num_classes)
    assert type(model.get_layer("pool")) is type(ours.model.get_layer("pool"))
    assert head_model.count_params() == ours.head.count_params()


def test_the_classic_recipe_is_the_textbook_one_and_says_when_resnet50_is_missing(
    shared_weights_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # No ResNet50 file in a Keras cache either.
    settings = Settings(home=tmp_path, weights_dir=shared_weights_dir, offline=True)
    recipe = presets.classic_keras_recipe(settings)
    assert recipe.model == ModelSpec(backbone="resnet50", input_size=224, weights="imagenet", dropout_rate=0.0,
                                     hidden_units=128, head="flatten")
    assert recipe.freeze.mode == "all_frozen"
    assert (recipe.train.strategy, recipe.train.optimizer, recipe.train.learning_rate, recipe.train.epochs) == (
        "feature_extraction", "adam", 1e-4, 10)
    assert not recipe.weights_offline
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in recipe.obstacle
    assert "does not download" in recipe.obstacle
    fallback = presets.classic_recipe_fallback(settings)
    assert fallback.weights_offline and fallback.obstacle == ""
    assert fallback.model == dataclasses.replace(recipe.model, backbone="mobilenet_v2_0.35")
    assert (fallback.freeze, fallback.train) == (recipe.freeze, recipe.train)
    downloads = presets.classic_keras_recipe(dataclasses.replace(settings, offline=False))
    assert "try to download" in downloads.obstacle


def test_no_fallback_when_no_weights_are_here(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert presets.classic_recipe_fallback(Settings(home=tmp_path, weights_dir=tmp_path / "none")) is None
