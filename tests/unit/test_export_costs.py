"""The cost table's judgement (pure): flags, advice, the plain reading, the CLI's text table, --formats."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from transfer_core import export
from transfer_core.export.costs import flag_row


def _row(key, size_mb, ms, lost_val=0.0, lost_test=None, agreement=1.0):
    row = dict.fromkeys(export.PARITY_COLUMNS)
    row.update(format=key, name=export.EXPORT_FORMATS[key].display_name, size_mb=size_mb, ms_per_image=ms,
               points_lost_val=lost_val, points_lost_test=lost_test, top1_agreement=agreement, passed=True)
    flag_row(row, {"val": 150, "test": 150 if lost_test is not None else 0})
    return row


def test_a_format_that_loses_more_than_two_points_or_agrees_too_little_is_flagged_with_what_to_try():
    fine = _row("tflite_int8", 1.0, 1.0, lost_val=2.0, lost_test=1.9, agreement=0.98)
    assert not fine["flagged"] and fine["advice"] == ""
    lossy = _row("tflite_int8", 1.0, 1.0, lost_val=0.0, lost_test=2.1)
    assert lossy["flagged"] and "2.1 points lower on the test images" in lossy["advice"]
    assert "calibrate on more training images" in lossy["advice"] and "float16" in lossy["advice"]
    disagreeing = _row("tflite_float16", 1.0, 1.0, agreement=0.975)
    assert disagreeing["flagged"] and "97.5%" in disagreeing["advice"]
    assert "float32 TFLite" in disagreeing["advice"]
    broken_float = _row("onnx", 1.0, 1.0, lost_val=5.0)
    assert "conversion went wrong" in broken_float["advice"]


def test_small_sets_say_what_one_image_is_worth():
    row = dict.fromkeys(export.PARITY_COLUMNS)
    row.update(format="tflite_int8", points_lost_val=12.5, top1_agreement=0.875)
    flag_row(row, {"val": 8})
    assert row["flagged"] and "on 8 images one image is 12.5 points" in row["advice"]


def test_the_reading_compares_size_and_speed_with_float32_tflite_and_accuracy_on_the_test_images():
    table = pd.DataFrame([
        _row("keras", 8.0, 40.0, lost_test=0.0),
        _row("tflite_float", 3.9, 4.2, lost_test=0.0),
        _row("tflite_int8", 1.0, 2.0, lost_val=0.0, lost_test=0.7),
        _row("onnx", 3.9, 8.4, lost_test=-0.65),
        _row("tflite_float16", 1.95, 4.0, lost_val=3.0, lost_test=3.0),
    ])
    sentences = export.cost_reading(table)
    assert sentences[0] == ("Compared with the TFLite float32 file (3.90 MB, 4.2 ms per image at batch 1 on this "
                            "machine):")
    assert "int8: 3.9x smaller and 2.1x faster here, 0.7 points lower on the test images." in sentences
    assert "Keras: 2.1x larger and 9.5x slower here, the same accuracy on the test images." in sentences
    assert "ONNX: the same size and 2.0x slower here, 0.7 points higher on the test images." in sentences
    assert sentences[-1].startswith("Check float16 before you ship it: 3.0 points lower on the validation images")
    assert export.cost_reading(pd.DataFrame()) == []


def test_without_float32_tflite_the_keras_file_is_the_baseline_and_the_validation_images_count():
    table = pd.DataFrame([_row("keras", 8.0, 40.0), _row("tflite_quantized", 2.0, 80.0, lost_val=1.0)])
    assert export.cost_reading(table)[1] == ("dynamic range: 4.0x smaller and 2.0x slower here, 1.0 points lower "
                                             "on the validation images.")


def test_the_text_table_shows_every_file_and_marks_failures_and_flags():
    table = pd.DataFrame([_row("tflite_float", 3.9, 4.2), {**_row("tflite_int8", 1.0, 2.0, lost_val=9.0),
                                                           "passed": False, "val_accuracy": 0.5}])
    lines = export.table_text(table).splitlines()
    assert lines[0].split() == ["format", "MB", "val", "acc", "test", "acc", "same", "top-1", "ms/image", "runtime",
                                "passed"]
    assert lines[2].startswith("tflite_int8") and "50.0%" in lines[2] and "NO" in lines[2] and "FLAG" in lines[2]


def test_formats_parse_in_registry_order_and_unknown_names_fail():
    assert export.parse_formats("onnx, keras,tflite_int8,keras") == ("keras", "tflite_int8", "onnx")
    assert export.parse_formats("all") == export.available_formats()
    with pytest.raises(ValueError, match="comma-separated list"):
        export.parse_formats("keras,tfjs")
    with pytest.raises(ValueError, match="comma-separated list"):
        export.parse_formats(" , ")


def test_a_missing_converter_leaves_its_format_out_and_an_explicit_request_says_what_to_install(monkeypatch,
                                                                                               tmp_path):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # What importlib sees when the package is not installed.
    assert export.missing_packages("onnx") == ("tf2onnx",)
    assert "onnx" not in export.available_formats() and "tflite_int8" in export.available_formats()
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(ModuleNotFoundError, match="needs tf2onnx: pip install -r requirements-export.txt"):
        export.export_run(tmp_path, formats=["onnx"])
