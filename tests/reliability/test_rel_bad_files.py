"""Issue 6, bad input at the core: every file case of the issue through all three ingest routes
(browser uploads, a ZIP, a server folder), archives and labels that tests/unit/test_data_bad_input.py
does not already cover, and a disk that fills up during an ingest.

Each file case is checked on its own (test id = case id), in one ingest per route that also holds
healthy images: the rest of the data set must always still load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers.bad_files import (
    FileCase,
    changes_outside,
    file_cases,
    good_files,
    sha256,
    snapshot,
    zip_bytes,
)
from helpers.images import encode, noise_image, noise_png

from transfer_core.config import Settings
from transfer_core.data import (
    DataError,
    IngestResult,
    health_report,
    ingest_folder,
    ingest_uploads,
    ingest_zip,
    read_manifest,
    read_skipped,
)

SETTINGS = Settings()  # The shipped defaults: 40 M pixel limit, 200 MB per file, 20 000 files.
ROUTES = ("uploads", "zip", "folder")
CASES = file_cases()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def ingest_route(
    route: str, files: dict[str, bytes], work: Path, settings: Settings = SETTINGS
) -> IngestResult:
    """Ingest ``files`` (``"label/name": bytes``) by one route into ``work/ds``."""
    if route == "uploads":
        uploads = [(name, data, name.split("/", 1)[0]) for name, data in files.items()]
        return ingest_uploads(uploads, work / "ds", settings=settings)
    if route == "zip":
        return ingest_zip(zip_bytes(files), work / "ds", settings=settings)
    return ingest_folder(write_tree(work / "src", files), work / "ds", settings=settings)


@pytest.fixture(scope="module", params=ROUTES)
def all_cases(request, tmp_path_factory) -> tuple[str, IngestResult, float]:
    """Healthy cats and dogs plus every file case in ``cats/``, ingested once per route."""
    route = request.param
    work = tmp_path_factory.mktemp(f"cases-{route}")
    files = {**good_files(), **{f"cats/{case.name}": case.data for case in CASES}}
    started = time.perf_counter()
    result = ingest_route(route, files, work)
    return route, result, time.perf_counter() - started


@pytest.mark.parametrize("case", CASES, ids=[case.case_id for case in CASES])
def test_file_case(all_cases, case: FileCase) -> None:
    route, result, _ = all_cases
    name = f"cats/{case.name}"
    reasons = {item.name: item.reason for item in result.skipped}
    frame = read_manifest(result.spec)
    if case.kept:
        assert name not in reasons, f"{route}: {name} was skipped: {reasons.get(name)}"
        rows = frame[frame["sha256"] == sha256(case.data)]
        assert len(rows) == 1 and rows.iloc[0]["label"] == "cats", rows
        stored = Path(result.spec.root) / rows.iloc[0]["path"]
        from PIL import Image

        with Image.open(stored) as image:
            image.load()
            assert image.mode == "RGB"  # Whatever came in, an 8-bit RGB file is stored.
        if case.expect:
            assert any(case.expect in note and case.name in note for note in result.notes), result.notes
    else:
        assert name in reasons, f"{route}: {name} was not reported as skipped"
        assert case.expect in reasons[name], reasons[name]
        assert sha256(case.data) not in set(frame["sha256"]) or case.case_id == "duplicate"
        # The same reason is on disk, for the Data page's health report.
        assert (name, reasons[name]) in {(s.name, s.reason) for s in read_skipped(result.spec)}


def test_the_rest_of_the_data_set_still_loads(all_cases) -> None:
    route, result, seconds = all_cases
    frame = read_manifest(result.spec)
    assert result.spec.class_names == ("cats", "dogs")
    kept = sum(case.kept for case in CASES)
    assert (frame["label"] == "dogs").sum() == 3
    assert (frame["label"] == "cats").sum() == 3 + kept
    assert len(result.skipped) == len(CASES) - kept
    assert seconds < 30, f"{route}: the bad files took {seconds:.1f} s"


def test_decompression_bomb_is_refused_from_its_header_without_decoding(tmp_path) -> None:
    """49 M pixels in 150 kB: refused before a single pixel is decoded (fast, little memory)."""
    import resource

    from helpers.bad_files import real_png_bomb

    from transfer_core.data import ImageRejected, load_image

    bomb = real_png_bomb()
    assert len(bomb) < 400_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageRejected, match="too large: 7000x7000"):
        load_image(bomb, "bomb.png", SETTINGS.max_pixels)
    assert time.perf_counter() - started < 1.0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < 100  # Decoding would need 147 MB for the pixels alone.


@pytest.mark.parametrize("route", ROUTES)
def test_same_file_name_in_different_classes_keeps_both(tmp_path, route) -> None:
    files = {**good_files(), "cats/same.png": noise_png(71), "dogs/same.png": noise_png(72)}
    result = ingest_route(route, files, tmp_path)
    frame = read_manifest(result.spec)
    assert {sha256(files["cats/same.png"]), sha256(files["dogs/same.png"])} <= set(frame["sha256"])
    assert len(frame) == 8 and not result.skipped


# ---------------------------------------------------------------------------------------------
# Archives beyond tests/unit/test_data_bad_input.py.


def test_zip_with_no_class_folders_is_a_clear_error(tmp_path) -> None:
    archive = zip_bytes({f"photo_{i}.png": noise_png(i) for i in range(4)})
    with pytest.raises(
        DataError, match="needs at least 2 classes with images; found: no class folders"
    ) as info:
        ingest_zip(archive, tmp_path / "ds", settings=SETTINGS)
    assert "photo_0.png: not inside a class folder" in str(info.value)
    assert not (tmp_path / "ds" / "dataset.json").exists()


def test_zip_with_thousands_of_tiny_files(tmp_path) -> None:
    files = {f"{'ab'[i % 2]}/{i}.png": encode(noise_image(i, 4)) for i in range(3000)}
    archive = zip_bytes(files)
    started = time.perf_counter()
    result = ingest_zip(archive, tmp_path / "ds", settings=SETTINGS)
    seconds = time.perf_counter() - started
    assert len(read_manifest(result.spec)) == 3000 and not result.skipped
    assert seconds < 60, f"3000 tiny files took {seconds:.1f} s"
    print(f"\n3000 tiny files ingested in {seconds:.1f} s")


def test_zip_with_more_entries_than_the_file_limit_is_refused(tmp_path) -> None:
    archive = zip_bytes({f"{'ab'[i % 2]}/{i}.png": noise_png(i, 4) for i in range(30)})
    with pytest.raises(DataError, match="more than the limit of 20"):
        ingest_zip(archive, tmp_path / "ds", settings=Settings(max_files=20))


@pytest.mark.skipif(shutil.which("zip") is None, reason="the zip program is not installed")
def test_password_protected_zip_made_by_zip_is_refused_with_the_reason(tmp_path) -> None:
    source = write_tree(tmp_path / "src", good_files())
    archive = tmp_path / "locked.zip"
    subprocess.run(["zip", "-q", "-r", "-P", "secret", str(archive), "cats", "dogs"], cwd=source, check=True)
    with pytest.raises(DataError, match="encrypted") as info:
        ingest_zip(archive, tmp_path / "ds", settings=SETTINGS)
    assert "needs at least 2 classes" in str(info.value)


def test_zip_with_a_symlink_dir_entry_and_absolute_names_writes_nothing_outside(tmp_path) -> None:
    """A mix of the hostile entries at once; the data set is made from the healthy ones only."""
    import stat
    import zipfile

    link = zipfile.ZipInfo("cats/evil_link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    entries = [
        *good_files().items(),
        (link, b"../../../../etc"),
        ("/tmp/abs.png", noise_png(80)),
        ("../../up.png", noise_png(81)),
        ("cats/../../../up2.png", noise_png(82)),
        ("__MACOSX/cats/._ok_0.png", b"\x00\x05\x16\x07"),
        ("cats/inner.zip", zip_bytes({"x/y.png": noise_png(83)})),
    ]
    (tmp_path / "work").mkdir()
    before = snapshot(tmp_path)
    result = ingest_zip(zip_bytes(entries), tmp_path / "work" / "ds", settings=SETTINGS)
    assert changes_outside(before, snapshot(tmp_path), ("work/ds", "work")) == []
    assert len(read_manifest(result.spec)) == 6
    reasons = {s.name: s.reason for s in result.skipped}
    assert reasons["cats/evil_link"] == "symbolic links are not followed"
    assert reasons["/tmp/abs.png"].startswith("unsafe path")
    assert reasons["cats/inner.zip"] == "nested archives are not opened"


# ---------------------------------------------------------------------------------------------
# Labels beyond tests/unit/test_data_bad_input.py.


@pytest.mark.parametrize("route", ["zip", "folder"])
def test_one_class_only_from_an_archive_or_folder_is_a_clear_error(tmp_path, route) -> None:
    files = {f"cats/{i}.png": noise_png(i) for i in range(4)}
    with pytest.raises(DataError, match=r"needs at least 2 classes with images; found: 'cats' \(4 images\)"):
        ingest_route(route, files, tmp_path)


def test_empty_class_folder_in_a_zip_is_dropped_with_a_note(tmp_path) -> None:
    archive = zip_bytes([*good_files().items(), ("birds/", b"")])
    result = ingest_zip(archive, tmp_path / "ds", settings=SETTINGS)
    assert result.spec.class_names == ("cats", "dogs")
    assert "dropped class 'birds': it has no usable images" in result.notes


def test_class_with_one_image_loads_and_the_health_report_warns(tmp_path) -> None:
    files = {**good_files(per_class=6), "bird/only.png": noise_png(99)}
    result = ingest_route("uploads", files, tmp_path)
    assert result.spec.class_names == ("bird", "cats", "dogs")
    warnings = " ".join(health_report(result.spec).warnings)
    assert "Class 'bird' has only 1 image" in warnings
    assert "'bird' has no validation images" in warnings


def test_one_hundred_classes(tmp_path) -> None:
    from transfer_core.config import ModelSpec, RunConfig, TrainConfig
    from transfer_core.training import preflight

    files = {f"class_{k:03d}/{i}.png": noise_png(k * 10 + i, 8) for k in range(100) for i in range(5)}
    started = time.perf_counter()
    result = ingest_route("zip", files, tmp_path)
    assert len(result.spec.class_names) == 100
    assert result.spec.class_names[:3] == ("class_000", "class_001", "class_002")
    report = health_report(result.spec)
    assert len(report.counts) == 100
    # Training accepts it (every class has a validation image with 5 per class and 20 %).
    config = RunConfig(
        dataset=result.spec, model=ModelSpec(input_size=32, weights="random"), train=TrainConfig(epochs=1)
    )
    preflight(config, SETTINGS)
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize("route", ["zip", "folder"])
def test_odd_class_folder_names_from_archives_and_folders(tmp_path, route) -> None:
    """Spaces, unicode, very long and case-only names as folder names (a '/' in a folder name cannot exist;
    '..' as a folder is refused as unsafe in a ZIP and cannot be created on disk)."""
    long_name = "x" * 200
    labels = ["my cats", "Katzen 🐱", "ümlaut", long_name, "Dogs", "dogs"]
    files = {f"{label}/{i}.png": noise_png(n * 10 + i) for n, label in enumerate(labels) for i in range(2)}
    before = snapshot(tmp_path)
    result = ingest_route(route, files, tmp_path)
    assert set(result.spec.class_names) == set(labels)
    frame = read_manifest(result.spec)
    folders = {Path(p).parent.name for p in frame["path"]}
    assert len({f.casefold() for f in folders}) == len(labels)  # Distinct even on a case-insensitive disk.
    assert all(f.isascii() and len(f) <= 60 for f in folders)
    assert changes_outside(before, snapshot(tmp_path), ("ds", "src")) == []


# ---------------------------------------------------------------------------------------------
# The disk fills up during an ingest.


@pytest.mark.parametrize("failing_write", ["image", "manifest", "dataset.json"])
def test_disk_full_during_ingest_leaves_no_half_data_set(tmp_path, monkeypatch, failing_write) -> None:
    from transfer_core.data import manifest as manifest_module
    from transfer_core.data.ingest import store as ingest_module
    from transfer_core.sessions.workspace import Workspace

    calls = {"n": 0}
    real_bytes = ingest_module.write_bytes_atomic
    real_text = manifest_module.write_text_atomic

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    def bytes_then_full(path, data):
        calls["n"] += 1
        if calls["n"] >= 3:
            full()
        return real_bytes(path, data)

    def text_failing_on(name):
        def write(path, text):
            if Path(path).name == name:
                full()
            return real_text(path, text)

        return write

    if failing_write == "image":
        monkeypatch.setattr(ingest_module, "write_bytes_atomic", bytes_then_full)
    elif failing_write == "manifest":
        monkeypatch.setattr(manifest_module, "write_text_atomic", text_failing_on("manifest.csv"))
    else:
        monkeypatch.setattr(manifest_module, "write_text_atomic", text_failing_on("dataset.json"))

    workspace = Workspace.open(Settings(home=tmp_path / "home"))
    dest = workspace.new_dataset_dir("full")
    with pytest.raises(DataError, match="No space left on device"):
        ingest_uploads([(n, d, n.split("/")[0]) for n, d in good_files().items()], dest, settings=SETTINGS)
    assert not dest.exists() or not any(dest.iterdir())  # Nothing half-written is left behind.
    assert workspace.dataset_dirs() == []  # And no data set is listed.
    assert not [p for p in (tmp_path / "home").rglob("*.tmp")]


def test_folder_source_with_unreadable_file_and_fifo(tmp_path) -> None:
    """Files the server cannot read (no permission, a named pipe) are skipped with the reason."""
    source = write_tree(tmp_path / "src", good_files())
    os.mkfifo(source / "cats" / "pipe.png")
    secret = source / "dogs" / "secret.png"
    secret.write_bytes(noise_png(5))
    secret.chmod(0)
    try:
        result = ingest_folder(source, tmp_path / "ds", settings=SETTINGS)
    finally:
        secret.chmod(0o644)
    reasons = {s.name: s.reason for s in result.skipped}
    assert reasons["cats/pipe.png"] == "not a regular file"
    if os.geteuid() != 0:  # root reads anything.
        assert "could not be read" in reasons["dogs/secret.png"]
    assert len(read_manifest(result.spec)) >= 6
