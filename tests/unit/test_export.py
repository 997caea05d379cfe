"""Export: files, parity with the live model, the reproducible script and the predict snippet."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.models import TINY_MODEL as TINY
from helpers.runs import make_finished_run, tiny_config

from transfer_core import export
from transfer_core.config import FreezePlan, ModelSpec, Settings
from transfer_core.data import load_split_arrays

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"


def _script_env() -> dict[str, str]:
    # The script must work without this project: no PYTHONPATH to it, and run from elsewhere.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A fine-tuned tiny run. With the shared ImageNet weights (when present) its predictions differ from image
    to image, which parity needs to mean anything: a randomly initialised MobileNet's features vanish
    (about 1e-12), so every image would get the same probabilities."""
    from transfer_core.data import make_demo_dataset

    root = tmp_path_factory.mktemp("export")
    spec = make_demo_dataset(root / "data", images_per_class=10, image_size=64)
    pretrained = (SHARED_WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5").is_file()
    model = ModelSpec(input_size=64, weights="imagenet", dropout_rate=0.0) if pretrained else TINY
    settings = Settings(home=root / "home", weights_dir=SHARED_WEIGHTS if pretrained else None)
    config = tiny_config(spec, model=model, strategy="fine_tuning", epochs=2, fine_tune_epochs=1,
                         learning_rate=3e-3)
    run_dir, result = make_finished_run(root / "runs", config, settings)
    return {"root": root, "spec": spec, "config": config, "run_dir": run_dir, "result": result,
            "pretrained": pretrained}


# The formats this module checks; every other format round-trips in test_export_runtimes.py.
FORMATS = ("keras", "saved_model", "tflite_float", "tflite_quantized", "labels")


@pytest.fixture(scope="module")
def bundle(finished):
    return export.export_run(finished["run_dir"], formats=FORMATS)


def test_export_writes_every_format(finished, bundle):
    assert set(bundle.files) == set(FORMATS)
    assert bundle.folder == finished["run_dir"] / "export"
    for name, path in bundle.files.items():
        assert path.is_file() and path.stat().st_size > 0, name
        assert path.name == export.EXPORT_FORMATS[name].file_name
    assert bundle.files["labels"].read_text().splitlines() == list(finished["spec"].class_names)
    with zipfile.ZipFile(bundle.files["saved_model"]) as archive:
        assert "saved_model/saved_model.pb" in archive.namelist()
    # Dynamic-range quantisation stores weights in 8 bits: clearly smaller than float32.
    assert bundle.files["tflite_quantized"].stat().st_size < 0.6 * bundle.files["tflite_float"].stat().st_size
    assert export.existing_exports(finished["run_dir"]) == bundle.files


def test_parity_check_passes_for_every_format(finished, bundle):
    parity = export.parity_check(finished["run_dir"], bundle)
    rows = parity.set_index("format")
    assert set(rows.index) == set(FORMATS)
    assert rows["passed"].all(), parity.to_string()
    for name in ("keras", "saved_model", "tflite_float"):
        assert rows.loc[name, "top1_agreement"] == 1.0
        assert rows.loc[name, "max_abs_diff"] <= export.FLOAT_TOLERANCE
        assert rows.loc[name, "images"] == finished["result"].report["num_val"]
    # The reloaded .keras file runs one image at a time, the reference in batches of 32: the same weights and
    # graph, only the float summation order of batched kernels differs (about 1e-7 here).
    assert rows.loc["keras", "max_abs_diff"] <= 1e-6
    assert rows.loc["tflite_quantized", "max_abs_diff"] <= export.QUANTIZED_MAX_DIFF
    if finished["pretrained"]:
        # A real model: outputs vary between images, and 8-bit weights change them measurably but a little.
        from transfer_core.explore.explain import load_model, predict

        images, _ = load_split_arrays(finished["spec"], "val", 64)
        assert predict(load_model(finished["run_dir"]), images).std(axis=0).max() > 0.01
        assert rows.loc["tflite_quantized", "max_abs_diff"] > 0
    print("\n" + parity[["format", "max_abs_diff", "top1_agreement", "size_mb"]].to_string(index=False))
    export.save_parity(parity, finished["run_dir"])
    loaded = export.load_parity(finished["run_dir"])
    assert list(loaded["format"]) == list(parity["format"]) and loaded["passed"].all()


def test_parity_check_reports_a_broken_file(finished, bundle, tmp_path):
    broken = tmp_path / "model_float32.tflite"
    broken.write_bytes(bundle.files["tflite_float"].read_bytes()[:1000])
    labels = tmp_path / "labels.txt"
    labels.write_text("wrong\norder\n")
    fake = export.ExportBundle(tmp_path, {"tflite_float": broken, "labels": labels})
    parity = export.parity_check(finished["run_dir"], fake).set_index("format")
    assert not parity.loc["tflite_float", "passed"]
    assert parity.loc["tflite_float", "note"].startswith("could not reload")
    assert not parity.loc["labels", "passed"]


def test_export_rejects_unknown_formats_and_runs_without_a_model(finished, tmp_path):
    with pytest.raises(ValueError, match="formats must be among"):
        export.export_run(finished["run_dir"], formats=["tfjs"])
    with pytest.raises(FileNotFoundError, match="no trained model"):
        export.export_keras(tmp_path, tmp_path / "out")


def test_labels_with_line_breaks_are_refused(tmp_path):
    with pytest.raises(ValueError, match="line breaks"):
        export.write_labels(["a", "b\nc"], tmp_path / "labels.txt")


# ----- the generated script ------------------------------------------------------------------------


def test_generated_script_is_standalone_python(finished):
    script = export.generate_script(finished["config"], "run-1", 0.75)
    tree = ast.parse(script)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "transfer_core" not in imported
    # The standard library (collections: the shared augmenter's type annotation), Keras, NumPy, TensorFlow.
    assert imported <= {"argparse", "collections", "csv", "hashlib", "math", "os", "pathlib", "keras", "numpy",
                        "tensorflow"}
    assert "STRATEGY = 'fine_tuning'" in script
    assert f"INPUT_SIZE = {finished['config'].model.input_size}" in script
    assert "UNFREEZE_FROM_LAYER = 'block_16_expand'" in script  # The top 2 blocks of MobileNetV2.
    assert "validation accuracy 0.7500" in script


def _load_script_module(path: Path):
    spec = importlib.util.spec_from_file_location("generated_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_script_reproduces_the_hash_split_of_a_plain_folder(finished, tmp_path):
    """A folder of class sub-folders, ingested by us and split by the script, gives the same split."""
    from transfer_core.data import ingest_folder, read_manifest

    source = tmp_path / "folder"
    manifest = read_manifest(finished["spec"])
    for _, row in manifest.iterrows():
        target = source / row["label"] / Path(row["path"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(finished["spec"].root) / row["path"], target)
    spec = ingest_folder(source, tmp_path / "ingested", seed=3, val_fraction=0.3,
                         settings=Settings(home=tmp_path / "home")).spec
    config = tiny_config(spec, model=TINY)
    script_path = tmp_path / "train.py"
    script_path.write_text(export.generate_script(config))
    module = _load_script_module(script_path)
    splits, source_kind = module.load_file_lists(source)
    assert source_kind.startswith("class folders")
    ours = read_manifest(spec)
    for split in ("train", "val"):
        rows = ours[ours["split"] == split]
        expected = sorted(zip(rows["sha256"], rows["label"], strict=True))
        got = sorted((hashlib.sha256(Path(p).read_bytes()).hexdigest(), module.CLASS_NAMES[i])
                     for p, i in zip(*splits[split], strict=True))
        assert got == expected, split
    # With the data set folder itself, the manifest gives the split directly.
    splits, source_kind = module.load_file_lists(Path(spec.root))
    assert source_kind.startswith("manifest.csv")
    assert len(splits["val"][0]) == int((ours["split"] == "val").sum())


def _run_script(script: str, data_root: str, workdir: Path, *args: str) -> tuple[str, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "train_run.py"
    path.write_text(script)
    output = workdir / "reproduced.keras"
    completed = subprocess.run(
        [sys.executable, str(path), data_root, "--output", str(output), *args],
        capture_output=True, text=True, cwd=workdir, env=_script_env(), timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout, output


def _val_accuracy(stdout: str) -> float:
    return float(re.search(r"^val_accuracy=([0-9.]+)$", stdout, re.MULTILINE).group(1))


@pytest.mark.parametrize("strategy", ["fine_tuning", "from_scratch"])
def test_generated_script_runs_and_rebuilds_the_same_model(finished, tmp_path, strategy):
    """Random weights (no download): the script trains, on the run's exact split, the same architecture
    with the same layers trainable. Accuracy is compared with real weights in the slow test below."""
    import keras

    from transfer_core.data import read_manifest

    config = finished["config"]
    if strategy != config.train.strategy:
        import dataclasses

        # A RunConfig refuses from scratch with pretrained weights: that run gets random ones.
        model = dataclasses.replace(config.model, weights="random") if strategy == "from_scratch" else config.model
        config = dataclasses.replace(config, model=model,
                                     train=dataclasses.replace(config.train, strategy=strategy, epochs=1))
    stdout, output = _run_script(export.generate_script(config), config.dataset.root, tmp_path, "--weights", "random")
    manifest = read_manifest(config.dataset)
    counts = manifest["split"].value_counts()
    assert f"{counts['train']} training and {counts['val']} validation images" in stdout
    assert "manifest.csv" in stdout
    assert 0.0 <= _val_accuracy(stdout) <= 1.0
    reproduced = keras.saving.load_model(output, safe_mode=True, compile=False)
    original = keras.saving.load_model(finished["run_dir"] / "model.keras", safe_mode=True, compile=False)
    assert [layer.name for layer in reproduced.layers] == [layer.name for layer in original.layers]
    assert reproduced.count_params() == original.count_params()
    if strategy == "fine_tuning":
        # Stage 2 unfroze the same layers (BatchNorm kept frozen) as the run did.
        def trainable(model):
            return sorted(w.path for w in model.get_layer("backbone").trainable_weights)

        assert trainable(reproduced) == trainable(original)
        assert trainable(original)  # Something was unfrozen.
    else:
        # The app's from-scratch BatchNorm momentum (0.9), or the script's baseline would sit at chance.
        momenta = {layer.momentum for layer in reproduced.get_layer("backbone").layers
                   if isinstance(layer, keras.layers.BatchNormalization)}
        assert momenta == {0.9}


def test_predict_snippet_loads_the_export_and_agrees_with_the_model(finished, bundle, tmp_path):
    from transfer_core.data import read_manifest
    from transfer_core.explore.explain import load_model, predict

    shutil.copyfile(bundle.files["keras"], tmp_path / "model.keras")
    (tmp_path / "predict.py").write_text(export.predict_snippet(finished["config"]))
    manifest = read_manifest(finished["spec"])
    image = Path(finished["spec"].root) / manifest.loc[manifest["split"] == "val", "path"].iloc[0]
    completed = subprocess.run([sys.executable, "predict.py", str(image)], capture_output=True, text=True,
                               cwd=tmp_path, env=_script_env(), timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    first_line = completed.stdout.strip().splitlines()[0]
    from transfer_core.data import decode_for_model

    probabilities = predict(load_model(finished["run_dir"]), decode_for_model(image, finished["config"].model.input_size))[0]
    expected = finished["spec"].class_names[int(np.argmax(probabilities))]
    assert first_line.startswith(f"{expected}: ")


@pytest.mark.slow
def test_generated_script_reaches_the_runs_accuracy_with_real_weights(shared_weights_dir, tmp_path):
    """Real ImageNet weights, 96 px demo images: the script's validation accuracy is close to the run's.

    Tolerance 0.1 on 32 validation images (about 3 images): the backbone, split, recipe and settings are
    the same, so the two differ only in the head's random start, dropout masks and batch order; with
    accuracies above 85% the binomial noise of one run on 32 images is about 0.05, so two independent
    runs differ by more than 0.1 rarely (about 2 standard deviations).
    """
    from transfer_core.data import make_demo_dataset

    spec = make_demo_dataset(tmp_path / "data", images_per_class=40, image_size=96)
    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    config = tiny_config(spec, model=ModelSpec(input_size=96), strategy="fine_tuning", epochs=5,
                         fine_tune_epochs=2, batch_size=16, freeze=FreezePlan(mode="top_blocks", top_blocks=2))
    run_dir, result = make_finished_run(tmp_path / "runs", config, settings)
    run_accuracy = result.report["val_accuracy"]
    stdout, _ = _run_script(export.generate_script(config), spec.root, tmp_path / "script",
                            "--weights-dir", str(shared_weights_dir))
    script_accuracy = _val_accuracy(stdout)
    print(f"\nrun val accuracy {run_accuracy:.4f}, script val accuracy {script_accuracy:.4f}")
    assert run_accuracy >= 0.8
    assert abs(script_accuracy - run_accuracy) <= 0.1
