"""The three ingest routes: a server folder, a ZIP archive, browser uploads -> a data set folder.

All three routes turn their input into candidates (a name as the user gave it,
a way to read its bytes, a class label, and the split the source gave it, if
any) and hand them to one core, :func:`~transfer_core.data.ingest.store.store_dataset`. The core decodes each candidate
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

import os
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import BinaryIO

from transfer_core.config import Settings
from transfer_core.data.ingest.layout import Candidate, SourcePlan, junk_reason, plan_candidates
from transfer_core.data.ingest.sources import bytes_with_limit, list_folder, plan_zip, read_file
from transfer_core.data.ingest.store import (
    IngestResult,
    check_fractions,
    clean_dest,
    prepare_dest,
    store_dataset,
)
from transfer_core.data.manifest import (
    DataError,
    SkippedFile,
)
from transfer_core.data.zip_safety import (
    MEBIBYTE,
    clean_text,
    open_zip_archive,
    open_zip_source,
)


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
    check_fractions(seed, val_fraction, test_fraction)
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (it does not exist or is a file).")
    dest_path = prepare_dest(dest)
    try:
        files, folders, skipped = list_folder(root, settings.max_files, exclude=dest_path)
    except BaseException:
        clean_dest(dest_path)
        raise
    per_file_limit = settings.max_upload_mb * MEBIBYTE
    entries = [
        (name, parts, partial(read_file, root / Path(*parts), per_file_limit)) for name, parts in files
    ]
    source_info = plan_candidates(entries, kind="folder", description=str(root), folders=folders)
    source_info.skipped[:0] = skipped
    return store_dataset(source_info, dest_path, seed, val_fraction, test_fraction, settings)


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
    check_fractions(seed, val_fraction, test_fraction)
    handle, description, owned = open_zip_source(source, settings.max_upload_mb)
    try:
        archive = open_zip_archive(handle, description, settings.max_files)
        with archive:
            dest_path = prepare_dest(dest)
            try:
                source_info = plan_zip(archive, description, settings)
            except BaseException:
                clean_dest(dest_path)
                raise
            return store_dataset(source_info, dest_path, seed, val_fraction, test_fraction, settings)
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
    check_fractions(seed, val_fraction, test_fraction)
    dest_path = prepare_dest(dest)
    per_file_limit = settings.max_upload_mb * MEBIBYTE
    skipped: list[SkippedFile] = []

    def candidates() -> Iterator[Candidate]:
        count = 0
        for file_name, data, label in files:
            name = clean_text(str(file_name))
            base = name.replace("\\", "/").rsplit("/", 1)[-1]
            reason = junk_reason(base)
            if reason:
                skipped.append(SkippedFile(name, reason))
                continue
            count += 1
            if count > settings.max_files:
                raise DataError(f"The upload has more than {settings.max_files:,} files (the limit).")
            label_text = "" if label is None else str(label)
            yield Candidate(name, partial(bytes_with_limit, data, per_file_limit), label_text)

    source_info = SourcePlan(
        kind="uploads", description="uploaded files", candidates=candidates(), skipped=skipped
    )
    return store_dataset(source_info, dest_path, seed, val_fraction, test_fraction, settings)
