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
from collections.abc import Callable
from pathlib import Path

from transfer_core.config import DatasetSpec, Settings
from transfer_core.data.ingest import ingest_folder, ingest_zip
from transfer_core.fileio import atomic_path

PHOTO_DEMO_URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"
# SHA-256 of the archive at PHOTO_DEMO_URL. None until someone with internet verifies it:
#   curl -LO https://download.pytorch.org/tutorial/hymenoptera_data.zip && sha256sum hymenoptera_data.zip
# and pastes the digest here. While it is None the download is checked for size and read by the safe
# ZIP ingest only, and the result says so (PhotoDemo.verified is False).
PHOTO_DEMO_SHA256: str | None = None
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
    verified: bool  # the download matched PHOTO_DEMO_SHA256 (True for a local folder: nothing was downloaded)


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
) -> PhotoDemo:
    """Ingest the ants-and-bees photos into ``dest``: from ``settings.demo_dir``, else downloaded.

    The download is kept in ``<home>/cache/downloads/`` so the next session (or student) reuses it.

    Args:
        dest: The new data set folder; must not exist or be empty.
        settings: ``demo_dir``, the cache location and the ingest limits.
        progress: Download progress callback (not called for a local folder or a cached archive).
        url: Where to download from; :data:`PHOTO_DEMO_URL` when None.
        expected_sha256: Digest the archive must have; :data:`PHOTO_DEMO_SHA256` when None (and when
            that is None too, the archive is unchecked and ``verified`` is False).

    Returns:
        A :class:`PhotoDemo`; its split is the one the photos come with (train / val).

    Raises:
        PhotoDemoError: The photos cannot be had (the message says how to provide them).
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
    archive = Path(settings.cache_dir) / "downloads" / "hymenoptera_data.zip"
    if archive.is_file() and expected_sha256 is not None:
        try:
            verify_sha256(archive, expected_sha256)
        except PhotoDemoError:
            archive.unlink()
    if not archive.is_file():
        download(url, archive, expected_sha256=expected_sha256, progress=progress)
    return PhotoDemo(ingest_zip(archive, dest, settings=limits).spec, url, expected_sha256 is not None)
