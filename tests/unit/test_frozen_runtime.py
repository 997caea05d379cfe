"""Frozen passes on LiteRT (transfer_core.frozen_runtime): same outputs as Keras, converted once, and
TensorFlow (with the reason in the run's events) whenever LiteRT cannot be trusted.

Every zoo backbone is converted at a small size with random weights; the MobileNets convert in a
few seconds and run in the fast tier, the larger networks (10-25 s each on the 2-core machine) are
marked slow. Real ImageNet weights from ../shared are slow tests too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from transfer_core import frozen_runtime
from transfer_core.config import FreezePlan, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.frozen_runtime import api as frozen_api
from transfer_core.frozen_runtime import store
from transfer_core.zoo.catalog import BACKBONES

# Convert in a few seconds at 32 px; every other backbone is a slow test.
FAST_BACKBONES = ("mobilenet_0.25", "mobilenet_v2_0.35", "mobilenet_v3_small")
PRETRAINED = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="imagenet")


@pytest.fixture(autouse=True)
def _fresh_interpreters():
    frozen_runtime.forget_loaded()  # No test sees another's loaded interpreters.
    yield
    frozen_runtime.forget_loaded()


def _images(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).round().astype(np.float32)


def _assert_same(converted: np.ndarray, reference: np.ndarray) -> None:
    scale = float(np.max(np.abs(reference)))
    assert scale > 0
    assert float(np.max(np.abs(converted - reference))) <= frozen_runtime.TOLERANCE * scale


@pytest.mark.parametrize(
    "key", [key if key in FAST_BACKBONES else pytest.param(key, marks=pytest.mark.slow) for key in BACKBONES])
def test_every_zoo_backbone_gives_keras_pooled_features_on_litert(key):
    import keras

    from transfer_core.models import build_classifier

    size = max(32, BACKBONES[key].min_input_size)
    keras.utils.set_random_seed(0)
    classifier = build_classifier(ModelSpec(backbone=key, input_size=size, weights="random"), 2)
    model = frozen_runtime.FrozenModel(frozen_runtime.to_flatbuffer(classifier.feature_extractor), threads=2)
    assert model.runtime == "litert"  # ai-edge-litert is a requirement; tf.lite is only the fallback.
    images = _images(5, size)
    reference = np.asarray(classifier.feature_extractor(images, training=False))
    _assert_same(model.run(images, batch_size=3), reference)  # A full batch, then a short (padded) one.
    _assert_same(model.run_batch(images[:1]), reference[:1])  # Resized down to one image.


def test_batches_of_any_size_give_the_same_outputs():
    import keras

    from transfer_core.models import build_classifier

    keras.utils.set_random_seed(1)
    classifier = build_classifier(ModelSpec(backbone="mobilenet_v2_0.35", input_size=32, weights="random"), 2)
    model = frozen_runtime.FrozenModel(frozen_runtime.to_flatbuffer(classifier.feature_extractor), threads=1)
    images = _images(11, 32, seed=2)
    whole = model.run_batch(images)
    for batch_size in (1, 4, 8, 16):  # The interpreter runs chunks of 32 at 32 px: short ones are padded.
        np.testing.assert_allclose(model.run(images, batch_size=batch_size), whole, rtol=0, atol=1e-6)
    assert model.chunk == 32
    assert model.run_batch(images[:0]).shape == (0, *whole.shape[1:])
    with pytest.raises(ValueError, match="images must have shape"):
        model.run_batch(_images(2, 16))


@pytest.mark.slow
@pytest.mark.parametrize(("key", "size"), [("mobilenet_v2_0.35", 224), ("mobilenet_0.25", 224),
                                           ("mobilenet_v2_0.35", 96)])
def test_real_weights_on_litert_equal_keras_on_real_photos(key, size, shared_weights_dir, hymenoptera_dir,
                                                           tmp_path):
    from transfer_core.data import decode_for_model
    from transfer_core.models import build_classifier

    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    spec = ModelSpec(backbone=key, input_size=size, weights="imagenet")
    classifier = build_classifier(spec, 2, settings=settings)
    photos = sorted((hymenoptera_dir / "val" / "bees").glob("*.jpg"))[:8]
    images = np.stack([decode_for_model(str(path), size) for path in photos]).astype(np.float32)
    frozen = frozen_runtime.frozen_pass(classifier.feature_extractor, settings=settings, backbone=key,
                                        weights="imagenet", cut="pool", check_images=images)
    assert frozen.runtime == "litert", frozen.reason
    assert frozen.convert_seconds > 0 and frozen.difference <= frozen_runtime.TOLERANCE
    _assert_same(frozen.model.run(images), np.asarray(classifier.feature_extractor(images, training=False)))
    assert len(list((settings.cache_dir / "litert").glob("*.tflite"))) == 1


def test_the_key_changes_when_the_weights_file_changes(shared_weights_dir, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    shutil.copy2(shared_weights_dir / name, weights / name)
    settings = Settings(home=tmp_path / "home", weights_dir=weights)

    def key(size: int = 96, cut: str = "pool") -> str:
        return frozen_runtime.model_key(frozen_api.key_parts(settings, "mobilenet_v2_0.35", size, cut))

    first = key()
    assert key() == first
    assert len({first, key(128), key(cut="prefix:block_12_add")}) == 3
    os.utime(weights / name, ns=(time.time_ns(), time.time_ns() + 10**9))  # Same bytes, replaced later.
    touched = key()
    assert touched != first
    with open(weights / name, "ab") as handle:
        handle.write(b"\0")  # Another size.
    assert key() not in (first, touched)


def test_one_conversion_when_two_converters_race(tmp_path):
    folder = tmp_path / "litert"
    calls = []

    def convert() -> bytes:
        calls.append(1)
        time.sleep(0.3)
        return b"flatbuffer"

    results = []
    threads = [threading.Thread(target=lambda: results.append(store.convert_once(folder, "k", {"a": 1}, convert)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1  # The second waited on the lock, then read the first's file.
    assert sorted(seconds > 0 for _, seconds in results) == [False, True]
    assert all(content == b"flatbuffer" for content, _ in results)
    # A damaged file is never handed to an interpreter: it is converted again.
    (folder / "k.tflite").write_bytes(b"flatbuffeR")
    assert store.read_flatbuffer(folder, "k") is None
    assert store.convert_once(folder, "k", {"a": 1}, convert)[0] == b"flatbuffer" and len(calls) == 2
    assert not list(folder.glob(".*tmp"))


def _train(spec, settings, **train_kwargs):
    from transfer_core.training import train

    config = RunConfig(dataset=spec, model=PRETRAINED, freeze=FreezePlan(mode="top_blocks", top_blocks=2),
                       train=TrainConfig(**{"epochs": 1, "batch_size": 8, **train_kwargs}))
    events = []
    result = train(config, emit=events.append, settings=settings)
    assert result.status == "finished", result.reason
    return result, [e for e in events if e["type"] == "frozen_runtime"]


def test_features_and_prefix_run_on_litert_and_the_events_say_so(tiny_dataset, shared_weights_dir, tmp_path):
    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    _, events = _train(tiny_dataset, settings, strategy="fine_tuning", fine_tune_epochs=1)
    assert [e["stage"] for e in events] == ["features", "prefix"]
    for event in events:
        assert event["runtime"] == "litert" and event["threads"] == frozen_runtime.available_cores()
        assert event["convert_seconds"] > 0 and "converted now" in event["reason"]
        assert event["difference"] <= frozen_runtime.TOLERANCE
    assert len(list((settings.cache_dir / "litert").glob("*.tflite"))) == 2
    # A later run in a new worker (without the features, so the backbone runs again) reuses the conversion.
    frozen_runtime.forget_loaded()
    shutil.rmtree(settings.cache_dir / "features")
    _, events = _train(tiny_dataset, settings, seed=1)
    assert [(e["runtime"], e["convert_seconds"]) for e in events] == [("litert", 0.0)]
    assert events[0]["reason"] == ("converted earlier, read from the cache; "
                                   "the same weights passed the check against Keras before")
    assert events[0]["difference"] <= frozen_runtime.TOLERANCE

    from transfer_core.display.run_text import describe_event

    assert "features on LiteRT (XNNPACK, " in describe_event({**events[0], "time": 0})


def test_a_network_that_does_not_convert_runs_on_tensorflow_and_says_why(tiny_dataset, shared_weights_dir,
                                                                         tmp_path, monkeypatch):
    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    lite, _ = _train(tiny_dataset, Settings(home=tmp_path / "lite", weights_dir=shared_weights_dir))
    frozen_runtime.forget_loaded()  # A new worker, with a new cache folder.

    def refuse(model):
        raise RuntimeError("this op is not supported")

    monkeypatch.setattr(frozen_api, "to_flatbuffer", refuse)
    result, events = _train(tiny_dataset, settings)
    assert [(e["runtime"], e["threads"], e["convert_seconds"]) for e in events] == [("tensorflow", None, None)]
    assert "did not convert to LiteRT (RuntimeError: this op is not supported)" in events[0]["reason"]
    # Same run on TensorFlow: the same head from features equal to 1e-5.
    assert abs(result.report["val_accuracy"] - lite.report["val_accuracy"]) <= 1 / result.report["num_val"]
    # The failure is remembered: the next run does not spend the conversion again.
    monkeypatch.setattr(frozen_api, "to_flatbuffer", lambda model: pytest.fail("converted again"))
    shutil.rmtree(settings.cache_dir / "features")
    _, events = _train(tiny_dataset, settings)
    assert "failed before (RuntimeError: this op is not supported)" in events[0]["reason"]


def test_outputs_that_differ_from_keras_run_on_tensorflow(tiny_dataset, shared_weights_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(frozen_api, "check_difference", lambda model, network, images: 0.02)
    _, events = _train(tiny_dataset, Settings(home=tmp_path / "home", weights_dir=shared_weights_dir))
    assert events[0]["runtime"] == "tensorflow" and events[0]["difference"] == 0.02
    assert "differ from Keras' by 0.02 of their scale (more than 0.0001)" in events[0]["reason"]


def test_the_setting_turns_litert_off(tiny_dataset, shared_weights_dir, tmp_path, monkeypatch):
    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir, frozen_runtime="tensorflow")
    _, events = _train(tiny_dataset, settings)
    assert events[0]["runtime"] == "tensorflow" and "TRANSFER_FROZEN_RUNTIME=tensorflow" in events[0]["reason"]
    assert not (settings.cache_dir / "litert").exists()
    monkeypatch.setenv("TRANSFER_FROZEN_RUNTIME", "tensorflow")
    assert Settings.from_env().frozen_runtime == "tensorflow"
    monkeypatch.setenv("TRANSFER_FROZEN_RUNTIME", "tpu")
    with pytest.raises(ValueError, match="frozen_runtime must be one of"):
        Settings.from_env()


def test_random_weights_stay_on_tensorflow(tmp_path):
    import keras

    from transfer_core.models import build_classifier

    classifier = build_classifier(ModelSpec(backbone="mobilenet_v2_0.35", input_size=32, weights="random"), 2)
    frozen = frozen_runtime.frozen_pass(classifier.feature_extractor, settings=Settings(home=tmp_path),
                                        backbone="mobilenet_v2_0.35", weights="random", cut="pool",
                                        check_images=_images(2, 32))
    assert frozen.model is None and "random weights" in frozen.reason
    assert keras.mixed_precision.global_policy().name == "float32"


def test_the_standby_prepares_the_demo_networks(shared_weights_dir, tmp_path):
    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    first = frozen_runtime.prepare_demo(settings)
    assert [line.split(":")[0] for line in first] == ["pool", "prefix"], first
    assert all("converted now" in line for line in first), first
    assert all("already loaded in this worker" in line for line in frozen_runtime.prepare_demo(settings))
    assert frozen_runtime.prepare_demo(Settings(home=tmp_path / "off", weights_dir=shared_weights_dir,
                                                frozen_runtime="tensorflow")) == []


def test_start_sh_prepares_the_demo_once_and_later_starts_skip_it_without_tensorflow(shared_weights_dir, tmp_path):
    from transfer_core.frozen_runtime.prepare import demo_is_prepared

    weights = tmp_path / "weights"
    shutil.copytree(shared_weights_dir, weights)
    settings = Settings(home=tmp_path / "home", weights_dir=weights)
    assert not demo_is_prepared(settings)
    command = [sys.executable, "-c", "import sys; from transfer_core.cli import main; code = main(sys.argv[1:]); "
               "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(code)",
               "prepare", "--if-needed", "--home", str(settings.home), "--weights-dir", str(weights)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert first.returncode == 0 and "converted now" in first.stdout, first.stdout + first.stderr
    assert demo_is_prepared(settings)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert "ready (converted earlier)" in again.stdout and "no tensorflow" in again.stdout, again.stdout
    # A replaced weights file, or a converted network the cache let go of, needs a new conversion.
    weights_file = next(weights.glob("mobilenet_v2_weights_*_0.35_224_no_top.h5"))
    os.utime(weights_file, ns=(weights_file.stat().st_atime_ns, weights_file.stat().st_mtime_ns + 10**9))
    assert not demo_is_prepared(settings)
    frozen_runtime.prepare_demo(settings)
    assert demo_is_prepared(settings)
    folder = store.folder_of(settings.cache_dir)
    kept = json.loads((folder / "demo-prepared.json").read_text())["keys"]
    assert len(kept) == 2
    (folder / f"{kept[1]}.tflite").unlink()
    assert not demo_is_prepared(settings)


@pytest.mark.slow
def test_explore_predicts_a_feature_extraction_run_on_litert_like_keras(tiny_dataset, shared_weights_dir, tmp_path,
                                                                       caplog):
    from transfer_core.explore import embeddings, explain

    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    result, _ = _train(tiny_dataset, settings)
    model = result.classifier.model
    config = RunConfig(dataset=tiny_dataset, model=PRETRAINED, train=TrainConfig(epochs=1, batch_size=8))
    with caplog.at_level("INFO", logger="transfer_core.explore.explain"):
        frame, images = explain.validation_predictions(model, config, settings)
    assert "pooled features on LiteRT" in caplog.text
    keras_probabilities = explain.predict(model, images)
    np.testing.assert_array_equal(frame["predicted_index"], keras_probabilities.argmax(axis=1))
    np.testing.assert_allclose(frame["confidence"], keras_probabilities.max(axis=1), atol=1e-4)
    found = embeddings.embeddings(model, config, settings=settings)
    assert set(found.frame["model"]) == {"before", "after"} and len(found.frame)


def test_a_fine_tuned_backbone_fails_the_check(tiny_dataset, shared_weights_dir, tmp_path):
    from transfer_core.models import build_classifier

    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    classifier = build_classifier(PRETRAINED, 2, settings=settings)
    images = _images(4, 96, seed=3)
    assert frozen_runtime.frozen_pass(classifier.feature_extractor, settings=settings, backbone="mobilenet_v2_0.35",
                                      weights="imagenet", cut="pool", check_images=images).model is not None
    kernel = classifier.backbone.get_layer("Conv1")
    kernel.kernel.assign(kernel.kernel.numpy() * 1.05)  # What training the first block would do.
    frozen = frozen_runtime.frozen_pass(classifier.feature_extractor, settings=settings,
                                        backbone="mobilenet_v2_0.35", weights="imagenet", cut="pool",
                                        check_images=images)
    assert frozen.model is None and "differ from Keras'" in frozen.reason


def test_the_converted_file_lives_beside_the_feature_cache(tmp_path):
    assert store.folder_of(Settings(home=tmp_path).cache_dir) == tmp_path / "cache" / "litert"
    assert Path(store.folder_of(tmp_path)).name == frozen_runtime.FOLDER


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["feature_extraction", "fine_tuning"])
def test_the_test_split_goes_through_the_frozen_part_on_litert_and_scores_like_keras(strategy, shared_weights_dir,
                                                                                    hymenoptera_dir, tmp_path):
    from transfer_core.cli import prepare_dataset
    from transfer_core.data import decode_for_model
    from transfer_core.training import train

    root = tmp_path / "photos"
    for split, start, count in (("train", 0, 12), ("val", 12, 6), ("test", 18, 10)):
        for label in ("ants", "bees"):
            (root / split / label).mkdir(parents=True)
            for photo in sorted((hymenoptera_dir / "train" / label).glob("*.jpg"))[start:start + count]:
                shutil.copy(photo, root / split / label / photo.name)
    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    spec = prepare_dataset(root, settings, quiet=True)
    config = RunConfig(dataset=spec, model=PRETRAINED, freeze=FreezePlan(mode="top_blocks", top_blocks=1),
                       train=TrainConfig(strategy=strategy, epochs=2, fine_tune_epochs=2, batch_size=8))
    events = []
    result = train(config, emit=events.append, settings=settings)
    assert result.status == "finished", result.reason
    test = result.report["evaluation"]["test"]
    assert test["num_images"] == 20
    # Nothing after the training: no stage, no progress event, no Keras predict through the whole network.
    last_epoch = max(i for i, e in enumerate(events) if e["type"] == "epoch_end")
    assert [e["type"] for e in events[last_epoch + 1:] if e["type"] in ("stage", "progress")] == []
    frozen = [e for e in events if e["type"] == "frozen_runtime"]
    assert frozen and all(e["runtime"] == "litert" for e in frozen), frozen
    # The test photos' frozen outputs were computed (and cached) like the training splits': train and val
    # features, plus the prefix of train, val and test when fine-tuning.
    cached = list((settings.cache_dir / "features").glob("*.npy"))
    assert len(cached) == {"feature_extraction": 3, "fine_tuning": 5}[strategy], cached
    # The same score as the kept Keras model over the decoded test photos.
    paths = sorted((root / "test").rglob("*.jpg"))
    images = np.stack([decode_for_model(str(path), PRETRAINED.input_size) for path in paths]).astype(np.float32)
    probabilities = np.asarray(result.classifier.model(images, training=False))
    truth = np.array([spec.class_names.index(path.parent.name) for path in paths])
    keras_loss = float(-np.log(np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1.0)).mean())
    assert test["loss"] == pytest.approx(keras_loss, rel=1e-3, abs=1e-4)
    assert test["accuracy"] == pytest.approx(float((probabilities.argmax(axis=1) == truth).mean()))
