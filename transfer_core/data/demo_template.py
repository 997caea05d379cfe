"""The built-in demo data set, generated once per server home and handed to each workspace.

"Try the demo" used to paint and ingest 180 pictures in the server process for every session; 30
students pressing it together kept the server busy for about 40 s (BENCHMARKS.md, "A class of 30,
measured"). The pictures depend only on the demo's parameters and the code that paints and ingests
them, so the first call builds a *template* in ``<home>/cache/demo-datasets/`` and every call gives
its workspace a copy of it:

- every file is an independent copy (about 35 ms for the demo's 180 pictures, against about a
  second to paint and ingest them): hard links would be faster still, but a server running as root
  writes through read-only modes, so one workspace could then change another's pictures. Data set
  versions (relabel, remove, add, undo) change only that workspace's copy;
- the template is built in a temporary folder and renamed into place under a file lock, and each
  copy is assembled beside its destination and renamed into place: 30 sessions asking at once
  build it once and each gets a complete data set or none.

The template's name carries a fingerprint of the code that makes it, so a changed painter or
ingest never serves old pictures.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from transfer_core.config import DatasetSpec
from transfer_core.data.manifest import (
    DATASET_FILE,
    IMAGES_FOLDER,
    DataError,
    load_dataset,
    write_dataset_json,
)
from transfer_core.data.synthetic_demo import make_demo_dataset

TEMPLATES_FOLDER = "demo-datasets"


def demo_dataset_from_template(
    dest: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    images_per_class: int = 40,
    image_size: int = 96,
    seed: int = 0,
    kind: str = "shapes",
) -> DatasetSpec:
    """The same data set as :func:`make_demo_dataset` with these arguments, in ``dest``, built from
    the home's shared template (made here first if it is missing).

    Args:
        dest: The new data set folder; must not exist or be empty.
        cache_dir: The home's cache folder (``Settings.cache_dir``); the template lives under it.
        images_per_class, image_size, seed, kind: As for :func:`make_demo_dataset`.

    Returns:
        The new data set's ``DatasetSpec`` (``root`` is ``dest``).

    Raises:
        ValueError: When an argument is out of range (from :func:`make_demo_dataset`).
        DataError: When ``dest`` is not empty.
    """
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"Cannot make the demo data set in {dest}: the folder is not empty.")
    template = _template(Path(cache_dir), images_per_class, image_size, seed, kind)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.partial-"))
    try:
        _copy_template(template, partial)
        os.replace(partial, dest)  # An empty ``dest`` is replaced; a filled one fails, as above.
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    spec = load_dataset(dest)
    write_dataset_json(spec)  # Its own root, not the template's.
    return spec


def prepare_demo_template(
    cache_dir: str | os.PathLike,
    *,
    images_per_class: int = 40,
    image_size: int = 96,
    seed: int = 0,
    kind: str = "shapes",
) -> Path:
    """Build the template now if it is missing (the app server does it in the background when it
    starts, so even the first "Try the demo" only copies); returns its folder."""
    return _template(Path(cache_dir), images_per_class, image_size, seed, kind)


def template_dir(cache_dir: Path, images_per_class: int, image_size: int, seed: int, kind: str) -> Path:
    """Where the template of these demo parameters lives (built or not)."""
    name = f"{kind}-{images_per_class}x{image_size}px-seed{seed}-{_code_fingerprint()}"
    return Path(cache_dir) / TEMPLATES_FOLDER / name


def _template(cache_dir: Path, images_per_class: int, image_size: int, seed: int, kind: str) -> Path:
    path = template_dir(cache_dir, images_per_class, image_size, seed, kind)
    if (path / DATASET_FILE).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # One builder; the others wait and then find it built.
        if (path / DATASET_FILE).exists():
            return path
        building = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.building-"))
        try:
            make_demo_dataset(building, images_per_class=images_per_class, image_size=image_size,
                              seed=seed, kind=kind)
            for image in (building / IMAGES_FOLDER).rglob("*"):
                if image.is_file():
                    image.chmod(0o444)  # The template itself is never edited.
            if path.exists():  # A broken leftover (no dataset.json): never reused.
                shutil.rmtree(path)
            os.replace(building, path)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return path


def _copy_template(template: Path, dest: Path) -> None:
    for source in sorted(template.rglob("*")):
        target = dest / source.relative_to(template)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)  # Content only: the copy is writable, the template's is not.


@functools.cache
def _code_fingerprint() -> str:
    """A short hash of the modules that decide the demo's files: painting, ingest, split, manifest."""
    here = Path(__file__).resolve().parent
    sources = [here / "synthetic_demo.py", here / "split.py", here / "manifest.py", here / "images.py",
               *sorted((here / "ingest").glob("*.py"))]
    digest = hashlib.sha256()
    for source in sources:
        with contextlib.suppress(OSError):
            digest.update(source.read_bytes())
    return digest.hexdigest()[:12]
