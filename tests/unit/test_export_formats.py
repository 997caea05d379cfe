"""The export-format registry: one declaration per format, read by the writers, the parity check and the page."""

from __future__ import annotations

import pytest

from transfer_core import export
from transfer_core.export.formats import ExportFormat


def test_registry_declares_every_format_once():
    assert export.FORMATS == ("keras", "saved_model", "tflite_float", "tflite_float16", "tflite_quantized",
                              "tflite_int8", "onnx", "labels")
    assert export.FLOAT_FORMATS == ("keras", "saved_model", "tflite_float", "onnx")
    files = [fmt.file_name for fmt in export.EXPORT_FORMATS.values()]
    assert len(set(files)) == len(files)
    assert all(key == fmt.key for key, fmt in export.EXPORT_FORMATS.items())
    assert export.get_format("tflite_quantized").quantized and export.get_format("tflite_int8").precision == "int8"
    assert export.get_format("onnx").needs == ("tf2onnx", "onnxruntime")
    assert not export.get_format("labels").holds_model and export.get_format("labels").mime == "text/plain"
    assert [k for k, f in export.EXPORT_FORMATS.items() if f.needs_saved_model] == [
        "saved_model", "tflite_float", "tflite_float16", "tflite_quantized", "tflite_int8", "onnx"]


def test_registry_refuses_unknown_or_inconsistent_formats():
    with pytest.raises(ValueError, match="format must be among"):
        export.get_format("tfjs")
    with pytest.raises(ValueError, match="writer must be among"):
        ExportFormat("tfjs", "model.json", "TF.js", "application/json", "", writer="tfjs")
    with pytest.raises(ValueError, match="precision must be among"):
        ExportFormat("q", "q.tflite", "Q", "application/octet-stream", "", writer="tflite", precision="int4")
    with pytest.raises(ValueError, match="Only TFLite files are written at reduced precision"):
        ExportFormat("q", "q.txt", "Q", "text/plain", "", writer="labels", holds_model=False, precision="int8")
