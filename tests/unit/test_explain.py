"""Explanations on a tiny trained model: Grad-CAM, predictions, embeddings, what the model sees."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.runs import make_finished_run, tiny_config

from transfer_core.config import ModelSpec, Settings
from transfer_core.data import load_split_arrays
from transfer_core.explore import embeddings, explain, model_view

# 96 px gives MobileNetV2 a 3x3 last feature map, so a heat map can vary across the image.
MODEL = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="random", dropout_rate=0.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished feature-extraction run (random weights, 96 px) and its model loaded from model.keras."""
    from transfer_core.data import make_demo_dataset

    root = tmp_path_factory.mktemp("explain")
    spec = make_demo_dataset(root / "data", images_per_class=12, image_size=64)
    settings = Settings(home=root / "home")
    config = tiny_config(spec, model=MODEL, epochs=4, learning_rate=3e-3)
    run_dir, result = make_finished_run(root / "runs", config, settings)
    model = explain.load_model(run_dir)
    images, labels = load_split_arrays(spec, "val", 96)
    return {"config": config, "run_dir": run_dir, "result": result, "model": model, "images": images,
            "labels": labels, "settings": settings}


def test_load_model_needs_a_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trained model"):
        explain.load_model(tmp_path)


def test_classifier_parts_finds_the_nested_pieces(trained):
    parts = explain.classifier_parts(trained["model"])
    assert parts.backbone.name == "backbone" and parts.head.name == "head" and parts.pool.name == "pool"
    assert [layer.name for layer in parts.preprocessing] == ["preprocess_tf"]
    assert parts.input_size == 96


def test_classifier_parts_rejects_other_models():
    import keras

    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="Not a Transfer Lab classifier"):
        explain.classifier_parts(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_predict_matches_keras_and_resizes_other_sizes(trained):
    model, images = trained["model"], trained["images"]
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(explain.predict(model, images), expected, atol=1e-5)
    bigger = np.repeat(np.repeat(images[:2], 2, axis=1), 2, axis=2)  # 192 px: resized back to 96
    assert explain.predict(model, bigger).shape == (2, 4)


def test_top_k_sorts_classes():
    frame = explain.top_k(np.array([0.1, 0.6, 0.3]), ["a", "b", "c"], k=2)
    assert list(frame["class"]) == ["b", "c"] and list(frame["rank"]) == [1, 2]
    with pytest.raises(ValueError, match="k must be"):
        explain.top_k(np.array([1.0]), ["a"], k=0)


def test_grad_cam_heat_map_shape_range_and_not_constant(trained):
    model, images = trained["model"], trained["images"]
    cam = explain.grad_cam(model, images[0])
    assert cam.heatmap.shape == (96, 96)
    assert cam.heatmap.dtype == np.float32
    assert cam.heatmap.min() >= 0.0 and cam.heatmap.max() <= 1.0
    assert cam.has_evidence and cam.heatmap.max() == pytest.approx(1.0, abs=1e-3)
    assert cam.heatmap.std() > 0.01, "the heat map should vary across the image"
    assert cam.feature_map_size == 3
    assert cam.overlay.shape == (96, 96, 3) and cam.overlay.dtype == np.uint8
    probabilities = explain.predict(model, images[0])[0]
    assert cam.class_index == int(np.argmax(probabilities))
    assert cam.probability == pytest.approx(float(probabilities.max()), abs=1e-5)


def test_grad_cam_equals_the_closed_form_for_a_linear_head(trained):
    """With global average pooling and a softmax-linear head, Grad-CAM weights are the classifier's column."""
    import keras

    model, image = trained["model"], trained["images"][1]
    parts = explain.classifier_parts(model)
    class_index = 2
    x = image[None]
    for layer in parts.preprocessing:
        x = layer(x)
    feature_map = np.asarray(parts.backbone(x, training=False))[0]  # (3, 3, C)
    kernel = np.asarray(parts.head.get_layer("classifier").kernel)[:, class_index]
    expected = np.maximum((feature_map * kernel).sum(-1), 0)
    expected = expected / expected.max()
    heatmaps, _, _ = explain.grad_cam_batch(model, image[None], [class_index])
    # Bring the closed form to the input size with the same bilinear resize and peak scaling.
    resized = np.asarray(keras.ops.image.resize(expected[None, ..., None], (96, 96), interpolation="bilinear"))
    resized = resized[0, ..., 0] / resized.max()
    np.testing.assert_allclose(heatmaps[0], np.clip(resized, 0, 1), atol=1e-4)


def test_grad_cam_follows_the_image_size_and_checks_class_index(trained):
    model, image = trained["model"], trained["images"][0]
    import tensorflow as tf

    wide = tf.image.resize(image, (120, 150)).numpy()
    cam = explain.grad_cam(model, wide)
    assert cam.heatmap.shape == (120, 150) and cam.overlay.shape == (120, 150, 3)
    with pytest.raises(ValueError, match="class_indices must lie in 0..3"):
        explain.grad_cam(model, image, class_index=7)
    with pytest.raises(ValueError, match="shape"):
        explain.grad_cam(model, image[..., 0])


def test_colorize_and_overlay():
    colours = explain.colorize(np.array([[0.0, 1.0]]))
    assert colours[0, 0, 2] > colours[0, 0, 0]  # low = blue
    assert colours[0, 1, 0] > colours[0, 1, 2]  # high = red
    image = np.full((4, 4, 3), 100, np.float32)
    blended = explain.overlay(image, np.zeros((2, 2)), alpha=0.0)
    np.testing.assert_array_equal(blended, np.full((4, 4, 3), 100, np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        explain.overlay(image, np.zeros((4, 4)), alpha=2)


def test_validation_predictions_agree_with_the_report(trained):
    frame, images = explain.validation_predictions(trained["model"], trained["config"])
    report = trained["result"].report
    assert len(frame) == len(images) == report["num_val"]
    assert (frame["true"] == frame["true_index"].map(lambda i: trained["config"].dataset.class_names[i])).all()
    assert (frame["true"] == frame["predicted"]).mean() == pytest.approx(report["val_accuracy"])
    assert frame["path"].str.startswith("images/").all()


def test_pooled_features_match_the_feature_extractor(trained):
    features = embeddings.pooled_features(trained["model"], trained["images"])
    expected = trained["result"].classifier.feature_extractor.predict(trained["images"], verbose=0)
    assert features.shape == (len(trained["images"]), 1280)
    np.testing.assert_allclose(features, expected, atol=1e-4)


def test_project_shapes_and_limits():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 16))
    assert embeddings.project(features, "pca").shape == (40, 2)
    assert embeddings.project(features, "tsne").shape == (40, 2)
    assert embeddings.project(features[:, :1], "pca").shape == (40, 2)  # One feature: padded to 2-D.
    with pytest.raises(ValueError, match="method"):
        embeddings.project(features, "umap")
    with pytest.raises(ValueError, match="At least 3 points"):
        embeddings.project(features[:2])
    with pytest.raises(ValueError, match="t-SNE is limited"):
        embeddings.project(rng.normal(size=(embeddings.TSNE_MAX_IMAGES + 1, 4)), "tsne")


def test_embeddings_before_and_after(trained):
    result = embeddings.embeddings(trained["model"], trained["config"], settings=trained["settings"])
    n = trained["result"].report["num_val"]
    assert result.methods == ["PCA", "t-SNE"]
    assert len(result.frame) == 2 * 2 * n
    assert set(result.frame["model"]) == {"before", "after"}
    part = result.frame[(result.frame["model"] == "after") & (result.frame["method"] == "PCA")]
    assert part[["x", "y"]].shape == (n, 2) and np.isfinite(part[["x", "y"]].to_numpy()).all()
    assert set(part["label"]) <= set(trained["config"].dataset.class_names)
    assert all(score is None or -1 <= score <= 1 for score in result.separation.values())
    assert any("Feature extraction never changes the backbone" in note for note in result.notes)


def test_model_view_shows_resize_and_value_range(trained):
    image = trained["images"][0]
    view = model_view.model_view(image, "mobilenet_v2_0.35", 96)
    assert view.resized.shape == (96, 96, 3) and view.resized.dtype == np.uint8
    assert -1.0 <= view.output_range[0] < view.output_range[1] <= 1.0
    assert "-1..1" in view.description
    np.testing.assert_allclose(view.preprocessed, image / 127.5 - 1.0, atol=1e-5)
    caffe = model_view.model_view(image, "resnet50", 64)
    assert caffe.preprocessed.shape == (64, 64, 3)
    assert "BGR" in caffe.description and caffe.output_range[0] < -50


def test_model_view_from_file_bytes(trained):
    path = trained["config"].dataset.manifest_path.parent
    first = next((path / "images").rglob("*.png"))
    view = model_view.model_view(first.read_bytes(), "mobilenet_v2_0.35", 96)
    assert view.original_size == (64, 64)
    assert view.resized.shape == (96, 96, 3)
