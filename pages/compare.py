"""Compare: feature extraction vs fine-tuning (vs from scratch) on the same data, split and seed."""

import dataclasses

import pandas as pd
import streamlit as st

from transfer_core import compare, inference, jobs, live, strategies, zoo
from transfer_core.config import RunConfig, TrainConfig
from transfer_core.display import compare_charts, run_text
from transfer_core.display.views import dataset_name
from transfer_core.sessions import presets
from transfer_core.sessions.workspace import QuotaExceededError
from ui import live_follow, state, widgets
from ui.widgets import STATUS_ICONS
from ui.worker_progress import await_request

LIVE_CURVES_SECONDS = 5.0  # The live curves are drawn again at most this often.

st.title("Compare")
widgets.show_notice()
ws = state.workspace()
settings = state.settings()
dataset = state.active_dataset()
model = state.model_spec()
plan = state.freeze_plan()

st.markdown(
    "Train the **same network on the same images, split and seed** in different ways, one after another, "
    "and see which learns best, how fast, and at what cost. Only the strategy changes, so the difference "
    "you see is the strategy's, not luck's."
)

runs = ws.store.list_runs()
if state.comparison_group() is None:
    groups = compare.comparison_groups(runs)
    if groups:
        state.set_comparison_group(next(iter(groups.values())))
group_ids = [run_id for run_id in state.comparison_group() or [] if run_id in {r.run_id for r in runs}]
group_infos = [info for info in runs if info.run_id in group_ids]
group_infos.sort(key=lambda info: group_ids.index(info.run_id))
group_active = any(info.is_active for info in group_infos)

# ----- start a comparison -----------------------------------------------------------------------

st.subheader("Run a comparison")
if dataset is None:
    st.info("Choose a data set first: make the demo set or upload images on the Data page.")
    st.page_link("pages/data.py", label="Go to Data", icon=":material/photo_library:")
else:
    size = f"{model.input_size}px" if model.input_size else "default size"
    st.markdown(
        f"**Data:** {dataset_name(dataset.root)} ({dataset.num_classes} classes) · "
        f"**Backbone:** {model.backbone} at {size}, {model.weights} weights · "
        f"**Fine-tuning plan:** {presets.describe_plan(plan)}"
    )
    st.caption("These come from the Data and Model pages. Learning rates, batch size, optimizer and augmentation "
               "come from the Train page's last settings (or its defaults).")
    if model.weights == "imagenet" and not zoo.weights_available_offline(model.backbone, model.input_size,
                                                                         settings=settings):
        st.warning(f"The ImageNet weights of {model.backbone} are not on this server, so the transfer runs would "
                   "fail. Pick a backbone with weights offline on the Model page.")
    base_train = state.train_config() or TrainConfig(strategy="fine_tuning", epochs=5, fine_tune_epochs=5,
                                                     batch_size=16)
    st.markdown("**Which strategies**")
    fe_col, ft_col, scratch_col, bn_col = st.columns(4)
    use_fe = fe_col.checkbox(strategies.FEATURE_EXTRACTION.title, value=True, key="compare_use_fe",
                             help=strategies.FEATURE_EXTRACTION.help)
    use_ft = ft_col.checkbox(strategies.FINE_TUNING.title, value=True, key="compare_use_ft",
                             help=strategies.FINE_TUNING.help)
    use_scratch = scratch_col.checkbox(strategies.FROM_SCRATCH.title, value=True, key="compare_use_scratch",
                                       help=strategies.FROM_SCRATCH.help)
    use_bn = bn_col.checkbox(
        "BatchNorm pitfall", value=False, key="compare_use_bn", disabled=model.weights != "imagenet",
        help="Fine-tuning again, but with BatchNormalization layers in training mode. Their statistics "
             "then follow your small batches instead of ImageNet's, which often hurts. This is why the "
             "Keras recipe calls the base with training=False.")
    head_col, ft_epochs_col = st.columns(2)
    head_epochs = head_col.number_input(
        "Head epochs", 1, 200, int(base_train.epochs), key="compare_head_epochs",
        help="Epochs of training the head (stage 1 of fine-tuning).")
    ft_epochs = ft_epochs_col.number_input(
        "Fine-tuning epochs", 1, 200, int(base_train.fine_tune_epochs or 5), key="compare_ft_epochs",
        help="Epochs of stage 2 of fine-tuning. Feature extraction and from scratch get the same total "
             "(head + fine-tuning epochs); from scratch may stop sooner at fine-tuning's time budget.")
    st.caption("The runs go one after another so they never share the processor: their times are fair. "
               "Fine-tuning reuses the features feature extraction computed (same images, same backbone).")
    same_budget = st.checkbox(
        "From scratch with the same time budget as fine-tuning", value=True, key="compare_same_budget",
        disabled=not (use_scratch and use_ft),
        help="From scratch runs after fine-tuning and trains until it has used as much training time as "
             "fine-tuning did (stopping at an epoch boundary), so the two are compared at equal cost. Off: it "
             "trains the same number of epochs, which on a CPU can take many times longer.")
    strategies = [name for name, on in (("feature_extraction", use_fe), ("fine_tuning", use_ft),
                                        ("from_scratch", use_scratch)) if on]
    train = dataclasses.replace(base_train, epochs=int(head_epochs), fine_tune_epochs=int(ft_epochs))
    budgeted = bool(same_budget and use_scratch and use_ft)
    try:
        estimate = compare.estimate_for(
            compare.comparison_configs(dataset, model, plan, train, strategies, include_bn_pitfall=bool(use_bn)),
            runs, settings, same_time_budget=budgeted)
    except ValueError as error:  # No strategy chosen, or a data set that cannot be read.
        estimate = None
        st.caption(f"No time estimate: {error}")
    if estimate is not None:
        with st.container(border=True, key="compare_estimate"):
            st.markdown(f"**Estimated time: about {run_text.format_seconds(estimate.total_seconds)}** "
                        f"({estimate.sureness})")
            st.markdown("\n".join(
                f"- {run.label}: ~{run_text.format_seconds(run.seconds)} ({run.basis}; {run.detail})"
                for run in estimate.runs))
            if estimate.warning:
                st.warning(estimate.warning)
    with st.form("compare_form", border=False):
        start = st.form_submit_button("Run the comparison", type="primary", disabled=group_active)
    if group_active:
        st.caption("A comparison is running: wait for it or stop it below before starting another.")
    if start:
        try:
            ws.check_quota(settings)
            run_dirs = compare.start_comparison(dataset, model, plan, train, strategies, ws.runs_dir,
                                                settings=settings, include_bn_pitfall=bool(use_bn),
                                                same_time_budget=budgeted)
        except (ValueError, zoo.WeightsUnavailableError, QuotaExceededError, jobs.QueueFull,
                jobs.StartFailed) as error:
            st.error(str(error))
        else:
            # Results show this comparison's runs as they end.
            state.set_comparison_group([path.name for path in run_dirs], follow=True)
            state.set_opened_run(None)  # Explore and Export then preselect the comparison's most accurate run.
            st.rerun()

# ----- the comparison in flight -------------------------------------------------------------------


def _live_panel(run_ids: list[str]) -> None:
    """One poll of the comparison: status lines, progress bars, Stop.

    Cheap: each run's new events only (no reread of an active run). The curves below are drawn
    by the full page run, which this asks for when a run changed status or ended an epoch.
    """
    infos, redraw = [], False
    for run_id in run_ids:
        polled = live_follow.poll(run_id)
        redraw = redraw or polled.drawn is None or live.needs_redraw(
            polled.drawn, polled.current, epoch_seconds=LIVE_CURVES_SECONDS)
        try:
            infos.append(polled.follower.run_info())
        except (FileNotFoundError, ValueError):
            continue
    if redraw or not any(info.is_active for info in infos):
        st.rerun()  # New curves, or everything ended: the full rerun shows the results and stops polling.
    labels = {info.run_id: compare.run_label(info.config) for info in infos}
    current = next((info for info in infos if info.status == "running"), None) or next(
        (info for info in infos if info.is_active), None)
    done = sum(1 for info in infos if not info.is_active)
    lines = []
    for number, info in enumerate(infos, start=1):
        lines.append(f"{number}. {STATUS_ICONS.get(info.status, '')} **{labels[info.run_id]}**: "
                     f"{run_text.status_line(info)}")
    st.markdown("  \n".join(lines))
    fraction = done / len(infos)
    if current is not None:
        progress = state.follower(current.run_id).progress()
        fraction += progress.fraction / len(infos)
        st.progress(min(progress.fraction, 1.0), text=f"{labels[current.run_id]}: {progress.text}")
    st.progress(min(fraction, 1.0), text=f"Comparison: {done} of {len(infos)} runs done")
    if st.button("Stop the comparison", key="compare_stop",
                 help="Stops the run in flight after its current batch (keeping its best weights so far) and "
                      "cancels the runs still waiting."):
        for info in infos:
            if info.is_active:
                jobs.request_stop(info.path)
        st.rerun(scope="fragment")


def _live_comparison(run_ids: list[str], infos: list) -> None:
    """The full page run's part of the comparison in flight: the polling fragment, then the curves."""
    # A run that ended since the load is remembered as loaded (active): the panel's next poll redraws.
    drawn = [live_follow.remember_drawn(run_id, ended_as=info.status if info.is_active else None)
             for run_id, info in zip(run_ids, infos, strict=True)]
    running = any(snapshot.status == "running" for snapshot in drawn)
    st.fragment(_live_panel, run_every=live.poll_seconds("running" if running else "queued"))(run_ids)
    curves = compare.curves_frame(infos)
    if len(curves):
        st.plotly_chart(compare_charts.overlay_curves_figure(curves, "val_accuracy", "epoch"),
                        key="compare_live_curves")


if group_active:
    st.subheader("In progress")
    _live_comparison([info.run_id for info in group_infos], group_infos)

# ----- results ------------------------------------------------------------------------------------

st.subheader("Results")
finished = compare.finished_runs(runs)
if not finished:
    st.info("No finished runs yet. Run a comparison above, or train on the Train page: every finished run "
            "of this session can be compared here.")
else:
    options = [info.run_id for info in finished]
    by_id = {info.run_id: info for info in finished}
    state.prepare_comparison_pick(group_ids, options, group_active)
    picked = st.multiselect(
        "Runs to compare", options, key="compare_pick",
        format_func=lambda run_id: compare.describe_run(by_id[run_id]),
        help="Any finished run of this session: from a comparison, the Train page or the command line. "
             "Compare runs on the same data set, or the numbers mean little.")
    chosen = [by_id[run_id] for run_id in picked]
    if chosen:
        roots = {info.config.dataset.root for info in chosen}
        if len(roots) > 1:
            st.warning("These runs used different data sets, so their scores are not comparable.")
        table = compare.comparison_table(chosen)
        curves = compare.curves_frame(chosen)
        sentences = compare.before_after_reading(chosen) + compare.reading(table, curves)
        with st.container(border=True):
            st.markdown("**What the numbers say**")
            st.markdown("\n".join(f"- {sentence}" for sentence in sentences))
        x_axis = st.radio(
            "Horizontal axis", ["epoch", "elapsed"], horizontal=True, key="compare_x_axis",
            format_func={"epoch": "Epochs", "elapsed": "Wall-clock seconds"}.get,
            help="By epoch shows which strategy learns more per pass over the data; by seconds shows which "
                 "gets there first on this computer (feature computation included).")
        accuracy_col, loss_col = st.columns(2)
        accuracy_col.plotly_chart(compare_charts.overlay_curves_figure(curves, "val_accuracy", x_axis),
                                  key="compare_curves_accuracy")
        loss_col.plotly_chart(compare_charts.overlay_curves_figure(curves, "val_loss", x_axis),
                              key="compare_curves_loss")
        st.caption("Diamonds mark fine-tuning's second stage (blocks unfrozen). Feature extraction and "
                   "fine-tuning share their first epochs: same head, same seed.")
        with st.expander("Training curves too (to spot overfitting)"):
            train_acc_col, train_loss_col = st.columns(2)
            train_acc_col.plotly_chart(compare_charts.overlay_curves_figure(curves, "accuracy", x_axis),
                                       key="compare_curves_train_accuracy")
            train_loss_col.plotly_chart(compare_charts.overlay_curves_figure(curves, "loss", x_axis),
                                        key="compare_curves_train_loss")
            st.caption("When training accuracy climbs while validation accuracy stalls (or validation loss "
                       "rises), the model is memorising the training images: overfitting.")
        shown = table.copy()
        for column in ("best_val_accuracy", "final_val_accuracy", "test_accuracy"):
            shown[column] = pd.to_numeric(shown[column], errors="coerce") * 100  # Percent, one decimal.
        # The test column only where a run has a test split.
        test_columns = ["test_accuracy"] if shown["test_accuracy"].notna().any() else []
        st.dataframe(
            shown[["label", *(["data_version"] if shown["data_version"].nunique() > 1 else []), *test_columns,
                   "best_val_accuracy", "final_val_accuracy", "best_val_loss",
                   "final_val_loss", "seconds", "seconds_per_epoch", "trainable_params", "images_per_second",
                   "epochs", "cached_features", "run_id"]],
            hide_index=True, width="stretch", key="compare_table",
            column_config={
                "label": "Strategy",
                "data_version": st.column_config.NumberColumn("Data version", help="The data set's version the "
                                                              "run used: fixing the data makes a new one."),
                "test_accuracy": st.column_config.NumberColumn(
                    "Test accuracy", format="%.1f%%",
                    help="Test accuracy — the number to quote: these images were never used to choose anything."),
                "best_val_accuracy": st.column_config.NumberColumn("Best val accuracy", format="%.1f%%"),
                "final_val_accuracy": st.column_config.NumberColumn(
                    "Final val accuracy", format="%.1f%%", help="Of the model the run kept (the one you export)."),
                "best_val_loss": st.column_config.NumberColumn("Best val loss", format="%.3f"),
                "final_val_loss": st.column_config.NumberColumn("Final val loss", format="%.3f"),
                "seconds": st.column_config.NumberColumn("Seconds", format="%.1f",
                                                         help="Whole run, feature computation included."),
                "seconds_per_epoch": st.column_config.NumberColumn("s / epoch", format="%.2f"),
                "trainable_params": st.column_config.NumberColumn("Trainable parameters", format="localized"),
                "images_per_second": st.column_config.NumberColumn(
                    "Images / s", format="%.0f",
                    help="Training throughput. On cached features it counts feature vectors, which is why "
                         "feature extraction is so fast."),
                "epochs": "Epochs",
                "cached_features": st.column_config.CheckboxColumn("Features from cache"),
                "run_id": "Run",
            },
        )
        csv_col, json_col = st.columns(2)
        csv_col.download_button("Download the table (CSV)", compare.results_csv(table), file_name="comparison.csv",
                                mime="text/csv", key="compare_download_csv", on_click="ignore",
                                help="One row per run; opens in any spreadsheet.")
        json_col.download_button("Download everything (JSON)", compare.results_json(table, curves, sentences),
                                 file_name="comparison.json", mime="application/json",
                                 key="compare_download_json", on_click="ignore",
                                 help="The table, every epoch of every run, and the reading above.")

# ----- learning-rate finder ----------------------------------------------------------------------------

with st.expander("Find a learning rate"):
    st.markdown(
        "A **learning-rate range test**: a fresh head trains for 100 small steps while the learning rate grows "
        "from 0.000001 to 1. The loss first barely moves (too small), then falls fast (good), then explodes "
        "(too large). A good learning rate sits where it falls fastest, well before the explosion."
    )
    if dataset is None:
        st.caption("Choose a data set first.")
    else:
        train_for_finder = state.train_config() or TrainConfig(batch_size=16)
        finder_config = RunConfig(dataset=dataset, model=model, freeze=plan,
                                  train=dataclasses.replace(train_for_finder, strategy="feature_extraction"))
        if st.button("Run the learning-rate finder", key="compare_lr_find",
                     help="Takes a few seconds: the backbone's features are computed once (or read from the cache) "
                          "and only the head trains."):
            # Runs in the inference worker (it trains a head and seeds Keras); this page only follows it.
            inference.lr_find_request(settings, finder_config, submit=True)
        # Looked up by its inputs, so a rerun, a reload or another tab follows the request already made.
        answer = await_request("Sweeping learning rates...", lambda: inference.lr_find_request(settings, finder_config))
        result = None
        if answer is not None:
            try:
                result = answer.result()
            except Exception as error:  # noqa: BLE001 - shown to the person, not raised.
                st.error(f"The learning-rate finder failed: {error}")
        if result is not None:
            st.plotly_chart(compare_charts.lr_finder_figure(result.frame, result.suggested_lr, result.min_loss_lr),
                            key="compare_lr_chart")
            st.markdown(result.explanation)
            nearest = presets.nearest_learning_rate(result.suggested_lr)  # Snap to what Train offers.
            if st.button(f"Use {nearest:g} for the head (and {nearest / 10:g} for fine-tuning)", key="compare_lr_use",
                         help="Sets the Train page's learning rates (snapped to the values it offers)."):
                fine_tune = presets.nearest_learning_rate(nearest / 10)
                state.set_train_config(dataclasses.replace(train_for_finder, learning_rate=nearest,
                                                           fine_tune_learning_rate=fine_tune))
                st.success(f"The Train page and new comparisons now use {nearest:g} and {fine_tune:g}.")
