"""Small helpers shared by the benchmark scripts (timing, medians, data, output)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFER_OFFLINE", "1")

DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "hymenoptera_data"
DEFAULT_WEIGHTS = REPO.parent / "shared" / "weights"


@contextmanager
def stopwatch(into: list[float]):
    started = time.perf_counter()
    yield
    into.append(time.perf_counter() - started)


def median(values: list[float]) -> float:
    return statistics.median(values)


def repeat(fn: Callable[[], float], times: int) -> list[float]:
    return [fn() for _ in range(times)]


def ingest(source: Path, home: Path):
    """An ingested DatasetSpec for a folder or ZIP (cached under ``home``)."""
    from transfer_core.cli import prepare_dataset
    from transfer_core.config import Settings

    return prepare_dataset(Path(source), Settings(home=home), quiet=True)


def rss_mb(pid: int | None = None) -> float:
    """Current resident memory of ``pid`` (default: this process) in MB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_result(result: dict, out: str | None) -> None:
    print(json.dumps(result, indent=2))
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def make_photo_set(source: Path, dest: Path, count: int, min_side: int = 256, seed: int = 0) -> Path:
    """``count`` distinct JPEG photos, every side above 224 px, in class folders under ``dest``.

    Built from the real photos of ``source`` (class folders, or ``train/`` and ``val/`` of class
    folders, like hymenoptera_data): each photo once as it is (upscaled when a side is below
    ``min_side``), then copies made different by a mirror, a crop of 80-95 % of the photo, a small
    rotation and a brightness change, re-encoded at quality 90, until ``count`` files exist. For
    benchmarks only: generate it under /tmp, never in the repository.
    """
    import random

    from PIL import Image, ImageEnhance, ImageOps

    rng = random.Random(seed)
    photos = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise ValueError(f"No photos under {source}")
    made = 0
    variant = 0
    while made < count:
        for path in photos:
            if made >= count:
                break
            label = path.parent.name
            with Image.open(path) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
            if variant:
                if variant % 2:
                    image = ImageOps.mirror(image)
                share = rng.uniform(0.8, 0.95)
                width, height = image.size
                crop_w, crop_h = int(width * share), int(height * share)
                left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
                image = image.crop((left, top, left + crop_w, top + crop_h)).rotate(rng.uniform(-8, 8))
                image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
            if min(image.size) < min_side:
                scale = min_side / min(image.size)
                image = image.resize((round(image.size[0] * scale), round(image.size[1] * scale)), Image.BICUBIC)
            out = Path(dest) / label / f"{path.stem}-{variant}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            image.save(out, quality=90)
            made += 1
        variant += 1
    return Path(dest)
