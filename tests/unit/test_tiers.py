"""The reading that sorts tests into the fast tier and the TensorFlow tier (tests/helpers/tiers.py)."""

from __future__ import annotations

from helpers.tiers import TensorFlowReach, page_reach

from transfer_core import inference
from transfer_core.display import run_text
from transfer_core.freezing import blockmap


def test_a_lazy_keras_import_two_calls_down_is_found():
    reason = TensorFlowReach().object(blockmap.block_map)
    assert reason is not None and "import" in reason and "keras" in reason, reason


def test_starting_a_worker_is_found_and_plain_code_is_not():
    reach = TensorFlowReach()
    assert "child process" in (reach.object(inference.ensure_worker) or "")
    assert reach.object(run_text.format_seconds) is None
    assert reach.module("transfer_core.training.progress") is not None  # Imports Keras when it loads.
    assert reach.module("transfer_core.config") is None


def test_a_page_that_asks_the_worker_when_shown_is_not_fast_and_one_that_waits_for_a_click_is():
    reach = TensorFlowReach()
    assert "block_map" in (page_reach("pages/model.py", reach) or "")
    assert page_reach("pages/data.py", reach) is None
