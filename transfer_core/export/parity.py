"""The parity check and cost table: run each exported file through its own runtime on held-out images.

For each file, on the validation images (and the test images when the data set has a test split):
accuracy, the share of images whose top-1 class agrees with the run's own model, the largest and
mean absolute difference in any class probability, the file size and the milliseconds per image at
batch 1 (median over the images). TFLite files run through LiteRT and ONNX files through
onnxruntime, each in a child process (:mod:`transfer_core.export.runtime_runner`), because a damaged
file can crash its runtime; ``.keras`` and the SavedModel run through Keras and TensorFlow here.
Tolerances and the report file are here too; what the numbers mean is
:mod:`transfer_core.export.costs` (see ARCHITECTURE.md, "Export").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.export.costs import flag_row
from transfer_core.export.formats import EXPORT_FORMATS
from transfer_core.export.writers import EXPORT_FOLDER, ExportBundle
from transfer_core.fileio import atomic_write_json

__all__ = [
    "FLOAT_TOLERANCE",
    "PARITY_COLUMNS",
    "PARITY_FILE",
    "QUANTIZED_MAX_DIFF",
    "QUANTIZED_MAX_FLIP_SHARE",
    "load_parity",
    "load_parity_details",
    "parity_check",
    "save_parity",
]

PARITY_FILE = "parity.json"
# A float export must reproduce the live model's probabilities to this precision.
FLOAT_TOLERANCE = 1e-4
# Quantisation (float16 or 8-bit) moves probabilities a little, so images the live model was unsure about
# may change class. It passes when at most this share of the images (and at least one image is always
# allowed, for tiny validation sets) changes class and no probability moves by more than QUANTIZED_MAX_DIFF.
QUANTIZED_MAX_FLIP_SHARE = 0.05
QUANTIZED_MAX_DIFF = 0.25
# The table's columns, in order (one row per exported file).
PARITY_COLUMNS = (
    "format", "name", "file", "size_mb", "images", "val_accuracy", "test_accuracy", "points_lost_val",
    "points_lost_test", "top1_agreement", "max_abs_diff", "mean_abs_diff", "ms_per_image", "runtime", "passed",
    "flagged", "advice", "note",
)

_RUNTIME_RUNNER = Path(__file__).with_name("runtime_runner.py")


def save_parity(
    frame: pd.DataFrame, run_dir: str | os.PathLike, bundle: ExportBundle | None = None
) -> Path:
    """Keep the table beside the exported files (``<run>/export/parity.json``).

    Args:
        frame: From :func:`parity_check`.
        run_dir: The run directory.
        bundle: The export it checked: the int8 file's calibration images are saved with the table.

    Returns:
        The JSON file.
    """
    path = Path(run_dir) / EXPORT_FOLDER / PARITY_FILE
    clean = frame.astype(object).where(frame.notna(), None)
    calibration = bundle.calibration if bundle is not None else None
    atomic_write_json(path, {
        "checked": time.time(),
        "rows": clean.to_dict(orient="records"),
        "calibration_images": list(calibration.read) if calibration is not None else [],
    })
    return path


def load_parity(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The table saved by :func:`save_parity`, or None.

    Args:
        run_dir: The run directory.

    Returns:
        The frame, or None when there is none (or it is unreadable).
    """
    details = load_parity_details(run_dir)
    return None if details is None else pd.DataFrame(details["rows"])


def load_parity_details(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Everything :func:`save_parity` wrote: ``checked`` (a timestamp), ``rows``, ``calibration_images``."""
    path = Path(run_dir) / EXPORT_FOLDER / PARITY_FILE
    try:
        details = json.loads(path.read_text())
        details["rows"] = list(details["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    details.setdefault("calibration_images", [])
    return details


def _runtime_predict(path: Path, images: np.ndarray) -> tuple[np.ndarray, float | None, str]:
    """Run a TFLite or ONNX file on ``images`` in a child process: ``(outputs, ms_per_image, runtime)``.

    A damaged file can crash its runtime outright (a segmentation fault, not an exception), so the files
    are never loaded in this process: a crash costs the child, not the worker.

    Raises:
        RuntimeError: The runtime refused the file, or crashed on it.
    """
    with tempfile.TemporaryDirectory(prefix="export-runtime-") as tmp:
        np.save(Path(tmp) / "images.npy", images.astype(np.float32))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        # -P: the runner's own folder (this package) is not put on sys.path, so nothing here shadows a module.
        completed = subprocess.run([sys.executable, "-P", str(_RUNTIME_RUNNER), tmp, str(path)],
                                   capture_output=True, text=True, env=env, timeout=1800)
        output, error, timing = Path(tmp) / "out.npy", Path(tmp) / "err.txt", Path(tmp) / "timing.json"
        if output.exists() and timing.exists():
            measured = json.loads(timing.read_text())
            return np.load(output), measured["ms_per_image"], measured["runtime"]
        if error.exists():
            raise RuntimeError(error.read_text())
        raise RuntimeError(f"the runtime crashed on this file (exit code {completed.returncode}): "
                           "the file is probably damaged")


def _batch_of_one(predict_fn: Callable[[np.ndarray], Any], images: np.ndarray) -> tuple[np.ndarray, float | None]:
    """Outputs of ``predict_fn`` one image at a time, and the median milliseconds of a call (after a warm-up)."""
    if not len(images):
        return np.zeros((0, 0), np.float32), None
    predict_fn(images[:1])
    outputs, seconds = [], []
    for index in range(len(images)):
        started = time.perf_counter()
        outputs.append(np.asarray(predict_fn(images[index : index + 1]))[0])
        seconds.append(time.perf_counter() - started)
    return np.asarray(outputs, dtype=np.float32), 1000 * float(np.median(seconds))


def _saved_model_predict(archive: Path, images: np.ndarray) -> tuple[np.ndarray, float | None]:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
        with zipfile.ZipFile(archive) as handle:
            for member in handle.namelist():
                target = (Path(tmp) / member).resolve()
                if not str(target).startswith(str(Path(tmp).resolve()) + os.sep):
                    raise ValueError(f"Unsafe path in the SavedModel archive. Received: {member!r}")
            handle.extractall(tmp)
        loaded = tf.saved_model.load(str(Path(tmp) / "saved_model"))
        return _batch_of_one(lambda x: loaded.serve(tf.constant(x)).numpy(), images)


def _keras_predict(path: Path, images: np.ndarray) -> tuple[np.ndarray, float | None]:
    import keras

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    # predict_on_batch: Keras' compiled predict step without predict()'s per-call data-adapter set-up.
    return _batch_of_one(model.predict_on_batch, images)


def _labels_row(row: dict[str, Any], path: Path, class_names: list[str]) -> None:
    row["images"] = None
    lines = path.read_text(encoding="utf-8").splitlines()
    row["passed"] = lines == class_names
    row["note"] = (
        f"{len(lines)} labels in the model's output order"
        if row["passed"]
        else f"labels differ from the run's classes {class_names}"
    )


_ROUNDING_NOTES = {
    "float16": "16-bit weights: tiny differences are expected",
    "dynamic_range": "8-bit weights: small differences are expected",
    "int8": "8-bit weights and activations: small differences are expected",
}


def _judge(row: dict[str, Any], precision: str, outputs: np.ndarray, reference: np.ndarray) -> None:
    """Fill in the differences and whether the file passes (see the tolerances above)."""
    count = len(reference)
    difference = np.abs(outputs - reference) if count else np.zeros((0,))
    agreement = float((outputs.argmax(1) == reference.argmax(1)).mean()) if count else 1.0
    row.update(
        max_abs_diff=float(difference.max()) if difference.size else 0.0,
        mean_abs_diff=float(difference.mean()) if difference.size else 0.0,
        top1_agreement=agreement,
    )
    if precision != "float32":
        flipped = outputs.argmax(1) != reference.argmax(1)
        ordered = np.sort(reference, axis=1)
        margins = (ordered[:, -1] - ordered[:, -2])[flipped] if reference.shape[1] > 1 else np.zeros(0)
        allowed = max(1, int(QUANTIZED_MAX_FLIP_SHARE * count))
        # int8 also rounds activations, the output included (steps of 1/256), so an image the model is
        # unsure about can move by more than QUANTIZED_MAX_DIFF without changing class: only the flips count.
        within = precision == "int8" or row["max_abs_diff"] <= QUANTIZED_MAX_DIFF
        row["passed"] = int(flipped.sum()) <= allowed and within
        row["note"] = _ROUNDING_NOTES[precision]
        if flipped.any():
            row["note"] += (
                f"; {int(flipped.sum())} image(s) changed class (the model's lead there was "
                f"{', '.join(f'{m:.2f}' for m in margins[:5])})"
            )
    else:
        row["passed"] = agreement == 1.0 and row["max_abs_diff"] <= FLOAT_TOLERANCE
        row["note"] = "identical predictions" if row["passed"] else "predictions differ from the live model"


def _accuracy(outputs: np.ndarray, labels: np.ndarray) -> float | None:
    return float((outputs.argmax(1) == labels).mean()) if len(labels) else None


def _held_out(spec, size: int, max_images: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The validation and (when there is one) test split: images and labels, at most ``max_images`` each."""
    from transfer_core.data import load_split_arrays

    splits = {}
    for split in ("val", "test"):
        images, labels = load_split_arrays(spec, split, size)
        if split == "val" or len(images):
            splits[split] = (images[:max_images], labels[:max_images])
    return splits


def _new_row(key: str, path: Path, images: int) -> dict[str, Any]:
    fmt = EXPORT_FORMATS[key]
    row: dict[str, Any] = dict.fromkeys(PARITY_COLUMNS)
    row.update(format=key, name=fmt.display_name, file=path.name, size_mb=round(path.stat().st_size / 1e6, 3),
               images=images, passed=False, flagged=False, advice="", note="")
    return row


def parity_check(
    run_dir: str | os.PathLike,
    bundle: ExportBundle,
    *,
    max_images: int = 500,
    reference_model: Any | None = None,
) -> pd.DataFrame:
    """Run each exported file through its own runtime and measure what it costs against the run's model.

    Args:
        run_dir: The run directory.
        bundle: From :func:`~transfer_core.export.writers.export_run`.
        max_images: Use at most this many validation images, and as many test images (manifest order).
        reference_model: The run's model if already loaded.

    Returns:
        One row per file, columns :data:`PARITY_COLUMNS`: ``size_mb``; ``images`` (validation and test
        images checked); ``val_accuracy`` and ``test_accuracy`` (None without a test split);
        ``points_lost_val`` / ``points_lost_test`` (the trained model's accuracy minus the file's, in
        points); ``top1_agreement`` (0..1, share of images whose top class is the model's);
        ``max_abs_diff`` / ``mean_abs_diff`` (of any class probability); ``ms_per_image`` (batch 1,
        median) and the ``runtime`` that ran it; ``passed`` (float formats: 100% agreement and a
        difference below :data:`FLOAT_TOLERANCE`; rounded formats: at most
        :data:`QUANTIZED_MAX_FLIP_SHARE` of the images, or one, change class and, except for int8, no
        probability moves more than :data:`QUANTIZED_MAX_DIFF`); ``flagged`` and ``advice``
        (:func:`~transfer_core.export.costs.flag_row`); ``note``.

    Raises:
        FileNotFoundError: The run has no model.
    """
    from transfer_core.explore.explain import load_model, predict
    from transfer_core.runs import load_run

    run_dir = Path(run_dir)
    info = load_run(run_dir)
    reference_model = reference_model if reference_model is not None else load_model(run_dir)
    size = int(reference_model.inputs[0].shape[1])
    splits = _held_out(info.config.dataset, size, max_images)
    images = np.concatenate([pixels for pixels, _ in splits.values()])
    bounds, start = {}, 0
    for split, (pixels, _) in splits.items():
        bounds[split], start = slice(start, start + len(pixels)), start + len(pixels)
    reference = predict(reference_model, images) if len(images) else np.zeros((0, 0), np.float32)
    reference_accuracy = {split: _accuracy(reference[bounds[split]], labels)
                          for split, (_, labels) in splits.items()}
    counts = {split: len(labels) for split, (_, labels) in splits.items()}
    class_names = list(info.config.dataset.class_names)
    rows = []
    for key, fmt in EXPORT_FORMATS.items():
        path = bundle.files.get(key)
        if path is None:
            continue
        row = _new_row(key, path, len(images))
        rows.append(row)
        try:
            if fmt.writer == "labels":
                _labels_row(row, path, class_names)
                continue
            if fmt.writer == "keras":
                outputs, row["ms_per_image"] = _keras_predict(path, images)
                row["runtime"] = "Keras"
            elif fmt.writer == "saved_model":
                outputs, row["ms_per_image"] = _saved_model_predict(path, images)
                row["runtime"] = "TensorFlow"
            else:
                outputs, row["ms_per_image"], row["runtime"] = _runtime_predict(path, images)
        except Exception as error:  # noqa: BLE001 - a broken export is a failed row, not a crash.
            row["note"] = f"could not reload: {type(error).__name__}: {error}"
            continue
        if row["ms_per_image"] is not None:
            row["ms_per_image"] = round(row["ms_per_image"], 3)
        _judge(row, fmt.precision, outputs, reference)
        for split, (_, labels) in splits.items():
            accuracy = _accuracy(outputs[bounds[split]], labels)
            row[f"{split}_accuracy"] = accuracy
            if accuracy is not None:
                row[f"points_lost_{split}"] = round(100 * (reference_accuracy[split] - accuracy), 2)
        if fmt.precision == "int8" and bundle.calibration is not None:
            row["note"] += f"; calibrated on {len(bundle.calibration.read)} training images"
        flag_row(row, counts)
    return pd.DataFrame(rows, columns=list(PARITY_COLUMNS))
