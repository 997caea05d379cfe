"""The Compare page (AppTest): the form, results of finished runs, the reading, downloads, the LR finder."""

from __future__ import annotations

import json

import pytest
from helpers.apptest import page_text
from helpers.patience import patience
from helpers.workspaces import open_page, rerun_until


def test_compare_page_shows_results_of_finished_runs(own_finished):
    at = open_page(own_finished, "pages/compare.py")
    assert at.title[0].value == "Compare"
    # The comparison group's runs are picked by default.
    assert sorted(at.multiselect(key="compare_pick").value) == sorted(own_finished.run_ids)
    text = page_text(at)
    assert "What the numbers say" in text
    assert ("won with" in text) or (" tie at " in text)
    table = at.dataframe[0].value
    assert set(table["label"]) == {"feature extraction", "fine-tuning"}
    assert table["final_val_accuracy"].between(0, 100).all()  # Shown in percent.
    assert len(at.get("plotly_chart")) >= 2
    downloads = {button.key for button in at.get("download_button")}
    assert {"compare_download_csv", "compare_download_json"} <= downloads


def test_compare_form_offers_the_strategies_with_explanations(own_finished):
    at = open_page(own_finished, "pages/compare.py")
    for key in ("compare_use_fe", "compare_use_ft", "compare_use_scratch", "compare_use_bn"):
        box = at.checkbox(key=key)
        assert box.help, key
    assert at.checkbox(key="compare_use_bn").disabled == (own_finished.model.weights != "imagenet")
    assert at.number_input(key="compare_head_epochs").value >= 1


def test_the_time_estimate_is_shown_before_start_with_the_budget_checkbox_on(own_finished):
    at = open_page(own_finished, "pages/compare.py")
    assert at.checkbox(key="compare_same_budget").value is True
    assert at.checkbox(key="compare_same_budget").help
    text = page_text(at)
    assert "Estimated time: about" in text
    for label in ("feature extraction", "fine-tuning", "from scratch"):
        assert f"- {label}: ~" in text, label
    # From scratch is held to fine-tuning's training time while the box is ticked.
    assert "fine-tuning's training time" in text
    at.checkbox(key="compare_same_budget").uncheck().run()
    assert not at.exception
    assert "fine-tuning's training time" not in page_text(at)


def test_a_comparison_over_three_minutes_is_warned_about_before_start(own_finished):
    from transfer_core import compare
    from transfer_core.compare.estimate import speed_key
    from transfer_core.compare.speeds import SPEED_FORMAT
    from transfer_core.config import Settings
    from transfer_core.zoo import check_input_size

    # This server measured from-scratch training of this backbone and size at 0.5 images per second.
    path = compare.speed_file(Settings(home=own_finished.home))
    size = check_input_size(own_finished.model.backbone, own_finished.model.input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": SPEED_FORMAT, "overhead_seconds": {}, "images_per_second": {
        speed_key(own_finished.model.backbone, size, "scratch|train"): [0.5]}}))
    try:
        at = open_page(own_finished, "pages/compare.py")
        at.checkbox(key="compare_same_budget").uncheck().run()
        assert not at.exception
        warnings = [w.value for w in at.warning if w.value.startswith("This comparison will take about")]
        assert warnings and "from scratch" in warnings[0]
        # With fine-tuning's time budget from scratch is short again: no warning.
        at.checkbox(key="compare_same_budget").check().run()
        assert not any(w.value.startswith("This comparison will take about") for w in at.warning)
    finally:
        path.unlink()


def test_test_accuracy_column_only_with_a_test_split(own_finished):
    at = open_page(own_finished, "pages/compare.py")
    assert "test_accuracy" not in at.dataframe[0].value.columns  # The demo set has no test split.


def test_switching_the_axis_and_the_picked_runs(own_finished):
    at = open_page(own_finished, "pages/compare.py")
    at.radio(key="compare_x_axis").set_value("elapsed").run()
    assert not at.exception
    at.multiselect(key="compare_pick").set_value(own_finished.run_ids[:1]).run()
    assert not at.exception
    assert "Pick at least two runs" in page_text(at)


def test_compare_page_without_a_data_set_still_shows_results(own_finished):
    at = open_page(own_finished, "pages/compare.py", active_dataset=False)
    assert "Choose a data set first" in page_text(at)
    assert at.dataframe[0].value is not None


def test_learning_rate_finder_runs_from_the_page(own_finished):
    at = open_page(own_finished, "pages/compare.py")
    at.button(key="compare_lr_find").click().run()
    assert not at.exception, at.exception
    answered = "The loss fell fastest at a learning rate of about"
    rerun_until(at, lambda page: answered in page_text(page))
    assert not at.error, [e.value for e in at.error]
    # A reload (a new session on the same workspace, nothing clicked) shows the same answer, not a new request.
    again = open_page(own_finished, "pages/compare.py")
    assert answered in page_text(again)
    use = at.button(key="compare_lr_use")
    use.click().run()
    assert not at.exception
    assert at.session_state["train_config"].learning_rate in (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


@pytest.mark.slow
def test_run_the_comparison_button_starts_runs_one_after_another(own_finished, tmp_path):
    from transfer_core import compare, jobs
    from transfer_core.runs import load_run

    at = open_page(own_finished, "pages/compare.py")
    before = set(own_finished.workspace.store.ids())
    at.checkbox(key="compare_use_bn").uncheck()
    at.checkbox(key="compare_use_scratch").check()
    at.number_input(key="compare_head_epochs").set_value(1)
    at.number_input(key="compare_ft_epochs").set_value(1)
    at.button(key="FormSubmitter:compare_form-Run the comparison").click().run()
    assert not at.exception, at.exception
    new = [run_id for run_id in at.session_state["compare_group"]]
    assert set(new) == set(own_finished.workspace.store.ids()) - before and len(new) == 3
    statuses = [jobs.follow(own_finished.workspace.store.path_of(run_id), timeout=patience(600)) for run_id in new]
    assert statuses == ["finished"] * 3, [load_run(own_finished.workspace.store.path_of(r)).reason for r in new]
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["run_id"]) == set(new)
    assert set(table["label"]) == {"feature extraction", "fine-tuning", "from scratch"}
    payload = json.loads(compare.results_json(table))
    assert len(payload["runs"]) == 3
    # The budget box is ticked by default: from scratch had fine-tuning's training time.
    fine_tuning, scratch = (load_run(own_finished.workspace.store.path_of(run_id)).report for run_id in new[1:])
    assert scratch.time_budget_seconds == pytest.approx(fine_tuning.training_seconds)
    full = compare.comparison_table([load_run(own_finished.workspace.store.path_of(run_id)) for run_id in new])
    # The reading names fine-tuning's time as from scratch's budget (whether or not the budget cut it short).
    assert any(s.startswith("From scratch ") and "fine-tuning" in s and ("its budget" in s or "of training time" in s)
               for s in compare.reading(full)), compare.reading(full)
