"""The web server only serves: after every page and every model feature, it has not loaded TensorFlow.

Starts ``streamlit run app.py`` on a TRANSFER_HOME with the demo data set and two finished runs (made
through the core, in this test process), drives Chromium through Home, Data (the demo), Model (block map
and the ImageNet preview), Train (a finished run), Compare (the learning-rate finder), Explore
(prediction with Grad-CAM, a confusion-matrix cell, embeddings, what the model sees) and Export (export
and parity check), then reads the server process's memory map: no TensorFlow library is mapped and its
resident memory stays small. The work was done by the inference worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.browser import (
    chromium_page,
    click_until_shown,
    go,
    no_exception,
    require_browser,
    settle,
    shot,
    streamlit_server,
)
from helpers.patience import wait_ms
from helpers.workspaces import finished_workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MAX_SERVER_RSS_MB = 300
TENSORFLOW_LIBRARIES = ("libtensorflow", "_pywrap_tensorflow")


def _tensorflow_mappings(pid: int) -> list[str]:
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({line.split()[-1] for line in lines if any(name in line for name in TENSORFLOW_LIBRARIES)})


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"No VmRSS in /proc/{pid}/status")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """TRANSFER_HOME with a workspace, the demo data set and a feature-extraction and a fine-tuning run."""
    return finished_workspace(tmp_path_factory, home_name="no-tf-home", images_per_class=12, image_size=96, epochs=2,
                              fine_tune_epochs=1, batch_size=16, dropout_rate=0.2, name="no-tf")


def test_every_page_and_feature_leaves_the_server_without_tensorflow(prepared):
    require_browser()
    weights_dir = prepared.weights_dir
    with streamlit_server(prepared.home, weights_dir=weights_dir) as server, \
            chromium_page(accept_downloads=True) as page:
        def wait(text: str, seconds: float = 240) -> None:
            page.get_by_text(text).first.wait_for(timeout=wait_ms(seconds))
            settle(page, wait_ms(240))
            no_exception(page)

        workspace_id = prepared.workspace.workspace_id
        page.goto(f"{server.url}/?ws={workspace_id}&run={prepared.run_ids[-1]}")
        page.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(page)

        # Data: the demo data set, made by the button (it becomes the active data set).
        go(page, "Data")
        page.get_by_role("button", name="Create the demo data set").click()
        page.get_by_text("Your data sets (2)").wait_for(timeout=wait_ms(120))  # Drawn, stored and made active.
        settle(page, wait_ms(120))
        no_exception(page)
        # The augmentation preview: the training augmenter, run by the inference worker.
        page.get_by_role("button", name="Show augmented copies").click()
        page.get_by_text("copy 7").first.wait_for(timeout=wait_ms(120))
        settle(page, wait_ms(120))
        no_exception(page)
        shot(page, "no-tf-01-data")

        # Model: the block map (computed by the worker, then a file) and the ImageNet guesses.
        go(page, "Model", timeout=wait_ms(240))
        wait("Trainable parameters")
        shot(page, "no-tf-02-model")
        if page.get_by_role("button", name="Show its top-3 guesses").count():
            page.get_by_role("button", name="Show its top-3 guesses").click()
            wait("your class:")

        # Train: the finished run named in the URL, with its results.
        go(page, "Train", timeout=wait_ms(120))
        no_exception(page)

        # Compare: results, and the learning-rate finder (in the worker).
        go(page, "Compare", timeout=wait_ms(120))
        page.get_by_text("What the numbers say").wait_for(timeout=wait_ms(120))
        page.locator(".js-plotly-plot").nth(1).wait_for()  # Let the charts draw before the layout is clicked.
        settle(page, wait_ms(120))
        shot(page, "no-tf-03-compare")
        finder = page.get_by_role("button", name="Run the learning-rate finder")
        page.get_by_text("Find a learning rate").click()
        if not finder.is_visible():
            page.wait_for_timeout(1000)
        if not finder.is_visible():  # The click landed while the page moved: open the expander again.
            page.get_by_text("Find a learning rate").click()
        answer = page.get_by_text("The loss fell fastest at a learning rate of about").first
        click_until_shown(finder, page.get_by_text("Sweeping learning rates").or_(answer))
        wait("The loss fell fastest at a learning rate of about")

        # Explore: a new image with Grad-CAM, a confusion-matrix cell, embeddings, what the model sees.
        go(page, "Explore", timeout=wait_ms(240))
        image = next((Path(prepared.dataset.root) / "images").rglob("*.png"))
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(image))
        wait("Grad-CAM for '")
        page.get_by_role("tab", name="Mistakes").click()
        wait("of true class")
        page.get_by_role("tab", name="Embeddings").click()
        page.get_by_role("button", name="Compute embeddings").click()
        wait("Class separation (silhouette)")
        page.get_by_role("tab", name="What the model sees").click()
        wait("sees a 96x96 image")

        # Export: every format and the parity check (in the worker).
        go(page, "Export", timeout=wait_ms(120))
        page.get_by_role("button", name="Export and check").click()
        wait("Every exported file gives the trained model's answers.", 400)

        pid = server.process.pid
        assert _tensorflow_mappings(pid) == [], "The Streamlit server loaded TensorFlow."
        rss = _rss_mb(pid)
        assert rss < MAX_SERVER_RSS_MB, f"The Streamlit server uses {rss:.0f} MB (limit {MAX_SERVER_RSS_MB} MB)."
