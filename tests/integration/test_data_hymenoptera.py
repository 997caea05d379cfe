"""Real data: the hymenoptera (ants vs bees) set, ingested as a folder and as a ZIP."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from transfer_core.config import Settings
from transfer_core.data import (
    decode_for_model,
    has_own_split,
    health_report,
    ingest_folder,
    ingest_zip,
    load_dataset,
    make_tf_dataset,
    read_manifest,
    split_paths,
)

pytestmark = pytest.mark.slow

# The source folders hold 124 + 121 training and 70 + 83 validation files.
SOURCE_TRAIN, SOURCE_VAL = 245, 153


def _zip_folder(folder: Path, archive_path: Path) -> Path:
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    return archive_path


@pytest.fixture(scope="module")
def ingested(hymenoptera_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("hymenoptera")
    settings = Settings()
    from_folder = ingest_folder(hymenoptera_dir, work / "from_folder", settings=settings)
    archive = _zip_folder(hymenoptera_dir, work / "hymenoptera_data.zip")
    from_zip = ingest_zip(archive, work / "from_zip", settings=settings)
    return from_folder, from_zip


def test_folder_ingest_keeps_the_source_split(ingested) -> None:
    result, _ = ingested
    spec = result.spec
    frame = read_manifest(spec)

    assert spec.class_names == ("ants", "bees")
    assert has_own_split(spec)
    counts = frame["split"].value_counts().to_dict()
    assert set(counts) == {"train", "val"}
    # Everything is either stored or reported: nothing is lost silently.
    assert len(frame) + len(result.skipped) == SOURCE_TRAIN + SOURCE_VAL
    assert SOURCE_TRAIN - 5 <= counts["train"] <= SOURCE_TRAIN
    assert SOURCE_VAL - 5 <= counts["val"] <= SOURCE_VAL
    assert frame["width"].max() <= 1024 and frame["height"].max() <= 1024
    assert all((Path(spec.root) / p).is_file() for p in frame["path"])
    assert load_dataset(spec.root) == spec


def test_placeholder_gif_is_loaded_or_reported(ingested, hymenoptera_dir: Path) -> None:
    result, _ = ingested
    placeholder = "train/ants/imageNotFound.gif"
    digest = hashlib.sha256((hymenoptera_dir / placeholder).read_bytes()).hexdigest()
    frame = read_manifest(result.spec)
    stored = frame[frame["sha256"] == digest]
    if placeholder in {item.name for item in result.skipped}:
        assert stored.empty
    else:
        # A GIF is converted and stored as PNG, in the class and split it came from.
        assert stored[["label", "split"]].values.tolist() == [["ants", "train"]]
        assert stored["path"].iloc[0].endswith(".png")


def test_health_report_is_sane(ingested) -> None:
    result, _ = ingested
    report = health_report(result.spec)
    assert report.counts["total"].sum() == len(read_manifest(result.spec))
    assert (report.counts["val"] > 0).all() and (report.counts["train"] > 0).all()
    assert 1.0 <= report.imbalance_ratio < 1.5
    assert report.tiny_classes == []
    assert report.conflicting_labels == []
    json.dumps(report.to_dict())


def test_folder_and_zip_give_the_same_data_set(ingested) -> None:
    from_folder, from_zip = ingested
    folder_frame, zip_frame = read_manifest(from_folder.spec), read_manifest(from_zip.spec)
    assert set(folder_frame["sha256"]) == set(zip_frame["sha256"])
    assert folder_frame.drop(columns="path").equals(zip_frame.drop(columns="path"))
    assert folder_frame["path"].tolist() == zip_frame["path"].tolist()
    assert [s.reason for s in from_folder.skipped] == [s.reason for s in from_zip.skipped]
    assert any("hymenoptera_data/" in note for note in from_zip.notes)


def test_pipeline_reads_every_stored_file(ingested) -> None:
    result, _ = ingested
    spec = result.spec
    total = 0
    for split in ("train", "val"):
        for images, labels in make_tf_dataset(spec, split, image_size=64, batch_size=64).as_numpy_iterator():
            assert images.shape[1:] == (64, 64, 3) and images.shape[0] == labels.shape[0]
            total += len(labels)
    assert total == len(read_manifest(spec))
    paths, _ = split_paths(spec, "val")
    first_batch = next(make_tf_dataset(spec, "val", image_size=64, batch_size=1).as_numpy_iterator())[0][0]
    assert (decode_for_model(paths[0], 64) == first_batch).all()
