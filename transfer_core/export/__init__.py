"""Take a trained model away: .keras, SavedModel, TFLite (four precisions), ONNX, labels, checks, scripts.

One module per job (see ARCHITECTURE.md, "Export"):

- :mod:`~transfer_core.export.formats`: the registry of formats (file name, display name, precision, ...).
- :mod:`~transfer_core.export.writers`: writes a run's files to ``<run>/export``.
- :mod:`~transfer_core.export.converters`: SavedModel to TFLite (float32, float16, dynamic range, int8) and ONNX.
- :mod:`~transfer_core.export.calibration`: the training images int8 calibrates on.
- :mod:`~transfer_core.export.parity`: runs each file through its own runtime against the run's model.
- :mod:`~transfer_core.export.costs`: flags and the plain reading of what each format costs.
- :mod:`~transfer_core.export.script`: the reproduce script and the predict programs, from real template files.

Importing this package is cheap: TensorFlow is imported inside the functions that need it.
"""

from transfer_core.export.calibration import DEFAULT_CALIBRATION_IMAGES, Calibration, training_calibration
from transfer_core.export.converters import ONNX_INPUT_NAME, export_onnx, export_tflite
from transfer_core.export.costs import MAX_POINTS_LOST, MIN_AGREEMENT, advice_for, cost_reading, table_text
from transfer_core.export.formats import (
    EXPORT_FORMATS,
    FLOAT_FORMATS,
    FORMATS,
    ExportFormat,
    available_formats,
    get_format,
    missing_packages,
    parse_formats,
)
from transfer_core.export.parity import (
    FLOAT_TOLERANCE,
    PARITY_COLUMNS,
    PARITY_FILE,
    QUANTIZED_MAX_DIFF,
    QUANTIZED_MAX_FLIP_SHARE,
    load_parity,
    load_parity_details,
    parity_check,
    save_parity,
)
from transfer_core.export.script import (
    RUNNER_TEMPLATES,
    generate_script,
    predict_snippet,
    read_template,
    runner_script,
)
from transfer_core.export.writers import (
    EXPORT_FOLDER,
    ExportBundle,
    existing_exports,
    export_keras,
    export_run,
    export_saved_model,
    write_labels,
)

__all__ = [
    "DEFAULT_CALIBRATION_IMAGES",
    "EXPORT_FOLDER",
    "EXPORT_FORMATS",
    "FLOAT_FORMATS",
    "FLOAT_TOLERANCE",
    "FORMATS",
    "MAX_POINTS_LOST",
    "MIN_AGREEMENT",
    "ONNX_INPUT_NAME",
    "PARITY_COLUMNS",
    "PARITY_FILE",
    "QUANTIZED_MAX_DIFF",
    "QUANTIZED_MAX_FLIP_SHARE",
    "RUNNER_TEMPLATES",
    "Calibration",
    "ExportBundle",
    "ExportFormat",
    "advice_for",
    "available_formats",
    "cost_reading",
    "existing_exports",
    "export_keras",
    "export_onnx",
    "export_run",
    "export_saved_model",
    "export_tflite",
    "generate_script",
    "get_format",
    "load_parity",
    "load_parity_details",
    "missing_packages",
    "parity_check",
    "parse_formats",
    "predict_snippet",
    "read_template",
    "runner_script",
    "save_parity",
    "table_text",
    "training_calibration",
    "write_labels",
]
