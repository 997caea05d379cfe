"""The main path in a real browser: open the app, try the demo, train, watch it live, see the result.

Starts ``streamlit run app.py`` on a free port with a private TRANSFER_HOME and
drives Debian's Chromium through Playwright. Saves a screenshot of every page
under ``test-output/screenshots/``.
"""

from __future__ import annotations

import time

import pytest
from helpers.browser import (
    chromium_page,
    default_weights_dir,
    go,
    require_browser,
    settle,
    shot,
    streamlit_server,
)
from helpers.patience import wait_ms

from transfer_core.runs import read_pid

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Finite y values of every plotly chart on the page, chart by chart.
_POINTS_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => (gd.data || []).reduce(
    (n, t) => n + (t.y ? Array.from(t.y).filter(v => v !== null && Number.isFinite(Number(v))).length : 0), 0))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running Transfer Lab with a private TRANSFER_HOME; yields its URL."""
    require_browser()
    # As a user runs it: with the app's standby worker (TensorFlow imported before the first click).
    with streamlit_server(tmp_path_factory.mktemp("home"), weights_dir=default_weights_dir(),
                          env={"TRANSFER_STANDBY_WORKER": "1"}) as running:
        yield running


@pytest.fixture(scope="module")
def browser_page(server):  # noqa: ARG001 - the page needs the server running.
    with chromium_page() as page:
        yield page


def test_demo_path_trains_live_and_shows_result(server, browser_page):
    page = browser_page
    started = time.time()
    page.goto(server.url)
    page.get_by_role("heading", name="Transfer Lab").wait_for()
    settle(page)
    shot(page, "01-home")

    page.get_by_role("button", name="Try the demo").click()
    page.get_by_role("button", name="Start training").wait_for()
    settle(page)
    page.get_by_text("Demo data set ready").wait_for()
    shot(page, "02-train-before")

    go(page, "Data")
    page.get_by_text("Images per class").first.wait_for()
    shot(page, "03-data")

    go(page, "Model")
    page.get_by_text("Trainable parameters").wait_for(timeout=wait_ms(90))
    settle(page)
    # The demo chose a backbone; keep it (the selectbox shows it).
    assert page.locator('[data-testid="stSelectbox"]').first.inner_text()
    shot(page, "04-model")

    go(page, "Train")
    # A run long enough that the live curves (redrawn every live.CURVES_POLL_SECONDS) are seen to grow
    # mid-run: on the cached prefix 60 fine-tuning epochs now take ~3 s in a warm worker, so augmentation
    # (which turns the caches off: every epoch sees new versions of the images) makes each epoch real work.
    fine_tune_epochs = page.get_by_role("spinbutton", name="Fine-tuning epochs")
    fine_tune_epochs.fill("60")
    fine_tune_epochs.press("Tab")
    page.get_by_test_id("stMultiSelect").filter(has_text="Augmentation").locator("input").click()
    page.get_by_role("option", name="flip", exact=True).click()
    page.keyboard.press("Escape")
    assert "flip" in page.get_by_test_id("stMultiSelect").filter(has_text="Augmentation").inner_text()
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("button", name="Stop").wait_for()
    clicked = time.time()

    samples: list[int] = []
    finished = page.get_by_text("Finished.", exact=True)
    while time.time() - clicked < 180:
        if finished.count():
            break
        try:
            counts = page.evaluate(_POINTS_JS)
        except Exception:  # noqa: BLE001 - the page may be mid-update.
            counts = []
        if counts:
            samples.append(sum(counts[:2]))  # The loss and accuracy per-epoch charts.
        if len(samples) == 4:
            shot(page, "05-train-live")
        page.wait_for_timeout(500)
    finished.wait_for(timeout=wait_ms(30))
    finished_at = time.time()
    # The standby worker the server started on the first page view trained the run: its process
    # existed before the run did (a fresh worker is started after the run's config.json is written).
    [run_dir] = [config.parent for config in (server.home / "workspaces").rglob("config.json")
                 if (config.parent / "worker.pid").exists()]
    _, worker_started = read_pid(run_dir)
    assert worker_started < (run_dir / "config.json").stat().st_mtime - 1.0
    settle(page)
    growth = sorted(set(samples))
    assert len(growth) >= 2 and growth[-1] > growth[0], f"the live charts never gained points: {samples}"
    page.get_by_text("Most confidently wrong (validation)").wait_for()
    assert page.locator(".js-plotly-plot").filter(has_text="Confusion matrix").count() == 1
    assert page.get_by_text("Validation accuracy").count() >= 1
    shot(page, "06-train-result")

    for title, name in (("Compare", "07-compare"), ("Explore", "08-explore"), ("Export", "09-export")):
        go(page, title)
        shot(page, name)
    go(page, "Home", heading="Transfer Lab")
    shot(page, "10-home-after")

    print(
        f"\ndemo path: {clicked - started:.1f} s of clicking, training shown finished "
        f"{finished_at - clicked:.1f} s after Start; live chart points seen: {growth}"
    )
