"""What each export costs, in plain words: flags and the reading of the export table (pure, no TensorFlow).

:func:`~transfer_core.export.parity.parity_check` measures every file through its own runtime;
this module judges the numbers: a format that loses more than :data:`MAX_POINTS_LOST` points of
accuracy, or gives the trained model's top-1 class on fewer than :data:`MIN_AGREEMENT` of the
images, is flagged with what to try, and :func:`cost_reading` says what each format costs
("int8: 3.9x smaller and 2.1x faster here, 0.7 points lower on the test images").
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from transfer_core.export.formats import EXPORT_FORMATS

__all__ = ["MAX_POINTS_LOST", "MIN_AGREEMENT", "advice_for", "cost_reading", "flag_row", "table_text"]

# A format is flagged when it loses more than this many accuracy points on a split, or agrees with the
# trained model's top-1 class on fewer than this share of the images.
MAX_POINTS_LOST = 2.0
MIN_AGREEMENT = 0.98

_ADVICE = {
    "int8": "calibrate on more training images (--calibration-images), or use the float16 or dynamic-range "
    "file, which keep activations in float",
    "dynamic_range": "use the float16 file, or the float32 TFLite if size allows",
    "float16": "use the float32 TFLite file",
    "float32": "a float32 file should give the model's own answers, so its conversion went wrong: use the "
    ".keras file or the SavedModel, and report the model",
}


def advice_for(key: str) -> str:
    """What to try when format ``key`` is flagged."""
    return _ADVICE[EXPORT_FORMATS[key].precision]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def flag_row(row: dict[str, Any], images_per_split: dict[str, int]) -> None:
    """Set ``flagged`` and ``advice`` of one table row from its points lost and its agreement.

    Args:
        row: A row of the export table, with ``format``, ``top1_agreement``, ``points_lost_val`` and
            ``points_lost_test`` (None where not measured).
        images_per_split: Images checked per split (``{"val": 153, "test": 0}``), to say what one image
            is worth on a small set.
    """
    reasons = []
    for split, label in (("val", "validation"), ("test", "test")):
        lost = row.get(f"points_lost_{split}")
        if _present(lost) and lost > MAX_POINTS_LOST:
            reasons.append(f"{lost:.1f} points lower on the {label} images")
    agreement = row.get("top1_agreement")
    if _present(agreement) and agreement < MIN_AGREEMENT:
        reasons.append(f"same top-1 class as the trained model on only {agreement:.1%} of the images")
    row["flagged"] = bool(reasons)
    if not reasons:
        row["advice"] = ""
        return
    smallest = min((n for n in images_per_split.values() if n), default=0)
    scale = f" (on {smallest} images one image is {100 / smallest:.1f} points)" if 0 < smallest < 100 else ""
    row["advice"] = f"{'; '.join(reasons)}{scale}: {advice_for(row['format'])}."


def _ratio(base: float, value: float, more: str, less: str, same: str) -> str:
    if not (_present(base) and _present(value)) or base <= 0 or value <= 0:
        return ""
    ratio = base / value
    if ratio >= 1.05:
        return f"{ratio:.1f}x {more}"
    if ratio <= 1 / 1.05:
        return f"{1 / ratio:.1f}x {less}"
    return same


def _points(lost: Any, split_label: str) -> str:
    if not _present(lost):
        return ""
    if abs(lost) < 0.05:
        return f"the same accuracy on the {split_label} images"
    return f"{abs(lost):.1f} points {'lower' if lost > 0 else 'higher'} on the {split_label} images"


def cost_reading(table: pd.DataFrame) -> list[str]:
    """Plain sentences on what each exported format costs against the trained model.

    Size and speed are compared with the float32 TFLite file when it is in the table (the model's own
    numbers in the smallest float container), else with the ``.keras`` file; accuracy with the trained
    model, on the test images when there are some, else on the validation images.

    Args:
        table: From :func:`~transfer_core.export.parity.parity_check`.

    Returns:
        One sentence for the baseline, then one per other model format, then one per flagged format.
    """
    if table is None or table.empty or "points_lost_val" not in table:
        return []
    rows = table[table["format"].map(lambda key: EXPORT_FORMATS[key].holds_model if key in EXPORT_FORMATS
                                     else False)].set_index("format")
    rows = rows[rows["ms_per_image"].map(_present)]
    if rows.empty:
        return []
    base_key = "tflite_float" if "tflite_float" in rows.index else ("keras" if "keras" in rows.index else None)
    on_test = rows["points_lost_test"].map(_present).any()
    split_label, lost_column = ("test", "points_lost_test") if on_test else ("validation", "points_lost_val")
    sentences = []
    if base_key is not None:
        base = rows.loc[base_key]
        sentences.append(
            f"Compared with the {EXPORT_FORMATS[base_key].short_name} file ({base['size_mb']:.2f} MB, "
            f"{base['ms_per_image']:.1f} ms per image at batch 1 on this machine):")
    for key, row in rows.iterrows():
        if key == base_key:
            continue
        parts = []
        if base_key is not None:
            parts = [p for p in (_ratio(base["size_mb"], row["size_mb"], "smaller", "larger", "the same size"),
                                 _ratio(base["ms_per_image"], row["ms_per_image"], "faster", "slower",
                                        "as fast")) if p]
        speed_and_size = " and ".join(parts)
        points = _points(row[lost_column], split_label)
        text = ", ".join(p for p in ((f"{speed_and_size} here" if speed_and_size else ""), points) if p)
        sentences.append(f"{EXPORT_FORMATS[key].short_name}: {text or 'no measurement'}.")
    for key, row in rows.iterrows():
        if row.get("flagged"):
            sentences.append(f"Check {EXPORT_FORMATS[key].short_name} before you ship it: {row['advice']}")
    return sentences


def _cell(value: Any, kind: str) -> str:
    if not _present(value):
        return "-"
    if kind == "percent":
        return f"{100 * value:.1f}%"
    if kind == "yes":
        return "yes" if value else "NO"
    if kind == "flag":
        return "FLAG" if value else ""
    return f"{value:{kind}}" if kind else str(value)


def table_text(table: pd.DataFrame) -> str:
    """The export table as fixed-width text (the CLI prints it; the page shows the same columns).

    Args:
        table: From :func:`~transfer_core.export.parity.parity_check`.

    Returns:
        A header line and one line per file.
    """
    columns = (("format", "format", ""), ("MB", "size_mb", ".2f"), ("val acc", "val_accuracy", "percent"),
               ("test acc", "test_accuracy", "percent"), ("same top-1", "top1_agreement", "percent"),
               ("ms/image", "ms_per_image", ".2f"), ("runtime", "runtime", ""), ("passed", "passed", "yes"),
               ("", "flagged", "flag"))
    cells = [[title for title, _, _ in columns]]
    for _, row in table.iterrows():
        cells.append([_cell(row.get(column), kind) for _, column, kind in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in cells)
