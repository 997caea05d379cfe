"""Compare strategies on the same data: start the runs, tabulate them, and read the numbers aloud.

A *comparison* is a few runs that differ only in strategy: feature extraction,
fine-tuning, optionally from scratch and optionally the "BatchNorm pitfall"
(fine-tuning with BatchNormalization in training mode). They share the data
set, split, seed, backbone, input size and batch size, and they run one after
another through the normal job runner (so their timings do not share the CPU).

The results table and the curves come from the run store (any finished runs
can be compared, also runs from the Train page or the command line), and
:func:`reading` turns the numbers into a few plain sentences for a student.

Pure pandas; no TensorFlow, no Streamlit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.config import (
    STRATEGIES,
    DatasetSpec,
    FreezePlan,
    ModelSpec,
    RunConfig,
    Settings,
    TrainConfig,
)
from transfer_core.report import EMPTY_REPORT, RunReport
from transfer_core.runs import RunInfo

__all__ = [
    "BN_PITFALL_LABEL",
    "COMPARISON_PREFIX",
    "CURVE_COLUMNS",
    "STRATEGY_LABELS",
    "TABLE_COLUMNS",
    "comparison_configs",
    "comparison_groups",
    "comparison_table",
    "curves_frame",
    "describe_run",
    "finished_runs",
    "reading",
    "results_csv",
    "results_json",
    "run_label",
    "start_comparison",
]

STRATEGY_LABELS = {
    "feature_extraction": "feature extraction",
    "fine_tuning": "fine-tuning",
    "from_scratch": "from scratch",
}
BN_PITFALL_LABEL = "fine-tuning, BatchNorm training (pitfall)"
# Runs started together are named "compare <group>: <label>", so a group can be found again later.
COMPARISON_PREFIX = "compare "

TABLE_COLUMNS = [
    "run_id",
    "label",
    "strategy",
    "status",
    "backbone",
    "input_size",
    "weights",
    "epochs",
    "num_val",
    "best_val_accuracy",
    "final_val_accuracy",
    "best_val_loss",
    "final_val_loss",
    "seconds",
    "seconds_per_epoch",
    "feature_seconds",
    "trainable_params",
    "images_per_second",
    "cached_features",
]
CURVE_COLUMNS = [
    "run_id",
    "label",
    "epoch",
    "elapsed",
    "stage",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
]

# How far train accuracy may exceed validation accuracy before we call it overfitting.
OVERFIT_GAP = 0.10
# How much validation loss must rise above its best (relative) while train loss falls.
VAL_LOSS_RISE = 0.10


def run_label(config: RunConfig | None) -> str:
    """A short name for a run's strategy, e.g. ``"fine-tuning"``.

    Args:
        config: The run's configuration (None for an unreadable run).

    Returns:
        The label; the BatchNorm pitfall is named as such.
    """
    if config is None:
        return "unreadable run"
    if config.train.strategy == "fine_tuning" and config.freeze.train_batchnorm:
        return BN_PITFALL_LABEL
    return STRATEGY_LABELS.get(config.train.strategy, config.train.strategy)


# ----- starting a comparison ---------------------------------------------------------------------


def comparison_configs(
    dataset: DatasetSpec,
    model_spec: ModelSpec,
    freeze_plan: FreezePlan,
    train_config: TrainConfig,
    strategies: Sequence[str],
    include_bn_pitfall: bool = False,
    group: str | None = None,
) -> list[RunConfig]:
    """The run configurations of one comparison (nothing is started).

    Every run gets the same total number of epochs (head epochs + fine-tuning
    epochs), so feature extraction's curve can be laid over fine-tuning's: they
    are identical until fine-tuning unfreezes blocks. From scratch uses random
    weights and trains everything for the same number of epochs.

    Args:
        dataset: The data set (its split and seed are shared by every run).
        model_spec: Backbone, input size and head (from the Model page).
        freeze_plan: What fine-tuning unfreezes. A plan that freezes everything
            is replaced by "top 2 blocks" for the fine-tuning run.
        train_config: Epochs, learning rates, batch size, optimizer, seed, augmentation.
        strategies: Any of ``feature_extraction``, ``fine_tuning``, ``from_scratch``.
        include_bn_pitfall: Add a fine-tuning run with BatchNormalization in training mode.
        group: Name shared by the runs (a new one when None).

    Returns:
        One :class:`RunConfig` per run, in the order they should run.

    Raises:
        ValueError: No strategies, an unknown strategy, or a pitfall run without pretrained weights.
    """
    unknown = sorted(set(strategies) - set(STRATEGIES))
    strategies = [s for s in STRATEGIES if s in set(strategies)]
    if unknown or not (strategies or include_bn_pitfall):
        raise ValueError(f"Choose strategies among {STRATEGIES}. Received: strategies={list(strategies)}")
    group = group or f"{time.strftime('%H%M%S')}-{secrets.token_hex(2)}"
    fine_tune_epochs = train_config.fine_tune_epochs or 5
    transfer_total = train_config.epochs + fine_tune_epochs
    base_train = dataclasses.replace(train_config, fine_tune_epochs=fine_tune_epochs)
    plan = freeze_plan
    if plan.mode == "all_frozen" or (plan.mode == "custom" and not plan.trainable_blocks):
        plan = FreezePlan(mode="top_blocks", top_blocks=2)
    plan = dataclasses.replace(plan, train_batchnorm=False)

    def make(label: str, train: TrainConfig, freeze: FreezePlan, model: ModelSpec = model_spec) -> RunConfig:
        return RunConfig(dataset=dataset, model=model, freeze=freeze, train=train,
                         name=f"{COMPARISON_PREFIX}{group}: {label}")

    configs = []
    if "feature_extraction" in strategies:
        configs.append(make(STRATEGY_LABELS["feature_extraction"],
                            dataclasses.replace(base_train, strategy="feature_extraction", epochs=transfer_total),
                            FreezePlan(mode="all_frozen")))
    if "fine_tuning" in strategies:
        configs.append(make(STRATEGY_LABELS["fine_tuning"],
                            dataclasses.replace(base_train, strategy="fine_tuning"), plan))
    if include_bn_pitfall:
        if model_spec.weights != "imagenet":
            raise ValueError(
                "The BatchNorm pitfall needs pretrained (ImageNet) weights: with random weights there are "
                f"no statistics to wreck. Received: weights={model_spec.weights!r}"
            )
        configs.append(make(BN_PITFALL_LABEL, dataclasses.replace(base_train, strategy="fine_tuning"),
                            dataclasses.replace(plan, train_batchnorm=True)))
    if "from_scratch" in strategies:
        scratch_epochs = transfer_total if ("fine_tuning" in strategies or include_bn_pitfall) else train_config.epochs
        configs.append(make(STRATEGY_LABELS["from_scratch"],
                            dataclasses.replace(base_train, strategy="from_scratch", epochs=scratch_epochs),
                            FreezePlan(mode="all_trainable", train_batchnorm=True),
                            dataclasses.replace(model_spec, weights="random")))
    return configs


def start_comparison(
    dataset: DatasetSpec,
    model_spec: ModelSpec,
    freeze_plan: FreezePlan,
    train_config: TrainConfig,
    strategies: Sequence[str],
    runs_dir: Path,
    settings: Settings,
    include_bn_pitfall: bool = False,
    after: Path | None = None,
) -> list[Path]:
    """Start the runs of a comparison, one after another, through the job runner.

    Each run waits for the previous one (``jobs.start_run(..., after=previous)``),
    so they never share the CPU and their times compare fairly. Returns at once.

    Args:
        dataset, model_spec, freeze_plan, train_config, strategies, include_bn_pitfall:
            See :func:`comparison_configs`.
        runs_dir: The run store the runs go to.
        settings: Passed to the workers.
        after: A run directory the first run should wait for (e.g. a run still training).

    Returns:
        The run directories, in the order they will run.

    Raises:
        ValueError: See :func:`comparison_configs`; also a data set without a training or
            validation split, or an input size the backbone rejects.
        transfer_core.zoo.WeightsUnavailableError: Pretrained weights are needed and missing.
            Nothing is started when any run would fail these checks.
    """
    from transfer_core import jobs
    from transfer_core.training import preflight

    configs = comparison_configs(dataset, model_spec, freeze_plan, train_config, strategies, include_bn_pitfall)
    for config in configs:  # Check every run before starting any, so a comparison never stops half-way.
        preflight(config, settings)
    run_dirs: list[Path] = []
    previous = after
    for config in configs:
        run_dir = jobs.start_run(config, runs_dir=Path(runs_dir), settings=settings, after=previous)
        run_dirs.append(run_dir)
        previous = run_dir
    return run_dirs


def comparison_groups(runs: Sequence[RunInfo]) -> dict[str, list[str]]:
    """Runs started together by :func:`start_comparison`, found by their names.

    Args:
        runs: Runs of a store (any order).

    Returns:
        Group name -> run ids in the order they ran; newest group first.
    """
    groups: dict[str, list[tuple[float, str]]] = {}
    for info in runs:
        name = info.config.name if info.config else ""
        if not name.startswith(COMPARISON_PREFIX) or ":" not in name:
            continue
        group = name[len(COMPARISON_PREFIX) :].split(":", 1)[0].strip()
        groups.setdefault(group, []).append((info.created, info.run_id))
    ordered = sorted(groups.items(), key=lambda item: max(t for t, _ in item[1]), reverse=True)
    return {group: [run_id for _, run_id in sorted(members)] for group, members in ordered}


def finished_runs(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """Runs that ended with a kept model and a validation score (finished, or stopped with weights).

    Args:
        runs: Runs of a store.

    Returns:
        Those runs, in the order given.
    """
    return [
        info for info in runs
        if info.status in ("finished", "stopped") and info.config is not None
        and _number(_report(info).val_accuracy) is not None
    ]


def describe_run(info: RunInfo) -> str:
    """One line naming a run for pickers: label, backbone, accuracy, date and id.

    Args:
        info: The run.

    Returns:
        E.g. ``"fine-tuning · mobilenet_v2_0.35 96px · 93.8% · 11-28 12:18 · ...-ab12cd34"``.
    """
    config = info.config
    accuracy = _number(_report(info).val_accuracy)
    parts = [run_label(config)]
    if config is not None:
        size = _report(info).input_size or config.model.input_size or "default"
        parts.append(f"{config.model.backbone} {size}px")
    parts.append(f"{accuracy:.1%}" if accuracy is not None else info.status)
    parts.append(time.strftime("%m-%d %H:%M", time.localtime(info.created)))
    parts.append(info.run_id.rsplit("-", 1)[-1])
    return " · ".join(parts)


# ----- table and curves --------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _unique_labels(runs: Sequence[RunInfo]) -> dict[str, str]:
    labels = {info.run_id: run_label(info.config) for info in runs}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {
        run_id: label if counts[label] == 1 else f"{label} ({run_id.rsplit('-', 1)[-1]})"
        for run_id, label in labels.items()
    }


def comparison_table(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """One row per run: accuracy, loss, time and size, ready to compare.

    ``final_val_accuracy``/``final_val_loss`` are those of the model the run kept
    (what Explore and Export use); ``best_*`` are the best of any epoch. Runs
    still training show what their finished epochs say so far.

    Args:
        runs: The runs to compare.

    Returns:
        A frame with :data:`TABLE_COLUMNS`, in the order given.
    """
    labels = _unique_labels(runs)
    rows = []
    for info in runs:
        config = info.config
        report = _report(info)
        metrics = info.metrics()
        has_epochs = len(metrics) > 0
        last = metrics.iloc[-1] if has_epochs else None
        seconds_col = pd.to_numeric(metrics["seconds"], errors="coerce") if has_epochs else None

        def from_report(value, fallback):
            # A report without the value (an old run, a stopped one) falls back to its epochs.
            return _number(value) if value is not None else fallback

        row = {
            "run_id": info.run_id,
            "label": labels[info.run_id],
            "strategy": config.train.strategy if config else None,
            "status": info.status,
            "backbone": config.model.backbone if config else None,
            "input_size": report.input_size or (config.model.input_size if config else None),
            "weights": config.model.weights if config else None,
            "epochs": report.epochs if report.epochs is not None else len(metrics),
            "num_val": report.num_val,
            "best_val_accuracy": from_report(
                report.best_val_accuracy, _number(metrics["val_accuracy"].max()) if has_epochs else None),
            "final_val_accuracy": from_report(
                report.val_accuracy, _number(last["val_accuracy"]) if last is not None else None),
            "best_val_loss": from_report(
                report.best_val_loss, _number(metrics["val_loss"].min()) if has_epochs else None),
            "final_val_loss": from_report(
                report.val_loss, _number(last["val_loss"]) if last is not None else None),
            "seconds": from_report(report.seconds, _number(last["elapsed"]) if last is not None else None),
            "seconds_per_epoch": from_report(
                report.seconds_per_epoch, _number(seconds_col.mean()) if seconds_col is not None else None),
            "feature_seconds": _number(report.feature_seconds),
            "trainable_params": report.trainable_params,
            "images_per_second": _number(report.images_per_second),
            "cached_features": bool(report.cache_hits),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def curves_frame(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """Per-epoch metrics of several runs in one long frame, for overlaid curves.

    Args:
        runs: The runs (finished or still training).

    Returns:
        A frame with :data:`CURVE_COLUMNS`; ``elapsed`` is wall-clock seconds
        since the run started (feature computation included).
    """
    labels = _unique_labels(runs)
    frames = []
    for info in runs:
        metrics = info.metrics()
        if len(metrics) == 0:
            continue
        frame = metrics.reindex(columns=CURVE_COLUMNS[2:]).copy()
        frame.insert(0, "label", labels[info.run_id])
        frame.insert(0, "run_id", info.run_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    for column in ("epoch", "elapsed", "loss", "accuracy", "val_loss", "val_accuracy"):
        out[column] = pd.to_numeric(out[column], errors="coerce")
    return out


# ----- the plain-language reading ----------------------------------------------------------------


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _points(value: float) -> str:
    points = value * 100
    return f"{points:.1f} percentage point{'s' if round(points, 1) != 1 else ''}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _final_gap(curves: pd.DataFrame) -> float | None:
    """Training minus validation accuracy at a run's last epoch."""
    if len(curves) == 0:
        return None
    train, val = _number(curves.iloc[-1]["accuracy"]), _number(curves.iloc[-1]["val_accuracy"])
    return None if train is None or val is None else train - val


def _overfitting(label: str, curves: pd.DataFrame, reference: tuple[str, float] | None = None) -> str | None:
    """A sentence about overfitting during a fine-tuning run's fine-tuning stage, or None.

    ``reference`` is ``(label, gap)`` of a feature-extraction run: a train/validation gap that
    feature extraction shows too is the data set's, not fine-tuning's.
    """
    stage = curves[curves["stage"] == "fine_tune"] if "stage" in curves else curves
    if len(stage) == 0:
        return None
    last = stage.iloc[-1]
    gap = _final_gap(stage)
    if gap is not None and gap > OVERFIT_GAP and reference is not None and gap <= reference[1] + 0.03:
        return (
            f"{label.capitalize()} ends with training accuracy {_pct(last['accuracy'])} against "
            f"{_pct(last['val_accuracy'])} on validation, but {reference[0]} shows the same gap "
            f"({_points(reference[1])}): the training images are simply easier to fit than new ones; "
            "fine-tuning did not add overfitting."
        )
    if gap is not None and gap > OVERFIT_GAP:
        return (
            f"{label.capitalize()} shows overfitting: at the end, training accuracy was "
            f"{_pct(last['accuracy'])} but validation accuracy only {_pct(last['val_accuracy'])}. The unfrozen "
            "blocks are memorising the training images; fewer fine-tuning epochs, a lower fine-tuning learning "
            "rate, fewer unfrozen blocks or augmentation would help."
        )
    if len(stage) >= 2:
        val_loss = pd.to_numeric(stage["val_loss"], errors="coerce")
        loss = pd.to_numeric(stage["loss"], errors="coerce")
        best = val_loss.min()
        if (
            np.isfinite(best)
            and val_loss.iloc[-1] > best * (1 + VAL_LOSS_RISE) + 1e-6
            and loss.iloc[-1] < loss.iloc[0]
        ):
            return (
                f"{label.capitalize()} started to overfit: validation loss rose from its best "
                f"{best:.3f} to {val_loss.iloc[-1]:.3f} while training loss kept falling "
                f"({loss.iloc[0]:.3f} to {loss.iloc[-1]:.3f}). Early stopping would keep the best epoch."
            )
    return (
        f"No sign of overfitting in {label}: training and validation accuracy stayed close and validation "
        "loss did not climb while training loss fell."
    )


def reading(table: pd.DataFrame, curves: pd.DataFrame | None = None) -> list[str]:
    """A few plain sentences about a comparison: who won, by how much, at what cost, any overfitting.

    Args:
        table: From :func:`comparison_table`.
        curves: From :func:`curves_frame` (needed for the overfitting check).

    Returns:
        Sentences, most important first. Never empty.
    """
    done = table[table["final_val_accuracy"].notna()].copy()
    if done.empty:
        return ["No run has a validation score yet: the reading appears when the first run finishes."]
    if len(done) == 1:
        row = done.iloc[0]
        return [
            f"Only one run to read ({row['label']}: {_pct(row['final_val_accuracy'])} validation accuracy). "
            "Pick at least two runs to compare them."
        ]
    done["final_val_loss"] = pd.to_numeric(done["final_val_loss"], errors="coerce")
    ranked = done.sort_values(["final_val_accuracy", "final_val_loss"], ascending=[False, True], kind="stable")
    best, second = ranked.iloc[0], ranked.iloc[1]
    sentences = []
    gap = float(best["final_val_accuracy"] - second["final_val_accuracy"])
    num_val = _number(best.get("num_val"))
    gap_images = round(gap * num_val) if num_val else None
    if gap < 0.005 or gap_images == 0:
        loss_note = ""
        if _number(best["final_val_loss"]) is not None and _number(second["final_val_loss"]) is not None:
            loss_note = (
                f" {best['label'].capitalize()} has the lower validation loss ({best['final_val_loss']:.3f} vs "
                f"{second['final_val_loss']:.3f}): it is more confident when it is right."
            )
        sentences.append(
            f"{best['label'].capitalize()} and {second['label']} tie at {_pct(best['final_val_accuracy'])} "
            f"validation accuracy.{loss_note}"
        )
    else:
        images = f" ({gap_images} of {int(num_val)} validation images)" if gap_images is not None else ""
        sentences.append(
            f"{best['label'].capitalize()} won with {_pct(best['final_val_accuracy'])} validation accuracy, "
            f"{_points(gap)}{images} ahead of {second['label']} ({_pct(second['final_val_accuracy'])})."
        )
        if gap_images is not None and gap_images <= 2 and num_val < 200:
            sentences.append(
                f"With only {int(num_val)} validation images a difference of {gap_images} image"
                f"{'s' if gap_images != 1 else ''} may be luck: try another seed before trusting it."
            )
    # Time, counting features a run reused from the cache as if it had computed them itself.
    best_seconds, best_borrowed = _fair_seconds(best, done)
    second_seconds, second_borrowed = _fair_seconds(second, done)
    if best_seconds and second_seconds:
        ratio = best_seconds / second_seconds
        if ratio >= 1.15:
            cost = f"took {ratio:.1f}x as long"
        elif ratio <= 1 / 1.15:
            cost = f"was also faster ({1 / ratio:.1f}x)"
        else:
            cost = "took about as long"
        borrowed = [row["label"] for row, flag in ((best, best_borrowed), (second, second_borrowed)) if flag]
        counted = (
            f" ({' and '.join(borrowed)} reused backbone features from the cache; their one-off computation "
            "is counted here so the comparison is fair)"
            if borrowed else ""
        )
        sentences.append(
            f"{best['label'].capitalize()} {cost}: {_seconds(best_seconds)} in total "
            f"({_seconds(_number(best['seconds_per_epoch']))} per epoch) against {_seconds(second_seconds)} "
            f"({_seconds(_number(second['seconds_per_epoch']))} per epoch) for {second['label']}{counted}."
        )
    # Transfer vs from scratch.
    scratch = done[done["strategy"] == "from_scratch"]
    transfer = done[(done["strategy"] != "from_scratch") & (done["weights"] != "random")]
    if len(scratch) and len(transfer):
        top_transfer = transfer.sort_values("final_val_accuracy", ascending=False).iloc[0]
        worst_scratch = scratch.sort_values("final_val_accuracy", ascending=False).iloc[0]
        lead = float(top_transfer["final_val_accuracy"] - worst_scratch["final_val_accuracy"])
        if lead > 0.05:
            sentences.append(
                f"From scratch reached only {_pct(worst_scratch['final_val_accuracy'])}, {_points(lead)} below "
                f"{top_transfer['label']}: with this little data, random weights cannot learn the features that "
                "ImageNet pretraining brings for free."
            )
        else:
            sentences.append(
                f"From scratch came close ({_pct(worst_scratch['final_val_accuracy'])} vs "
                f"{_pct(top_transfer['final_val_accuracy'])}): this task is easy enough to learn without "
                "pretrained features."
            )
    # BatchNorm pitfall.
    pitfall = done[done["label"].str.startswith(BN_PITFALL_LABEL)]
    normal = done[(done["strategy"] == "fine_tuning") & ~done["label"].str.startswith(BN_PITFALL_LABEL)]
    if len(pitfall) and len(normal):
        p, n = pitfall.iloc[0], normal.iloc[0]
        drop = float(n["final_val_accuracy"] - p["final_val_accuracy"])
        if drop > 0.005:
            sentences.append(
                f"Letting BatchNorm train cost {_points(drop)} ({_pct(n['final_val_accuracy'])} -> "
                f"{_pct(p['final_val_accuracy'])}): small batches pushed its statistics away from ImageNet's, "
                "which is why the Keras recipe keeps BatchNorm in inference mode."
            )
        else:
            sentences.append(
                f"Letting BatchNorm train did not hurt here ({_pct(p['final_val_accuracy'])} vs "
                f"{_pct(n['final_val_accuracy'])}); it usually does with smaller batches, more unfrozen blocks or "
                "images unlike ImageNet."
            )
    # Overfitting of fine-tuning runs, against feature extraction's own train/validation gap.
    if curves is not None and len(curves):
        reference = None
        for _, row in done[done["strategy"] == "feature_extraction"].iterrows():
            gap = _final_gap(curves[curves["run_id"] == row["run_id"]])
            if gap is not None:
                reference = (row["label"], gap)
                break
        for _, row in done[done["strategy"] == "fine_tuning"].iterrows():
            sentence = _overfitting(row["label"], curves[curves["run_id"] == row["run_id"]], reference)
            if sentence:
                sentences.append(sentence)
    # Cache note, for runs whose time in the table leaves the feature computation out.
    cached = done[done["cached_features"].astype(bool)]
    if len(cached):
        names = ", ".join(cached["label"])
        sentences.append(
            f"Backbone features came from the cache for {names} (computed once by an earlier run with the same "
            "images, backbone and size), so the table's seconds for "
            f"{'it' if len(cached) == 1 else 'them'} leave out that one-off cost."
        )
    return sentences


def _fair_seconds(row: pd.Series, done: pd.DataFrame) -> tuple[float | None, bool]:
    """A run's seconds, plus the feature time it saved by reading another run's cache.

    Returns:
        ``(seconds, borrowed)``; ``borrowed`` is True when feature time was added.
    """
    seconds = _number(row["seconds"])
    if seconds is None or not bool(row["cached_features"]):
        return seconds, False
    donors = done[
        ~done["cached_features"].astype(bool)
        & (done["backbone"] == row["backbone"])
        & (done["input_size"] == row["input_size"])
        & (done["weights"] == row["weights"])
    ]
    feature_seconds = pd.to_numeric(donors["feature_seconds"], errors="coerce").dropna()
    if feature_seconds.empty or feature_seconds.max() <= 0:
        return seconds, False
    return seconds + float(feature_seconds.max()), True


# ----- export of results --------------------------------------------------------------------------


def results_csv(table: pd.DataFrame) -> str:
    """The comparison table as CSV text.

    Args:
        table: From :func:`comparison_table`.

    Returns:
        CSV with a header row.
    """
    return table.to_csv(index=False)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.astype(object).where(frame.notna(), None)
    records = clean.to_dict(orient="records")
    for record in records:
        for key, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                record[key] = None
            elif hasattr(value, "item"):
                record[key] = value.item()
    return records


def results_json(table: pd.DataFrame, curves: pd.DataFrame | None = None,
                 sentences: Sequence[str] | None = None) -> str:
    """The comparison (table, curves and reading) as JSON text.

    Args:
        table: From :func:`comparison_table`.
        curves: From :func:`curves_frame`.
        sentences: From :func:`reading`.

    Returns:
        ``{"runs": [...], "curves": [...], "reading": [...]}`` (NaN written as null).
    """
    payload = {
        "runs": _records(table),
        "curves": _records(curves) if curves is not None else [],
        "reading": list(sentences or []),
    }
    return json.dumps(payload, indent=2)


def _report(info: RunInfo) -> RunReport:
    """The run's report; an empty one (every field None) when it has none."""
    return info.report or EMPTY_REPORT
