"""Reading a server folder or a ZIP archive into a :class:`SourcePlan`, within the limits.

Nothing is extracted or followed: symbolic links, nested archives and entries that look
like ZIP bombs are skipped with their reason; reads stop at the per-file limit.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from transfer_core.config import Settings
from transfer_core.data.images import ImageRejected
from transfer_core.data.ingest.layout import SourcePlan, junk_folder_reason, junk_reason, plan_candidates
from transfer_core.data.manifest import (
    DataError,
    SkippedFile,
)
from transfer_core.data.zip_safety import (
    MEBIBYTE,
    SYMLINK_REASON,
    ZIP_TOTAL_FACTOR,
    clean_text,
    is_zip_symlink,
    unsafe_entry_reason,
    zip_entry_hazard,
    zip_entry_name,
)


def list_folder(
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
            reason = "symbolic links are not followed" if full.is_symlink() else junk_folder_reason(dirname)
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
            reason = junk_reason(filename)
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


def read_file(path: Path, limit: int) -> bytes:
    """Read a file, refusing one larger than ``limit`` bytes without reading it all."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise ImageRejected(f"could not be read ({error.strerror or error})") from None
    if len(data) > limit:
        raise ImageRejected(f"the file is larger than the limit of {limit // MEBIBYTE} MB")
    return data


def bytes_with_limit(data: bytes, limit: int) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageRejected(f"the upload is not file data (received {type(data).__name__})")
    if len(data) > limit:
        raise ImageRejected(f"the file is larger than the limit of {limit // MEBIBYTE} MB")
    return bytes(data)


_ARCHIVE_EXTENSIONS = (".zip", ".tar", ".tgz", ".gz", ".7z", ".rar", ".bz2", ".xz", ".zst")


def plan_zip(archive: zipfile.ZipFile, description: str, settings: Settings) -> SourcePlan:
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
        junk = next(((i, r) for i, p in enumerate(parts[:-1]) if (r := junk_folder_reason(p))), None)
        if junk is not None:
            index, junk_reason = junk
            junk_folders.setdefault("/".join(parts[: index + 1]) + "/", [junk_reason]).append(name)
            continue
        if info.is_dir():
            if junk_folder_reason(parts[-1]):
                junk_folders.setdefault("/".join(parts) + "/", [junk_folder_reason(parts[-1]) or ""])
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
    source = plan_candidates(entries, kind="zip", description=description, folders=folders)
    source.skipped[:0] = skipped
    return source


def _zip_entry_skip_reason(info: zipfile.ZipInfo, base_name: str, per_file_limit: int) -> str | None:
    """Why a file entry is skipped before reading it, or None."""
    if is_zip_symlink(info):
        return SYMLINK_REASON
    reason = junk_reason(base_name)
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
