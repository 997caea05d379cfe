"""How a run looks on the Train page: live progress while it trains, results when it ends.

Watching a run is meant to be cheap for the server (BENCHMARKS.md, "Watching a run"). Two
fragments do the live part, so no full page rerun happens while a run trains:

- the status fragment polls the run (every :data:`transfer_core.live.RUNNING_POLL_SECONDS`
  while it trains, every :data:`transfer_core.live.QUEUED_POLL_SECONDS` while it waits) and
  draws only the status line, the Stop button and the progress bar;
- the curves fragment (while it trains, every :data:`transfer_core.live.CURVES_POLL_SECONDS`)
  draws the charts and the event log, rebuilding a figure only when its data changed.

A full rerun is asked for only when the status changes (queued -> running, or the end); the
page then draws the results and no fragment, so nothing polls an ended run. Events are read
incrementally (:class:`transfer_core.live.EventFollower`, kept per run in session state).
No TensorFlow here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from transfer_core import jobs, live
from transfer_core.config import RunConfig
from transfer_core.display import run_charts, run_text
from transfer_core.report import EMPTY_REPORT, SplitEvaluation
from transfer_core.runs import RunInfo, batch_frame
from ui import data_fix, live_follow, state
from ui.widgets import STATUS_ICONS

# Points of the live per-batch curve: a redraw's cost grows with them; the result shows them all.
LIVE_BATCH_POINTS = 500
TEST_ACCURACY_HELP = (
    "Test accuracy — the number to quote: these images were never used to choose anything (validation "
    "accuracy picked the best epoch and settings, so it flatters a little)."
)


def show_run(run_id: str) -> None:
    """The live view of an active run, or the results of an ended one."""
    try:
        info = state.workspace().store.load(run_id)
    except (FileNotFoundError, ValueError):
        st.warning(f"Run {run_id} no longer exists.")
        state.set_active_run(None)
        return
    if info.is_active:
        _live_view(run_id)
    else:
        _run_header(info.run_id, info.status, info.config)
        result_panel(info)


def _live_view(run_id: str) -> None:
    """The full page run's part of the live view: header, the polling fragment, charts, log."""
    # The status fragment compares the status it polls with the one this run drew.
    status = live_follow.remember_drawn(run_id, ended_as="running").status
    state.set_live_view(run_id)
    _run_header(run_id, status, state.follower(run_id).config)
    st.fragment(_live_status, run_every=live.poll_seconds(status))(run_id)
    # A queued run has no curves yet: its page polls slowly and draws them once it runs.
    st.fragment(_live_curves, run_every=live.CURVES_POLL_SECONDS if status == "running" else None)(run_id)


def _live_curves(run_id: str) -> None:
    """The charts and the event log of an active run, from the events read so far."""
    follower = state.follower(run_id)
    follower.poll()
    if follower.epochs_seen:
        _live_charts(follower, run_id)
    else:
        st.caption("The loss and accuracy curves appear when the first epoch ends.")
    _event_log(follower.events, cache_key=run_id)


def _live_status(run_id: str) -> None:
    """One poll of an active run: new events, stop enforcement, status line, Stop, progress bar.

    Costs a read of the new bytes of events.jsonl, a few stats and a pid check; while queued
    also a listing of the queue. The charts and the log are not drawn here (see the module doc).
    """
    polled = live_follow.poll(run_id)
    follower, current, drawn, run_dir = polled.follower, polled.current, polled.drawn, polled.follower.run_dir
    if drawn is None or drawn.status != current.status:
        # A full rerun: it starts the curves once a queued run trains, or draws the results once
        # the run ended (and then no fragment, so the browser schedules no further poll of this run).
        st.rerun()
    status = current.status
    progress = follower.progress()
    stop_requested = (run_dir / "stop").exists()

    status_col, stop_col = st.columns([5, 1], vertical_alignment="center")
    with status_col:
        if status == "queued":
            position = jobs.queue_position(run_dir, state.settings())
            ahead = "next in line" if not position else f"{position} run(s) ahead"
            eta = jobs.queue_eta(run_dir, state.settings())
            ahead += f", {run_text.eta_text(eta)}" if eta is not None else ""
            st.info(
                f"Queued: waiting for a free training slot ({ahead}). The server trains "
                f"{state.settings().max_concurrent_runs} run(s) at a time."
            )
        elif stop_requested:
            st.warning("Stopping: the run ends after the current batch and keeps the best weights so far.")
        else:
            st.markdown(
                f"**Running:** {progress.description or 'starting (loading TensorFlow and the data)'}"
            )
    with stop_col:
        # A callback runs before the fragment does, so this very rerun already shows "Stopping".
        st.button(
            "Stop",
            key="train_stop",
            disabled=stop_requested,
            width="stretch",
            on_click=jobs.request_stop,
            args=(run_dir,),
        )
    st.progress(progress.fraction, text=progress.text)


def _run_header(run_id: str, status: str, config: RunConfig | None) -> None:
    st.subheader(f"{STATUS_ICONS.get(status, '')} Run {run_id}")
    if config is None:
        return
    train = config.train
    epochs = (
        f"{train.epochs} + {train.fine_tune_epochs} fine-tuning"
        if train.strategy == "fine_tuning"
        else str(train.epochs)
    )
    size = config.model.input_size or "default"
    augmentation = ", ".join(train.augmentation) or "none"
    st.caption(
        f"{train.strategy.replace('_', ' ')} · {config.model.backbone} at {size}px, {config.model.weights} weights · "
        f"head: {run_text.describe_head(config.model)} · "
        f"{epochs} epoch(s), batch {train.batch_size}, learning rate {train.learning_rate:g} · "
        f"augmentation: {augmentation} · data: {Path(config.dataset.root).name} v{config.dataset.version}"
    )


def _cached(cache_key: str, name: str, signature, build):
    """A figure (or frame, or text) of the live view, rebuilt only when ``signature`` changes."""
    cache = st.session_state.setdefault("figure_cache", {})
    entry = cache.get((cache_key, name))
    if entry is None or entry[0] != signature:
        entry = (signature, build())
        cache[(cache_key, name)] = entry
    return entry[1]


def _charts(epochs: pd.DataFrame, batches: pd.DataFrame, key: str) -> None:
    """The loss, accuracy and per-batch loss charts of an ended run."""
    batch_figure = run_charts.batch_loss_figure(batches) if len(batches) else None
    _place_charts(run_charts.epoch_metric_figure(epochs, "loss"), run_charts.epoch_metric_figure(epochs, "accuracy"),
                  batch_figure, key)


def _live_charts(follower: live.EventFollower, run_id: str) -> None:
    """The same charts for an active run: a figure (and its frame) is built only when its data changed."""
    epoch_signature = follower.epochs_seen
    # The per-batch curve changes every batch; within an epoch it is rebuilt only now and then.
    batch_signature = (epoch_signature, int(time.time() // live.BATCH_REDRAW_SECONDS))
    epochs = _cached(run_id, "epochs", epoch_signature, follower.epochs)
    batches = _cached(run_id, "batch_figure", batch_signature,
                      lambda: run_charts.batch_loss_figure(follower.batches(), max_points=LIVE_BATCH_POINTS)
                      if follower.batches_seen else None)
    _place_charts(_cached(run_id, "loss", epoch_signature, lambda: run_charts.epoch_metric_figure(epochs, "loss")),
                  _cached(run_id, "accuracy", epoch_signature,
                          lambda: run_charts.epoch_metric_figure(epochs, "accuracy")),
                  batches, "live")


def _place_charts(loss, accuracy, batches, key: str) -> None:
    loss_col, accuracy_col = st.columns(2)
    loss_col.plotly_chart(loss, key=f"train_{key}_loss")
    accuracy_col.plotly_chart(accuracy, key=f"train_{key}_accuracy")
    if batches is not None:
        st.plotly_chart(batches, key=f"train_{key}_batches")


def _event_log(events: list[dict], cache_key: str | None = None) -> None:
    def text() -> str:
        return "\n".join(run_text.event_log(events))

    shown = text() if cache_key is None else _cached(cache_key, "event_log", len(events), text)
    with st.expander("Event log"):
        st.code(shown or "no events yet", language=None)


def result_panel(info: RunInfo) -> None:
    """Final state of an ended run: reason, metrics, curves, confusion matrix, per-class table, mistakes."""
    report = info.report or EMPTY_REPORT
    if info.status == "failed":
        st.error(f"The run failed: {info.reason}")
    elif info.status == "interrupted":
        st.error(f"The run was interrupted: {info.reason}")
    elif info.status == "stopped":
        st.warning(f"Stopped: {info.reason or 'on request'}")
    elif report.stopped_by_budget:
        st.success(f"Finished: {info.reason}.")
    else:
        st.success("Finished.")

    events = info.events()
    metrics = info.metrics()
    if report.has_metrics:
        test_accuracy = report.test_accuracy
        # The test accuracy (when the data set has a test split) stands beside validation's.
        cols = iter(st.columns(6 if test_accuracy is not None else 5))
        next(cols).metric("Validation accuracy", _percent(report.val_accuracy))
        if test_accuracy is not None:
            next(cols).metric("Test accuracy", _percent(test_accuracy), help=TEST_ACCURACY_HELP)
        next(cols).metric(
            "Best epoch's val accuracy",
            _percent(report.best_val_accuracy),
            help=f"epoch {report.best_epoch}; the kept model has the best validation loss",
        )
        next(cols).metric("Epochs", report.epochs)
        next(cols).metric("Time", run_text.format_seconds(report.seconds))
        next(cols).metric("Trainable parameters", f"{report.trainable_params or 0:,}")
        if report.cache_hits:
            reused = " and the backbone an earlier run had built was reused" if report.reused_backbone else ""
            st.caption(
                "Backbone features came from the cache (same images, backbone and size as an earlier run)"
                f"{reused}."
            )
    if len(metrics):
        _charts(metrics, batch_frame(events), key="result")

    evaluation = report.val_evaluation
    if evaluation and evaluation.num_images:
        matrix_col, table_col = st.columns([1, 1])
        with matrix_col:
            normalize = st.toggle("Show shares per true class", key=f"train_cm_normalize_{info.run_id}")
            st.plotly_chart(
                run_charts.confusion_matrix_figure(
                    evaluation.confusion_matrix, evaluation.class_names, normalize
                ),
                key="train_result_confusion",
            )
        with table_col:
            st.markdown("**Per class (validation)**")
            st.dataframe(
                pd.DataFrame(list(evaluation.per_class)),
                hide_index=True,
                width="stretch",
                key="train_result_per_class",
                column_config={
                    "precision": st.column_config.NumberColumn(format="%.2f"),
                    "recall": st.column_config.NumberColumn(format="%.2f"),
                    "f1": st.column_config.NumberColumn("F1", format="%.2f"),
                },
            )
            st.caption(
                "Precision: of the images predicted as this class, the share that are. "
                "Recall: of this class's images, the share found."
            )
        if report.test_accuracy is not None:
            st.caption(
                f"Test accuracy — the number to quote: {_percent(report.test_accuracy)} on the "
                f"{report.num_test} images of the held-out test split, never used to choose anything "
                "(validation picked the best epoch)."
            )
        _mistakes(info, evaluation)
    data_fix.after_run(info)
    _event_log(events)


def _mistakes(info: RunInfo, evaluation: SplitEvaluation) -> None:
    wrong = [item for item in evaluation.top_losses if not item.correct]
    st.markdown("**Most confidently wrong (validation)**")
    if not wrong:
        st.caption("No validation image was misclassified.")
        return
    root = Path(info.config.dataset.root) if info.config else None
    # Relabel or remove right here: each change is a new data set version (ui/data_fix.py).
    labels = data_fix.labels_now(str(root)) if root is not None else None
    columns = st.columns(4)  # Room for the buttons' class names.
    for index, item in enumerate(wrong[:12]):
        path = root / item.path if root is not None and item.path else None
        with columns[index % 4]:
            if path is not None and path.exists():
                st.image(str(path), width="stretch")
            st.caption(
                f"true **{item.true}** → predicted **{item.predicted}** ({item.confidence:.0%})"
            )
            if item.path:
                data_fix.image_actions(str(root), item.path, item.true, item.predicted,
                                       list(info.config.dataset.class_names), labels, key=f"fix_{index}")


def _percent(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"


def runs_list(runs: list[RunInfo], active_id: str | None) -> None:
    """Earlier runs of this workspace, with a way to reopen or delete one."""
    table = run_text.runs_table(runs)
    # The table is drawn once per page run; an active run's status changes in the live view above.
    table["status"] = ["active" if info.is_active else info.status for info in runs]
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="train_runs_table",
        column_config={
            "val accuracy": st.column_config.NumberColumn(format="%.3f"),
            "seconds": st.column_config.NumberColumn(format="%.1f"),
            "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    ids = [info.run_id for info in runs]
    names = {info.run_id: info.config.name for info in runs if info.config is not None and info.config.name}
    pick_col, open_col, delete_col = st.columns([4, 1, 1], vertical_alignment="bottom")
    chosen = pick_col.selectbox(
        "Run",
        ids,
        index=ids.index(active_id) if active_id in ids else 0,
        key="train_reopen_choice",
        format_func=lambda run_id: f"{run_id}" + (f" ({names[run_id]})" if names.get(run_id) else ""),
    )
    if open_col.button("Open", key="train_reopen", width="stretch", disabled=chosen == active_id):
        state.set_active_run(chosen)
        st.rerun()
    chosen_info = next(i for i in runs if i.run_id == chosen)
    with delete_col.popover("Delete", disabled=chosen_info.is_active, width="stretch"):
        st.caption(f"Delete run {chosen} and its model?")
        if st.button("Delete for good", key="train_delete_run", type="primary"):
            state.workspace().store.delete(chosen)
            if chosen == active_id:
                state.set_active_run(None)
            st.rerun()
