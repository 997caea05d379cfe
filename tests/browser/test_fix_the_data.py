"""Fixing the data in a real browser: train the demo, relabel a mistake, train again, compare before and after.

The demo set gets two wrong validation labels before training (as a real data set arrives with a few
mislabelled photos), through the library, so the run surely has confidently wrong images to act on.
Everything after that is clicks. Screenshots go to ``test-output/screenshots/fix-*.png``.
"""

from __future__ import annotations

import re
import time

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
from helpers.browser import streamlit_server as start_server
from helpers.patience import wait_ms

from transfer_core.data import load_dataset, read_manifest, relabel_image

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    with start_server(tmp_path_factory.mktemp("home"), weights_dir=default_weights_dir()) as running:
        yield running


def _mislabel_two_validation_images(home) -> str:
    [dataset_json] = list((home / "workspaces").rglob("datasets/*/dataset.json"))
    spec = load_dataset(dataset_json.parent)
    frame = read_manifest(spec)
    val = frame[frame["split"] == "val"]
    names = list(spec.class_names)
    for label in names[:2]:
        path = val[val["label"] == label]["path"].iloc[0]
        relabel_image(spec.root, path, names[(names.index(label) + 1) % len(names)])
    assert load_dataset(spec.root).version == 3  # One version per change.
    return spec.root


def _wait_finished(page, timeout_s: float = 300) -> None:
    page.get_by_role("button", name="Stop", exact=True).wait_for(timeout=wait_ms(60))  # The new run's live view.
    page.get_by_text("Finished.", exact=True).wait_for(timeout=wait_ms(timeout_s))
    settle(page)
    no_exception(page)


def test_relabel_a_mistake_train_again_and_compare_before_and_after(server):
    with chromium_page() as page:
        page.goto(server.url)
        page.get_by_role("heading", name="Transfer Lab").wait_for()
        settle(page)
        page.get_by_role("button", name="Try the demo").click()
        page.get_by_role("button", name="Start training").wait_for()
        settle(page)
        root = _mislabel_two_validation_images(server.home)

        started = time.time()
        page.get_by_role("button", name="Start training").click()
        _wait_finished(page)
        first_done = time.time()
        page.get_by_text("Most confidently wrong (validation)").wait_for()
        shot(page, "fix-1-mistakes")
        page.get_by_text(re.compile(r"Data set demo\S*, version 3")).first.wait_for(timeout=wait_ms(10))

        relabel = page.get_by_role("button", name=re.compile(r"^Relabel as ")).first
        relabel.click()
        page.get_by_text(re.compile(r"is now version 4: relabelled")).wait_for()
        settle(page)
        no_exception(page)
        assert load_dataset(root).version == 4
        page.get_by_text(re.compile(r"^Now labelled")).first.wait_for()

        page.get_by_role("button", name="Train again on the cleaned data (v4)").click()
        _wait_finished(page)
        page.get_by_text(re.compile(r"data: demo\S* v4")).first.wait_for()
        shot(page, "fix-2-trained-again")

        page.get_by_role("button", name="Compare before (v3) and after (v4)").click()
        page.get_by_role("heading", name="Compare", exact=True).wait_for()
        settle(page)
        no_exception(page)
        page.get_by_text(re.compile(r"Before and after fixing the data: v3 → v4 \(1 relabelled\)")).wait_for()
        shot(page, "fix-3-compare")

        go(page, "Data")
        page.get_by_text(re.compile(r"Data set demo\S*, version 4")).first.wait_for()
        page.get_by_role("button", name="Undo last change").click()
        page.get_by_text(re.compile(r"is now version 5: undid version 4")).wait_for()
        settle(page)
        no_exception(page)
        assert load_dataset(root).version == 5
        print(f"\nfix the data: first run {first_done - started:.0f} s, whole path {time.time() - started:.0f} s")
