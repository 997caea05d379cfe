"""The decoded-image disk cache: identical batches, no decoding after the first pass, and safe fallbacks."""

from __future__ import annotations

import io
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.images import encode
from PIL import Image

from transfer_core.config import Settings
from transfer_core.data import (
    decode_for_model,
    image_cache,
    ingest_uploads,
    load_dataset,
    make_tf_dataset,
    split_paths,
)
from transfer_core.data.image_cache import SUFFIX, ensure_image_cache

SIZE = 24


@pytest.fixture(scope="module")
def source_spec(tmp_path_factory: pytest.TempPathFactory):
    """Small JPEGs and PNGs of different shapes, with labels across two classes."""
    rng = np.random.default_rng(1)
    files = []
    for index in range(16):
        pixels = rng.integers(0, 256, (20 + index, 33 - index, 3), dtype=np.uint8)
        if index % 2:
            files.append((f"a_{index}.jpg", encode(Image.fromarray(pixels), "JPEG", quality=80), "a"))
        else:
            files.append((f"b_{index}.png", encode(Image.fromarray(pixels), "PNG"), "b"))
    return ingest_uploads(files, tmp_path_factory.mktemp("cache-src") / "ds", settings=Settings()).spec


@pytest.fixture
def spec(source_spec, tmp_path: Path):
    """A private copy, so a test may delete or damage its files."""
    shutil.copytree(source_spec.root, tmp_path / "ds")
    return load_dataset(tmp_path / "ds")


def batches(dataset, take: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    if take is not None:
        dataset = dataset.take(take)
    return [(images, labels) for images, labels in dataset.as_numpy_iterator()]


def assert_same(left, right) -> None:
    assert len(left) == len(right)
    for (images_l, labels_l), (images_r, labels_r) in zip(left, right, strict=True):
        assert images_l.dtype == images_r.dtype == np.float32
        assert labels_l.dtype == labels_r.dtype == np.int32
        np.testing.assert_array_equal(images_l, images_r)
        np.testing.assert_array_equal(labels_l, labels_r)


def cache_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.exists() else []


@pytest.mark.parametrize("shuffle", [False, True])
def test_cached_batches_are_identical_to_decoded_ones(spec, tmp_path: Path, shuffle: bool) -> None:
    cache = tmp_path / "cache"
    count = len(split_paths(spec, "train")[0])
    assert count % 5, "the last batch should be partial"
    kwargs = {"image_size": SIZE, "batch_size": 5, "shuffle": shuffle, "seed": 7}
    plain = make_tf_dataset(spec, "train", **kwargs)
    cached = make_tf_dataset(spec, "train", cache_dir=cache, **kwargs)
    assert cached.element_spec == plain.element_spec
    first = batches(plain)
    assert_same(batches(cached), first)  # Epoch 1.
    assert_same(batches(cached), batches(plain))  # Epoch 2: reshuffled the same way.
    assert len(cache_files(cache)) == 1
    assert len(first[-1][1]) == count % 5
    # A fresh dataset with the same seed repeats the order; repeat=True keeps matching across epochs.
    assert_same(batches(make_tf_dataset(spec, "train", cache_dir=cache, **kwargs)), first)
    steps = 3 * (-(-count // 5))
    assert_same(
        batches(make_tf_dataset(spec, "train", cache_dir=cache, repeat=True, **kwargs), steps),
        batches(make_tf_dataset(spec, "train", repeat=True, **kwargs), steps),
    )
    if shuffle:
        labels = np.concatenate([labels for _, labels in first])
        assert sorted(labels.tolist()) == sorted(split_paths(spec, "train")[1].tolist())


def test_pixels_are_whole_numbers_and_decode_for_model_agrees(spec, tmp_path: Path) -> None:
    paths, _ = split_paths(spec, "val")
    (images, _), *_ = batches(make_tf_dataset(spec, "val", image_size=SIZE, batch_size=64, cache_dir=tmp_path / "c"))
    assert np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 255
    for path, expected in zip(paths, images, strict=True):
        np.testing.assert_array_equal(decode_for_model(path, SIZE), expected)


def test_second_pass_reads_the_cache_not_the_images(spec, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    expected = batches(make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache))
    shutil.rmtree(Path(spec.root) / "images")  # Nothing left to decode.

    def no_fill(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_cache, "_fill", no_fill)
    image_cache._verified.clear()  # As a new process would: the file is checked again, then used.
    again = make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache)
    assert_same(batches(again), expected)
    assert len(cache_files(cache)) == 1


def test_a_different_size_or_split_gets_its_own_file(spec, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache)
    make_tf_dataset(spec, "train", image_size=SIZE + 8, batch_size=4, cache_dir=cache)
    make_tf_dataset(spec, "val", image_size=SIZE, batch_size=4, cache_dir=cache)
    make_tf_dataset(spec, "train", image_size=SIZE, batch_size=9, shuffle=True, cache_dir=cache)  # Reuses.
    files = cache_files(cache)
    assert len(files) == 3
    assert sum(name.name.endswith(f"-{SIZE + 8}px{SUFFIX}") for name in files) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip_a_pixel", "garbage", "empty", "flip_a_checksum"])
def test_a_damaged_cache_file_is_rebuilt(spec, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    expected = batches(make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache))
    (path,) = cache_files(cache)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "flip_a_pixel":
        data[-5] ^= 0xFF
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "empty":
        data = bytearray()
    else:
        data[16 + int.from_bytes(data[8:16], "little")] ^= 0x01
    path.write_bytes(bytes(data))
    image_cache._verified.clear()  # A later process finds the damage.
    rebuilt = make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache)
    assert_same(batches(rebuilt), expected)
    assert path.read_bytes() != bytes(data)
    assert not list(cache.glob("*.tmp"))


def test_an_unwritable_cache_folder_falls_back_to_decoding(spec, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should go")
    expected = batches(make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, shuffle=True))
    dataset = make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, shuffle=True, cache_dir=blocker / "img")
    assert_same(batches(dataset), expected)


def test_a_full_disk_falls_back_and_leaves_no_temporary_file(spec, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    real_open = open

    class FullDisk(io.RawIOBase):
        def __init__(self, file, *args, **kwargs) -> None:
            self.handle = real_open(file, *args, **kwargs)

        def write(self, data) -> int:
            raise OSError(28, "No space left on device")

        def close(self) -> None:
            self.handle.close()

    monkeypatch.setattr(image_cache, "open", FullDisk, raising=False)
    expected = batches(make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4))
    assert_same(batches(make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache)), expected)
    assert cache_files(cache) == [] and not list(cache.glob("*.tmp"))


def test_too_little_free_space_or_a_split_over_the_cap_is_not_cached(spec, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    expected = batches(make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4))
    monkeypatch.setattr(image_cache, "MAX_CACHE_BYTES", SIZE * SIZE * 3)  # One image.
    assert ensure_image_cache(spec, "train", SIZE, cache) is None
    assert_same(batches(make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache)), expected)
    assert cache_files(cache) == []
    monkeypatch.undo()
    monkeypatch.setattr(image_cache, "FREE_SPACE_MARGIN", 1 << 62)
    assert ensure_image_cache(spec, "train", SIZE, cache) is None
    assert cache_files(cache) == []


def test_concurrent_fills_decode_once_and_agree(spec, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    fills = []
    real_fill = image_cache._fill
    monkeypatch.setattr(image_cache, "_fill", lambda *args: fills.append(1) or real_fill(*args))
    results: list = [None, None]

    def open_cache(slot: int) -> None:
        results[slot] = ensure_image_cache(spec, "train", SIZE, cache)

    threads = [threading.Thread(target=open_cache, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fills) == 1 and all(result is not None for result in results)
    everything = np.arange(results[0].count)
    np.testing.assert_array_equal(results[0].read(everything), results[1].read(everything))
    # Rows come back in the order asked, repeats included.
    order = np.array([3, 1, 2, 3, 0])
    np.testing.assert_array_equal(results[0].read(order), results[0].read(everything)[order])
    assert len(cache_files(cache)) == 1


def test_a_broken_image_fails_while_iterating_as_without_a_cache(spec, tmp_path: Path) -> None:
    import tensorflow as tf

    paths, _ = split_paths(spec, "train")
    Path(paths[2]).write_bytes(b"not an image any more")
    cache = tmp_path / "cache"
    dataset = make_tf_dataset(spec, "train", image_size=SIZE, batch_size=4, cache_dir=cache)  # No error yet.
    assert cache_files(cache) == [] and not list(cache.glob("*.tmp"))
    with pytest.raises(tf.errors.InvalidArgumentError):
        batches(dataset)


def test_datasets_close_their_cache_file(spec, tmp_path: Path) -> None:
    import gc

    cache = tmp_path / "cache"
    make_tf_dataset(spec, "val", image_size=SIZE, batch_size=4, cache_dir=cache)
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        dataset = make_tf_dataset(spec, "val", image_size=SIZE, batch_size=4, cache_dir=cache)
        batches(dataset, 1)
    del dataset
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= before
