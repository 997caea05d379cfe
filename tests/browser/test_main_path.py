"""The main path in a real browser: open the app, try the demo, train, watch it live, see the result.

Starts ``streamlit run app.py`` on a free port with a private TRANSFER_HOME and
drives Debian's Chromium through Playwright. Saves a screenshot of every page
under ``test-output/screenshots/``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TRANSFER_CHROMIUM", "/usr/bin/chromium"))
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Finite y values of every plotly chart on the page, chart by chart.
_POINTS_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => (gd.data || []).reduce(
    (n, t) => n + (t.y ? Array.from(t.y).filter(v => v !== null && Number.isFinite(Number(v))).length : 0), 0))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running Transfer Lab; yields its URL."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (install Debian's chromium or set TRANSFER_CHROMIUM).")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    home = tmp_path_factory.mktemp("home")
    port = _free_port()
    env = {**os.environ, "TRANSFER_HOME": str(home), "TRANSFER_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if SHARED_WEIGHTS.exists():
        env["TRANSFER_WEIGHTS_DIR"] = str(SHARED_WEIGHTS)
    log_path = home / "streamlit.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.headless",
                "true",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def browser_page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def _settle(page) -> None:
    """Wait until Streamlit finished the current script run."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=60_000,
    )
    page.wait_for_timeout(300)


_CONTENT_HEIGHT_JS = """
() => Math.max(document.body.scrollHeight, ...Array.from(document.querySelectorAll('*'))
    .filter(e => e.scrollHeight > e.clientHeight + 5 && getComputedStyle(e).overflowY !== 'visible')
    .map(e => e.scrollHeight))
"""


def _shot(page, name: str) -> None:
    """Screenshot of the whole page (Streamlit scrolls inside a container, so grow the viewport)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size
    height = min(int(page.evaluate(_CONTENT_HEIGHT_JS)) + 40, 8000)
    page.set_viewport_size({"width": viewport["width"], "height": max(height, viewport["height"])})
    page.wait_for_timeout(800)  # Let charts re-layout at the new size.
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(viewport)


def _go(page, title: str, heading: str | None = None) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
    page.get_by_role("heading", name=heading or title, exact=True).first.wait_for()
    _settle(page)


def test_demo_path_trains_live_and_shows_result(server, browser_page):
    page = browser_page
    started = time.time()
    page.goto(server)
    page.get_by_role("heading", name="Transfer Lab").wait_for()
    _settle(page)
    _shot(page, "01-home")

    page.get_by_role("button", name="Try the demo").click()
    page.get_by_role("button", name="Start training").wait_for()
    _settle(page)
    page.get_by_text("Demo data set ready").wait_for()
    _shot(page, "02-train-before")

    _go(page, "Data")
    page.get_by_text("Images per class").first.wait_for()
    _shot(page, "03-data")

    _go(page, "Model")
    page.get_by_text("Trainable parameters").wait_for(timeout=90_000)
    _settle(page)
    # The demo chose a backbone; keep it (the selectbox shows it).
    assert page.locator('[data-testid="stSelectbox"]').first.inner_text()
    _shot(page, "04-model")

    _go(page, "Train")
    # Enough fine-tuning epochs that the live view is seen mid-run (epochs on cached inputs are fast).
    fine_tune_epochs = page.get_by_role("spinbutton", name="Fine-tuning epochs")
    fine_tune_epochs.fill("40")
    fine_tune_epochs.press("Tab")
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
            _shot(page, "05-train-live")
        page.wait_for_timeout(500)
    finished.wait_for(timeout=30_000)
    finished_at = time.time()
    _settle(page)
    growth = sorted(set(samples))
    assert len(growth) >= 2 and growth[-1] > growth[0], f"the live charts never gained points: {samples}"
    page.get_by_text("Most confidently wrong (validation)").wait_for()
    assert page.locator(".js-plotly-plot").filter(has_text="Confusion matrix").count() == 1
    assert page.get_by_text("Validation accuracy").count() >= 1
    _shot(page, "06-train-result")

    for title, name in (("Compare", "07-compare"), ("Explore", "08-explore"), ("Export", "09-export")):
        _go(page, title)
        _shot(page, name)
    _go(page, "Home", heading="Transfer Lab")
    _shot(page, "10-home-after")

    print(
        f"\ndemo path: {clicked - started:.1f} s of clicking, training shown finished "
        f"{finished_at - clicked:.1f} s after Start; live chart points seen: {growth}"
    )
