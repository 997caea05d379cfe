"""AppTest of class assignments: the teacher publishes, a student starts and trains, the run is scored,
the leaderboard shows it, and no page a student sees names a hidden test image."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.runs import wait_for

from transfer_core.config import ModelSpec, Settings
from transfer_core.data import read_manifest
from transfer_core.sessions import assignments, leaderboard

TOKEN = "assignments-token"
STUDENT_PAGES = ["pages/home.py", "pages/data.py", "pages/model.py", "pages/train.py", "pages/compare.py",
                 "pages/explore.py", "pages/export.py"]


def _app(query: dict | None = None, timeout: float = 120):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=timeout)
    for name, value in (query or {}).items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _page_text(at) -> str:
    """Everything a page shows as text, tables included."""
    parts = [str(e.value) for kind in ("markdown", "caption", "text", "info", "success", "warning", "error",
                                       "code", "metric", "subheader", "title")
             for e in getattr(at, kind)]
    parts += [frame.value.to_csv() for frame in at.dataframe]
    parts += [str(option) for box in at.selectbox for option in box.options]
    return "\n".join(parts)


def _publish(home: Path) -> assignments.Assignment:
    teacher = _app({"teacher": TOKEN})
    teacher.switch_page("pages/data.py").run()
    teacher.slider(key="demo_per_class").set_value(10)
    teacher.select_slider(key="demo_image_size").set_value(32)
    teacher.button(key="demo_create").click().run()
    teacher.switch_page("pages/teacher.py").run()
    assert not teacher.exception, teacher.exception
    teacher.text_input(key="assignment_title").set_value("Shapes challenge")
    teacher.text_area(key="assignment_instructions").set_value("Get the best hidden test accuracy.")
    teacher.slider(key="assignment_hidden_share").set_value(0.3)
    teacher.multiselect(key="assignment_backbones").set_value(["mobilenet_v2_0.35"])
    teacher.button(key="assignment_publish").click().run()
    assert not teacher.exception, teacher.exception
    assert any("Published “Shapes challenge”" in s.value for s in teacher.success)
    [published] = assignments.list_assignments(Settings(home=home))
    assert published.limits.backbones == ("mobilenet_v2_0.35",)
    return published


@pytest.fixture
def class_home(home, monkeypatch):
    monkeypatch.setenv("TRANSFER_TEACHER_TOKEN", TOKEN)
    from ui import state

    state.settings.cache_clear()
    return home


def test_without_a_class_view_home_shows_no_assignments(home):
    at = _app()
    assert not [s for s in at.subheader if s.value == "Class assignments"]


@pytest.mark.slow
def test_teacher_publishes_student_starts_trains_is_scored_and_ranked(class_home):
    published = _publish(class_home)
    settings = Settings(home=class_home)

    student = _app()
    assert "Class assignments" in [s.value for s in student.subheader]
    assert any("Shapes challenge" in m.value for m in student.markdown)
    student.session_state["model_spec"] = ModelSpec(backbone="mobilenet_0.25", input_size=32, weights="random")
    student.text_input(key="home_nickname").set_value("Grace").run()
    student.button(key=f"assignment_start_{published.assignment_id}").click().run()
    assert not student.exception, student.exception
    assert [t.value for t in student.title] == ["Train"]
    root = student.session_state["dataset_root"]
    assert assignments.assignment_of_dataset(root) == published.assignment_id
    model = student.session_state["model_spec"]
    assert model.backbone == "mobilenet_v2_0.35"  # Moved to the one backbone the assignment allows.
    assert any("scored on its hidden test images" in c.value for c in student.caption)
    # A backbone the assignment does not allow is named on Train before Start, not only after the run.
    student.session_state["model_spec"] = ModelSpec(backbone="mobilenet_0.25", input_size=32, weights="random")
    student.run()
    assert any("will not be ranked" in w.value and "mobilenet_0.25 is not allowed" in w.value
               for w in student.warning), [w.value for w in student.warning]
    student.session_state["model_spec"] = ModelSpec(input_size=32, weights="random", dropout_rate=0.0)
    student.run()
    student.radio(key="train_strategy").set_value("feature_extraction")
    student.number_input(key="train_epochs").set_value(1)
    student.selectbox(key="train_batch_size").set_value(8)
    student.button(key="train_start").click().run()
    assert not student.exception, student.exception
    workspace_id = student.session_state["workspace"].workspace_id
    # The worker trains, writes the report, then scores the run on the hidden test split.
    assert wait_for(lambda: leaderboard.standing(settings, published.assignment_id, workspace_id).best is not None,
                    timeout=240, interval=1.0), "the run was not scored"

    student.switch_page("pages/home.py").run()
    assert not student.exception, student.exception
    [best] = [m.value for m in student.markdown if m.value.startswith("Your best:")]
    assert "rank 1 of 1" in best and f"on {published.hidden_images} hidden test images" in best

    teacher = _app({"teacher": TOKEN})
    teacher.switch_page("pages/teacher.py").run()
    assert not teacher.exception, teacher.exception
    board = teacher.dataframe[0].value  # The leaderboard comes first on the page.
    assert list(board["nickname"]) == ["Grace"] and list(board["backbone"]) == ["mobilenet_v2_0.35"]
    assert list(board["strategy"]) == ["feature_extraction"] and board["trainable_params"][0] > 0
    assert 0.0 <= board["score"][0] <= 1.0
    teacher.selectbox(key="assignment_sort").set_value("seconds").run()
    assert not teacher.exception, teacher.exception

    # No page the student sees names a hidden test image (by content hash or stored file name).
    hidden = read_manifest(assignments.hidden_dataset(settings, published.assignment_id))
    needles = set(hidden["sha256"]) | {Path(p).name for p in hidden["path"]} | {Path(p).stem for p in hidden["path"]}
    for page in STUDENT_PAGES:
        student.switch_page(page).run()
        assert not student.exception, (page, student.exception)
        text = _page_text(student)
        assert text, page
        leaks = [needle for needle in needles if needle in text]
        assert not leaks, f"{page} shows hidden test image(s) {leaks[:3]}"
