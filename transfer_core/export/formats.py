"""The export formats, declared once: file name, display name, MIME type, explanation, precision, writer.

The writers, the parity check and the Export page all read this registry by key,
so a format's facts live in one place (see ARCHITECTURE.md, "Export").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EXPORT_FORMATS",
    "FLOAT_FORMATS",
    "FORMATS",
    "WRITERS",
    "ExportFormat",
    "get_format",
]

# How a format is produced (and reloaded by the parity check):
#   keras: a copy of the run's model.keras; saved_model: Keras' model.export, zipped;
#   tflite: converted from the SavedModel; labels: one class name per line.
WRITERS = ("keras", "saved_model", "tflite", "labels")
Writer = Literal["keras", "saved_model", "tflite", "labels"]


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        key: Identifier used everywhere (``ExportBundle.files``, parity rows, widget keys).
        file_name: The file's name inside ``<run>/export``.
        display_name: How the page and the parity table name it.
        mime: MIME type of the download.
        explanation: One sentence shown beside the download: what it is for.
        writer: How it is written, one of :data:`WRITERS`.
        holds_model: True when the file predicts (everything but the labels).
        quantized: True when the weights are rounded (8-bit), so predictions may move a little.
    """

    key: str
    file_name: str
    display_name: str
    mime: str
    explanation: str
    writer: Writer
    holds_model: bool = True
    quantized: bool = False

    def __post_init__(self):
        if self.writer not in WRITERS:
            raise ValueError(f"writer must be among {WRITERS}. Received: writer={self.writer!r}")
        if self.quantized and not self.holds_model:
            raise ValueError(f"Only a model can be quantized. Received: key={self.key!r}, holds_model=False")

    @property
    def is_float(self) -> bool:
        """A model with float weights: it must reproduce the live model's probabilities exactly."""
        return self.holds_model and not self.quantized

    @property
    def needs_saved_model(self) -> bool:
        """Written from the SavedModel folder (which is then made first)."""
        return self.writer in ("saved_model", "tflite")


EXPORT_FORMATS: dict[str, ExportFormat] = {
    fmt.key: fmt
    for fmt in (
        ExportFormat(
            key="keras",
            file_name="model.keras",
            display_name="Keras (.keras)",
            mime="application/zip",  # A .keras file is a zip archive.
            explanation="Keras 3's own format: load it with `keras.saving.load_model` to predict or to train "
            "further.",
            writer="keras",
        ),
        ExportFormat(
            key="saved_model",
            file_name="saved_model.zip",
            display_name="TensorFlow SavedModel (zip)",
            mime="application/zip",
            explanation="For TensorFlow Serving and other TensorFlow tools; needs no Keras code to load.",
            writer="saved_model",
        ),
        ExportFormat(
            key="tflite_float",
            file_name="model_float32.tflite",
            display_name="TFLite, float32",
            mime="application/octet-stream",
            explanation="For phones and small devices (TensorFlow Lite / LiteRT): same numbers as the model.",
            writer="tflite",
        ),
        ExportFormat(
            key="tflite_quantized",
            file_name="model_dynamic_range.tflite",
            display_name="TFLite, dynamic-range quantised (int8 weights)",
            mime="application/octet-stream",
            explanation="Weights stored as 8-bit integers: about 4x smaller, tiny differences in probabilities.",
            writer="tflite",
            quantized=True,
        ),
        ExportFormat(
            key="labels",
            file_name="labels.txt",
            display_name="labels.txt",
            mime="text/plain",
            explanation="The class names, one per line, in the order of the model's outputs.",
            writer="labels",
            holds_model=False,
        ),
    )
}

# Views of the registry, in its order, for callers that want just the keys.
FORMATS: tuple[str, ...] = tuple(EXPORT_FORMATS)
FLOAT_FORMATS: tuple[str, ...] = tuple(key for key, fmt in EXPORT_FORMATS.items() if fmt.is_float)


def get_format(key: str) -> ExportFormat:
    """The registered format called ``key``.

    Args:
        key: One of :data:`FORMATS`.

    Returns:
        Its :class:`ExportFormat`.

    Raises:
        ValueError: An unknown key.
    """
    try:
        return EXPORT_FORMATS[key]
    except KeyError:
        raise ValueError(f"format must be among {FORMATS}. Received: format={key!r}") from None
