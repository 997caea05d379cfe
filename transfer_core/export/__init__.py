"""Take a trained model away: .keras, SavedModel, TFLite, labels, a parity check, a reproducible script.

One module per job (see ARCHITECTURE.md, "Export"):

- :mod:`~transfer_core.export.formats`: the registry of formats (file name, display name, MIME type, ...).
- :mod:`~transfer_core.export.writers`: writes a run's files to ``<run>/export``.
- :mod:`~transfer_core.export.parity`: reloads each file and compares it with the run's model.
- :mod:`~transfer_core.export.script`: the reproduce script and predict.py, from real template files.

Importing this package is cheap: TensorFlow is imported inside the functions that need it.
"""

from transfer_core.export.formats import (
    EXPORT_FORMATS,
    FLOAT_FORMATS,
    FORMATS,
    ExportFormat,
    get_format,
)
from transfer_core.export.parity import (
    FLOAT_TOLERANCE,
    PARITY_FILE,
    QUANTIZED_MAX_DIFF,
    QUANTIZED_MAX_FLIP_SHARE,
    load_parity,
    parity_check,
    save_parity,
)
from transfer_core.export.script import generate_script, predict_snippet, read_template
from transfer_core.export.writers import (
    EXPORT_FOLDER,
    ExportBundle,
    existing_exports,
    export_keras,
    export_run,
    export_saved_model,
    export_tflite,
    write_labels,
)

__all__ = [
    "EXPORT_FOLDER",
    "EXPORT_FORMATS",
    "FLOAT_FORMATS",
    "FLOAT_TOLERANCE",
    "FORMATS",
    "PARITY_FILE",
    "QUANTIZED_MAX_DIFF",
    "QUANTIZED_MAX_FLIP_SHARE",
    "ExportBundle",
    "ExportFormat",
    "existing_exports",
    "export_keras",
    "export_run",
    "export_saved_model",
    "export_tflite",
    "generate_script",
    "get_format",
    "load_parity",
    "parity_check",
    "predict_snippet",
    "read_template",
    "save_parity",
    "write_labels",
]
