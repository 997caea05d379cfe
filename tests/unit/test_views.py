"""Display data: data set summaries, thumbnails, skipped tables, and the server-folder guard."""

from __future__ import annotations

import os

import pytest

from transfer_core.data import SkippedFile, make_demo_dataset
from transfer_core.display import views


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("ws") / "demo-0a1b2c", images_per_class=6, image_size=32)


def test_dataset_name_drops_the_workspace_suffix():
    assert views.dataset_name("/x/datasets/my-cats-0a1b2c") == "my-cats"
    assert views.dataset_name("/x/plain") == "plain"


def test_summary_counts_every_image_once(demo):
    summary = views.dataset_summary(demo)
    assert summary.name == "demo" and summary.total == 24
    assert summary.counts["train"] + summary.counts["val"] == 24
    assert summary.text.startswith("4 classes, 24 images")


def test_thumbnails_are_per_class_existing_files(demo):
    thumbs = views.thumbnails_by_class(demo, per_class=2, split="train")
    assert list(thumbs) == list(demo.class_names)
    for items in thumbs.values():
        assert len(items) == 2
        assert all(os.path.exists(path) and caption.startswith("train") for path, caption in items)


def test_skipped_frame_accepts_objects_and_dicts():
    frame = views.skipped_frame(
        [SkippedFile("a.txt", "not an image"), {"name": "b.jpg", "reason": "truncated"}]
    )
    assert frame.to_dict("records") == [
        {"file": "a.txt", "reason": "not an image"},
        {"file": "b.jpg", "reason": "truncated"},
    ]


def test_server_folder_is_off_without_allowed_dirs(tmp_path):
    with pytest.raises(PermissionError, match="TRANSFER_ALLOWED_DATA_DIRS"):
        views.resolve_server_folder(tmp_path, [])


def test_server_folder_inside_an_allowed_dir_is_resolved(tmp_path):
    (tmp_path / "allowed" / "cats").mkdir(parents=True)
    assert (
        views.resolve_server_folder(tmp_path / "allowed" / "cats", [tmp_path / "allowed"])
        == (tmp_path / "allowed" / "cats").resolve()
    )


def test_server_folder_cannot_escape_by_dots_or_links(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (tmp_path / "secret").mkdir()
    (allowed / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(PermissionError, match="outside"):
        views.resolve_server_folder(allowed / ".." / "secret", [allowed])
    with pytest.raises(PermissionError, match="outside"):
        views.resolve_server_folder(allowed / "link", [allowed])
    with pytest.raises(PermissionError):
        views.resolve_server_folder("/etc", [allowed])


def test_server_folder_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        views.resolve_server_folder(tmp_path / "missing", [tmp_path])
