"""Versions of a data set: every change to the data makes a new version; none is ever rewritten.

A data set folder keeps its versions beside the images they share::

    dataset.json                 the newest version's DatasetSpec (``version`` = n): what "the data set" means
    manifest.csv                 version 1's manifest (the data set as it was made)
    versions/<n>/manifest.csv    version n's manifest (n >= 2)
    versions/<n>/version.json    what changed: ``VersionRecord`` (version 1's is written with version 2)
    images/...                   every image any version lists, stored once by content hash

A version is a manifest (which images, with which label, in which split) plus the spec's split
settings; the images are shared. Relabelling changes a row's label, removing drops a row (the file
stays: older versions still list it), adding a photo stores one more file. A run's config records
the data set's root *and* version, so a run keeps reading exactly the images and labels it was
trained on (``DatasetSpec.manifest_path``), however the data set changes afterwards.

Undo is a new version too (never a step back that deletes one): it copies the manifest and split
settings of the version before the newest change. Version numbers are never reused, so a run's
"version 3" always means the same data. Each record keeps ``previous`` (the version its content
came from, before its own change), so undoing again walks further back, to version 1.

The edits themselves live in :mod:`transfer_core.data.fixes`; this module stores and reads versions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from transfer_core.config import DatasetSpec
from transfer_core.data.manifest import (
    DATASET_FILE,
    IMAGES_FOLDER,
    DataError,
    load_dataset,
    read_manifest,
    write_dataset_json,
    write_manifest_file,
    write_text_atomic,
)

VERSIONS_FOLDER = "versions"
RECORD_FILE = "version.json"
KINDS = ("original", "relabel", "remove", "add", "undo", "restore", "resplit")


class VersionError(DataError):
    """A change that cannot be made (nothing to undo, an image not in the data set, ...); the message says why."""


@dataclass(frozen=True)
class VersionRecord:
    """One version of a data set and the change that made it.

    Args:
        version: Its number (1 = as the data set was made).
        kind: One of :data:`KINDS`.
        description: The change in plain words, e.g. ``"relabelled 3f2a9c1b.png from 'cat' to 'dog'"``.
        previous: The version whose content came before this one's change (what Undo goes back to);
            None for version 1.
        created: When it was made (ISO 8601, UTC).
        images: How many images it lists.
        spec: The version's DatasetSpec (its root is the folder it was read from).
    """

    version: int
    kind: str
    description: str
    previous: int | None
    created: str
    images: int
    spec: DatasetSpec

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec.to_dict()
        spec.pop("root")  # A data set folder can move (a project file, a copy); the folder is its root.
        return {"version": self.version, "kind": self.kind, "description": self.description,
                "previous": self.previous, "created": self.created, "images": self.images, "spec": spec}

    @classmethod
    def from_dict(cls, data: Any, root: Path) -> VersionRecord:
        """A record read from ``version.json``; ``ValueError`` (naming the field) when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, received {type(data).__name__}")
        version, previous, images = data.get("version"), data.get("previous"), data.get("images")
        if not _is_count(version) or version < 1:
            raise ValueError(f"version must be an integer >= 1. Received: version={version!r}")
        if previous is not None and (not _is_count(previous) or not 1 <= previous < version):
            raise ValueError(f"previous must be an earlier version. Received: previous={previous!r}")
        if data.get("kind") not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}. Received: kind={data.get('kind')!r}")
        if not _is_count(images):
            raise ValueError(f"images must be a count. Received: images={images!r}")
        spec_data = data.get("spec")
        if not isinstance(spec_data, dict):
            raise ValueError("spec must be a JSON object")
        spec = DatasetSpec.from_dict({**spec_data, "root": str(root)})
        if spec.version != version:
            raise ValueError(f"its spec names version {spec.version}, not {version}")
        return cls(version=version, kind=data["kind"], description=str(data.get("description", "")),
                   previous=previous, created=str(data.get("created", "")), images=images, spec=spec)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _record_path(root: Path, version: int) -> Path:
    return root / VERSIONS_FOLDER / str(version) / RECORD_FILE


def _read_record(root: Path, version: int) -> VersionRecord:
    path = _record_path(root, version)
    try:
        return VersionRecord.from_dict(json.loads(path.read_text(encoding="utf-8")), root)
    except FileNotFoundError:
        raise DataError(f"{root} has no version {version} ({VERSIONS_FOLDER}/{version}/{RECORD_FILE} is missing).") \
            from None
    except (OSError, ValueError, TypeError) as error:
        raise DataError(f"{path} is not a valid version record: {error}") from None


def _first_record(spec: DatasetSpec) -> VersionRecord:
    """Version 1's record, made from the data set as it is before its first change."""
    images = len(read_manifest(spec))
    try:
        created = datetime.fromtimestamp(os.stat(spec.manifest_path).st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        created = ""
    return VersionRecord(1, "original", "the data set as it was made", None, created, images, spec)


def head(root: str | os.PathLike) -> DatasetSpec:
    """The newest version of the data set in ``root`` (what ``dataset.json`` describes)."""
    return load_dataset(root)


def load_version(root: str | os.PathLike, version: int) -> DatasetSpec:
    """The DatasetSpec of one version of the data set in ``root``.

    Raises:
        DataError: When the data set has no such version.
    """
    current = load_dataset(root)
    if version == current.version:
        return current
    folder = Path(current.root)
    if version == 1 and not _record_path(folder, 1).is_file():
        return dataclasses.replace(current, version=1)
    return _read_record(folder, version).spec


def list_versions(root: str | os.PathLike) -> list[VersionRecord]:
    """Every version of the data set in ``root``, oldest first.

    Raises:
        DataError: When a version's record is unreadable.
    """
    current = load_dataset(root)
    folder = Path(current.root)
    numbers = _version_numbers(folder)
    records = [_read_record(folder, number) for number in numbers if number != 1 or _record_path(folder, 1).is_file()]
    if not records or records[0].version != 1:
        records.insert(0, _first_record(dataclasses.replace(current, version=1)))
    return records


def record_of(root: str | os.PathLike, version: int) -> VersionRecord:
    """The record of one version (version 1's is made up when the data set never changed)."""
    folder = Path(load_dataset(root).root)
    if version == 1 and not _record_path(folder, 1).is_file():
        return _first_record(load_version(folder, 1))
    return _read_record(folder, version)


def _version_numbers(folder: Path) -> list[int]:
    base = folder / VERSIONS_FOLDER
    if not base.is_dir():
        return [1]
    found = {int(child.name) for child in base.iterdir() if child.name.isdigit() and child.is_dir()}
    return sorted(found | {1})


def commit_version(current: DatasetSpec, frame: pd.DataFrame, *, kind: str, description: str,
                   previous: int | None, spec_changes: dict[str, Any] | None = None) -> VersionRecord:
    """Write ``frame`` as a new version after ``current`` and make it the data set's newest.

    The version's folder is claimed first (``mkdir`` fails when another tab took the number),
    its manifest and record written, and ``dataset.json`` last, so a reader sees either the
    old newest version or the complete new one.

    Args:
        current: The newest version now (what the change was made to).
        frame: The new version's manifest rows.
        kind: One of :data:`KINDS`.
        description: The change in plain words.
        previous: What Undo goes back to from the new version.
        spec_changes: Split settings that change (``seed``, ``val_fraction``, ``test_fraction``).

    Returns:
        The new version's record.

    Raises:
        VersionError: When the data set changed since ``current`` was read (another tab).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
    folder = Path(current.root)
    if load_dataset(folder).version != current.version:
        raise VersionError("The data set changed meanwhile (in another tab?); look again and repeat the change.")
    if current.version == 1 and not _record_path(folder, 1).is_file():
        # Version 1's split settings are dataset.json's until now: keep them before dataset.json moves on.
        _write_record(folder, _first_record(current))
    number = max(_version_numbers(folder)) + 1
    while True:
        try:
            (folder / VERSIONS_FOLDER / str(number)).mkdir(parents=True)
            break
        except FileExistsError:
            number += 1
    spec = dataclasses.replace(current, **(spec_changes or {}), version=number)
    write_manifest_file(spec.manifest_path, frame)
    record = VersionRecord(number, kind, description, previous, _now(), len(frame), spec)
    _write_record(folder, record)
    write_dataset_json(spec)
    return record


def _write_record(folder: Path, record: VersionRecord) -> None:
    write_text_atomic(_record_path(folder, record.version),
                      json.dumps(record.to_dict(), indent=2, ensure_ascii=False) + "\n")


def check_versions(root: str | os.PathLike) -> None:
    """Check every version of a data set from a stranger (a project file) before it is used.

    Every record must be valid, every manifest readable and naming only stored images under
    ``images/`` (no absolute paths, no ``..``), and the newest version must be one of them.

    Raises:
        DataError: Naming the first version and problem found.
    """
    folder = Path(root)
    current = load_dataset(folder)
    base = folder / VERSIONS_FOLDER
    if base.exists():
        for child in base.iterdir():
            if not (child.name.isdigit() and child.is_dir() and not child.is_symlink()) or child.name == "0":
                raise DataError(f"{VERSIONS_FOLDER}/{child.name} is not a data set version.")
    for record in list_versions(folder):
        _check_manifest(folder, record.spec)
    if current.version not in _version_numbers(folder):
        raise DataError(f"{DATASET_FILE} names version {current.version}, which the data set does not have.")


def _check_manifest(folder: Path, spec: DatasetSpec) -> None:
    frame = read_manifest(spec)
    unknown = sorted(set(frame["label"]) - set(spec.class_names))
    if unknown:
        raise DataError(f"version {spec.version} names classes that are not in the data set: {unknown}")
    resolved = folder.resolve()
    for relative in frame["path"]:
        parts = PurePosixPath(relative).parts
        if not parts or parts[0] != IMAGES_FOLDER or ".." in parts or "\\" in relative or ":" in relative:
            raise DataError(f"version {spec.version} lists {relative!r}, which is not a stored image path.")
        target = (folder / relative).resolve()
        if not target.is_relative_to(resolved) or not target.is_file():
            raise DataError(f"version {spec.version} lists {relative!r}, which is missing.")


def version_label(spec: DatasetSpec) -> str:
    """``"v3"``: how pages name a data set version."""
    return f"v{spec.version}"


@dataclass(frozen=True)
class VersionDiff:
    """What changed between two versions' manifests, counted by image path.

    Args:
        relabelled: Images listed by both with different labels.
        removed: Images only the older version lists.
        added: Images only the newer version lists.
        val_changed: Of those, how many are (or were) validation images: the two versions'
            validation scores are measured on that many different images or labels.
    """

    relabelled: int
    removed: int
    added: int
    val_changed: int

    def text(self) -> str:
        """``"2 relabelled, 1 removed, 1 added"`` (only the non-zero parts), or ``"the same images"``."""
        parts = [f"{count} {word}" for count, word in ((self.relabelled, "relabelled"), (self.removed, "removed"),
                                                        (self.added, "added")) if count]
        return ", ".join(parts) or "the same images and labels"


def version_diff(before: DatasetSpec, after: DatasetSpec) -> VersionDiff:
    """Count the images relabelled, removed and added from ``before`` to ``after`` (any two versions)."""
    old = read_manifest(before).set_index("path")
    new = read_manifest(after).set_index("path")
    both = old.index.intersection(new.index)
    relabelled = both[old.loc[both, "label"].to_numpy() != new.loc[both, "label"].to_numpy()]
    removed, added = old.index.difference(new.index), new.index.difference(old.index)
    val_changed = (int((old.loc[relabelled, "split"] == "val").sum()) + int((old.loc[removed, "split"] == "val").sum())
                   + int((new.loc[added, "split"] == "val").sum()))
    return VersionDiff(len(relabelled), len(removed), len(added), val_changed)
