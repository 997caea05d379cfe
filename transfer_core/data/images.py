"""Safe image decoding: whatever bytes a person uploads, either a clean RGB image or a reason.

Every file a person gives us goes through ``load_image``. It never trusts the file
name or the header: it sniffs the content, checks the pixel count from the header
before decoding anything, forces a full decode (so truncated files are caught
here and not in the middle of training), applies the EXIF orientation and turns
every colour mode into 8-bit RGB. Anything it cannot turn into an image raises
``ImageRejected`` with a short reason a person can act on.

This module imports TensorFlow only inside ``decode_for_model``.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, features

# Images are stored with their long side at most this many pixels: big enough for
# any backbone input size in the zoo, small enough to keep workspaces small.
MAX_STORED_SIDE = 1024

# Pillow formats we accept. Listing them explicitly also stops Pillow from trying
# formats that hand the file to an external program (EPS runs Ghostscript).
# Multi-picture JPEGs from phones (MPO) open through the JPEG entry.
_ACCEPTED_FORMATS = ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"]
if features.check("avif"):
    _ACCEPTED_FORMATS.append("AVIF")

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_EXIF_ORIENTATION = 0x0112
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageRejected(ValueError):
    """A file that cannot be used as an image; ``str(error)`` is a short human reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class DecodedImage:
    """The result of a safe decode, with what the storage step needs to know."""

    image: Image.Image
    notes: list[str] = field(default_factory=list)
    source_format: str = ""
    source_mode: str = ""
    rotated: bool = False
    animated: bool = False
    complete: bool = True


def load_image(data: bytes, name: str, max_pixels: int) -> tuple[Image.Image, list[str]]:
    """Decode untrusted image bytes into an 8-bit RGB image.

    Args:
        data: The file's bytes.
        name: The file name as the user gave it; used only in notes.
        max_pixels: Largest width x height accepted. Checked from the header,
            before any pixel is decoded.

    Returns:
        A fully loaded ``PIL.Image.Image`` in mode ``"RGB"`` (EXIF orientation
        applied, transparency composited on white, first frame of an animation),
        and a list of notes such as ``"converted CMYK to RGB: x.jpg"``.

    Raises:
        ImageRejected: When the bytes are not a usable image. The reason is
            short and plain, e.g. ``"the file is empty"``.
    """
    decoded = decode_upload(data, name, max_pixels)
    return decoded.image, decoded.notes


def decode_for_model(
    data_or_path: bytes | str | os.PathLike, image_size: int, max_pixels: int | None = None
) -> np.ndarray:
    """Turn a new image into exactly the array the training pipeline would give.

    The image goes through the same steps as an ingested file (safe decode,
    storage encoding) and then through the same TensorFlow decode and resize
    function as ``make_tf_dataset``, so a stored file gives the identical array.

    Args:
        data_or_path: Image bytes, or a path to an image file.
        image_size: Side of the square output in pixels.
        max_pixels: Largest width x height accepted; defaults to the
            ``Settings`` default.

    Returns:
        A float32 array of shape ``(image_size, image_size, 3)`` with values in 0..255.

    Raises:
        ImageRejected: When the input is not a usable image.
        ValueError: When ``image_size`` is not positive.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1. Received: image_size={image_size!r}")
    if isinstance(data_or_path, bytes | bytearray | memoryview):
        data, name = bytes(data_or_path), "image"
    else:
        path = Path(data_or_path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ImageRejected(f"could not read the file ({error.strerror or error})") from None
        name = path.name
    if max_pixels is None:
        from transfer_core.config import Settings

        max_pixels = Settings().max_pixels
    decoded = decode_upload(data, name, max_pixels)
    stored_bytes, _, _, _ = encode_for_storage(data, decoded)

    # Imported here so that importing transfer_core.data stays free of TensorFlow.
    from transfer_core.data.decode import decode_and_resize

    return decode_and_resize(stored_bytes, image_size).numpy()


def decode_upload(data: bytes, name: str, max_pixels: int) -> DecodedImage:
    """Safe decode with the facts the storage step needs; see ``load_image``."""
    if not data:
        raise ImageRejected("the file is empty")
    _reject_known_non_images(data, name)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            image = Image.open(io.BytesIO(data), formats=_ACCEPTED_FORMATS)
        except Image.DecompressionBombError:
            # Pillow refuses more than 2 x Image.MAX_IMAGE_PIXELS by itself, before we see the size.
            raise ImageRejected(
                "the image is too large to decode safely (likely a decompression bomb)"
            ) from None
        except Image.UnidentifiedImageError:
            raise ImageRejected(_unrecognised_reason(data)) from None
        except Exception as error:  # Pillow raises many types on hostile headers.
            if _looks_like_text(data):
                raise ImageRejected("not an image: it is a text file") from None
            raise ImageRejected(
                f"the file is truncated or corrupt (unreadable header: {_short(error)})"
            ) from None

        decoded = DecodedImage(image=image, source_format=image.format or "", source_mode=image.mode)
        # Pillow rejects truncated files unless another library in this process
        # switched that off globally; then the original bytes are never kept
        # (TensorFlow would fail on them in training), only the decoded pixels.
        decoded.complete = not ImageFile.LOAD_TRUNCATED_IMAGES
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageRejected(f"the image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageRejected(
                f"the image is too large: {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,}"
            )
        try:
            image = _load_pixels(decoded, name)
        except ImageRejected:
            raise
        except Image.DecompressionBombError:
            raise ImageRejected(
                "the image is too large to decode safely (decompression bomb check)"
            ) from None
        except Exception as error:
            raise ImageRejected(_decode_failure_reason(error)) from None
    for warning in caught:
        if "truncat" in str(warning.message).lower():
            raise ImageRejected("the file is truncated or corrupt (incomplete image data)")

    try:
        image = _apply_exif_orientation(image, decoded, name)
        decoded.image = _to_rgb(image, decoded, name)
    except MemoryError:
        raise ImageRejected("the image is too large to convert in memory") from None
    except Exception as error:
        raise ImageRejected(f"the image could not be converted to RGB ({_short(error)})") from None
    if min(decoded.image.size) < 8:
        decoded.notes.append(
            f"very small image ({decoded.image.width}x{decoded.image.height} pixels): {name}"
        )
    return decoded


def _load_pixels(decoded: DecodedImage, name: str) -> Image.Image:
    """Force a full decode of the first frame, so corrupt data is found now."""
    image = decoded.image
    if getattr(image, "is_animated", False) or getattr(image, "n_frames", 1) > 1:
        decoded.animated = True
        image.seek(0)
        kind = "animated" if image.format in {"GIF", "WEBP", "PNG", "AVIF"} else "multi-page"
        decoded.notes.append(f"used the first frame of {kind} {name}")
    if image.format == "JPEG" and max(image.size) > MAX_STORED_SIDE:
        # The JPEG decoder can scale by 1/2, 1/4, 1/8 while decoding; the image is
        # downscaled for storage anyway, and this makes big phone photos fast.
        image.draft(None, (MAX_STORED_SIDE, MAX_STORED_SIDE))
    image.load()
    return image


def _apply_exif_orientation(image: Image.Image, decoded: DecodedImage, name: str) -> Image.Image:
    """Rotate/flip as the camera's EXIF orientation tag says, noting when it did."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        # A broken EXIF block should not cost the person their photo.
        decoded.notes.append(f"ignored unreadable EXIF data: {name}")
        return image
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return image
    try:
        rotated = ImageOps.exif_transpose(image)
    except Exception:
        decoded.notes.append(f"ignored an EXIF rotation that could not be applied: {name}")
        return image
    decoded.rotated = True
    decoded.notes.append(f"applied EXIF rotation: {name}")
    return rotated


def _to_rgb(image: Image.Image, decoded: DecodedImage, name: str) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _HIGH_BIT_DEPTH_MODES:
        decoded.notes.append(f"converted {_bit_depth_name(mode)} image to 8-bit: {name}")
        return Image.fromarray(_to_uint8(image)).convert("RGB")
    if mode == "CMYK":
        decoded.notes.append(f"converted CMYK to RGB: {name}")
        return image.convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode == "P":
        return image.convert("RGB")
    if image.mode in _ALPHA_MODES:
        decoded.notes.append(f"put transparent areas on a white background: {name}")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in {"1", "L"}:
        decoded.notes.append(f"converted grayscale to RGB: {name}")
    return image.convert("RGB")


def _to_uint8(image: Image.Image) -> np.ndarray:
    """Scale a 16-bit, 32-bit integer or float single-channel image to 0..255."""
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., 0]
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    if image.mode == "F":
        low, high = float(array.min()), float(array.max())
        if low >= 0.0 and high <= 1.0:
            scaled = array * 255.0
        elif high > low:
            # Floats with an unknown range: stretch what is there, so the image is visible.
            scaled = (array - low) / (high - low) * 255.0
        else:
            scaled = np.zeros_like(array)
    elif image.mode.startswith("I;16") or array.max() > 255:
        scaled = array / 257.0
    else:
        scaled = array
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _bit_depth_name(mode: str) -> str:
    return {"F": "32-bit float", "I": "32-bit integer"}.get(mode, "16-bit")


def encode_for_storage(data: bytes, decoded: DecodedImage) -> tuple[bytes, str, int, int]:
    """Bytes to store for a decoded image.

    A plain RGB JPEG that is small enough is kept byte for byte (re-encoding a
    JPEG loses quality for nothing). Anything else is downscaled to at most
    ``MAX_STORED_SIDE`` and saved as PNG, which every TensorFlow decoder reads
    and which keeps the converted pixels exactly.

    Returns:
        ``(bytes, extension, width, height)`` of the stored image.
    """
    image = decoded.image
    if (
        decoded.source_format == "JPEG"
        and decoded.source_mode == "RGB"
        and not decoded.rotated
        and decoded.complete
        and max(image.size) <= MAX_STORED_SIDE
    ):
        return data, ".jpg", image.width, image.height
    if max(image.size) > MAX_STORED_SIDE:
        scale = MAX_STORED_SIDE / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue(), ".png", image.width, image.height


def _reject_known_non_images(data: bytes, name: str) -> None:
    """Give a specific reason for common non-image files before Pillow sees them."""
    head = data[:1024]
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if name.lower().endswith((".svg", ".svgz")) or (
        stripped.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in stripped
    ):
        raise ImageRejected("vector images are not supported (SVG); export it as PNG or JPEG")
    if stripped.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        raise ImageRejected("not an image: it is a web page (HTML), probably saved instead of the picture")
    if data[4:8] == b"ftyp":
        brands = {data[i : i + 4] for i in range(8, min(len(data), 64), 4)}
        if brands & _AVIF_BRANDS and "AVIF" not in _ACCEPTED_FORMATS:
            raise ImageRejected("AVIF is not supported; convert to JPEG")
        if brands & _HEIC_BRANDS or (b"mif1" in brands and not brands & _AVIF_BRANDS):
            raise ImageRejected("HEIC is not supported; convert to JPEG")
        if not brands & _AVIF_BRANDS:
            raise ImageRejected("not an image: it looks like a video (MP4/MOV)")
    if _is_archive(data) or name.lower().endswith(
        (".zip", ".tar", ".tgz", ".gz", ".7z", ".rar", ".bz2", ".xz")
    ):
        raise ImageRejected("nested archives are not opened")
    if data.startswith(b"%PDF"):
        raise ImageRejected("PDF documents are not supported; export the page as PNG or JPEG")


def _is_archive(data: bytes) -> bool:
    return data.startswith(
        (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"7z\xbc\xaf\x27\x1c", b"Rar!", b"BZh")
    )


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _looks_like_text(data: bytes) -> bool:
    sample = data[:512]
    printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in sample)
    return bool(sample) and printable / len(sample) > 0.95


def _unrecognised_reason(data: bytes) -> str:
    if _looks_like_text(data):
        return "not an image: it is a text file"
    known = next((name for magic, name in _MAGIC if data.startswith(magic)), None)
    if known is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        known = "WebP"
    if known:
        return f"the file is truncated or corrupt (it starts like a {known} file but cannot be read)"
    return "not an image (the format is not recognised; use JPEG, PNG, GIF, BMP, WebP or TIFF)"


def _decode_failure_reason(error: Exception) -> str:
    message = str(error).lower()
    if "truncat" in message or isinstance(error, EOFError):
        return "the file is truncated or corrupt (incomplete image data)"
    return f"the file is truncated or corrupt ({_short(error)})"


def _short(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."
