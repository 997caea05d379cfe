"""The ants-and-bees demo: from TRANSFER_DEMO_DIR, or downloaded (a real local HTTP server), checked, ingested."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from transfer_core.config import Settings
from transfer_core.data import has_own_split, photo_demo, read_manifest


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (seed * 37 % 256, seed * 91 % 256, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def _archive(path: Path) -> Path:
    """A small archive laid out like hymenoptera_data.zip (wrapper folder, train/val, ants/bees)."""
    with zipfile.ZipFile(path, "w") as archive:
        for index, (split, label) in enumerate(
            (split, label) for split in ("train", "val") for label in ("ants", "bees") for _ in range(3)
        ):
            archive.writestr(f"hymenoptera_data/{split}/{label}/{index}.png", _png(index))
        archive.writestr("../evil.png", _png(99))  # Skipped by the safe ingest, never written.
    return path


@pytest.fixture
def served(tmp_path):
    """A real HTTP server on localhost serving one folder; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hymenoptera_data.zip"  # Nobody listens there: connection refused.


def test_sha256_of_a_real_file_and_its_verification(tmp_path):
    path = _archive(tmp_path / "a.zip")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert photo_demo.sha256_of(path) == expected
    photo_demo.verify_sha256(path, expected.upper())
    with pytest.raises(photo_demo.PhotoDemoError, match="not the expected archive"):
        photo_demo.verify_sha256(path, "0" * 64)


def test_download_streams_with_progress_and_checks_the_digest(served, tmp_path):
    folder, base = served
    archive = _archive(folder / "hymenoptera_data.zip")
    digest = photo_demo.sha256_of(archive)
    calls: list[tuple[int, int | None]] = []
    out = photo_demo.download(f"{base}/hymenoptera_data.zip", tmp_path / "dl" / "x.zip", expected_sha256=digest,
                               progress=lambda done, total: calls.append((done, total)))
    assert out.read_bytes() == archive.read_bytes()
    assert calls and calls[-1] == (archive.stat().st_size, archive.stat().st_size)
    # A wrong digest: nothing is left behind (not even a temporary file).
    with pytest.raises(photo_demo.PhotoDemoError, match="SHA-256"):
        photo_demo.download(f"{base}/hymenoptera_data.zip", tmp_path / "bad" / "x.zip", expected_sha256="ab" * 32)
    assert list((tmp_path / "bad").iterdir()) == []
    with pytest.raises(photo_demo.PhotoDemoError, match="more than"):
        photo_demo.download(f"{base}/hymenoptera_data.zip", tmp_path / "big.zip", expected_sha256=None, max_bytes=100)
    with pytest.raises(photo_demo.PhotoDemoError, match="HTTP 404"):
        photo_demo.download(f"{base}/missing.zip", tmp_path / "missing.zip", expected_sha256=None)


def test_photo_demo_downloads_once_and_ingests_safely(served, tmp_path):
    folder, base = served
    archive = _archive(folder / "hymenoptera_data.zip")
    settings = Settings(home=tmp_path / "home")
    url = f"{base}/hymenoptera_data.zip"
    digest = photo_demo.sha256_of(archive)
    content = photo_demo.content_sha256(photo_demo.zip_members(archive))
    assert ("../evil.png" in dict(photo_demo.zip_members(archive))) and ("train/ants/0.png" in dict(
        photo_demo.zip_members(archive)))  # Every entry counts, named inside the wrapper folder.
    with pytest.raises(photo_demo.PhotoDemoError, match="expected ants-and-bees photos"):
        photo_demo.make_photo_demo(tmp_path / "d0", settings, url=url, expected_sha256=digest)  # Not the real photos.
    demo = photo_demo.make_photo_demo(tmp_path / "d1", settings, url=url, expected_sha256=digest,
                                       expected_content_sha256=content)
    assert demo.verified and demo.source == url
    assert demo.spec.class_names == ("ants", "bees")
    assert has_own_split(demo.spec)
    assert read_manifest(demo.spec)["split"].value_counts().to_dict() == {"train": 6, "val": 6}
    assert not (tmp_path / "evil.png").exists()
    # The archive is cached: a second data set is made from it with the server gone.
    archive.unlink()
    again = photo_demo.make_photo_demo(tmp_path / "d2", settings, url=url, expected_sha256=digest,
                                        expected_content_sha256=content)
    assert again.spec.class_names == ("ants", "bees")


def test_offline_gives_a_message_that_says_what_to_do(tmp_path):
    with pytest.raises(photo_demo.PhotoDemoError) as raised:
        photo_demo.make_photo_demo(tmp_path / "d", Settings(home=tmp_path / "home"), url=_closed_port_url())
    message = str(raised.value)
    assert "no internet" in message and "TRANSFER_DEMO_DIR" in message and "hymenoptera_data.zip" in message
    assert not (tmp_path / "home" / "cache" / "downloads" / "hymenoptera_data.zip").exists()


def test_demo_dir_is_used_instead_of_downloading(hymenoptera_dir, tmp_path):
    settings = Settings(home=tmp_path / "home", demo_dir=hymenoptera_dir)
    demo = photo_demo.make_photo_demo(tmp_path / "d", settings, url=_closed_port_url())
    assert demo.source == str(hymenoptera_dir)
    assert demo.spec.class_names == ("ants", "bees")
    counts = read_manifest(demo.spec)["split"].value_counts().to_dict()
    assert counts["train"] > 200 and counts["val"] > 100
    with pytest.raises(photo_demo.PhotoDemoError, match="not a folder"):
        photo_demo.make_photo_demo(tmp_path / "d2", Settings(home=tmp_path / "home", demo_dir=tmp_path / "nope"))


# ----- the content digest: what the archive must hold, known offline -----------------------------


def _zip_of_folder(folder: Path, path: Path, change: str | None = None) -> Path:
    """A ZIP laid out like hymenoptera_data.zip from ``folder``; the member ``change`` gets one byte flipped."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("hymenoptera_data/", b"")
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = file.relative_to(folder).as_posix()
            data = file.read_bytes()
            if relative == change:
                data = data[:-1] + bytes([data[-1] ^ 1])
            archive.writestr(f"hymenoptera_data/{relative}", data)
        archive.writestr("__MACOSX/hymenoptera_data/._x.jpg", b"metadata")  # Never ingested, not counted.
    return path


def test_the_shared_photos_give_the_recorded_content_digest(hymenoptera_dir):
    members = photo_demo.folder_members(hymenoptera_dir)
    assert len(members) > 390
    assert photo_demo.content_sha256(members) == photo_demo.PHOTO_DEMO_CONTENT_SHA256


def test_content_digest_depends_on_every_name_and_byte():
    members = [("train/ants/a.jpg", "1" * 64), ("val/bees/b.jpg", "2" * 64)]
    digest = photo_demo.content_sha256(members)
    assert digest == photo_demo.content_sha256(list(reversed(members)))  # Order of listing does not matter.
    assert digest != photo_demo.content_sha256([("train/ants/a.jpg", "1" * 64), ("val/bees/b.jpg", "3" * 64)])
    assert digest != photo_demo.content_sha256([("train/ants/c.jpg", "1" * 64), ("val/bees/b.jpg", "2" * 64)])
    assert digest != photo_demo.content_sha256(members[:1])


def test_a_zip_of_the_shared_photos_verifies_and_one_changed_byte_is_refused(served, hymenoptera_dir, tmp_path):
    folder, base = served
    good = _zip_of_folder(hymenoptera_dir, tmp_path / "good.zip")
    photo_demo.verify_content(good, photo_demo.PHOTO_DEMO_CONTENT_SHA256)
    changed = _zip_of_folder(hymenoptera_dir, folder / "hymenoptera_data.zip", change="val/bees/72100438_73de9f17af.jpg")
    with pytest.raises(photo_demo.PhotoDemoError, match="does not hold the expected ants-and-bees photos"):
        photo_demo.verify_content(changed, photo_demo.PHOTO_DEMO_CONTENT_SHA256)
    # Through the real download path: refused before anything is ingested, and not kept in the cache.
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(photo_demo.PhotoDemoError, match="a file is missing, extra or changed"):
        photo_demo.make_photo_demo(tmp_path / "d", settings, url=f"{base}/hymenoptera_data.zip")
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
    assert not (tmp_path / "home" / "cache" / "downloads" / "hymenoptera_data.zip").exists()
