"""The classic Keras recipe in a real browser: ResNet50's weights are missing, so take the same head on a
backbone whose weights are here, train it, and see the Flatten head on the Train page and in the script.

The workspace (a small 4-class demo set, chosen for the session) is made through the core beforehand; the
server has the offline weights folder, which holds no ResNet50 (and KERAS_HOME points at an empty folder,
so no Keras cache has it either). Screenshots go to ``test-output/screenshots/classic-*.png``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

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
from helpers.patience import wait_ms

from transfer_core.config import Settings
from transfer_core.sessions.workspace import SessionChoices, Workspace

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLASSES = 4
# The recipe's head on MobileNetV2's 7x7x1280 map at 224 px: Flatten -> Dense(128, ReLU) -> softmax.
FLATTEN_HEAD_WEIGHTS = 7 * 7 * 1280 * 128 + 128 + 128 * CLASSES + CLASSES
HEAD_WORDS = "head: Flatten → Dense(128, ReLU) → softmax"
# What a selectbox shows: its text, or the value of its search input.
_SHOWN_JS = "e => e.innerText + ' ' + Array.from(e.querySelectorAll('input')).map(i => i.value).join(' ')"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from transfer_core.data import make_demo_dataset

    require_browser()
    weights_dir = default_weights_dir()
    if weights_dir is None:
        pytest.skip("needs ../shared/weights (MobileNetV2 0.35's ImageNet weights)")
    home = tmp_path_factory.mktemp("home")
    workspace = Workspace.open(Settings(home=home))
    spec = make_demo_dataset(workspace.new_dataset_dir("shapes"), images_per_class=8, image_size=64)
    workspace.save_choices(SessionChoices(dataset=Path(spec.root).name))
    keras_home = tmp_path_factory.mktemp("keras")  # No ResNet50 in a Keras cache either.
    with streamlit_server(home, weights_dir=weights_dir, env={"KERAS_HOME": str(keras_home)}) as server:
        yield server, workspace


def test_the_classic_recipe_falls_back_to_weights_here_trains_and_reproduces_with_flatten(prepared):
    server, workspace = prepared
    with chromium_page(accept_downloads=True) as page:
        page.goto(f"{server.url}/?ws={workspace.workspace_id}")
        page.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(page)

        go(page, "Model")
        page.get_by_text("Trainable parameters").wait_for(timeout=wait_ms(120))
        settle(page)
        page.get_by_text("The classic Keras recipe", exact=True).click()
        page.get_by_text(re.compile(r"ResNet50's ImageNet weights .* are not on this server")).wait_for()
        assert page.get_by_role("button", name="Use the classic Keras recipe").count() == 0
        offer = page.get_by_role("button", name=re.compile(r"^Use the same recipe on .*weights on this server"))
        offer.click()
        page.get_by_text(re.compile(r"^The classic Keras recipe: MobileNetV2.* at 224 px")).wait_for()
        # The backbone's blocks at 224 px may be read anew: wait for the head's counts.
        flatten = page.get_by_role("radio", name=re.compile(r"^Flatten \(the classic recipe\): "))
        flatten.wait_for(timeout=wait_ms(120))
        settle(page, timeout=wait_ms(120))
        no_exception(page)
        # The widgets show the recipe (not only the counts computed from it).
        assert flatten.is_checked()
        assert page.get_by_role("radio", name="Feature extraction (backbone frozen)").is_checked()
        hidden = page.locator('[data-testid="stSelectbox"]').filter(has_text="Hidden units in the head")
        assert "128 (Dense + ReLU" in hidden.evaluate(_SHOWN_JS)
        assert f"{FLATTEN_HEAD_WEIGHTS:,} weights" in flatten.locator("xpath=ancestor::label[1]").inner_text()
        trainable = page.locator('[data-testid="stMetric"]').filter(has_text="Trainable parameters")
        assert f"{FLATTEN_HEAD_WEIGHTS:,}" in trainable.inner_text()
        page.get_by_text(f"{FLATTEN_HEAD_WEIGHTS:,} parameters for {CLASSES} classes): Flatten → Dense(128, ReLU)"
                         " → softmax", exact=False).wait_for()
        shot(page, "classic-1-model")

        go(page, "Train")
        assert page.get_by_role("radio", name=re.compile(r"^Feature extraction")).is_checked()
        started = time.time()
        page.get_by_role("button", name="Start training").click()
        page.get_by_role("button", name="Stop", exact=True).wait_for(timeout=wait_ms(60))
        page.get_by_text("Finished.", exact=True).wait_for(timeout=wait_ms(300))
        trained_s = time.time() - started
        settle(page)
        no_exception(page)
        summary = page.get_by_text(HEAD_WORDS).first
        summary.wait_for()
        assert "mobilenet_v2_0.35 at 224px, imagenet weights" in summary.inner_text()
        assert "10 epoch(s)" in summary.inner_text() and "learning rate 0.0001" in summary.inner_text()
        shot(page, "classic-2-trained")

        go(page, "Export")
        download_button = page.get_by_role("button", name="Download train script")
        download_button.wait_for(timeout=wait_ms(120))
        settle(page)
        no_exception(page)
        with page.expect_download() as download:
            download_button.click()
        script = Path(download.value.path()).read_text()
        assert "HEAD_POOLING = 'flatten'" in script
        assert re.search(r"^HIDDEN_UNITS = 128$", script, re.MULTILINE), "the script lost the Dense(128) layer"
        shot(page, "classic-3-export")
        page.get_by_text("The train script", exact=True).click()
        page.locator('[data-testid="stCode"]').filter(has_text="HEAD_POOLING = 'flatten'").first.wait_for()
        print(f"\nclassic recipe: training {trained_s:.0f} s")
