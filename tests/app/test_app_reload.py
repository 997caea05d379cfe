"""A reload or a new tab on the same ?ws= address keeps the choices; the sidebar shows the state after the page."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from helpers.apptest import page_text
from helpers.patience import patience
from helpers.workspaces import model_page_ready
from PIL import Image
from streamlit.testing.v1 import AppTest

from transfer_core.config import Settings
from transfer_core.sessions.workspace import CHOICES_FILE, SessionChoices, Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")


def _open(workspace_id: str, page: str | None = None) -> AppTest:
    """A new session (a reload, a new tab) on ``?ws=<workspace_id>``, optionally switched to ``page``."""
    at = AppTest.from_file(APP, default_timeout=patience(120))
    at.query_params["ws"] = workspace_id
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def _sidebar_text(at) -> str:
    return "\n".join(str(c.value) for c in at.sidebar.caption)


def _sidebar_script():
    """The router's sidebar wiring (app.py) around a page whose action makes a data set.

    AppTest runs a page file without the router after a page switch (and so shows no
    sidebar there); this script keeps the router's order on one page.
    """
    import streamlit as st

    from ui import state, widgets

    state.workspace()
    draw_sidebar = widgets.sidebar_status_slot()
    draw_sidebar(False)
    state.on_choices_changed(draw_sidebar)
    if st.button("Create", key="make"):
        widgets.create_demo_dataset(10, 32)
    st.stop()  # As the Data page does while it has no data set; the sidebar must be right anyway.


def test_sidebar_shows_the_data_set_made_by_the_page_itself(home):
    at = AppTest.from_function(_sidebar_script, default_timeout=patience(60))
    at.run()
    assert "none yet" in _sidebar_text(at)
    at.button(key="make").click().run()
    assert not at.exception, at.exception
    sidebar = _sidebar_text(at)
    assert "demo: 4 classes, 40 images" in sidebar and "none yet" not in sidebar, sidebar


def test_router_draws_the_sidebar_after_the_page():
    """app.py draws the sidebar last, after ``page.run()`` (and before it, for pages that stop early)."""
    source = Path(APP).read_text()
    assert source.index("page.run()") < source.rindex("draw_sidebar(True)")


def test_reload_restores_data_set_backbone_and_freeze_plan(app):
    at = app
    ws = at.session_state["workspace"]
    at.switch_page("pages/data.py").run()
    at.slider(key="demo_per_class").set_value(10)
    at.select_slider(key="demo_image_size").set_value(32)
    at.button(key="demo_create").click().run()
    at.switch_page("pages/model.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="model_backbone").set_value("mobilenet_0.25").run()
    at.selectbox(key="model_input_size").set_value(128)
    model_page_ready(at)
    at.radio(key="model_freeze_preset").set_value("top_blocks").run()
    at.slider(key="model_top_blocks").set_value(3).run()
    assert not at.exception, at.exception
    saved = json.loads((ws.root / CHOICES_FILE).read_text())
    assert saved["model"]["backbone"] == "mobilenet_0.25" and saved["freeze"]["top_blocks"] == 3

    data = _open(ws.workspace_id, "pages/data.py")
    texts = page_text(data)
    assert "No data set yet" not in texts and "Active: demo" in texts
    train = _open(ws.workspace_id, "pages/train.py")
    texts = page_text(train)
    assert "Choose a data set first" not in texts
    assert "mobilenet_0.25 at 128px" in texts and "top 3 blocks" in texts.lower(), texts
    model = _open(ws.workspace_id, "pages/model.py")
    assert model.selectbox(key="model_backbone").value == "mobilenet_0.25"
    assert model.selectbox(key="model_input_size").value == 128
    assert model.slider(key="model_top_blocks").value == 3
    home = _open(ws.workspace_id)
    assert "mobilenet_0.25, 128px" in _sidebar_text(home)


def test_train_settings_are_restored_after_start(app, monkeypatch):
    """The Train form's values come back in a new tab (saved when a run is started)."""
    at = app
    ws = at.session_state["workspace"]
    at.switch_page("pages/data.py").run()
    at.slider(key="demo_per_class").set_value(10)
    at.select_slider(key="demo_image_size").set_value(32)
    at.button(key="demo_create").click().run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="train_epochs").set_value(3)
    at.number_input(key="train_seed").set_value(42)
    # Over the quota: the settings are kept, but no run starts (so no worker is needed here).
    monkeypatch.setenv("TRANSFER_MAX_SESSION_DISK_MB", "1")
    (ws.root / "earlier-upload.bin").write_bytes(b"\1" * 1_500_000)
    from ui import state

    state.settings.cache_clear()
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert "Cannot start" in "\n".join(e.value for e in at.error)
    monkeypatch.delenv("TRANSFER_MAX_SESSION_DISK_MB")
    state.settings.cache_clear()
    train = _open(ws.workspace_id, "pages/train.py")
    assert train.number_input(key="train_epochs").value == 3
    assert train.number_input(key="train_seed").value == 42


def test_a_damaged_choices_file_warns_and_the_app_still_works(home):
    workspace = Workspace.open(Settings(home=home))
    (workspace.root / CHOICES_FILE).write_text("{broken")
    at = _open(workspace.workspace_id, "pages/data.py")
    assert "saved choices were reset" in page_text(at)
    assert "No data set yet" in page_text(at)


def test_zip_data_set_is_named_after_the_file(app):
    at = app
    at.switch_page("pages/data.py").run()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for label, color in (("cats", (200, 30, 30)), ("dogs", (20, 30, 200))):
            for index in range(3):
                image = io.BytesIO()
                Image.new("RGB", (40, 40), tuple(c + 10 * index for c in color)).save(image, format="PNG")
                archive.writestr(f"{label}/{index}.png", image.getvalue())
    at.file_uploader(key="zip_file").set_value(("my_photos.zip", buffer.getvalue(), "application/zip")).run()
    at.button(key="zip_create").click().run()
    assert not at.exception, at.exception
    assert "Data set **my_photos** is ready" in page_text(at)
    assert at.header[0].value == "Active: my_photos"


def test_project_saved_elsewhere_opens_on_the_data_page(app, tmp_path):
    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions.project_file import export_project

    source = Workspace.open(Settings(home=tmp_path / "other-server"))
    made = make_demo_dataset(source.new_dataset_dir("birds"), images_per_class=10, image_size=32)
    source.save_choices(SessionChoices(dataset=Path(made.root).name))
    at = app
    at.switch_page("pages/data.py").run()
    at.file_uploader(key="project_file").set_value(("lab.zip", export_project(source), "application/zip")).run()
    at.button(key="project_open").click().run()
    assert not at.exception, at.exception
    assert "Opened lab.zip: 1 data set(s) and 0 run(s) added." in page_text(at)
    assert "Active: birds" in page_text(at)  # The project's choices are this session's now.


def test_a_hostile_project_file_is_refused_on_the_data_page(app):
    at = app
    at.switch_page("pages/data.py").run()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("project.json", json.dumps({"format": "transfer-lab-project", "version": 1,
                                                     "datasets": ["d"], "runs": []}))
        archive.writestr("datasets/d/../../../evil.txt", "x")
    at.file_uploader(key="project_file").set_value(("evil.zip", buffer.getvalue(), "application/zip")).run()
    at.button(key="project_open").click().run()
    assert not at.exception, at.exception
    errors = "\n".join(e.value for e in at.error)
    assert "Could not open the project: evil.zip was refused" in errors and "'..'" in errors
