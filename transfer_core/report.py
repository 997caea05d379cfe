"""The run report (``report.json``): one frozen dataclass, readable without TensorFlow.

The engine writes it when a run ends (:func:`transfer_core.training.train`), the job runner
adds ``status`` and ``reason`` (and writes a two-key report for a run it stopped by force).
Readers use :class:`RunReport` attributes, never string keys. Old run directories keep
loading: a missing key reads as None, an unknown key is ignored; the key names in the file
are the field names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_NUMBER = (int, float)


@dataclass(frozen=True)
class TopLoss:
    """One image of the top-losses gallery (``metrics.top_losses``)."""

    index: int  # Position in the split's file list.
    path: str | None  # Relative to the data set's root.
    true: str
    predicted: str
    confidence: float  # Of the predicted class.
    true_probability: float
    loss: float
    correct: bool

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopLoss:
        """Read one ``top_losses`` item of report.json."""
        return cls(**{name: data.get(name) for name in _TOP_LOSS_FIELDS})


@dataclass(frozen=True)
class SplitEvaluation:
    """The kept model's metrics on one split (``metrics.evaluate_predictions``).

    Stored in report.json under ``evaluation.val`` / ``evaluation.test`` with these field names as keys.
    """

    accuracy: float | None = None  # None for an empty split.
    loss: float | None = None  # Mean cross-entropy.
    num_images: int = 0
    confusion_matrix: tuple[tuple[int, ...], ...] = ()  # True classes as rows, predicted as columns.
    per_class: tuple[dict[str, Any], ...] = ()  # Rows of class, precision, recall, f1, support.
    top_losses: tuple[TopLoss, ...] = ()  # Highest loss first.
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitEvaluation:
        """Read ``evaluation.<split>`` of report.json; a missing key reads as empty.

        Raises:
            ValueError: ``data`` or one of its lists has the wrong JSON type.
        """
        if not isinstance(data, dict):
            raise ValueError(f"report.json evaluation of a split must be a JSON object. Received: {data!r:.80}")
        try:
            return cls(
                accuracy=data.get("accuracy"),
                loss=data.get("loss"),
                num_images=int(data.get("num_images") or 0),
                confusion_matrix=tuple(tuple(row) for row in data.get("confusion_matrix") or ()),
                per_class=tuple(dict(row) for row in data.get("per_class") or ()),
                top_losses=tuple(TopLoss.from_dict(item) for item in data.get("top_losses") or ()),
                class_names=tuple(data.get("class_names") or ()),
            )
        except (TypeError, ValueError, AttributeError) as error:
            raise ValueError(f"report.json evaluation of a split is malformed: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in report.json (lists, plain dicts)."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "num_images": self.num_images,
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "per_class": [dict(row) for row in self.per_class],
            "top_losses": [dataclasses.asdict(item) for item in self.top_losses],
            "class_names": list(self.class_names),
        }


@dataclass(frozen=True)
class RunReport:
    """Summary and evaluation of one run; every field but ``status`` may be missing (None)."""

    status: str | None = None  # finished | stopped | failed
    reason: str | None = None
    strategy: str | None = None
    backbone: str | None = None
    weights: str | None = None
    input_size: int | None = None
    precision: str | None = None  # The dtype policy in force (``auto`` resolved).
    distribution: str | None = None
    class_names: tuple[str, ...] | None = None
    num_train: int | None = None
    num_val: int | None = None
    val_accuracy: float | None = None  # Of the kept (best) model on the validation split.
    val_loss: float | None = None
    best_val_accuracy: float | None = None  # Best epoch-end value seen during training.
    best_val_loss: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None  # Epochs trained.
    epochs_planned: int | None = None  # Epochs configured (both stages of fine-tuning).
    time_budget_seconds: float | None = None  # Training-time budget the run had (None: none).
    stopped_by_budget: bool | None = None  # The run ended because its time budget was used.
    seconds: float | None = None  # Whole run, wall clock.
    training_seconds: float | None = None  # Sum of epoch times.
    feature_seconds: float | None = None  # Computing backbone/prefix outputs (0 on a cache hit).
    seconds_per_epoch: float | None = None
    images_per_second: float | None = None
    trainable_params: int | None = None
    frozen_params: int | None = None
    cache_hits: tuple[str, ...] | None = None  # "pool", "prefix:<layer>" per split read from the cache.
    reused_backbone: bool | None = None
    peak_rss_mb: float | None = None
    # {"val": evaluate_predictions(...), "test": ...}: split name -> its metrics.
    evaluation: dict[str, SplitEvaluation] | None = None

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is not None and not _matches(_KINDS[spec.name], value):
                raise ValueError(
                    f"report.json field {spec.name!r} must be {_KIND_NAMES[_KINDS[spec.name]]}. "
                    f"Received: {spec.name}={value!r}"
                )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        """Read a report dict; missing keys -> None, unknown keys ignored.

        Raises:
            ValueError: ``data`` is not a dict, or a field holds the wrong JSON type.
        """
        if not isinstance(data, dict):
            raise ValueError(f"report.json must hold a JSON object. Received: {type(data).__name__}")
        values = {}
        for name in FIELD_NAMES:
            value = data.get(name)
            if isinstance(value, list) and _KINDS[name] == "strings":
                value = tuple(value)
            if isinstance(value, dict) and _KINDS[name] == "evaluations":
                value = {split: SplitEvaluation.from_dict(part) for split, part in value.items()}
            values[name] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The dict written to report.json; fields that are None are left out."""
        out = {}
        for name in FIELD_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "evaluation":
                value = {split: part.to_dict() for split, part in value.items()}
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def has_metrics(self) -> bool:
        """Whether the run was evaluated (a stopped-before-any-epoch or failed run was not)."""
        return self.val_accuracy is not None

    @property
    def val_evaluation(self) -> SplitEvaluation | None:
        """``evaluate_predictions`` of the validation split, or None."""
        return (self.evaluation or {}).get("val")

    @property
    def test_evaluation(self) -> SplitEvaluation | None:
        """``evaluate_predictions`` of the held-out test split, or None when there is none."""
        return (self.evaluation or {}).get("test")

    @property
    def num_test(self) -> int | None:
        """Images in the held-out test split, or None when there is none."""
        test = self.test_evaluation
        return test.num_images if test and test.num_images else None

    @property
    def test_accuracy(self) -> float | None:
        test = self.test_evaluation
        return test.accuracy if test and test.num_images else None


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(RunReport))
# What a reader uses for a run without a report: every field None.
EMPTY_REPORT = RunReport()

# JSON kind of each field: what from_dict accepts.
_KINDS = {
    **dict.fromkeys(("status", "reason", "strategy", "backbone", "weights", "precision", "distribution"), "str"),
    **dict.fromkeys(("input_size", "num_train", "num_val", "best_epoch", "epochs", "epochs_planned",
                     "trainable_params",
                     "frozen_params"), "int"),
    **dict.fromkeys(("val_accuracy", "val_loss", "best_val_accuracy", "best_val_loss", "seconds",
                     "training_seconds", "feature_seconds", "seconds_per_epoch", "images_per_second",
                     "peak_rss_mb", "time_budget_seconds"), "number"),
    "class_names": "strings",
    "cache_hits": "strings",
    **dict.fromkeys(("reused_backbone", "stopped_by_budget"), "bool"),
    "evaluation": "evaluations",
}
_KIND_NAMES = {"str": "a string", "int": "an integer", "number": "a number", "strings": "a list of strings",
               "bool": "true or false", "evaluations": "a JSON object of split evaluations"}
_TOP_LOSS_FIELDS = tuple(f.name for f in dataclasses.fields(TopLoss))
assert set(_KINDS) == set(FIELD_NAMES)  # noqa: S101 - a field without a kind is a programming error.


def _matches(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, _NUMBER) and not isinstance(value, bool)  # NaN is a number here.
    if kind == "strings":
        return isinstance(value, tuple) and all(isinstance(item, str) for item in value)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, dict) and all(isinstance(part, SplitEvaluation) for part in value.values())
