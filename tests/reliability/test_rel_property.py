"""Issue 6, property-based: random bytes and random archive/folder layouts (traversal names, absolute
paths, symbolic links, junk folders, nested archives) either load or are reported, never raise anything
but ``DataError``, and never create, change or remove anything outside the data set folder.

Extends the property test in tests/unit/test_data_bad_input.py with symlink entries in ZIPs, a real
folder tree with symlinks pointing outside, and a snapshot that also compares sizes and times of every
file next to the destination (not only the set of names).
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
import zipfile
from pathlib import Path

from helpers.bad_files import changes_outside, snapshot, zip_bytes
from helpers.images import noise_png
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from transfer_core.config import Settings
from transfer_core.data import DataError, ingest_folder, ingest_zip, read_manifest

SETTINGS = Settings(max_files=200)
_PNGS = [noise_png(i, 4) for i in range(4)]
_CONTENT = st.one_of(
    st.binary(max_size=48),
    st.sampled_from(_PNGS),
    st.sampled_from(_PNGS).map(lambda data: data[: len(data) // 2]),
    st.sampled_from(_PNGS).map(lambda data: zip_bytes({"a/b.png": data})),  # A nested archive.
)
_ZIP_PART = st.sampled_from(
    [
        "cats",
        "dogs",
        "train",
        "val",
        "..",
        "...",
        ".",
        "",
        "__MACOSX",
        ".git",
        "ü ñ",
        "a\\..",
        "C:",
        "/",
        "x.png",
        "sibling",
        "con",
        "%2e%2e",
    ]
)
_ZIP_NAME = st.lists(_ZIP_PART, min_size=1, max_size=5).map("/".join).filter(bool)
_KIND = st.sampled_from(["file", "file", "file", "symlink", "dir"])


def _zip_entry(name: str, data: bytes, kind: str):
    if kind == "file":
        return name, data
    info = zipfile.ZipInfo(name.rstrip("/") + ("/" if kind == "dir" else ""))
    if kind == "symlink":
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        return info, b"../../../sibling/precious.txt"
    return info, b""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(st.tuples(_ZIP_NAME, _CONTENT, _KIND), max_size=14), with_good=st.booleans())
def test_random_zip_layouts_load_or_report_and_stay_inside(entries, with_good) -> None:
    if with_good:  # Half the examples hold two healthy classes, so the loading path is exercised too.
        entries = [
            (f"{label}/{i}.png", noise_png(50 + 10 * n + i, 4), "file")
            for n, label in enumerate(["cats", "dogs"])
            for i in range(2)
        ] + entries
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        (work / "sibling").mkdir()
        (work / "sibling" / "precious.txt").write_text("keep me")
        (work / "out").mkdir()
        before = snapshot(work)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about repeated names.
            archive = zip_bytes([_zip_entry(*entry) for entry in entries])
        try:
            result = ingest_zip(archive, work / "out" / "ds", settings=SETTINGS)
        except DataError:
            event("reported (DataError)")
            result = None
        else:
            event("loaded")
        assert changes_outside(before, snapshot(work), ("out/ds", "out")) == []
        assert (work / "sibling" / "precious.txt").read_text() == "keep me"
        if result is not None:
            root = (work / "out" / "ds").resolve()
            for relative in read_manifest(result.spec)["path"]:
                assert (root / relative).resolve().is_relative_to(root)


_DIR_PART = st.sampled_from(["cats", "dogs", "train", "val", "...", "__MACOSX", ".hidden", "ü ñ", "deep"])
_FILE_NAME = st.sampled_from(["a.png", "b.jpg", "c", ".d.png", "Thumbs.db", "x.zip", "e .png"])
_TREE_KIND = st.sampled_from(["file", "file", "symlink_out", "symlink_dir_out", "fifo"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(
        st.tuples(st.lists(_DIR_PART, min_size=0, max_size=3), _FILE_NAME, _CONTENT, _TREE_KIND), max_size=12
    ),
    with_good=st.booleans(),
)
def test_random_folder_trees_with_links_out_load_or_report_and_stay_inside(files, with_good) -> None:
    if with_good:
        files = [
            ([label], f"ok{i}.png", noise_png(50 + 10 * n + i, 4), "file")
            for n, label in enumerate(["cats", "dogs"])
            for i in range(2)
        ] + files
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        outside = work / "sibling"
        outside.mkdir()
        (outside / "precious.png").write_bytes(_PNGS[0])
        source = work / "src"
        source.mkdir()
        for folders, name, data, kind in files:
            target = source.joinpath(*folders, name)
            if target.exists() or target.is_symlink():
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                continue
            if kind == "file":
                target.write_bytes(data)
            elif kind == "symlink_out":
                os.symlink(outside / "precious.png", target)
            elif kind == "symlink_dir_out":
                os.symlink(outside, target)
            else:
                os.mkfifo(target)
        before = snapshot(work)
        try:
            result = ingest_folder(source, work / "out" / "ds", settings=SETTINGS)
        except DataError:
            event("reported (DataError)")
            result = None
        else:
            event("loaded")
        assert changes_outside(before, snapshot(work), ("out/ds", "out")) == []
        if result is not None:
            # A symlink is never followed: the outside picture is never part of the data set.
            from helpers.bad_files import sha256

            assert sha256(_PNGS[0]) not in set(read_manifest(result.spec)["sha256"]) or any(
                data == _PNGS[0] and kind == "file" for _, _, data, kind in files
            )
