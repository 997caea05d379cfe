"""Train: settings in a form, Start / Stop, live curves, and the results of this session's runs."""

import streamlit as st

from transfer_core import jobs, strategies
from transfer_core.config import AUGMENTATIONS, OPTIMIZERS, STRATEGIES, TrainConfig
from transfer_core.display.views import dataset_name
from transfer_core.sessions import presets
from transfer_core.sessions.workspace import QuotaExceededError
from transfer_core.zoo import WeightsUnavailableError
from ui import assignments_view, run_view, state, widgets

LEARNING_RATES = list(presets.LEARNING_RATES)

st.title("Train")
widgets.show_notice()
ws = state.workspace()
settings = state.settings()
dataset = state.active_dataset()
model = state.model_spec()
plan = state.freeze_plan()
active = state.active_run()

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
    st.caption("Change these on the Data and Model pages.")
    assignments_view.train_notice(dataset.root, model.backbone)

run_id = state.active_run_id()
if run_id:
    run_view.show_run(run_id)

if dataset is not None:
    defaults = state.train_config() or TrainConfig(strategy=presets.strategy_for_plan(plan), epochs=10)
    busy = active is not None and active.is_active
    with st.expander("Settings for a new run", expanded=run_id is None), st.form("train_form"):
        strategy = st.radio(
            "Strategy",
            STRATEGIES,
            index=STRATEGIES.index(defaults.strategy),
            format_func=lambda name: strategies.BY_NAME[name].summary,
            key="train_strategy",
        )
        epochs_col, finetune_col, batch_col, optimizer_col = st.columns(4)
        epochs = epochs_col.number_input(
            "Epochs (head, or all for from scratch)", 1, 200, defaults.epochs, key="train_epochs"
        )
        fine_tune_epochs = finetune_col.number_input(
            "Fine-tuning epochs",
            1,
            200,
            max(defaults.fine_tune_epochs, 1),
            key="train_fine_tune_epochs",
            help="Only used by fine-tuning (stage 2).",
        )
        batch_size = batch_col.selectbox(
            "Batch size",
            [8, 16, 32, 64, 128],
            index=[8, 16, 32, 64, 128].index(defaults.batch_size)
            if defaults.batch_size in (8, 16, 32, 64, 128)
            else 2,
            key="train_batch_size",
        )
        optimizer = optimizer_col.selectbox(
            "Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(defaults.optimizer), key="train_optimizer"
        )
        lr_col, ft_lr_col = st.columns(2)
        learning_rate = lr_col.select_slider(
            "Learning rate (head / from scratch)",
            LEARNING_RATES,
            key="train_learning_rate",
            value=defaults.learning_rate if defaults.learning_rate in LEARNING_RATES else 1e-3,
            format_func="{:g}".format,
        )
        fine_tune_learning_rate = ft_lr_col.select_slider(
            "Fine-tuning learning rate (lower, so the pretrained features are not wrecked)",
            LEARNING_RATES,
            value=defaults.fine_tune_learning_rate
            if defaults.fine_tune_learning_rate in LEARNING_RATES
            else 1e-4,
            format_func="{:g}".format,
            key="train_fine_tune_learning_rate",
        )
        augmentation = st.multiselect(
            "Augmentation", AUGMENTATIONS, default=list(defaults.augmentation), key="train_augmentation"
        )
        st.caption(
            "Augmentation turns feature caching off: each epoch sees new random versions of the images, "
            "so the backbone must run on every image in every epoch instead of once. Expect epochs to "
            "take as long as computing the features did."
        )
        patience_col, seed_col, weights_col = st.columns(3)
        patience = patience_col.number_input(
            "Early stopping patience (0 = off)",
            0,
            50,
            defaults.early_stopping_patience,
            key="train_patience",
            help="Stop a stage after this many epochs without a lower validation "
            "loss. Every run keeps its lowest-validation-loss epoch, stopped early or not.",
        )
        seed = seed_col.number_input("Seed", 0, 1_000_000, defaults.seed, key="train_seed")
        class_weights = weights_col.checkbox(
            "Weight classes by rarity",
            value=defaults.class_weights,
            key="train_class_weights",
            help="Makes mistakes on rare classes cost more (for imbalanced data).",
        )
        name = st.text_input("Run name (optional)", key="train_run_name")
        start = st.form_submit_button("Start training", type="primary", disabled=busy, key="train_start")
    if busy:
        st.caption("A run of yours is active: stop it or wait for it to end before starting another.")

    if start:
        try:
            train = presets.train_config_from_form(
                {
                    "strategy": strategy,
                    "epochs": int(epochs),
                    "fine_tune_epochs": int(fine_tune_epochs),
                    "batch_size": int(batch_size),
                    "learning_rate": float(learning_rate),
                    "fine_tune_learning_rate": float(fine_tune_learning_rate),
                    "optimizer": optimizer,
                    "augmentation": tuple(augmentation),
                    "early_stopping_patience": int(patience),
                    "seed": int(seed),
                    "class_weights": bool(class_weights),
                }
            )
            config = presets.build_run_config(dataset, model, plan, train, name=name.strip())
            state.set_train_config(train)
            ws.check_quota(settings)  # A run writes a model and features: refuse when the session is full.
            # Checks the data set, backbone and weights before any work starts.
            run_dir = jobs.start_run(config, runs_dir=ws.runs_dir, settings=settings)
        except (ValueError, WeightsUnavailableError, QuotaExceededError, jobs.QueueFull,
                jobs.StartFailed) as error:
            st.error(f"Cannot start: {error}")
        else:
            state.set_active_run(run_dir.name)
            warnings = presets.plan_warnings(train.strategy, plan)
            if warnings:
                state.set_notice(" ".join(warnings), "warning")
            st.rerun()

runs = ws.store.list_runs()
if runs:
    st.divider()
    st.subheader(f"Your runs ({len(runs)})")
    run_view.runs_list(runs, state.active_run_id())
