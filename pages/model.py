"""Model: choose a pretrained backbone, what to freeze, and the head; see what ImageNet sees."""

import streamlit as st

from transfer_core import inference, zoo
from transfer_core.config import ModelSpec
from transfer_core.display import run_charts, run_text, views
from transfer_core.freezing import blockmap
from transfer_core.sessions import presets
from ui import state, widgets
from ui.worker_progress import await_result

st.title("Model")
widgets.show_notice()
settings = state.settings()
dataset = state.active_dataset()
current = state.model_spec()
current_plan = state.freeze_plan()


@st.cache_data(show_spinner=False, max_entries=8, ttl=60)  # Weights dropped into the folder show up.
def _zoo_table(weights_dir: str):
    return zoo.zoo_table(settings)


# ----- a ready-made recipe --------------------------------------------------------------------

MODEL_WIDGET_KEYS = ("model_backbone", "model_input_size", "model_weights", "model_freeze_preset",
                     "model_top_blocks", "model_dropout", "model_hidden_units", "model_head")


def _use_recipe(recipe: presets.RecipeChoice) -> None:
    """Adopt a recipe's model, freeze plan and training settings; the widgets then show them."""
    state.set_model_spec(recipe.model)
    state.set_freeze_plan(recipe.freeze)
    state.set_train_config(recipe.train)
    state.forget_widgets(MODEL_WIDGET_KEYS)
    model = recipe.model
    state.set_widgets({
        "model_backbone": model.backbone,
        "model_input_size": model.input_size,
        "model_weights": model.weights,
        "model_freeze_preset": presets.preset_of_plan(recipe.freeze),
        "model_dropout": float(model.dropout_rate),
        "model_hidden_units": model.hidden_units,
        "model_head": model.head,
    })
    state.set_notice(f"{presets.CLASSIC_RECIPE_NAME}: {recipe.summary} Start it on the Train page.", "success")


with st.expander(presets.CLASSIC_RECIPE_NAME, expanded=False):
    classic = presets.classic_keras_recipe(settings)
    st.markdown(
        f"The textbook example this lab grew from: {classic.summary} Most guides have since moved from "
        "`Flatten` to pooling: compare the weights of each head below."
    )
    if classic.weights_offline:
        st.button("Use the classic Keras recipe", key="model_classic_recipe", on_click=_use_recipe,
                  args=(classic,))
    else:
        st.warning(classic.obstacle)
        fallback = presets.classic_recipe_fallback(settings)
        if not settings.offline:
            st.button("Use it anyway (download the weights)", key="model_classic_recipe", on_click=_use_recipe,
                      args=(classic,))
        if fallback is not None:
            fallback_name = zoo.get_backbone_info(fallback.model.backbone).display_name
            st.button(f"Use the same recipe on {fallback_name} (weights on this server)",
                      key="model_classic_fallback", type="primary", on_click=_use_recipe, args=(fallback,))
        else:
            st.info("No backbone's ImageNet weights are on this server either: put weight files in the folder "
                    "named by TRANSFER_WEIGHTS_DIR.")

# ----- the zoo --------------------------------------------------------------------------------

st.subheader("Pretrained backbones")
table = _zoo_table(str(settings.weights_dir))
st.dataframe(
    table[
        [
            "name",
            "key",
            "params_millions",
            "depth",
            "default_input_size",
            "imagenet_top1",
            "size_mb",
            "weights_offline",
            "top_weights_offline",
        ]
    ],
    hide_index=True,
    width="stretch",
    height=35 * (len(table) + 1) + 3,
    key="model_zoo_table",
    column_config={
        "name": "Backbone",
        "key": "Key",
        "params_millions": st.column_config.NumberColumn("Parameters (M)", format="%.2f"),
        "depth": "Depth",
        "default_input_size": "Input size",
        "imagenet_top1": st.column_config.NumberColumn("ImageNet top-1 %", format="%.1f"),
        "size_mb": st.column_config.NumberColumn("Size (MB)", format="%.1f"),
        "weights_offline": st.column_config.CheckboxColumn("Weights offline"),
        "top_weights_offline": st.column_config.CheckboxColumn(
            "Classifier offline", help="The ImageNet classifier (with its top) is on this server too"
        ),
    },
)
st.caption(
    "Click a column header to sort. 'Weights offline' means the pretrained weights are on this "
    "server, so no download is needed."
)

offline = dict(zip(table["key"], table["weights_offline"], strict=True))
keys = list(table["key"])
names = dict(zip(table["key"], table["name"], strict=True))

choose_col, size_col, weights_col = st.columns(3)
backbone = choose_col.selectbox(
    "Backbone",
    keys,
    index=keys.index(current.backbone) if current.backbone in keys else 0,
    format_func=lambda key: f"{names[key]}{'' if offline[key] else ' (weights not offline)'}",
    key="model_backbone",
)
info = zoo.get_backbone_info(backbone)
sizes = list(info.allowed_input_sizes)
wanted_size = current.input_size or info.default_input_size
input_size = size_col.selectbox(
    "Input size (pixels)",
    sizes,
    index=sizes.index(wanted_size) if wanted_size in sizes else len(sizes) - 1,
    key="model_input_size",
    help="Smaller inputs train much faster; 96 or 128 is plenty for small pictures.",
)
weights = weights_col.radio(
    "Weights",
    ["imagenet", "random"],
    index=0 if current.weights == "imagenet" else 1,
    key="model_weights",
    format_func=lambda w: "ImageNet (transfer)" if w == "imagenet" else "Random (no transfer)",
)
if weights == "imagenet" and not zoo.weights_available_offline(backbone, input_size, settings=settings):
    st.warning(
        f"The ImageNet weights of {info.display_name} are not on this server "
        f"(file `{info.weights_file(False, input_size)}`). Training will try to download them and fail "
        "when offline: put the file in the folder named by TRANSFER_WEIGHTS_DIR, pick a backbone with "
        "weights offline, or choose random weights (no transfer)."
    )

# ----- freezing ----------------------------------------------------------------------------------

st.subheader("What trains")
# The worker builds the backbone once per (backbone, size) and keeps its blocks as a small file.
blocks = await_result("Reading the backbone's blocks (built once per backbone and size)...",
                      lambda: inference.block_map_request(settings, backbone, int(input_size)),
                      "Could not read the backbone's blocks")
if blocks is None:
    st.stop()  # The fragment above follows the request and redraws the page with its answer.
num_blocks = len(blocks.block_names)
presets_list = list(presets.FREEZE_PRESETS)
preset = st.radio(
    "Freeze plan",
    presets_list,
    index=presets_list.index(presets.preset_of_plan(current_plan)),
    format_func=lambda p: presets.FREEZE_PRESETS[p],
    horizontal=True,
    key="model_freeze_preset",
)
top_blocks = min(max(current_plan.top_blocks, 1), num_blocks)
trainable_blocks: tuple[str, ...] = ()
if preset == "top_blocks":
    top_blocks = st.slider(
        "Blocks to fine-tune, counted from the top", 1, num_blocks, top_blocks, key="model_top_blocks"
    )
elif preset == "custom":
    chosen = set(current_plan.trainable_blocks) & set(blocks.block_names)
    editor_frame = blocks.blocks[["block", "layers", "params"]].assign(
        train=[b in chosen for b in blocks.block_names]
    )
    edited = st.data_editor(
        editor_frame,
        hide_index=True,
        disabled=["block", "layers", "params"],
        key="model_custom_blocks",
        column_config={"train": st.column_config.CheckboxColumn("Train this block")},
        width="stretch",
    )
    trainable_blocks = tuple(edited.loc[edited["train"], "block"])
train_batchnorm = st.checkbox(
    "Let BatchNorm layers train too",
    value=current_plan.train_batchnorm,
    key="model_train_bn",
    help="The Keras recipe keeps BatchNormalization frozen (inference mode) when fine-tuning: with small "
    "batches its statistics would drift away from ImageNet's and wreck the pretrained features.",
)
plan = presets.freeze_plan_for_preset(preset, top_blocks, trainable_blocks, train_batchnorm)

num_classes = dataset.num_classes if dataset is not None else 2
head_col, hidden_col = st.columns(2)
dropout = head_col.slider("Head dropout", 0.0, 0.8, float(current.dropout_rate), 0.05, key="model_dropout")
hidden_choices = [0, 32, 64, 128, 256, 512]
hidden_units = hidden_col.selectbox(
    "Hidden units in the head",
    hidden_choices,
    index=hidden_choices.index(current.hidden_units) if current.hidden_units in hidden_choices else 0,
    format_func=lambda n: "none (one Dense layer)" if n == 0 else f"{n} (Dense + ReLU, then the classifier)",
    key="model_hidden_units",
)

heads = list(presets.HEAD_CHOICES)
head_weights = {
    h: blockmap.head_params(blockmap.head_input_dim(blocks, h), num_classes, hidden_units) for h in heads
}
height, width, channels = blocks.feature_shape
head = st.radio(
    f"Head: how it reads the backbone's {height}x{width}x{channels} feature map",
    heads,
    index=heads.index(current.head) if current.head in heads else 0,
    format_func=lambda h: f"{presets.HEAD_CHOICES[h]}: {head_weights[h]:,} weights",
    captions=[presets.HEAD_MEANINGS[h] for h in heads],
    key="model_head",
)
counts = blockmap.classifier_counts(blocks, plan, num_classes, hidden_units, head)
trainable_col, frozen_col, share_col = st.columns(3)
trainable_col.metric("Trainable parameters", f"{counts.trainable:,}")
frozen_col.metric("Frozen parameters", f"{counts.frozen:,}")
share_col.metric("Share that trains", f"{counts.trainable / max(counts.total, 1):.1%}")
chosen = ModelSpec(
    backbone=backbone,
    input_size=int(input_size),
    weights=weights,
    dropout_rate=float(dropout),
    hidden_units=int(hidden_units),
    head=head,
)
st.caption(
    f"Whole classifier: backbone ({num_blocks} blocks, {blocks.backbone_params:,} parameters) + head "
    f"({head_weights[head]:,} parameters for "
    f"{num_classes} classes{'' if dataset is not None else ', assumed until you choose a data set'}): "
    f"{run_text.describe_head(chosen)}. Frozen counts include BatchNorm statistics, which never train."
)
plan_frame = blockmap.plan_table(blocks, plan)
st.plotly_chart(run_charts.block_map_figure(plan_frame), key="model_block_chart")
with st.expander("Block map as a table"):
    st.dataframe(plan_frame, hide_index=True, width="stretch", key="model_block_table")

state.set_model_spec(chosen)
state.set_freeze_plan(plan)
st.caption(
    f"Feature extraction trains {head_weights[head]:,} "
    "parameters (the head); the plan above is used by fine-tuning. Choose the strategy on the Train page."
)

# ----- before transfer ------------------------------------------------------------------------------

st.subheader("Before transfer: what the ImageNet model sees")
with_top = [key for key, has_top in zip(table["key"], table["top_weights_offline"], strict=True) if has_top]
if dataset is None:
    st.info("Choose a data set on the Data page to see the pretrained model's guesses for your images.")
    st.stop()
if not with_top:
    st.info(
        "No ImageNet classifier (with-top) weights are on this server, e.g. `mobilenet_2_5_224_tf.h5`; "
        "put one in the folder named by TRANSFER_WEIGHTS_DIR to see this."
    )
    st.stop()
pretrained_key = st.selectbox(
    "Pretrained classifier",
    with_top,
    index=with_top.index(backbone) if backbone in with_top else 0,
    format_func=lambda key: names[key],
    key="model_pretrained_key",
)
st.caption(
    "The unmodified network with its original 1000-class ImageNet head: it knows nothing of your "
    "classes, but its guesses show what its features capture."
)
thumbs = views.thumbnails_by_class(dataset, per_class=2)
chosen_images = [(path, label) for label, items in thumbs.items() for path, _ in items][:8]
paths = [str(p) for p, _ in chosen_images]
if st.button("Show its top-3 guesses", key="model_pretrained_run"):
    inference.imagenet_preview_request(settings, paths, pretrained_key, top=3, submit=True)
# Found again by its inputs: a rerun, a reload or another tab shows the request already made.
predictions = await_result("Running the ImageNet classifier...",
                           lambda: inference.imagenet_preview_request(settings, paths, pretrained_key, top=3),
                           "Could not run the ImageNet classifier")
if predictions:
    labelled = list(zip(predictions, [label for _, label in chosen_images], strict=False))
    columns = st.columns(4)
    for index, (prediction, label) in enumerate(labelled):
        with columns[index % 4]:
            st.image(prediction.path, width=140, caption=f"your class: {label}")
            st.caption("  \n".join(f"{name.replace('_', ' ')}: {p:.0%}" for name, p in prediction.top))
