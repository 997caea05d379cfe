"""The class view in a real browser: two students with runs and nicknames, then the teacher with the token.

Runs are made through the core beforehand (training them in the browser is what test_main_path does);
the students set their nicknames in the page, the teacher opens ``?teacher=<token>``. A student who
opens the class view's address directly gets Home. Screenshots go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import pytest
from helpers.browser import (
    chromium_page,
    default_weights_dir,
    no_exception,
    require_browser,
    settle,
    shot,
    streamlit_server,
)
from helpers.runs import make_finished_run, tiny_config

from transfer_core.config import Settings
from transfer_core.sessions import classroom
from transfer_core.sessions.workspace import Workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "teach-3f9a"


@pytest.fixture(scope="module")
def class_server(tmp_path_factory):
    """A server whose TRANSFER_HOME holds two student workspaces with finished runs."""
    from transfer_core.data import make_demo_dataset

    require_browser()
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    students = []
    for name, strategies in (("ada", ("feature_extraction", "fine_tuning")), ("bo", ("from_scratch",))):
        workspace = Workspace.open(settings)
        data = make_demo_dataset(workspace.new_dataset_dir(f"{name} shapes"), images_per_class=8, image_size=32)
        for strategy in strategies:
            make_finished_run(workspace.runs_dir, tiny_config(data, strategy=strategy, epochs=2, fine_tune_epochs=1),
                              settings)
        students.append(workspace)
    with streamlit_server(home, weights_dir=default_weights_dir(), env={"TRANSFER_TEACHER_TOKEN": TOKEN}) as server:
        yield server, students


def _set_nickname(page, url: str, nickname: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name="Transfer Lab").wait_for()
    settle(page)
    box = page.get_by_label("Your nickname (your teacher sees it next to your runs)")
    box.fill(nickname)
    box.press("Enter")
    settle(page)


def test_teacher_sees_both_students_runs(class_server):
    server, (ada, bo) = class_server
    with chromium_page() as ada_page:
        bo_page = ada_page.context.new_page()
        _set_nickname(ada_page, f"{server.url}/?ws={ada.workspace_id}", "Ada")
        _set_nickname(bo_page, f"{server.url}/?ws={bo.workspace_id}", "Bo")
        assert classroom.read_nickname(ada.root) == "Ada" and classroom.read_nickname(bo.root) == "Bo"
        # Students have no class view: not in the sidebar, and its address opens Home.
        assert ada_page.locator('[data-testid="stSidebarNavLink"]', has_text="Class view").count() == 0
        bo_page.goto(f"{server.url}/teacher?ws={bo.workspace_id}")
        bo_page.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(bo_page)
        assert bo_page.get_by_role("heading", name="Class view").count() == 0
        wrong = ada_page.context.new_page()
        wrong.goto(f"{server.url}/?teacher=guess")
        wrong.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(wrong)
        assert wrong.locator('[data-testid="stSidebarNavLink"]', has_text="Class view").count() == 0

        teacher = ada_page.context.new_page()
        teacher.goto(f"{server.url}/?teacher={TOKEN}")
        teacher.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(teacher)
        assert "teacher=" not in teacher.url
        teacher.locator('[data-testid="stSidebarNavLink"]', has_text="Class view").first.click()
        teacher.get_by_role("heading", name="Class view", exact=True).wait_for()
        settle(teacher)
        teacher.get_by_text("3 finished runs").wait_for()
        table = teacher.locator('[data-testid="stDataFrame"]').first
        table.wait_for()
        teacher.locator(".js-plotly-plot").nth(2).wait_for()  # The scatter, one run's loss and accuracy.
        settle(teacher)
        shot(teacher, "teacher-class-view")
        no_exception(teacher)
        assert teacher.locator(".js-plotly-plot").count() == 3
        assert teacher.locator(".js-plotly-plot").filter(has_text="trainable parameters").count() == 1
        # The table is a canvas grid (no text to read); the run picker names the runs, newest session first.
        html = teacher.content()
        assert "Ada · " in html or "Bo · " in html
