"""ZIP safety checks shared by every route that reads a ZIP from a user: data set ingest and project files.

A leaf module (standard library only). Nothing here extracts: these functions open an
archive with its size and entry count checked first, name entries safely, and say why an
entry must not be used (traversal paths, symbolic links, encryption, size, likely bombs).

* An archive larger than ``max_upload_mb`` is refused before it is parsed.
* An archive whose end record states far more entries than ``max_files`` is refused
  before its central directory is read.
* An entry larger than 1 MiB compressed more than 100:1 is a likely ZIP bomb (real
  photos compress by less than 2:1; small entries are exempt because a tiny flat image
  can compress well and cannot hurt).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO

from transfer_core.data.manifest import DataError

ZIP_BOMB_RATIO = 100
ZIP_BOMB_MIN_BYTES = 1 << 20
ZIP_TOTAL_FACTOR = 4  # The largest total uncompressed size, as a multiple of the upload limit.
MEBIBYTE = 1 << 20
SYMLINK_REASON = "symbolic links are not followed"


def clean_text(text: str) -> str:
    """Text that can be written as UTF-8 (undecodable file names carry surrogates)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def is_zip_symlink(info: zipfile.ZipInfo) -> bool:
    """Whether the entry is a symbolic link (Unix mode bits in its external attributes)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def zip_entry_hazard(info: zipfile.ZipInfo, per_file_limit: int) -> str | None:
    """Why reading this entry is unsafe (symlink, encrypted, too large, likely a bomb), or None."""
    if is_zip_symlink(info):
        return SYMLINK_REASON
    if info.flag_bits & 0x1:
        return "the entry is encrypted (password-protected ZIPs are not supported)"
    if info.file_size > per_file_limit:
        return f"the file is larger than the limit of {per_file_limit // MEBIBYTE} MB"
    if info.file_size > ZIP_BOMB_MIN_BYTES and info.file_size > ZIP_BOMB_RATIO * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return f"likely a ZIP bomb (compressed {ratio:,.0f}:1, over the limit of {ZIP_BOMB_RATIO}:1)"
    return None


def open_zip_source(
    source: str | os.PathLike | bytes | BinaryIO, max_upload_mb: int
) -> tuple[BinaryIO, str, bool]:
    """A seekable binary handle on the archive, its description, and whether we must close it."""
    limit = max_upload_mb * MEBIBYTE
    too_big = "The ZIP archive {} is {:.1f} MB, larger than the limit of {} MB."
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) > limit:
            raise DataError(too_big.format("upload", len(source) / MEBIBYTE, max_upload_mb))
        return io.BytesIO(bytes(source)), "the uploaded ZIP archive", True
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise DataError(f"{path} is not a file.")
        except OSError as error:
            raise DataError(f"Could not open the ZIP archive {path}: {error.strerror or error}") from None
        if size > limit:
            raise DataError(too_big.format(path.name, size / MEBIBYTE, max_upload_mb))
        return path.open("rb"), str(path), True
    if hasattr(source, "read"):
        description = f"the ZIP archive {getattr(source, 'name', '') or 'upload'}"
        seekable = getattr(source, "seekable", lambda: False)()
        if not seekable:
            data = source.read(limit + 1)
            if len(data) > limit:
                raise DataError(too_big.format("upload", len(data) / MEBIBYTE, max_upload_mb))
            return io.BytesIO(data), description, True
        start = source.tell()
        size = source.seek(0, os.SEEK_END) - start
        source.seek(start)
        if size > limit:
            raise DataError(too_big.format("upload", size / MEBIBYTE, max_upload_mb))
        return source, description, False
    raise TypeError(
        f"source must be a path, bytes or a binary file object. Received: source={type(source).__name__}"
    )


def open_zip_archive(handle: BinaryIO, description: str, max_files: int) -> zipfile.ZipFile:
    """Open the archive after checking its entry count from the end record."""
    not_zip = f"{description} is not a readable ZIP archive"
    try:
        # The end record states the entry count; checking it first avoids parsing
        # a central directory of millions of entries into memory.
        end_record = zipfile._EndRecData(handle)  # noqa: SLF001 - no public API for this.
        if end_record and end_record[zipfile._ECD_ENTRIES_TOTAL] > max_files * 4 + 1000:  # noqa: SLF001
            raise DataError(
                f"{description} has {end_record[zipfile._ECD_ENTRIES_TOTAL]:,} entries, "  # noqa: SLF001
                f"more than the limit of {max_files:,} files."
            )
        handle.seek(0)
        return zipfile.ZipFile(handle)
    except DataError:
        raise
    except zipfile.BadZipFile as error:
        raise DataError(f"{not_zip} ({error}); is it a ZIP file, and was it uploaded completely?") from None
    except (OSError, EOFError, ValueError, NotImplementedError, IndexError, KeyError) as error:
        raise DataError(f"{not_zip} ({type(error).__name__}: {error}).") from None
    except Exception as error:  # The zipfile module can raise struct.error and others on hostile input.
        raise DataError(f"{not_zip} ({type(error).__name__}).") from None


def zip_entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its author saw it, with forward slashes."""
    name = info.filename
    if not info.flag_bits & 0x800:
        # Without the UTF-8 flag zipfile decodes as CP437, but many tools write UTF-8 anyway.
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            name = name.encode("cp437").decode("utf-8")
    return clean_text(name.replace("\\", "/"))


def unsafe_entry_reason(name: str) -> str | None:
    if name.startswith("/"):
        return "unsafe path in the ZIP (absolute path); not extracted"
    if re.match(r"^[A-Za-z]:", name):
        return "unsafe path in the ZIP (drive letter); not extracted"
    if any(part == ".." for part in name.split("/")):
        return "unsafe path in the ZIP ('..' leads outside the folder); not extracted"
    if "\x00" in name:
        return "unsafe path in the ZIP (NUL character); not extracted"
    return None
