"""Data set versions: relabel, remove, add a photo, undo, restore, resplit; old versions and runs unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers.images import encode, noise_image, noise_png

from transfer_core.config import DatasetSpec, RunConfig, Settings
from transfer_core.data import (
    DataError,
    ImageRejected,
    VersionError,
    add_image,
    check_versions,
    current_labels,
    health_report,
    ingest_uploads,
    list_versions,
    load_dataset,
    load_version,
    read_manifest,
    relabel_image,
    remove_image,
    resplit,
    restore_version,
    split_paths,
    undo_last_change,
)
from transfer_core.runs import RunStore

SETTINGS = Settings(max_files=500)


@pytest.fixture
def spec(tmp_path: Path) -> DatasetSpec:
    """20 images in each of three classes, 20% validation, 10% test."""
    files = [(f"{label}{i}.png", noise_png(100 * n + i), label)
             for n, label in enumerate(("cat", "dog", "fox")) for i in range(20)]
    return ingest_uploads(files, tmp_path / "ds", seed=3, test_fraction=0.1, settings=SETTINGS).spec


def _rows(spec: DatasetSpec) -> dict[str, tuple[str, str]]:
    """path -> (label, split) of one version."""
    frame = read_manifest(spec)
    return {path: (label, split) for path, label, split in zip(frame["path"], frame["label"], frame["split"],
                                                                 strict=True)}


def _a_path(spec: DatasetSpec, label: str, split: str = "train") -> str:
    frame = read_manifest(spec)
    return str(frame[(frame["label"] == label) & (frame["split"] == split)]["path"].iloc[0])


def test_relabel_makes_version_2_and_leaves_version_1_as_it_was(spec):
    before = spec.manifest_path.read_bytes()
    path = _a_path(spec, "cat", "val")
    record = relabel_image(spec.root, path, "dog")
    assert record.version == 2 and record.kind == "relabel" and record.previous == 1
    assert "from 'cat' to 'dog'" in record.description
    head = load_dataset(spec.root)
    assert head == record.spec and head.version == 2
    assert spec.manifest_path.read_bytes() == before  # Version 1's manifest is untouched.
    assert read_manifest(spec)["label"].tolist() == read_manifest(load_version(spec.root, 1))["label"].tolist()
    old, new = _rows(spec), _rows(head)
    assert new[path] == ("dog", "val")  # Relabelled, same split.
    assert {p: v for p, v in new.items() if p != path} == {p: v for p, v in old.items() if p != path}
    assert current_labels(spec.root)[path] == "dog"
    with pytest.raises(VersionError, match="already labelled 'dog'"):
        relabel_image(spec.root, path, "dog")
    with pytest.raises(VersionError, match="'wolf' is not a class"):
        relabel_image(spec.root, path, "wolf")


def test_remove_leaves_the_file_for_older_versions(spec):
    path = _a_path(spec, "fox")
    record = remove_image(spec.root, path)
    head = load_dataset(spec.root)
    assert path not in _rows(head) and len(read_manifest(head)) == 59 and record.images == 59
    assert (Path(spec.root) / path).is_file()  # Version 1 still lists it.
    assert path in _rows(load_version(spec.root, 1))
    assert path not in current_labels(spec.root)
    with pytest.raises(VersionError, match="not in the data set's newest version"):
        remove_image(spec.root, path)
    # Untouched images keep their split; the training file lists follow the version.
    assert {p: v for p, v in _rows(spec).items() if p != path} == _rows(head)
    train_paths, _ = split_paths(head, "train")
    assert str(Path(spec.root).resolve() / path) not in train_paths


def test_a_class_keeps_its_last_image(tmp_path):
    files = [("a.png", noise_png(1), "a"), ("b1.png", noise_png(2), "b"), ("b2.png", noise_png(3), "b")]
    spec = ingest_uploads(files, tmp_path / "ds", settings=SETTINGS).spec
    only = _rows(spec)
    last_a = next(path for path, (label, _) in only.items() if label == "a")
    with pytest.raises(VersionError, match="last image of class 'a'"):
        remove_image(spec.root, last_a)
    with pytest.raises(VersionError, match="last image of class 'a'"):
        relabel_image(spec.root, last_a, "b")
    assert load_dataset(spec.root).version == 1  # A refused change makes no version.


def test_add_a_photo_stores_it_by_content_and_places_it_by_hash(spec):
    data = encode(noise_image(999, size=40), "JPEG")
    record = add_image(spec.root, "new cat.jpg", data, "cat", SETTINGS)
    head = record.spec
    frame = read_manifest(head)
    added = frame[frame["sha256"] == hashlib.sha256(data).hexdigest()]
    assert len(added) == 1 and added["label"].iloc[0] == "cat"
    assert (Path(spec.root) / added["path"].iloc[0]).read_bytes() == data  # A plain RGB JPEG is kept byte for byte.
    assert added["path"].iloc[0].startswith("images/")
    where = {"train": "training", "val": "validation", "test": "test"}[added["split"].iloc[0]]
    assert record.description == f"added new cat.jpg to 'cat' ({where} split)"
    # Every other image keeps its split.
    old = _rows(spec)
    assert {p: v for p, v in _rows(head).items() if p in old} == old
    with pytest.raises(VersionError, match="already in the data set, in class 'cat'"):
        add_image(spec.root, "again.jpg", data, "dog", SETTINGS)


def test_a_bad_photo_is_refused_with_its_name_and_reason(spec):
    with pytest.raises(ImageRejected, match="not an image: it is a text file"):
        add_image(spec.root, "notes.png", b"just some text, not a picture\n" * 3, "cat", SETTINGS)
    with pytest.raises(ImageRejected, match="empty"):
        add_image(spec.root, "empty.png", b"", "cat", SETTINGS)
    assert load_dataset(spec.root).version == 1
    assert not (Path(spec.root) / "versions").exists() or not any((Path(spec.root) / "versions").iterdir())


def test_undo_walks_back_and_never_reuses_a_version(spec):
    first = _rows(spec)
    cat = _a_path(spec, "cat")
    relabel_image(spec.root, cat, "fox")  # v2
    dog = _a_path(spec, "dog")
    remove_image(spec.root, dog)  # v3
    v3 = _rows(load_dataset(spec.root))
    undo = undo_last_change(spec.root)  # v4 == v2
    assert undo.version == 4 and undo.kind == "undo" and "undid version 3" in undo.description
    assert _rows(undo.spec) == _rows(load_version(spec.root, 2))
    again = undo_last_change(spec.root)  # v5 == v1
    assert again.version == 5 and _rows(again.spec) == first
    with pytest.raises(VersionError, match="Nothing to undo"):
        undo_last_change(spec.root)
    assert _rows(load_version(spec.root, 3)) == v3  # The undone versions stay as they were.
    assert [r.version for r in list_versions(spec.root)] == [1, 2, 3, 4, 5]
    assert [r.kind for r in list_versions(spec.root)] == ["original", "relabel", "remove", "undo", "undo"]
    restored = restore_version(spec.root, 3)
    assert restored.version == 6 and _rows(restored.spec) == v3
    assert _rows(undo_last_change(spec.root).spec) == first  # Undoing a restore goes back to before it.


def test_a_run_keeps_its_version_after_the_data_changes(spec, tmp_path):
    config = RunConfig(dataset=spec)
    run_dir = RunStore(tmp_path / "runs").create(config)
    path = _a_path(spec, "cat", "val")
    relabel_image(spec.root, path, "dog")
    remove_image(spec.root, _a_path(spec, "dog"))
    loaded = RunStore(tmp_path / "runs").load(run_dir.name).config
    assert loaded.dataset.version == 1 and loaded.dataset == spec
    paths, labels = split_paths(loaded.dataset, "val")
    index = paths.index(str(Path(spec.root).resolve() / path))
    assert spec.class_names[labels[index]] == "cat"  # The run still reads the label it was trained on.
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["dataset"]["version"] == 1


def test_resplit_is_a_version_and_keeps_the_old_split(spec):
    old = _rows(spec)
    same = resplit(spec, seed=3, val_fraction=0.2, test_fraction=0.1)
    assert same.version == 1  # Nothing changed: no version.
    changed = resplit(spec, seed=8, val_fraction=0.4, test_fraction=0.0)
    assert changed.version == 2 and (changed.seed, changed.val_fraction) == (8, 0.4)
    assert read_manifest(changed)["split"].value_counts().to_dict() == {"train": 36, "val": 24}
    assert _rows(load_version(spec.root, 1)) == old
    assert load_version(spec.root, 1).seed == 3  # Version 1's settings are kept with it.
    back = undo_last_change(spec.root)
    assert (back.spec.seed, back.spec.val_fraction, back.spec.test_fraction) == (3, 0.2, 0.1)
    assert _rows(back.spec) == old


def test_the_health_report_follows_the_version(spec):
    fox = read_manifest(spec)
    fox = fox[fox["label"] == "fox"]["path"].tolist()
    for path in fox[:15]:
        remove_image(spec.root, path)
    assert health_report(spec).counts["total"].tolist() == [20, 20, 20]
    assert health_report(load_dataset(spec.root)).counts["total"].tolist() == [20, 20, 5]
    assert health_report(load_dataset(spec.root)).imbalance_ratio == 4.0


def test_old_data_sets_without_a_version_still_load(spec):
    path = Path(spec.root) / "dataset.json"
    data = json.loads(path.read_text())
    del data["version"]
    path.write_text(json.dumps(data))
    old = load_dataset(spec.root)
    assert old.version == 1 and old.manifest_path == Path(spec.root) / "manifest.csv"
    assert list_versions(spec.root)[0].kind == "original"
    assert relabel_image(spec.root, _a_path(spec, "cat"), "dog").version == 2


def test_check_versions_refuses_a_manifest_that_escapes(spec):
    relabel_image(spec.root, _a_path(spec, "cat"), "dog")
    check_versions(spec.root)
    manifest = Path(spec.root) / "versions" / "2" / "manifest.csv"
    text = manifest.read_text().splitlines()
    text[1] = "../../secret.png" + text[1][text[1].index(","):]
    manifest.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match="version 2 lists '../../secret.png'"):
        check_versions(spec.root)
    (Path(spec.root) / "versions" / "junk").mkdir()
    with pytest.raises(DataError, match="versions/junk is not a data set version"):
        check_versions(spec.root)


def test_the_spec_validates_its_version():
    with pytest.raises(ValueError, match="version must be an integer >= 1"):
        DatasetSpec(root=".", class_names=("a", "b"), version=0)
    assert DatasetSpec(root="/d", class_names=("a", "b"), version=3).manifest_path == Path(
        "/d/versions/3/manifest.csv")


def test_an_assignment_published_from_a_later_version_starts_as_version_1(spec, tmp_path):
    from transfer_core.sessions.assignments import hidden_dataset, publish_assignment, start_assignment

    path = _a_path(spec, "cat")
    relabel_image(spec.root, path, "dog")
    settings = Settings(home=tmp_path / "home")
    assignment = publish_assignment(settings, load_dataset(spec.root), "Fixed pets")
    copy = start_assignment(settings, assignment, tmp_path / "student")
    assert copy.version == 1 and hidden_dataset(settings, assignment.assignment_id).version == 1
    labels = {**_rows(copy), **_rows(hidden_dataset(settings, assignment.assignment_id))}
    assert labels[path][0] == "dog"  # The published data is the fixed version's.
