"""Every event a run writes to ``events.jsonl``, declared once with its fields.

Writers: the training engine (:func:`transfer_core.training.train` emits ``run_started``,
``stage``, ``progress``, ``frozen_runtime``, ``batch_end``, ``epoch_end``), the job runner
(:mod:`transfer_core.jobs` writes ``queued``, ``starting``, ``stopping`` and the terminal ``finished`` /
``stopped`` / ``failed``). Readers (the app's live view, the command line's progress line, the
run store's status) read these names. :class:`~transfer_core.runs.EventLog` adds ``time``
(epoch seconds) to every line. A leaf module: no TensorFlow, nothing from the package.
"""

# No ``from __future__ import annotations``: TypedDict reads NotRequired from live annotations.
import types
import typing
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

# What receives the engine's events (an EventLog, a list's append, the CLI's progress line), and
# what the engine polls after every batch.
Emit = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]


class _Event(TypedDict):
    type: str
    time: NotRequired[float]  # Added by EventLog when the line is written.


class QueuedEvent(_Event):
    """Waiting for a training slot (``position`` runs ahead) or for the previous run (None)."""

    position: int | None
    message: str


class StartingEvent(_Event):
    """The worker holds a slot and is loading TensorFlow and the model."""

    message: str


class StoppingEvent(_Event):
    """The worker saw Stop and is keeping the best epoch's weights, evaluating and saving them.

    Proof the worker answered: :func:`transfer_core.jobs.enforce_stop` gives it longer to save."""

    message: str


class RunStartedEvent(_Event):
    """The engine read the splits and is about to build the model."""

    strategy: str
    backbone: str
    weights: str
    classes: list[str]
    num_train: int
    num_val: int
    epochs_total: int
    batch_size: int
    precision: str  # The dtype policy in force (``auto`` resolved).
    distribution: str
    # Training seconds after which the run ends at an epoch boundary (None: no budget).
    time_budget_seconds: NotRequired[float | None]


class StageEvent(_Event):
    """A stage begins: ``decode``, ``features``, ``prefix``, ``head``, ``fine_tune`` or ``scratch``."""

    stage: str
    description: str
    epochs: int  # 0 for a one-pass stage.
    cached: bool  # The stage works on cached (decoded images / features) inputs.
    # An epoch stage: this worker process trained the same stage before (its step traces faster).
    traced_before: NotRequired[bool]


class ProgressEvent(_Event):
    """Images done in a one-pass stage (decoding, feature or prefix computation)."""

    stage: str
    done: int
    total: int
    cached: NotRequired[bool]  # True: read from the on-disk cache in one go.


class FrozenRuntimeEvent(_Event):
    """Where a one-pass stage's frozen network runs (``features`` or ``prefix``), and why.

    Written once per stage that computes anything (a stage read wholly from the feature cache
    runs no network and writes none).
    """

    stage: str
    runtime: str  # "litert" (ai-edge-litert), "tflite" (tf.lite's interpreter) or "tensorflow".
    threads: int | None  # The interpreter's threads; None on TensorFlow.
    reason: str  # Why this runtime: how the model was obtained, or why LiteRT was not used.
    convert_seconds: float | None  # Seconds converting the network now; 0.0: converted earlier; None: not converted.
    difference: float | None  # Largest difference from Keras' outputs on real images, relative to the
    # largest Keras output: this run's first images, or an earlier run's for the very same weights.


class BatchEndEvent(_Event):
    """A training batch ended; ``loss``/``accuracy`` are the epoch's running means."""

    stage: str
    epoch: int  # Global epoch (1-based) across stages.
    batch: int
    batches: int
    step: int  # Global step across stages.
    loss: float
    accuracy: float


class EpochEndEvent(_Event):
    """An epoch ended; the same fields as a row of ``metrics.csv`` plus ``stage_epoch``."""

    stage_epoch: int  # 1-based epoch within the stage.
    epoch: int
    stage: str
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    elapsed: float
    images_per_second: float | None
    batches: NotRequired[int]  # Batches trained, only when a time budget ended the epoch part-way.


class EvaluatedEvent(_Event):
    """The kept model went through one split's images (the whole network) at the run's end.

    ``first_batch_*`` time the first batch when it also traced the forward pass (0 when an
    earlier split of the run traced it), so the estimate can tell the one-off trace from the
    per-image cost (``compare/speeds.py``).
    """

    split: str  # "val" or "test"
    images: int
    seconds: float
    first_batch_images: int
    first_batch_seconds: float


class TerminalEvent(_Event):
    """``finished``, ``stopped`` or ``failed``: the run ended; the summary fields when it was evaluated."""

    reason: str
    val_accuracy: NotRequired[float | None]
    best_val_accuracy: NotRequired[float | None]
    seconds: NotRequired[float | None]
    epochs: NotRequired[int | None]


EVENT_SCHEMAS: dict[str, type] = {
    "queued": QueuedEvent,
    "starting": StartingEvent,
    "run_started": RunStartedEvent,
    "stage": StageEvent,
    "progress": ProgressEvent,
    "frozen_runtime": FrozenRuntimeEvent,
    "batch_end": BatchEndEvent,
    "epoch_end": EpochEndEvent,
    "evaluated": EvaluatedEvent,
    "stopping": StoppingEvent,
    "finished": TerminalEvent,
    "stopped": TerminalEvent,
    "failed": TerminalEvent,
}
EVENT_TYPES = tuple(EVENT_SCHEMAS)
TERMINAL_EVENTS = ("finished", "stopped", "failed")
STAGES = ("decode", "features", "prefix", "head", "fine_tune", "scratch")


def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema, include_extras=True)


def _required(schema: type) -> frozenset[str]:
    return frozenset(schema.__required_keys__)


_FIELDS = {kind: _hints(schema) for kind, schema in EVENT_SCHEMAS.items()}
_REQUIRED = {kind: _required(schema) for kind, schema in EVENT_SCHEMAS.items()}


def fields_of(event_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """``(required, optional)`` field names of a declared event type (``type`` and ``time`` included).

    Raises:
        KeyError: The type is not declared.
    """
    required = _REQUIRED[event_type]
    return required, frozenset(_FIELDS[event_type]) - required


def validate_event(event: Any, *, complete: bool = True) -> list[str]:
    """Problems with one event; an empty list means it matches its declaration.

    Args:
        event: A dict as emitted, or as read back from ``events.jsonl``.
        complete: Also report missing required fields. ``False`` checks only that the type and
            every field present are declared, with values of the declared JSON type (what a
            hand-made event in a test fixture must meet).
    """
    if not isinstance(event, dict):
        return [f"an event must be a dict. Received: {type(event).__name__}"]
    kind = event.get("type")
    if kind not in EVENT_SCHEMAS:
        return [f"undeclared event type {kind!r} (declare it in transfer_core.events)"]
    fields = _FIELDS[kind]
    problems = [f"{kind}: undeclared field {name!r}" for name in event if name not in fields]
    if complete:
        problems += [f"{kind}: missing field {name!r}" for name in sorted(_REQUIRED[kind]) if name not in event]
    for name, value in event.items():
        if name in fields and name != "type" and not _matches(fields[name], value):
            problems.append(f"{kind}: field {name!r} should be {_describe(fields[name])}. Received: {value!r}")
    return problems


def _strip(annotation: Any) -> Any:
    if typing.get_origin(annotation) is NotRequired:
        return typing.get_args(annotation)[0]
    return annotation


def _matches(annotation: Any, value: Any) -> bool:
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(option, value) for option in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and all(_matches(item, v) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        # JSON has one number type; NaN is how a diverged loss is written.
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    annotation = _strip(annotation)
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
