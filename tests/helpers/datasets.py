"""Tiny synthetic data sets for tests: the demo shapes generator, small and at 32x32."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer_core.config import DatasetSpec

TINY_IMAGES_PER_CLASS = 12
TINY_IMAGE_SIZE = 32


def tiny_demo_dataset(root: Path, *, images_per_class: int = TINY_IMAGES_PER_CLASS,
                      image_size: int = TINY_IMAGE_SIZE) -> DatasetSpec:
    """Write the demo shapes data set under ``root`` (which must not exist yet) and return its spec."""
    from transfer_core.data import make_demo_dataset  # Imported late: it pulls in the image pipeline.

    return make_demo_dataset(root, images_per_class=images_per_class, image_size=image_size)


def tiny_dataset_in(tmp_path_factory: pytest.TempPathFactory, **sizes: int) -> DatasetSpec:
    """A tiny demo data set in a fresh temporary folder; ``sizes`` as for :func:`tiny_demo_dataset`."""
    return tiny_demo_dataset(tmp_path_factory.mktemp("demo") / "data", **sizes)
