"""A disk cache of decoded, resized images, so only the first pass over a split decodes JPEGs.

Decoding and resizing a photo costs about 1.3 ms per core; reading the same
pixels back from disk costs a few microseconds. Runs that read images every
epoch (fine-tuning, training from scratch, augmentation, repeated runs on the
same data) therefore keep each split's resized pixels on disk, as uint8, in one
file per key::

    <cache_dir>/<key>.imgcache

The key hashes the split's image SHA-256s (in manifest order), the image size,
the decode version of ``decode_and_resize`` and the TensorFlow version, so a
changed data set, size or decoder never reads stale pixels.

File layout (little endian)::

    8 bytes   magic  b"TLIMGC01"
    8 bytes   length L of the JSON header
    L bytes   JSON: key, count, size, table_crc32
    4*N bytes crc32 of each image's bytes
    padding   up to a multiple of 4096
    N*S*S*3   the images, uint8, row after row

Safety:

* A file is written to a temporary name and ``os.replace``-d into place, so a
  reader sees a whole file or none; two processes filling the same key take a
  lock (the second waits, then reuses the first's file) and, if the lock is
  unavailable, still cannot corrupt each other's result.
* Each file is checked once per process before use (header, exact length, a
  crc32 of every image; crc32 runs at several GB/s): a truncated or damaged
  file is rebuilt, never trusted.
* Batches are read with ``os.preadv`` into fresh buffers; nothing is memory
  mapped, so resident memory does not grow with the data set.
* Any ``OSError`` (read-only folder, disk full) or a split above
  ``MAX_CACHE_BYTES`` makes ``ensure_image_cache`` return ``None`` and the
  pipeline decodes as before.

TensorFlow is imported inside the functions, like the rest of ``transfer_core.data``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transfer_core.config import DatasetSpec
from transfer_core.data.decode import DECODE_VERSION, decode_and_resize
from transfer_core.data.manifest import read_manifest, split_paths
from transfer_core.fileio import atomic_path

log = logging.getLogger(__name__)

# One split's cache file may hold at most this many bytes of pixels. 2 GiB is
# about 14,000 images at 224 px (150 KB each): every data set this app is built
# for (uploads, ZIPs, folders a person curates) fits, while a huge folder does
# not silently fill the disk; larger splits simply decode every epoch as before.
MAX_CACHE_BYTES = 2 * 1024**3
# The whole cache folder is kept under this size: after a new file is written,
# the least recently used files go first.
MAX_FOLDER_BYTES = 8 * 1024**3
# A fill is skipped unless the disk keeps at least this much free afterwards.
FREE_SPACE_MARGIN = 512 * 1024**2
# Bump when the file layout changes.
FORMAT_VERSION = 1
SUFFIX = ".imgcache"

_MAGIC = b"TLIMGC01"
_ALIGN = 4096
_LOCK_WAIT_SECONDS = 600.0
_STALE_TEMP_SECONDS = 24 * 3600.0
_FILL_BATCH = 64

# Files already checked by this process: (path, inode, size, mtime_ns) -> data offset.
_verified: dict[tuple[str, int, int, int], int] = {}
_verified_lock = threading.Lock()


class CachedSplit:
    """An open, verified cache file of one split: reads any rows as a uint8 batch.

    Args:
        path: The cache file.
        count: Images in the split.
        image_size: Side of the square images.
        data_offset: Where the first image starts in the file.
    """

    def __init__(self, path: Path, count: int, image_size: int, data_offset: int) -> None:
        self.path = Path(path)
        self.count = count
        self.image_size = image_size
        self.row_bytes = image_size * image_size * 3
        self.data_offset = data_offset
        self._fd = os.open(self.path, os.O_RDONLY)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images ``indices`` (any order, repeats allowed) as uint8 ``(B, S, S, 3)``.

        Consecutive indices are read with one system call; the file offset is
        never shared state, so several threads may read at once.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        size, row = self.image_size, self.row_bytes
        out = np.empty((len(indices), size, size, 3), np.uint8)
        flat = memoryview(out.reshape(-1))
        start = 0
        while start < len(indices):
            first = int(indices[start])
            if not 0 <= first < self.count:
                raise IndexError(f"image index {first} is outside 0..{self.count - 1}")
            end = start + 1
            while end < len(indices) and int(indices[end]) == int(indices[end - 1]) + 1 and int(indices[end]) < self.count:
                end += 1
            _pread_exact(self._fd, flat[start * row : end * row], self.data_offset + first * row, self.path)
            start = end
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # The dataset that reads from it owns it; no explicit close needed.
        with contextlib.suppress(OSError):
            self.close()


def cache_key(shas: list[str], image_size: int) -> str:
    """The cache key of a split's images (manifest order) at one size."""
    import tensorflow as tf

    payload = {
        "format": FORMAT_VERSION,
        "decode": DECODE_VERSION,
        "tensorflow": tf.__version__,
        "image_size": int(image_size),
        "images": list(shas),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


def cache_path(cache_dir: Path, shas: list[str], image_size: int) -> Path:
    """Where the split's cache file lives (whether or not it exists)."""
    return Path(cache_dir) / f"{cache_key(shas, image_size)}-{int(image_size)}px{SUFFIX}"


def split_shas(spec: DatasetSpec, split: str) -> list[str]:
    """SHA-256 of each image of ``split``, in the same order as ``split_paths``."""
    frame = read_manifest(spec)
    return [str(sha) for sha in frame.loc[frame["split"] == split, "sha256"]]


def ensure_image_cache(
    spec: DatasetSpec,
    split: str,
    image_size: int,
    cache_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    paths: list[str] | None = None,
) -> CachedSplit | None:
    """Open the split's cache file, decoding and writing it first when it is missing or damaged.

    Args:
        spec: The data set.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: Side of the square images.
        cache_dir: The folder of image cache files (created when missing).
        progress: Called with ``(done, total)`` images while a file is filled.
        paths: The split's files as ``split_paths`` gives them, when the
            caller has them already (saves reading the manifest again).

    Returns:
        The open cache, or ``None`` when the split is not cached: it is empty,
        larger than ``MAX_CACHE_BYTES``, lacks image hashes, the disk is short
        of space, or the folder cannot be written. The caller then decodes.
    """
    if paths is None:
        paths, _ = split_paths(spec, split)
    count = len(paths)
    row_bytes = image_size * image_size * 3
    if count == 0:
        return None
    if count * row_bytes > MAX_CACHE_BYTES:
        log.info("Not caching %s images of %s (%d bytes > %d).", split, spec.root, count * row_bytes, MAX_CACHE_BYTES)
        return None
    shas = split_shas(spec, split)
    if len(shas) != count or not all(len(sha) == 64 for sha in shas):
        return None  # Without a content hash per image a key could go stale.
    cache_dir = Path(cache_dir)
    path = cache_path(cache_dir, shas, image_size)
    key = path.name[: -len(SUFFIX)]
    try:
        opened = _open_verified(path, key, count, image_size)
        if opened is not None:
            return opened
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _fill_lock(path):
            opened = _open_verified(path, key, count, image_size)  # Another process may have filled it.
            if opened is not None:
                return opened
            if shutil.disk_usage(cache_dir).free < count * row_bytes + FREE_SPACE_MARGIN:
                log.warning("Not caching decoded images in %s: too little free disk space.", cache_dir)
                return None
            _fill(path, key, paths, image_size, progress)
        _prune(cache_dir, keep=path)
        return _open_verified(path, key, count, image_size)
    except OSError as error:
        log.warning("Not caching decoded images in %s (%s); decoding every pass instead.", cache_dir, error)
        return None
    except Exception as error:  # noqa: BLE001 - a file that will not decode: the decoding
        import tensorflow as tf  # pipeline reports it when it meets it, exactly as without a cache.

        if not isinstance(error, tf.errors.OpError):
            raise
        log.warning("Not caching decoded images of %s: %s", spec.root, error)
        return None


def make_cached_dataset(cached: CachedSplit, labels: np.ndarray, *, batch_size: int, shuffle: bool,
                        seed: int, repeat: bool, autotune: bool = True):
    """The ``make_tf_dataset`` pipeline over a cache: same batches, same order, same dtypes.

    The shuffle is the same ``Dataset.shuffle`` as the decoding pipeline's but
    over image indices, so a seed gives the identical order either way (the
    order depends on the seed and the buffer size, never on the elements).

    The returned dataset owns ``cached`` (its open file closes when the dataset
    and every dataset built on it are gone). TensorFlow keeps traced functions
    alive longer than their datasets, so the reading function holds only a
    weak reference; should it outlive the owner, it reopens the file per batch.
    """
    import tensorflow as tf

    size = cached.image_size
    label_table = tf.constant(np.asarray(labels, dtype=np.int32))
    owner = weakref.ref(cached)
    path, count, data_offset = cached.path, cached.count, cached.data_offset

    def read_rows(indices: np.ndarray) -> np.ndarray:
        live = owner()
        if live is not None:
            return live.read(indices)
        reopened = CachedSplit(path, count, size, data_offset)
        try:
            return reopened.read(indices)
        finally:
            reopened.close()

    dataset = tf.data.Dataset.range(count)
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    def read(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.numpy_function(read_rows, [indices], tf.uint8, stateful=False)
        images.set_shape([None, size, size, 3])
        return tf.cast(images, tf.float32), tf.gather(label_table, indices)

    dataset = dataset.batch(batch_size).map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    if not autotune:  # As make_tf_dataset's ``autotune`` (pipeline imports this module, not the reverse).
        options = tf.data.Options()
        options.autotune.enabled = False
        dataset = dataset.with_options(options)
    dataset._transfer_image_cache = cached  # noqa: SLF001 - keeps the open file as long as the dataset.
    return dataset


# ----- internals -------------------------------------------------------------------------


def _pread_exact(fd: int, buffer: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(buffer):
        got = os.preadv(fd, [buffer[done:]], offset + done)
        if got <= 0:
            raise OSError(errno.EIO, f"image cache file {path} ended early")
        done += got


def _header_bytes(key: str, count: int, image_size: int, crcs: np.ndarray) -> tuple[bytes, int]:
    table = crcs.astype("<u4").tobytes()
    header = json.dumps(
        {"key": key, "count": count, "size": image_size, "table_crc32": zlib.crc32(table)}, sort_keys=True
    ).encode()
    start = _MAGIC + struct.pack("<Q", len(header)) + header + table
    data_offset = -(-len(start) // _ALIGN) * _ALIGN
    return start + b"\0" * (data_offset - len(start)), data_offset


def _open_verified(path: Path, key: str, count: int, image_size: int) -> CachedSplit | None:
    """The open cache when ``path`` is a whole, undamaged file for this key; else ``None``.

    A damaged file is deleted so that it is rebuilt. The full check runs once per
    process per file version; later opens only compare the file's identity.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    identity = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _verified_lock:
        data_offset = _verified.get(identity)
    if data_offset is None:
        data_offset = _check_file(path, key, count, image_size)
        if data_offset is None:
            log.warning("The image cache file %s is damaged; rebuilding it.", path)
            path.unlink(missing_ok=True)
            return None
        with _verified_lock:
            _verified[identity] = data_offset
    try:
        cached = CachedSplit(path, count, image_size, data_offset)
    except FileNotFoundError:
        return None
    if os.fstat(cached._fd).st_ino != stat.st_ino:  # Replaced in between: check the new one.
        cached.close()
        return _open_verified(path, key, count, image_size)
    # Mark it recently used (access time only: the modification time is part of its identity).
    # In a read-only folder this fails, and reading still works.
    with contextlib.suppress(OSError):
        os.utime(path, ns=(time.time_ns(), stat.st_mtime_ns))
    return cached


def _check_file(path: Path, key: str, count: int, image_size: int) -> int | None:
    """The data offset of a whole, matching cache file, or ``None`` when it is damaged."""
    row_bytes = image_size * image_size * 3
    try:
        with path.open("rb") as handle:
            if handle.read(8) != _MAGIC:
                return None
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 1_000_000:
                return None
            header = json.loads(handle.read(length).decode())
            if header != {**header, "key": key, "count": count, "size": image_size}:
                return None
            table = handle.read(4 * count)
            if len(table) != 4 * count or zlib.crc32(table) != header.get("table_crc32"):
                return None
            data_offset = -(-(16 + length + 4 * count) // _ALIGN) * _ALIGN
            if os.fstat(handle.fileno()).st_size != data_offset + count * row_bytes:
                return None
            crcs = np.frombuffer(table, "<u4")
            handle.seek(data_offset)
            per_chunk = max(1, (8 * 1024**2) // row_bytes)
            chunk = bytearray(per_chunk * row_bytes)
            view = memoryview(chunk)
            done = 0
            while done < count:
                rows = min(per_chunk, count - done)
                if handle.readinto(view[: rows * row_bytes]) != rows * row_bytes:
                    return None
                for row in range(rows):
                    if zlib.crc32(view[row * row_bytes : (row + 1) * row_bytes]) != crcs[done + row]:
                        return None
                done += rows
            return data_offset
    except (OSError, ValueError, UnicodeDecodeError, struct.error, TypeError, AttributeError):
        return None


def _fill(path: Path, key: str, paths: list[str], image_size: int,
          progress: Callable[[int, int], None] | None) -> None:
    """Decode every image once (the pipeline's own function) and write the cache file atomically."""
    import tensorflow as tf

    count = len(paths)
    row_bytes = image_size * image_size * 3
    header, data_offset = _header_bytes(key, count, image_size, np.zeros(count, np.uint32))
    decoded = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(lambda p: tf.cast(decode_and_resize(tf.io.read_file(p), image_size), tf.uint8),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(_FILL_BATCH)
        .prefetch(2)
    )
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        crcs = np.zeros(count, np.uint32)
        handle.write(header)
        done = 0
        for batch in decoded:
            pixels = batch.numpy()
            for row in pixels:
                crcs[done] = zlib.crc32(row.data)
                done += 1
            handle.write(pixels.tobytes())
            if progress is not None:
                progress(done, count)
        if done != count:
            raise OSError(errno.EIO, f"decoded {done} of {count} images")
        final_header, final_offset = _header_bytes(key, count, image_size, crcs)
        assert final_offset == data_offset and handle.tell() == data_offset + count * row_bytes
        handle.seek(0)
        handle.write(final_header)
        handle.flush()
        os.fsync(handle.fileno())


class _fill_lock:  # noqa: N801 - used like a function: ``with _fill_lock(path):``
    """An exclusive ``flock`` on ``<path>.lock`` so one process fills a key at a time.

    Waits up to ``_LOCK_WAIT_SECONDS`` for another filler; after that (or when
    locking is not supported) it goes on unlocked, which is still safe because
    the file is replaced atomically.
    """

    def __init__(self, path: Path) -> None:
        self.lock_path = path.with_name(path.name + ".lock")
        self.fd = -1

    def __enter__(self) -> _fill_lock:
        self.fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return self
                time.sleep(0.2)
            except OSError:
                return self

    def __exit__(self, *exc_info: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # Releases the lock.
            self.fd = -1


def _prune(cache_dir: Path, keep: Path) -> None:
    """Delete least recently used cache files beyond ``MAX_FOLDER_BYTES``, and old temporary files."""
    try:
        now = time.time()
        files = []
        for entry in os.scandir(cache_dir):
            if not entry.is_file():
                continue
            stat = entry.stat()
            if entry.name.endswith(".tmp") and now - stat.st_mtime > _STALE_TEMP_SECONDS:
                Path(entry.path).unlink(missing_ok=True)
            elif entry.name.endswith(SUFFIX) and Path(entry.path) != keep:
                files.append((stat.st_atime, stat.st_size, Path(entry.path)))
        total = sum(size for _, size, _ in files) + keep.stat().st_size
        for _, size, old in sorted(files):
            if total <= MAX_FOLDER_BYTES:
                break
            old.unlink(missing_ok=True)
            old.with_name(old.name + ".lock").unlink(missing_ok=True)
            total -= size
    except OSError as error:
        log.info("Could not prune the image cache %s: %s", cache_dir, error)
