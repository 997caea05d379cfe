"""Transfer Lab in a real browser: start ``streamlit run app.py`` on a free port, launch Chromium, drive pages.

Used by the browser tests, the many-users reliability test and ``bench/bench_app_overhead.py``. Nothing here
needs pytest (only :func:`require_browser` imports it) and Playwright is imported only when a browser starts,
so the bench can use it with ``sys.path.insert(0, "<repo>/tests")`` and ``from helpers.browser import ...``.

    with streamlit_server(home, weights_dir=default_weights_dir()) as server, chromium_page() as page:
        page.goto(server.url)
        settle(page)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.patience import wait_ms

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


class ServerStartError(RuntimeError):
    """The Streamlit server exited or did not answer its health check in time (the message has its log)."""


@dataclass(frozen=True)
class RunningServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    home: Path  # its TRANSFER_HOME
    log_path: Path  # its stdout and stderr
    process: subprocess.Popen

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_weights_dir() -> Path | None:
    """``../shared/weights`` when present (what the tests use offline), else None."""
    return SHARED_WEIGHTS if SHARED_WEIGHTS.exists() else None


def browser_missing_reason() -> str | None:
    """Why a browser cannot start here (no Chromium, no playwright package), or None when it can."""
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM} (install Debian's chromium or set TRANSFER_CHROMIUM)."
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


def require_browser() -> None:
    """In a pytest test or fixture: skip, with the reason, when no browser can start."""
    import pytest

    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)


@contextmanager
def streamlit_server(
    home: Path,
    *,
    weights_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    drop_env: Iterable[str] = (),
    log_path: Path | None = None,
    start_timeout: float = 60.0,
) -> Iterator[RunningServer]:
    """Run ``streamlit run app.py`` from the repository root on a free local port until the block ends.

    The server gets this process's environment plus TRANSFER_HOME=home, TRANSFER_OFFLINE=1,
    TF_CPP_MIN_LOG_LEVEL=2, TRANSFER_WEIGHTS_DIR=weights_dir (when given; otherwise whatever the
    environment holds) and ``env`` (last, so it wins); the names in ``drop_env`` are removed.
    Its output goes to ``log_path`` (default ``home/streamlit.log``). Yields once ``/_stcore/health``
    answers 200; raises :class:`ServerStartError` with the log's tail when the server exits first or
    ``start_timeout`` seconds pass. On exit the whole process group gets SIGTERM, then SIGKILL after 15 s.
    """
    home = Path(home)
    log_path = Path(log_path) if log_path else home / "streamlit.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server_env = {**os.environ, "TRANSFER_HOME": str(home), "TRANSFER_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if weights_dir is not None:
        server_env["TRANSFER_WEIGHTS_DIR"] = str(weights_dir)
    server_env.update(env or {})
    for name in drop_env:
        server_env.pop(name, None)
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = RunningServer(url=f"http://127.0.0.1:{port}", home=home, log_path=log_path, process=process)
    try:
        _wait_until_healthy(server, start_timeout)
        yield server
    finally:
        _stop(process)


def _wait_until_healthy(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if server.process.poll() is not None:
            raise ServerStartError(f"streamlit exited with code {server.process.returncode}:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise ServerStartError(f"streamlit did not answer within {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.5)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it started a session of its own), SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@contextmanager
def chromium(args: Iterable[str] = CHROMIUM_ARGS) -> Iterator[Any]:
    """A headless Playwright ``Browser`` on Debian's Chromium (``$TRANSFER_CHROMIUM``), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(args))
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000, timeout_ms: int | None = None,
                  **context_options) -> Iterator[Any]:
    """One Playwright ``Page`` in a fresh context of :func:`chromium` (``context_options``, e.g.
    ``accept_downloads=True``, go to ``Browser.new_context``); its default timeout is ``timeout_ms``,
    else :func:`~helpers.patience.wait_ms` of 60 s."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": width, "height": height}, **context_options)
        try:
            page = context.new_page()
            page.set_default_timeout(timeout_ms or wait_ms(60))
            yield page
        finally:
            context.close()


# ----- driving a Streamlit page ------------------------------------------------------------------------------

_STILL_RUNNING_JS = (
    "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
    " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')"
)

_CONTENT_HEIGHT_JS = """
() => Math.max(document.body.scrollHeight, ...Array.from(document.querySelectorAll('*'))
    .filter(e => e.scrollHeight > e.clientHeight + 5 && getComputedStyle(e).overflowY !== 'visible')
    .map(e => e.scrollHeight))
"""


def settle(page, timeout: int | None = None) -> None:
    """Wait until Streamlit finished the current script run (its status widget no longer says Running);
    ``timeout`` in ms, else :func:`~helpers.patience.wait_ms` of 60 s."""
    page.wait_for_timeout(300)
    page.wait_for_function(_STILL_RUNNING_JS, timeout=timeout or wait_ms(60))
    page.wait_for_timeout(300)


def go(page, title: str, heading: str | None = None, timeout: int | None = None) -> None:
    """Open a page from the sidebar and wait for its heading (``title`` unless given) and its script run."""
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
    page.get_by_role("heading", name=heading or title, exact=True).first.wait_for()
    settle(page, timeout)


def click_until_shown(button, shown, seconds: float = 30) -> None:
    """Click ``button`` and wait (:func:`~helpers.patience.wait_ms` of ``seconds``) for the locator ``shown``;
    click once more if it did not appear. Under load a click can land while the page reruns and never
    reach the server (seen in CI: no request reached the worker); a second click of a request identified
    by its inputs follows the first one, it never starts it twice."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    button.click()
    with suppress(PlaywrightTimeoutError):
        shown.first.wait_for(timeout=wait_ms(seconds))
    if not shown.count():
        button.click()


def no_exception(page) -> None:
    """Fail with the traceback text when the page shows a Streamlit exception box."""
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


def shot(page, name: str, max_height: int = 8000, relayout_ms: int = 800) -> None:
    """Screenshot of the whole page to ``test-output/screenshots/<name>.png``.

    Streamlit scrolls inside a container, so the viewport grows to the content's height (at most
    ``max_height``) for the picture and is put back afterwards.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size
    height = min(int(page.evaluate(_CONTENT_HEIGHT_JS)) + 40, max_height)
    page.set_viewport_size({"width": viewport["width"], "height": max(height, viewport["height"])})
    page.wait_for_timeout(relayout_ms)  # Let charts re-layout at the new size.
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(viewport)
