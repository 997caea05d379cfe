"""Every page renders, with and without data; the Home, Data and Model pages do what they say."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers.apptest import page_text
from helpers.patience import patience
from helpers.workspaces import model_page_ready, rerun_until, served
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"

PAGES = [
    "pages/home.py",
    "pages/data.py",
    "pages/model.py",
    "pages/train.py",
    "pages/compare.py",
    "pages/explore.py",
    "pages/export.py",
]


def _png(color=(200, 30, 30), size=(48, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(color=(20, 160, 20)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, format="JPEG")
    return buffer.getvalue()


def _demo(at):
    """Make the demo data set from the Data page (32 px, few images: fast)."""
    at.switch_page("pages/data.py").run()
    at.slider(key="demo_per_class").set_value(10)
    at.select_slider(key="demo_image_size").set_value(32)
    at.button(key="demo_create").click().run()
    assert not at.exception, at.exception
    return at


def _sidebar_of(at):
    """The sidebar, as a fresh session with the same state sees it.

    AppTest leaves the sidebar out of its tree after a page switch (a browser shows it),
    so render the app once more in a new AppTest holding the same session state.
    """
    from streamlit.testing.v1 import AppTest

    fresh = AppTest.from_file(APP, default_timeout=patience(60))
    for key in ("workspace", "dataset_root", "model_spec", "freeze_plan", "run_id"):
        if key in at.session_state:
            fresh.session_state[key] = at.session_state[key]
    fresh.run()
    assert not fresh.exception, fresh.exception
    return fresh.sidebar


def _table(at, *columns):
    """The first st.dataframe whose columns are exactly ``columns`` (st.dataframe keys are not queryable)."""
    for frame in at.dataframe:
        if list(frame.value.columns) == list(columns):
            return frame.value
    raise AssertionError(f"no table with columns {columns}")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_data(app, page):
    app.switch_page(page).run()
    assert not app.exception, app.exception


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_data(app, page):
    _demo(app)
    app.switch_page(page).run()
    assert not app.exception, app.exception


def test_pages_without_data_say_where_to_get_it(app):
    app.switch_page("pages/data.py").run()
    assert any("No data set yet" in i.value for i in app.info)
    app.switch_page("pages/train.py").run()
    assert any("Choose a data set first" in i.value for i in app.info)


def test_home_does_not_import_tensorflow(home):
    script = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout={patience(30)}).run()\n"
        "assert not at.exception, at.exception\n"
        "assert at.button(key='home_try_demo')\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False False"


def test_try_the_demo_reaches_train_with_data_backbone_and_fast_settings(app):
    app.button(key="home_try_demo").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Train"
    assert any("Demo data set ready" in s.value for s in app.success)
    spec_root = app.session_state["dataset_root"]
    assert os.path.exists(os.path.join(spec_root, "manifest.csv"))
    model = app.session_state["model_spec"]
    assert model.backbone == "mobilenet_v2_0.35" and model.input_size <= 128
    train = app.session_state["train_config"]
    assert train.epochs + train.fine_tune_epochs <= 20 and train.caches_features
    assert app.radio(key="train_strategy").value == train.strategy
    sidebar = "\n".join(c.value for c in _sidebar_of(app).caption)
    assert "demo: 6 classes, 180 images" in sidebar and "mobilenet_v2_0.35" in sidebar


def test_data_page_demo_button_creates_an_active_data_set(app):
    _demo(app)
    assert app.session_state["dataset_root"]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Classes"] == "4" and metrics["Images"] == "40"
    assert app.header[0].value == "Active: demo"
    assert len(app.get("image")) >= 4  # A thumbnail row per class.


def test_uploads_per_class_report_bad_files_and_keep_good_ones(app):
    app.switch_page("pages/data.py").run()
    app.text_input(key="upload_class_name_0").set_value("red")
    app.text_input(key="upload_class_name_1").set_value("blue")
    app.run()
    good_red = [(f"r{i}.png", _png((200 + i, 0, 0)), "image/png") for i in range(4)]
    good_blue = [(f"b{i}.png", _png((0, 0, 200 + i)), "image/png") for i in range(4)]
    app.file_uploader(key="upload_class_files_0").set_value(
        [
            *good_red,
            ("notes.txt", b"hello, not an image", "text/plain"),
            ("cut.png", _png()[:60], "image/png"),
        ]
    )
    app.file_uploader(key="upload_class_files_1").set_value(good_blue)
    app.run()
    app.button(key="upload_create").click().run()
    assert not app.exception, app.exception
    assert any("is ready and active" in s.value for s in app.success), page_text(app)
    tables = [f.value for f in app.dataframe if list(f.value.columns) == ["file", "reason"]]
    assert len(tables) == 2  # Right after the upload, and in the health report.
    skipped = tables[0]
    assert set(skipped["file"]) == {"red/notes.txt", "red/cut.png"}
    assert all(reason for reason in skipped["reason"])
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Images"] == "8" and metrics["Skipped files"] == "2"


def test_uploads_need_two_classes_with_distinct_names(app):
    app.switch_page("pages/data.py").run()
    app.file_uploader(key="upload_class_files_0").set_value([("a.png", _png(), "image/png")])
    app.run()
    app.button(key="upload_create").click().run()
    assert any("at least two classes" in e.value for e in app.error)
    app.text_input(key="upload_class_name_1").set_value("class 1")
    app.file_uploader(key="upload_class_files_1").set_value([("b.png", _png((0, 9, 9)), "image/png")])
    app.run()
    app.button(key="upload_create").click().run()
    assert any("same name" in e.value for e in app.error)
    assert "dataset_root" not in app.session_state


def test_classes_can_be_added_renamed_and_deleted(app):
    app.switch_page("pages/data.py").run()
    app.button(key="upload_add_class").click().run()
    assert [c["name"] for c in app.session_state["upload_classes"]] == ["class 1", "class 2", "class 3"]
    app.text_input(key="upload_class_name_2").set_value("zebra").run()
    assert app.session_state["upload_classes"][2]["name"] == "zebra"
    app.button(key="upload_class_delete_0").click().run()
    assert [c["name"] for c in app.session_state["upload_classes"]] == ["class 2", "zebra"]
    assert app.button(key="upload_class_delete_1").disabled  # Two classes are the minimum.


def test_camera_photos_are_added_to_their_class(app):
    app.switch_page("pages/data.py").run()
    app.toggle(key="upload_class_camera_on_0").set_value(True).run()
    app.camera_input(key="upload_class_camera_0").set_value(("photo.jpg", _jpeg(), "image/jpeg"))
    app.run()
    app.button(key="upload_class_camera_add_0").click().run()
    assert not app.exception, app.exception
    assert len(app.session_state["camera_photos"][0]) == 1


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_upload_skips_junk_and_unsafe_entries(app):
    entries = {f"cats/c{i}.png": _png((i * 40, 10, 10)) for i in range(4)}
    entries.update({f"dogs/d{i}.png": _png((10, 10, i * 40)) for i in range(4)})
    entries.update({"../evil.png": _png(), "__MACOSX/cats/._c0.png": b"junk", "dogs/readme.txt": b"text"})
    app.switch_page("pages/data.py").run()
    app.file_uploader(key="zip_file").set_value(("pets.zip", _zip(entries), "application/zip"))
    app.run()
    app.button(key="zip_create").click().run()
    assert not app.exception, app.exception
    assert any("is ready and active" in s.value for s in app.success), page_text(app)
    skipped = set(_table(app, "file", "reason")["file"])
    assert "../evil.png" in skipped and "dogs/readme.txt" in skipped
    assert app.session_state["dataset_root"].startswith(str(app.session_state["workspace"].root))


def test_server_folder_is_off_unless_the_operator_allows_it(app):
    app.switch_page("pages/data.py").run()
    assert any("TRANSFER_ALLOWED_DATA_DIRS" in i.value for i in app.info)
    assert not [b for b in app.button if b.key == "folder_create"]


def test_server_folder_outside_the_allowed_ones_is_refused(home, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    from ui import state

    allowed = tmp_path / "allowed"
    for label in ("a", "b"):
        (allowed / "set" / label).mkdir(parents=True)
        for i in range(3):
            (allowed / "set" / label / f"{i}.png").write_bytes(
                _png((i * 50, 0, 0) if label == "a" else (0, 0, i * 50))
            )
    monkeypatch.setenv("TRANSFER_ALLOWED_DATA_DIRS", str(allowed))
    state.settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=patience(60)).run()
    at.switch_page("pages/data.py").run()
    at.text_input(key="folder_path").set_value("/etc").run()
    at.button(key="folder_create").click().run()
    assert any("outside the folders this server allows" in e.value for e in at.error)
    at.text_input(key="folder_path").set_value(str(allowed / "set")).run()
    at.button(key="folder_create").click().run()
    assert not at.exception, at.exception
    assert any("is ready and active" in s.value for s in at.success), page_text(at)


def test_earlier_data_sets_can_be_switched_and_deleted(app):
    _demo(app)
    first = app.session_state["dataset_root"]
    app.button(key="demo_create").click().run()
    second = app.session_state["dataset_root"]
    assert first != second
    app.button(key=f"dataset_use_{os.path.basename(first)}").click().run()
    assert app.session_state["dataset_root"] == first
    app.button(key=f"dataset_delete_{os.path.basename(first)}").click().run()
    assert not os.path.exists(first)
    assert "dataset_root" not in app.session_state


def test_resplit_changes_the_validation_share(app):
    _demo(app)
    app.slider(key="split_val").set_value(0.5)
    app.button(key="split_apply").click().run()
    assert not app.exception, app.exception
    root = app.session_state["dataset_root"]
    with open(os.path.join(root, "dataset.json")) as handle:
        assert json.load(handle)["val_fraction"] == 0.5
    assert "20 val" in app.caption[0].value or any("20 val" in c.value for c in app.caption)


def _reloaded(at, page: str):
    """A new session (a reload, a new tab) on the same workspace, switched to ``page``."""
    from streamlit.testing.v1 import AppTest

    again = AppTest.from_file(APP, default_timeout=patience(120))
    again.query_params["ws"] = at.session_state["workspace"].workspace_id
    again.run()
    again.switch_page(page).run()
    assert not again.exception, again.exception
    return again


def _copies(at) -> list:
    return [image for image in at.image if "original" in image.captions]


@pytest.mark.slow
def test_augmentation_preview_shows_copies_and_a_reload_finds_them(app):
    _demo(app)
    app.button(key="aug_preview_button").click().run()
    assert not _copies(app)  # The click's run did not wait for the worker.
    again = _reloaded(app, "pages/data.py")  # A reload in the middle of the wait: the click is not lost.
    rerun_until(again, lambda page: bool(_copies(page)))
    assert len(_copies(again)[0].captions) == 8 and served("augmentation_preview") == 1
    rerun_until(app, lambda page: bool(_copies(page)))  # The first tab shows the same copies.
    assert served("augmentation_preview") == 1
    again.button(key="aug_preview_button").click().run()  # Another click: new copies, asked once more.
    rerun_until(again, lambda page: served("augmentation_preview") == 2 and bool(_copies(page)))


def _trainable(at) -> int:
    return int(next(m.value for m in at.metric if m.label == "Trainable parameters").replace(",", ""))


def test_model_page_freeze_controls_change_the_trainable_count(app):
    _demo(app)
    app.switch_page("pages/model.py").run(timeout=patience(120))
    assert not app.exception, app.exception
    app.selectbox(key="model_backbone").set_value("mobilenet_v2_0.35")
    app.selectbox(key="model_input_size").set_value(96)
    model_page_ready(app)
    app.radio(key="model_freeze_preset").set_value("feature_extraction").run()
    frozen = _trainable(app)
    assert frozen == 1280 * 4 + 4  # Only the head trains: 1280 features x 4 classes + biases.
    app.radio(key="model_freeze_preset").set_value("top_blocks").run()
    app.slider(key="model_top_blocks").set_value(1).run()
    one = _trainable(app)
    app.slider(key="model_top_blocks").set_value(3).run()
    three = _trainable(app)
    app.radio(key="model_freeze_preset").set_value("all_trainable").run()
    everything = _trainable(app)
    assert frozen < one < three < everything
    app.checkbox(key="model_train_bn").check().run()
    assert _trainable(app) > everything  # BatchNorm's scale and offset train too.
    plan = app.session_state["freeze_plan"]
    assert plan.mode == "all_trainable" and plan.train_batchnorm


def test_model_page_custom_blocks_from_the_table(app):
    model_page_ready(app.switch_page("pages/model.py"))
    app.radio(key="model_freeze_preset").set_value("custom").run()
    before = _trainable(app)
    app.session_state["model_custom_blocks"] = {
        "edited_rows": {2: {"train": True}},
        "added_rows": [],
        "deleted_rows": [],
    }
    app.run()
    assert not app.exception, app.exception
    plan = app.session_state["freeze_plan"]
    assert plan.mode == "custom" and len(plan.trainable_blocks) == 1
    assert _trainable(app) > before


def test_model_page_head_settings_are_kept(app):
    model_page_ready(app.switch_page("pages/model.py"))
    app.slider(key="model_dropout").set_value(0.5)
    app.selectbox(key="model_hidden_units").set_value(64)
    app.run()
    spec = app.session_state["model_spec"]
    assert spec.dropout_rate == 0.5 and spec.hidden_units == 64


@pytest.mark.slow
def test_model_page_before_transfer_shows_imagenet_guesses(app):
    if not (SHARED_WEIGHTS / "mobilenet_2_5_224_tf.h5").exists():
        pytest.skip("needs ../shared/weights/mobilenet_2_5_224_tf.h5")
    _demo(app)
    model_page_ready(app.switch_page("pages/model.py"))
    app.button(key="model_pretrained_run").click().run()
    assert not _guesses(app)  # The click's run did not wait for the worker.
    again = _reloaded(app, "pages/model.py")  # A reload in the middle of the wait: the same request.
    rerun_until(again, lambda page: bool(_guesses(page)))
    assert len(_guesses(again)) == 8 and served("imagenet_preview") == 1
    rerun_until(app, lambda page: _guesses(page) == _guesses(again))  # The first tab shows the same answer.
    assert served("imagenet_preview") == 1


def _guesses(at) -> list[str]:
    return [c for image in at.image for c in image.captions if c.startswith("your class: ")]


def test_a_session_over_its_disk_limit_cannot_add_data(home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui import state

    monkeypatch.setenv("TRANSFER_MAX_SESSION_DISK_MB", "1")
    state.settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=patience(60)).run()
    workspace = at.session_state["workspace"]
    (workspace.datasets_dir / "big.bin").write_bytes(b"\0" * 1_100_000)
    at.switch_page("pages/data.py").run()
    at.button(key="demo_create").click().run()
    assert any("already uses" in e.value for e in at.error)
    assert "dataset_root" not in at.session_state
