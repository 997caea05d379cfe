"""Write a run's exports: .keras, SavedModel, TFLite (float32, float16, dynamic range, int8), ONNX, labels.

Every exported model holds its preprocessing, so it takes raw RGB pixels
(float 0..255) at the run's input size, exactly what ``decode_for_model`` and
the training pipeline give. Files go to ``<run>/export/`` and are written
atomically (temporary name, then rename), so two browser sessions exporting
the same run never see half a file. Which formats exist, and their file
names, come from :mod:`transfer_core.export.formats`; the conversions from the
SavedModel are in :mod:`transfer_core.export.converters`.
"""

from __future__ import annotations

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

from transfer_core.export.calibration import DEFAULT_CALIBRATION_IMAGES, Calibration, training_calibration
from transfer_core.export.converters import export_onnx, export_tflite
from transfer_core.export.formats import EXPORT_FORMATS, FORMATS, available_formats, missing_packages
from transfer_core.fileio import atomic_path, atomic_write_text

__all__ = [
    "EXPORT_FOLDER",
    "ExportBundle",
    "existing_exports",
    "export_keras",
    "export_run",
    "export_saved_model",
    "write_labels",
]

EXPORT_FOLDER = "export"


@dataclass
class ExportBundle:
    """The exported files of one run.

    Attributes:
        folder: ``<run>/export``.
        files: Format key (see :data:`~transfer_core.export.formats.FORMATS`) -> file.
        seconds: Format key -> seconds it took to produce.
        calibration: The training images the int8 file was calibrated on (None without int8).
    """

    folder: Path
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    calibration: Calibration | None = None


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
    target = Path(out_dir) / EXPORT_FORMATS["keras"].file_name
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
    archive = out_dir / EXPORT_FORMATS["saved_model"].file_name
    _zip_folder(folder, archive, "saved_model")
    return folder, archive


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
    bad = [name for name in class_names if "\n" in name or "\r" in name]
    if bad:
        raise ValueError(f"Class names cannot contain line breaks in labels.txt. Received: {bad}")
    path = Path(path)
    atomic_write_text(path, "".join(f"{name}\n" for name in class_names))
    return path


def export_run(
    run_dir: str | os.PathLike,
    formats: Sequence[str] | None = None,
    out_dir: str | os.PathLike | None = None,
    model: Any | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
) -> ExportBundle:
    """Export a finished run in the chosen formats.

    Args:
        run_dir: The run directory (must hold ``model.keras`` and ``config.json``).
        formats: Any of :data:`~transfer_core.export.formats.FORMATS` (every format this installation
            can write when None); TFLite and ONNX are converted from the SavedModel, which is then made too.
        out_dir: Where files go (``<run>/export`` when None).
        model: The run's model if already loaded (else it is loaded in safe mode).
        calibration_images: At most this many training images calibrate the int8 TFLite.

    Returns:
        An :class:`ExportBundle`.

    Raises:
        FileNotFoundError: The run has no model.
        ValueError: An unknown format.
        ModuleNotFoundError: A chosen format needs a package that is not installed (its message names it).
    """
    from transfer_core.explore.explain import load_model
    from transfer_core.runs import load_run

    formats = available_formats() if formats is None else tuple(formats)
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"formats must be among {FORMATS}. Received: formats={list(formats)}")
    for key in formats:
        if missing := missing_packages(key):
            raise ModuleNotFoundError(f"The {key} export needs {', '.join(missing)}: "
                                      "pip install -r requirements-export.txt")
    run_dir = Path(run_dir)
    _model_file(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / EXPORT_FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = ExportBundle(out_dir)
    info = load_run(run_dir)
    chosen = [EXPORT_FORMATS[key] for key in FORMATS if key in formats]

    def timed(key: str, action) -> None:
        started = time.perf_counter()
        bundle.files[key] = action()
        bundle.seconds[key] = round(time.perf_counter() - started, 3)

    for fmt in chosen:
        if fmt.writer == "keras":
            timed(fmt.key, lambda: export_keras(run_dir, out_dir))
        elif fmt.writer == "labels":
            names = info.config.dataset.class_names if info.config else ()
            timed(fmt.key, lambda fmt=fmt, names=names: write_labels(names, out_dir / fmt.file_name))
    if any(fmt.needs_saved_model for fmt in chosen):
        model = model if model is not None else load_model(run_dir)
        started = time.perf_counter()
        folder, archive = export_saved_model(model, out_dir)
        # Timed even when only TFLite was asked for: it is part of what TFLite costs.
        bundle.seconds["saved_model"] = round(time.perf_counter() - started, 3)
        if "saved_model" in formats:
            bundle.files["saved_model"] = archive
        if any(fmt.precision == "int8" for fmt in chosen):
            size = int(model.inputs[0].shape[1])
            bundle.calibration = training_calibration(info.config.dataset, size, calibration_images)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fmt in chosen:
                target = out_dir / fmt.file_name
                if fmt.writer == "tflite":
                    timed(fmt.key, lambda fmt=fmt, target=target: export_tflite(
                        folder, target, fmt.precision, bundle.calibration))
                elif fmt.writer == "onnx":
                    timed(fmt.key, lambda target=target: export_onnx(folder, target))
    return bundle


def existing_exports(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Exported files already in ``<run>/export``.

    Args:
        run_dir: The run directory.

    Returns:
        Format key -> file, for the formats whose file exists (in registry order).
    """
    folder = Path(run_dir) / EXPORT_FOLDER
    return {
        key: folder / fmt.file_name for key, fmt in EXPORT_FORMATS.items() if (folder / fmt.file_name).is_file()
    }
