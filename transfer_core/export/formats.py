"""The export formats, declared once: file name, display name, MIME type, explanation, precision, writer.

The writers, the parity check, the cost table, the CLI and the Export page all read this
registry by key, so a format's facts live in one place (see ARCHITECTURE.md, "Export").
Formats whose converter is an optional package (ONNX: ``tf2onnx`` and ``onnxruntime``, in
requirements-export.txt) name it in ``needs``; :func:`available_formats` leaves them out when
it is not installed, and :func:`missing_packages` says what to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EXPORT_FORMATS",
    "FLOAT_FORMATS",
    "FORMATS",
    "PRECISIONS",
    "WRITERS",
    "ExportFormat",
    "available_formats",
    "get_format",
    "missing_packages",
    "parse_formats",
]

# How a format is produced (and reloaded by the parity check):
#   keras: a copy of the run's model.keras; saved_model: Keras' model.export, zipped;
#   tflite: converted from the SavedModel; onnx: the SavedModel's serving function through tf2onnx;
#   labels: one class name per line.
WRITERS = ("keras", "saved_model", "tflite", "onnx", "labels")
Writer = Literal["keras", "saved_model", "tflite", "onnx", "labels"]
# How a model's numbers are stored: float32 (the model's own numbers), float16 weights, 8-bit weights with
# float activations ("dynamic_range"), or 8-bit weights and activations calibrated on training images ("int8").
PRECISIONS = ("float32", "float16", "dynamic_range", "int8")
Precision = Literal["float32", "float16", "dynamic_range", "int8"]


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
        precision: One of :data:`PRECISIONS`; anything but float32 rounds numbers, so predictions may
            move a little.
        needs: Python packages the converter and its runtime need beyond requirements.txt.
        short_name: How the cost table's reading names it ("int8").
    """

    key: str
    file_name: str
    display_name: str
    mime: str
    explanation: str
    writer: Writer
    holds_model: bool = True
    precision: Precision = "float32"
    needs: tuple[str, ...] = ()
    short_name: str = ""

    def __post_init__(self):
        if self.writer not in WRITERS:
            raise ValueError(f"writer must be among {WRITERS}. Received: writer={self.writer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be among {PRECISIONS}. Received: precision={self.precision!r}")
        if self.precision != "float32" and self.writer != "tflite":
            raise ValueError(f"Only TFLite files are written at reduced precision. Received: key={self.key!r}, "
                             f"writer={self.writer!r}, precision={self.precision!r}")

    @property
    def quantized(self) -> bool:
        """The numbers are rounded (float16 or 8-bit), so predictions may move a little."""
        return self.precision != "float32"

    @property
    def is_float(self) -> bool:
        """A model with float weights: it must reproduce the live model's probabilities exactly."""
        return self.holds_model and not self.quantized

    @property
    def needs_saved_model(self) -> bool:
        """Written from the SavedModel folder (which is then made first)."""
        return self.writer in ("saved_model", "tflite", "onnx")


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
            short_name="Keras",
        ),
        ExportFormat(
            key="saved_model",
            file_name="saved_model.zip",
            display_name="TensorFlow SavedModel (zip)",
            mime="application/zip",
            explanation="For TensorFlow Serving and other TensorFlow tools; needs no Keras code to load.",
            writer="saved_model",
            short_name="SavedModel",
        ),
        ExportFormat(
            key="tflite_float",
            file_name="model_float32.tflite",
            display_name="TFLite, float32",
            mime="application/octet-stream",
            explanation="For phones and small devices (TensorFlow Lite / LiteRT): same numbers as the model.",
            writer="tflite",
            short_name="TFLite float32",
        ),
        ExportFormat(
            key="tflite_float16",
            file_name="model_float16.tflite",
            display_name="TFLite, float16 weights",
            mime="application/octet-stream",
            explanation="Weights stored as 16-bit floats: about half the size, for phone GPUs; on a CPU they are "
            "widened back to float32, so predictions barely move.",
            writer="tflite",
            precision="float16",
            short_name="float16",
        ),
        ExportFormat(
            key="tflite_quantized",
            file_name="model_dynamic_range.tflite",
            display_name="TFLite, dynamic-range quantised (int8 weights)",
            mime="application/octet-stream",
            explanation="Weights stored as 8-bit integers: about 4x smaller, tiny differences in probabilities.",
            writer="tflite",
            precision="dynamic_range",
            short_name="dynamic range",
        ),
        ExportFormat(
            key="tflite_int8",
            file_name="model_int8.tflite",
            display_name="TFLite, full-integer int8 (calibrated on training images)",
            mime="application/octet-stream",
            explanation="Weights and activations in 8 bits, calibrated on the run's training images, with float "
            "input and output (the same raw pixels): what EdgeTPU, microcontrollers and phone NPUs run. Check "
            "its accuracy below: int8 can lose a lot on some models.",
            writer="tflite",
            precision="int8",
            short_name="int8",
        ),
        ExportFormat(
            key="onnx",
            file_name="model.onnx",
            display_name="ONNX",
            mime="application/octet-stream",
            explanation="For ONNX Runtime, OpenCV's DNN module and other runtimes (converted by tf2onnx, checked "
            "with onnxruntime); input is named `image`.",
            writer="onnx",
            needs=("tf2onnx", "onnxruntime"),
            short_name="ONNX",
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


def missing_packages(key: str) -> tuple[str, ...]:
    """The packages format ``key`` needs that are not installed (empty when it can be written).

    Args:
        key: One of :data:`FORMATS`.

    Returns:
        Import names, in the order the registry lists them.

    Raises:
        ValueError: An unknown key.
    """
    return tuple(name for name in get_format(key).needs if importlib.util.find_spec(name) is None)


def available_formats() -> tuple[str, ...]:
    """The formats this installation can write (registry order): those whose packages are all installed."""
    return tuple(key for key in FORMATS if not missing_packages(key))


def parse_formats(text: str) -> tuple[str, ...]:
    """Format keys from a comma-separated list (the CLI's ``--formats``); ``all`` means every available one.

    Args:
        text: For example ``"keras,tflite_int8,onnx"``.

    Returns:
        The keys, in registry order, without repeats.

    Raises:
        ValueError: An unknown key, or an empty list.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return available_formats()
    unknown = [name for name in names if name not in EXPORT_FORMATS]
    if unknown or not names:
        raise ValueError(f"formats must be a comma-separated list of {', '.join(FORMATS)} (or all). "
                         f"Received: formats={text!r}")
    return tuple(key for key in FORMATS if key in names)
