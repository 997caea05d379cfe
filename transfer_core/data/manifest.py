"""The on-disk data set format: ``dataset.json``, ``manifest.csv``, ``skipped.csv``, ``notes.txt``.

A data set folder looks like this::

    dataset.json      DatasetSpec.to_dict(), root = the folder's absolute path
    manifest.csv      path,label,split,sha256,width,height (one row per stored image)
    skipped.csv       name,reason (one row per file that was not loaded)
    notes.txt         non-fatal facts, one per line
    ingest.json       how the data set was made (source kind, whether it had its own split)
    images/<class folder>/<sha256[:16]>.jpg|.png
    versions/<n>/     later versions (manifest.csv, version.json), see ``transfer_core.data.versions``

Every text file is written atomically (temporary file, then ``os.replace``) so
a reader never sees half a manifest.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.config import DatasetSpec
from transfer_core.fileio import atomic_write_bytes, atomic_write_text

MANIFEST_COLUMNS = ("path", "label", "split", "sha256", "width", "height")
SPLITS = ("train", "val", "test")
DATASET_FILE = "dataset.json"
MANIFEST_FILE = "manifest.csv"
SKIPPED_FILE = "skipped.csv"
NOTES_FILE = "notes.txt"
INGEST_FILE = "ingest.json"
IMAGES_FOLDER = "images"


class DataError(ValueError):
    """A problem with a whole data set (not one file): the message names the thing and the reason.

    Args:
        message: What went wrong, in plain language.
        skipped: Files that were not loaded before the error, when known.
    """

    def __init__(self, message: str, skipped: tuple[SkippedFile, ...] = ()) -> None:
        super().__init__(message)
        self.skipped = tuple(skipped)


@dataclass(frozen=True)
class SkippedFile:
    """One file that was not loaded.

    Args:
        name: The path as the user gave it (``"cats/broken.jpg"``, a ZIP entry name).
        reason: Why it was not loaded, in plain language.
    """

    name: str
    reason: str


def load_dataset(root: str | os.PathLike) -> DatasetSpec:
    """Read a data set folder's ``dataset.json``.

    The returned spec's ``root`` is the folder actually given, so a data set
    folder that was moved or copied still works.

    Args:
        root: The data set folder.

    Returns:
        The ``DatasetSpec``.

    Raises:
        DataError: When ``dataset.json`` or ``manifest.csv`` is missing, or
            ``dataset.json`` is not a valid data set description.
    """
    folder = Path(root)
    path = folder / DATASET_FILE
    if not path.is_file():
        raise DataError(f"{folder} is not a data set folder: {DATASET_FILE} is missing.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        data["root"] = str(folder.resolve())
        spec = DatasetSpec.from_dict(data)
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"{path} is not a valid data set description: {error}") from None
    if not spec.manifest_path.is_file():
        raise DataError(f"{folder} is not a complete data set: {MANIFEST_FILE} is missing.")
    return spec


def read_manifest(spec: DatasetSpec) -> pd.DataFrame:
    """Read the data set's manifest.

    Args:
        spec: The data set.

    Returns:
        A frame with columns ``path, label, split, sha256, width, height``;
        ``path`` is relative to ``spec.root``; labels are always strings (a class
        called ``"NA"`` or ``"001"`` stays as written).

    Raises:
        DataError: When the manifest is missing or malformed.
    """
    path = spec.manifest_path
    try:
        frame = pd.read_csv(
            path,
            dtype={
                "path": str,
                "label": str,
                "split": str,
                "sha256": str,
                "width": "int64",
                "height": "int64",
            },
            keep_default_na=False,
            encoding="utf-8",
        )
    except FileNotFoundError:
        raise DataError(f"{spec.root} has no {MANIFEST_FILE}.") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is malformed: {error}") from None
    if tuple(frame.columns) != MANIFEST_COLUMNS:
        raise DataError(f"{path} has columns {list(frame.columns)}; expected {list(MANIFEST_COLUMNS)}.")
    return frame


def read_skipped(spec: DatasetSpec) -> list[SkippedFile]:
    """Read the list of files that were not loaded when the data set was made.

    Args:
        spec: The data set.

    Returns:
        One ``SkippedFile`` per file, in the order they were met. Empty when
        the data set has no ``skipped.csv``.
    """
    path = Path(spec.root) / SKIPPED_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [SkippedFile(row["name"], row["reason"]) for row in csv.DictReader(handle)]


def read_notes(spec: DatasetSpec) -> list[str]:
    """Read the non-fatal notes written when the data set was made.

    Args:
        spec: The data set.

    Returns:
        The notes, one string each; empty when there are none.
    """
    path = Path(spec.root) / NOTES_FILE
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def has_own_split(spec: DatasetSpec) -> bool:
    """Whether the data set keeps the train/val(/test) split its source came with.

    Args:
        spec: The data set.

    Returns:
        True when the split came from the source's ``train/`` and ``val/``
        folders (then ``resplit`` keeps it); False for a hash split.
    """
    path = Path(spec.root) / INGEST_FILE
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("own_split", False))
    except (OSError, ValueError, AttributeError):
        return False


def split_paths(spec: DatasetSpec, split: str) -> tuple[list[str], np.ndarray]:
    """Files and integer labels of one split.

    Args:
        spec: The data set.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        Absolute file paths (manifest order) and an int32 array of label
        indices into ``spec.class_names``.

    Raises:
        ValueError: When ``split`` is not one of the three splits.
        DataError: When the manifest names a class that is not in ``spec.class_names``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
    frame = read_manifest(spec)
    rows = frame[frame["split"] == split]
    index = {name: position for position, name in enumerate(spec.class_names)}
    unknown = sorted(set(rows["label"]) - set(index))
    if unknown:
        raise DataError(f"{spec.manifest_path} names classes that are not in dataset.json: {unknown}")
    root = Path(spec.root).resolve()
    paths = [str(root / relative) for relative in rows["path"]]
    labels = np.asarray([index[label] for label in rows["label"]], dtype=np.int32)
    return paths, labels


def sort_class_names(labels: Any) -> tuple[str, ...]:
    """Class names in a stable, natural, case-insensitive order (``class2`` before ``class10``).

    Args:
        labels: Any iterable of label strings.

    Returns:
        The unique labels, sorted.
    """
    return tuple(sorted(set(labels), key=_natural_key))


def _natural_key(label: str) -> tuple:
    # re.split with a capturing group alternates text and digits, always starting
    # with text, so the tuples compare position by position without type clashes.
    parts = re.split(r"(\d+)", label.casefold())
    key = tuple(int(part) if index % 2 else part for index, part in enumerate(parts))
    return (key, label.casefold(), label)


def safe_folder_name(label: str) -> str:
    """A file-system-safe folder name for a class label, distinct for distinct labels.

    The name is an ASCII, lower-case slug (readable) plus 8 hex digits of the
    label's SHA-256 (distinct even for labels that differ only by case, by
    non-ASCII characters, or that slug to nothing).

    Args:
        label: The class label, any text.

    Returns:
        A name such as ``"golden_retriever-3f2a9c1b"``.
    """
    import hashlib

    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9_-]+", "_", ascii_text).strip("_-")[:40].strip("_-") or "class"
    digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write a UTF-8 text file so that readers see either the old or the new content."""
    atomic_write_text(path, text)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a binary file atomically (temporary file, then ``os.replace``)."""
    atomic_write_bytes(path, data)


def write_csv_atomic(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    """Write a CSV file atomically.

    Args:
        path: Where to write.
        header: Column names.
        rows: One tuple per row, in column order.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def write_manifest(root: Path, frame: pd.DataFrame) -> None:
    """Write ``manifest.csv`` (version 1's manifest) atomically from a frame with ``MANIFEST_COLUMNS``.

    Args:
        root: The data set folder.
        frame: The manifest rows.
    """
    write_manifest_file(Path(root) / MANIFEST_FILE, frame)


def write_manifest_file(path: Path, frame: pd.DataFrame) -> None:
    """Write a manifest (any version's, see ``DatasetSpec.manifest_path``) atomically.

    Args:
        path: Where to write it.
        frame: The manifest rows, with ``MANIFEST_COLUMNS``.
    """
    rows = [tuple(row) for row in frame[list(MANIFEST_COLUMNS)].itertuples(index=False, name=None)]
    write_csv_atomic(Path(path), MANIFEST_COLUMNS, rows)


def write_dataset_json(spec: DatasetSpec) -> None:
    """Write ``dataset.json`` atomically with ``root`` as an absolute path.

    Args:
        spec: The data set.
    """
    root = Path(spec.root).resolve()
    data = spec.to_dict()
    data["root"] = str(root)
    write_text_atomic(root / DATASET_FILE, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
