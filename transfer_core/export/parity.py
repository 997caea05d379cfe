"""The parity check: reload each exported file and compare its predictions with the run's own model.

For each file: the largest absolute difference in any class probability on the
validation images, and the share of images whose top-1 class agrees. TFLite files
run in a child process (:mod:`transfer_core.export.tflite_runner`), because a
damaged file can crash the interpreter. Tolerances and the report file are here
too (see ARCHITECTURE.md, "Export").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.export.formats import EXPORT_FORMATS
from transfer_core.export.writers import EXPORT_FOLDER, ExportBundle
from transfer_core.fileio import atomic_write_json

__all__ = [
    "FLOAT_TOLERANCE",
    "PARITY_FILE",
    "QUANTIZED_MAX_DIFF",
    "QUANTIZED_MAX_FLIP_SHARE",
    "load_parity",
    "parity_check",
    "save_parity",
]

PARITY_FILE = "parity.json"
# A float export must reproduce the live model's probabilities to this precision.
FLOAT_TOLERANCE = 1e-4
# Dynamic-range quantisation rounds weights to 8 bits, which moves probabilities a little, so images the
# live model was unsure about may change class. It passes when at most this share of the images (and at
# least one image is always allowed, for tiny validation sets) changes class and no probability moves by
# more than QUANTIZED_MAX_DIFF.
QUANTIZED_MAX_FLIP_SHARE = 0.05
QUANTIZED_MAX_DIFF = 0.25

_TFLITE_RUNNER = Path(__file__).with_name("tflite_runner.py")


def save_parity(frame: pd.DataFrame, run_dir: str | os.PathLike) -> Path:
    """Keep a parity report beside the exported files (``<run>/export/parity.json``).

    Args:
        frame: From :func:`parity_check`.
        run_dir: The run directory.

    Returns:
        The JSON file.
    """
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


def _tflite_predict(paths: Sequence[Path], images: np.ndarray) -> list[tuple[np.ndarray, float] | str]:
    """Run TFLite files on ``images`` in a child process: ``(outputs, seconds)`` per file, or an error text.

    A damaged ``.tflite`` file can crash the TFLite interpreter outright (a segmentation fault, not an
    exception), so the files are never loaded in this process: a crash costs the child, not the server.
    """
    with tempfile.TemporaryDirectory(prefix="tflite-parity-") as tmp:
        np.save(Path(tmp) / "images.npy", images.astype(np.float32))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        # -P: the runner's own folder (this package) is not put on sys.path, so nothing here shadows a module.
        completed = subprocess.run(
            [sys.executable, "-P", str(_TFLITE_RUNNER), tmp, *(str(p) for p in paths)],
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


def _labels_row(row: dict[str, Any], path: Path, class_names: list[str]) -> None:
    row["images"] = None
    lines = path.read_text(encoding="utf-8").splitlines()
    row["passed"] = lines == class_names
    row["note"] = (
        f"{len(lines)} labels in the model's output order"
        if row["passed"]
        else f"labels differ from the run's classes {class_names}"
    )


def _judge(row: dict[str, Any], quantized: bool, outputs: np.ndarray, reference: np.ndarray) -> None:
    """Fill in the differences and whether the file passes (see the tolerances above)."""
    count = len(reference)
    difference = np.abs(outputs - reference) if count else np.zeros((0,))
    agreement = float((outputs.argmax(1) == reference.argmax(1)).mean()) if count else 1.0
    row.update(
        max_abs_diff=float(difference.max()) if difference.size else 0.0,
        mean_abs_diff=float(difference.mean()) if difference.size else 0.0,
        top1_agreement=agreement,
    )
    if quantized:
        flipped = outputs.argmax(1) != reference.argmax(1)
        ordered = np.sort(reference, axis=1)
        margins = (ordered[:, -1] - ordered[:, -2])[flipped] if reference.shape[1] > 1 else np.zeros(0)
        allowed = max(1, int(QUANTIZED_MAX_FLIP_SHARE * count))
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
        bundle: From :func:`~transfer_core.export.writers.export_run`.
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
    from transfer_core.explore.explain import load_model, predict
    from transfer_core.runs import load_run

    run_dir = Path(run_dir)
    info = load_run(run_dir)
    reference_model = reference_model if reference_model is not None else load_model(run_dir)
    size = int(reference_model.inputs[0].shape[1])
    images, _ = load_split_arrays(info.config.dataset, "val", size)
    images = images[:max_images]
    reference = predict(reference_model, images)
    class_names = list(info.config.dataset.class_names)
    tflite_keys = [key for key, fmt in EXPORT_FORMATS.items() if fmt.writer == "tflite" and key in bundle.files]
    tflite_outputs: dict[str, tuple[np.ndarray, float] | str] = {}
    if tflite_keys and len(images):
        tflite_outputs = dict(zip(tflite_keys, _tflite_predict([bundle.files[k] for k in tflite_keys], images),
                                  strict=True))
    rows = []
    for key, fmt in EXPORT_FORMATS.items():
        path = bundle.files.get(key)
        if path is None:
            continue
        row: dict[str, Any] = {
            "format": key,
            "name": fmt.display_name,
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
        rows.append(row)
        try:
            if fmt.writer == "labels":
                _labels_row(row, path, class_names)
                continue
            started = time.perf_counter()
            if fmt.writer == "keras":
                outputs = predict(keras.saving.load_model(path, safe_mode=True, compile=False), images)
            elif fmt.writer == "saved_model":
                outputs = _saved_model_predict(path, images)
            else:
                result = tflite_outputs.get(key, (np.zeros_like(reference), 0.0))
                if isinstance(result, str):
                    raise RuntimeError(result)
                outputs, invoke_seconds = result
            elapsed = invoke_seconds if fmt.writer == "tflite" else time.perf_counter() - started
        except Exception as error:  # noqa: BLE001 - a broken export is a failed row, not a crash.
            row["note"] = f"could not reload: {type(error).__name__}: {error}"
            continue
        _judge(row, fmt.quantized, outputs, reference)
        row["ms_per_image"] = round(1000 * elapsed / max(len(images), 1), 2)
    return pd.DataFrame(rows)
