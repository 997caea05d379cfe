"""Real ImageNet weights from ../shared/weights: resolution, loading and predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transfer_core import zoo
from transfer_core.config import Settings
from transfer_core.zoo import WeightsUnavailableError

pytestmark = pytest.mark.slow


@pytest.fixture()
def settings(shared_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # An empty Keras cache, so only the shared folder can provide weights.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    (tmp_path / "keras_home" / "models").mkdir(parents=True)
    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    return Settings(weights_dir=shared_weights_dir)


def _load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((size, size))
        return np.asarray(rgb, dtype="float32")[None]


def test_offline_backbones_include_the_shared_weights(settings: Settings) -> None:
    available = zoo.offline_backbones(settings)
    assert "mobilenet_0.25" in available and "mobilenet_v2_0.35" in available
    assert zoo.weights_available_offline("mobilenet_0.25", include_top=True, settings=settings)
    table = zoo.zoo_table(settings).set_index("key")
    assert table.loc["mobilenet_v2_0.35", "weights_offline"]
    assert not table.loc["resnet50", "weights_offline"]


@pytest.mark.parametrize("size", [224, 160])
def test_mobilenet_v2_loads_real_weights(settings: Settings, size: int) -> None:
    path = zoo.resolve_weights("mobilenet_v2_0.35", size, settings=settings)
    assert Path(path).name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    pretrained = zoo.build_backbone("mobilenet_v2_0.35", size, settings=settings)
    random_init = zoo.build_backbone("mobilenet_v2_0.35", size, weights="random")
    assert pretrained.name == "backbone"
    assert tuple(pretrained.input.shape) == (None, size, size, 3)
    kernel = np.asarray(pretrained.get_layer("Conv1").kernel)
    assert not np.allclose(kernel, np.asarray(random_init.get_layer("Conv1").kernel))
    # Trained BatchNormalization statistics are not the initial zeros and ones.
    moving_var = np.asarray(pretrained.get_layer("bn_Conv1").moving_variance)
    assert not np.allclose(moving_var, 1.0)
    # The same file gives the same weights at every input size.
    reference = zoo.build_backbone("mobilenet_v2_0.35", 224, settings=settings)
    np.testing.assert_array_equal(kernel, np.asarray(reference.get_layer("Conv1").kernel))


@pytest.mark.parametrize(
    ("image", "expected"), [("elephant.jpg", "African_elephant"), ("cheetah.jpg", "cheetah")]
)
def test_mobilenet_classifier_recognises_real_images(
    settings: Settings, shared_images_dir: Path, image: str, expected: str
) -> None:
    classifier = zoo.build_imagenet_classifier("mobilenet_0.25", settings=settings)
    assert classifier.name == "imagenet_classifier"
    x = _load_image(shared_images_dir / image, 224)
    for layer in zoo.preprocessing_layers("mobilenet_0.25"):
        x = layer(x)
    probs = np.asarray(classifier(x))
    assert probs.shape == (1, 1000)
    decoded = zoo.decode_imagenet(probs, top=5, settings=settings)[0]
    # Measured: African_elephant 0.47 (then tusker, Indian_elephant); cheetah 0.64 (then hyena).
    assert decoded[0][0] == expected, decoded
    assert decoded[0][1] > 0.3


def test_imagenet_class_names_from_the_shared_folder(settings: Settings) -> None:
    names = zoo.imagenet_class_names(settings)
    assert len(names) == 1000
    assert names[386] == "African_elephant" and names[293] == "cheetah"


def test_missing_backbone_weights_name_the_file(settings: Settings) -> None:
    with pytest.raises(WeightsUnavailableError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        zoo.build_backbone("resnet50", settings=settings)
    with pytest.raises(
        WeightsUnavailableError, match="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224.h5"
    ) as raised:
        zoo.build_imagenet_classifier("mobilenet_v2_0.35", settings=settings)
    assert str(settings.weights_dir) in str(raised.value)
