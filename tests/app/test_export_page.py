"""The Export page (AppTest): export and parity check, downloads, the script and the snippet."""

from __future__ import annotations

from helpers.workspaces import open_page, rerun_until, served

from transfer_core import export


def _script_shown(page) -> bool:
    return any("def main():" in c.value for c in page.code)


def test_export_page_before_exporting(finished):
    at = open_page(finished, "pages/export.py")
    assert at.title[0].value == "Export"
    rerun_until(at, _script_shown)  # Written by the inference worker, followed from a fragment.
    asked = served("reproduction_script")
    assert _script_shown(open_page(finished, "pages/export.py"))  # A reload shows it without asking again.
    assert served("reproduction_script") == asked
    captions = "\n".join(c.value for c in at.caption)
    assert "Nothing exported yet" in captions
    code = [c.value for c in at.code]
    assert any("def main():" in c and "import transfer_core" not in c for c in code)
    assert any("keras.saving.load_model" in c for c in code)
    keys = {b.key for b in at.get("download_button")}
    assert {"export_download_script", "export_download_snippet"} <= keys


def test_model_pages_preselect_the_run_last_opened_else_the_most_accurate(finished):
    from transfer_core.runs import RunStore

    store = RunStore(finished.workspace.runs_dir)
    accuracy = {run_id: store.load(run_id).report.val_accuracy for run_id in finished.run_ids}
    most_accurate = max(finished.run_ids, key=lambda run_id: (accuracy[run_id], store.load(run_id).created))
    other = next(run_id for run_id in finished.run_ids if run_id != most_accurate)
    at = open_page(finished, "pages/export.py")
    assert at.selectbox(key="export_run").value == most_accurate  # Not simply the newest run.
    at.selectbox(key="export_run").set_value(other).run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="explore_run").value == other  # The run this session last opened.


def test_export_and_check_makes_every_file_and_passes_parity(finished):
    at = open_page(finished, "pages/export.py", timeout=300)
    at.button(key="export_make").click().run()
    assert not at.exception, at.exception
    rerun_until(at, lambda page: bool(page.success) or bool(page.error))
    # A rounded file (float16, 8-bit) of this random-weights model may change classes; no other error.
    assert all(e.value.startswith("Some exported files disagree") for e in at.error), [e.value for e in at.error]
    parity = at.dataframe[0].value
    float_rows = parity[parity["name"].isin(["Keras (.keras)", "TensorFlow SavedModel (zip)", "TFLite, float32"])]
    assert len(float_rows) == 3 and (float_rows["top1_agreement"] == 1.0).all() and float_rows["passed"].all()
    assert parity["val_accuracy"].notna().sum() == len(parity) - 1  # Every model file; labels.txt has none.
    assert any(m.value.startswith("Compared with the TFLite float32 file") for m in at.markdown)
    keys = {b.key for b in at.get("download_button")}
    for name in export.available_formats():
        assert f"export_download_{name}" in keys
    # A later visit (another session) sees the files and the saved table without exporting again.
    again = open_page(finished, "pages/export.py")
    assert list(again.dataframe[0].value["name"]) == list(parity["name"])
