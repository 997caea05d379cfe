"""How long a comparison will take, estimated before it starts, and how sure the estimate is.

Each run is the sum of the parts :mod:`transfer_core.compare.speeds` measures on this server's
finished runs (per backbone and input size), taken at the new data set's counts:

    handoff + start + one-pass stages (features, prefix, decode: computed, or read from the cache;
    the first features or prefix at a backbone, size and cut also convert that frozen part for LiteRT)
    + epoch stages (trace + steady train steps + validation passes) + end (evaluating the test
    images, and the validation images when they are not cached inputs, at the features' rate)

A stage's trace is a warm worker's (a comparison's runs go to the worker of the runs before them, which
traced such a step before); where only a new process's first traces were measured, two thirds of them.

From scratch with the same time budget trains until fine-tuning's training time is used (checked
after every batch), but never less than its first batch and validation pass.

What was cached is read from the store: a finished run on the same data set, backbone and input
size left its features (feature extraction, fine-tuning), its frozen prefix's outputs
(fine-tuning) or its decoded images (from scratch) on disk; within one comparison, each run finds
what the runs before it left. The converted LiteRT networks do not depend on the data set: a finished
run at the same backbone and size on any data set (or an earlier run of the comparison) converted them.

A part never measured at this backbone and size takes a **rough** default (calibrated on a 2-core
server with MobileNetV2-0.35 at 224 px on real photos), and the estimate says so: "measured"
(every part from this server's runs), "partly measured" or "rough" (:attr:`ComparisonEstimate.sureness`).
Pure Python; no TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from transfer_core.compare.labels import report_of, run_label
from transfer_core.compare.speeds import (
    FIRST_TRACE,
    ROUGH_END_SECONDS,
    Speeds,
    load_speeds,
    measured_speeds,
    record_speeds,
    speed_file,
    speed_key,
    stage_part,
)
from transfer_core.config import RunConfig, Settings
from transfer_core.display.run_text import format_seconds
from transfer_core.runs import RunInfo

__all__ = ["LONG_COMPARISON_SECONDS", "ComparisonEstimate", "RunEstimate", "Speeds", "estimate_comparison",
           "estimate_for", "features_cached", "litert_converted", "load_speeds", "measured_speeds",
           "record_speeds", "speed_file", "speed_key"]

# Above this many seconds in total the page warns before Start.
LONG_COMPARISON_SECONDS = 180.0
# How far from the measurement a "measured" estimate was in bench/bench_estimate.py (BENCHMARKS.md).
MEASURED_MARGIN = 0.30
# Rough defaults, for a backbone and size this server has not measured yet. Calibrated on the parts
# bench/bench_estimate.py measured for MobileNetV2-0.35 at 224 px on the 2-core machine (2026-12-05,
# BENCHMARKS.md), then scaled by parameters and pixels. Seconds per training image per epoch and per
# million backbone parameters at 224 px, for training every layer (MobileNetV2-0.35: ~0.07 s); a
# forward pass through the whole network costs about a tenth (measured: 4-8 ms against ~70 ms).
ROUGH_TRAIN_SECONDS_PER_IMAGE_PER_MPARAM = 0.04
ROUGH_FORWARD_FRACTION = 1 / 10
# A frozen pass computed once (features, the prefix's outputs) runs on LiteRT with XNNPACK: about a
# quarter of the Keras forward pass (BENCHMARKS.md, "Frozen passes on LiteRT").
ROUGH_FROZEN_FRACTION = ROUGH_FORWARD_FRACTION / 4
# Fine-tuning a few top blocks on a cached prefix's outputs: about a percent of training the whole
# network (MobileNetV2-0.35's top blocks at 224 px: ~0.5 ms per image against ~70 ms).
ROUGH_FINE_TUNE_FRACTION = 0.01
# A head on cached features: a few Dense layers, well under a millisecond per image (measured ~0.04 ms).
ROUGH_HEAD_SECONDS_PER_IMAGE = 5e-5
# Decoding and resizing one photo once, on both cores (a 500x375 JPEG: ~1.5 ms of wall time).
ROUGH_DECODE_SECONDS_PER_IMAGE = 0.0015
# Fixed costs, seconds, in a warm worker: reaching it, reading the data and building, tracing a
# stage's steps (the whole network on images: ~6.5 s; a head or a suffix: well under a second), the
# forward pass of the end's evaluation, reading a cache, converting a frozen part for LiteRT once (MobileNetV2-0.35
# at 224 px: the pooled backbone 1.0-1.8 s, a prefix 1.3 s; BENCHMARKS.md).
ROUGH_SECONDS = {"handoff": 0.15, "start": 0.6, "trace": 0.3, "trace:network": 6.5, "eval": 0.8, "hit": 0.05,
                 "convert": 1.5}
# A comparison's runs go to the warm worker that trained the runs before them, which traces a stage it
# trained before in about two thirds of a new process's first trace (MobileNetV2-0.35 from scratch at
# 224 px: ~6 s against ~9 s, BENCHMARKS.md). Used while only first traces were measured.
WARM_TRACE_FRACTION = 2 / 3


def _about(seconds: float) -> str:
    """A part's rough time in words: ``"~2.0 s"``, ``"~1 min 05 s"``, ``"under 0.1 s"`` (not "~0 s")."""
    return "under 0.1 s" if seconds < 0.05 else f"~{format_seconds(seconds)}"


@dataclass(frozen=True)
class RunEstimate:
    """The estimated time of one run of a comparison."""

    label: str
    strategy: str
    seconds: float
    basis: str  # "measured", "partly measured" or "rough" (nothing measured for it at this size)
    detail: str  # One plain sentence on what the time is made of.
    guessed: tuple[str, ...] = ()  # The parts not measured at this backbone and size.


@dataclass(frozen=True)
class ComparisonEstimate:
    """The estimated time of a whole comparison (its runs go one after another)."""

    runs: tuple[RunEstimate, ...]

    @property
    def total_seconds(self) -> float:
        return sum(run.seconds for run in self.runs)

    @property
    def confidence(self) -> str:
        """``measured`` (every part), ``rough`` (no part) or ``partly measured``."""
        bases = {run.basis for run in self.runs}
        if bases == {"measured"}:
            return "measured"
        return "rough" if bases == {"rough"} else "partly measured"

    @property
    def rough(self) -> bool:
        return self.confidence != "measured"

    @property
    def sureness(self) -> str:
        """How sure the estimate is, in words, for the page."""
        if self.confidence == "measured":
            return (f"±{MEASURED_MARGIN * 100:.0f} %: from this server's own runs at this backbone and size; "
                    "longer when other work shares the processor")
        if self.confidence == "rough":
            return "rough guess: nothing measured at this backbone and size on this server yet"
        guessed = sorted({part_words(part) for run in self.runs for part in run.guessed})
        return (f"partly measured: {'; '.join(guessed)} not measured at this backbone and size yet, "
                f"so it may be off by more than {MEASURED_MARGIN * 100:.0f} %")

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


_WORDS = {"features": "computing features", "prefix": "computing the frozen blocks' outputs",
          "decode": "decoding the photos", "head": "head epochs", "fine_tune": "fine-tuning epochs",
          "scratch": "from-scratch epochs", "head:images": "head epochs on images",
          "fine_tune:images": "fine-tuning epochs on images", "handoff": "reaching a worker",
          "train": "training steps", "val": "validation", "trace": "tracing", "start": "starting",
          "end": "saving", "eval": "evaluating images", "convert": "converting the frozen part for LiteRT", "feature_extraction": "feature extraction", "fine_tuning": "fine-tuning",
          "from_scratch": "from scratch"}


def part_words(part: str) -> str:
    """A speed key's part in words: ``"scratch|train"`` -> ``"from-scratch epochs (training steps)"``."""
    first, _, second = part.partition("|")
    words = _WORDS.get(first, first)
    return f"{words} ({_WORDS.get(second, second)})" if second else words


def features_cached(config: RunConfig, runs: Sequence[RunInfo], input_size: int, kind: str = "features") -> bool:
    """Whether a finished run already left on disk what ``config`` would compute once.

    ``kind``: ``features`` (the backbone's pooled features: feature extraction and fine-tuning
    with ImageNet weights), ``prefix`` (the frozen prefix's outputs: fine-tuning the same blocks)
    or ``decode`` (decoded images: any run that reads the images every epoch).
    """
    return _finished_alike(config, runs, input_size, kind, same_data=True)


def litert_converted(config: RunConfig, runs: Sequence[RunInfo], input_size: int, kind: str = "features") -> bool:
    """Whether a finished run, on any data set, already converted the frozen part ``config``'s
    ``kind`` (``features`` or ``prefix``) runs on LiteRT (see :func:`features_cached`)."""
    return _finished_alike(config, runs, input_size, kind, same_data=False)


def _finished_alike(config: RunConfig, runs: Sequence[RunInfo], input_size: int, kind: str, *,
                    same_data: bool) -> bool:
    if not _computes(config, kind):
        return False
    return any(info.status == "finished" and info.config is not None and report_of(info).input_size == input_size
               and _computes(info.config, kind) and _same_cache(info.config, config, kind, same_data=same_data)
               for info in runs)


def _computes(config: RunConfig, kind: str) -> bool:
    """Whether ``config``'s run computes (or reads from the cache) ``kind`` (see :func:`features_cached`)."""
    train, imagenet = config.train, config.model.weights == "imagenet"
    if kind == "decode":
        return train.use_cache and (train.strategy == "from_scratch" or not train.caches_features)
    if not (imagenet and train.caches_features):
        return False
    return train.strategy in ("feature_extraction", "fine_tuning") if kind == "features" \
        else train.strategy == "fine_tuning"


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
    num_test: int = 0,
    litert: bool = True,
) -> ComparisonEstimate:
    """The time each run of a comparison will take, in the order they run.

    Args:
        configs: From :func:`transfer_core.compare.comparison_configs`.
        num_train, num_val, num_test: Images in the training, validation and test split.
        input_size: The input side the runs use (the backbone's default resolved).
        params: The backbone's parameter count (for the rough defaults).
        speeds: Measured speeds (:func:`record_speeds`); None: nothing measured.
        runs: Runs of the store, to know what is already cached.
        same_time_budget: From scratch is capped at fine-tuning's training time.
        litert: Frozen passes run on LiteRT (``Settings.frozen_runtime``): a part not converted yet
            is converted first.

    Returns:
        A :class:`ComparisonEstimate`.
    """
    speeds = speeds or Speeds()
    estimates: list[RunEstimate] = []
    earlier: list[RunConfig] = []
    fine_tune_training: float | None = None
    for config in configs:
        run = _RunCost(config, speeds, (num_train, num_val, num_test), input_size, params)

        def left_before(kind: str, same_data: bool = True, config: RunConfig = config) -> bool:
            """A finished run or an earlier run of this comparison left ``kind`` (same data: its outputs;
            any data: its converted network)."""
            return (_finished_alike(config, runs, input_size, kind, same_data=same_data)
                    or any(_computes(before, kind) and _same_cache(before, config, kind, same_data=same_data)
                           for before in earlier))

        def cached(kind: str) -> bool:
            return left_before(kind)

        def converts(kind: str) -> bool:
            return litert and not left_before(kind, same_data=False)

        if _computes(config, "decode"):
            run.one_pass("decode", cached("decode"))
        if config.train.strategy != "from_scratch":
            if _computes(config, "features"):
                run.one_pass("features", cached("features"), converts("features"))
            run.epochs("head", config.train.epochs)
            if config.train.strategy == "fine_tuning":
                if _computes(config, "prefix"):
                    run.one_pass("prefix", cached("prefix"), converts("prefix"))
                run.epochs("fine_tune", config.train.fine_tune_epochs)
        else:
            budget = fine_tune_training if same_time_budget else None
            run.epochs("scratch", config.train.epochs, budget=budget)
        if config.train.strategy == "fine_tuning" and not config.freeze.train_batchnorm:
            fine_tune_training = run.training
        earlier.append(config)
        estimates.append(run.estimate())
    return ComparisonEstimate(tuple(estimates))


def _same_cache(before: RunConfig, config: RunConfig, kind: str, *, same_data: bool = True) -> bool:
    """Whether ``before``'s run left what ``config``'s reads as ``kind`` (its data set aside: ``same_data=False``)."""
    if same_data and before.dataset.root != config.dataset.root:
        return False
    if kind == "decode":
        return True
    same_model = before.model.backbone == config.model.backbone and before.train.precision == config.train.precision
    return same_model and (kind != "prefix" or before.freeze == config.freeze)


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
        configs, num_train=int(counts.get("train", 0)), num_val=int(counts.get("val", 0)),
        num_test=int(counts.get("test", 0)), input_size=input_size,
        params=zoo.get_backbone_info(model.backbone).params, speeds=record_speeds(speed_file(settings), runs),
        runs=runs, same_time_budget=same_time_budget, litert=settings.frozen_runtime == "litert")


class _RunCost:
    """Adds up one run's seconds part by part, noting the parts that were rough guesses."""

    def __init__(self, config: RunConfig, speeds: Speeds, counts: tuple[int, int, int], input_size: int,
                 params: int) -> None:
        self.config, self.speeds, self.input_size = config, speeds, input_size
        self.num_train, self.num_val, self.num_test = counts
        self.batch_size = max(1, int(config.train.batch_size))
        # Seconds per training image per epoch for every layer, by the rough default.
        self.rough_train = ROUGH_TRAIN_SECONDS_PER_IMAGE_PER_MPARAM * params / 1e6 * (input_size / 224) ** 2
        self.rough_forward = self.rough_train * ROUGH_FORWARD_FRACTION + ROUGH_DECODE_SECONDS_PER_IMAGE
        self.rough_frozen = self.rough_train * ROUGH_FROZEN_FRACTION + ROUGH_DECODE_SECONDS_PER_IMAGE
        self.training = 0.0  # Seconds of epochs (what a time budget counts).
        self.other = 0.0
        self.measured = 0  # Parts measured at this backbone and size.
        self.guessed: list[str] = []
        self.parts: list[str] = []
        self.on_images = False  # The end evaluates the validation images through the whole network.
        # The one-pass stage whose outputs the last epoch stage trained on: the test images go through
        # the same frozen part at the end (``training/evaluation.py``); None: through the whole network.
        self.final_arrays: str | None = None
        self.cached_passes: set[str] = set()

    def _get(self, part: str, *, rate: bool) -> float | None:
        found = (self.speeds.rate if rate else self.speeds.seconds)(self.config.model.backbone, self.input_size, part)
        if found is None:
            # Reading a cache costs well under a second: guessing it leaves the estimate as sure.
            if part not in self.guessed and not part.endswith("|hit"):
                self.guessed.append(part)
        else:
            self.measured += 1
        return found

    def _per_image(self, part: str, rough: float) -> float:
        rate = self._get(part, rate=True)
        return 1 / rate if rate else rough

    def _seconds(self, part: str, rough: float) -> float:
        seconds = self._get(part, rate=False)
        return seconds if seconds is not None else rough

    def _trace(self, part: str, rough: float) -> float:
        """An epoch stage's trace in a worker that trained the stage before (see :data:`WARM_TRACE_FRACTION`)."""
        backbone = self.config.model.backbone
        first = self.speeds.seconds(backbone, self.input_size, f"{part}|{FIRST_TRACE}")
        if first is not None and self.speeds.seconds(backbone, self.input_size, f"{part}|trace") is None:
            self.measured += 1
            return first * WARM_TRACE_FRACTION
        return self._seconds(f"{part}|trace", rough)

    def one_pass(self, stage: str, cached: bool, converts: bool = False) -> None:
        """Features, the prefix's outputs or decoded images: computed once, or read from the cache.

        ``converts``: the frozen part is converted for LiteRT first (also when its outputs are cached,
        since the test split still goes through it).
        """
        converting = self._seconds("convert", ROUGH_SECONDS["convert"]) if converts else 0.0
        self.other += converting
        converted = f", converting it for LiteRT first ({_about(converting)})" if converts else ""
        if cached:
            self.cached_passes.add(stage)
            self.other += self._seconds(f"{stage}|hit", ROUGH_SECONDS["hit"])
            self.parts.append(f"{stage} from the cache{converted}")
            return
        rough = {"decode": ROUGH_DECODE_SECONDS_PER_IMAGE, "features": self.rough_frozen,
                 "prefix": self.rough_frozen}[stage]
        seconds = (self.num_train + self.num_val) * self._per_image(stage, rough)
        self.other += seconds
        self.parts.append(f"{stage} computed once ({_about(seconds)}){converted}")

    def epochs(self, stage: str, epochs: int, budget: float | None = None) -> None:
        part = stage_part(stage, self.config.train.caches_features)
        network = part in ("scratch", "head:images", "fine_tune:images")
        self.on_images = self.on_images or network
        self.final_arrays = {"head": "features", "fine_tune": "prefix"}.get(part)
        if part == "head":
            rough_train, rough_val = ROUGH_HEAD_SECONDS_PER_IMAGE, ROUGH_HEAD_SECONDS_PER_IMAGE / 3
        elif part == "fine_tune":
            rough_train = self.rough_train * ROUGH_FINE_TUNE_FRACTION
            rough_val = rough_train * ROUGH_FORWARD_FRACTION
        else:
            rough_train = self.rough_train if part != "head:images" else self.rough_forward
            rough_val = self.rough_forward
        trace = self._trace(part, ROUGH_SECONDS["trace:network" if network else "trace"])
        per_train = self._per_image(f"{part}|train", rough_train)
        per_val = self._per_image(f"{part}|val", rough_val)
        per_epoch = self.num_train * per_train + self.num_val * per_val
        # The first batch's time is in the trace.
        seconds = trace + max(0.0, epochs * per_epoch - self.batch_size * per_train)
        name = stage.replace("_", "-")
        self.parts.append(f"{epochs} {name} epoch{'s' if epochs != 1 else ''} of {_about(per_epoch)}"
                          f" + {_about(trace)} tracing")
        if budget is not None:
            # Checked after every batch: at least the first batch, then the cut epoch validates.
            capped = max(budget, trace) + self.num_val * per_val
            if capped < seconds:
                seconds = capped
                self.parts.append(f"capped at fine-tuning's training time ({_about(budget)})")
                # A capped run's steady train rate is not in its time (and a capped run never measures it).
                with contextlib.suppress(ValueError):
                    self.guessed.remove(f"{part}|train")
            else:
                self.parts.append("all epochs fit within fine-tuning's training time")
        self.training += seconds

    def estimate(self) -> RunEstimate:
        strategy = self.config.train.strategy
        start = self._seconds("handoff", ROUGH_SECONDS["handoff"]) + self._seconds(
            f"{strategy}|start", ROUGH_SECONDS["start"])
        test_through_network = self.final_arrays is None
        if self.num_test and not test_through_network and self.final_arrays not in self.cached_passes:
            # Decoded and run through the frozen part like the training images (read from the cache
            # when they were: a cost the estimate leaves out).
            seconds = self.num_test * self._per_image(self.final_arrays, self.rough_frozen)
            self.other += seconds
            self.parts.append(f"{self.num_test} test images through the frozen part ({_about(seconds)})")
        evaluated = (self.num_test if test_through_network else 0) + (self.num_val if self.on_images else 0)
        end = self._seconds("end", ROUGH_END_SECONDS)
        if evaluated:
            # Evaluating images through the whole network traces its forward pass first.
            seconds = (self._seconds("eval|trace", ROUGH_SECONDS["eval"])
                       + evaluated * self._per_image("eval", self.rough_forward))
            end += seconds
            self.parts.append(f"evaluating {evaluated} images through the network ({_about(seconds)})")
        seconds = start + self.other + self.training + end
        basis = "measured" if not self.guessed else ("rough" if not self.measured else "partly measured")
        return RunEstimate(run_label(self.config), strategy, seconds, basis, ", ".join(self.parts),
                           tuple(self.guessed))
