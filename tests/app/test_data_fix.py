"""Fixing the data from the mistakes (AppTest): relabel, remove, add a photo, undo, train again, before/after.

The run is trained (in this process, tiny model) on a version of the demo set where two validation
images were given wrong labels on purpose, so its "most confidently wrong" gallery has mistakes to fix.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers.images import noise_png
from helpers.models import TINY_MODEL
from helpers.patience import patience
from helpers.runs import make_finished_run, tiny_config
from helpers.workspaces import rerun_until

from transfer_core.config import FreezePlan
from transfer_core.data import load_dataset, load_version, make_demo_dataset, read_manifest, relabel_image
from transfer_core.runs import RunStore

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")


@pytest.fixture
def world(home):
    """A workspace with the demo set (v1), two validation labels broken (v2) and a finished run on v2."""
    from transfer_core.sessions.workspace import Workspace
    from ui import state

    workspace = Workspace.open(state.settings())
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=8, image_size=32)
    frame = read_manifest(spec)
    val = frame[frame["split"] == "val"]
    names = list(spec.class_names)
    for label in names[:2]:
        path = val[val["label"] == label]["path"].iloc[0]
        relabel_image(spec.root, path, names[(names.index(label) + 2) % len(names)])
    broken = load_dataset(spec.root)
    assert broken.version == 3
    run_dir, result = make_finished_run(workspace.runs_dir, tiny_config(broken, epochs=3, strategy="feature_extraction"),
                                        state.settings())
    wrong = [item for item in result.report["evaluation"]["val"]["top_losses"] if not item["correct"]]
    assert wrong, "the broken labels should give the run mistakes to fix"
    return {"workspace": workspace, "spec": broken, "run_id": run_dir.name, "wrong": wrong}


def _train_page(world):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=patience(90))
    at.session_state["workspace"] = world["workspace"]
    at.session_state["dataset_root"] = world["spec"].root
    at.session_state["model_spec"] = TINY_MODEL
    at.session_state["freeze_plan"] = FreezePlan(mode="top_blocks", top_blocks=1)
    at.session_state["run_id"] = world["run_id"]
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    return at


def _labels(spec) -> dict[str, str]:
    frame = read_manifest(spec)
    return dict(zip(frame["path"], frame["label"], strict=True))


def _texts(at) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.caption, *at.success, *at.error, *at.info])


def test_relabel_remove_and_undo_from_the_mistakes_gallery(world):
    at = _train_page(world)
    root, first, run_labels = world["spec"].root, world["wrong"][0], _labels(world["spec"])
    assert "data: " in _texts(at) and " v3" in _texts(at)  # The run shows the version it used.
    assert at.button(key="train_fix_undo").label == "Undo last change"

    at.button(key="fix_0_relabel").click().run()
    assert not at.exception, at.exception
    head = load_dataset(root)
    assert head.version == 4 and _labels(head)[first["path"]] == first["predicted"]
    assert f"is now version 4: relabelled {Path(first['path']).name}" in _texts(at)
    assert f"Now labelled **{first['predicted']}**" in _texts(at)  # The gallery says what was done.
    assert not [b for b in at.button if b.key == "fix_0_relabel"]

    at.button(key="fix_1_remove").click().run()
    assert not at.exception, at.exception
    assert world["wrong"][1]["path"] not in _labels(load_dataset(root))

    at.button(key="train_fix_undo").click().run()
    assert not at.exception, at.exception
    head = load_dataset(root)
    assert head.version == 6 and _labels(head) == _labels(load_version(root, 4))
    # The run and its version are as they were.
    config = RunStore(world["workspace"].runs_dir).load(world["run_id"]).config
    assert config.dataset.version == 3 and _labels(config.dataset) == run_labels
    assert "it used v3; now v6" in _texts(at)
    assert at.button(key="fix_train_again").label == "Train again on the cleaned data (v6)"


def test_add_a_photo_and_refuse_a_bad_one(world):
    at = _train_page(world)
    root = world["spec"].root
    at.file_uploader(key="train_fix_photo_upload").upload("notes.png", b"not a picture at all\n", "image/png").run()
    at.selectbox(key="train_fix_photo_class").set_value(world["spec"].class_names[1])
    at.button(key="train_fix_photo_add").click().run()
    assert not at.exception, at.exception
    assert any("notes.png was not added: not an image" in e.value for e in at.error)
    assert load_dataset(root).version == 3

    at.file_uploader(key="train_fix_photo_upload").upload("new.png", noise_png(42, 32), "image/png").run()
    at.button(key="train_fix_photo_add").click().run()
    assert not at.exception, at.exception
    head = load_dataset(root)
    assert head.version == 4
    frame = read_manifest(head)
    assert len(frame) == len(read_manifest(world["spec"])) + 1
    assert "added new.png to" in _texts(at)


@pytest.mark.slow
def test_train_again_on_the_cleaned_data_then_compare_before_and_after(world):
    at = _train_page(world)
    at.button(key="fix_0_relabel").click().run()
    assert not at.exception, at.exception
    at.button(key="fix_train_again").click().run()
    assert not at.exception, at.exception
    store = RunStore(world["workspace"].runs_dir)
    again = at.session_state["run_id"]
    assert again != world["run_id"]
    before, after = store.load(world["run_id"]).config, store.load(again).config
    assert after.dataset.version == 4 and before.dataset.version == 3
    assert (after.model, after.freeze, after.train) == (before.model, before.freeze, before.train)
    deadline = time.time() + 240
    while time.time() < deadline and store.load(again).is_active:
        time.sleep(1.0)
    assert store.load(again).status == "finished", store.load(again).reason
    at.run()
    assert not at.exception, at.exception
    at.button(key="fix_compare").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare"
    assert at.multiselect(key="compare_pick").value == [world["run_id"], again]
    assert "Before and after fixing the data: v3 → v4 (1 relabelled)" in _texts(at)
    table = next(frame.value for frame in at.dataframe if "data_version" in frame.value.columns)
    assert sorted(table["data_version"]) == [3, 4]


def test_explore_fixes_a_confusion_matrix_cell_and_adds_a_predicted_photo(world):
    from streamlit.testing.v1 import AppTest

    root, first = world["spec"].root, world["wrong"][0]
    at = AppTest.from_file(APP, default_timeout=patience(180))
    at.session_state["workspace"] = world["workspace"]
    at.session_state["dataset_root"] = root
    at.run()
    at.switch_page("pages/explore.py")
    # The page follows the worker's answers (validation predictions, then the cell's Grad-CAMs).
    rerun_until(at, lambda page: any(s.key == "explore_cell_true" for s in page.selectbox))
    at.selectbox(key="explore_cell_true").set_value(first["true"])
    at.selectbox(key="explore_cell_predicted").set_value(first["predicted"])
    rerun_until(at, lambda page: any(b.key == "explore_fix_0_relabel" for b in page.button))
    at.button(key="explore_fix_0_relabel").click().run()
    assert not at.exception, at.exception
    before, head = _labels(world["spec"]), _labels(load_dataset(root))
    changed = {path: (before[path], head[path]) for path in before if before[path] != head[path]}
    assert list(changed.values()) == [(first["true"], first["predicted"])]  # One image of that cell, relabelled.
    assert "is now version 4: relabelled" in _texts(at)

    at.file_uploader(key="explore_upload").upload("fresh.png", noise_png(7, 32), "image/png")
    rerun_until(at, lambda page: any(s.key == "explore_add_0_class" for s in page.selectbox))
    label = at.selectbox(key="explore_add_0_class").value
    at.button(key="explore_add_0_add").click().run()
    assert not at.exception, at.exception
    head = load_dataset(root)
    assert head.version == 5
    assert read_manifest(head)["label"].tolist().count(label) == list(_labels(load_version(root, 4)).values()).count(
        label) + 1
    assert f"added fresh.png to '{label}'" in _texts(at)


def test_the_data_page_shows_the_version_its_health_and_undoes(world):
    at = _train_page(world)
    total = len(read_manifest(world["spec"]))
    at.button(key="fix_0_remove").click().run()  # v4: one image fewer.
    at.switch_page("pages/data.py").run()
    assert not at.exception, at.exception
    root = world["spec"].root
    assert "version 4" in _texts(at) and "(last change: removed" in _texts(at)
    assert {m.label: m.value for m in at.metric}["Images"] == str(total - 1)  # The health report follows the version.
    at.button(key="data_version_undo").click().run()
    assert not at.exception, at.exception
    head = load_dataset(root)
    assert head.version == 5 and _labels(head) == _labels(load_version(root, 3))
    assert "version 5" in _texts(at) and "undid version 4" in _texts(at)
    assert {m.label: m.value for m in at.metric}["Images"] == str(total)
