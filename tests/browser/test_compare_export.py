"""Compare, Explore and Export in a real browser; the downloaded .keras file predicts like the run's model.

Starts ``streamlit run app.py`` with a private TRANSFER_HOME that already holds a workspace with the demo
data set and two finished runs (made through the core), opens the app with ``?ws=<id>``, and drives
Debian's Chromium through Playwright. Screenshots go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TRANSFER_CHROMIUM", "/usr/bin/chromium"))
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"
PRETRAINED_FILE = SHARED_WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
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

# Loads a .keras file in a fresh interpreter (no transfer_core import) and writes its top-1 classes.
_PREDICT_IN_FRESH_PROCESS = """
import json, sys
import numpy as np
import keras
model = keras.saving.load_model(sys.argv[1], safe_mode=True, compile=False)
images = np.load(sys.argv[2])
probabilities = model.predict(images, verbose=0)
json.dump({"top1": probabilities.argmax(axis=1).tolist(), "probabilities": probabilities.tolist()},
          open(sys.argv[3], "w"))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """TRANSFER_HOME with a workspace, the demo data set and a feature-extraction and a fine-tuning run."""
    from run_factory import make_finished_run, tiny_config

    from transfer_core import compare
    from transfer_core.config import ModelSpec, Settings
    from transfer_core.data import make_demo_dataset
    from transfer_core.workspace import Workspace

    home = tmp_path_factory.mktemp("browser-home")
    pretrained = PRETRAINED_FILE.is_file()
    settings = Settings(home=home, weights_dir=SHARED_WEIGHTS if pretrained else None)
    workspace = Workspace.open(settings)
    dataset = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=16, image_size=96)
    model = ModelSpec(input_size=96, weights="imagenet" if pretrained else "random")
    run_dirs = []
    for strategy in ("feature_extraction", "fine_tuning"):
        config = tiny_config(dataset, model=model, strategy=strategy, epochs=4, fine_tune_epochs=2, batch_size=16,
                             name=f"compare browser: {compare.STRATEGY_LABELS[strategy]}")
        run_dirs.append(make_finished_run(workspace.runs_dir, config, settings)[0])
    return {"home": home, "workspace": workspace, "dataset": dataset, "run_dirs": run_dirs,
            "pretrained": pretrained}


@pytest.fixture(scope="module")
def server(prepared):
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (install Debian's chromium or set TRANSFER_CHROMIUM).")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    home = prepared["home"]
    port = _free_port()
    env = {**os.environ, "TRANSFER_HOME": str(home), "TRANSFER_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if prepared["pretrained"]:
        env["TRANSFER_WEIGHTS_DIR"] = str(SHARED_WEIGHTS)
    log_path = home / "streamlit.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
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
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(60_000)
        try:
            yield tab
        finally:
            context.close()
            browser.close()


def _settle(page) -> None:
    """Wait until Streamlit finished the current script run."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=120_000,
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
    height = min(int(page.evaluate(_CONTENT_HEIGHT_JS)) + 40, 9000)
    page.set_viewport_size({"width": viewport["width"], "height": max(height, viewport["height"])})
    page.wait_for_timeout(1000)  # Let charts re-layout at the new size.
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    page.set_viewport_size(viewport)


def _go(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=title).first.click()
    page.get_by_role("heading", name=title, exact=True).first.wait_for()
    _settle(page)


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()


def test_compare_explore_and_export_in_a_browser(server, page, prepared, tmp_path):
    from transfer_core.data import load_split_arrays
    from transfer_core.explain import load_model, predict

    workspace_id = prepared["workspace"].workspace_id
    page.goto(f"{server}/?ws={workspace_id}")
    page.get_by_role("heading", name="Transfer Lab").wait_for()
    _settle(page)

    # Data: make the demo set (made through the core) the active one.
    _go(page, "Data")
    page.get_by_role("button", name="Use").first.click()
    _settle(page)

    # Compare: the two runs of the comparison group, their curves, table and reading.
    _go(page, "Compare")
    page.get_by_text("What the numbers say").wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for()  # Plotly draws after its script has loaded.
    _no_exception(page)
    assert page.locator('[data-testid="stDataFrame"]').count() == 1
    assert page.get_by_role("button", name="Download the table (CSV)").count() == 1
    _shot(page, "11-compare-results")
    page.get_by_text("Find a learning rate").click()
    page.get_by_role("button", name="Run the learning-rate finder").click()
    page.get_by_text("The loss fell fastest at a learning rate of about").wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    _shot(page, "12-compare-lr-finder")

    # Explore: predict an uploaded image, then the mistakes tab, embeddings and what the model sees.
    _go(page, "Explore")
    _no_exception(page)
    image = next((Path(prepared["dataset"].root) / "images").rglob("*.png"))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(image))
    page.get_by_text("Grad-CAM for '").first.wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    _shot(page, "13-explore-predict")
    page.get_by_role("tab", name="Mistakes").click()
    page.get_by_text("Confusion matrix (validation) - click a cell").wait_for()
    _settle(page)
    _no_exception(page)
    _shot(page, "14-explore-mistakes")
    page.get_by_role("tab", name="Embeddings").click()
    page.get_by_role("button", name="Compute embeddings").click()
    page.get_by_text("Class separation (silhouette)").first.wait_for(timeout=120_000)
    _settle(page)
    _no_exception(page)
    _shot(page, "15-explore-embeddings")
    page.get_by_role("tab", name="What the model sees").click()
    page.get_by_text("sees a 96x96 image").wait_for()
    _shot(page, "16-explore-sees")

    # Export: make every file, check parity, download the .keras file.
    _go(page, "Export")
    page.get_by_role("button", name="Export and check").click()
    page.get_by_text("Every exported file gives the trained model's answers.").wait_for(timeout=240_000)
    _settle(page)
    _no_exception(page)
    _shot(page, "17-export")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download", exact=True).first.click()
    download = download_info.value
    assert download.suggested_filename.endswith("-model.keras")
    downloaded = tmp_path / download.suggested_filename
    download.save_as(downloaded)

    # The Export page picked the newest run (fine-tuning) by default; compare with that run's model.
    run_dir = prepared["run_dirs"][-1]
    assert downloaded.read_bytes() == (run_dir / "model.keras").read_bytes()
    images, _ = load_split_arrays(prepared["dataset"], "val", 96)
    np.save(tmp_path / "images.npy", images)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        [sys.executable, "-c", _PREDICT_IN_FRESH_PROCESS, str(downloaded), str(tmp_path / "images.npy"),
         str(tmp_path / "out.json")],
        capture_output=True, text=True, cwd=tmp_path, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    fresh = json.loads((tmp_path / "out.json").read_text())
    expected = predict(load_model(run_dir), images)
    assert fresh["top1"] == expected.argmax(axis=1).tolist()
    np.testing.assert_allclose(np.asarray(fresh["probabilities"]), expected, atol=1e-5)


@pytest.mark.xfail(strict=False, reason="timing: with the lean loop on cached features the head stage can "
                   "finish between two 1 s polls, so its live text may never be on screen; needs a longer run")
def test_a_comparison_started_in_the_browser_shows_live_progress(server, page, prepared):
    """Start a short comparison from the Compare page; watch it live; see its results replace the old ones."""
    page.goto(f"{server}/?ws={prepared['workspace'].workspace_id}")
    page.get_by_role("heading", name="Transfer Lab").wait_for()
    _settle(page)
    _go(page, "Data")
    page.get_by_role("button", name="Use").first.click()
    _settle(page)
    _go(page, "Compare")
    page.get_by_text("From scratch", exact=True).click()  # Off: keep the browser test short.
    for label in ("Head epochs", "Fine-tuning epochs"):
        field = page.get_by_role("spinbutton", name=label)
        field.fill("1")
        field.press("Tab")
    page.get_by_role("button", name="Run the comparison").click()
    page.get_by_role("heading", name="In progress").wait_for()
    page.get_by_text("Comparison: 0 of 2 runs done").wait_for()
    started = time.time()
    page.get_by_text("feature extraction: training the head", exact=False).first.wait_for(timeout=120_000)
    _shot(page, "18-compare-live")
    page.get_by_role("heading", name="In progress").wait_for(state="detached", timeout=300_000)
    _settle(page)
    _no_exception(page)
    page.get_by_text("What the numbers say").wait_for()
    old = {path.name for path in prepared["run_dirs"]}
    new = [run_id for run_id in prepared["workspace"].store.ids() if run_id not in old]
    assert len(new) == 2
    picked = page.locator('[data-testid="stMultiSelectTagsContainer"]').first.inner_text()
    # The new comparison's two runs are picked automatically, in place of the earlier ones.
    assert all(run_id.rsplit("-", 1)[-1] in picked for run_id in new), picked
    assert not any(run_id.rsplit("-", 1)[-1] in picked for run_id in old), picked
    _shot(page, "19-compare-after")
    print(f"\nlive comparison of 2 runs ended {time.time() - started:.0f} s after the first progress")
