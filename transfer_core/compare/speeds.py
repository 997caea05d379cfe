"""What this server's finished runs measured, part by part, for the estimate before a Start.

A run's wall time (Start -> finished) is cut by its events into parts that scale differently:

- ``handoff``: the queued run reaching a worker (a warm worker: well under a second; a fresh one
  imports TensorFlow first). Measured from ``queued`` (or the end of the run it waited for) to ``starting``.
- ``<strategy>|start``: ``starting`` -> the first stage (reading the data set, building the model).
- one-pass stages ``features``, ``prefix``, ``decode``: images per second over the training and
  validation images when computed; ``<stage>|hit`` seconds when read from the cache.
- ``convert`` seconds: converting a frozen part (the pooled backbone, a prefix) for LiteRT, which
  happens once per backbone, size and cut (then read from ``cache/litert/``), so it is kept out of the
  stage's rate (from the ``frozen_runtime`` event's ``convert_seconds``).
- epoch stages (``head``, ``fine_tune``, ``scratch``; ``:images`` appended when a head or fine-tuning
  stage reads images rather than cached inputs): ``<stage>|train`` images per second of steady
  train steps (from consecutive ``batch_end`` events), ``<stage>|val`` validation images per second
  (``epoch_end`` minus the epoch's last ``batch_end``), and ``<stage>|trace`` seconds: what the stage
  took beyond those rates (tracing its step on the first batch, building the pipeline) in a worker that
  trained the same stage before; ``<stage>|trace:first`` in a worker process doing so for the first time.
- ``end`` seconds: the last epoch -> ``finished`` (saving, evaluating cached validation inputs)
  beyond the images evaluated through the whole network; those are timed by ``evaluated`` events:
  ``eval`` images per second and ``eval|trace`` seconds (what the first batch took beyond that rate:
  tracing the forward pass), so the end scales to a data set with another test split. (Runs from
  before those events: ``end`` only when nothing was evaluated, else ``eval`` over the rest.)
  A run whose last stage trained on cached inputs sends its test images through the same frozen
  part (at that stage's one-pass rate, left out of its ``end``).

The estimate adds the same parts back up for the new data set's counts
(:mod:`transfer_core.compare.estimate`). Pure Python; no TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_core.config import Settings
from transfer_core.runs import RunInfo, read_events

ONE_PASS_STAGES = ("features", "prefix", "decode")
EPOCH_STAGES = ("head", "fine_tune", "scratch")
TERMINAL = ("finished", "stopped", "failed")
# Speed files written before the parts were measured used other keys, before format 3 ``eval`` held the
# trace of the forward pass too, and before format 4 no ``convert`` was read: they are ignored (and the
# runs read again).
SPEED_FORMAT = 4
# The end of a run that evaluates no image through the network, before one was measured.
ROUGH_END_SECONDS = 0.5
# Measurements kept per part.
KEPT = 5
# The trace part of an epoch stage a worker process trained for the first time (``<stage>|trace`` is a
# later one's; runs from before ``traced_before`` was recorded count as later ones).
FIRST_TRACE = "trace:first"


@dataclass(frozen=True)
class Speeds:
    """Measured rates (``images_per_second``) and fixed costs (``overhead_seconds``) keyed by
    :func:`speed_key`, each the last :data:`KEPT` measurements, oldest first (their median is used:
    one run slowed by other work on the server moves it little), and the runs already read."""

    images_per_second: dict[str, tuple[float, ...]] = field(default_factory=dict)
    overhead_seconds: dict[str, tuple[float, ...]] = field(default_factory=dict)
    recorded: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {"format": SPEED_FORMAT, "recorded": sorted(self.recorded),
                "images_per_second": {k: list(v) for k, v in self.images_per_second.items()},
                "overhead_seconds": {k: list(v) for k, v in self.overhead_seconds.items()}}

    def merged(self, newer: Speeds) -> Speeds:
        """These speeds with ``newer``'s measurements appended (the last :data:`KEPT` of each kept)."""
        def merge(old: dict[str, tuple[float, ...]], new: dict[str, tuple[float, ...]]) -> dict:
            return {k: (old.get(k, ()) + new.get(k, ()))[-KEPT:] for k in {**old, **new}}

        return Speeds(merge(self.images_per_second, newer.images_per_second),
                      merge(self.overhead_seconds, newer.overhead_seconds), self.recorded | newer.recorded)

    def rate(self, backbone: str, input_size: int, part: str) -> float | None:
        """Images per second of ``part`` (the median of the kept measurements), None if never measured."""
        values = self.images_per_second.get(speed_key(backbone, input_size, part))
        return statistics.median(values) if values else None

    def seconds(self, backbone: str, input_size: int, part: str) -> float | None:
        """Seconds of the fixed cost ``part`` (the median of the kept measurements), None if never measured."""
        values = self.overhead_seconds.get(speed_key(backbone, input_size, part))
        return statistics.median(values) if values else None


def speed_key(backbone: str, input_size: int, part: str) -> str:
    """E.g. ``"mobilenet_v2_0.35|224|scratch|train"``; ``part`` as in the module docstring."""
    return f"{backbone}|{int(input_size)}|{part}"


def speed_file(settings: Settings) -> Path:
    """Where the server's measured speeds are kept: ``<TRANSFER_HOME>/cache/speed.json``."""
    return settings.cache_dir / "speed.json"


def load_speeds(path: Path) -> Speeds:
    """The speeds in ``path``; none when it is missing, unreadable or of an older format (a cache)."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != SPEED_FORMAT:
            return Speeds()
        return Speeds(
            {str(k): tuple(float(x) for x in v if positive(x)) for k, v in data["images_per_second"].items()},
            {str(k): tuple(float(x) for x in v if _non_negative(x)) for k, v in data["overhead_seconds"].items()},
            frozenset(str(r) for r in data.get("recorded", [])),
        )
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return Speeds()


def record_speeds(path: Path, runs: Sequence[RunInfo]) -> Speeds:
    """Merge what the finished ``runs`` not read before measured into ``path`` (written on change).

    Returns:
        The merged speeds.
    """
    from transfer_core.fileio import atomic_write_json

    before = load_speeds(path)
    merged = before.merged(measured_speeds([info for info in runs if info.run_id not in before.recorded]))
    if merged != before:
        # A read-only cache only costs the next page its measurements.
        with contextlib.suppress(OSError):
            atomic_write_json(Path(path), merged.to_dict())
    return merged


def measured_speeds(runs: Sequence[RunInfo]) -> Speeds:
    """Parts measured by the finished ``runs``, oldest first so the newest run's value wins."""
    speeds = Speeds()
    for info in sorted(runs, key=lambda info: info.created):
        if info.status != "finished" or info.config is None or not info.report or not info.report.input_size:
            continue
        config = info.config
        speeds = speeds.merged(run_speeds(
            info.events(), backbone=config.model.backbone, input_size=info.report.input_size,
            strategy=config.train.strategy, num_test=_num_test(info), waited_until=_waited_until(info),
            run_id=info.run_id, end_seconds=speeds.seconds(config.model.backbone, info.report.input_size, "end")))
    return speeds


def run_speeds(events: Sequence[dict[str, Any]], *, backbone: str, input_size: int, strategy: str,
               num_test: int = 0, waited_until: float | None = None, run_id: str = "",
               end_seconds: float | None = None) -> Speeds:
    """The parts one finished run's events measure (see the module docstring).

    Args:
        events: The run's events, in order, each with its ``time``.
        num_test: Images in the test split (evaluated at the end).
        waited_until: When the run it waited for ended (None: it waited for none).
        run_id: Noted in ``recorded``.
        end_seconds: The ``end`` measured before (None: :data:`ROUGH_END_SECONDS`), to tell a
            run's evaluation through the network from the rest of its end.
    """
    def key(part: str) -> str:
        return speed_key(backbone, input_size, part)

    rates: dict[str, float] = {}
    fixed: dict[str, float] = {}
    first = {}
    for event in events:
        first.setdefault(event.get("type"), event)
    if "finished" not in first or "run_started" not in first:
        return Speeds(recorded=frozenset({run_id}) if run_id else frozenset())
    started = first["run_started"]
    # A run trained in the caller's process (the CLI, tests) has no ``starting``: it starts at ``run_started``.
    first.setdefault("starting", started)
    num_train, num_val = int(started.get("num_train") or 0), int(started.get("num_val") or 0)
    batch_size = int(started.get("batch_size") or 32)
    starting, finished = first["starting"]["time"], first["finished"]["time"]
    if "queued" in first:
        fixed[key("handoff")] = max(0.0, starting - max(first["queued"]["time"], waited_until or 0.0))
    stages = [(i, e) for i, e in enumerate(events) if e.get("type") == "stage"]
    epoch_ends = [e for e in events if e.get("type") == "epoch_end"]
    if stages:
        fixed[key(f"{strategy}|start")] = max(0.0, stages[0][1]["time"] - starting)
    images_on_images = 0  # Validation images the end evaluates through the whole network.
    final_arrays = None  # The one-pass stage whose outputs the last epoch stage trained on.
    for number, (index, stage) in enumerate(stages):
        following = stages[number + 1][1]["time"] if number + 1 < len(stages) else None
        name = str(stage.get("stage"))
        stage_events = events[index + 1:stages[number + 1][0] if following is not None else len(events)]
        if name in ONE_PASS_STAGES and following is not None:
            # Converting the frozen network for LiteRT happens once per backbone, size and cut (it is
            # cached), so it is no part of the rate the next runs will see.
            converted = sum(float(e.get("convert_seconds") or 0.0) for e in stage_events
                            if e.get("type") == "frozen_runtime")
            seconds = following - stage["time"] - converted
            if converted > 0:
                fixed[key("convert")] = converted
            hit = any(e.get("type") == "progress" and e.get("cached") for e in stage_events)
            if hit:
                fixed[key(f"{name}|hit")] = max(0.0, seconds)
            elif seconds > 0 and num_train + num_val:
                rates[key(name)] = (num_train + num_val) / seconds
        elif name in EPOCH_STAGES:
            part = stage_part(name, cached=bool(stage.get("cached")))
            if part.endswith(":images") or name == "scratch":
                images_on_images = num_val
            final_arrays = {"head": "features", "fine_tune": "prefix"}.get(part)
            _epoch_parts(stage, stage_events, key(part), num_train, num_val, batch_size, rates, fixed)
    if epoch_ends:
        end = finished - epoch_ends[-1]["time"]
        evaluated = images_on_images
        if final_arrays is None:
            evaluated += num_test
        elif num_test and rates.get(key(final_arrays)):
            # The test images went through the frozen part at the rate its stage just measured
            # (when that stage read the cache, so did the test split's).
            end -= num_test / rates[key(final_arrays)]
        timed = [e for e in events if e.get("type") == "evaluated"]
        if timed:
            _eval_parts(timed, end, key, rates, fixed)
        elif not evaluated:
            fixed[key("end")] = max(0.0, end)
        elif end > (ROUGH_END_SECONDS if end_seconds is None else end_seconds):
            rates[key("eval")] = evaluated / (end - (ROUGH_END_SECONDS if end_seconds is None else end_seconds))
    return Speeds({k: (v,) for k, v in rates.items()}, {k: (v,) for k, v in fixed.items()},
                  frozenset({run_id}) if run_id else frozenset())


def _eval_parts(timed: Sequence[dict], end: float, key, rates: dict[str, float], fixed: dict[str, float]) -> None:
    """``eval`` (images per second), ``eval|trace`` and ``end`` from a run's ``evaluated`` events."""
    seconds = sum(float(e.get("seconds") or 0.0) for e in timed)
    images = sum(int(e.get("images") or 0) for e in timed)
    first_images = sum(int(e.get("first_batch_images") or 0) for e in timed)
    first_seconds = sum(float(e.get("first_batch_seconds") or 0.0) for e in timed)
    fixed[key("end")] = max(0.0, end - seconds)
    if images > first_images and seconds > first_seconds:
        per_image = (seconds - first_seconds) / (images - first_images)
        rates[key("eval")] = 1 / per_image
        fixed[key("eval|trace")] = max(0.0, first_seconds - first_images * per_image)


def stage_part(stage: str, cached: bool) -> str:
    """The key part of an epoch stage: head and fine-tuning on images run far slower than on cached inputs."""
    return f"{stage}:images" if stage in ("head", "fine_tune") and not cached else stage


def _epoch_parts(stage: dict, stage_events: Sequence[dict], prefix: str, num_train: int, num_val: int,
                 batch_size: int, rates: dict[str, float], fixed: dict[str, float]) -> None:
    """Train and validation rates and the trace of one epoch stage, from its batch and epoch events."""
    intervals: list[float] = []
    val_seconds: list[float] = []
    trained = 0
    epochs = 0
    last = stage["time"]  # The end of the previous batch or epoch.
    last_batch = None
    first_batch = True
    end = None
    for event in stage_events:
        if event.get("type") == "batch_end":
            if not first_batch:
                intervals.append(event["time"] - last)
            first_batch = False
            trained += min(batch_size, max(0, num_train - (int(event.get("batch", 1)) - 1) * batch_size))
            last = last_batch = event["time"]
        elif event.get("type") == "epoch_end":
            epochs += 1
            if last_batch is not None:
                val_seconds.append(event["time"] - last_batch)
            last = end = event["time"]
    if end is None:
        return
    per_train = statistics.median(intervals) / batch_size if intervals else None
    # The first epoch's validation traces its step too: the later ones are the steady rate.
    steady_val = val_seconds[1:] or val_seconds
    per_val = statistics.median(steady_val) / num_val if steady_val and num_val else None
    if per_train:
        rates[f"{prefix}|train"] = 1 / per_train
    if per_val:
        rates[f"{prefix}|val"] = 1 / per_val
    beyond_first_batch = max(0, trained - min(batch_size, num_train))
    trace = (end - stage["time"]) - beyond_first_batch * (per_train or 0.0) - epochs * num_val * (per_val or 0.0)
    # A new worker process's first trace of this stage pays Keras and TensorFlow's one-time costs too.
    first = stage.get("traced_before") is False
    fixed[f"{prefix}|{FIRST_TRACE if first else 'trace'}"] = max(0.0, trace)


def _num_test(info: RunInfo) -> int:
    if info.config is None:
        return 0
    from transfer_core.data import DataError, read_manifest

    try:
        return int((read_manifest(info.config.dataset)["split"] == "test").sum())
    except (DataError, OSError, KeyError, ValueError):
        return 0


def _waited_until(info: RunInfo) -> float | None:
    """When the run ``info`` waited for (its ``after`` file) ended, if it did."""
    try:
        before = Path((info.path / "after").read_text().strip())
    except OSError:
        return None
    events, _ = read_events(before / "events.jsonl")
    return next((e["time"] for e in events if e.get("type") in TERMINAL and "time" in e), None)


def positive(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def _non_negative(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) >= 0
    except (TypeError, ValueError):
        return False
