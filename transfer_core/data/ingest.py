"""Ingest images from a server folder, a ZIP archive or browser uploads into a data set folder.

All three routes turn their input into candidates (a name as the user gave it,
a way to read its bytes, a class label, and the split the source gave it, if
any) and hand them to one core, ``_ingest``. The core decodes each candidate
safely, skips what cannot be used (and says why), stores the rest under
``dest/images/<safe class folder>/<sha256[:16]><ext>``, splits, and writes the
manifest. Nothing is ever written outside ``dest``: stored file names come from
content hashes and class folder names are sanitised, so no name from the input
is used as a path.

Limits come from ``Settings``:

* ``max_files``: more candidate files than this is a ``DataError``.
* ``max_upload_mb``: the largest ZIP archive, and the largest single file.
* ``4 * max_upload_mb``: the largest total uncompressed size of a ZIP's entries.
* ``max_pixels``: the largest image (width x height) decoded.
* A ZIP entry larger than 1 MiB that is compressed more than 100:1 is skipped as
  a likely ZIP bomb (real photos compress by less than 2:1; small entries are
  exempt because a tiny flat image can compress well and cannot hurt).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from transfer_core.config import DatasetSpec, Settings
from transfer_core.data.images import ImageRejected, decode_upload, encode_for_storage
from transfer_core.data.manifest import (
    IMAGES_FOLDER,
    INGEST_FILE,
    MANIFEST_COLUMNS,
    NOTES_FILE,
    SKIPPED_FILE,
    DataError,
    SkippedFile,
    safe_folder_name,
    sort_class_names,
    write_bytes_atomic,
    write_csv_atomic,
    write_dataset_json,
    write_manifest,
    write_text_atomic,
)
from transfer_core.data.split import hash_split
from transfer_core.data.zip_safety import (
    MEBIBYTE,
    SYMLINK_REASON,
    ZIP_TOTAL_FACTOR,
    clean_text,
    is_zip_symlink,
    open_zip_archive,
    open_zip_source,
    unsafe_entry_reason,
    zip_entry_hazard,
    zip_entry_name,
)

# Folder names that mean "this is a split, not a class", in lower case.
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
_SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
_ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tgz", ".gz", ".7z", ".rar", ".bz2", ".xz", ".zst")


@dataclass(frozen=True)
class IngestResult:
    """What an ingest produced.

    Args:
        spec: The new data set.
        skipped: One entry per file that was not loaded, with the reason.
        notes: Non-fatal facts, e.g. ``"converted CMYK to RGB: x.jpg"``.
    """

    spec: DatasetSpec
    skipped: tuple[SkippedFile, ...]
    notes: tuple[str, ...]


@dataclass
class _Candidate:
    """One file to try: where it came from, how to read it, and where it belongs."""

    name: str
    read: Callable[[], bytes]
    label: str | None
    split: str | None = None


@dataclass
class _Source:
    """Candidates plus what the route already knows (skips, notes, folders, layout)."""

    kind: str
    description: str
    candidates: Iterable[_Candidate]
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    class_folders: set[str] = field(default_factory=set)
    own_split: bool = False


def ingest_folder(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    settings: Settings,
) -> IngestResult:
    """Make a data set from a folder with one sub-folder per class.

    The folder may instead hold ``train/`` and ``val/`` (or ``valid/``,
    ``validation/``) and optionally ``test/`` folders, each with class
    sub-folders; that split is then kept. Images in deeper folders inside a
    class folder belong to that class. Symbolic links are not followed.

    Args:
        source: The folder to read.
        dest: The new data set folder; must not exist or be empty.
        seed: Split seed.
        val_fraction: Share of each class for validation (when the source has no split).
        test_fraction: Share of each class for test (when the source has no split).
        settings: Limits (files, sizes, pixels).

    Returns:
        The ``IngestResult``.

    Raises:
        DataError: When the source is not a folder, ``dest`` is not empty, there
            are more than ``settings.max_files`` files, or fewer than 2 classes
            have usable images.
        ValueError: When the fractions are out of range.
    """
    _check_fractions(seed, val_fraction, test_fraction)
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (it does not exist or is a file).")
    dest_path = _prepare_dest(dest)
    try:
        files, folders, skipped = _list_folder(root, settings.max_files, exclude=dest_path)
    except BaseException:
        _clean_dest(dest_path)
        raise
    per_file_limit = settings.max_upload_mb * MEBIBYTE
    entries = [
        (name, parts, partial(_read_file, root / Path(*parts), per_file_limit)) for name, parts in files
    ]
    source_info = _plan_candidates(entries, kind="folder", description=str(root), folders=folders)
    source_info.skipped[:0] = skipped
    return _ingest(source_info, dest_path, seed, val_fraction, test_fraction, settings)


def ingest_zip(
    source: str | os.PathLike | bytes | BinaryIO,
    dest: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    settings: Settings,
) -> IngestResult:
    """Make a data set from a ZIP archive, reading one entry at a time in memory.

    Accepts the same layouts as ``ingest_folder``, optionally inside one
    top-level wrapper folder (``hymenoptera_data/train/ants/...``). Nothing is
    extracted: entry names are only used to find class labels. Entries with
    absolute paths, drive letters or ``..``, symbolic links, encrypted entries,
    nested archives, system files (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``,
    ``desktop.ini``) and hidden files are skipped, each with its reason.

    Args:
        source: A path to the ZIP file, its bytes, or a binary file object.
        dest: The new data set folder; must not exist or be empty.
        seed: Split seed.
        val_fraction: Share of each class for validation (when the source has no split).
        test_fraction: Share of each class for test (when the source has no split).
        settings: Limits (files, sizes, pixels).

    Returns:
        The ``IngestResult``.

    Raises:
        DataError: When the archive is unreadable or not a ZIP, larger than
            ``settings.max_upload_mb``, holds more than ``settings.max_files``
            files or more than ``4 * max_upload_mb`` uncompressed, ``dest`` is
            not empty, or fewer than 2 classes have usable images.
        ValueError: When the fractions are out of range.
    """
    _check_fractions(seed, val_fraction, test_fraction)
    handle, description, owned = open_zip_source(source, settings.max_upload_mb)
    try:
        archive = open_zip_archive(handle, description, settings.max_files)
        with archive:
            dest_path = _prepare_dest(dest)
            try:
                source_info = _plan_zip(archive, description, settings)
            except BaseException:
                _clean_dest(dest_path)
                raise
            return _ingest(source_info, dest_path, seed, val_fraction, test_fraction, settings)
    finally:
        if owned:
            handle.close()


def ingest_uploads(
    files: Iterable[tuple[str, bytes, str]],
    dest: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    settings: Settings,
) -> IngestResult:
    """Make a data set from uploaded files, each with the class it was uploaded to.

    Args:
        files: ``(file_name, data_bytes, label)`` tuples, as a browser upload gives them.
        dest: The new data set folder; must not exist or be empty.
        seed: Split seed.
        val_fraction: Share of each class for validation.
        test_fraction: Share of each class for test.
        settings: Limits (files, sizes, pixels).

    Returns:
        The ``IngestResult``.

    Raises:
        DataError: When there are more than ``settings.max_files`` files, ``dest``
            is not empty, or fewer than 2 classes have usable images.
        ValueError: When the fractions are out of range.
    """
    _check_fractions(seed, val_fraction, test_fraction)
    dest_path = _prepare_dest(dest)
    per_file_limit = settings.max_upload_mb * MEBIBYTE
    skipped: list[SkippedFile] = []

    def candidates() -> Iterator[_Candidate]:
        count = 0
        for file_name, data, label in files:
            name = clean_text(str(file_name))
            base = name.replace("\\", "/").rsplit("/", 1)[-1]
            reason = _junk_reason(base)
            if reason:
                skipped.append(SkippedFile(name, reason))
                continue
            count += 1
            if count > settings.max_files:
                raise DataError(f"The upload has more than {settings.max_files:,} files (the limit).")
            label_text = "" if label is None else str(label)
            yield _Candidate(name, partial(_bytes_with_limit, data, per_file_limit), label_text)

    source_info = _Source(
        kind="uploads", description="uploaded files", candidates=candidates(), skipped=skipped
    )
    return _ingest(source_info, dest_path, seed, val_fraction, test_fraction, settings)


def dataset_name_from_file(file_name: str) -> str:
    """A data set name from an uploaded file's name: its stem, cleaned (``my_photos.zip`` -> ``my_photos``).

    Args:
        file_name: The name as the browser gave it (may hold folders or odd characters).

    Returns:
        The name, or ``""`` when nothing usable is left.
    """
    base = clean_text(str(file_name)).replace("\\", "/").rsplit("/", 1)[-1]
    stem = Path(base).stem if "." in base.strip(".") else base
    return _clean_label(stem.strip(" ._"))[:60]


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
    if len(tops) == 1 and (folder := _clean_label(tops.pop()).strip(" .")):
        return folder[:60]
    labels = [label for label in (_clean_label(str(name)) for name in class_names) if label]
    if labels:
        return " vs ".join(labels[:3]) + (" etc" if len(labels) > 3 else "")
    return "dataset"


# ---------------------------------------------------------------------------
# The shared core.


def _ingest(
    source: _Source,
    dest: Path,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    settings: Settings,
) -> IngestResult:
    """Decode, store, split and describe the candidates; clean ``dest`` on failure."""
    try:
        return _ingest_into(source, dest, seed, val_fraction, test_fraction, settings)
    except DataError:
        _clean_dest(dest)
        raise
    except OSError as error:
        _clean_dest(dest)
        raise DataError(f"Could not write the data set to {dest}: {error.strerror or error}") from None
    except BaseException:
        _clean_dest(dest)
        raise


def _ingest_into(
    source: _Source,
    dest: Path,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    settings: Settings,
) -> IngestResult:
    skipped = source.skipped
    notes = source.notes
    seen_classes: dict[str, int] = {_clean_label(label) or "": 0 for label in source.class_folders}
    seen_classes.pop("", None)
    folders: dict[str, str] = {}
    first_name: dict[tuple[str, str], str] = {}
    rows: list[dict] = []

    for candidate in source.candidates:
        if candidate.label is None:
            skipped.append(SkippedFile(candidate.name, "not inside a class folder"))
            continue
        label = _clean_label(candidate.label)
        if not label:
            skipped.append(SkippedFile(candidate.name, "the class name is empty"))
            continue
        seen_classes.setdefault(label, 0)
        try:
            data = candidate.read()
        except ImageRejected as rejection:
            skipped.append(SkippedFile(candidate.name, rejection.reason))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if (label, digest) in first_name:
            # Exact copies in one class would only weigh that picture double.
            skipped.append(SkippedFile(candidate.name, f"duplicate of {first_name[label, digest]}"))
            continue
        try:
            decoded = decode_upload(data, candidate.name, settings.max_pixels)
            stored_bytes, extension, width, height = encode_for_storage(data, decoded)
        except ImageRejected as rejection:
            skipped.append(SkippedFile(candidate.name, rejection.reason))
            continue
        except MemoryError:
            skipped.append(SkippedFile(candidate.name, "the image is too large to decode in memory"))
            continue
        except Exception as error:  # A file must never take the whole data set down.
            skipped.append(
                SkippedFile(
                    candidate.name, f"could not be decoded ({type(error).__name__}: {str(error)[:120]})"
                )
            )
            continue
        first_name[label, digest] = candidate.name
        folder = folders.get(label) or _assign_folder(label, folders)
        relative = f"{IMAGES_FOLDER}/{folder}/{digest[:16]}{extension}"
        write_bytes_atomic(dest / relative, stored_bytes)
        notes.extend(decoded.notes)
        seen_classes[label] += 1
        rows.append(
            {
                "path": relative,
                "label": label,
                "split": candidate.split,
                "sha256": digest,
                "width": width,
                "height": height,
            }
        )

    usable = [label for label, count in seen_classes.items() if count > 0]
    for label, count in seen_classes.items():
        if count == 0:
            notes.append(f"dropped class {label!r}: it has no usable images")
    if len(usable) < 2:
        raise DataError(_too_few_classes_message(source, seen_classes, skipped), skipped=tuple(skipped))

    class_names = sort_class_names(usable)
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    own_split = source.own_split
    if own_split and not (frame["split"] == "val").any():
        own_split = False
        notes.append(
            "the source's validation folder has no usable images, so the split was made by content hash"
        )
    if own_split:
        frame["split"] = frame["split"].fillna("train")
        notes.append("kept the source's own train/validation split")
    else:
        frame["split"] = hash_split(frame, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)

    # A stable order (class, then content hash) makes the manifest, and everything
    # read from it, independent of the order the files arrived in.
    class_index = {name: index for index, name in enumerate(class_names)}
    frame = (
        frame.assign(_class=frame["label"].map(class_index))
        .sort_values(["_class", "sha256", "path"], kind="stable")
        .drop(columns="_class")
        .reset_index(drop=True)
    )
    spec = DatasetSpec(
        root=str(dest.resolve()),
        class_names=class_names,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
    write_manifest(dest, frame)
    write_csv_atomic(dest / SKIPPED_FILE, ("name", "reason"), [(s.name, s.reason) for s in skipped])
    write_text_atomic(dest / NOTES_FILE, "".join(f"{note}\n" for note in notes))
    meta = {
        "source_kind": source.kind,
        "source": source.description,
        "own_split": own_split,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "images": len(frame),
        "skipped": len(skipped),
        "class_folders": {label: folders[label] for label in class_names},
    }
    write_text_atomic(dest / INGEST_FILE, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    # dataset.json goes last: its presence means the data set is complete.
    write_dataset_json(spec)
    return IngestResult(spec=spec, skipped=tuple(skipped), notes=tuple(notes))


def _too_few_classes_message(source: _Source, seen: dict[str, int], skipped: list[SkippedFile]) -> str:
    if seen:
        found = ", ".join(
            f"{label!r} ({count} image{'s' if count != 1 else ''})" for label, count in seen.items()
        )
    else:
        found = "no class folders with images"
    message = f"The data set from {source.description} needs at least 2 classes with images; found: {found}."
    if skipped:
        shown = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        message += f" {len(skipped)} file{'s were' if len(skipped) != 1 else ' was'} skipped: {shown}{more}."
    return message


def _assign_folder(label: str, folders: dict[str, str]) -> str:
    """A safe folder for a new label, distinct from every folder already used."""
    folder = safe_folder_name(label)
    taken = {name.casefold() for name in folders.values()}
    if folder.casefold() in taken:
        # Eight hex digits of SHA-256 can collide, in theory; then use more of them.
        digest = hashlib.sha256(label.encode("utf-8")).hexdigest()
        folder = f"{folder.rsplit('-', 1)[0]}-{digest[:32]}"
    folders[label] = folder
    return folder


def _clean_label(label: str) -> str:
    """A label as stored: NFC-normalised (macOS writes NFD), no control characters, stripped."""
    text = unicodedata.normalize("NFC", clean_text(label))
    text = "".join(" " if unicodedata.category(char) in {"Cc", "Cs"} else char for char in text)
    return text.strip()


def _check_fractions(seed: int, val_fraction: float, test_fraction: float) -> None:
    # DatasetSpec owns the validation rules; a throwaway spec applies them before any work.
    DatasetSpec(
        root=".", class_names=("a", "b"), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )


def _prepare_dest(dest: str | os.PathLike) -> Path:
    """Create ``dest`` (or accept it empty) and return it as an absolute path."""
    path = Path(dest).absolute()
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise DataError(f"{path} exists and is not a folder; choose a new folder for the data set.")
        if any(path.iterdir()):
            raise DataError(f"{path} is not empty; choose a new or empty folder for the data set.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _clean_dest(dest: Path) -> None:
    """Remove what a failed ingest wrote. ``dest`` was empty before, so all of it goes."""
    if not dest.is_dir() or dest.is_symlink():
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _junk_reason(base_name: str) -> str | None:
    """Why a file name is a system or hidden file, or None for an ordinary name."""
    lowered = base_name.lower()
    if lowered in _SYSTEM_FILES:
        return "system file, not an image"
    if base_name.startswith("._"):
        return "macOS metadata file, not an image"
    if base_name.startswith("."):
        return "hidden file"
    return None


def _junk_folder_reason(folder_name: str) -> str | None:
    """Why a folder's contents are skipped as a whole, or None for an ordinary folder."""
    if folder_name == "__MACOSX":
        return "macOS metadata folder (__MACOSX), not images"
    if folder_name.startswith("."):
        return "hidden folder"
    return None


# ---------------------------------------------------------------------------
# Layout: which part of a path is a wrapper, a split, a class.


def _plan_candidates(
    entries: list[tuple[str, tuple[str, ...], Callable[[], bytes]]],
    *,
    kind: str,
    description: str,
    folders: Iterable[tuple[str, ...]] = (),
) -> _Source:
    """Work out the layout of relative paths and turn them into candidates.

    Args:
        entries: ``(display name, path parts, reader)`` per file.
        kind: ``"folder"`` or ``"zip"``.
        description: How to name the source in messages.
        folders: Path parts of folders, so empty class folders are known too.
    """
    folders = [parts for parts in folders if parts]
    all_parts = [parts for _, parts, _ in entries]
    prefix = _wrapper_depth(all_parts)
    own_split = _is_split_layout([parts[prefix:] for parts in all_parts])
    source = _Source(kind=kind, description=description, candidates=[], own_split=own_split)
    candidates: list[_Candidate] = []
    for name, parts, reader in entries:
        inner = parts[prefix:]
        if len(inner) < 2:
            source.skipped.append(SkippedFile(name, "not inside a class folder"))
        elif not own_split:
            candidates.append(_Candidate(name, reader, inner[0]))
        elif _SPLIT_ALIASES.get(inner[0].lower()) is None:
            source.skipped.append(SkippedFile(name, "outside the train/val/test folders"))
        elif len(inner) < 3:
            source.skipped.append(SkippedFile(name, "not inside a class folder"))
        else:
            candidates.append(_Candidate(name, reader, inner[1], _SPLIT_ALIASES[inner[0].lower()]))
    wrapper = all_parts[0][:prefix] if all_parts else ()
    for parts in folders:
        if parts[:prefix] != wrapper:
            continue
        inner = parts[prefix:]
        if own_split and len(inner) >= 2 and inner[0].lower() in _SPLIT_ALIASES:
            source.class_folders.add(inner[1])
        elif not own_split and len(inner) >= 1:
            source.class_folders.add(inner[0])
    source.candidates = candidates
    if prefix:
        source.notes.append(f"used {'/'.join(all_parts[0][:prefix])}/ as the top folder")
    return source


def _wrapper_depth(all_parts: list[tuple[str, ...]]) -> int:
    """How many leading folders every file shares and that are only wrappers.

    A shared top folder is a wrapper when some file lies at least two folders
    below it (``wrapper/class/file``); loose files next to the class folders
    (a README) do not stop that, they are skipped later as outside any class.
    """
    prefix = 0
    while all_parts and prefix < 8:
        if any(len(parts) <= prefix + 1 for parts in all_parts):
            break
        if not any(len(parts) >= prefix + 3 for parts in all_parts):
            break
        first = {parts[prefix] for parts in all_parts}
        if len(first) != 1 or next(iter(first)).lower() in _SPLIT_ALIASES:
            break
        prefix += 1
    return prefix


def _is_split_layout(all_parts: list[tuple[str, ...]]) -> bool:
    """A source has its own split when a ``train`` folder holds class folders."""
    return any(len(parts) >= 3 and _SPLIT_ALIASES.get(parts[0].lower()) == "train" for parts in all_parts)


# ---------------------------------------------------------------------------
# Folder route.


def _list_folder(
    root: Path, max_files: int, exclude: Path | None = None
) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, ...]], list[SkippedFile]]:
    """Every regular file under ``root`` as (display name, parts), sorted; every folder's parts; skipped entries."""
    files: list[tuple[str, tuple[str, ...]]] = []
    folders: list[tuple[str, ...]] = []
    skipped: list[SkippedFile] = []
    errors: list[OSError] = []
    exclude_resolved = exclude.resolve() if exclude else None
    for directory, dirnames, filenames in os.walk(root, followlinks=False, onerror=errors.append):
        here = Path(directory)
        relative_dir = here.relative_to(root).parts
        kept_dirs = []
        for dirname in sorted(dirnames):
            full = here / dirname
            display = "/".join((*relative_dir, dirname)) + "/"
            reason = "symbolic links are not followed" if full.is_symlink() else _junk_folder_reason(dirname)
            if exclude_resolved is not None and full.resolve() == exclude_resolved:
                continue
            if reason:
                skipped.append(SkippedFile(clean_text(display), reason))
            else:
                kept_dirs.append(dirname)
                folders.append((*relative_dir, dirname))
        dirnames[:] = kept_dirs
        for filename in sorted(filenames):
            parts = (*relative_dir, filename)
            display = clean_text("/".join(parts))
            full = here / filename
            reason = _junk_reason(filename)
            if reason is None:
                try:
                    mode = full.lstat().st_mode
                except OSError as error:
                    reason = f"could not be read ({error.strerror or error})"
                else:
                    if stat.S_ISLNK(mode):
                        reason = "symbolic links are not followed"
                    elif not stat.S_ISREG(mode):
                        reason = "not a regular file"
            if reason:
                skipped.append(SkippedFile(display, reason))
                continue
            files.append((display, parts))
            if len(files) > max_files:
                raise DataError(f"{root} has more than {max_files:,} files (the limit).")
    for error in errors:
        skipped.append(
            SkippedFile(clean_text(str(error.filename or root)), f"could not be read ({error.strerror})")
        )
    return files, folders, skipped


def _read_file(path: Path, limit: int) -> bytes:
    """Read a file, refusing one larger than ``limit`` bytes without reading it all."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise ImageRejected(f"could not be read ({error.strerror or error})") from None
    if len(data) > limit:
        raise ImageRejected(f"the file is larger than the limit of {limit // MEBIBYTE} MB")
    return data


def _bytes_with_limit(data: bytes, limit: int) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageRejected(f"the upload is not file data (received {type(data).__name__})")
    if len(data) > limit:
        raise ImageRejected(f"the file is larger than the limit of {limit // MEBIBYTE} MB")
    return bytes(data)


# ---------------------------------------------------------------------------
# ZIP route.


def _plan_zip(archive: zipfile.ZipFile, description: str, settings: Settings) -> _Source:
    """Filter the archive's entries and turn the usable ones into candidates."""
    per_file_limit = settings.max_upload_mb * MEBIBYTE
    total_limit = ZIP_TOTAL_FACTOR * settings.max_upload_mb * MEBIBYTE
    skipped: list[SkippedFile] = []
    junk_folders: dict[str, list[str]] = {}
    entries: list[tuple[str, tuple[str, ...], Callable[[], bytes]]] = []
    folders: list[tuple[str, ...]] = []
    total_size = 0
    for info in archive.infolist():
        name = zip_entry_name(info)
        reason = unsafe_entry_reason(name)
        if reason:
            skipped.append(SkippedFile(name, reason))
            continue
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if not parts:
            continue
        junk = next(((i, r) for i, p in enumerate(parts[:-1]) if (r := _junk_folder_reason(p))), None)
        if junk is not None:
            index, junk_reason = junk
            junk_folders.setdefault("/".join(parts[: index + 1]) + "/", [junk_reason]).append(name)
            continue
        if info.is_dir():
            if _junk_folder_reason(parts[-1]):
                junk_folders.setdefault("/".join(parts) + "/", [_junk_folder_reason(parts[-1]) or ""])
            else:
                folders.append(parts)
            continue
        reason = _zip_entry_skip_reason(info, parts[-1], per_file_limit)
        if reason:
            skipped.append(SkippedFile(name, reason))
            continue
        total_size += info.file_size
        entries.append((name, parts, partial(_read_zip_entry, archive, info, per_file_limit)))
    if len(entries) > settings.max_files:
        raise DataError(
            f"{description} has {len(entries):,} files, more than the limit of {settings.max_files:,}."
        )
    if total_size > total_limit:
        raise DataError(
            f"{description} holds {total_size / MEBIBYTE:,.0f} MB uncompressed, more than the limit of "
            f"{total_limit // MEBIBYTE:,} MB (4 x the upload limit)."
        )
    for folder, (junk_reason, *names) in junk_folders.items():
        count = len(names)
        suffix = f" ({count} file{'s' if count != 1 else ''} skipped)" if count else ""
        skipped.append(SkippedFile(folder, junk_reason + suffix))
    source = _plan_candidates(entries, kind="zip", description=description, folders=folders)
    source.skipped[:0] = skipped
    return source


def _zip_entry_skip_reason(info: zipfile.ZipInfo, base_name: str, per_file_limit: int) -> str | None:
    """Why a file entry is skipped before reading it, or None."""
    if is_zip_symlink(info):
        return SYMLINK_REASON
    reason = _junk_reason(base_name)
    if reason:
        return reason
    if base_name.lower().endswith(_ARCHIVE_EXTENSIONS):
        return "nested archives are not opened"
    return zip_entry_hazard(info, per_file_limit)


def _read_zip_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """Read one entry in memory; the zipfile module stops at the declared size and checks the CRC."""
    try:
        with archive.open(info) as handle:
            data = handle.read(limit + 1)
    except zipfile.BadZipFile as error:
        raise ImageRejected(f"the entry is corrupt in the ZIP ({error})") from None
    except NotImplementedError as error:
        raise ImageRejected(f"the entry uses an unsupported compression method ({error})") from None
    except RuntimeError as error:
        raise ImageRejected(f"the entry could not be read ({error})") from None
    except Exception as error:
        raise ImageRejected(
            f"the entry could not be read from the ZIP ({type(error).__name__}: {error})"
        ) from None
    if len(data) > limit:
        raise ImageRejected(f"the file is larger than the limit of {limit // MEBIBYTE} MB")
    return data
