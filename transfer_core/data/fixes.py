"""Fixing a data set from a model's mistakes: relabel, remove, add a photo, undo, a new split.

Every function here makes a new version of the data set (:mod:`transfer_core.data.versions`) and
returns its record; the change always applies to the data set's newest version, whichever run's
gallery it was made from. Older versions and the runs made on them stay as they were.

The split stays stable by content hash (:mod:`transfer_core.data.split`): an image that a change
does not touch keeps its split, a relabelled image keeps its split too (its content did not
change), and an added photo is placed by the same hash rule as the rest of its new class. Only
:func:`resplit` (the Data page's "Apply split") assigns every image again.

A class keeps at least one image: removing or relabelling the last one is refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

import pandas as pd

from transfer_core.config import DatasetSpec, Settings
from transfer_core.data.images import ImageRejected, decode_upload, encode_for_storage
from transfer_core.data.manifest import (
    IMAGES_FOLDER,
    INGEST_FILE,
    MANIFEST_COLUMNS,
    has_own_split,
    load_dataset,
    read_manifest,
    safe_folder_name,
    write_bytes_atomic,
)
from transfer_core.data.split import hash_split
from transfer_core.data.versions import VersionError, VersionRecord, commit_version, load_version, record_of

__all__ = [
    "add_image",
    "current_labels",
    "relabel_image",
    "remove_image",
    "resplit",
    "restore_version",
    "undo_last_change",
]


def current_labels(root: str | os.PathLike) -> dict[str, str]:
    """Image path (relative) -> label in the data set's newest version.

    Pages use it to show what was done already ("now labelled ...", "removed") instead of the
    buttons once a mistake was acted on; an image the newest version does not list is absent.
    """
    frame = read_manifest(load_dataset(root))
    return dict(zip(frame["path"].astype(str), frame["label"].astype(str), strict=True))


def relabel_image(root: str | os.PathLike, path: str, label: str) -> VersionRecord:
    """Give one image another class, in a new version; the image keeps its split.

    Args:
        root: The data set folder.
        path: The image's path as manifests and run reports give it (``images/<folder>/<hash>.png``).
        label: Its new class: one of the data set's classes.

    Returns:
        The new version's record.

    Raises:
        VersionError: The image is not in the newest version, already has ``label``, ``label`` is not a
            class of the data set, or it is its class's last image.
    """
    current = load_dataset(root)
    if label not in current.class_names:
        raise VersionError(f"{label!r} is not a class of this data set ({', '.join(current.class_names)}).")
    frame = read_manifest(current)
    row = _row_of(frame, path, current)
    old = str(frame.at[row, "label"])
    if old == label:
        raise VersionError(f"{_name(path)} is already labelled {label!r}.")
    _keep_one_per_class(frame, old, f"relabel {_name(path)}")
    frame.loc[row, "label"] = label
    return commit_version(current, _ordered(frame, current), kind="relabel", previous=current.version,
                          description=f"relabelled {_name(path)} from {old!r} to {label!r}")


def remove_image(root: str | os.PathLike, path: str) -> VersionRecord:
    """Leave one image out of a new version (its file stays: older versions still list it).

    Args:
        root: The data set folder.
        path: The image's path as manifests and run reports give it.

    Returns:
        The new version's record.

    Raises:
        VersionError: The image is not in the newest version, or it is its class's last image.
    """
    current = load_dataset(root)
    frame = read_manifest(current)
    row = _row_of(frame, path, current)
    label = str(frame.at[row, "label"])
    _keep_one_per_class(frame, label, f"remove {_name(path)}")
    frame = frame.drop(index=row)
    return commit_version(current, _ordered(frame, current), kind="remove", previous=current.version,
                          description=f"removed {_name(path)} ({label!r})")


def add_image(root: str | os.PathLike, name: str, data: bytes, label: str, settings: Settings) -> VersionRecord:
    """Add a new photo (an upload or a camera shot) to a class, in a new version.

    The photo is decoded and stored like any upload (``data.images``: safe decoding, EXIF
    rotation, CMYK/16-bit conversion, size limits) under ``images/<class folder>/<hash><ext>``;
    its split comes from the content-hash rule, every other image keeps its split.

    Args:
        root: The data set folder.
        name: The file name to quote in messages (``"camera photo"`` for a camera shot).
        data: The file's bytes.
        label: The class: one of the data set's classes.
        settings: ``max_pixels`` and ``max_upload_mb`` limits.

    Returns:
        The new version's record.

    Raises:
        ImageRejected: The file is not a usable image; the message says why.
        VersionError: ``label`` is not a class, or the same picture is already in the data set.
    """
    current = load_dataset(root)
    if label not in current.class_names:
        raise VersionError(f"{label!r} is not a class of this data set ({', '.join(current.class_names)}).")
    if len(data) > settings.max_upload_mb * 1024 * 1024:
        raise ImageRejected(f"the file is larger than the {settings.max_upload_mb} MB upload limit")
    digest = hashlib.sha256(data).hexdigest()
    frame = read_manifest(current)
    same = frame[frame["sha256"] == digest]
    if len(same):
        raise VersionError(f"{name}: this picture is already in the data set, in class {same['label'].iloc[0]!r} "
                           f"({_name(same['path'].iloc[0])}).")
    decoded = decode_upload(data, name, settings.max_pixels)
    stored, extension, width, height = encode_for_storage(data, decoded)
    folder = Path(current.root)
    relative = f"{IMAGES_FOLDER}/{_class_folder(folder, label)}/{digest[:16]}{extension}"
    target = folder / relative
    if not target.is_file():  # Another version may have stored this picture already (then it is the same bytes).
        write_bytes_atomic(target, stored)
    new = pd.DataFrame([{"path": relative, "label": label, "split": "train", "sha256": digest,
                         "width": width, "height": height}], columns=list(MANIFEST_COLUMNS))
    frame = pd.concat([frame, new], ignore_index=True)
    split = str(hash_split(frame[frame["label"] == label], seed=current.seed, val_fraction=current.val_fraction,
                           test_fraction=current.test_fraction).iloc[-1])
    frame.loc[frame.index[-1], "split"] = split
    where = {"train": "training", "val": "validation", "test": "test"}[split]
    return commit_version(current, _ordered(frame, current), kind="add", previous=current.version,
                          description=f"added {name} to {label!r} ({where} split)")


def undo_last_change(root: str | os.PathLike) -> VersionRecord:
    """Undo the newest change: a new version with the images, labels and split of the version before it.

    Undoing again goes one more change back (to version 1 at most); the undone versions stay, so
    the runs made on them keep their data.

    Returns:
        The new version's record.

    Raises:
        VersionError: When the newest version is the data set as it was made (nothing to undo).
    """
    current = load_dataset(root)
    latest = record_of(current.root, current.version)
    if latest.previous is None:
        raise VersionError("Nothing to undo: this is the data set as it was made (version 1).")
    target = record_of(current.root, latest.previous)
    return _copy_of(current, target.spec, kind="undo", previous=target.previous,
                    description=f"undid version {latest.version} ({latest.description}): back to version "
                                f"{target.version}'s images and labels")


def restore_version(root: str | os.PathLike, version: int) -> VersionRecord:
    """Go back to any earlier version: a new version with its images, labels and split.

    Returns:
        The new version's record (Undo from it returns to the version before the restore).

    Raises:
        VersionError: When ``version`` is the newest already; DataError when there is no such version.
    """
    current = load_dataset(root)
    if version == current.version:
        raise VersionError(f"Version {version} is the newest version already.")
    return _copy_of(current, load_version(current.root, version), kind="restore", previous=current.version,
                    description=f"back to version {version}")


def resplit(spec: DatasetSpec, *, seed: int, val_fraction: float, test_fraction: float) -> DatasetSpec:
    """Recompute the hash split with new settings, as a new version of the data set.

    A data set whose source came with its own ``train/`` and ``val/`` folders keeps that split
    (the source's authors chose it for a reason); only the settings change. Nothing changes (and
    no version is made) when the settings are the ones the newest version has.

    Args:
        spec: The data set (its newest version is the one split again).
        seed: New split seed.
        val_fraction: New validation share per class.
        test_fraction: New test share per class.

    Returns:
        The newest version's ``DatasetSpec``.

    Raises:
        ValueError: When the fractions are out of range (see ``DatasetSpec``).
        DataError: When the manifest cannot be read.
    """
    DatasetSpec(root=spec.root, class_names=spec.class_names, seed=seed, val_fraction=val_fraction,
                test_fraction=test_fraction)  # Validates the settings before any work.
    current = load_dataset(spec.root)
    settings = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    if all(getattr(current, key) == value for key, value in settings.items()):
        return current
    frame = read_manifest(current)
    if not has_own_split(current):
        frame["split"] = hash_split(frame, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    record = commit_version(current, frame, kind="resplit", previous=current.version, spec_changes=settings,
                            description=f"new split: seed {seed}, validation {val_fraction:.0%}, "
                                        f"test {test_fraction:.0%}")
    return record.spec


def _copy_of(current: DatasetSpec, source: DatasetSpec, *, kind: str, previous: int | None,
             description: str) -> VersionRecord:
    changes = {"seed": source.seed, "val_fraction": source.val_fraction, "test_fraction": source.test_fraction}
    return commit_version(current, read_manifest(source), kind=kind, previous=previous, description=description,
                          spec_changes=changes)


def _row_of(frame: pd.DataFrame, path: str, spec: DatasetSpec):
    rows = frame.index[frame["path"] == path]
    if len(rows) == 0:
        raise VersionError(f"{_name(path)} is not in the data set's newest version (version {spec.version}); "
                           "it was removed, or never part of it.")
    return rows[0]


def _keep_one_per_class(frame: pd.DataFrame, label: str, action: str) -> None:
    if int((frame["label"] == label).sum()) <= 1:
        raise VersionError(f"Cannot {action}: it is the last image of class {label!r}, and every class needs one.")


def _ordered(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The manifest order ingest writes (class, then content hash), so a version does not depend on edit order."""
    index = {name: position for position, name in enumerate(spec.class_names)}
    return (frame.assign(_class=frame["label"].map(index))
            .sort_values(["_class", "sha256", "path"], kind="stable")
            .drop(columns="_class").reset_index(drop=True))


def _class_folder(folder: Path, label: str) -> str:
    """The folder ingest stored the class's images in (``ingest.json``), or a new safe one."""
    try:
        folders = json.loads((folder / INGEST_FILE).read_text(encoding="utf-8")).get("class_folders", {})
        name = folders.get(label) if isinstance(folders, dict) else None
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and PurePosixPath(name).name == name and name not in ("", ".", ".."):
        return name
    return safe_folder_name(label)


def _name(path: str) -> str:
    return PurePosixPath(str(path)).name
