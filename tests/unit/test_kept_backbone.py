"""Feature-extraction runs in one process share the frozen ImageNet backbone an earlier run built.

Real ImageNet weights (../shared/weights) at 96 px on tiny generated images: the kept backbone is
only for pretrained weights, which is what a person iterating on head settings uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from transfer_core import models
from transfer_core.config import ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.training import train

PRETRAINED = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="imagenet")


@pytest.fixture
def settings(tmp_path, shared_weights_dir) -> Settings:
    models.forget_kept_backbone()
    yield Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    models.forget_kept_backbone()


def _run(spec, settings, model=PRETRAINED, **train_kwargs):
    config = RunConfig(dataset=spec, model=model,
                       train=TrainConfig(**{"epochs": 3, "batch_size": 8, **train_kwargs}))
    result = train(config, settings=settings)
    assert result.status == "finished", result.reason
    return result


def _fresh_backbone_weights(settings):
    return models.build_classifier(PRETRAINED, 2, settings=settings).backbone.get_weights()


def test_a_second_feature_extraction_run_reuses_the_backbone_with_the_same_result(tiny_dataset, settings):
    first = _run(tiny_dataset, settings)
    assert first.report["reused_backbone"] is False
    second = _run(tiny_dataset, settings)
    assert second.report["reused_backbone"] is True
    # The same layers and variables (no copy), in a model of its own.
    assert second.classifier.backbone.weights[0] is first.classifier.backbone.weights[0]
    # The head's initial weights depend on the seed only, so reuse does not change the result.
    models.forget_kept_backbone()
    third = _run(tiny_dataset, settings)
    assert third.report["reused_backbone"] is False
    np.testing.assert_allclose(second.history["loss"], third.history["loss"], rtol=1e-5)
    assert second.report["val_accuracy"] == third.report["val_accuracy"]
    # The model a reused backbone makes predicts like one built from scratch (what gets saved).
    images = np.random.default_rng(0).uniform(0, 255, (4, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(second.classifier.model.predict(images, verbose=0),
                               third.classifier.model.predict(images, verbose=0), rtol=1e-4, atol=1e-6)


def test_models_on_a_shared_backbone_save_and_load_like_any_other(tiny_dataset, settings, tmp_path):
    from transfer_core.explore.explain import load_model
    from transfer_core.jobs import save_model

    images = np.random.default_rng(1).uniform(0, 255, (4, 96, 96, 3)).astype("float32")
    first = _run(tiny_dataset, settings)
    second = _run(tiny_dataset, settings, model=dataclasses.replace(PRETRAINED, hidden_units=8))
    assert second.report["reused_backbone"] is True
    # Both results stay usable and save their own head (what the app's worker and Export do).
    for name, result in (("first", first), ("second", second)):
        save_model(result.classifier.model, tmp_path / f"{name}.keras")
        loaded = load_model(tmp_path / f"{name}.keras")
        np.testing.assert_allclose(loaded.predict(images, verbose=0),
                                   result.classifier.model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    assert load_model(tmp_path / "second.keras").get_layer("head").get_layer("hidden") is not None


def test_sharing_a_backbone_keeps_no_earlier_run_alive(tiny_dataset, settings):
    import gc
    import weakref

    _run(tiny_dataset, settings)
    heads = []
    for hidden in (4, 8, 16):
        result = _run(tiny_dataset, settings, model=dataclasses.replace(PRETRAINED, hidden_units=hidden))
        assert result.report["reused_backbone"] is True
        heads.append(weakref.ref(result.classifier.head))
        del result
    gc.collect()
    # A notebook sweeping head settings must not pile up every earlier model in memory.
    assert [head() is None for head in heads] == [True, True, True]


def test_a_backbone_trained_after_it_was_kept_is_never_handed_out(tiny_dataset, settings):
    first = _run(tiny_dataset, settings)
    # Someone fine-tunes the first result's model in place (library use).
    weights = first.classifier.backbone.get_weights()
    first.classifier.backbone.set_weights([weights[0] + 1.0, *weights[1:]])
    second = _run(tiny_dataset, settings)
    assert second.report["reused_backbone"] is False
    assert second.classifier.backbone.weights[0] is not first.classifier.backbone.weights[0]
    for got, expected in zip(second.classifier.backbone.get_weights(), _fresh_backbone_weights(settings),
                             strict=True):
        np.testing.assert_array_equal(got, expected)


def test_fine_tuning_builds_its_own_backbone_and_leaves_the_kept_one_alone(tiny_dataset, settings):
    first = _run(tiny_dataset, settings)
    before = first.classifier.backbone.get_weights()
    tuned = _run(tiny_dataset, settings, strategy="fine_tuning", fine_tune_epochs=1)
    assert tuned.report["reused_backbone"] is False
    assert tuned.classifier.backbone.weights[0] is not first.classifier.backbone.weights[0]
    for got, expected in zip(first.classifier.backbone.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_another_size_or_random_weights_build_a_new_backbone(tiny_dataset, settings):
    _run(tiny_dataset, settings)
    other_size = _run(tiny_dataset, settings, model=dataclasses.replace(PRETRAINED, input_size=128))
    assert other_size.report["reused_backbone"] is False
    random = _run(tiny_dataset, settings, model=dataclasses.replace(PRETRAINED, weights="random"))
    assert random.report["reused_backbone"] is False


def test_prebuild_backbone_is_what_the_next_run_uses(tiny_dataset, settings):
    models.prebuild_backbone(PRETRAINED, settings)
    result = _run(tiny_dataset, settings)
    assert result.report["reused_backbone"] is True


@pytest.fixture
def recycling():
    """This process behaves like a warm worker: each run's model is saved and dropped before the next."""
    models.recycle_backbones()
    yield
    models.recycle_backbones(False)


def test_a_warm_worker_fine_tunes_the_kept_backbone_and_puts_its_imagenet_weights_back(
        tiny_dataset, settings, recycling, tmp_path):
    from transfer_core.jobs import save_model
    from transfer_core.training import release_run_state

    fresh = _fresh_backbone_weights(settings)
    images = np.random.default_rng(2).uniform(0, 255, (4, 96, 96, 3)).astype("float32")
    _run(tiny_dataset, settings)  # A feature-extraction run keeps the backbone.
    release_run_state()
    results = []
    for name in ("first", "second"):
        tuned = _run(tiny_dataset, settings, strategy="fine_tuning", fine_tune_epochs=2)
        assert tuned.report["reused_backbone"] is True
        # The run trained the shared layers: its saved model is the trained one.
        assert any(not np.array_equal(got, want)
                   for got, want in zip(tuned.classifier.backbone.get_weights(), fresh, strict=True))
        save_model(tuned.classifier.model, tmp_path / f"{name}.keras")
        results.append((tuned.history, tuned.classifier.model.predict(images, verbose=0)))
        del tuned
        release_run_state()  # What the worker does after saving: the ImageNet weights come back.
        kept = models.build_classifier(PRETRAINED, 2, settings=settings, reuse_backbone=True)
        assert kept.reused_backbone is True
        for got, want in zip(kept.backbone.get_weights(), fresh, strict=True):
            np.testing.assert_array_equal(got, want)
        del kept
    # Both fine-tuning runs started from the same ImageNet weights, so they trained alike; and a
    # process that builds its own backbone gets the same run.
    models.recycle_backbones(False)
    models.forget_kept_backbone()
    built = _run(tiny_dataset, settings, strategy="fine_tuning", fine_tune_epochs=2)
    assert built.report["reused_backbone"] is False
    for history, predictions in results:
        np.testing.assert_allclose(history["loss"], built.history["loss"], rtol=1e-4)
        np.testing.assert_allclose(predictions, built.classifier.model.predict(images, verbose=0),
                                   rtol=1e-3, atol=1e-5)
    from transfer_core.explore.explain import load_model

    np.testing.assert_allclose(load_model(tmp_path / "first.keras").predict(images, verbose=0), results[0][1],
                               rtol=1e-5, atol=1e-6)
