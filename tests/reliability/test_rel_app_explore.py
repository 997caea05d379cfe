"""Issue 6, security through the app: a .keras model uploaded on the Explore page is loaded only through
``transfer_core.explore.safe_load`` (safe mode, no Lambda, nothing outside Keras). A malicious file is refused with
a clear message and its code never runs; a plain classifier predicts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers.patience import patience
from helpers.workspaces import rerun_until
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")


@pytest.fixture
def explore(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui import state

    monkeypatch.setenv("TRANSFER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    state.settings.cache_clear()
    at = AppTest.from_file(APP, default_timeout=patience(120))
    at.run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    yield at
    state.settings.cache_clear()
    from transfer_core import inference

    inference.shutdown(tmp_path / "home")  # The page's inference worker (it loaded the uploaded model).


def _model_bytes(tmp_path: Path, with_lambda_marker: Path | None = None) -> bytes:
    import keras

    inputs = keras.Input((32, 32, 3))
    x = inputs
    if with_lambda_marker is not None:
        code = f"lambda t: (open({str(with_lambda_marker)!r}, 'w').write('code ran'), t)[1]"
        x = keras.layers.Lambda(eval(code))(x)  # noqa: S307 - the test's own payload.
    x = keras.layers.Rescaling(1 / 255)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = tmp_path / "model.keras"
    model.save(path)
    if with_lambda_marker is not None:
        with_lambda_marker.unlink(missing_ok=True)  # Building the model ran the lambda once.
    return path.read_bytes()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 20, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_malicious_keras_upload_is_refused_and_its_code_never_runs(explore, tmp_path) -> None:
    at = explore
    marker = tmp_path / "marker.txt"
    data = _model_bytes(tmp_path, with_lambda_marker=marker)
    at.file_uploader(key="explore_user_model").set_value(("evil.keras", data, "application/octet-stream"))
    at.file_uploader(key="explore_user_image").set_value(("red.png", _png(), "image/png"))
    rerun_until(at, lambda page: bool(page.error))  # Checked in the inference worker, followed from a fragment.
    errors = [e.value for e in at.error]
    assert any("evil.keras is refused" in e and "Lambda layer" in e for e in errors), errors
    assert not marker.exists()


def test_a_non_keras_model_file_is_refused(explore) -> None:
    at = explore
    at.file_uploader(key="explore_user_model").set_value(
        ("weights.h5", b"\x89HDF\r\n\x1a\n", "application/x-hdf")
    )
    rerun_until(at, lambda page: bool(page.error))
    assert any("only Keras 3 '.keras' model files" in e.value for e in at.error)


def test_a_plain_uploaded_classifier_predicts(explore, tmp_path) -> None:
    at = explore
    at.file_uploader(key="explore_user_model").set_value(
        ("mine.keras", _model_bytes(tmp_path), "application/zip")
    )
    at.file_uploader(key="explore_user_image").set_value(("red.png", _png(), "image/png"))
    rerun_until(at, lambda page: bool(page.error) or any("probability" in f.value.columns for f in page.dataframe))
    assert not at.error, [e.value for e in at.error]
    assert any("32x32" in c.value and "3 classes" in c.value for c in at.caption)
    table = next(f.value for f in at.dataframe if "probability" in f.value.columns)
    assert len(table) == 3 and abs(table["probability"].sum() - 1.0) < 1e-4
