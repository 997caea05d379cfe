"""Shared makers for the reliability tests: every kind of bad file, archives, and a folder snapshot.

Was ``tests/reliability/rel_helpers.py``; see ``helpers/__init__.py`` for how tests import it.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.images import encode, noise_image, noise_png


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims ``width`` x ``height`` with a token of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + png_chunk(b"IEND", b"")
    )


def real_png_bomb(side: int = 7000) -> bytes:
    """A complete, valid black PNG of side x side pixels (49 M pixels by default) that is ~150 kB on disk."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (side * 3)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def zip_bytes(entries, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP of ``entries`` (a dict or a list of ``(name or ZipInfo, bytes)``), names written verbatim."""
    buffer = io.BytesIO()
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (links not followed) with its size and modification time in ns."""
    found = {}
    for path in folder.rglob("*"):
        stat = path.lstat()
        found[str(path.relative_to(folder))] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns)
    return found


def changes_outside(before: dict, after: dict, allowed_prefixes: tuple[str, ...]) -> list[str]:
    """Paths created, changed or removed that do not start with one of ``allowed_prefixes``."""
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    return sorted(p for p in changed if not p.startswith(allowed_prefixes))


# ---------------------------------------------------------------------------------------------
# The list of bad (and awkward but valid) files, with what must happen to each.


@dataclass(frozen=True)
class FileCase:
    """One file of the issue's list.

    Args:
        case_id: Short id used in test ids and RELIABILITY.md.
        name: File name inside the class folder.
        data: The bytes.
        kept: Whether the file must end up in the data set.
        expect: For a skipped file, a substring of the reason; for a kept one,
            a substring of the note (empty: no note required).
    """

    case_id: str
    name: str
    data: bytes
    kept: bool
    expect: str = ""


def _exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _heic() -> bytes:
    return struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic" + b"\x00" * 100


def _palette() -> bytes:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([10, 200, 10] + [200, 10, 10] + [0] * 762)
    image.paste(1, (0, 0, 8, 16))
    return encode(image)


def _alpha() -> bytes:
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    image.paste((0, 128, 0, 255), (0, 0, 8, 16))
    return encode(image)


def _animated(format: str) -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    return encode(frames[0], format, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _sixteen_bit() -> bytes:
    array = np.full((16, 16), 65535, dtype=np.uint16)
    array[:, :8] = 257 * 100
    return encode(Image.fromarray(array))


def file_cases(include_bomb: bool = True) -> list[FileCase]:
    """Every file case of the issue (the duplicate refers to the ``webp`` case's bytes)."""
    jpeg = encode(noise_image(1, 64), "JPEG")
    png = noise_png(2, 64)
    webp = encode(noise_image(3), "WEBP")
    cases = [
        FileCase("zero_byte", "empty.jpg", b"", False, "the file is empty"),
        FileCase("truncated_jpeg", "cut.jpg", _truncated(jpeg), False, "truncated"),
        FileCase("truncated_png", "cut.png", _truncated(png), False, "corrupt"),
        FileCase(
            "random_bytes_jpg", "noise.jpg", np.random.default_rng(5).bytes(3000), False, "not an image"
        ),
        FileCase("text_file", "notes.txt", b"shopping list: eggs, milk\n" * 5, False, "text file"),
        FileCase(
            "html_named_png",
            "saved.png",
            b"<!DOCTYPE html><html><body>photo</body></html>",
            False,
            "web page (HTML)",
        ),
        FileCase(
            "svg",
            "logo.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
            False,
            "vector images are not supported",
        ),
        FileCase("heic", "IMG_0001.HEIC", _heic(), False, "HEIC is not supported"),
        FileCase("webp", "photo.webp", webp, True),
        FileCase("webp_animated", "anim.webp", _animated("WEBP"), True, "first frame of animated"),
        FileCase("tiff", "scan.tiff", encode(noise_image(4), "TIFF"), True),
        FileCase("bmp", "icon.bmp", encode(noise_image(6), "BMP"), True),
        FileCase("gif_still", "still.gif", encode(noise_image(7), "GIF"), True),
        FileCase("gif_animated", "anim.gif", _animated("GIF"), True, "first frame of animated"),
        FileCase("png_16_bit", "deep.png", _sixteen_bit(), True, "16-bit"),
        FileCase(
            "cmyk_jpeg",
            "print.jpg",
            encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"),
            True,
            "CMYK",
        ),
        FileCase("grayscale", "gray.png", encode(Image.new("L", (16, 16), 77)), True, "grayscale"),
        FileCase("palette", "palette.png", _palette(), True),
        FileCase("alpha", "alpha.png", _alpha(), True, "white background"),
        FileCase("exif_rotated", "phone.jpg", _exif_rotated_jpeg(), True, "EXIF rotation"),
        FileCase(
            "one_by_one", "dot.png", encode(Image.new("RGB", (1, 1), (9, 9, 9))), True, "very small image"
        ),
        FileCase("huge_20000x20000", "huge.png", png_claiming(20000, 20000), False, "too large"),
        FileCase(
            "over_pixel_limit_8000x6000",
            "wide.png",
            png_claiming(8000, 6000),
            False,
            "over the limit of 40,000,000",
        ),
        FileCase("duplicate", "z_copy_of_photo.webp", webp, False, "duplicate of"),
    ]
    if include_bomb:
        cases.append(FileCase("decompression_bomb", "bomb.png", real_png_bomb(), False, "too large"))
    return cases


def good_files(labels=("cats", "dogs"), per_class: int = 3) -> dict[str, bytes]:
    """Healthy images, ``label/ok_i.png``; distinct content everywhere."""
    return {
        f"{label}/ok_{i}.png": noise_png(1000 + n * 100 + i)
        for n, label in enumerate(labels)
        for i in range(per_class)
    }
