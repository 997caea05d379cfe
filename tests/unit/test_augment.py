"""The augmentation preview shows what the training layers do."""

from __future__ import annotations

import numpy as np
import pytest

from transfer_core.data.augment import augmentation_preview, build_augmenter


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(32, 32, 3)).astype("uint8")
    pixels[:, :8] = 255  # Asymmetric, so a flip shows.
    return pixels


def test_preview_returns_n_uint8_copies_of_the_same_shape(image):
    copies = augmentation_preview(image, ("flip", "rotate", "zoom", "contrast"), n=6, seed=1)
    assert len(copies) == 6
    assert all(c.shape == image.shape and c.dtype == np.uint8 for c in copies)
    assert any(not np.array_equal(c, image) for c in copies)
    assert len({c.tobytes() for c in copies}) > 1  # Each copy is its own random draw.


def test_no_augmentation_gives_unchanged_copies(image):
    copies = augmentation_preview(image, (), n=2)
    assert all(np.array_equal(c, image) for c in copies)


def test_flip_only_mirrors(image):
    copies = augmentation_preview(image, ("flip",), n=16, seed=0)
    for copy in copies:
        assert np.array_equal(copy, image) or np.array_equal(copy, image[:, ::-1])


def test_same_seed_same_preview(image):
    first = augmentation_preview(image, ("rotate", "zoom"), n=3, seed=5)
    second = augmentation_preview(image, ("rotate", "zoom"), n=3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_bad_inputs_are_refused(image):
    with pytest.raises(ValueError, match="shape"):
        augmentation_preview(image[..., 0], ("flip",))
    with pytest.raises(ValueError, match="n must be"):
        augmentation_preview(image, ("flip",), n=0)
    with pytest.raises(ValueError, match="augmentation must be among"):
        build_augmenter(("blur",))
