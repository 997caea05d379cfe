"""Writing a data set: decode each candidate, store it by content hash, split, write the manifest.

Nothing is ever written outside ``dest``: stored file names come from content hashes and class
folder names are sanitised. A failed ingest removes what it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from transfer_core.config import DatasetSpec, Settings
from transfer_core.data.images import ImageRejected, decode_upload, encode_for_storage
from transfer_core.data.ingest.layout import SourcePlan
from transfer_core.data.ingest.naming import clean_label
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


def store_dataset(
    source: SourcePlan,
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
        clean_dest(dest)
        raise
    except OSError as error:
        clean_dest(dest)
        raise DataError(f"Could not write the data set to {dest}: {error.strerror or error}") from None
    except BaseException:
        clean_dest(dest)
        raise


def _ingest_into(
    source: SourcePlan,
    dest: Path,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    settings: Settings,
) -> IngestResult:
    skipped = source.skipped
    notes = source.notes
    seen_classes: dict[str, int] = {clean_label(label) or "": 0 for label in source.class_folders}
    seen_classes.pop("", None)
    folders: dict[str, str] = {}
    first_name: dict[tuple[str, str], str] = {}
    rows: list[dict] = []

    for candidate in source.candidates:
        if candidate.label is None:
            skipped.append(SkippedFile(candidate.name, "not inside a class folder"))
            continue
        label = clean_label(candidate.label)
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


def _too_few_classes_message(source: SourcePlan, seen: dict[str, int], skipped: list[SkippedFile]) -> str:
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


def check_fractions(seed: int, val_fraction: float, test_fraction: float) -> None:
    # DatasetSpec owns the validation rules; a throwaway spec applies them before any work.
    DatasetSpec(
        root=".", class_names=("a", "b"), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )


def prepare_dest(dest: str | os.PathLike) -> Path:
    """Create ``dest`` (or accept it empty) and return it as an absolute path."""
    path = Path(dest).absolute()
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise DataError(f"{path} exists and is not a folder; choose a new folder for the data set.")
        if any(path.iterdir()):
            raise DataError(f"{path} is not empty; choose a new or empty folder for the data set.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def clean_dest(dest: Path) -> None:
    """Remove what a failed ingest wrote. ``dest`` was empty before, so all of it goes."""
    if not dest.is_dir() or dest.is_symlink():
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
