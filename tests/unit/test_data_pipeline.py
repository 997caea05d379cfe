"""The tf.data pipeline, decode_for_model parity, and the cheap import of transfer_core.data."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.images import encode
from PIL import Image

from transfer_core.config import Settings
from transfer_core.data import (
    DataError,
    ImageRejected,
    decode_for_model,
    ingest_uploads,
    load_split_arrays,
    make_demo_dataset,
    make_tf_dataset,
    read_manifest,
    split_paths,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_spec(tmp_path_factory: pytest.TempPathFactory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "ds", images_per_class=5, image_size=40)


@pytest.fixture(scope="module")
def mixed_spec(tmp_path_factory: pytest.TempPathFactory):
    """A data set with a stored JPEG (kept byte for byte), stored PNGs and a converted CMYK image."""
    rng = np.random.default_rng(0)
    files = []
    for index in range(4):
        pixels = rng.integers(0, 256, (30 + index, 50, 3), dtype=np.uint8)
        files.append((f"photo_{index}.jpg", encode(Image.fromarray(pixels), "JPEG", quality=85), "jpeg"))
        files.append((f"drawing_{index}.png", encode(Image.fromarray(pixels[::-1]), "PNG"), "png"))
    files.append(("print.jpg", encode(Image.new("CMYK", (20, 20), (10, 200, 30, 5)), "JPEG"), "png"))
    big = rng.integers(0, 256, (300, 1500, 3), dtype=np.uint8)
    files.append(("wide.jpg", encode(Image.fromarray(big), "JPEG"), "jpeg"))
    result = ingest_uploads(files, tmp_path_factory.mktemp("mixed") / "ds", settings=Settings())
    return result.spec, dict(zip([name for name, _, _ in files], [data for _, data, _ in files], strict=True))


def test_make_tf_dataset_shapes_dtypes_and_labels(demo_spec) -> None:
    dataset = make_tf_dataset(demo_spec, "train", image_size=32, batch_size=4)
    batches = list(dataset.as_numpy_iterator())
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])

    _, expected_labels = split_paths(demo_spec, "train")
    assert batches[0][0].shape == (4, 32, 32, 3)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert images.shape == (len(expected_labels), 32, 32, 3)
    np.testing.assert_array_equal(labels, expected_labels)
    assert images.min() >= 0.0 and images.max() <= 255.0 and images.max() > 1.0
    assert set(labels.tolist()) == set(range(demo_spec.num_classes))


def test_shuffle_is_seeded_and_reshuffles_each_epoch(demo_spec) -> None:
    def label_order(dataset) -> list[int]:
        return np.concatenate([labels for _, labels in dataset.as_numpy_iterator()]).tolist()

    first = make_tf_dataset(demo_spec, "train", image_size=8, batch_size=32, shuffle=True, seed=3)
    second = make_tf_dataset(demo_spec, "train", image_size=8, batch_size=32, shuffle=True, seed=3)
    epoch_one, epoch_two = label_order(first), label_order(first)
    assert label_order(second) == epoch_one
    assert epoch_one != epoch_two
    assert sorted(epoch_one) == sorted(split_paths(demo_spec, "train")[1].tolist())


def test_repeat_goes_on_past_one_epoch(demo_spec) -> None:
    dataset = make_tf_dataset(demo_spec, "val", image_size=8, batch_size=2, repeat=True)
    count = len(split_paths(demo_spec, "val")[0])
    assert sum(len(labels) for _, labels in dataset.take(count).as_numpy_iterator()) == 2 * count


@pytest.mark.parametrize("pattern", ["noise", "black_and_white", "white", "254_and_255"])
def test_decoded_pixels_are_whole_numbers_in_range_without_a_clip(pattern: str) -> None:
    # decode_and_resize rounds and does not clip (a clip cost ~10 % of decoding): bilinear weights
    # are convex, so rounding lands in 0..255. Extreme pictures, shrunk and enlarged, hold that.
    import tensorflow as tf

    from transfer_core.data.decode import decode_and_resize

    rng = np.random.default_rng(len(pattern))
    for height, width in [(1, 1), (3, 700), (97, 96), (223, 225), (500, 375), (640, 17)]:
        if pattern == "noise":
            pixels = rng.integers(0, 256, (height, width, 3))
        elif pattern == "black_and_white":
            pixels = rng.integers(0, 2, (height, width, 3)) * 255
        elif pattern == "white":
            pixels = np.full((height, width, 3), 255)
        else:
            pixels = np.where(rng.random((height, width, 3)) < 0.5, 254, 255)
        png = encode(Image.fromarray(pixels.astype(np.uint8)), "PNG")
        for size in (96, 224):
            out = decode_and_resize(tf.constant(png), size).numpy()
            resized = tf.image.resize(pixels.astype(np.uint8), (size, size), method="bilinear").numpy()
            np.testing.assert_array_equal(out, np.clip(np.round(resized), 0, 255))
            assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 255
            assert not np.signbit(out).any()


def test_decode_for_model_matches_the_pipeline_for_stored_files(mixed_spec) -> None:
    spec, originals = mixed_spec
    frame = read_manifest(spec)
    assert frame["path"].str.endswith(".jpg").any() and frame["path"].str.endswith(".png").any()
    images, labels = load_split_arrays(spec, "train", 24)
    paths, _ = split_paths(spec, "train")
    assert len(paths) == len(images) == len(labels)
    for path, expected in zip(paths, images, strict=True):
        from_file = decode_for_model(path, 24)
        assert from_file.dtype == np.float32 and from_file.shape == (24, 24, 3)
        np.testing.assert_array_equal(from_file, expected)


def test_decode_for_model_on_original_uploads_matches_the_stored_file(mixed_spec) -> None:
    # Together with the test above: a new upload predicts on exactly the pixels training saw.
    spec, originals = mixed_spec
    frame = read_manifest(spec).set_index("sha256")
    root = Path(spec.root)
    for name, data in originals.items():
        row = frame.loc[hashlib.sha256(data).hexdigest()]
        from_upload = decode_for_model(data, 16)
        np.testing.assert_array_equal(from_upload, decode_for_model(root / row["path"], 16), err_msg=name)


def test_decode_for_model_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ImageRejected, match="empty"):
        decode_for_model(b"", 32)
    with pytest.raises(ImageRejected, match="could not read"):
        decode_for_model(tmp_path / "missing.png", 32)
    with pytest.raises(ValueError, match="image_size"):
        decode_for_model(encode(Image.new("RGB", (4, 4)), "PNG"), 0)


def test_empty_and_unknown_splits(demo_spec) -> None:
    with pytest.raises(DataError, match="'test' split .* has no images"):
        make_tf_dataset(demo_spec, "test", image_size=8, batch_size=2)
    images, labels = load_split_arrays(demo_spec, "test", 8)
    assert images.shape == (0, 8, 8, 3) and labels.shape == (0,)
    with pytest.raises(ValueError, match="split must be one of"):
        make_tf_dataset(demo_spec, "validation", image_size=8, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        make_tf_dataset(demo_spec, "train", image_size=8, batch_size=0)


def test_importing_transfer_core_data_does_not_import_tensorflow() -> None:
    code = (
        "import sys, transfer_core.data; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'streamlit'}); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
