"""The real-photo demo: ants vs bees, the photos of PyTorch's transfer-learning tutorial.

About 400 photos (244 train, 153 validation) in ``hymenoptera_data/{train,val}/{ants,bees}``.
They come from a folder named by ``TRANSFER_DEMO_DIR`` when the operator set one (a classroom
without internet), else from the tutorial's public download, streamed to the server's cache
with a progress callback, checked, and read with the project's safe ZIP ingest (nothing is
extracted; entries with unsafe names are skipped).
No Streamlit, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from transfer_core.config import DatasetSpec, Settings
from transfer_core.data.ingest import ingest_folder, ingest_zip
from transfer_core.fileio import atomic_path

PHOTO_DEMO_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
# SHA-256 of the archive at PHOTO_DEMO_URL. None until someone with internet verifies it:
#   curl -LO https://download.pytorch.org/tutorial/hymenoptera_data.zip && sha256sum hymenoptera_data.zip
# and pastes the digest here. While it is None the file itself is not checked; its content always is
# (PHOTO_DEMO_CONTENT_SHA256), before anything is ingested.
PHOTO_DEMO_SHA256: str | None = None
# What the archive must hold, known offline: content_sha256 (below) of the unzipped hymenoptera_data
# folder, i.e. the SHA-256 of the sorted lines "<path relative to hymenoptera_data>\t<file SHA-256>\n".
# Computed here over ../shared/datasets/hymenoptera_data (398 files, 47,422,788 bytes; the archive's
# content, see shared/PROVENANCE.md) with content_sha256(folder_members(folder)). A downloaded archive
# is accepted only when its members give the same digest.
PHOTO_DEMO_CONTENT_SHA256 = "de482aeb9aa7e451514763b89460f2f6de607558d0b3b6c7490a6ae5b243ce8d"
# The archive is about 47 MB; anything much larger is not it.
PHOTO_DEMO_MAX_BYTES = 120 * 1024 * 1024
_CHUNK = 256 * 1024

# progress(bytes_done, bytes_total or None when the server does not say).
Progress = Callable[[int, int | None], None]


class PhotoDemoError(RuntimeError):
    """The real photos could not be had (offline, wrong checksum, too large); the message says what to do."""


@dataclasses.dataclass(frozen=True)
class PhotoDemo:
    """The ingested ants-and-bees data set and where it came from."""

    spec: DatasetSpec
    source: str  # the folder or the URL
    verified: bool  # the download's content matched (True for a local folder: nothing was downloaded)


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`PhotoDemoError` unless the file's SHA-256 is ``expected`` (hex, any case)."""
    actual = sha256_of(path)
    if actual != expected.strip().lower():
        raise PhotoDemoError(
            f"The downloaded file {Path(path).name} is not the expected archive: its SHA-256 is {actual}, "
            f"expected {expected}. It was not used; try again later or use TRANSFER_DEMO_DIR."
        )


Member = tuple[str, str]  # (path relative to hymenoptera_data, using "/"; the file's SHA-256 hex digest)


def content_sha256(members: Iterable[Member]) -> str:
    """The SHA-256 of the sorted ``"<path>\t<sha256>\n"`` lines: one digest for a whole file tree."""
    digest = hashlib.sha256()
    for path, file_digest in sorted(members):
        digest.update(f"{path}\t{file_digest}\n".encode())
    return digest.hexdigest()


def folder_members(folder: str | os.PathLike) -> list[Member]:
    """Every file under ``folder`` with its path relative to it and its SHA-256."""
    root = Path(folder)
    return [(path.relative_to(root).as_posix(), sha256_of(path)) for path in root.rglob("*") if path.is_file()]


def zip_members(archive: str | os.PathLike, max_bytes: int = 4 * PHOTO_DEMO_MAX_BYTES) -> list[Member]:
    """Every file entry of ``archive`` with its SHA-256, named relative to the ``hymenoptera_data/`` wrapper.

    System metadata the ingest never reads (``__MACOSX/``, hidden and ``._`` files) is left out;
    every other entry counts, so an extra or changed file changes the digest.

    Raises:
        PhotoDemoError: Not a readable ZIP, or more than ``max_bytes`` uncompressed.
    """
    members: list[Member] = []
    total = 0
    try:
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                parts = info.filename.replace("\\", "/").split("/")
                if info.is_dir() or "__MACOSX" in parts[:-1] or parts[-1].startswith("."):
                    continue
                digest = hashlib.sha256()
                with handle.open(info) as entry:
                    for chunk in iter(lambda entry=entry: entry.read(_CHUNK), b""):
                        total += len(chunk)
                        if total > max_bytes:
                            raise PhotoDemoError(f"{Path(archive).name} unpacks to more than {max_bytes} bytes; "
                                                 "it is not the ants-and-bees archive.")
                        digest.update(chunk)
                name = "/".join(parts[1:] if parts[0] == "hymenoptera_data" and len(parts) > 1 else parts)
                members.append((name, digest.hexdigest()))
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as error:
        raise PhotoDemoError(f"{Path(archive).name} is not a readable ZIP archive ({error}).") from error
    return members


def verify_content(archive: str | os.PathLike, expected: str) -> None:
    """Raise :class:`PhotoDemoError` unless the archive's members give the content digest ``expected``."""
    actual = content_sha256(zip_members(archive))
    if actual != expected.strip().lower():
        raise PhotoDemoError(
            f"The downloaded archive {Path(archive).name} does not hold the expected ants-and-bees photos (its "
            f"content digest is {actual}, expected {expected}): a file is missing, extra or changed. It was not "
            "used; try again later or use TRANSFER_DEMO_DIR."
        )


def _offline_message(url: str, reason: object) -> str:
    return (
        f"Could not download the ants-and-bees photos from {url} ({reason}). This server seems to have no "
        "internet. Download hymenoptera_data.zip on a computer that has, unzip it on the server, and set "
        "TRANSFER_DEMO_DIR to the unzipped hymenoptera_data folder (the one holding train/ and val/)."
    )


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    expected_sha256: str | None,
    progress: Progress | None = None,
    max_bytes: int = PHOTO_DEMO_MAX_BYTES,
    timeout: float = 30.0,
) -> Path:
    """Stream ``url`` to ``dest`` (written atomically), reporting progress, then check its SHA-256.

    Args:
        url: What to download.
        dest: The file to write; replaced only when the download completed and checked out.
        expected_sha256: Hex digest the file must have, or None to skip the check.
        progress: Called after every chunk with the bytes so far and the total (None if unknown).
        max_bytes: Refuse a download larger than this.
        timeout: Seconds to wait for the server at each step.

    Returns:
        ``dest`` as a Path.

    Raises:
        PhotoDemoError: No network, an HTTP error, too large, or a checksum mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(dest) as partial:  # noqa: S310
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > max_bytes:
                raise PhotoDemoError(f"{url} is {total} bytes, more than the {max_bytes} expected; not downloaded.")
            done = 0
            with open(partial, "wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    done += len(chunk)
                    if done > max_bytes:
                        raise PhotoDemoError(f"{url} sent more than {max_bytes} bytes; the download was stopped.")
                    out.write(chunk)
                    if progress is not None:
                        progress(done, total)
            if expected_sha256 is not None:
                verify_sha256(partial, expected_sha256)
    except urllib.error.HTTPError as error:
        raise PhotoDemoError(f"{url} answered HTTP {error.code} ({error.reason}); try again later, or use "
                             "TRANSFER_DEMO_DIR.") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise PhotoDemoError(_offline_message(url, getattr(error, "reason", error))) from error
    return dest


def make_photo_demo(
    dest: str | os.PathLike,
    settings: Settings,
    *,
    progress: Progress | None = None,
    url: str | None = None,
    expected_sha256: str | None = None,
    expected_content_sha256: str | None = None,
) -> PhotoDemo:
    """Ingest the ants-and-bees photos into ``dest``: from ``settings.demo_dir``, else downloaded.

    The download is kept in ``<home>/cache/downloads/`` so the next session (or student) reuses it.

    Args:
        dest: The new data set folder; must not exist or be empty.
        settings: ``demo_dir``, the cache location and the ingest limits.
        progress: Download progress callback (not called for a local folder or a cached archive).
        url: Where to download from; :data:`PHOTO_DEMO_URL` when None.
        expected_sha256: Digest the archive file must have; :data:`PHOTO_DEMO_SHA256` when None (and
            when that is None too, the file's own digest is not checked).
        expected_content_sha256: Content digest (:func:`content_sha256`) the archive's members must
            give before anything is ingested; :data:`PHOTO_DEMO_CONTENT_SHA256` when None.

    Returns:
        A :class:`PhotoDemo`; its split is the one the photos come with (train / val).

    Raises:
        PhotoDemoError: The photos cannot be had, or the download is not them (the message says what to do).
        DataError: The folder or archive holds no usable ants-and-bees images.
    """
    url = url or PHOTO_DEMO_URL
    expected_sha256 = expected_sha256 or PHOTO_DEMO_SHA256
    # The demo must work whatever the operator's upload limits are; the archive is about 47 MB.
    limits = dataclasses.replace(settings, max_upload_mb=max(settings.max_upload_mb, PHOTO_DEMO_MAX_BYTES >> 20))
    if settings.demo_dir is not None:
        folder = Path(settings.demo_dir)
        if not folder.is_dir():
            raise PhotoDemoError(f"TRANSFER_DEMO_DIR is {folder}, which is not a folder on this server.")
        return PhotoDemo(ingest_folder(folder, dest, settings=limits).spec, str(folder), True)
    expected_content_sha256 = expected_content_sha256 or PHOTO_DEMO_CONTENT_SHA256
    archive = Path(settings.cache_dir) / "downloads" / "hymenoptera_data.zip"
    if archive.is_file():
        try:  # A cached archive that no longer checks out is downloaded again.
            _verify_archive(archive, expected_sha256, expected_content_sha256)
        except PhotoDemoError:
            archive.unlink()
    if not archive.is_file():
        download(url, archive, expected_sha256=expected_sha256, progress=progress)
        try:
            _verify_archive(archive, None, expected_content_sha256)
        except PhotoDemoError:
            archive.unlink()  # Not cached: the next try downloads afresh.
            raise
    return PhotoDemo(ingest_zip(archive, dest, settings=limits).spec, url, True)


def _verify_archive(archive: Path, expected_sha256: str | None, expected_content_sha256: str) -> None:
    if expected_sha256 is not None:
        verify_sha256(archive, expected_sha256)
    verify_content(archive, expected_content_sha256)
