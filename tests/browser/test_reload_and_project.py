"""A newcomer's session survives a reload and a new tab, and travels as a project file, in a real browser.

Makes the demo data set and picks a backbone, reloads and opens the same address in a new tab
(the choices are there), then saves the project, opens a fresh session (a new ``?ws=``) and
opens the project file there (the data set and the run appear). Screenshots go to
``test-output/screenshots/``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from helpers.browser import (
    chromium_page,
    default_weights_dir,
    go,
    no_exception,
    require_browser,
    settle,
    shot,
)
from helpers.browser import streamlit_server as running_server
from helpers.patience import wait_ms
from helpers.runs import make_finished_run, tiny_config

from transfer_core.config import Settings
from transfer_core.data import load_dataset
from transfer_core.sessions.workspace import Workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BACKBONE = "MobileNet (alpha 0.25)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    with running_server(tmp_path_factory.mktemp("home"), weights_dir=default_weights_dir()) as running:
        yield running


def _sidebar(page) -> str:
    return page.locator('[data-testid="stSidebarUserContent"]').inner_text()


_SHOWN_JS = "e => e.innerText + ' ' + Array.from(e.querySelectorAll('input')).map(i => i.value).join(' ')"


def _first_selectbox(page) -> str:
    """What the first selectbox shows (its text, or the value of its search input)."""
    return page.locator('[data-testid="stSelectbox"]').first.evaluate(_SHOWN_JS)


def _selectboxes(page) -> str:
    return "\n".join(box.evaluate(_SHOWN_JS) for box in page.locator('[data-testid="stSelectbox"]').all())


def _workspace_id(page) -> str:
    return parse_qs(urlparse(page.url).query)["ws"][0]


def _finished_run_in(server, workspace_id: str) -> str:
    """A real tiny finished run in the browser's workspace (training through the UI is another test's job)."""
    settings = Settings(home=server.home)
    workspace = Workspace.open(settings, workspace_id)
    dataset = load_dataset(workspace.dataset_dirs()[0])
    run_dir, _ = make_finished_run(workspace.runs_dir, tiny_config(dataset, name="before saving"), settings)
    return run_dir.name


def test_reload_new_tab_and_project_file(server, tmp_path):
    with chromium_page(accept_downloads=True) as page:
        page.goto(server.url)
        page.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(page)
        go(page, "Data")
        page.get_by_role("button", name="Create the demo data set").click()
        page.get_by_role("heading", name="Active: demo").wait_for()
        settle(page)
        # The sidebar shows the data set the page just made, in the same script run.
        assert "demo: 4 classes, 160 images" in _sidebar(page), _sidebar(page)

        go(page, "Model")
        page.get_by_text("Trainable parameters").wait_for(timeout=wait_ms(120))
        page.locator('[data-testid="stSelectbox"]').first.click()
        page.keyboard.type("alpha 0.25")  # The selectbox filters its options as one types.
        page.get_by_role("option", name=BACKBONE).first.wait_for()
        page.keyboard.press("Enter")
        settle(page, wait_ms(120))
        page.get_by_text("Trainable parameters").wait_for(timeout=wait_ms(120))
        shot(page, "reload-model-chosen")
        # The sidebar follows the choice made on this page (waits, then fails if it never shows).
        page.locator('[data-testid="stSidebarUserContent"]').get_by_text(re.compile(r"mobilenet_0\.25")).wait_for(
            timeout=wait_ms(30)
        )
        workspace_id = _workspace_id(page)
        run_id = _finished_run_in(server, workspace_id)

        # A reload: a new Streamlit session on the same address.
        page.reload()
        page.get_by_role("heading", name="Model", exact=True).wait_for()
        settle(page, wait_ms(120))
        page.get_by_text("Trainable parameters").wait_for(timeout=wait_ms(120))
        assert BACKBONE in _first_selectbox(page)
        go(page, "Data")
        page.get_by_role("heading", name="Active: demo").wait_for()
        assert page.get_by_text("No data set yet").count() == 0
        go(page, "Train")
        assert page.get_by_text("Choose a data set first").count() == 0
        page.get_by_text(re.compile(r"Backbone:.*mobilenet_0\.25")).first.wait_for()
        no_exception(page)
        shot(page, "reload-train-after-reload")

        # A new tab on the same address.
        tab = page.context.new_page()
        tab.set_default_timeout(wait_ms(60))
        tab.goto(f"{server.url}/train?ws={workspace_id}")
        tab.get_by_role("heading", name="Train", exact=True).wait_for()
        settle(tab)
        assert tab.get_by_text("Choose a data set first").count() == 0
        assert "demo: 4 classes" in _sidebar(tab) and "mobilenet_0.25" in _sidebar(tab)
        tab.close()

        # Save the project.
        go(page, "Data")
        page.get_by_role("tab", name="Project file").click()
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Save the project").click()
        project = tmp_path / "lab-project.zip"
        download_info.value.save_as(project)
        assert download_info.value.suggested_filename == "transfer-lab-project.zip"

        # A fresh session (a new workspace), maybe on another server: open the project there.
        page.goto(server.url)
        page.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(page)
        assert _workspace_id(page) != workspace_id
        go(page, "Data")
        page.get_by_text("No data set yet").wait_for()
        page.get_by_role("tab", name="Project file").click()
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(str(project))
        settle(page)
        page.get_by_role("button", name="Open the project").click()
        page.get_by_text("Opened lab-project.zip: 1 data set(s) and 1 run(s) added.").wait_for()
        settle(page)
        page.get_by_role("tab", name="Project file").click()
        # The page redrew after opening: saving is possible now that the workspace holds something.
        assert page.get_by_role("button", name="Save the project").is_enabled()
        no_exception(page)
        shot(page, "project-opened-data")
        go(page, "Train")
        page.get_by_text("Your runs (1)").wait_for()
        assert run_id in _selectboxes(page)  # The "Run" picker under the runs table offers it.
        assert "demo: 4 classes, 160 images" in _sidebar(page) and "mobilenet_0.25" in _sidebar(page)
        no_exception(page)
        shot(page, "project-opened-train")
