"""A data set's health report: counts, imbalance, duplicates, leakage, skipped files.

The report is computed from the manifest alone (no image is opened), so it is
cheap enough to show on every visit to the Data page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from transfer_core.config import DatasetSpec
from transfer_core.data.manifest import SPLITS, SkippedFile, read_manifest, read_skipped

# Below this many images a class is too small to learn or to measure reliably.
TINY_CLASS_IMAGES = 5
# Above this largest/smallest ratio, accuracy alone hides a neglected class.
IMBALANCE_WARNING_RATIO = 3.0


@dataclass(frozen=True)
class HealthReport:
    """What is right and wrong with a data set, in numbers and in plain sentences.

    Args:
        counts: Images per class (index, in ``class_names`` order) and split
            (columns ``train``, ``val``, ``test``, ``total``).
        imbalance_ratio: Largest class total divided by smallest (``inf`` when
            a class has no images).
        duplicate_groups: Manifest paths that share identical content, one list per content.
        cross_split_duplicates: ``(train path, val or test path)`` pairs with
            identical content: the validation score would be too optimistic.
        conflicting_labels: Groups of manifest paths with identical content but
            different labels.
        tiny_classes: Classes with fewer than 5 images, or with no validation image.
        skipped: Files that were not loaded, with reasons.
        warnings: Plain-language sentences about the problems above.
    """

    counts: pd.DataFrame
    imbalance_ratio: float
    duplicate_groups: list[list[str]]
    cross_split_duplicates: list[tuple[str, str]]
    conflicting_labels: list[list[str]]
    tiny_classes: list[str]
    skipped: list[SkippedFile]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (an infinite imbalance ratio becomes None).

        Returns:
            Plain lists, dicts, strings and numbers.
        """
        counts = [
            {"class": str(label), **{column: int(value) for column, value in row.items()}}
            for label, row in self.counts.iterrows()
        ]
        return {
            "counts": counts,
            "imbalance_ratio": self.imbalance_ratio if math.isfinite(self.imbalance_ratio) else None,
            "duplicate_groups": [list(group) for group in self.duplicate_groups],
            "cross_split_duplicates": [list(pair) for pair in self.cross_split_duplicates],
            "conflicting_labels": [list(group) for group in self.conflicting_labels],
            "tiny_classes": list(self.tiny_classes),
            "skipped": [{"name": item.name, "reason": item.reason} for item in self.skipped],
            "warnings": list(self.warnings),
        }


def health_report(spec: DatasetSpec) -> HealthReport:
    """Check a data set for the problems that make results misleading.

    Args:
        spec: The data set.

    Returns:
        The ``HealthReport``.

    Raises:
        DataError: When the manifest cannot be read.
    """
    frame = read_manifest(spec)
    counts = _counts(frame, spec.class_names)
    totals = counts["total"]
    smallest, largest = int(totals.min()), int(totals.max())
    imbalance_ratio = float(largest / smallest) if smallest > 0 else math.inf

    duplicate_groups, conflicting_labels, cross_split = [], [], []
    for _, group in frame.groupby("sha256", sort=True):
        if len(group) < 2:
            continue
        duplicate_groups.append(sorted(group["path"]))
        if group["label"].nunique() > 1:
            conflicting_labels.append(sorted(group["path"]))
        train_paths = sorted(group.loc[group["split"] == "train", "path"])
        held_out = sorted(group.loc[group["split"] != "train", "path"])
        cross_split.extend((train_path, other) for train_path in train_paths for other in held_out)

    tiny_classes = [
        label
        for label in spec.class_names
        if counts.at[label, "total"] < TINY_CLASS_IMAGES or counts.at[label, "val"] == 0
    ]
    skipped = read_skipped(spec)
    warnings = _warnings(counts, imbalance_ratio, cross_split, conflicting_labels, skipped)
    return HealthReport(
        counts=counts,
        imbalance_ratio=imbalance_ratio,
        duplicate_groups=duplicate_groups,
        cross_split_duplicates=cross_split,
        conflicting_labels=conflicting_labels,
        tiny_classes=tiny_classes,
        skipped=skipped,
        warnings=warnings,
    )


def _counts(frame: pd.DataFrame, class_names: tuple[str, ...]) -> pd.DataFrame:
    counts = pd.crosstab(frame["label"], frame["split"]) if not frame.empty else pd.DataFrame()
    counts = counts.reindex(index=list(class_names), columns=list(SPLITS), fill_value=0).fillna(0).astype(int)
    counts["total"] = counts[list(SPLITS)].sum(axis=1)
    counts.index.name = "class"
    counts.columns.name = None
    return counts


def _warnings(
    counts: pd.DataFrame,
    imbalance_ratio: float,
    cross_split: list[tuple[str, str]],
    conflicting_labels: list[list[str]],
    skipped: list[SkippedFile],
) -> list[str]:
    """Sentences a student can act on, most serious first."""
    warnings: list[str] = []
    if cross_split:
        warnings.append(
            f"{len(cross_split)} image{_plural(len(cross_split), ' is', 's are')} in training and also in "
            "validation or test: the model is scored on pictures it has already seen, so the score will look "
            "better than it really is. Remove the copies."
        )
    if conflicting_labels:
        warnings.append(
            f"{len(conflicting_labels)} picture{_plural(len(conflicting_labels), ' appears', 's appear')} in more "
            "than one class. The model cannot get both right; check which class each belongs to."
        )
    for label, row in counts.iterrows():
        if row["total"] == 0:
            warnings.append(f"Class {label!r} has no images.")
        elif row["total"] < TINY_CLASS_IMAGES:
            warnings.append(
                f"Class {label!r} has only {row['total']} image{_plural(row['total'], '', 's')}; "
                f"a model needs at least {TINY_CLASS_IMAGES}, and 20 or more per class give steadier results."
            )
        if row["total"] > 0 and row["val"] == 0:
            warnings.append(
                f"Class {label!r} has no validation images, so nobody can tell how well the model recognises it."
            )
        if row["total"] > 0 and row["train"] == 0:
            warnings.append(f"Class {label!r} has no training images, so the model cannot learn it.")
    if math.isinf(imbalance_ratio) or imbalance_ratio >= IMBALANCE_WARNING_RATIO:
        shown = "many" if math.isinf(imbalance_ratio) else f"{imbalance_ratio:.1f}"
        warnings.append(
            f"The largest class has {shown} times as many images as the smallest. Accuracy can look good while "
            "the small class is ignored: look at per-class recall, or turn on class weights."
        )
    if skipped:
        warnings.append(
            f"{len(skipped)} file{_plural(len(skipped), ' was', 's were')} skipped; the list below says why for each."
        )
    return warnings


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many
