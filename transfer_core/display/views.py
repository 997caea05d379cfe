"""Plain data the app's pages display: data set summaries, thumbnails, safe server folders.

No Streamlit and no TensorFlow here: pages call these and render the result.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from transfer_core.config import DatasetSpec

_SUFFIX = re.compile(r"-[0-9a-f]{6}$")


@dataclass(frozen=True)
class DatasetSummary:
    """What the sidebar and the data set list say about a data set."""

    name: str
    root: str
    class_names: tuple[str, ...]
    counts: dict[str, int]  # split -> images
    total: int

    @property
    def text(self) -> str:
        splits = ", ".join(f"{count} {split}" for split, count in self.counts.items() if count)
        return f"{len(self.class_names)} classes, {self.total} images ({splits})"


def dataset_name(root: str | os.PathLike) -> str:
    """A data set folder's display name (the workspace adds a random suffix; drop it)."""
    return _SUFFIX.sub("", Path(root).name) or Path(root).name


def dataset_summary(spec: DatasetSpec) -> DatasetSummary:
    """Counts per split of a data set, from its manifest."""
    from transfer_core.data import read_manifest

    frame = read_manifest(spec)
    counts = {split: int((frame["split"] == split).sum()) for split in ("train", "val", "test")}
    return DatasetSummary(dataset_name(spec.root), spec.root, spec.class_names, counts, int(len(frame)))


def thumbnails_by_class(
    spec: DatasetSpec, per_class: int = 6, split: str | None = None
) -> dict[str, list[tuple[str, str]]]:
    """A few images of every class, for a thumbnail grid.

    Args:
        spec: The data set.
        per_class: Images per class at most.
        split: Only this split (``train``/``val``/``test``), or all.

    Returns:
        Class name -> list of ``(absolute path, caption)`` in manifest order.
    """
    from transfer_core.data import read_manifest

    frame = read_manifest(spec)
    if split is not None:
        frame = frame[frame["split"] == split]
    root = Path(spec.root)
    result: dict[str, list[tuple[str, str]]] = {}
    for label in spec.class_names:
        rows = frame[frame["label"] == label].head(per_class)
        result[label] = [
            (str(root / path), f"{split_name} · {width}×{height}")
            for path, split_name, width, height in zip(
                rows["path"], rows["split"], rows["width"], rows["height"], strict=True
            )
        ]
    return result


def skipped_frame(skipped: Sequence) -> pd.DataFrame:
    """Skipped files (``SkippedFile`` objects or dicts) as a two-column table."""
    rows = []
    for item in skipped:
        if isinstance(item, dict):
            rows.append({"file": item.get("name", ""), "reason": item.get("reason", "")})
        else:
            rows.append({"file": item.name, "reason": item.reason})
    return pd.DataFrame(rows, columns=["file", "reason"])


def resolve_server_folder(path: str | os.PathLike, allowed_dirs: Sequence[str | os.PathLike]) -> Path:
    """Resolve a server folder the operator allows reading data from.

    Symbolic links and ``..`` are resolved first, so a path cannot escape an
    allowed folder by either.

    Args:
        path: The folder a user typed.
        allowed_dirs: ``Settings.allowed_data_dirs``.

    Returns:
        The resolved folder.

    Raises:
        PermissionError: No folders are allowed, or the folder lies outside all of them.
        FileNotFoundError: The folder does not exist (or is not a folder).
    """
    if not allowed_dirs:
        raise PermissionError(
            "Reading folders on the server is off. An operator enables it by listing folders in the "
            "environment variable TRANSFER_ALLOWED_DATA_DIRS (separated by ':') before starting the app."
        )
    text = str(path).strip()
    if not text:
        raise FileNotFoundError("Enter a folder path.")
    resolved = Path(text).expanduser().resolve()
    allowed = [Path(d).expanduser().resolve() for d in allowed_dirs]
    if not any(resolved == root or resolved.is_relative_to(root) for root in allowed):
        shown = ", ".join(str(a) for a in allowed)
        raise PermissionError(f"{resolved} is outside the folders this server allows ({shown}).")
    if not resolved.is_dir():
        raise FileNotFoundError(f"{resolved} is not a folder on the server.")
    return resolved
