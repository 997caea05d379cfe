"""Ingest from a folder, a ZIP and uploads; the manifest; the split; resplit; health; demo."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.bad_files import zip_bytes
from PIL import Image

from transfer_core.config import DatasetSpec, Settings
from transfer_core.data import (
    DEMO_CLASSES,
    MANIFEST_COLUMNS,
    DataError,
    HealthReport,
    IngestResult,
    has_own_split,
    health_report,
    ingest_folder,
    ingest_uploads,
    ingest_zip,
    load_dataset,
    make_demo_dataset,
    read_manifest,
    read_notes,
    read_skipped,
    resplit,
    split_paths,
)

SETTINGS = Settings(max_files=500)


def png_bytes(index: int, size: int = 12) -> bytes:
    """A small PNG whose content is unique for each index."""
    rng = np.random.default_rng(index)
    array = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(index: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(10_000 + index)
    array = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def class_tree(counts: dict[str, int], prefix: str = "", offset: int = 0) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    index = offset
    for label, count in counts.items():
        for _ in range(count):
            files[f"{prefix}{label}/img_{index:03d}.png"] = png_bytes(index)
            index += 1
    return files


def split_by_sha(spec: DatasetSpec) -> dict[str, str]:
    frame = read_manifest(spec)
    return dict(zip(frame["sha256"], frame["split"], strict=True))


# ---------------------------------------------------------------------------
# Folder.


def test_ingest_folder_one_subfolder_per_class(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "src", class_tree({"dogs": 6, "cats": 5}))
    result = ingest_folder(source, tmp_path / "ds", settings=SETTINGS)

    assert isinstance(result, IngestResult)
    assert result.spec.class_names == ("cats", "dogs")
    assert result.skipped == ()
    frame = read_manifest(result.spec)
    assert tuple(frame.columns) == MANIFEST_COLUMNS
    assert len(frame) == 11
    assert set(frame["split"]) <= {"train", "val", "test"}
    # round(6 * 0.2) = 1 and round(5 * 0.2) = 1 validation image per class.
    assert frame.groupby("label")["split"].apply(lambda s: (s == "val").sum()).to_dict() == {
        "cats": 1,
        "dogs": 1,
    }
    for _, row in frame.iterrows():
        stored = Path(result.spec.root) / row["path"]
        assert stored.is_file()
        assert not Path(row["path"]).is_absolute()
        assert row["path"].startswith("images/")
        with Image.open(stored) as image:
            assert image.size == (row["width"], row["height"])
    assert set(frame["sha256"].str.len()) == {64}

    data = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert data["root"] == str((tmp_path / "ds").resolve())
    assert load_dataset(tmp_path / "ds") == result.spec
    assert (tmp_path / "ds" / "skipped.csv").read_text().splitlines() == ["name,reason"]


def test_ingest_folder_keeps_its_own_train_val_split(tmp_path: Path) -> None:
    files = {
        **class_tree({"ants": 4, "bees": 3}, prefix="train/"),
        **class_tree({"ants": 2, "bees": 2}, prefix="valid/", offset=100),
        **class_tree({"ants": 1, "bees": 1}, prefix="test/", offset=200),
    }
    source = write_tree(tmp_path / "src", files)
    result = ingest_folder(source, tmp_path / "ds", settings=SETTINGS)

    frame = read_manifest(result.spec)
    assert result.spec.class_names == ("ants", "bees")
    assert has_own_split(result.spec)
    expected = {
        "train": {"ants": 4, "bees": 3},
        "val": {"ants": 2, "bees": 2},
        "test": {"ants": 1, "bees": 1},
    }
    for split, per_class in expected.items():
        assert frame[frame["split"] == split]["label"].value_counts().to_dict() == per_class
    assert any("own train/validation split" in note for note in result.notes)

    # resplit keeps a source's own split (and only updates the settings).
    before = split_by_sha(result.spec)
    new_spec = resplit(result.spec, seed=5, val_fraction=0.5, test_fraction=0.0)
    assert split_by_sha(new_spec) == before
    assert load_dataset(tmp_path / "ds").seed == 5


def test_own_split_without_val_images_falls_back_to_hash_split(tmp_path: Path) -> None:
    files = {**class_tree({"ants": 5, "bees": 5}, prefix="train/"), "val/ants/empty.png": b""}
    result = ingest_folder(write_tree(tmp_path / "src", files), tmp_path / "ds", settings=SETTINGS)

    frame = read_manifest(result.spec)
    assert (frame["split"] == "val").sum() == 2
    assert not has_own_split(result.spec)
    assert any("content hash" in note for note in result.notes)


def test_ingest_folder_takes_images_in_deeper_folders(tmp_path: Path) -> None:
    files = {
        "cats/indoor/a.png": png_bytes(1),
        "cats/outdoor/deep/b.png": png_bytes(2),
        "dogs/c.png": png_bytes(3),
        "dogs/d.png": png_bytes(4),
        "loose.png": png_bytes(5),
    }
    result = ingest_folder(write_tree(tmp_path / "src", files), tmp_path / "ds", settings=SETTINGS)

    frame = read_manifest(result.spec)
    assert frame["label"].value_counts().to_dict() == {"cats": 2, "dogs": 2}
    assert ("loose.png", "not inside a class folder") in {(s.name, s.reason) for s in result.skipped}


def test_ingest_folder_missing_source_is_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        ingest_folder(tmp_path / "nowhere", tmp_path / "ds", settings=SETTINGS)


def test_dest_must_be_new_or_empty(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "src", class_tree({"a": 2, "b": 2}))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        ingest_folder(source, occupied, settings=SETTINGS)
    assert (occupied / "keep.txt").read_text() == "mine"

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        ingest_folder(source, a_file, settings=SETTINGS)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert ingest_folder(source, empty, settings=SETTINGS).spec.root == str(empty.resolve())


def test_too_many_files_is_data_error(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "src", class_tree({"a": 4, "b": 4}))
    with pytest.raises(DataError, match="more than 5"):
        ingest_folder(source, tmp_path / "ds", settings=Settings(max_files=5))
    with pytest.raises(DataError, match="more than the limit of 5"):
        ingest_zip(zip_bytes(class_tree({"a": 4, "b": 4})), tmp_path / "ds2", settings=Settings(max_files=5))
    files = [(f"{i}.png", png_bytes(i), "a" if i % 2 else "b") for i in range(8)]
    with pytest.raises(DataError, match="more than 5"):
        ingest_uploads(files, tmp_path / "ds3", settings=Settings(max_files=5))
    assert not (tmp_path / "ds3" / "images").exists()


# ---------------------------------------------------------------------------
# ZIP and uploads.


def test_ingest_zip_from_bytes_path_and_file_object_agree(tmp_path: Path) -> None:
    files = class_tree({"cats": 5, "dogs": 5}, prefix="my_data/")
    data = zip_bytes(files)
    archive_path = tmp_path / "data.zip"
    archive_path.write_bytes(data)

    from_bytes = ingest_zip(data, tmp_path / "a", settings=SETTINGS)
    from_path = ingest_zip(archive_path, tmp_path / "b", settings=SETTINGS)
    from_handle = ingest_zip(io.BytesIO(data), tmp_path / "c", settings=SETTINGS)
    from_folder = ingest_folder(write_tree(tmp_path / "src", files), tmp_path / "d", settings=SETTINGS)

    assert from_bytes.spec.class_names == ("cats", "dogs")
    manifests = [read_manifest(r.spec) for r in (from_bytes, from_path, from_handle, from_folder)]
    for frame in manifests[1:]:
        pd.testing.assert_frame_equal(frame, manifests[0])
    assert len(manifests[0]) == 10
    assert any("my_data/" in note for note in from_bytes.notes)


def test_ingest_zip_with_wrapper_and_split_folders(tmp_path: Path) -> None:
    files = {
        **class_tree({"ants": 3, "bees": 3}, prefix="hymenoptera_data/train/"),
        **class_tree({"ants": 2, "bees": 1}, prefix="hymenoptera_data/val/", offset=50),
    }
    result = ingest_zip(zip_bytes(files), tmp_path / "ds", settings=SETTINGS)
    frame = read_manifest(result.spec)
    assert frame.groupby("split").size().to_dict() == {"train": 6, "val": 3}
    assert has_own_split(result.spec)


def test_ingest_uploads(tmp_path: Path) -> None:
    files = [(f"photo_{i}.png", png_bytes(i), "red" if i < 4 else "blue") for i in range(8)]
    files.append(("photo_j.jpg", jpeg_bytes(1), "blue"))
    result = ingest_uploads(files, tmp_path / "ds", settings=SETTINGS)

    frame = read_manifest(result.spec)
    assert result.spec.class_names == ("blue", "red")
    assert frame["label"].value_counts().to_dict() == {"blue": 5, "red": 4}
    # A small RGB JPEG is stored byte for byte; everything else as PNG.
    jpeg_rows = frame[frame["path"].str.endswith(".jpg")]
    assert len(jpeg_rows) == 1
    assert (Path(result.spec.root) / jpeg_rows.iloc[0]["path"]).read_bytes() == jpeg_bytes(1)
    assert frame["path"].str.endswith((".png", ".jpg")).all()


def test_big_images_are_downscaled_to_1024(tmp_path: Path) -> None:
    big = io.BytesIO()
    Image.new("RGB", (2000, 500), (10, 200, 30)).save(big, format="JPEG")
    files = [("big.jpg", big.getvalue(), "a"), ("s1.png", png_bytes(1), "a"), ("s2.png", png_bytes(2), "b")]
    files.append(("s3.png", png_bytes(3), "b"))
    frame = read_manifest(ingest_uploads(files, tmp_path / "ds", settings=SETTINGS).spec)
    row = frame[frame["width"] > 100].iloc[0]
    assert (row["width"], row["height"]) == (1024, 256)
    assert row["path"].endswith(".png")


# ---------------------------------------------------------------------------
# Split.


def test_split_is_independent_of_file_order_and_names(tmp_path: Path) -> None:
    files = [(f"img_{i}.png", png_bytes(i), "a" if i % 2 else "b") for i in range(40)]
    shuffled = [
        (f"renamed_{random.Random(i).random()}.png", data, label) for i, (_, data, label) in enumerate(files)
    ]
    random.Random(3).shuffle(shuffled)

    first = ingest_uploads(files, tmp_path / "one", seed=7, settings=SETTINGS)
    second = ingest_uploads(shuffled, tmp_path / "two", seed=7, settings=SETTINGS)
    other_seed = ingest_uploads(files, tmp_path / "three", seed=8, settings=SETTINGS)

    pd.testing.assert_frame_equal(read_manifest(first.spec), read_manifest(second.spec))
    assert split_by_sha(first.spec) != split_by_sha(other_seed.spec)
    assert split_paths(first.spec, "val")[0] != []


def test_split_is_stratified_with_test_fraction(tmp_path: Path) -> None:
    files = [(f"a{i}.png", png_bytes(i), "big") for i in range(50)]
    files += [(f"b{i}.png", png_bytes(100 + i), "small") for i in range(10)]
    files += [(f"c{i}.png", png_bytes(200 + i), "pair") for i in range(2)]
    files += [("single.png", png_bytes(300), "single")]
    result = ingest_uploads(files, tmp_path / "ds", val_fraction=0.2, test_fraction=0.1, settings=SETTINGS)

    counts = health_report(result.spec).counts
    assert counts.loc["big", ["train", "val", "test"]].tolist() == [35, 10, 5]
    assert counts.loc["small", ["train", "val", "test"]].tolist() == [7, 2, 1]
    assert counts.loc["pair", ["train", "val", "test"]].tolist() == [1, 1, 0]
    assert counts.loc["single", ["train", "val", "test"]].tolist() == [1, 0, 0]


def test_resplit_rewrites_manifest_and_is_reproducible(tmp_path: Path) -> None:
    files = [(f"{i}.png", png_bytes(i), "a" if i % 2 else "b") for i in range(30)]
    spec = ingest_uploads(files, tmp_path / "ds", seed=0, settings=SETTINGS).spec
    original = split_by_sha(spec)

    changed = resplit(spec, seed=1, val_fraction=0.4, test_fraction=0.2)
    assert (changed.seed, changed.val_fraction, changed.test_fraction) == (1, 0.4, 0.2)
    assert load_dataset(spec.root) == changed
    frame = read_manifest(changed)
    assert frame["split"].value_counts().to_dict() == {"train": 12, "val": 12, "test": 6}

    back = resplit(changed, seed=0, val_fraction=0.2, test_fraction=0.0)
    assert split_by_sha(back) == original


def test_split_paths_and_natural_class_order(tmp_path: Path) -> None:
    files = [
        (f"{label}_{i}.png", png_bytes(i * 10 + n), label)
        for n, label in enumerate(["class10", "Class2", "class1"])
        for i in range(3)
    ]
    spec = ingest_uploads(files, tmp_path / "ds", settings=SETTINGS).spec
    assert spec.class_names == ("class1", "Class2", "class10")

    paths, labels = split_paths(spec, "train")
    frame = read_manifest(spec)
    assert labels.dtype == np.int32
    assert len(paths) == len(labels) == (frame["split"] == "train").sum()
    for path, label in zip(paths, labels, strict=True):
        assert Path(path).is_absolute() and Path(path).is_file()
        row = frame[frame["path"] == Path(path).relative_to(spec.root).as_posix()].iloc[0]
        assert spec.class_names[label] == row["label"]
    with pytest.raises(ValueError, match="split must be one of"):
        split_paths(spec, "validation")


def test_labels_that_look_like_numbers_or_missing_values_stay_text(tmp_path: Path) -> None:
    files = [(f"{i}.png", png_bytes(i), "NA" if i < 3 else "001") for i in range(6)]
    spec = ingest_uploads(files, tmp_path / "ds", settings=SETTINGS).spec
    frame = read_manifest(spec)
    assert set(frame["label"]) == {"NA", "001"}
    assert spec.class_names == ("001", "NA")


# ---------------------------------------------------------------------------
# Loading, health, demo.


def test_load_dataset_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset\.json is missing"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="not a valid data set description"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"root": "x", "class_names": ["only"]}))
    with pytest.raises(DataError, match="at least 2 classes"):
        load_dataset(tmp_path)


def test_load_dataset_follows_a_moved_folder(tmp_path: Path) -> None:
    files = [(f"{i}.png", png_bytes(i), "a" if i % 2 else "b") for i in range(6)]
    ingest_uploads(files, tmp_path / "before", settings=SETTINGS)
    (tmp_path / "before").rename(tmp_path / "after")
    spec = load_dataset(tmp_path / "after")
    assert spec.root == str((tmp_path / "after").resolve())
    assert all(Path(p).is_file() for p in split_paths(spec, "train")[0])


def test_health_report_counts_leakage_conflicts_and_warnings(tmp_path: Path) -> None:
    shared = png_bytes(999)
    files = {
        **class_tree({"ants": 8, "bees": 2}, prefix="train/"),
        **class_tree({"ants": 2}, prefix="val/", offset=100),
        "train/ants/shared.png": shared,
        "val/bees/shared.png": shared,
    }
    result = ingest_folder(write_tree(tmp_path / "src", files), tmp_path / "ds", settings=SETTINGS)
    report = health_report(result.spec)

    assert isinstance(report, HealthReport)
    assert list(report.counts.columns) == ["train", "val", "test", "total"]
    assert report.counts.loc["ants"].tolist() == [9, 2, 0, 11]
    assert report.counts.loc["bees"].tolist() == [2, 1, 0, 3]
    assert report.imbalance_ratio == pytest.approx(11 / 3)
    assert len(report.duplicate_groups) == 1 and len(report.duplicate_groups[0]) == 2
    assert report.conflicting_labels == report.duplicate_groups
    assert len(report.cross_split_duplicates) == 1
    train_path, val_path = report.cross_split_duplicates[0]
    frame = read_manifest(result.spec).set_index("path")
    assert (frame.loc[train_path, "split"], frame.loc[val_path, "split"]) == ("train", "val")
    assert report.tiny_classes == ["bees"]
    text = " ".join(report.warnings)
    assert "already seen" in text and "more than one class" in text and "'bees'" in text
    encoded = json.loads(json.dumps(report.to_dict()))
    assert encoded["counts"][0] == {"class": "ants", "train": 9, "val": 2, "test": 0, "total": 11}


def test_health_report_of_a_clean_set_has_no_warnings(tmp_path: Path) -> None:
    files = [(f"{i}.png", png_bytes(i), "a" if i % 2 else "b") for i in range(20)]
    report = health_report(ingest_uploads(files, tmp_path / "ds", settings=SETTINGS).spec)
    assert report.warnings == []
    assert report.imbalance_ratio == 1.0
    assert report.duplicate_groups == [] and report.cross_split_duplicates == [] and report.tiny_classes == []


def test_demo_dataset_is_deterministic_and_balanced(tmp_path: Path) -> None:
    # How fast it is belongs in a benchmark, not here (a timed unit test fails on a busy machine).
    spec = make_demo_dataset(tmp_path / "demo")
    assert spec.class_names == tuple(sorted(DEMO_CLASSES))
    report = health_report(spec)
    assert report.counts["total"].tolist() == [40] * 4
    assert report.counts["val"].tolist() == [8] * 4
    assert report.warnings == []
    assert read_skipped(spec) == []

    again = make_demo_dataset(tmp_path / "again")
    other = make_demo_dataset(tmp_path / "other", images_per_class=5, seed=1)
    assert split_by_sha(again) == split_by_sha(spec)
    assert not set(split_by_sha(other)) & set(split_by_sha(spec))
    assert read_notes(spec) == []


def test_zip_wrapper_folder_with_a_readme_inside(tmp_path: Path) -> None:
    files = {**class_tree({"cats": 3, "dogs": 3}, prefix="export/"), "export/README.txt": b"made by me"}
    result = ingest_zip(zip_bytes(files), tmp_path / "ds", settings=SETTINGS)
    assert result.spec.class_names == ("cats", "dogs")
    assert {(s.name, s.reason) for s in result.skipped} == {
        ("export/README.txt", "not inside a class folder")
    }


def test_a_single_class_folder_is_not_mistaken_for_a_wrapper(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"at least 2 classes with images; found: 'cats' \(3 images\)"):
        ingest_zip(zip_bytes(class_tree({"cats": 3})), tmp_path / "ds", settings=SETTINGS)


def test_truncation_check_switched_off_elsewhere_never_keeps_original_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    files = [(f"{i}.jpg", jpeg_bytes(i), "a" if i % 2 else "b") for i in range(4)]
    frame = read_manifest(ingest_uploads(files, tmp_path / "ds", settings=SETTINGS).spec)
    assert frame["path"].str.endswith(".png").all()
