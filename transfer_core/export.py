"""Take a trained model away: .keras, SavedModel, TFLite, labels, a parity check, a reproducible script.

Every exported model holds its preprocessing, so it takes raw RGB pixels
(float 0..255) at the run's input size, exactly what ``decode_for_model`` and
the training pipeline give. Files go to ``<run>/export/`` and are written
atomically (temporary name, then rename), so two browser sessions exporting
the same run never see half a file.

The parity check reloads each exported file in this process and compares its
predictions with the run's own model on the validation images: the largest
absolute difference in any class probability, and the share of images whose
top-1 class agrees.

:func:`generate_script` writes a standalone Python script that reproduces the
run with plain Keras/TensorFlow (no ``transfer_core``): the same split (read
from the data set's ``manifest.csv`` when present), backbone, preprocessing,
head and two-stage recipe.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.config import RunConfig
from transfer_core.fileio import atomic_path

__all__ = [
    "EXPORT_FOLDER",
    "FILE_NAMES",
    "FLOAT_FORMATS",
    "FORMATS",
    "ExportBundle",
    "export_keras",
    "export_run",
    "export_saved_model",
    "export_tflite",
    "existing_exports",
    "generate_script",
    "load_parity",
    "parity_check",
    "predict_snippet",
    "save_parity",
    "write_labels",
]

EXPORT_FOLDER = "export"
FORMATS = ("keras", "saved_model", "tflite_float", "tflite_quantized", "labels")
FLOAT_FORMATS = ("keras", "saved_model", "tflite_float")
FILE_NAMES = {
    "keras": "model.keras",
    "saved_model": "saved_model.zip",
    "tflite_float": "model_float32.tflite",
    "tflite_quantized": "model_dynamic_range.tflite",
    "labels": "labels.txt",
}
FORMAT_NAMES = {
    "keras": "Keras (.keras)",
    "saved_model": "TensorFlow SavedModel (zip)",
    "tflite_float": "TFLite, float32",
    "tflite_quantized": "TFLite, dynamic-range quantised (int8 weights)",
    "labels": "labels.txt",
}
# A float export must reproduce the live model's probabilities to this precision.
FLOAT_TOLERANCE = 1e-4
# Dynamic-range quantisation rounds weights to 8 bits, which moves probabilities a little, so images the
# live model was unsure about may change class. It passes when at most this share of the images (and at
# least one image is always allowed, for tiny validation sets) changes class and no probability moves by
# more than QUANTIZED_MAX_DIFF.
QUANTIZED_MAX_FLIP_SHARE = 0.05
QUANTIZED_MAX_DIFF = 0.25


@dataclass
class ExportBundle:
    """The exported files of one run.

    Attributes:
        folder: ``<run>/export``.
        files: Format (see :data:`FORMATS`) -> file.
        seconds: Format -> seconds it took to produce.
    """

    folder: Path
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _atomic_copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _model_file(run_dir: Path) -> Path:
    path = Path(run_dir) / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"Run {Path(run_dir).name} has no trained model (model.keras is missing).")
    return path


def export_keras(run_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Copy the run's ``model.keras`` into ``out_dir``.

    Args:
        run_dir: The run directory.
        out_dir: Where the export goes.

    Returns:
        The copied file.

    Raises:
        FileNotFoundError: The run has no model.
    """
    target = Path(out_dir) / FILE_NAMES["keras"]
    _atomic_copy(_model_file(Path(run_dir)), target)
    return target


def _zip_folder(folder: Path, archive: Path, root_name: str) -> None:
    with atomic_path(archive) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, f"{root_name}/{path.relative_to(folder).as_posix()}")


def export_saved_model(model: Any, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Export a model as a TensorFlow SavedModel folder and a zip of it.

    Uses Keras 3's ``model.export`` (format ``tf_saved_model``): the artifact holds
    the forward pass only (endpoint ``serve`` and signature ``serving_default``)
    and loads with ``tf.saved_model.load`` without Keras or this project.

    Args:
        model: The classifier.
        out_dir: Where the export goes.

    Returns:
        ``(folder, zip_file)``: ``out_dir/saved_model`` and ``out_dir/saved_model.zip``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = out_dir / "saved_model"
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".saved_model."))
    try:
        model.export(str(staging / "saved_model"), format="tf_saved_model", verbose=False)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging / "saved_model", folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    archive = out_dir / FILE_NAMES["saved_model"]
    _zip_folder(folder, archive, "saved_model")
    return folder, archive


def export_tflite(saved_model_dir: str | os.PathLike, out_path: str | os.PathLike, quantize: bool = False) -> Path:
    """Convert a SavedModel folder to TensorFlow Lite.

    Args:
        saved_model_dir: From :func:`export_saved_model`.
        out_path: The ``.tflite`` file to write.
        quantize: Dynamic-range quantisation: weights stored as 8-bit integers
            (about 4x smaller), activations stay float; no calibration data needed.

    Returns:
        ``out_path``.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    flatbuffer = converter.convert()
    out_path = Path(out_path)
    from transfer_core.fileio import atomic_write_bytes

    atomic_write_bytes(out_path, bytes(flatbuffer))
    return out_path


def write_labels(class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write one class name per line, in the model's output order.

    Args:
        class_names: Names in output order.
        path: The file to write.

    Returns:
        ``path``.

    Raises:
        ValueError: A class name contains a line break (it would shift every later label).
    """
    from transfer_core.fileio import atomic_write_text

    bad = [name for name in class_names if "\n" in name or "\r" in name]
    if bad:
        raise ValueError(f"Class names cannot contain line breaks in labels.txt. Received: {bad}")
    path = Path(path)
    atomic_write_text(path, "".join(f"{name}\n" for name in class_names))
    return path


def export_run(
    run_dir: str | os.PathLike,
    formats: Sequence[str] = FORMATS,
    out_dir: str | os.PathLike | None = None,
    model: Any | None = None,
) -> ExportBundle:
    """Export a finished run in the chosen formats.

    Args:
        run_dir: The run directory (must hold ``model.keras`` and ``config.json``).
        formats: Any of :data:`FORMATS`; TFLite needs the SavedModel, which is then made too.
        out_dir: Where files go (``<run>/export`` when None).
        model: The run's model if already loaded (else it is loaded in safe mode).

    Returns:
        An :class:`ExportBundle`.

    Raises:
        FileNotFoundError: The run has no model.
        ValueError: An unknown format.
    """
    from transfer_core.explain import load_model
    from transfer_core.runs import load_run

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"formats must be among {FORMATS}. Received: formats={list(formats)}")
    run_dir = Path(run_dir)
    _model_file(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / EXPORT_FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = ExportBundle(out_dir)
    info = load_run(run_dir)

    def timed(name: str, action) -> None:
        started = time.perf_counter()
        bundle.files[name] = action()
        bundle.seconds[name] = round(time.perf_counter() - started, 3)

    if "keras" in formats:
        timed("keras", lambda: export_keras(run_dir, out_dir))
    if "labels" in formats:
        names = info.config.dataset.class_names if info.config else ()
        timed("labels", lambda: write_labels(names, out_dir / FILE_NAMES["labels"]))
    needs_saved_model = any(f in formats for f in ("saved_model", "tflite_float", "tflite_quantized"))
    if needs_saved_model:
        model = model if model is not None else load_model(run_dir)
        started = time.perf_counter()
        folder, archive = export_saved_model(model, out_dir)
        bundle.seconds["saved_model"] = round(time.perf_counter() - started, 3)
        if "saved_model" in formats:
            bundle.files["saved_model"] = archive
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if "tflite_float" in formats:
                timed("tflite_float", lambda: export_tflite(folder, out_dir / FILE_NAMES["tflite_float"]))
            if "tflite_quantized" in formats:
                timed("tflite_quantized",
                      lambda: export_tflite(folder, out_dir / FILE_NAMES["tflite_quantized"], quantize=True))
    return bundle


def existing_exports(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Exported files already in ``<run>/export``.

    Args:
        run_dir: The run directory.

    Returns:
        Format -> file, for the formats whose file exists.
    """
    folder = Path(run_dir) / EXPORT_FOLDER
    return {name: folder / file for name, file in FILE_NAMES.items() if (folder / file).is_file()}


# ----- parity -----------------------------------------------------------------------------------

PARITY_FILE = "parity.json"


def save_parity(frame: pd.DataFrame, run_dir: str | os.PathLike) -> Path:
    """Keep a parity report beside the exported files (``<run>/export/parity.json``).

    Args:
        frame: From :func:`parity_check`.
        run_dir: The run directory.

    Returns:
        The JSON file.
    """
    from transfer_core.fileio import atomic_write_json

    path = Path(run_dir) / EXPORT_FOLDER / PARITY_FILE
    clean = frame.astype(object).where(frame.notna(), None)
    atomic_write_json(path, {"checked": time.time(), "rows": clean.to_dict(orient="records")})
    return path


def load_parity(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The parity report saved by :func:`save_parity`, or None.

    Args:
        run_dir: The run directory.

    Returns:
        The frame, or None when there is none (or it is unreadable).
    """
    path = Path(run_dir) / EXPORT_FOLDER / PARITY_FILE
    try:
        return pd.DataFrame(json.loads(path.read_text())["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


_TFLITE_RUNNER = """
import os, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
import tensorflow as tf
folder = sys.argv[1]
images = np.load(os.path.join(folder, "images.npy"))
for index, path in enumerate(sys.argv[2:]):
    try:
        interpreter = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count() or 1)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], list(images.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail["index"], images.astype(np.float32))
        started = time.perf_counter()
        interpreter.invoke()
        with open(os.path.join(folder, f"time{index}.txt"), "w") as handle:
            handle.write(str(time.perf_counter() - started))
        output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.save(os.path.join(folder, f"out{index}.npy"), output)
    except Exception as error:
        with open(os.path.join(folder, f"err{index}.txt"), "w") as handle:
            handle.write(f"{type(error).__name__}: {error}")
"""


def _tflite_predict(paths: Sequence[Path], images: np.ndarray) -> list[tuple[np.ndarray, float] | str]:
    """Run TFLite files on ``images`` in a child process: ``(outputs, seconds)`` per file, or an error text.

    A damaged ``.tflite`` file can crash the TFLite interpreter outright (a segmentation fault, not an
    exception), so the files are never loaded in this process: a crash costs the child, not the server.
    """
    import subprocess
    import sys

    with tempfile.TemporaryDirectory(prefix="tflite-parity-") as tmp:
        np.save(Path(tmp) / "images.npy", images.astype(np.float32))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        completed = subprocess.run(
            [sys.executable, "-c", _TFLITE_RUNNER, tmp, *(str(p) for p in paths)],
            capture_output=True, text=True, env=env, timeout=600,
        )
        results: list[tuple[np.ndarray, float] | str] = []
        for index in range(len(paths)):
            output, error = Path(tmp) / f"out{index}.npy", Path(tmp) / f"err{index}.txt"
            if output.exists():
                results.append((np.load(output), float((Path(tmp) / f"time{index}.txt").read_text())))
            elif error.exists():
                results.append(error.read_text())
            else:
                results.append(
                    f"the TFLite interpreter crashed on this file (exit code {completed.returncode}): "
                    "the file is probably damaged"
                )
        return results


def _batched(predict_fn, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    return np.concatenate([predict_fn(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def _saved_model_predict(archive: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        with zipfile.ZipFile(archive) as handle:
            for member in handle.namelist():
                target = (Path(tmp) / member).resolve()
                if not str(target).startswith(str(Path(tmp).resolve()) + os.sep):
                    raise ValueError(f"Unsafe path in the SavedModel archive. Received: {member!r}")
            handle.extractall(tmp)
        loaded = tf.saved_model.load(str(Path(tmp) / "saved_model"))
        return _batched(lambda x: loaded.serve(tf.constant(x)).numpy(), images)


def parity_check(
    run_dir: str | os.PathLike,
    bundle: ExportBundle,
    *,
    max_images: int = 256,
    reference_model: Any | None = None,
) -> pd.DataFrame:
    """Reload each exported file and compare its predictions with the run's model.

    Args:
        run_dir: The run directory.
        bundle: From :func:`export_run`.
        max_images: Compare on at most this many validation images (manifest order).
        reference_model: The run's model if already loaded.

    Returns:
        One row per format: ``format``, ``name``, ``file``, ``size_mb``, ``images``,
        ``max_abs_diff`` (largest difference of any class probability),
        ``mean_abs_diff``, ``top1_agreement`` (0..1), ``ms_per_image``, ``passed``,
        ``note``. Float formats pass with 100% agreement and a difference below
        :data:`FLOAT_TOLERANCE`; the quantised TFLite passes when at most
        :data:`QUANTIZED_MAX_FLIP_SHARE` of the images (at least one) change class and
        the difference stays below :data:`QUANTIZED_MAX_DIFF`.

    Raises:
        FileNotFoundError: The run has no model.
    """
    import keras

    from transfer_core.data import load_split_arrays
    from transfer_core.explain import load_model, predict
    from transfer_core.runs import load_run

    run_dir = Path(run_dir)
    info = load_run(run_dir)
    reference_model = reference_model if reference_model is not None else load_model(run_dir)
    size = int(reference_model.inputs[0].shape[1])
    images, _ = load_split_arrays(info.config.dataset, "val", size)
    images = images[:max_images]
    reference = predict(reference_model, images)
    class_names = list(info.config.dataset.class_names)
    tflite_names = [name for name in ("tflite_float", "tflite_quantized") if name in bundle.files]
    tflite_outputs: dict[str, tuple[np.ndarray, float] | str] = {}
    if tflite_names and len(images):
        tflite_outputs = dict(zip(tflite_names, _tflite_predict([bundle.files[n] for n in tflite_names], images),
                                  strict=True))
    rows = []
    for name in FORMATS:
        path = bundle.files.get(name)
        if path is None:
            continue
        row: dict[str, Any] = {
            "format": name,
            "name": FORMAT_NAMES[name],
            "file": path.name,
            "size_mb": round(path.stat().st_size / 1e6, 3),
            "images": len(images),
            "max_abs_diff": None,
            "mean_abs_diff": None,
            "top1_agreement": None,
            "ms_per_image": None,
            "passed": False,
            "note": "",
        }
        try:
            if name == "labels":
                row["images"] = None
                lines = path.read_text(encoding="utf-8").splitlines()
                row["passed"] = lines == class_names
                row["note"] = (
                    f"{len(lines)} labels in the model's output order"
                    if row["passed"]
                    else f"labels differ from the run's classes {class_names}"
                )
                rows.append(row)
                continue
            started = time.perf_counter()
            if name == "keras":
                loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
                outputs = predict(loaded, images)
            elif name == "saved_model":
                outputs = _saved_model_predict(path, images)
            else:
                result = tflite_outputs.get(name, (np.zeros_like(reference), 0.0))
                if isinstance(result, str):
                    raise RuntimeError(result)
                outputs, invoke_seconds = result
            elapsed = invoke_seconds if name.startswith("tflite") else time.perf_counter() - started
        except Exception as error:  # noqa: BLE001 - a broken export is a failed row, not a crash.
            row["note"] = f"could not reload: {type(error).__name__}: {error}"
            rows.append(row)
            continue
        difference = np.abs(outputs - reference) if len(images) else np.zeros((0,))
        agreement = float((outputs.argmax(1) == reference.argmax(1)).mean()) if len(images) else 1.0
        row.update(
            max_abs_diff=float(difference.max()) if difference.size else 0.0,
            mean_abs_diff=float(difference.mean()) if difference.size else 0.0,
            top1_agreement=agreement,
            ms_per_image=round(1000 * elapsed / max(len(images), 1), 2),
        )
        if name == "tflite_quantized":
            flipped = outputs.argmax(1) != reference.argmax(1)
            ordered = np.sort(reference, axis=1)
            margins = (ordered[:, -1] - ordered[:, -2])[flipped] if reference.shape[1] > 1 else np.zeros(0)
            allowed = max(1, int(QUANTIZED_MAX_FLIP_SHARE * len(images)))
            row["passed"] = int(flipped.sum()) <= allowed and row["max_abs_diff"] <= QUANTIZED_MAX_DIFF
            row["note"] = "8-bit weights: small differences are expected"
            if flipped.any():
                row["note"] += (
                    f"; {int(flipped.sum())} image(s) changed class (the model's lead there was "
                    f"{', '.join(f'{m:.2f}' for m in margins[:5])})"
                )
        else:
            row["passed"] = agreement == 1.0 and row["max_abs_diff"] <= FLOAT_TOLERANCE
            row["note"] = "identical predictions" if row["passed"] else "predictions differ from the live model"
        rows.append(row)
    return pd.DataFrame(rows)


# ----- the reproducible script ---------------------------------------------------------------------


def _stage2_trainable(config: RunConfig) -> tuple[str | None, list[str]]:
    """Backbone layers that fine-tuning unfreezes: ``(first_layer, [])`` for a suffix, else ``(None, names)``."""
    from transfer_core import freezing, zoo

    size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    base = zoo.build_backbone(config.model.backbone, size, weights="random")
    # BatchNorm is handled by the script itself (TRAIN_BATCHNORM), so mark it trainable here.
    freezing.apply_freeze_plan(base, dataclasses.replace(config.freeze, train_batchnorm=True))
    mask = [bool(layer.trainable) for layer in base.layers] if base.trainable else [False] * len(base.layers)
    names = [layer.name for layer in base.layers]
    if True in mask:
        first = mask.index(True)
        if all(mask[first:]):
            return names[first], []
    return None, [n for n, m in zip(names, mask, strict=True) if m]


def _weights_files(config: RunConfig) -> tuple[list[str], str]:
    from transfer_core import zoo

    info = zoo.get_backbone_info(config.model.backbone)
    size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    return zoo.candidate_weight_files(info.key, size, include_top=False), info.weights_origin


def generate_script(config: RunConfig, run_id: str = "", val_accuracy: float | None = None) -> str:
    """A standalone Python script that reproduces a run with plain Keras/TensorFlow.

    The script reads the data set's ``manifest.csv`` when the folder has one (the
    run's exact split), else a folder with one sub-folder per class (inside
    ``train/`` and ``val/`` when present, otherwise split by the same
    content-hash rule). It builds the same backbone, preprocessing and head,
    trains with the same recipe and settings, prints the validation accuracy
    and saves ``model.keras``.

    Args:
        config: The run's configuration.
        run_id: Named in the script's docstring.
        val_accuracy: The run's validation accuracy, quoted in the docstring.

    Returns:
        The script's source text.
    """
    from transfer_core import zoo

    model, train, freeze, dataset = config.model, config.train, config.freeze, config.dataset
    info = zoo.get_backbone_info(model.backbone)
    size = zoo.check_input_size(model.backbone, model.input_size)
    unfreeze_from, trainable_layers = (None, [])
    if train.strategy == "fine_tuning":
        unfreeze_from, trainable_layers = _stage2_trainable(config)
    weights_files, weights_origin = _weights_files(config)
    accuracy = f" (validation accuracy {val_accuracy:.4f})" if val_accuracy is not None else ""
    constants = {
        "CLASS_NAMES": list(dataset.class_names),
        "BACKBONE": info.constructor,
        "BACKBONE_KWARGS": dict(info.constructor_kwargs),
        "BACKBONE_FAMILY": info.family,
        "PREPROCESSING": info.preprocessing,
        "INPUT_SIZE": size,
        "WEIGHTS": model.weights,
        "WEIGHTS_FILES": weights_files,
        "WEIGHTS_ORIGIN": weights_origin,
        "DROPOUT_RATE": model.dropout_rate,
        "HIDDEN_UNITS": model.hidden_units,
        "STRATEGY": train.strategy,
        "EPOCHS": train.epochs,
        "FINE_TUNE_EPOCHS": train.fine_tune_epochs if train.strategy == "fine_tuning" else 0,
        "BATCH_SIZE": train.batch_size,
        "LEARNING_RATE": train.learning_rate,
        "FINE_TUNE_LEARNING_RATE": train.fine_tune_learning_rate,
        "OPTIMIZER": train.optimizer,
        "AUGMENTATION": list(train.augmentation),
        "EARLY_STOPPING_PATIENCE": train.early_stopping_patience,
        "CLASS_WEIGHTS": train.class_weights,
        "SEED": train.seed,
        "PRECISION": train.precision,
        "SPLIT_SEED": dataset.seed,
        "VAL_FRACTION": dataset.val_fraction,
        "TEST_FRACTION": dataset.test_fraction,
        "UNFREEZE_FROM_LAYER": unfreeze_from,
        "UNFREEZE_LAYERS": trainable_layers,
        "TRAIN_BATCHNORM": bool(freeze.train_batchnorm or train.strategy == "from_scratch"),
    }
    lines = [f"{name} = {value!r}" for name, value in constants.items()]
    header = _SCRIPT_HEADER.format(
        run=run_id or "(unnamed)",
        accuracy=accuracy,
        created=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        strategy=train.strategy.replace("_", " "),
        backbone=info.display_name,
        size=size,
    )
    return header + "\n".join(lines) + "\n" + _SCRIPT_BODY


def predict_snippet(config: RunConfig, model_file: str = FILE_NAMES["keras"]) -> str:
    """A short script that loads the exported ``.keras`` model and predicts one image.

    Args:
        config: The run's configuration (class names, input size).
        model_file: The exported model's file name.

    Returns:
        Python source text.
    """
    from transfer_core import zoo

    size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    return _SNIPPET.format(
        model_file=model_file,
        class_names=json.dumps(list(config.dataset.class_names)),
        size=size,
    )


_SNIPPET = '''"""Predict one image with the exported model. Usage: python predict.py IMAGE"""
import sys

import keras
import numpy as np
import tensorflow as tf

CLASS_NAMES = {class_names}  # Also in labels.txt, one per line, in this order.
INPUT_SIZE = {size}

model = keras.saving.load_model("{model_file}")
# Raw RGB pixels in 0..255: the preprocessing is inside the model.
image = tf.io.decode_image(tf.io.read_file(sys.argv[1]), channels=3, expand_animations=False)
image = tf.image.resize(image, (INPUT_SIZE, INPUT_SIZE), method="bilinear")
image = tf.clip_by_value(tf.round(image), 0.0, 255.0)  # Whole numbers, as the app's pipeline gives.
probabilities = model.predict(image[None], verbose=0)[0]
for index in np.argsort(-probabilities)[:3]:
    print(f"{{CLASS_NAMES[index]}}: {{probabilities[index]:.1%}}")
'''

_SCRIPT_HEADER = '''#!/usr/bin/env python
"""Reproduce Transfer Lab run {run}{accuracy} with plain Keras and TensorFlow.

Generated {created} UTC. Strategy: {strategy}; backbone: {backbone} at {size}x{size} pixels.

Usage:
    python this_script.py DATA_FOLDER [--weights imagenet|random|FILE.h5] [--weights-dir DIR] [--output model.keras]

DATA_FOLDER is either the Transfer Lab data set folder (it holds manifest.csv, which gives
exactly the run's train/validation split), or a folder with one sub-folder of images per class
(optionally inside train/ and val/ folders). For a plain folder the split is recomputed with the
same rule (content hash and seed), so unchanged image files land in the same split.

Needs only TensorFlow 2.16+ and Keras 3. Results match the run closely but not bit for bit:
random initialisation and dropout draw different random numbers outside the app.
"""

import argparse
import csv
import hashlib
import math
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

# ----- The run's settings ---------------------------------------------------------------------
'''

_SCRIPT_BODY = '''
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
CLASS_INDEX = {name: index for index, name in enumerate(CLASS_NAMES)}


# ----- Data -------------------------------------------------------------------------------------


def split_sizes(count):
    """How many of a class's images go to validation and test (the Transfer Lab rule)."""
    if count < 2:
        return 0, 0
    n_val = max(1, math.floor(count * VAL_FRACTION + 0.5))
    n_test = math.floor(count * TEST_FRACTION + 0.5)
    if TEST_FRACTION > 0 and count >= 3:
        n_test = max(1, n_test)
    while n_val + n_test > count - 1 and n_test > 0:
        n_test -= 1
    return min(n_val, count - 1 - n_test), n_test


def images_in(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_file_lists(data_dir):
    """{"train": (paths, labels), "val": (paths, labels)} and where the split came from."""
    splits = {"train": ([], []), "val": ([], [])}
    manifest = data_dir / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["split"] in splits and row["label"] in CLASS_INDEX:
                    splits[row["split"]][0].append(str(data_dir / row["path"]))
                    splits[row["split"]][1].append(CLASS_INDEX[row["label"]])
        return splits, "manifest.csv (the run's exact split)"
    if (data_dir / "train").is_dir() and (data_dir / "val").is_dir():
        for split in ("train", "val"):
            for name in CLASS_NAMES:
                for path in images_in(data_dir / split / name):
                    splits[split][0].append(str(path))
                    splits[split][1].append(CLASS_INDEX[name])
        return splits, "the folder's own train/ and val/ sub-folders"
    for name in CLASS_NAMES:
        files = images_in(data_dir / name)
        digests = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
        order = sorted(
            files,
            key=lambda p: (hashlib.sha256(f"{SPLIT_SEED}:{digests[p]}".encode()).hexdigest(), digests[p], p.name),
        )
        n_val, n_test = split_sizes(len(order))
        for position, path in enumerate(order):
            split = "val" if position < n_val else ("test" if position < n_val + n_test else "train")
            if split in splits:
                splits[split][0].append(str(path))
                splits[split][1].append(CLASS_INDEX[name])
    return splits, "class folders, split by content hash and seed"


def decode(path, label):
    # The same decode and resize as Transfer Lab's pipeline: bilinear, no crop, whole numbers 0..255.
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, (INPUT_SIZE, INPUT_SIZE), method="bilinear")
    return tf.clip_by_value(tf.round(image), 0.0, 255.0), label


def make_dataset(paths, labels, shuffle):
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, dtype=np.int32)))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=SEED, reshuffle_each_iteration=True)
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle and AUGMENTATION:
        augment = augmenter()
        dataset = dataset.batch(BATCH_SIZE).map(lambda x, y: (augment(x, training=True), y))
    else:
        dataset = dataset.batch(BATCH_SIZE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def augmenter():
    layers = []
    if "flip" in AUGMENTATION:
        layers.append(keras.layers.RandomFlip("horizontal", seed=SEED))
    if "rotate" in AUGMENTATION:
        layers.append(keras.layers.RandomRotation(0.1, seed=SEED))
    if "zoom" in AUGMENTATION:
        layers.append(keras.layers.RandomZoom(0.15, seed=SEED))
    if "contrast" in AUGMENTATION:
        layers.append(keras.layers.RandomContrast(0.2, seed=SEED, value_range=(0, 255)))
    return keras.Sequential(layers, name="augmentation")


# ----- Model ------------------------------------------------------------------------------------


def resolve_weights(choice, weights_dir):
    """None (random), or a local weights file: given, found offline, or downloaded by Keras."""
    if choice == "random":
        return None
    if choice != "imagenet":
        return choice
    folders = [Path(weights_dir).expanduser()] if weights_dir else []
    folders.append(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models")
    for name in WEIGHTS_FILES:
        for folder in folders:
            if (folder / name).is_file():
                return str(folder / name)
    name = WEIGHTS_FILES[0]
    return keras.utils.get_file(name, WEIGHTS_ORIGIN + name, cache_subdir="models")


def preprocessing_layers():
    """Stock layers that map raw 0..255 RGB to what the backbone expects (inside the model)."""
    if PREPROCESSING == "tf":
        return [keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="preprocess_tf")]
    if PREPROCESSING == "torch":
        std = (0.229, 0.224, 0.225)
        return [
            keras.layers.Rescaling(scale=1.0 / 255.0, name="preprocess_torch_scale"),
            keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[s * s for s in std],
                                       name="preprocess_torch_normalize"),
        ]
    if PREPROCESSING == "caffe":
        # RGB -> BGR and minus the ImageNet mean, as one frozen 1x1 convolution.
        flip = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name="preprocess_caffe_bgr")
        flip.build((None, None, None, 3))
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_channel in range(3):
            kernel[0, 0, 2 - out_channel, out_channel] = 1.0
        flip.set_weights([kernel, -np.asarray([103.939, 116.779, 123.68], dtype="float32")])
        return [flip]
    return []  # The backbone preprocesses inside itself.


def build_backbone(weights_path):
    application = getattr(keras.applications, BACKBONE)(
        include_top=False, weights=weights_path, input_shape=(INPUT_SIZE, INPUT_SIZE, 3), pooling=None,
        **BACKBONE_KWARGS,
    )
    if weights_path is not None and BACKBONE_FAMILY == "efficientnet":
        # Keras adds a rescaling step only when it downloads EfficientNet weights itself; match it.
        norm = next(layer for layer in application.layers if isinstance(layer, keras.layers.Normalization))
        norm.adapt_variance.assign(np.asarray(norm.adapt_variance) * np.asarray([0.229, 0.224, 0.225]))
        norm.finalize_state()
    return keras.Model(application.input, application.output, name="backbone")


def build_head(feature_dim):
    features = keras.Input(shape=(feature_dim,), name="features")
    x = features
    if DROPOUT_RATE > 0:
        x = keras.layers.Dropout(DROPOUT_RATE, name="dropout")(x)
    if HIDDEN_UNITS > 0:
        x = keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="hidden")(x)
        if DROPOUT_RATE > 0:
            x = keras.layers.Dropout(DROPOUT_RATE, name="hidden_dropout")(x)
    # float32 output even under a mixed-precision policy: a 16-bit softmax loses small probabilities.
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="classifier", dtype="float32")(x)
    return keras.Model(features, outputs, name="head")


def build_model(weights_path):
    """image -> preprocessing -> backbone -> global average pooling -> head."""
    backbone = build_backbone(weights_path)
    backbone.trainable = False
    image = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = image
    for layer in preprocessing_layers():
        x = layer(x)
    # training=False keeps BatchNormalization in inference mode even when unfrozen (the Keras recipe).
    x = backbone(x, training=None if TRAIN_BATCHNORM else False)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = build_head(int(features.shape[-1]))
    model = keras.Model(image, head(features), name="classifier")
    feature_extractor = keras.Model(image, features, name="feature_extractor")
    return model, backbone, head, feature_extractor


def unfreeze(backbone):
    """Stage 2: unfreeze the layers the run fine-tuned; BatchNorm stays frozen unless the run let it train."""
    backbone.trainable = True
    names = [layer.name for layer in backbone.layers]
    first = names.index(UNFREEZE_FROM_LAYER) if UNFREEZE_FROM_LAYER else None
    for index, layer in enumerate(backbone.layers):
        trainable = index >= first if first is not None else layer.name in UNFREEZE_LAYERS
        if STRATEGY == "from_scratch":
            trainable = True
        if isinstance(layer, keras.layers.BatchNormalization) and not TRAIN_BATCHNORM:
            trainable = False
        layer.trainable = trainable


# ----- Training ---------------------------------------------------------------------------------


def optimizer(learning_rate):
    if OPTIMIZER == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if OPTIMIZER == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if OPTIMIZER == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def compile_model(model, learning_rate):
    # Compile again after every change of `trainable`: that is what makes it take effect.
    model.compile(optimizer=optimizer(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def callbacks():
    if EARLY_STOPPING_PATIENCE:
        return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=EARLY_STOPPING_PATIENCE,
                                              restore_best_weights=True)]
    return []


def class_weights(labels):
    if not CLASS_WEIGHTS:
        return None
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(float)
    return {i: float(counts.sum() / (len(CLASS_NAMES) * c)) if c else 0.0 for i, c in enumerate(counts)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="data set folder (manifest.csv, or one sub-folder per class)")
    parser.add_argument("--weights", default=WEIGHTS, help='"imagenet", "random" or a path to a .h5 weights file')
    parser.add_argument("--weights-dir", default=os.environ.get("TRANSFER_WEIGHTS_DIR", ""),
                        help="folder with Keras weight files (searched before downloading)")
    parser.add_argument("--output", default="model.keras", help="where to save the trained model")
    args = parser.parse_args()

    keras.utils.set_random_seed(SEED)
    precision = PRECISION
    if precision == "auto":
        precision = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(precision)
    splits, source = load_file_lists(args.data)
    (train_paths, train_labels), (val_paths, val_labels) = splits["train"], splits["val"]
    print(f"Split from {source}: {len(train_paths)} training and {len(val_paths)} validation images.")
    if not train_paths or not val_paths:
        raise SystemExit("Need images in both the training and the validation split.")
    train_labels = np.asarray(train_labels, dtype=np.int32)
    val_labels = np.asarray(val_labels, dtype=np.int32)
    weights = class_weights(train_labels)

    model, backbone, head, feature_extractor = build_model(resolve_weights(args.weights, args.weights_dir))
    train_images = make_dataset(train_paths, train_labels, shuffle=True)
    val_images = make_dataset(val_paths, val_labels, shuffle=False)

    if STRATEGY == "from_scratch":
        unfreeze(backbone)
        # As Transfer Lab does: BatchNorm momentum 0.9 instead of Keras' 0.999, or in a few epochs from
        # random weights the moving statistics barely move and validation sits at chance.
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, 0.9)
        compile_model(model, LEARNING_RATE)
        model.fit(train_images, validation_data=val_images, epochs=EPOCHS, class_weight=weights,
                  callbacks=callbacks(), verbose=2)
    else:
        # Stage 1: the backbone is frozen, so its pooled features are computed once and the head trains on them.
        if AUGMENTATION:
            compile_model(model, LEARNING_RATE)
            model.fit(train_images, validation_data=val_images, epochs=EPOCHS, class_weight=weights,
                      callbacks=callbacks(), verbose=2)
        else:
            train_features = feature_extractor.predict(make_dataset(train_paths, train_labels, False), verbose=0)
            val_features = feature_extractor.predict(val_images, verbose=0)
            compile_model(head, LEARNING_RATE)
            head.fit(train_features, train_labels, batch_size=BATCH_SIZE, shuffle=True, epochs=EPOCHS,
                     validation_data=(val_features, val_labels), class_weight=weights, callbacks=callbacks(),
                     verbose=2)
        if STRATEGY == "fine_tuning":
            # Stage 2: unfreeze the top of the backbone and train on with a lower learning rate.
            unfreeze(backbone)
            compile_model(model, FINE_TUNE_LEARNING_RATE)
            model.fit(train_images, validation_data=val_images, epochs=FINE_TUNE_EPOCHS, class_weight=weights,
                      callbacks=callbacks(), verbose=2)

    compile_model(model, LEARNING_RATE)
    _, accuracy = model.evaluate(val_images, verbose=0)
    print(f"val_accuracy={accuracy:.4f}")
    model.save(args.output)
    print(f"Saved the model to {args.output}")


if __name__ == "__main__":
    main()
'''
