"""Built-in demo data sets, generated on the spot: no download, no files to ship.

``shapes``: four classes of synthetic pictures (circles, stripes, checkerboards,
triangles) with random colours, positions, sizes and noisy backgrounds. A
pretrained backbone separates them perfectly, so it shows what pretrained
weights are worth but not what fine-tuning adds.

``where`` ("Try the demo"): six classes, a circle, square or triangle of random
colour and size in the left or the right half of the picture. ImageNet features
averaged over the picture tell the shape but hardly the side, so feature
extraction gets about half right; fine-tuning the top blocks learns the side
too; from scratch, with so few pictures, learns next to nothing
(BENCHMARKS.md, "The built-in demo").
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from transfer_core.config import DatasetSpec, Settings
from transfer_core.data.ingest import ingest_uploads

DEMO_CLASSES = ("circles", "stripes", "checkerboard", "triangles")
WHERE_CLASSES = tuple(f"{shape}_{side}" for shape in ("circle", "square", "triangle") for side in ("left", "right"))
DEMO_KINDS = ("shapes", "where")


def make_demo_dataset(
    dest: str | os.PathLike,
    *,
    images_per_class: int = 40,
    image_size: int = 96,
    seed: int = 0,
    kind: str = "shapes",
) -> DatasetSpec:
    """Generate the demo data set and ingest it like any upload.

    Args:
        dest: The new data set folder; must not exist or be empty.
        images_per_class: Images generated per class (at least 2).
        image_size: Side of the square images in pixels (16..1024).
        seed: Seed of the generator and of the split; the same seed gives the
            same images and the same split.
        kind: Which demo, one of :data:`DEMO_KINDS` (``shapes``: :data:`DEMO_CLASSES`;
            ``where``: :data:`WHERE_CLASSES`).

    Returns:
        The new data set's ``DatasetSpec``.

    Raises:
        ValueError: When ``images_per_class``, ``image_size`` or ``kind`` is out of range.
        DataError: When ``dest`` is not empty.
    """
    if images_per_class < 2:
        raise ValueError(f"images_per_class must be >= 2. Received: images_per_class={images_per_class!r}")
    if not 16 <= image_size <= 1024:
        raise ValueError(f"image_size must be between 16 and 1024. Received: image_size={image_size!r}")
    if kind not in DEMO_KINDS:
        raise ValueError(f"kind must be one of {DEMO_KINDS}. Received: kind={kind!r}")
    rng = np.random.default_rng(seed)
    painters = {
        "circles": _paint_circles,
        "stripes": _paint_stripes,
        "checkerboard": _paint_checkerboard,
        "triangles": _paint_triangles,
        **{label: _side_painter(*label.split("_")) for label in WHERE_CLASSES},
    }
    files = []
    for label in DEMO_CLASSES if kind == "shapes" else WHERE_CLASSES:
        for index in range(images_per_class):
            image = painters[label](_noisy_background(rng, image_size), rng)
            files.append((f"{label}/{label}_{index:03d}.png", _png_bytes(image), label))
    # The demo must work whatever the operator's limits are; its own images are small.
    settings = Settings(max_files=max(Settings().max_files, len(files)))
    result = ingest_uploads(files, dest, seed=seed, settings=settings)
    return result.spec


def _noisy_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random colour with a gentle gradient and pixel noise, as float RGB."""
    base = rng.uniform(40, 215, size=3)
    ramp = np.linspace(-1.0, 1.0, size)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
    image = base[None, None, :] + gradient[..., None] * rng.uniform(-40, 40, size=3)
    image += rng.normal(0.0, 18.0, size=(size, size, 3))
    return image


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A random colour far enough from the background's mean to be visible."""
    mean = background.reshape(-1, 3).mean(axis=0)
    for _ in range(20):
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - mean).sum() > 150:
            break
    return tuple(int(c) for c in colour)


def _to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="RGB")


def _patch_box(rng: np.random.Generator, size: int) -> tuple[int, int, int, int]:
    """A random rectangle covering roughly 40-90% of each side."""
    width, height = (int(size * rng.uniform(0.4, 0.9)) for _ in range(2))
    left, top = int(rng.integers(0, size - width + 1)), int(rng.integers(0, size - height + 1))
    return left, top, left + width, top + height


def _paint_circles(background: np.ndarray, rng: np.random.Generator) -> Image.Image:
    size = background.shape[0]
    image = _to_image(background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(0.1, 0.3) * size
        x, y = rng.uniform(radius, size - radius, size=2)
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=_contrasting_colour(rng, background)
        )
    return image


def _paint_stripes(background: np.ndarray, rng: np.random.Generator) -> Image.Image:
    size = background.shape[0]
    left, top, right, bottom = _patch_box(rng, size)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.08, 0.2) * size
    yy, xx = np.mgrid[0:size, 0:size]
    bands = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period) > 0
    inside = np.zeros((size, size), bool)
    inside[top:bottom, left:right] = True
    array = background.copy()
    array[bands & inside] = _contrasting_colour(rng, background)
    return _to_image(array)


def _paint_checkerboard(background: np.ndarray, rng: np.random.Generator) -> Image.Image:
    size = background.shape[0]
    left, top, right, bottom = _patch_box(rng, size)
    cell = max(2, int(rng.uniform(0.06, 0.16) * size))
    yy, xx = np.mgrid[0:size, 0:size]
    squares = ((xx - left) // cell + (yy - top) // cell) % 2 == 0
    inside = np.zeros((size, size), bool)
    inside[top:bottom, left:right] = True
    array = background.copy()
    array[squares & inside] = _contrasting_colour(rng, background)
    return _to_image(array)


def _paint_triangles(background: np.ndarray, rng: np.random.Generator) -> Image.Image:
    size = background.shape[0]
    image = _to_image(background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 3))):
        radius = rng.uniform(0.15, 0.35) * size
        x, y = rng.uniform(radius, size - radius, size=2)
        turn = rng.uniform(0, 2 * np.pi)
        corners = [
            (x + radius * np.cos(turn + k * 2 * np.pi / 3), y + radius * np.sin(turn + k * 2 * np.pi / 3))
            for k in range(3)
        ]
        draw.polygon(corners, fill=_contrasting_colour(rng, background))
    return image


def _side_painter(shape: str, side: str) -> Callable[[np.ndarray, np.random.Generator], Image.Image]:
    def paint(background: np.ndarray, rng: np.random.Generator) -> Image.Image:
        return _paint_on_side(background, rng, shape, side)

    return paint


def _paint_on_side(background: np.ndarray, rng: np.random.Generator, shape: str, side: str) -> Image.Image:
    """One ``shape`` of random colour and size, anywhere in the ``side`` half of the picture."""
    size = background.shape[0]
    image = _to_image(background)
    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.08, 0.16) * size
    low, high = (radius, size / 2 - 2) if side == "left" else (size / 2 + 2, size - radius)
    x, y = rng.uniform(low, high), rng.uniform(radius, size - radius)
    colour = _contrasting_colour(rng, background)
    if shape == "circle":
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif shape == "square":
        half = radius * 0.9  # About the area of the circle.
        draw.rectangle((x - half, y - half, x + half, y + half), fill=colour)
    else:
        turn = rng.uniform(0, 2 * np.pi)
        draw.polygon(
            [(x + radius * np.cos(turn + k * 2 * np.pi / 3), y + radius * np.sin(turn + k * 2 * np.pi / 3))
             for k in range(3)],
            fill=colour,
        )
    return image


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
