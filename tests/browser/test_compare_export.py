"""Compare, Explore and Export in a real browser; the downloaded .keras file predicts like the run's model.

Starts ``streamlit run app.py`` with a private TRANSFER_HOME that already holds a workspace with the demo
data set and two finished runs (made through the core), opens the app with ``?ws=<id>``, and drives
Debian's Chromium through Playwright. Screenshots go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.browser import (
    chromium_page,
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


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """TRANSFER_HOME with a workspace, the demo data set and a feature-extraction and a fine-tuning run."""
    return finished_workspace(tmp_path_factory, home_name="browser-home", images_per_class=16, image_size=96, epochs=4,
                              fine_tune_epochs=2, batch_size=16, dropout_rate=0.2, name="compare browser")


@pytest.fixture(scope="module")
def server(prepared):
    """Transfer Lab on the prepared TRANSFER_HOME; yields its URL."""
    require_browser()
    weights_dir = prepared.weights_dir
    with streamlit_server(prepared.home, weights_dir=weights_dir) as running:
        yield running.url


@pytest.fixture(scope="module")
def page(server):
    with chromium_page(accept_downloads=True) as tab:
        yield tab


def _settle(page) -> None:
    settle(page, timeout=wait_ms(120))


def _shot(page, name: str) -> None:
    shot(page, name, max_height=9000, relayout_ms=1000)


def _settled_shot(page, name: str) -> None:
    """Wait for the script run, check it raised nothing, and take the screenshot ``name``."""
    _settle(page)
    no_exception(page)
    _shot(page, name)


def _go(page, title: str) -> None:
    go(page, title, timeout=wait_ms(120))


def _open_compare(page, server: str, prepared) -> None:
    """Open the prepared workspace, make its demo set (made through the core) the active one, go to Compare."""
    page.goto(f"{server}/?ws={prepared.workspace.workspace_id}")
    page.get_by_role("heading", name="Transfer Lab").wait_for()
    _settle(page)
    _go(page, "Data")
    # A later test on the same address finds the data set still chosen (the session's choices are kept
    # in the workspace): then the list of data sets is folded and there is nothing to click.
    use = page.get_by_role("button", name="Use")
    if use.count():
        use.first.click()
        _settle(page)
    _go(page, "Compare")


def test_compare_explore_and_export_in_a_browser(server, page, prepared, tmp_path):
    from transfer_core.data import load_split_arrays
    from transfer_core.explore.explain import load_model, predict

    _open_compare(page, server, prepared)
    # The two runs of the comparison group, their curves, table and reading.
    page.get_by_text("What the numbers say").wait_for()
    page.locator(".js-plotly-plot").nth(1).wait_for()  # Plotly draws after its script has loaded.
    page.locator('[data-testid="stDataFrame"]').first.wait_for()  # Drawn below the charts, maybe a moment later.
    _settle(page)
    no_exception(page)
    assert page.locator('[data-testid="stDataFrame"]').count() == 1
    assert page.get_by_role("button", name="Download the table (CSV)").count() == 1
    _shot(page, "11-compare-results")
    page.get_by_text("Find a learning rate").click()
    page.get_by_role("button", name="Run the learning-rate finder").click()
    page.get_by_text("The loss fell fastest at a learning rate of about").wait_for(timeout=wait_ms(120))
    _settled_shot(page, "12-compare-lr-finder")

    # Explore: predict an uploaded image, then the mistakes tab, embeddings and what the model sees.
    _go(page, "Explore")
    no_exception(page)
    image = next((Path(prepared.dataset.root) / "images").rglob("*.png"))
    # The first tab's uploader (the whole page draws at once: no step waits for the worker in the script run).
    page.get_by_test_id("stTabs").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(image))
    page.get_by_text("Grad-CAM for '").first.wait_for(timeout=wait_ms(120))
    _settled_shot(page, "13-explore-predict")
    page.get_by_role("tab", name="Mistakes").click()
    page.get_by_text("Confusion matrix (validation) - click a cell").wait_for()
    _settled_shot(page, "14-explore-mistakes")
    page.get_by_role("tab", name="Embeddings").click()
    page.get_by_role("button", name="Compute embeddings").click()
    page.get_by_text("Class separation (silhouette)").first.wait_for(timeout=wait_ms(120))
    _settled_shot(page, "15-explore-embeddings")
    page.get_by_role("tab", name="What the model sees").click()
    page.get_by_text("sees a 96x96 image").wait_for()
    _shot(page, "16-explore-sees")

    # Export: make every file, check parity, download the .keras file.
    _go(page, "Export")
    page.get_by_role("button", name="Export and check").click()
    page.get_by_text("Every exported file gives the trained model's answers.").wait_for(timeout=wait_ms(240))
    _settled_shot(page, "17-export")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download", exact=True).first.click()
    download = download_info.value
    assert download.suggested_filename.endswith("-model.keras")
    downloaded = tmp_path / download.suggested_filename
    download.save_as(downloaded)

    # The Export page picked the newest run (fine-tuning) by default; compare with that run's model.
    run_dir = prepared.run_dirs[-1]
    assert downloaded.read_bytes() == (run_dir / "model.keras").read_bytes()
    images, _ = load_split_arrays(prepared.dataset, "val", 96)
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


def _live_panel(page) -> str:
    """The text of the "In progress" panel (between its heading and "Results"), or "" when it is gone."""
    try:
        text = page.evaluate("() => document.body.innerText")
    except Exception:  # noqa: BLE001 - the page may be mid-update; try again next poll.
        return ""
    start = text.find("In progress")
    return text[start:text.find("Results", start)] if start >= 0 else ""


def _run_states(panel: str) -> dict[str, str]:
    """``{"feature extraction": "running", "fine-tuning": "queued"}`` from the panel's status lines."""
    return dict(re.findall(r"(feature extraction|fine-tuning): (queued|running|finished)\b", panel))


def test_a_comparison_started_in_the_browser_shows_live_progress(server, page, prepared):
    """Start a comparison from the Compare page; watch it advance live; see its results replace the old ones.

    The panel must change on its own, with no reload: the feature-extraction run running while the
    fine-tuning run waits its turn, then the first done and the second running, the comparison's count
    going from 0 to 1 of 2, and an epoch counter moving. Epochs on cached features take a few ms, so each
    run gets 400 (200 head + 200 fine-tuning, the most the page allows): seconds of training per run even
    when a worker starts at once, i.e. several of the panel's 1 s polls in every state.
    """
    _open_compare(page, server, prepared)
    page.get_by_text("From scratch", exact=True).click()  # Off: keep the browser test short.
    for label in ("Head epochs", "Fine-tuning epochs"):
        field = page.get_by_role("spinbutton", name=label)
        field.fill("200")
        field.press("Tab")
    page.get_by_role("button", name="Run the comparison").click()
    in_progress = page.get_by_role("heading", name="In progress")
    in_progress.wait_for()
    started = time.time()
    panels: list[str] = []  # Each different text the panel showed, in order.
    epochs_seen: set[str] = set()
    shot_taken = False
    while time.time() - started < 300:
        panel = _live_panel(page)
        if not panel and not in_progress.count():
            break
        if panel and (not panels or panels[-1] != panel):
            panels.append(panel)
            epochs_seen.update(re.findall(r"epoch (\d+) of \d+", panel))
        if len(epochs_seen) >= 2 and not shot_taken:
            _shot(page, "18-compare-live")
            shot_taken = True
        page.wait_for_timeout(250)
    # Streamlit redraws the panel element by element, so one snapshot can mix old and new lines: each
    # sequence (run states, comparison count) is checked on its own.
    summary = "\n---\n".join(panels)
    states = [_run_states(panel) for panel in panels]
    first_running = next((i for i, state in enumerate(states)
                          if state == {"feature extraction": "running", "fine-tuning": "queued"}), None)
    assert first_running is not None, f"never saw the first run running and the second queued:\n{summary}"
    assert any(state == {"feature extraction": "finished", "fine-tuning": "running"}
               for state in states[first_running + 1:]), (
        f"never saw the second run running after the first finished:\n{summary}")
    counts = [int(n) for panel in panels for n in re.findall(r"Comparison: (\d) of 2 runs done", panel)]
    assert 0 in counts and 1 in counts[counts.index(0):], f"the comparison's count never went 0 -> 1: {counts}"
    assert len(epochs_seen) >= 2, f"the epoch counter never moved on screen (saw {sorted(epochs_seen)}):\n{summary}"
    in_progress.wait_for(state="detached", timeout=wait_ms(60))
    _settle(page)
    no_exception(page)
    page.get_by_text("What the numbers say").wait_for()
    old = {path.name for path in prepared.run_dirs}
    new = [run_id for run_id in prepared.workspace.store.ids() if run_id not in old]
    assert len(new) == 2
    picked = page.locator('[data-testid="stMultiSelectTagsContainer"]').first.inner_text()
    # The new comparison's two runs are picked automatically, in place of the earlier ones.
    assert all(run_id.rsplit("-", 1)[-1] in picked for run_id in new), picked
    assert not any(run_id.rsplit("-", 1)[-1] in picked for run_id in old), picked
    _shot(page, "19-compare-after")
    print(f"\nlive comparison of 2 runs ended {time.time() - started:.0f} s after it started; "
          f"the panel changed {len(panels)} times; epochs seen: {sorted(epochs_seen, key=int)}")
