"""The training engine on tiny synthetic data (random weights, 32 px): strategies, events, stop, NaN."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.models import TINY_MODEL

from transfer_core.config import FreezePlan, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.training import train


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home")


def _config(spec, **train_kwargs) -> RunConfig:
    freeze = train_kwargs.pop("freeze", FreezePlan(mode="top_blocks", top_blocks=2))
    model = train_kwargs.pop("model", TINY_MODEL)
    return RunConfig(dataset=spec, model=model, freeze=freeze,
                     train=TrainConfig(**{"epochs": 2, "batch_size": 8, **train_kwargs}))


def _collect(config, settings, should_stop=None):
    events = []
    result = train(config, emit=events.append, should_stop=should_stop, settings=settings)
    return result, events


def test_feature_extraction_runs_head_on_features_computed_once(tiny_dataset, settings):
    result, events = _collect(_config(tiny_dataset), settings)
    assert result.status == "finished", result.reason
    types = [e["type"] for e in events]
    assert types[0] == "run_started"
    stages = [e["stage"] for e in events if e["type"] == "stage"]
    assert stages == ["features", "head"]
    epochs = [e for e in events if e["type"] == "epoch_end"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(np.isfinite(e["val_loss"]) for e in epochs)
    batches = [e for e in events if e["type"] == "batch_end"]
    assert len(batches) == 2 * batches[0]["batches"]
    report = result.report
    assert report["epochs"] == 2 and 0.0 <= report["val_accuracy"] <= 1.0
    assert report["evaluation"]["val"]["num_images"] == report["num_val"]
    # Only the head trains: trainable parameters are the classifier's weights and bias.
    assert report["trainable_params"] == result.classifier.head.count_params()


def test_an_epoch_stage_says_whether_this_process_trained_it_before(tiny_dataset, settings, monkeypatch):
    """A warm worker's second run traces its steps faster; the estimate keeps such traces apart."""
    from transfer_core.training import context

    monkeypatch.setattr(context, "_EPOCH_STAGES_SEEN", set())  # As in a new worker process.
    seen = []
    for strategy in ("feature_extraction", "feature_extraction", "fine_tuning"):
        result, events = _collect(_config(tiny_dataset, strategy=strategy), settings)
        assert result.status == "finished", result.reason
        seen.append([(e["stage"], e["traced_before"]) for e in events if e["type"] == "stage" and e["epochs"]])
        assert all("traced_before" not in e for e in events if e["type"] == "stage" and not e["epochs"])
    assert seen == [[("head", False)], [("head", True)], [("head", True), ("fine_tune", False)]]


def test_training_the_head_leaves_the_graph_optimiser_setting_as_it_was(tiny_dataset, settings):
    import tensorflow as tf

    for strategy in ("feature_extraction", "fine_tuning"):
        result, _ = _collect(_config(tiny_dataset, strategy=strategy), settings)
        assert result.status == "finished", result.reason
        # Grappler is off only while the head's step runs; conv layers need it afterwards.
        assert tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False) is False


def test_feature_extraction_leaves_backbone_weights_unchanged(tiny_dataset, settings):
    import keras

    from transfer_core.models import build_classifier

    keras.utils.set_random_seed(0)
    reference = build_classifier(TINY_MODEL, tiny_dataset.num_classes).backbone.get_weights()
    result, _ = _collect(_config(tiny_dataset, seed=0), settings)
    after = result.classifier.backbone.get_weights()
    assert len(after) == len(reference)
    for before_w, after_w in zip(reference, after, strict=True):
        np.testing.assert_array_equal(before_w, after_w)


def test_fine_tuning_trains_top_blocks_on_cached_prefix_and_keeps_lower_blocks(tiny_dataset, settings):
    import keras

    from transfer_core.models import build_classifier

    keras.utils.set_random_seed(0)
    before = build_classifier(TINY_MODEL, tiny_dataset.num_classes).backbone
    before_weights = {w.path: w.numpy().copy() for w in before.weights}
    config = _config(tiny_dataset, strategy="fine_tuning", fine_tune_epochs=2, fine_tune_learning_rate=1e-3,
                     freeze=FreezePlan(mode="top_blocks", top_blocks=2))
    result, events = _collect(config, settings)
    assert result.status == "finished", result.reason
    stage_events = [e for e in events if e["type"] == "stage"]
    # Fine-tuning reads each image twice (features, then the frozen prefix): decoded once, into the image cache.
    assert [e["stage"] for e in stage_events] == ["decode", "features", "head", "prefix", "fine_tune"]
    assert stage_events[-1]["cached"] is True
    assert [e["stage"] for e in events if e["type"] == "epoch_end"] == ["head"] * 2 + ["fine_tune"] * 2
    backbone = result.classifier.backbone
    changed = {w.path for w in backbone.weights if not np.array_equal(w.numpy(), before_weights[w.path])}
    assert changed, "fine-tuning changed no backbone weight"
    assert not any(path.startswith("block_1_") or path.startswith("Conv1") for path in changed)
    # BatchNorm statistics stay in inference mode (the Keras recipe): moving stats never change.
    assert not any("moving_mean" in path or "moving_variance" in path for path in changed)
    assert result.report["trainable_params"] > result.classifier.head.count_params()


def test_fine_tuning_cached_prefix_predicts_like_the_full_model(tiny_dataset, settings):
    from transfer_core import freezing
    from transfer_core.models import build_classifier, split_classifier

    classifier = build_classifier(TINY_MODEL, tiny_dataset.num_classes)
    freezing.apply_freeze_plan(classifier.backbone, FreezePlan(mode="top_blocks", top_blocks=2))
    cut = freezing.cut_layer(classifier.backbone, freezing.first_trainable_layer(classifier.backbone))
    assert cut is not None
    prefix, trainable_part = split_classifier(classifier, cut)
    images = np.random.default_rng(0).uniform(0, 255, size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(trainable_part(prefix(images)), classifier.model(images), atol=1e-5)


def test_augmentation_turns_cache_off_and_says_why(tiny_dataset, settings):
    result, events = _collect(_config(tiny_dataset, epochs=1, augmentation=("flip", "contrast")), settings)
    assert result.status == "finished", result.reason
    stages = [e for e in events if e["type"] == "stage"]
    # The images are decoded once into the image cache; the backbone still runs every epoch.
    assert [e["stage"] for e in stages] == ["decode", "head"]
    assert stages[1]["cached"] is False and "augmentation" in stages[1]["description"]


def test_runs_that_read_images_every_epoch_decode_them_only_once(tiny_dataset, settings):
    config = _config(tiny_dataset, strategy="from_scratch", epochs=2)
    first, first_events = _collect(config, settings)
    assert first.status == "finished", first.reason
    decode = [e for e in first_events if e.get("stage") == "decode" and e["type"] == "progress"]
    assert decode and decode[-1]["done"] == decode[-1]["total"]
    assert list((settings.cache_dir / "images").glob("*.imgcache"))
    second, second_events = _collect(config, settings)
    assert second.status == "finished", second.reason
    assert not [e for e in second_events if e.get("stage") == "decode"]
    # Same pixels from the cache: the same seed gives the same training.
    np.testing.assert_allclose(second.history["loss"], first.history["loss"], rtol=1e-4)


def test_stop_during_decoding_ends_the_run_as_stopped(tiny_dataset, settings):
    config = _config(tiny_dataset, strategy="from_scratch", epochs=2)
    events = []

    def emit(event):
        events.append(event)

    result = train(config, emit=emit, settings=settings,
                   should_stop=lambda: any(e.get("stage") == "decode" for e in events))
    assert result.status == "stopped"
    assert result.classifier is None and "no model to keep" in result.reason  # Not "the best weights were kept".
    assert not list((settings.cache_dir / "images").glob("*.imgcache"))  # No half-written cache file.


def test_stop_inside_the_first_epoch_keeps_no_model(tiny_dataset, settings):
    """Stopped after the first batch: no epoch ended, so no half-trained head is saved, evaluated or called
    "the best weights so far" (it was, before: the page showed a random head's accuracy)."""
    events = []
    result = train(_config(tiny_dataset, strategy="feature_extraction", epochs=3), emit=events.append,
                   settings=settings, should_stop=lambda: any(e["type"] == "batch_end" for e in events))
    assert result.status == "stopped" and result.classifier is None, result.reason
    assert "no model to keep" in result.reason
    assert result.history.empty and "val_accuracy" not in result.report


def test_from_scratch_trains_every_layer(tiny_dataset, settings):
    result, _ = _collect(_config(tiny_dataset, strategy="from_scratch", epochs=1), settings)
    assert result.status == "finished", result.reason
    model = result.classifier.model
    assert result.report["weights"] == "random"
    assert result.report["trainable_params"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert result.report["trainable_params"] > 0.9 * model.count_params()


def test_stop_request_ends_within_one_batch_and_keeps_best_weights(tiny_dataset, settings):
    events = []

    def should_stop() -> bool:
        # Ask for a stop once the first batch of the second epoch has ended.
        batches = [e for e in events if e["type"] == "batch_end"]
        return bool(batches) and len(batches) > batches[0]["batches"]

    result = train(_config(tiny_dataset, epochs=5), emit=events.append, settings=settings,
                   should_stop=should_stop)
    assert result.status == "stopped"
    epoch_ends = [e for e in events if e["type"] == "epoch_end"]
    assert len(epoch_ends) == 1  # The interrupted second epoch is not reported as an epoch.
    batches = [e for e in events if e["type"] == "batch_end"]
    assert len(batches) == batches[0]["batches"] + 1  # Stopped right after the batch that asked.
    assert result.classifier is not None
    assert result.report["epochs"] == 1


def test_nan_loss_fails_with_a_reason_and_a_fix(tiny_dataset, settings):
    config = _config(tiny_dataset, strategy="from_scratch", epochs=3, learning_rate=10.0, optimizer="adam")
    result, _ = _collect(config, settings)
    assert result.status == "failed"
    assert "NaN" in result.reason and "learning rate" in result.reason


def test_missing_pretrained_weights_fail_with_the_file_name(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    settings = Settings(home=tmp_path / "home", weights_dir=tmp_path / "no_weights_here")
    model = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="imagenet")
    result, _ = _collect(_config(tiny_dataset, model=model), settings)
    assert result.status == "failed"
    assert ".h5" in result.reason and "random" in result.reason


def test_mirrored_strategy_runs_on_the_cpu(tiny_dataset, settings):
    result, events = _collect(_config(tiny_dataset, epochs=1, distribution="mirrored"), settings)
    assert result.status == "finished", result.reason
    assert events[0]["distribution"] == "mirrored"


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "auto"])
def test_precision_policies_train_and_keep_float32_outputs(tiny_dataset, settings, precision):
    result, events = _collect(_config(tiny_dataset, epochs=1, precision=precision), settings)
    assert result.status == "finished", result.reason
    expected = "float32" if precision == "auto" else precision  # No GPU here.
    assert events[0]["precision"] == expected
    assert result.classifier.model.output.dtype == "float32"
    # The next run starts from a clean float32 policy.
    import keras

    from transfer_core.training import reset_keras_state

    reset_keras_state(0)
    assert keras.mixed_precision.global_policy().name == "float32"
