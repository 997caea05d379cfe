"""Before transfer: the top ImageNet classes an unmodified model gives your images."""

from __future__ import annotations

import pytest
from PIL import Image

from transfer_core.config import Settings
from transfer_core.explore.pretrained import imagenet_predictions, predict_top_classes


@pytest.fixture
def image_paths(tmp_path):
    paths = []
    for index, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        path = tmp_path / f"img{index}.png"
        Image.new("RGB", (40, 30), color).save(path)
        paths.append(str(path))
    return paths


def test_top_classes_are_sorted_probabilities_per_image(image_paths):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(x))
    names = [f"class_{i}" for i in range(5)]
    results = predict_top_classes(model, [keras.layers.Rescaling(1 / 255.0)], image_paths, names, top=3)
    assert [r.path for r in results] == image_paths
    for result in results:
        probabilities = [p for _, p in result.top]
        assert len(result.top) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert all(name in names for name, _ in result.top)
    assert results[0].top != results[1].top  # Red and blue images differ.


def test_class_names_must_match_outputs(image_paths):
    import keras

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="3 outputs"):
        predict_top_classes(model, [], image_paths, ["a", "b"], top=1)
    with pytest.raises(ValueError, match="top must be"):
        predict_top_classes(model, [], image_paths, ["a", "b", "c"], top=0)
    assert predict_top_classes(model, [], [], ["a", "b", "c"]) == []


@pytest.mark.slow
def test_real_imagenet_model_recognises_an_elephant(shared_weights_dir, shared_images_dir, tmp_path):
    settings = Settings(home=tmp_path, weights_dir=shared_weights_dir)
    results = imagenet_predictions([shared_images_dir / "elephant.jpg"], "mobilenet_0.25", settings, top=5)
    names = [name for name, _ in results[0].top]
    assert any("elephant" in name.lower() or "tusker" in name.lower() for name in names), names
    assert 0.0 < results[0].top[0][1] <= 1.0
