"""The demo data set from the home's template: what make_demo_dataset makes, once per home, never shared."""

from __future__ import annotations

import hashlib
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.images import noise_png

from transfer_core.config import Settings
from transfer_core.data import (
    DataError,
    add_image,
    demo_dataset_from_template,
    load_dataset,
    make_demo_dataset,
    prepare_demo_template,
    read_manifest,
    relabel_image,
    remove_image,
    undo_last_change,
)
from transfer_core.data.demo_template import template_dir

SMALL = {"images_per_class": 3, "image_size": 24, "seed": 5, "kind": "where"}


def _contents(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every image file, plus the manifest's rows."""
    images = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted((root / "images").rglob("*")) if p.is_file()}
    frame = read_manifest(load_dataset(root))
    return {**images, "manifest": frame.to_csv(index=False)}


def test_same_data_set_as_generating_it(tmp_path: Path) -> None:
    made = make_demo_dataset(tmp_path / "made", **SMALL)
    copied = demo_dataset_from_template(tmp_path / "ws" / "demo", tmp_path / "cache", **SMALL)
    assert Path(copied.root).resolve() == (tmp_path / "ws" / "demo").resolve()
    assert load_dataset(copied.root).class_names == made.class_names
    assert _contents(Path(copied.root)) == _contents(Path(made.root))
    written = json.loads((tmp_path / "ws" / "demo" / "dataset.json").read_text())
    assert written["root"] == str((tmp_path / "ws" / "demo").resolve())


def test_two_workspaces_identical_and_independent(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = demo_dataset_from_template(tmp_path / "a" / "demo", cache, **SMALL)
    second = demo_dataset_from_template(tmp_path / "b" / "demo", cache, **SMALL)
    assert _contents(Path(first.root)) == _contents(Path(second.root))
    before = _contents(Path(second.root))

    # Every kind of version change in one workspace leaves the other's data set as it was.
    rows = read_manifest(first)
    relabel_image(first.root, rows["path"][0], rows["label"][len(rows) - 1])
    remove_image(first.root, rows["path"][1])
    add_image(first.root, "new.png", noise_png(7), rows["label"][0], Settings())
    undo_last_change(first.root)
    assert load_dataset(first.root).version == 5
    assert load_dataset(second.root).version == 1
    assert _contents(Path(second.root)) == before

    # Each workspace has its own files: changing one in place does not reach the other.
    image = next(p for p in sorted((Path(first.root) / "images").rglob("*.png")))
    image.write_bytes(b"changed")
    assert _contents(Path(second.root)) == before
    # Deleting one workspace's data set leaves the other's and the template's images in place.
    shutil.rmtree(first.root)
    assert _contents(Path(second.root)) == before
    assert (template_dir(cache, *SMALL.values()) / "dataset.json").exists()


def test_thirty_at_once_build_the_template_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    dests = [tmp_path / f"ws{i}" / "demo" for i in range(30)]
    with ThreadPoolExecutor(max_workers=30) as pool:
        specs = list(pool.map(lambda d: demo_dataset_from_template(d, cache, **SMALL), dests))
    reference = _contents(Path(specs[0].root))
    assert all(_contents(Path(s.root)) == reference for s in specs)
    assert [Path(s.root).name for s in specs] == ["demo"] * 30
    templates = [p for p in (cache / "demo-datasets").iterdir() if not p.name.startswith(".")]
    assert len(templates) == 1
    assert not [p for p in (cache / "demo-datasets").iterdir() if ".building-" in p.name]
    assert not [p for d in dests for p in d.parent.iterdir() if ".partial-" in p.name]


def test_other_parameters_other_template_and_a_full_folder_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    one = demo_dataset_from_template(tmp_path / "one", cache, **SMALL)
    other = demo_dataset_from_template(tmp_path / "two", cache, **{**SMALL, "seed": 6})
    assert _contents(Path(one.root)) != _contents(Path(other.root))
    full = tmp_path / "full"
    full.mkdir()
    (full / "x.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        demo_dataset_from_template(full, cache, **SMALL)
    assert (full / "x.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="image_size"):
        demo_dataset_from_template(tmp_path / "bad", cache, **{**SMALL, "image_size": 4})


def test_prepared_template_is_reused_not_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    template = prepare_demo_template(cache, **SMALL)
    assert template == template_dir(cache, *SMALL.values())
    stamp = (template / "dataset.json").stat().st_mtime_ns
    demo_dataset_from_template(tmp_path / "ws" / "demo", cache, **SMALL)
    assert prepare_demo_template(cache, **SMALL) == template
    assert (template / "dataset.json").stat().st_mtime_ns == stamp
