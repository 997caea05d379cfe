"""An inference request is never lost: the learning-rate finder under a CPU hog, with a reload mid-wait.

A busy machine once made the finder's answer never come (the page waited inside its script run, and a
rerun lost the request). Here every core is kept busy at normal priority by processes this test starts,
the page is reloaded while the worker computes, and the answer must still appear, computed once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.browser import (
    chromium_page,
    click_until_shown,
    go,
    no_exception,
    require_browser,
    settle,
    streamlit_server,
)
from helpers.patience import wait_ms
from helpers.workspaces import finished_workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ANSWER = "The loss fell fastest at a learning rate of about"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return finished_workspace(tmp_path_factory, home_name="reload-home", images_per_class=16, image_size=96,
                              epochs=2, fine_tune_epochs=1, batch_size=16, name="reload browser")


@pytest.fixture
def cpu_hog():
    """One busy-looping process per core, at normal priority, for the length of the test."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield hogs
    finally:
        for hog in hogs:  # Only the processes started here.
            hog.kill()
            hog.wait(10)


def _served(home: Path, task: str) -> int:
    """Requests of ``task`` the inference workers under ``home`` ran (one ``served`` line each in worker.log)."""
    return sum(1 for log in (home / "inference").glob("*/worker.log")
               for line in log.read_text(errors="replace").splitlines() if line.startswith(f"served {task} "))


def test_the_finders_answer_survives_a_reload_under_a_cpu_hog_and_runs_once(prepared, cpu_hog):
    require_browser()
    with streamlit_server(prepared.home, weights_dir=prepared.weights_dir) as server, chromium_page() as page:
        page.goto(f"{server.url}/?ws={prepared.workspace.workspace_id}")
        page.get_by_role("heading", name="Transfer Lab").wait_for(timeout=wait_ms(120))
        settle(page, wait_ms(120))
        go(page, "Data", timeout=wait_ms(120))
        use = page.get_by_role("button", name="Use")
        if use.count():
            use.first.click()
            settle(page, wait_ms(120))
        go(page, "Compare", timeout=wait_ms(120))
        page.get_by_text("Find a learning rate").click()
        pending = page.get_by_text("Sweeping learning rates...")
        click_until_shown(page.get_by_role("button", name="Run the learning-rate finder"), pending)
        pending.first.wait_for(timeout=wait_ms(120))  # Pending: the worker has it.
        assert _served(Path(prepared.home), "lr_find") == 0

        page.reload()  # Mid-wait: a new session on the same workspace, nothing clicked.
        page.get_by_role("heading", name="Compare", exact=True).first.wait_for(timeout=wait_ms(120))
        page.get_by_text("Find a learning rate").click()
        page.get_by_text(ANSWER).first.wait_for(timeout=wait_ms(600))
        no_exception(page)
    assert _served(Path(prepared.home), "lr_find") == 1
