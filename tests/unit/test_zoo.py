"""Unit tests of the backbone zoo: registry facts, weight resolution, building, preprocessing."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transfer_core import zoo
from transfer_core.config import Settings
from transfer_core.zoo import BACKBONES, WeightsUnavailableError

REPO_ROOT = Path(__file__).resolve().parents[2]

REQUIRED_KEYS = (
    "mobilenet_0.25",
    "mobilenet_v2_0.35",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_v2_b0",
    "resnet50",
    "resnet50_v2",
    "vgg16",
    "inception_v3",
    "xception",
    "densenet121",
    "convnext_tiny",
)


@pytest.fixture(autouse=True)
def _isolated_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Keras cache at an empty folder so the real ~/.keras cannot leak into tests."""
    keras_home = tmp_path / "keras_home"
    (keras_home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    return keras_home


@pytest.fixture()
def weights_dir(tmp_path: Path) -> Path:
    path = tmp_path / "weights"
    path.mkdir()
    return path


def _touch(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"not really weights")
    return path


def _save_legacy_h5(model, path: Path) -> None:
    """Write weights in the legacy HDF5 layout Keras' own weight files use."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


# ---------------------------------------------------------------------------------------------
# Importing stays cheap
# ---------------------------------------------------------------------------------------------


def test_importing_zoo_and_freezing_does_not_import_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from transfer_core import zoo, freezing\n"
        "from transfer_core.config import Settings\n"
        "frame = zoo.zoo_table(Settings(weights_dir=sys.argv[1]))\n"
        "zoo.offline_backbones(Settings(weights_dir=sys.argv[1]))\n"
        "zoo.resolve_weights\n"
        "assert len(frame) == len(zoo.BACKBONES)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'streamlit'))\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_registry_has_the_required_backbones() -> None:
    missing = [key for key in REQUIRED_KEYS if key not in BACKBONES]
    assert not missing
    for key, info in BACKBONES.items():
        assert info.key == key


@pytest.mark.parametrize("key", sorted(BACKBONES))
def test_registry_facts_are_consistent(key: str) -> None:
    info = BACKBONES[key]
    assert info.preprocessing in zoo.PREPROCESSING_MODES
    assert info.min_input_size <= info.default_input_size <= zoo.MAX_INPUT_SIZE
    assert info.default_input_size in info.allowed_input_sizes
    assert all(info.min_input_size <= size <= zoo.MAX_INPUT_SIZE for size in info.allowed_input_sizes)
    assert info.default_input_size in info.pretrained_sizes
    assert set(info.has_top_weights_for) <= set(info.pretrained_sizes)
    assert info.params > 0 and info.size_mb > 0
    assert info.imagenet_top1 is not None and 40.0 < info.imagenet_top1 < 90.0
    assert info.top1_source
    assert info.weights_origin.startswith("https://storage.googleapis.com/")
    assert info.weights_file(False).endswith(".h5") and info.weights_file(True).endswith(".h5")
    assert info.weights_file(False) != info.weights_file(True)
    # Models that hold their own preprocessing are built with it (and get no extra layers).
    if info.family in ("mobilenet_v3", "efficientnet_v2", "convnext"):
        assert info.constructor_kwargs["include_preprocessing"] is True
    if info.family in ("mobilenet_v3", "efficientnet", "efficientnet_v2", "convnext"):
        assert info.preprocessing == "none"


def test_backbone_info_is_frozen_and_hashable() -> None:
    info = BACKBONES["mobilenet_v2_0.35"]
    with pytest.raises(AttributeError):
        info.key = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.constructor_kwargs["alpha"] = 1.0  # type: ignore[index]
    assert hash(info) == hash(BACKBONES["mobilenet_v2_0.35"])


def test_weight_file_names_are_exactly_keras_names() -> None:
    assert BACKBONES["mobilenet_0.25"].weights_file(False) == "mobilenet_2_5_224_tf_no_top.h5"
    assert BACKBONES["mobilenet_0.25"].weights_file(True, 160) == "mobilenet_2_5_160_tf.h5"
    assert BACKBONES["mobilenet"].weights_file(False, 128) == "mobilenet_1_0_128_tf_no_top.h5"
    assert (
        BACKBONES["mobilenet_v2_0.35"].weights_file(False)
        == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    )
    assert (
        BACKBONES["mobilenet_v2"].weights_file(True, 96)
        == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96.h5"
    )
    assert (
        BACKBONES["mobilenet_v3_small"].weights_file(False)
        == "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"
    )
    assert BACKBONES["efficientnet_b0"].weights_file(False) == "efficientnetb0_notop.h5"
    assert BACKBONES["efficientnet_v2_b0"].weights_file(False) == "efficientnetv2-b0_notop.h5"
    assert BACKBONES["resnet50"].weights_file(False) == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert BACKBONES["resnet50_v2"].weights_file(True) == "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"
    assert BACKBONES["convnext_tiny"].weights_file(False) == "convnext_tiny_notop.h5"
    assert BACKBONES["mobilenet_0.25"].weights_url(False) == (
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/mobilenet_2_5_224_tf_no_top.h5"
    )


@pytest.mark.parametrize("key", sorted(BACKBONES))
def test_urls_and_hashes_agree_with_installed_keras(key: str) -> None:
    import keras

    info = BACKBONES[key]
    module = sys.modules[getattr(keras.applications, info.constructor).__module__]
    # ResNetV2 loads its weights through keras.src.applications.resnet: look there too.
    modules = [module] + [
        value
        for value in vars(module).values()
        if inspect.ismodule(value) and value.__name__.startswith("keras.src.applications.")
    ]
    source = "".join(inspect.getsource(m) for m in modules)
    urls = {
        value
        for m in modules
        for value in vars(m).values()
        if isinstance(value, str) and value.startswith("https://")
    }
    assert info.weights_origin in urls or info.weights_url(False) in urls, sorted(urls)
    for digest in (info.no_top_hash, info.top_hash):
        if digest is not None:
            assert digest in source
    if info.family in ("mobilenet", "mobilenet_v2"):
        # Keras checks no hash for these files.
        assert info.no_top_hash is None and info.top_hash is None


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(BACKBONES))
def test_params_match_keras(key: str) -> None:
    import keras

    info = BACKBONES[key]
    build = getattr(keras.applications, info.constructor)
    model = build(weights=None, include_top=True, **dict(info.constructor_kwargs))
    assert model.count_params() == info.params


def test_get_backbone_info_lists_valid_keys() -> None:
    assert zoo.get_backbone_info("resnet50").constructor == "ResNet50"
    with pytest.raises(ValueError, match="mobilenet_v2_0.35") as raised:
        zoo.get_backbone_info("resnet5000")
    assert "resnet5000" in str(raised.value)


def test_check_input_size() -> None:
    assert zoo.check_input_size("mobilenet_v2_0.35", 0) == 224
    assert zoo.check_input_size("inception_v3", 0) == 299
    assert zoo.check_input_size("mobilenet_v2_0.35", 96) == 96
    assert zoo.check_input_size("mobilenet_v2_0.35", 32) == 32
    with pytest.raises(ValueError, match="from 32 to 1024") as raised:
        zoo.check_input_size("mobilenet_v2_0.35", 31)
    assert "input_size=31" in str(raised.value)
    with pytest.raises(ValueError, match="from 75 to"):
        zoo.check_input_size("inception_v3", 74)
    with pytest.raises(ValueError, match="from 71 to"):
        zoo.check_input_size("xception", 70)
    with pytest.raises(ValueError, match="1024"):
        zoo.check_input_size("resnet50", 1025)
    with pytest.raises(ValueError, match="integer"):
        zoo.check_input_size("resnet50", 224.0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Weight resolution
# ---------------------------------------------------------------------------------------------


def test_resolve_finds_exact_file_in_weights_dir(weights_dir: Path) -> None:
    path = _touch(weights_dir, "mobilenet_2_5_224_tf_no_top.h5")
    settings = Settings(weights_dir=weights_dir)
    assert zoo.resolve_weights("mobilenet_0.25", settings=settings) == str(path)
    top = _touch(weights_dir, "mobilenet_2_5_224_tf.h5")
    assert zoo.resolve_weights("mobilenet_0.25", include_top=True, settings=settings) == str(top)


def test_resolve_reads_settings_from_env(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _touch(weights_dir, "mobilenet_2_5_224_tf_no_top.h5")
    monkeypatch.setenv("TRANSFER_WEIGHTS_DIR", str(weights_dir))
    assert zoo.resolve_weights("mobilenet_0.25", settings=Settings.from_env()) == str(path)


def test_no_top_weights_of_other_sizes_fall_back_to_224(weights_dir: Path) -> None:
    settings = Settings(weights_dir=weights_dir)
    file_224 = _touch(weights_dir, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
    assert zoo.resolve_weights("mobilenet_v2_0.35", 160, settings=settings) == str(file_224)
    assert zoo.resolve_weights("mobilenet_v2_0.35", 100, settings=settings) == str(file_224)
    # A file made for the size itself wins.
    file_160 = _touch(weights_dir, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_160_no_top.h5")
    assert zoo.resolve_weights("mobilenet_v2_0.35", 160, settings=settings) == str(file_160)
    # Families with one file for all sizes use it at any size.
    resnet = _touch(weights_dir, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert zoo.resolve_weights("resnet50", 128, settings=settings) == str(resnet)


def test_with_top_weights_need_their_own_size(weights_dir: Path) -> None:
    settings = Settings(weights_dir=weights_dir)
    _touch(weights_dir, "mobilenet_2_5_224_tf.h5")
    with pytest.raises(WeightsUnavailableError, match="with-top"):
        zoo.resolve_weights("mobilenet_0.25", 100, include_top=True, settings=settings)
    assert not zoo.weights_available_offline("mobilenet_0.25", 100, include_top=True, settings=settings)
    assert zoo.weights_available_offline("mobilenet_0.25", 224, include_top=True, settings=settings)


def test_keras_cache_is_searched_after_weights_dir(weights_dir: Path, _isolated_keras_cache: Path) -> None:
    cached = _touch(_isolated_keras_cache / "models", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    settings = Settings(weights_dir=weights_dir)
    assert zoo.resolve_weights("resnet50", settings=settings) == str(cached)
    assert zoo.resolve_weights("resnet50", settings=Settings()) == str(cached)
    preferred = _touch(weights_dir, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert zoo.resolve_weights("resnet50", settings=settings) == str(preferred)


def test_missing_weights_offline_give_a_clear_error(weights_dir: Path, _isolated_keras_cache: Path) -> None:
    with pytest.raises(WeightsUnavailableError) as raised:
        zoo.resolve_weights("resnet50", settings=Settings(weights_dir=weights_dir))
    message = str(raised.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(weights_dir) in message and str(_isolated_keras_cache / "models") in message
    assert "TRANSFER_WEIGHTS_DIR" in message
    assert "random initialisation (no transfer)" in message
    assert "TRANSFER_OFFLINE" in message
    assert isinstance(raised.value, RuntimeError)


def test_download_uses_keras_url_and_hash(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    calls = []

    def fake_get_file(fname, origin=None, cache_subdir="datasets", file_hash=None, **kwargs):
        calls.append({"fname": fname, "origin": origin, "cache_subdir": cache_subdir, "file_hash": file_hash})
        return "/somewhere/models/" + fname

    monkeypatch.setenv("TRANSFER_OFFLINE", "0")
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    path = zoo.resolve_weights("resnet50", settings=Settings(weights_dir=weights_dir, offline=False))
    assert path == "/somewhere/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert calls == [
        {
            "fname": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "origin": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "cache_subdir": "models",
            "file_hash": "4d473c1dd8becc155b73f8504c6f6626",
        }
    ]


def test_download_failure_becomes_weights_unavailable(
    weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.delenv("TRANSFER_OFFLINE")
    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with pytest.raises(WeightsUnavailableError) as raised:
        zoo.resolve_weights("mobilenet_v2_0.35", 160, settings=Settings(weights_dir=weights_dir, offline=False))
    message = str(raised.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_160_no_top.h5" in message
    assert "URL fetch failure" in message
    assert "random initialisation (no transfer)" in message
    assert raised.value.__cause__ is not None


def test_offline_listing_and_zoo_table(weights_dir: Path) -> None:
    settings = Settings(weights_dir=weights_dir)
    assert zoo.offline_backbones(settings) == []
    _touch(weights_dir, "mobilenet_2_5_224_tf_no_top.h5")
    _touch(weights_dir, "mobilenet_2_5_224_tf.h5")
    _touch(weights_dir, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
    assert zoo.offline_backbones(settings) == ["mobilenet_0.25", "mobilenet_v2_0.35"]
    assert zoo.weights_available_offline("mobilenet_v2_0.35", 128, settings=settings)
    assert not zoo.weights_available_offline("mobilenet_v2_0.35", include_top=True, settings=settings)

    frame = zoo.zoo_table(settings)
    assert list(frame.columns) == [
        "key",
        "name",
        "params_millions",
        "depth",
        "default_input_size",
        "imagenet_top1",
        "size_mb",
        "family",
        "weights_offline",
        "top_weights_offline",
    ]
    assert list(frame["key"]) == list(BACKBONES)
    rows = frame.set_index("key")
    assert rows.loc["mobilenet_0.25", "weights_offline"] and rows.loc["mobilenet_0.25", "top_weights_offline"]
    assert rows.loc["mobilenet_v2_0.35", "weights_offline"]
    assert not rows.loc["mobilenet_v2_0.35", "top_weights_offline"]
    assert not rows.loc["resnet50", "weights_offline"]
    assert rows.loc["vgg16", "params_millions"] == pytest.approx(138.36)
    assert rows.loc["mobilenet_0.25", "imagenet_top1"] == pytest.approx(50.6)
    assert rows.loc["mobilenet_v2_0.35", "imagenet_top1"] == pytest.approx(60.3)


# ---------------------------------------------------------------------------------------------
# Preprocessing layers
# ---------------------------------------------------------------------------------------------


def _reference_preprocess(key: str):
    import keras

    module = {
        "mobilenet_v2_0.35": keras.applications.mobilenet_v2,
        "mobilenet_0.25": keras.applications.mobilenet,
        "resnet50_v2": keras.applications.resnet_v2,
        "inception_v3": keras.applications.inception_v3,
        "xception": keras.applications.xception,
        "densenet121": keras.applications.densenet,
        "resnet50": keras.applications.resnet50,
        "vgg16": keras.applications.vgg16,
        "efficientnet_b0": keras.applications.efficientnet,
        "efficientnet_v2_b0": keras.applications.efficientnet_v2,
        "mobilenet_v3_small": keras.applications.mobilenet_v3,
        "convnext_tiny": keras.applications.convnext,
    }[key]
    return module.preprocess_input


@pytest.mark.parametrize(
    ("key", "mode"),
    [
        ("mobilenet_v2_0.35", "tf"),
        ("mobilenet_0.25", "tf"),
        ("resnet50_v2", "tf"),
        ("inception_v3", "tf"),
        ("xception", "tf"),
        ("densenet121", "torch"),
        ("resnet50", "caffe"),
        ("vgg16", "caffe"),
        ("efficientnet_b0", "none"),
        ("efficientnet_v2_b0", "none"),
        ("mobilenet_v3_small", "none"),
        ("convnext_tiny", "none"),
    ],
)
def test_preprocessing_layers_match_keras_preprocess_input(key: str, mode: str) -> None:
    import keras

    assert BACKBONES[key].preprocessing == mode
    pixels = np.random.default_rng(0).uniform(0.0, 255.0, size=(2, 8, 8, 3)).astype("float32")
    expected = np.asarray(_reference_preprocess(key)(pixels.copy()))
    layers = zoo.preprocessing_layers(key)
    if mode == "none":
        assert layers == []
    x = pixels
    for layer in layers:
        assert not isinstance(layer, keras.layers.Lambda)
        assert type(layer).__module__.startswith("keras.src.layers")
        x = np.asarray(layer(x))
    np.testing.assert_allclose(x, expected, atol=1e-4, rtol=0)


def test_preprocessing_survives_keras_save_and_safe_load(tmp_path: Path) -> None:
    import keras

    for key in ("resnet50", "densenet121", "mobilenet_v2_0.35"):
        inputs = keras.Input((8, 8, 3))
        x = inputs
        for layer in zoo.preprocessing_layers(key):
            x = layer(x)
        model = keras.Model(inputs, x)
        assert model.trainable_weights == []
        path = tmp_path / f"{key}.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        pixels = np.random.default_rng(1).uniform(0.0, 255.0, size=(1, 8, 8, 3)).astype("float32")
        np.testing.assert_allclose(np.asarray(loaded(pixels)), np.asarray(model(pixels)), atol=1e-5)
        expected = np.asarray(_reference_preprocess(key)(pixels.copy()))
        np.testing.assert_allclose(np.asarray(loaded(pixels)), expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Building backbones
# ---------------------------------------------------------------------------------------------


def test_build_random_backbone() -> None:
    base = zoo.build_backbone("mobilenet_v2_0.35", 96, weights="random")
    assert base.name == "backbone"
    assert tuple(base.input.shape) == (None, 96, 96, 3)
    assert tuple(base.output.shape) == (None, 3, 3, 1280)


def test_build_rejects_bad_arguments_before_any_work() -> None:
    with pytest.raises(ValueError, match="weights"):
        zoo.build_backbone("mobilenet_v2_0.35", 96, weights="imagenet21k")
    with pytest.raises(ValueError, match="from 75 to"):
        zoo.build_backbone("inception_v3", 64, weights="random")
    with pytest.raises(ValueError, match="Unknown backbone"):
        zoo.build_backbone("lenet", weights="random")


def test_build_with_missing_weights_raises(weights_dir: Path) -> None:
    with pytest.raises(
        WeightsUnavailableError, match="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96"
    ):
        zoo.build_backbone("mobilenet_v2", 96, settings=Settings(weights_dir=weights_dir))
    with pytest.raises(
        WeightsUnavailableError, match="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224.h5"
    ):
        zoo.build_imagenet_classifier("mobilenet_v2_0.35", settings=Settings(weights_dir=weights_dir))


def test_build_loads_weights_file_from_weights_dir(weights_dir: Path) -> None:
    import keras

    source = keras.applications.MobileNetV2(
        alpha=0.35, weights=None, include_top=False, input_shape=(96, 96, 3)
    )
    _save_legacy_h5(
        source, weights_dir / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    )
    base = zoo.build_backbone("mobilenet_v2_0.35", 96, settings=Settings(weights_dir=weights_dir))
    random_base = zoo.build_backbone("mobilenet_v2_0.35", 96, weights="random")
    for loaded, saved in zip(base.weights, source.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(saved))
    kernel = base.get_layer("Conv1").kernel
    assert not np.array_equal(np.asarray(kernel), np.asarray(random_base.get_layer("Conv1").kernel))


def test_unloadable_weights_file_raises_weights_unavailable(weights_dir: Path) -> None:
    _touch(weights_dir, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
    with pytest.raises(WeightsUnavailableError, match="could not be loaded"):
        zoo.build_backbone("mobilenet_v2_0.35", 96, settings=Settings(weights_dir=weights_dir))


def test_efficientnet_from_file_computes_like_keras_imagenet(
    weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keras adds a Rescaling layer only for weights="imagenet"; the zoo must match that model."""
    import keras
    from keras.src.applications import efficientnet as keras_efficientnet

    source = keras.applications.EfficientNetB0(weights=None, include_top=False, input_shape=(32, 32, 3))
    norm = next(layer for layer in source.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign([0.485, 0.456, 0.406])
    norm.adapt_variance.assign([0.229**2, 0.224**2, 0.225**2])
    path = weights_dir / "efficientnetb0_notop.h5"
    _save_legacy_h5(source, path)

    monkeypatch.setattr(keras_efficientnet.file_utils, "get_file", lambda *args, **kwargs: str(path))
    reference = keras.applications.EfficientNetB0(
        weights="imagenet", include_top=False, input_shape=(32, 32, 3)
    )
    plain = keras.applications.EfficientNetB0(weights=str(path), include_top=False, input_shape=(32, 32, 3))
    ours = zoo.build_backbone("efficientnet_b0", 32, settings=Settings(weights_dir=weights_dir))

    pixels = np.random.default_rng(2).uniform(0.0, 255.0, size=(2, 32, 32, 3)).astype("float32")

    def stem_input(model):
        # What the first convolution sees: the pixels after all preprocessing layers.
        return np.asarray(keras.Model(model.input, model.get_layer("stem_conv_pad").output)(pixels))

    expected = stem_input(reference)
    np.testing.assert_allclose(stem_input(ours), expected, rtol=1e-5, atol=1e-5)
    # Without the correction the file-loaded model would compute something else.
    assert not np.allclose(stem_input(plain), expected, rtol=1e-2, atol=1e-2)
    final = np.asarray(reference(pixels))
    scale = float(np.abs(final).max())
    np.testing.assert_allclose(np.asarray(ours(pixels)), final, rtol=1e-3, atol=1e-3 * scale)


# ---------------------------------------------------------------------------------------------
# ImageNet class names
# ---------------------------------------------------------------------------------------------


def _write_class_index(folder: Path) -> None:
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (folder / "imagenet_class_index.json").write_text(json.dumps(index), encoding="utf-8")


def test_imagenet_class_names_and_decode(weights_dir: Path) -> None:
    settings = Settings(weights_dir=weights_dir)
    with pytest.raises(WeightsUnavailableError, match="imagenet_class_index.json"):
        zoo.imagenet_class_names(settings)
    _write_class_index(weights_dir)
    names = zoo.imagenet_class_names(settings)
    assert len(names) == 1000 and names[0] == "class_0" and names[999] == "class_999"

    probs = np.zeros((2, 1000), dtype="float32")
    probs[0, [5, 7, 9]] = [0.2, 0.5, 0.3]
    probs[1, 42] = 1.0
    decoded = zoo.decode_imagenet(probs, top=3, settings=settings)
    assert [name for name, _ in decoded[0]] == ["class_7", "class_9", "class_5"]
    assert decoded[0][0][1] == pytest.approx(0.5)
    assert decoded[1][0] == ("class_42", pytest.approx(1.0))
    assert len(zoo.decode_imagenet(probs[1], top=5, settings=settings)) == 1
    with pytest.raises(ValueError, match="1000"):
        zoo.decode_imagenet(np.zeros((1, 10)), settings=settings)
    with pytest.raises(ValueError, match="top"):
        zoo.decode_imagenet(probs, top=0, settings=settings)
