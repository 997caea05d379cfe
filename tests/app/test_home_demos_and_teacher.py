"""Home's two demos (generated, real photos) and the teacher's class view behind TRANSFER_TEACHER_TOKEN."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from helpers.patience import patience
from helpers.runs import make_finished_run, tiny_config
from helpers.workspaces import APP, app_environment, finished_workspace

from transfer_core.config import Settings
from transfer_core.data import load_dataset, photo_demo, read_manifest
from transfer_core.sessions import classroom
from transfer_core.sessions.workspace import Workspace

TOKEN = "class-7b-secret"


def _app(query: dict | None = None, timeout: float = 60):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _titles(at) -> list[str]:
    return [t.value for t in at.title]


# ----- the real-photo demo -----------------------------------------------------------------------


def test_real_photo_demo_from_the_demo_folder_reaches_train(home, hymenoptera_dir, monkeypatch):
    monkeypatch.setenv("TRANSFER_DEMO_DIR", str(hymenoptera_dir))
    at = _app()
    assert at.button(key="home_try_demo") and at.button(key="home_try_photos")
    at.button(key="home_try_photos").click().run(timeout=patience(180))
    assert not at.exception, at.exception
    assert _titles(at) == ["Train"]
    assert any("Ants-and-bees photos ready" in s.value for s in at.success)
    assert at.session_state["model_spec"].backbone == "mobilenet_v2_0.35"
    spec = load_dataset(at.session_state["dataset_root"])
    assert spec.class_names == ("ants", "bees") and Path(spec.root).name.startswith("ants-and-bees-")
    counts = read_manifest(spec)["split"].value_counts().to_dict()  # The photos' own train/val split is kept.
    assert counts["train"] > 200 and counts["val"] > 100 and set(counts) == {"train", "val"}


def test_real_photo_demo_offline_says_how_to_provide_the_photos(home, monkeypatch):
    monkeypatch.delenv("TRANSFER_DEMO_DIR", raising=False)
    with socket.socket() as sock:  # A port nobody listens on: the download is refused, as offline.
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setattr(photo_demo, "PHOTO_DEMO_URL", f"http://127.0.0.1:{sock.getsockname()[1]}/x.zip")
    at = _app()
    at.button(key="home_try_photos").click().run()
    assert not at.exception, at.exception
    assert _titles(at) == ["Transfer Lab"]
    [error] = at.error
    assert "no internet" in error.value and "TRANSFER_DEMO_DIR" in error.value
    assert "dataset_root" not in at.session_state


# ----- the class view ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classroom_home(tmp_path_factory):
    """One session with a feature-extraction and a fine-tuning run (nickname Ada), one with a run (no name)."""
    finished = finished_workspace(tmp_path_factory)
    settings = Settings(home=finished.home)
    other = Workspace.open(settings)
    make_finished_run(other.runs_dir, tiny_config(finished.dataset, strategy="feature_extraction", epochs=1),
                      settings)
    classroom.save_nickname(finished.workspace.root, "Ada")
    return finished


@pytest.fixture
def class_env(classroom_home, monkeypatch):
    with app_environment(classroom_home) as finished:
        monkeypatch.setenv("TRANSFER_TEACHER_TOKEN", TOKEN)
        yield finished


def test_teacher_sees_every_sessions_runs_and_one_runs_curves(class_env):
    at = _app({"teacher": TOKEN}, timeout=120)
    assert at.session_state["teacher_view"] is True
    assert "teacher" not in at.query_params  # Remembered in the session, not left in the address bar.
    at.switch_page("pages/teacher.py").run()
    assert not at.exception, at.exception
    assert _titles(at) == ["Class view"]
    [frame] = at.dataframe
    table = frame.value
    assert len(table) == 3
    assert sorted(table["nickname"]) == ["(no nickname)", "Ada", "Ada"]
    assert set(table["strategy"]) == {"feature_extraction", "fine_tuning"}
    assert "workspace_id" not in table.columns
    assert "test_accuracy" not in table.columns  # No data set here has a test split.
    assert any("3 finished runs** from 2 sessions" in m.value for m in at.markdown)
    # The queue setting, explained with what this server measured (or saying nothing is measured yet).
    [queue_text] = [m.value for m in at.markdown if "run(s) at a time" in m.value]
    assert "**1 run(s) at a time** (`TRANSFER_MAX_CONCURRENT_RUNS`)" in queue_text
    assert "took a median of" in queue_text or "No run has finished on this server yet" in queue_text
    selector = at.selectbox(key="teacher_run")
    assert len(selector.options) == 3
    selector.select_index(2).run()
    assert not at.exception, at.exception
    # Another page and back: still the teacher (session state), without the token in the URL.
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/teacher.py").run()
    assert _titles(at) == ["Class view"]


@pytest.mark.parametrize("query", [{}, {"teacher": "wrong"}, {"teacher": TOKEN[:-1]}])
def test_without_the_token_the_class_view_does_not_exist(class_env, query):
    at = _app(query, timeout=120)
    assert "teacher_view" not in at.session_state
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("pages/teacher.py")  # Not registered in this session's navigation at all.
    assert not at.dataframe and _titles(at) == ["Transfer Lab"]


def test_without_a_configured_token_nobody_gets_the_class_view(classroom_home, monkeypatch):
    with app_environment(classroom_home):
        monkeypatch.delenv("TRANSFER_TEACHER_TOKEN", raising=False)
        at = _app({"teacher": ""})
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page("pages/teacher.py")
        assert not [t for t in at.text_input if t.key == "home_nickname"]  # No class view: no nickname asked.


def test_student_nickname_is_saved_in_the_workspace(class_env):
    at = _app({"ws": class_env.workspace.workspace_id})
    nickname = at.text_input(key="home_nickname")
    assert nickname.value == "Ada"
    nickname.set_value("Ada  Lovelace").run()
    assert not at.exception, at.exception
    assert classroom.read_nickname(class_env.workspace.root) == "Ada Lovelace"
    classroom.save_nickname(class_env.workspace.root, "Ada")
