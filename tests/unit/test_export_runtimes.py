"""Every export format round-trips through its own runtime on a tiny model; int8 calibrates on training images
only; the CLI writes the files and prints the table; the TFLite and ONNX runners print the app's top classes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.models import TINY_MODEL
from helpers.runs import make_finished_run, tiny_config

from transfer_core import export
from transfer_core.config import ModelSpec, Settings
from transfer_core.data import load_split_arrays, split_paths

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"
ROUNDED = ("tflite_float16", "tflite_quantized", "tflite_int8")


def _clean_env() -> dict[str, str]:
    # Handed-out programs must work without this project: no PYTHONPATH to it, run from elsewhere.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fine-tuned tiny run on a data set with a test split, exported in every available format and checked.

    With the shared ImageNet weights (when present) predictions differ from image to image, so agreement
    and accuracy mean something; a randomly initialised MobileNet gives every image the same probabilities.
    """
    from transfer_core.data import make_demo_dataset, resplit

    root = tmp_path_factory.mktemp("export-runtimes")
    spec = make_demo_dataset(root / "data", images_per_class=12, image_size=64)
    spec = resplit(spec, seed=0, val_fraction=0.25, test_fraction=0.25)
    pretrained = (SHARED_WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5").is_file()
    model = ModelSpec(input_size=64, weights="imagenet", dropout_rate=0.0) if pretrained else TINY_MODEL
    settings = Settings(home=root / "home", weights_dir=SHARED_WEIGHTS if pretrained else None)
    config = tiny_config(spec, model=model, strategy="fine_tuning", epochs=2, fine_tune_epochs=1,
                         learning_rate=3e-3)
    run_dir, _ = make_finished_run(root / "runs", config, settings)
    bundle = export.export_run(run_dir)
    table = export.parity_check(run_dir, bundle)
    print("\n" + export.table_text(table) + "\n" + "\n".join(export.cost_reading(table)))
    return {"root": root, "spec": spec, "config": config, "run_dir": run_dir, "bundle": bundle, "table": table,
            "pretrained": pretrained}


def test_every_available_format_round_trips_through_its_own_runtime(exported):
    table = exported["table"].set_index("format")
    assert set(exported["bundle"].files) == set(export.available_formats()) == set(table.index)
    counts = {split: len(split_paths(exported["spec"], split)[0]) for split in ("val", "test")}
    assert counts["test"] > 0
    float_models = [key for key in export.FLOAT_FORMATS if key in table.index]
    for key in float_models:
        assert table.loc[key, "passed"], table.loc[key].to_dict()
        assert table.loc[key, "top1_agreement"] == 1.0 and table.loc[key, "max_abs_diff"] <= export.FLOAT_TOLERANCE
    for key in [*float_models, *ROUNDED]:
        row = table.loc[key]
        assert row["images"] == counts["val"] + counts["test"]
        assert 0.0 <= row["val_accuracy"] <= 1.0 and 0.0 <= row["test_accuracy"] <= 1.0
        assert row["ms_per_image"] > 0 and row["size_mb"] > 0
    for key in ROUNDED:
        # Rounded, not broken: probabilities stay close on average (a wrongly calibrated int8 file gives noise).
        assert table.loc[key, "mean_abs_diff"] <= 0.1, table.loc[key].to_dict()
    assert table.loc["tflite_int8", "runtime"] in ("LiteRT", "tf.lite")
    assert table.loc["keras", "runtime"] == "Keras" and table.loc["saved_model", "runtime"] == "TensorFlow"
    sizes = table["size_mb"]
    assert sizes["tflite_int8"] < 0.6 * sizes["tflite_float"] and sizes["tflite_float16"] < 0.7 * sizes["tflite_float"]
    assert export.cost_reading(exported["table"])[0].startswith("Compared with the TFLite float32 file")


def test_onnx_takes_raw_pixels_named_image_at_any_batch_size(exported):
    onnxruntime = pytest.importorskip("onnxruntime", reason="optional: pip install -r requirements-export.txt")
    from transfer_core.explore.explain import load_model, predict

    session = onnxruntime.InferenceSession(str(exported["bundle"].files["onnx"]), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == export.ONNX_INPUT_NAME
    images, _ = load_split_arrays(exported["spec"], "val", 64)
    outputs = session.run(None, {"image": images[:3]})[0]
    np.testing.assert_allclose(outputs, predict(load_model(exported["run_dir"]), images[:3]), atol=1e-5)


def test_int8_is_calibrated_on_training_images_only_and_runs_integer_inside_with_float_edges(exported):
    calibration = exported["bundle"].calibration
    train, _ = split_paths(exported["spec"], "train")
    held_out = set(split_paths(exported["spec"], "val")[0]) | set(split_paths(exported["spec"], "test")[0])
    # What the converter actually pulled from the representative dataset, file by file.
    assert calibration.read and set(calibration.read) == set(calibration.paths)
    assert len(calibration.read) == min(len(train), export.DEFAULT_CALIBRATION_IMAGES)
    assert set(calibration.read) <= set(train) and not set(calibration.read) & held_out
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(exported["bundle"].files["tflite_int8"]))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    kinds = [detail["dtype"] for detail in interpreter.get_tensor_details()]
    assert kinds.count(np.float32) == 2 and kinds.count(np.int8) > 10  # Only the input and output are float.
    export.save_parity(exported["table"], exported["run_dir"], exported["bundle"])
    details = export.load_parity_details(exported["run_dir"])
    assert details["calibration_images"] == calibration.read
    assert list(export.load_parity(exported["run_dir"])["format"]) == list(exported["table"]["format"])


def test_the_cli_exports_a_run_and_prints_the_table_and_json(exported, tmp_path):
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "transfer_core", "export", str(exported["run_dir"]),
               "--formats", "labels,tflite_float", "--report", str(report)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[1].split()[:2] == ["format", "MB"]
    assert lines[2].startswith("tflite_float") and lines[3].startswith("labels")
    data = json.loads(report.read_text())
    assert [row["format"] for row in data["rows"]] == ["tflite_float", "labels"]
    assert data["rows"][0]["top1_agreement"] == 1.0 and data["rows"][0]["test_accuracy"] is not None
    assert Path(data["files"]["tflite_float"]) == exported["run_dir"] / "export" / "model_float32.tflite"
    bad = subprocess.run([sys.executable, "-m", "transfer_core", "export", str(exported["run_dir"]), "--formats",
                          "keras,tfjs"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert bad.returncode == 2 and "formats must be a comma-separated list" in bad.stderr


@pytest.mark.parametrize("key", ["tflite_float", "tflite_int8", "onnx"])
def test_the_runner_prints_the_top_classes_the_app_gives(exported, tmp_path, key):
    if export.missing_packages(key):
        pytest.skip(f"optional: {key} needs {export.missing_packages(key)} (pip install -r requirements-export.txt)")
    from transfer_core.data import decode_for_model
    from transfer_core.explore.explain import load_model, predict

    bundle = exported["bundle"]
    shutil.copyfile(bundle.files[key], tmp_path / bundle.files[key].name)
    script = tmp_path / export.RUNNER_TEMPLATES[key]
    script.write_text(export.runner_script(exported["config"], key))
    val, _ = split_paths(exported["spec"], "val")
    model = load_model(exported["run_dir"])
    names = exported["spec"].class_names
    for image in val[:2]:  # PNG files: the runner's pixels are the app's exactly.
        completed = subprocess.run([sys.executable, script.name, image], capture_output=True, text=True,
                                   cwd=tmp_path, env=_clean_env(), timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
        printed = [line.rsplit(": ", 1) for line in completed.stdout.strip().splitlines()]
        probabilities = predict(model, decode_for_model(image, exported["config"].model.input_size))[0]
        order = np.argsort(-probabilities)
        assert len(printed) == min(3, len(names))
        if key != "tflite_int8":  # Float files: the same classes, in the same order, with the same percentages.
            assert [name for name, _ in printed] == [names[i] for i in order[:3]]
            assert [text for _, text in printed] == [f"{probabilities[i]:.1%}" for i in order[:3]]
        else:
            assert printed[0][0] == names[order[0]] or probabilities[order[0]] - probabilities[order[1]] < 0.2
