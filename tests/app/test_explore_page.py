"""The Explore page (AppTest): predictions with Grad-CAM, the confusion matrix cells, embeddings, preprocessing."""

from __future__ import annotations

from pathlib import Path

from helpers.apptest import page_text
from helpers.patience import patience
from helpers.workspaces import open_page, rerun_until, served


def _an_image(finished) -> bytes:
    return next((Path(finished.dataset.root) / "images").rglob("*.png")).read_bytes()


def test_explore_page_lists_finished_runs(finished):
    at = open_page(finished, "pages/explore.py")
    assert at.title[0].value == "Explore"
    assert len(at.selectbox(key="explore_run").options) == 2
    assert "Upload an image" in page_text(at)
    rerun_until(at, lambda page: "sees a 64x64 image" in page_text(page))  # What the model sees, on a validation image.


def _cell_images_shown(page) -> bool:
    return any(": said **" in c.value for c in page.caption)


def test_predict_an_uploaded_image_with_grad_cam(finished):
    at = open_page(finished, "pages/explore.py")
    at.file_uploader(key="explore_upload").upload("shape.png", _an_image(finished), "image/png")
    rerun_until(at, lambda page: any(c.value.startswith("The heat map has the resolution") for c in page.caption))
    asked = served("explain_images")
    at.run()  # A rerun shows the answer already given, without asking again.
    assert served("explain_images") == asked
    captions = [c.value for c in at.caption]
    assert any(c.startswith("The heat map has the resolution") for c in captions)
    top = at.dataframe[0].value
    assert len(top) == 3 and top["probability"].is_monotonic_decreasing
    captions = [caption for image in at.image for caption in image.captions]
    assert "shape.png" in captions  # The upload ...
    assert any(c.startswith("Grad-CAM for '") for c in captions)  # ... and its Grad-CAM overlay.


def _grad_cam_captions(page) -> list[str]:
    return [c for image in page.image for c in image.captions if c.startswith("Grad-CAM for '")]


def test_an_upload_is_asked_once_however_often_the_page_reruns_while_it_waits(finished):
    import io
    import time

    from PIL import Image

    at = open_page(finished, "pages/explore.py")
    before = served("explain_images")
    fresh = io.BytesIO()  # Never asked before: a colour of its own.
    Image.new("RGB", (40, 40), tuple(int(time.time_ns() >> shift) % 256 for shift in (0, 8, 16))).save(fresh, "PNG")
    at.file_uploader(key="explore_upload").upload("fresh.png", fresh.getvalue(), "image/png").run()
    assert not at.exception, at.exception
    assert not _grad_cam_captions(at)  # The script run did not wait for the worker ...
    at.run()
    at.run()  # ... and reruns while it works follow the same request.
    rerun_until(at, lambda page: bool(_grad_cam_captions(page)))
    assert served("explain_images") == before + 1


def test_a_bad_upload_is_explained(finished):
    at = open_page(finished, "pages/explore.py")
    at.file_uploader(key="explore_upload").upload("notes.png", b"not an image at all", "image/png")
    rerun_until(at, lambda page: any("notes.png" in w.value for w in page.warning))


def test_predictions_and_grad_cam_are_asked_once_and_shown_after_a_reload(finished):
    at = open_page(finished, "pages/explore.py")
    rerun_until(at, _cell_images_shown)  # The validation predictions, then the cell's Grad-CAMs.
    asked = served("validation_predictions"), served("cell_grad_cams")
    assert asked[0] >= 1 and asked[1] >= 1
    at.run()
    again = open_page(finished, "pages/explore.py")  # A reload: a new session on the same workspace.
    assert _cell_images_shown(again) and "of true class" in page_text(again)
    assert (served("validation_predictions"), served("cell_grad_cams")) == asked


def test_choosing_a_confusion_matrix_cell_shows_its_images(finished):
    at = open_page(finished, "pages/explore.py")
    rerun_until(at, lambda page: any(s.key == "explore_cell_true" for s in page.selectbox))
    classes = list(finished.dataset.class_names)
    at.selectbox(key="explore_cell_true").set_value(classes[0])
    at.selectbox(key="explore_cell_predicted").set_value(classes[0])
    rerun_until(at, _cell_images_shown)
    text = page_text(at)
    assert f"of true class *{classes[0]}* predicted as *{classes[0]}*" in text
    at.radio(key="explore_cam_target").set_value("true")
    rerun_until(at, _cell_images_shown)


def test_embeddings_before_and_after(finished):
    at = open_page(finished, "pages/explore.py")
    at.button(key="explore_embed").click().run()
    assert not at.exception, at.exception
    rerun_until(at, lambda page: bool(page.metric) or bool(page.error))
    assert not at.error, [e.value for e in at.error]
    labels = [m.label for m in at.metric]
    assert labels.count("Class separation (silhouette)") == 2
    assert at.radio(key="explore_embed_method").options == ["PCA", "t-SNE"]
    at.radio(key="explore_embed_method").set_value("t-SNE").run()
    assert not at.exception


def test_explore_without_runs_says_what_to_do(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui import state

    monkeypatch.setenv("TRANSFER_HOME", str(tmp_path / "home"))
    state.settings.cache_clear()
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=patience(60))
    at.run()
    at.switch_page("pages/explore.py")
    at.run()
    assert not at.exception
    assert "No trained model yet" in at.info[0].value
    state.settings.cache_clear()
