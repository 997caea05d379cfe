"""Names: class labels as stored, and default data set names for uploads."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from pathlib import Path

from transfer_core.data.zip_safety import clean_text


def clean_label(label: str) -> str:
    """A label as stored: NFC-normalised (macOS writes NFD), no control characters, stripped."""
    text = unicodedata.normalize("NFC", clean_text(label))
    text = "".join(" " if unicodedata.category(char) in {"Cc", "Cs"} else char for char in text)
    return text.strip()


def dataset_name_from_file(file_name: str) -> str:
    """A data set name from an uploaded file's name: its stem, cleaned (``my_photos.zip`` -> ``my_photos``).

    Args:
        file_name: The name as the browser gave it (may hold folders or odd characters).

    Returns:
        The name, or ``""`` when nothing usable is left.
    """
    base = clean_text(str(file_name)).replace("\\", "/").rsplit("/", 1)[-1]
    stem = Path(base).stem if "." in base.strip(".") else base
    return clean_label(stem.strip(" ._"))[:60]


def suggest_dataset_name(file_names: Iterable[str], class_names: Iterable[str] = ()) -> str:
    """A sensible default name for uploaded files.

    An uploaded folder (every file under the same top folder) is named after that folder;
    otherwise the name lists the classes (``cats vs dogs``).

    Args:
        file_names: The uploaded files' names as the browser gave them.
        class_names: The classes they were uploaded to.

    Returns:
        The name (``"dataset"`` when there is nothing to go on).
    """
    tops = {clean_text(str(name)).replace("\\", "/").split("/", 1)[0] for name in file_names if "/" in str(name)}
    if len(tops) == 1 and (folder := clean_label(tops.pop()).strip(" .")):
        return folder[:60]
    labels = [label for label in (clean_label(str(name)) for name in class_names) if label]
    if labels:
        return " vs ".join(labels[:3]) + (" etc" if len(labels) > 3 else "")
    return "dataset"
