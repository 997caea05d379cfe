"""Bad input is expected input: each kind is skipped (or converted) with a reason, the rest still loads,
and nothing is written outside the data set folder."""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers.bad_files import png_chunk, zip_bytes
from helpers.images import encode
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from transfer_core.config import Settings
from transfer_core.data import (
    DataError,
    ImageRejected,
    IngestResult,
    ingest_folder,
    ingest_uploads,
    ingest_zip,
    load_image,
    read_manifest,
    read_skipped,
)

SETTINGS = Settings(max_files=500)


def noise_png(index: int, size: int = 8) -> bytes:
    rng = np.random.default_rng(index)
    return encode(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)))


def good_uploads() -> list[tuple[str, bytes, str]]:
    """Two healthy classes of three images each."""
    return [
        (f"{label}/ok_{i}.png", noise_png(n * 10 + i), label)
        for n, label in enumerate(["cats", "dogs"])
        for i in range(3)
    ]


def good_tree() -> dict[str, bytes]:
    return {name: data for name, data, _ in good_uploads()}


def ingest_with(tmp_path: Path, name: str, data: bytes, settings: Settings = SETTINGS) -> IngestResult:
    """Upload the healthy set plus one extra file into class "cats"."""
    result = ingest_uploads([*good_uploads(), (name, data, "cats")], tmp_path / "ds", settings=settings)
    frame = read_manifest(result.spec)
    # The rest of the data set always still loads.
    assert result.spec.class_names == ("cats", "dogs")
    assert (frame["label"] == "dogs").sum() == 3
    assert (frame["label"] == "cats").sum() >= 3
    return result


def reason_for(result: IngestResult, name: str) -> str:
    reasons = {item.name: item.reason for item in result.skipped}
    assert name in reasons, f"{name} was not reported as skipped: {reasons}"
    # The same list is on disk for the health report.
    assert reasons[name] in {item.reason for item in read_skipped(result.spec)}
    return reasons[name]


def stored_image(result: IngestResult, label: str = "cats") -> tuple[Image.Image, dict]:
    """The one stored image of ``label`` that is not one of the healthy ones, and its manifest row."""
    frame = read_manifest(result.spec)
    rows = frame[(frame["label"] == label) & ~frame["sha256"].isin(_good_hashes())]
    assert len(rows) == 1, rows
    row = rows.iloc[0]
    return Image.open(Path(result.spec.root) / row["path"]), row.to_dict()


def _good_hashes() -> set[str]:
    import hashlib

    return {hashlib.sha256(data).hexdigest() for _, data, _ in good_uploads()}


def listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


# ---------------------------------------------------------------------------
# Files that are not (usable) images.


def test_zero_byte_file(tmp_path: Path) -> None:
    assert reason_for(ingest_with(tmp_path, "empty.jpg", b""), "empty.jpg") == "the file is empty"


def test_random_bytes_named_jpg(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    assert "not an image" in reason_for(ingest_with(tmp_path, "noise.jpg", data), "noise.jpg")


def test_text_file(tmp_path: Path) -> None:
    reason = reason_for(ingest_with(tmp_path, "notes.txt", b"shopping list: eggs, milk\n" * 5), "notes.txt")
    assert reason == "not an image: it is a text file"


def test_html_page_named_png(tmp_path: Path) -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Photo</title></head><body>...</body></html>"
    assert "web page (HTML)" in reason_for(ingest_with(tmp_path, "saved.png", page), "saved.png")


def test_svg_is_rejected_as_vector(tmp_path: Path) -> None:
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    assert "vector images are not supported" in reason_for(ingest_with(tmp_path, "logo.svg", svg), "logo.svg")
    # Also when it is named like a bitmap.
    with pytest.raises(ImageRejected, match="vector images are not supported"):
        load_image(svg, "logo.png", 10_000)


def test_heic_is_rejected_with_advice(tmp_path: Path) -> None:
    heic = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 100
    assert (
        reason_for(ingest_with(tmp_path, "IMG_0001.HEIC", heic), "IMG_0001.HEIC")
        == "HEIC is not supported; convert to JPEG"
    )


def test_truncated_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    full = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    reason = reason_for(ingest_with(tmp_path, "cut.jpg", full[: len(full) // 2]), "cut.jpg")
    assert "truncated" in reason


def test_truncated_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    full = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    reason = reason_for(ingest_with(tmp_path, "cut.png", full[: len(full) // 2]), "cut.png")
    assert "truncated" in reason or "corrupt" in reason


def test_image_over_the_pixel_limit(tmp_path: Path) -> None:
    # The healthy images are 8 x 8 = 64 pixels; the limit lets them through.
    big = encode(Image.new("RGB", (20, 20), (1, 2, 3)))
    result = ingest_with(tmp_path, "big.png", big, settings=Settings(max_files=500, max_pixels=300))
    assert "too large: 20x20 = 400 pixels, over the limit of 300" in reason_for(result, "big.png")


def test_decompression_bomb_header_is_rejected_before_decoding(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + png_chunk(b"IEND", b"")
    )
    assert "too large" in reason_for(ingest_with(tmp_path, "bomb.png", bomb), "bomb.png")
    # Also when the claimed size is under Pillow's own bomb limit but over ours.
    header = struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0)
    small_bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    with pytest.raises(ImageRejected, match="too large: 5000x5000"):
        load_image(small_bomb, "b.png", max_pixels=1_000_000)


def test_non_image_binary_formats(tmp_path: Path) -> None:
    with pytest.raises(ImageRejected, match="PDF"):
        load_image(b"%PDF-1.4\n%binary", "doc.pdf", 10_000)
    with pytest.raises(ImageRejected, match="video"):
        load_image(struct.pack(">I", 24) + b"ftypisom" + b"\x00" * 40, "clip.mp4", 10_000)


# ---------------------------------------------------------------------------
# Images that need converting.


def test_animated_gif_keeps_first_frame_with_note(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = ingest_with(tmp_path, "anim.gif", gif)
    assert "used the first frame of animated anim.gif" in result.notes
    image, row = stored_image(result)
    assert image.convert("RGB").getpixel((5, 5)) == (255, 0, 0)
    assert row["path"].endswith(".png")


def test_16_bit_png_is_scaled_to_8_bit(tmp_path: Path) -> None:
    array = np.full((10, 10), 65535, dtype=np.uint16)
    array[:, :5] = 257 * 100
    result = ingest_with(tmp_path, "deep.png", encode(Image.fromarray(array)))
    assert any(note.startswith("converted 16-bit image to 8-bit") for note in result.notes)
    image, _ = stored_image(result)
    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == (100, 100, 100)
    assert image.getpixel((8, 1)) == (255, 255, 255)


def test_cmyk_jpeg_is_converted(tmp_path: Path) -> None:
    cmyk = encode(Image.new("CMYK", (10, 10), (0, 255, 255, 0)), "JPEG")
    result = ingest_with(tmp_path, "print.jpg", cmyk)
    assert "converted CMYK to RGB: print.jpg" in result.notes
    image, row = stored_image(result)
    assert row["path"].endswith(".png")
    red, green, blue = image.getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    result = ingest_with(tmp_path, "gray.png", encode(Image.new("L", (10, 10), 77)))
    assert "converted grayscale to RGB: gray.png" in result.notes
    image, _ = stored_image(result)
    assert image.mode == "RGB" and image.getpixel((3, 3)) == (77, 77, 77)


def test_palette_with_transparency_is_put_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 255] + [255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    result = ingest_with(tmp_path, "logo.png", encode(image, transparency=0))
    stored, _ = stored_image(result)
    assert stored.getpixel((2, 2)) == (255, 0, 0)
    assert stored.getpixel((8, 2)) == (255, 255, 255)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.paste((0, 128, 0, 255), (0, 0, 5, 10))
    result = ingest_with(tmp_path, "alpha.png", encode(image))
    assert any("white background" in note for note in result.notes)
    stored, _ = stored_image(result)
    assert stored.getpixel((2, 2)) == (0, 128, 0)
    assert stored.getpixel((8, 2)) == (255, 255, 255)


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "Rotate 90 CW to display": the stored pixels are on their side.
    result = ingest_with(tmp_path, "phone.jpg", encode(image, "JPEG", exif=exif.tobytes()))
    assert "applied EXIF rotation: phone.jpg" in result.notes
    stored, row = stored_image(result)
    assert (row["width"], row["height"]) == (20, 40)
    assert stored.size == (20, 40)
    assert row["path"].endswith(".png")


def test_one_pixel_image_is_kept_with_a_note(tmp_path: Path) -> None:
    result = ingest_with(tmp_path, "dot.png", encode(Image.new("RGB", (1, 1), (9, 9, 9))))
    _, row = stored_image(result)
    assert (row["width"], row["height"]) == (1, 1)
    assert any(note.startswith("very small image (1x1 pixels)") for note in result.notes)


# ---------------------------------------------------------------------------
# Folders and archives.


def test_hidden_and_system_files_are_skipped(tmp_path: Path) -> None:
    tree = {
        **good_tree(),
        "cats/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "cats/Thumbs.db": b"\xd0\xcf\x11\xe0",
        "dogs/desktop.ini": b"[.ShellClassInfo]",
        "cats/._ok_0.png": b"\x00\x05\x16\x07",
        "dogs/.secret.png": noise_png(77),
        ".git/objects/ab": b"blob",
    }
    for name, data in tree.items():
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(data)
    result = ingest_folder(tmp_path / "src", tmp_path / "ds", settings=SETTINGS)
    assert reason_for(result, "cats/.DS_Store") == "system file, not an image"
    assert reason_for(result, "cats/Thumbs.db") == "system file, not an image"
    assert reason_for(result, "dogs/desktop.ini") == "system file, not an image"
    assert reason_for(result, "cats/._ok_0.png") == "macOS metadata file, not an image"
    assert reason_for(result, "dogs/.secret.png") == "hidden file"
    assert reason_for(result, ".git/") == "hidden folder"
    assert len(read_manifest(result.spec)) == 6


def test_symlinked_file_in_folder_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(noise_png(55))
    source = tmp_path / "src"
    for name, data in good_tree().items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    os.symlink(outside, source / "cats" / "link.png")
    result = ingest_folder(source, tmp_path / "ds", settings=SETTINGS)
    assert reason_for(result, "cats/link.png") == "symbolic links are not followed"


def test_macosx_folder_in_zip_is_skipped(tmp_path: Path) -> None:
    archive = zip_bytes(
        {**good_tree(), "__MACOSX/cats/._ok_0.png": b"\x00\x05\x16\x07", "__MACOSX/._cats": b"x"}
    )
    result = ingest_zip(archive, tmp_path / "ds", settings=SETTINGS)
    assert reason_for(result, "__MACOSX/").startswith("macOS metadata folder (__MACOSX)")
    assert "2 files" in reason_for(result, "__MACOSX/")
    assert result.spec.class_names == ("cats", "dogs")


def test_zip_traversal_and_absolute_entries_are_rejected(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    before = listing(tmp_path)
    evil = [
        ("../evil.jpg", noise_png(90)),
        ("/abs.jpg", noise_png(91)),
        ("C:/drive.jpg", noise_png(92)),
        ("cats/../../escape.png", noise_png(93)),
        ("..\\windows.png", noise_png(94)),
    ]
    archive = _with_raw_names(zip_bytes([*good_tree().items(), *evil]))
    result = ingest_zip(archive, work / "ds", settings=SETTINGS)

    for name in ["../evil.jpg", "/abs.jpg", "C:/drive.jpg", "cats/../../escape.png", "../windows.png"]:
        assert reason_for(result, name).startswith("unsafe path in the ZIP"), name
    assert len(read_manifest(result.spec)) == 6
    assert listing(tmp_path) - before == {"work/ds"} | {f"work/ds/{p}" for p in listing(work / "ds")}


def _with_raw_names(archive: bytes) -> bytes:
    """zipfile writes names verbatim; check that it did (the test relies on hostile names)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = opened.namelist()
    assert "../evil.jpg" in names and "/abs.jpg" in names
    return archive


def test_symlink_entry_in_zip_is_skipped(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("cats/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = zip_bytes([*good_tree().items(), (link, b"/etc/passwd")])
    result = ingest_zip(archive, tmp_path / "ds", settings=SETTINGS)
    assert reason_for(result, "cats/link.png") == "symbolic links are not followed"


def test_encrypted_entry_in_zip_is_skipped(tmp_path: Path) -> None:
    archive = bytearray(zip_bytes({**good_tree(), "cats/secret.png": noise_png(60)}))
    # Set the "encrypted" flag bit on that entry in its local and central headers.
    with zipfile.ZipFile(io.BytesIO(bytes(archive))) as opened:
        info = opened.getinfo("cats/secret.png")
    archive[info.header_offset + 6] |= 0x1
    central = archive.find(b"PK\x01\x02" + archive[info.header_offset + 4 : info.header_offset + 6])
    while archive[central + 46 : central + 46 + 15] != b"cats/secret.png":
        central = archive.find(b"PK\x01\x02", central + 1)
    archive[central + 8] |= 0x1
    with zipfile.ZipFile(io.BytesIO(bytes(archive))) as opened:
        assert opened.getinfo("cats/secret.png").flag_bits & 0x1
    result = ingest_zip(bytes(archive), tmp_path / "ds", settings=SETTINGS)
    assert "encrypted" in reason_for(result, "cats/secret.png")


def test_nested_zip_is_not_opened(tmp_path: Path) -> None:
    inner = zip_bytes({"cats/x.png": noise_png(70)})
    result = ingest_zip(
        zip_bytes({**good_tree(), "cats/more.zip": inner}), tmp_path / "ds", settings=SETTINGS
    )
    assert reason_for(result, "cats/more.zip") == "nested archives are not opened"
    # The same when the nested archive has an image's name.
    result = ingest_uploads(
        [*good_uploads(), ("sneaky.png", inner, "cats")], tmp_path / "up", settings=SETTINGS
    )
    assert reason_for(result, "sneaky.png") == "nested archives are not opened"


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04garbage-that-is-no-zip", b"not a zip at all", b""], ids=["header", "text", "empty"]
)
def test_corrupt_zip_is_data_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(DataError, match="not a readable ZIP archive"):
        ingest_zip(data, tmp_path / "ds", settings=SETTINGS)
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())


def test_corrupt_entry_in_a_readable_zip_is_skipped(tmp_path: Path) -> None:
    archive = bytearray(zip_bytes({**good_tree(), "cats/flipped.png": noise_png(61, size=32)}))
    with zipfile.ZipFile(io.BytesIO(bytes(archive))) as opened:
        info = opened.getinfo("cats/flipped.png")
    start = info.header_offset + 30 + len(info.filename)
    archive[start + info.compress_size // 2] ^= 0xFF
    result = ingest_zip(bytes(archive), tmp_path / "ds", settings=SETTINGS)
    reason = reason_for(result, "cats/flipped.png")
    assert "corrupt" in reason or "could not be read" in reason


def test_zip_bomb_entry_is_skipped(tmp_path: Path) -> None:
    archive = zip_bytes({**good_tree(), "cats/bomb.bmp": b"\x00" * (8 << 20)})
    assert len(archive) < 100_000
    result = ingest_zip(archive, tmp_path / "ds", settings=SETTINGS)
    assert "likely a ZIP bomb" in reason_for(result, "cats/bomb.bmp")


def test_zip_over_the_uncompressed_total_is_data_error(tmp_path: Path) -> None:
    # 5 entries of 0.9 MB each: each is under the bomb check's size floor, the total is over 4 x 1 MB.
    big = {f"cats/{i}.bin": bytes([i]) * 900_000 for i in range(5)}
    archive = zip_bytes({**good_tree(), **big})
    assert len(archive) < 1 << 20
    with pytest.raises(DataError, match="uncompressed"):
        ingest_zip(archive, tmp_path / "ds", settings=Settings(max_upload_mb=1))


def test_zip_larger_than_the_upload_limit_is_data_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    archive = zip_bytes(
        {**good_tree(), "cats/noise.bin": rng.integers(0, 256, 1_200_000, dtype=np.uint8).tobytes()}
    )
    with pytest.raises(DataError, match="larger than the limit of 1 MB"):
        ingest_zip(archive, tmp_path / "ds", settings=Settings(max_upload_mb=1))


# ---------------------------------------------------------------------------
# Classes.


def test_one_class_only_is_data_error_and_leaves_no_dataset(tmp_path: Path) -> None:
    files = [(f"{i}.png", noise_png(i), "cats") for i in range(4)] + [("bad.png", b"", "dogs")]
    with pytest.raises(
        DataError,
        match="needs at least 2 classes with images; found: 'cats' \\(4 images\\), 'dogs' \\(0 images\\)",
    ) as error:
        ingest_uploads(files, tmp_path / "ds", settings=SETTINGS)
    assert "bad.png: the file is empty" in str(error.value)
    assert error.value.skipped[0].name == "bad.png"
    assert not (tmp_path / "ds" / "dataset.json").exists()
    assert list((tmp_path / "ds").iterdir()) == []


def test_empty_class_is_dropped_with_a_note(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for name, data in good_tree().items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    (source / "birds").mkdir()
    (source / "fish").mkdir()
    (source / "fish" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    result = ingest_folder(source, tmp_path / "ds", settings=SETTINGS)
    assert result.spec.class_names == ("cats", "dogs")
    assert "dropped class 'birds': it has no usable images" in result.notes
    assert "dropped class 'fish': it has no usable images" in result.notes
    assert reason_for(result, "fish/broken.jpg")


def test_odd_class_names_get_distinct_safe_folders(tmp_path: Path) -> None:
    labels = [" my cats ", "Katzen 🐱", "a/b", "..", "x" * 300, "Dogs", "dogs", "../../etc", "ümlaut", "a\\b"]
    files = [
        (f"{n}_{i}.png", noise_png(n * 10 + i), label) for n, label in enumerate(labels) for i in range(2)
    ]
    before = listing(tmp_path)
    result = ingest_uploads(files, tmp_path / "ds", settings=SETTINGS)

    expected = {label.strip() for label in labels}
    assert set(result.spec.class_names) == expected
    frame = read_manifest(result.spec)
    assert set(frame["label"]) == expected
    folders = {
        label: {Path(p).parent.as_posix() for p in group} for label, group in frame.groupby("label")["path"]
    }
    assert all(len(paths) == 1 for paths in folders.values())
    names = [next(iter(paths)) for paths in folders.values()]
    assert len({name.casefold() for name in names}) == len(labels)
    for name in names:
        parts = Path(name).parts
        assert parts[0] == "images" and len(parts) == 2
        assert parts[1].isascii() and len(parts[1]) <= 60 and not parts[1].startswith(".")
    assert listing(tmp_path) - before == {"ds"} | {f"ds/{p}" for p in listing(tmp_path / "ds")}


def test_empty_label_is_skipped(tmp_path: Path) -> None:
    files = [*good_uploads(), ("nolabel.png", noise_png(42), "   ")]
    result = ingest_uploads(files, tmp_path / "ds", settings=SETTINGS)
    assert reason_for(result, "nolabel.png") == "the class name is empty"


def test_duplicate_file_in_one_class_is_stored_once(tmp_path: Path) -> None:
    result = ingest_with(tmp_path, "copy.png", good_uploads()[0][1])
    assert reason_for(result, "copy.png") == "duplicate of cats/ok_0.png"
    assert len(read_manifest(result.spec)) == 6


def test_same_file_in_two_classes_is_kept_in_both(tmp_path: Path) -> None:
    shared = noise_png(500)
    files = [*good_uploads(), ("a.png", shared, "cats"), ("b.png", shared, "dogs")]
    result = ingest_uploads(files, tmp_path / "ds", settings=SETTINGS)
    frame = read_manifest(result.spec)
    rows = frame[frame["sha256"] == frame.loc[frame["label"] == "cats", "sha256"].value_counts().index[0]]
    copies = frame[frame.duplicated("sha256", keep=False)]
    assert sorted(copies["label"]) == ["cats", "dogs"]
    assert len(rows) >= 1
    from transfer_core.data import health_report

    assert health_report(result.spec).conflicting_labels == [sorted(copies["path"])]


# ---------------------------------------------------------------------------
# Property: whatever the bytes and layout, ingest returns or raises DataError, and writes only under dest.

_TINY_PNGS = [noise_png(i, size=4) for i in range(3)]
_CONTENT = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(_TINY_PNGS),
    st.sampled_from(_TINY_PNGS).map(lambda data: data[: len(data) // 2]),
    st.just(b""),
)
_PART = st.sampled_from(
    [
        "cats",
        "dogs",
        "train",
        "val",
        "test",
        "..",
        ".",
        "",
        "__MACOSX",
        ".hidden",
        "Ü ñ",
        "a\\b",
        "C:",
        "x.zip",
    ]
)
_NAME = st.lists(_PART, min_size=1, max_size=4).map("/".join).filter(bool)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(st.tuples(_NAME, _CONTENT), max_size=12),
    corrupt_at=st.one_of(st.none(), st.integers(min_value=0)),
    as_uploads=st.booleans(),
)
def test_ingest_never_crashes_and_never_writes_outside_dest(
    entries: list[tuple[str, bytes]], corrupt_at: int | None, as_uploads: bool
) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        (work / "sibling").mkdir()
        before = listing(work)
        try:
            if as_uploads:
                uploads = [(name, data, name.split("/")[0]) for name, data in entries]
                result = ingest_uploads(uploads, work / "out" / "ds", settings=SETTINGS)
            else:
                with warnings.catch_warnings():
                    # Hypothesis often repeats a name; zipfile warns and stores both, which is what we want.
                    warnings.simplefilter("ignore", UserWarning)
                    archive = bytearray(zip_bytes(entries))
                if corrupt_at is not None and archive:
                    archive[corrupt_at % len(archive)] ^= 0x5A
                result = ingest_zip(bytes(archive), work / "out" / "ds", settings=SETTINGS)
        except DataError as error:
            event(f"DataError: {str(error).split(';')[0][:40]}")
            result = None
        else:
            event("ingested")
        after = listing(work)
        new = after - before
        assert all(path == "out" or path.startswith(("out/ds", "out" + os.sep + "ds")) for path in new), new
        if result is not None:
            assert len(result.spec.class_names) >= 2
            assert len(read_manifest(result.spec)) >= 2
