"""A class assignment in a real browser: the teacher publishes, a student starts it and trains, scores appear.

The teacher's data set is made through the core beforehand (uploading is test_main_path's job); the
student's session starts with a tiny model chosen (32 px, random weights) so training takes seconds.
"""

from __future__ import annotations

import pytest
from helpers.browser import (
    chromium_page,
    default_weights_dir,
    go,
    no_exception,
    require_browser,
    settle,
    shot,
    streamlit_server,
)
from helpers.models import TINY_MODEL
from helpers.patience import wait_ms

from transfer_core.config import Settings, TrainConfig
from transfer_core.sessions import assignments, leaderboard
from transfer_core.sessions.workspace import SessionChoices, Workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "assign-7c1d"


@pytest.fixture(scope="module")
def class_server(tmp_path_factory):
    from transfer_core.data import make_demo_dataset

    require_browser()
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    teacher = Workspace.open(settings)
    make_demo_dataset(teacher.new_dataset_dir("class shapes"), images_per_class=10, image_size=32)
    student = Workspace.open(settings)
    student.save_choices(SessionChoices(model=TINY_MODEL, train=TrainConfig(epochs=2, batch_size=8)))
    with streamlit_server(home, weights_dir=default_weights_dir(), env={"TRANSFER_TEACHER_TOKEN": TOKEN}) as server:
        yield server, settings, teacher, student


def test_teacher_publishes_a_student_trains_and_both_see_the_score(class_server):
    server, settings, teacher_ws, student_ws = class_server
    with chromium_page() as teacher:
        teacher.goto(f"{server.url}/?ws={teacher_ws.workspace_id}&teacher={TOKEN}")
        teacher.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(teacher)
        go(teacher, "Class view")
        teacher.get_by_label("Title").fill("Shapes challenge")
        teacher.get_by_label("Instructions").fill("Best hidden test accuracy wins.")
        teacher.get_by_role("button", name="Publish").click()
        teacher.get_by_text("Published “Shapes challenge”").wait_for()
        settle(teacher)
        no_exception(teacher)
        [published] = assignments.list_assignments(settings)

        student = teacher.context.new_page()
        student.goto(f"{server.url}/?ws={student_ws.workspace_id}")
        student.get_by_role("heading", name="Class assignments").wait_for()
        settle(student)
        student.get_by_text("Best hidden test accuracy wins.").wait_for()
        student.get_by_label("Your nickname (your teacher sees it next to your runs)").fill("Grace")
        student.get_by_label("Your nickname (your teacher sees it next to your runs)").press("Enter")
        settle(student)
        student.get_by_role("button", name="Start from its data").click()
        student.get_by_role("heading", name="Train", exact=True).wait_for()
        settle(student)
        student.get_by_text("its data is your active data set").wait_for()
        student.get_by_role("button", name="Start training").click()
        student.get_by_text("Finished.", exact=True).wait_for(timeout=wait_ms(180))
        no_exception(student)

        go(student, "Home", heading="Transfer Lab")
        # The worker scores the run just after it finishes: reload Home until the score is there.
        for _ in range(30):
            if student.get_by_text("Your best:").count():
                break
            student.wait_for_timeout(1000)
            student.reload()
            student.get_by_role("heading", name="Class assignments").wait_for()
            settle(student)
        student.get_by_text("rank 1 of 1").wait_for()
        shot(student, "assignment-student-home")
        no_exception(student)
        best = leaderboard.standing(settings, published.assignment_id, student_ws.workspace_id).best
        assert best is not None and best.ranked

        teacher.get_by_role("button", name="Refresh").click()
        settle(teacher)
        # The leaderboard (a canvas grid) replaces the empty notice once the Refresh's rerun is drawn.
        teacher.get_by_text("No ranked run yet").wait_for(state="detached", timeout=wait_ms(60))
        assert teacher.locator('[data-testid="stDataFrame"]').count() >= 2  # The leaderboard and every run.
        shot(teacher, "assignment-leaderboard")
        no_exception(teacher)
        assert leaderboard.leaderboard(settings, published.assignment_id)["nickname"].tolist() == ["Grace"]
