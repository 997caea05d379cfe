"""AppTest of the Model page's head choice and the classic Keras recipe."""

from __future__ import annotations

import pytest
from conftest import SHARED_WEIGHTS
from helpers.patience import patience
from helpers.workspaces import model_page_ready


def _trainable(at) -> int:
    return int(next(m.value for m in at.metric if m.label == "Trainable parameters").replace(",", ""))


def _demo(at):
    at.switch_page("pages/data.py").run()
    at.slider(key="demo_per_class").set_value(10)
    at.select_slider(key="demo_image_size").set_value(32)
    at.button(key="demo_create").click().run()
    assert not at.exception, at.exception
    assert at.session_state["dataset_root"]


def test_each_head_shows_its_weights_and_the_choice_reaches_the_run(app):
    _demo(app)
    classes = 4
    app.switch_page("pages/model.py").run(timeout=patience(120))
    app.selectbox(key="model_backbone").set_value("mobilenet_v2_0.35")
    app.selectbox(key="model_input_size").set_value(96)
    model_page_ready(app)
    app.radio(key="model_freeze_preset").set_value("feature_extraction").run()
    assert not app.exception, app.exception
    radio = app.radio(key="model_head")
    assert radio.value == "avg"
    # MobileNetV2 at 96 px ends in a 3x3x1280 feature map.
    assert "3x3x1280" in radio.label
    assert any(f"{1280 * classes + classes:,} weights" in text for text in radio.options)
    assert any(f"{3 * 3 * 1280 * classes + classes:,} weights" in text for text in radio.options)
    assert any("position" in caption for caption in radio.proto.captions)
    assert _trainable(app) == 1280 * classes + classes
    radio.set_value("flatten").run()
    assert _trainable(app) == 3 * 3 * 1280 * classes + classes
    head_line = f"+ head ({3 * 3 * 1280 * classes + classes:,} parameters for {classes} classes): Flatten → softmax"
    assert any(head_line in c.value for c in app.caption), [c.value for c in app.caption]
    assert app.session_state["model_spec"].head == "flatten"
    app.radio(key="model_head").set_value("max").run()
    assert _trainable(app) == 1280 * classes + classes
    assert app.session_state["model_spec"].head == "max"


@pytest.mark.skipif(not SHARED_WEIGHTS.exists(), reason="needs ../shared/weights (MobileNetV2 0.35)")
def test_the_classic_recipe_says_resnet50_is_missing_and_offers_one_click_on_a_backbone_that_is_here(
    app, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # No ResNet50 in a Keras cache either.
    _demo(app)
    model_page_ready(app.switch_page("pages/model.py"))
    warning = " ".join(w.value for w in app.warning)
    assert "ResNet50's ImageNet weights" in warning and "does not download" in warning
    assert "model_classic_recipe" not in [b.key for b in app.button]  # Offline: no ResNet50 run offered.
    app.button(key="model_classic_fallback").click().run(timeout=patience(180))
    notices = [s.value for s in app.success]  # Shown once, by the click's run.
    model_page_ready(app)
    spec = app.session_state["model_spec"]
    assert (spec.backbone, spec.input_size, spec.head, spec.hidden_units, spec.weights) == (
        "mobilenet_v2_0.35", 224, "flatten", 128, "imagenet")
    assert app.session_state["freeze_plan"].mode == "all_frozen"
    train = app.session_state["train_config"]
    assert (train.strategy, train.learning_rate, train.epochs, train.optimizer) == (
        "feature_extraction", 1e-4, 10, "adam")
    # The widgets show the recipe, and the count is the Flatten head's on a 7x7x1280 map.
    assert app.radio(key="model_head").value == "flatten"
    assert app.selectbox(key="model_hidden_units").value == 128
    assert _trainable(app) == 7 * 7 * 1280 * 128 + 128 + 128 * 4 + 4
    assert any("classic Keras recipe" in notice for notice in notices)
