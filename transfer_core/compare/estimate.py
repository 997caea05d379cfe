"""How long a comparison will take, estimated before it starts.

Three sources, best first:

1. **Measured** speeds of this server: images per second of each (backbone, input size,
   stage) from finished runs' epoch rows (``epoch_end`` events: ``images_per_second`` counts
   training images per second of epoch time, validation included), plus the one-pass feature
   computation and each run's fixed cost (building the model, evaluating it). They are kept
   in ``<TRANSFER_HOME>/cache/speed.json`` (:func:`speed_file`), merged from the run store by
   :func:`record_speeds`, so every workspace on the server benefits.
2. **Cached features**: a feature-extraction run whose backbone features are already on disk
   costs only its head epochs. A finished run with the same data set, backbone, input size,
   ImageNet weights and precision that cached its features means they are there (unless the
   cache was cleared since, in which case the estimate is low). Within one comparison,
   fine-tuning reads the features feature extraction computed just before it.
3. A **rough** per-parameter default when nothing was measured: training cost grows with the
   backbone's parameters and the number of pixels. Calibrated on a 2-core classroom server
   (mobilenet_v2_0.35 at 224 px trained from scratch: ~0.07 s per image and epoch); labelled
   "rough" wherever it is used.

Pure Python; no TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from transfer_core.compare.labels import as_number, report_of, run_label
from transfer_core.config import RunConfig, Settings
from transfer_core.display.run_text import format_seconds
from transfer_core.runs import RunInfo

# Above this many seconds in total the page warns before Start.
LONG_COMPARISON_SECONDS = 180.0
# Rough defaults (source 3): seconds per training image per epoch and per million backbone
# parameters at 224 px, for training every layer; a forward pass costs about a third of that.
ROUGH_TRAIN_SECONDS_PER_IMAGE_PER_MPARAM = 0.04
ROUGH_FORWARD_FRACTION = 1 / 3
# Fine-tuning's top blocks on a cached prefix cost about a forward pass per image.
ROUGH_FINE_TUNE_FRACTION = 1 / 3
# A head on cached features: a few Dense layers, well under a millisecond per image.
ROUGH_HEAD_SECONDS_PER_IMAGE = 2e-4
# Building the model and evaluating it, per run, when nothing was measured.
ROUGH_OVERHEAD_SECONDS = 5.0


@dataclass(frozen=True)
class Speeds:
    """Measured speeds: ``images_per_second`` and ``overhead_seconds`` keyed by :func:`speed_key`."""

    images_per_second: dict[str, float] = field(default_factory=dict)
    overhead_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"images_per_second": dict(self.images_per_second), "overhead_seconds": dict(self.overhead_seconds)}

    def merged(self, newer: Speeds) -> Speeds:
        """These speeds with ``newer``'s measurements replacing the same keys (the server now)."""
        return Speeds({**self.images_per_second, **newer.images_per_second},
                      {**self.overhead_seconds, **newer.overhead_seconds})


@dataclass(frozen=True)
class RunEstimate:
    """The estimated time of one run of a comparison."""

    label: str
    strategy: str
    seconds: float
    basis: str  # "measured", "cached features" (measured, features on disk) or "rough"
    detail: str  # One plain sentence on what the time is made of.


@dataclass(frozen=True)
class ComparisonEstimate:
    """The estimated time of a whole comparison (its runs go one after another)."""

    runs: tuple[RunEstimate, ...]

    @property
    def total_seconds(self) -> float:
        return sum(run.seconds for run in self.runs)

    @property
    def rough(self) -> bool:
        return any(run.basis == "rough" for run in self.runs)

    @property
    def is_long(self) -> bool:
        return self.total_seconds > LONG_COMPARISON_SECONDS

    @property
    def warning(self) -> str | None:
        """A sentence for a comparison over :data:`LONG_COMPARISON_SECONDS`, else None."""
        if not self.is_long:
            return None
        slowest = max(self.runs, key=lambda run: run.seconds)
        return (f"This comparison will take about {format_seconds(self.total_seconds)}, "
                f"{format_seconds(slowest.seconds)} of it for {slowest.label}. Fewer epochs, a smaller input size "
                "or leaving a strategy out makes it shorter.")


def speed_key(backbone: str, input_size: int, stage: str) -> str:
    """E.g. ``"mobilenet_v2_0.35|96|head"``; ``stage`` is a training stage (``head``, ``fine_tune``,
    ``scratch``; ``:images`` appended when it ran on images rather than cached inputs), ``features``
    (the one-pass feature computation) or ``overhead`` (a run's fixed cost)."""
    return f"{backbone}|{int(input_size)}|{stage}"


def speed_file(settings: Settings) -> Path:
    """Where the server's measured speeds are kept: ``<TRANSFER_HOME>/cache/speed.json``."""
    return settings.cache_dir / "speed.json"


def load_speeds(path: Path) -> Speeds:
    """The speeds in ``path``; none when it is missing or unreadable (it is only a cache)."""
    try:
        data = json.loads(Path(path).read_text())
        return Speeds(
            {str(k): float(v) for k, v in data.get("images_per_second", {}).items() if _positive(v)},
            {str(k): float(v) for k, v in data.get("overhead_seconds", {}).items() if _positive(v)},
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return Speeds()


def record_speeds(path: Path, runs: Sequence[RunInfo]) -> Speeds:
    """Merge the speeds measured by ``runs`` into ``path`` (written only when they change).

    Returns:
        The merged speeds.
    """
    from transfer_core.fileio import atomic_write_json

    before = load_speeds(path)
    merged = before.merged(measured_speeds(runs))
    if merged != before:
        # A read-only cache only costs the next page its measurements.
        with contextlib.suppress(OSError):
            atomic_write_json(Path(path), merged.to_dict())
    return merged


def measured_speeds(runs: Sequence[RunInfo]) -> Speeds:
    """Speeds measured by finished runs, oldest first so the newest run's value wins.

    Args:
        runs: Runs of a store (others than ``finished`` are skipped).

    Returns:
        Images per second per (backbone, size, stage) and a fixed cost per run.
    """
    rates: dict[str, float] = {}
    overhead: dict[str, float] = {}
    for info in sorted(runs, key=lambda info: info.created):
        report = report_of(info)
        config = info.config
        if info.status != "finished" or config is None or not report.input_size:
            continue
        backbone, size = config.model.backbone, report.input_size
        metrics = info.metrics()
        if len(metrics):
            frame = pd.DataFrame({"stage": metrics["stage"],
                                  "ips": pd.to_numeric(metrics["images_per_second"], errors="coerce")})
            # The first epoch of a stage traces its step: the median of the stage is the steady rate.
            for stage, values in frame.dropna().groupby("stage")["ips"]:
                rate = float(values.median())
                if _positive(rate):
                    rates[speed_key(backbone, size, _stage_name(str(stage), config))] = rate
        feature_seconds = as_number(report.feature_seconds)
        images = (report.num_train or 0) + (report.num_val or 0)
        if (config.train.strategy == "feature_extraction" and not report.cache_hits and feature_seconds
                and images):
            rates[speed_key(backbone, size, "features")] = images / feature_seconds
        seconds, training = as_number(report.seconds), as_number(report.training_seconds)
        if seconds is not None and training is not None:
            fixed = seconds - training - (feature_seconds or 0.0)
            if _positive(fixed):
                overhead[speed_key(backbone, size, "overhead")] = fixed
    return Speeds(rates, overhead)


def features_cached(config: RunConfig, runs: Sequence[RunInfo], input_size: int) -> bool:
    """Whether a finished run already cached the backbone features ``config`` needs.

    The features are cached on disk by content (see ``training.feature_cache``) for ImageNet
    weights; a finished run on the same data set, backbone, input size and precision that
    trained on cached features has left them there.
    """
    if config.model.weights != "imagenet" or not config.train.caches_features:
        return False
    for info in runs:
        other, report = info.config, report_of(info)
        if (info.status == "finished" and other is not None and other.dataset.root == config.dataset.root
                and other.model.backbone == config.model.backbone and report.input_size == input_size
                and other.model.weights == "imagenet" and other.train.caches_features
                and other.train.precision == config.train.precision
                and other.train.strategy in ("feature_extraction", "fine_tuning")):
            return True
    return False


def estimate_comparison(
    configs: Sequence[RunConfig],
    *,
    num_train: int,
    num_val: int,
    input_size: int,
    params: int,
    speeds: Speeds | None = None,
    runs: Sequence[RunInfo] = (),
    same_time_budget: bool = False,
) -> ComparisonEstimate:
    """The time each run of a comparison will take, in the order they run.

    Args:
        configs: From :func:`transfer_core.compare.comparison_configs`.
        num_train, num_val: Images in the training and validation split.
        input_size: The input side the runs use (the backbone's default resolved).
        params: The backbone's parameter count (for the rough default).
        speeds: Measured speeds (:func:`record_speeds`); None: nothing measured.
        runs: Runs of the store, to know which features are already cached.
        same_time_budget: From scratch is capped at fine-tuning's training time.

    Returns:
        A :class:`ComparisonEstimate`.
    """
    speeds = speeds or Speeds()
    estimates: list[RunEstimate] = []
    features_on_disk = False
    fine_tune_training: float | None = None
    for config in configs:
        run = _RunCost(config, speeds, num_train, num_val, input_size, params)
        cached_before = False
        if config.train.strategy != "from_scratch":
            cached_before = features_on_disk or features_cached(config, runs, input_size)
            run.features(cached_before)
            run.epochs("head", config.train.epochs)
            if config.train.strategy == "fine_tuning":
                run.epochs("fine_tune", config.train.fine_tune_epochs)
            features_on_disk = features_on_disk or (config.train.caches_features and config.model.weights == "imagenet")
        else:
            run.epochs("scratch", config.train.epochs)
            if same_time_budget and fine_tune_training is not None:
                if run.training > fine_tune_training:
                    run.training = fine_tune_training
                    run.parts.append("capped at fine-tuning's training time")
                else:
                    run.parts.append("all epochs fit within fine-tuning's training time")
        if config.train.strategy == "fine_tuning" and not config.freeze.train_batchnorm:
            fine_tune_training = run.training
        estimates.append(run.estimate(cached_before))
    return ComparisonEstimate(tuple(estimates))


def estimate_for(configs: Sequence[RunConfig], runs: Sequence[RunInfo], settings: Settings,
                 same_time_budget: bool = False) -> ComparisonEstimate:
    """:func:`estimate_comparison` for a data set on disk: counts from its manifest, the backbone's
    size and parameters from the zoo, speeds measured on this server (recorded from ``runs`` first).

    Args:
        configs: From :func:`transfer_core.compare.comparison_configs` (at least one).
        runs: Runs of the store (their speeds are recorded into :func:`speed_file`).
        settings: Where the speed file lives.
        same_time_budget: See :func:`estimate_comparison`.

    Raises:
        ValueError: An unknown backbone or input size, or a data set whose manifest cannot be read.
    """
    from transfer_core import zoo
    from transfer_core.data import DataError, read_manifest

    model = configs[0].model
    input_size = zoo.check_input_size(model.backbone, model.input_size)
    try:
        counts = read_manifest(configs[0].dataset)["split"].value_counts()
    except (DataError, OSError) as error:
        raise ValueError(f"The data set at {configs[0].dataset.root} cannot be read: {error}") from None
    return estimate_comparison(
        configs, num_train=int(counts.get("train", 0)), num_val=int(counts.get("val", 0)), input_size=input_size,
        params=zoo.get_backbone_info(model.backbone).params, speeds=record_speeds(speed_file(settings), runs),
        runs=runs, same_time_budget=same_time_budget)


class _RunCost:
    """Adds up one run's seconds stage by stage, noting whether any part was a rough guess."""

    def __init__(self, config: RunConfig, speeds: Speeds, num_train: int, num_val: int, input_size: int,
                 params: int) -> None:
        self.config, self.speeds = config, speeds
        self.num_train, self.num_val, self.input_size = num_train, num_val, input_size
        # Seconds per training image per epoch for every layer, by the rough default.
        self.rough_train = (ROUGH_TRAIN_SECONDS_PER_IMAGE_PER_MPARAM * params / 1e6 * (input_size / 224) ** 2)
        self.training = 0.0
        self.fixed = 0.0
        self.rough = False
        self.parts: list[str] = []

    def _rate(self, stage: str) -> float | None:
        return self.speeds.images_per_second.get(speed_key(self.config.model.backbone, self.input_size, stage))

    def features(self, cached: bool) -> None:
        if cached or not self.config.train.caches_features:
            self.parts.append("features from the cache" if cached else "backbone runs every epoch")
            return
        rate = self._rate("features")
        images = self.num_train + self.num_val
        if rate:
            self.fixed += images / rate
        else:
            self.rough = True
            self.fixed += images * self.rough_train * ROUGH_FORWARD_FRACTION
        self.parts.append("features computed once")

    def epochs(self, stage: str, epochs: int) -> None:
        name = _stage_name(stage, self.config)
        rate = self._rate(name)
        if rate:
            per_epoch = self.num_train / rate
        else:
            self.rough = True
            if name == "head":
                per_image = ROUGH_HEAD_SECONDS_PER_IMAGE
            elif name == "fine_tune":
                per_image = self.rough_train * ROUGH_FINE_TUNE_FRACTION
            elif name == "head:images":
                per_image = self.rough_train * ROUGH_FORWARD_FRACTION
            else:
                per_image = self.rough_train
            per_epoch = self.num_train * per_image
            if name not in ("head", "fine_tune"):  # On images, validation is a full forward pass each epoch.
                per_epoch += self.num_val * self.rough_train * ROUGH_FORWARD_FRACTION
        self.training += per_epoch * epochs
        self.parts.append(f"{epochs} {stage.replace('_', '-')} epoch{'s' if epochs != 1 else ''} "
                          f"of ~{per_epoch:.1f} s")

    def estimate(self, cached: bool) -> RunEstimate:
        overhead = self.speeds.overhead_seconds.get(speed_key(self.config.model.backbone, self.input_size,
                                                              "overhead"))
        seconds = self.training + self.fixed + (overhead if overhead is not None else ROUGH_OVERHEAD_SECONDS)
        basis = "rough" if self.rough else ("cached features" if cached else "measured")
        return RunEstimate(run_label(self.config), self.config.train.strategy, seconds, basis,
                           ", ".join(self.parts))


def _stage_name(stage: str, config: RunConfig) -> str:
    """The speed key's stage: head and fine-tuning on images run far slower than on cached inputs."""
    if stage in ("head", "fine_tune") and not config.train.caches_features:
        return f"{stage}:images"
    return stage


def _positive(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False
