"""The plain-language reading of a comparison: who won, by how much, at what cost, any overfitting."""

from __future__ import annotations

import numpy as np
import pandas as pd

from transfer_core.compare.labels import BN_PITFALL_LABEL, as_number
from transfer_core.display.run_text import format_seconds

# How far train accuracy may exceed validation accuracy before we call it overfitting.
OVERFIT_GAP = 0.10
# How much validation loss must rise above its best (relative) while train loss falls.
VAL_LOSS_RISE = 0.10



def _pct(value: float) -> str:
    return f"{value:.1%}"


def _points(value: float) -> str:
    points = value * 100
    return f"{points:.1f} percentage point{'s' if round(points, 1) != 1 else ''}"


def _final_gap(curves: pd.DataFrame) -> float | None:
    """Training minus validation accuracy at a run's last epoch."""
    if len(curves) == 0:
        return None
    train, val = as_number(curves.iloc[-1]["accuracy"]), as_number(curves.iloc[-1]["val_accuracy"])
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
    num_val = as_number(best.get("num_val"))
    gap_images = round(gap * num_val) if num_val else None
    if gap < 0.005 or gap_images == 0:
        loss_note = ""
        if as_number(best["final_val_loss"]) is not None and as_number(second["final_val_loss"]) is not None:
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
    test_sentence = _test_accuracy(ranked)
    if test_sentence:
        sentences.append(test_sentence)
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
            f"{best['label'].capitalize()} {cost}: {format_seconds(best_seconds)} in total "
            f"({format_seconds(as_number(best['seconds_per_epoch']))} per epoch) against "
            f"{format_seconds(second_seconds)} ({format_seconds(as_number(second['seconds_per_epoch']))} per epoch) "
            f"for {second['label']}{counted}."
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
    # Which budget from scratch had: fine-tuning's time, or the same number of epochs.
    for _, row in scratch.iterrows():
        sentences.append(_scratch_budget(row, done))
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


def _test_accuracy(ranked: pd.DataFrame) -> str | None:
    """The test split's accuracies, labelled as the numbers to quote; None without a test split."""
    if "test_accuracy" not in ranked:
        return None
    tested = ranked[pd.to_numeric(ranked["test_accuracy"], errors="coerce").notna()]
    if tested.empty:
        return None
    parts = ", ".join(f"{row['label']} {_pct(float(row['test_accuracy']))}" for _, row in tested.iterrows())
    num_test = as_number(tested.iloc[0].get("num_test"))
    images = f" ({int(num_test)} test images)" if num_test else ""
    return (f"Test accuracy — the number to quote: these images were never used to choose anything{images}: "
            f"{parts}. Validation accuracy picked the best epoch and the winner, so it flatters a little.")


def _scratch_budget(row: pd.Series, done: pd.DataFrame) -> str:
    """Which budget from scratch trained with, and both runs' real training time."""
    budget = as_number(row.get("time_budget_seconds"))
    used = as_number(row.get("training_seconds"))
    epochs = as_number(row.get("epochs"))
    planned = as_number(row.get("epochs_planned")) or epochs
    label = row["label"].capitalize()
    fine_tuning = done[(done["strategy"] == "fine_tuning") & ~done["label"].str.startswith(BN_PITFALL_LABEL)]
    source = fine_tuning.iloc[0]["label"] if len(fine_tuning) else "fine-tuning"
    if budget is not None and bool(row.get("stopped_by_budget")):
        used = used if used is not None else budget
        sentence = (f"{label} trained for {format_seconds(used)} and {source} for {format_seconds(budget)}, "
                    f"its budget: {int(epochs or 0)} of {int(planned or 0)} epochs")
        if used > 1.2 * budget + 1.0:  # A single batch and validation pass longer than the whole budget.
            return (f"{sentence}; its first batch and validation alone took longer than the budget, so it "
                    "had more time than fine-tuning.")
        return f"{sentence}, so the two are compared at equal training time."
    if budget is not None:
        return (f"{label} had {source}'s {format_seconds(budget)} of training time but finished all its "
                f"{int(epochs or 0)} epochs in {format_seconds(used)}.")
    return (f"{label} trained for the same number of epochs ({int(epochs or 0)}) as the other runs, not for the "
            "same time: it costs more per epoch.")


def _fair_seconds(row: pd.Series, done: pd.DataFrame) -> tuple[float | None, bool]:
    """A run's seconds, plus the feature time it saved by reading another run's cache.

    Returns:
        ``(seconds, borrowed)``; ``borrowed`` is True when feature time was added.
    """
    seconds = as_number(row["seconds"])
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
