"""Explore: predict new images with Grad-CAM, click the confusion matrix, watch embeddings separate."""

from pathlib import Path

import numpy as np
import streamlit as st

from transfer_core import compare, inference
from transfer_core.display import compare_charts
from transfer_core.explore import explain
from transfer_core.explore.embeddings import TSNE_MAX_IMAGES
from transfer_core.metrics import confusion_matrix
from ui import data_fix, state, widgets
from ui.worker_progress import await_request, await_result

MAX_CELL_IMAGES = 12

st.title("Explore")
widgets.show_notice()
ws = state.workspace()
settings = state.settings()


def _user_model_section() -> None:
    """Predict with a .keras file the person uploads (loaded only in Keras' safe mode)."""
    import hashlib


    with st.expander("Or try a .keras model file of your own"):
        st.caption("Only Keras 3 `.keras` files made of built-in layers are accepted, loaded in Keras' safe "
                   "mode; files that could run code on this server (Lambda layers, custom classes, .h5, "
                   "pickles) are refused. The model must take raw 0-255 RGB pixels, like the ones Export makes.")
        model_file = st.file_uploader("Model file (.keras)", key="explore_user_model")
        picture = st.file_uploader("Image", type=["jpg", "jpeg", "png", "bmp", "gif", "webp"],
                                   key="explore_user_image")
        if model_file is None:
            return
        data = model_file.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        loaded = await_result("Checking and loading the model file...", lambda: inference.user_model_info_request(
            settings, digest, data, model_file.name), "Cannot use this model file")
        if loaded is None:
            return
        side, num_classes = loaded.input_size, loaded.num_classes
        st.caption(f"{model_file.name}: takes {side}x{side} RGB images, {num_classes} classes.")
        if picture is None:
            return
        probabilities = await_result("Predicting...", lambda: inference.user_model_predict_request(
            settings, digest, data, model_file.name, picture.getvalue()), picture.name)
        if probabilities is None:
            return
        st.dataframe(explain.top_k(probabilities, [f"class {i}" for i in range(num_classes)], min(3, num_classes)),
                     hide_index=True, key="explore_user_topk")


runs = [info for info in compare.finished_runs(ws.store.list_runs()) if info.model_path.exists()]
if not runs:
    st.info("No trained model yet. Train one on the Train page or run a comparison, then come back to look "
            "inside it.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/monitoring:")
    _user_model_section()
    st.stop()

by_id = {info.run_id: info for info in runs}
ids = list(by_id)
# The run this session last opened (here, on the other model page or on Train), else the most accurate.
preselected = compare.default_run_id(runs, (state.opened_run_id(),))
run_id = st.selectbox(
    "Model to explore", ids, index=ids.index(preselected), key="explore_run",
    format_func=lambda r: compare.describe_run(by_id[r]),
    help="Any finished run of this session. Everything below uses that run's saved model.")
state.set_opened_run(run_id)
info = by_id[run_id]
config = info.config
class_names = list(config.dataset.class_names)
model_path = str(info.model_path)
modified = info.model_path.stat().st_mtime

predict_tab, matrix_tab, embedding_tab, sees_tab = st.tabs(
    ["Predict new images", "Mistakes", "Embeddings", "What the model sees"])

# ----- predict ---------------------------------------------------------------------------------------

with predict_tab:
    st.markdown("Give the model pictures it has never seen. It answers with a probability per class, and "
                "**Grad-CAM** colours the places that pushed it towards its answer (red = strong evidence).")
    uploads = st.file_uploader(
        "Images", type=["jpg", "jpeg", "png", "bmp", "gif", "webp"], accept_multiple_files=True,
        key="explore_upload", help="Any size: they are resized to the model's input size, like the training images.")
    camera = None
    if st.toggle("Use the camera", key="explore_camera_on",
                 help="Take a photo with this device's camera (the browser asks for permission)."):
        camera = st.camera_input("Photo", key="explore_camera")
    top = st.slider("Classes to list", 1, max(1, min(5, len(class_names))), min(3, len(class_names)),
                    key="explore_top_k", help="How many of the most likely classes to show per image.")
    pictures = [(f.name, f.getvalue()) for f in (uploads or [])]
    if camera is not None:
        pictures.append(("camera photo", camera.getvalue()))
    if not pictures:
        st.caption("Upload an image (or take a photo) to see the prediction.")
    feature_map_size = None
    pictures = pictures[:12]
    # Every request below is looked up by its inputs: a rerun, a reload or another tab follows the one made.
    explained = (await_result("Predicting and computing Grad-CAM...", lambda: inference.explain_request(
        settings, model_path, modified, pictures), "Could not predict these images") if pictures else None) or []
    for number, ((name, data), result) in enumerate(zip(pictures, explained, strict=False)):
        if result.error is not None:
            st.warning(f"{name}: {result.error}")
            continue
        cam, probabilities = result.cam, result.probabilities
        feature_map_size = cam.feature_map_size
        original_col, cam_col, table_col = st.columns([1, 1, 1.3])
        original_col.image(data, caption=name, width="stretch")
        cam_col.image(cam.overlay, caption=f"Grad-CAM for '{class_names[cam.class_index]}'", width="stretch")
        with table_col:
            st.markdown(f"**{class_names[cam.class_index]}** ({cam.probability:.0%})")
            st.dataframe(
                explain.top_k(probabilities, class_names, top), hide_index=True, width="stretch",
                key=f"explore_topk_{number}",
                column_config={"rank": None,
                               "probability": st.column_config.ProgressColumn("probability", min_value=0,
                                                                              max_value=1, format="percent")})
            if not cam.has_evidence:
                st.caption("Grad-CAM found no location with positive evidence for this class.")
            data_fix.add_photo_controls(config.dataset.root, name, data, class_names[cam.class_index], class_names,
                                        key=f"explore_add_{number}")
    if feature_map_size:
        st.caption(f"The heat map has the resolution of the backbone's last feature map "
                   f"({feature_map_size}x{feature_map_size}), stretched over the image: it shows roughly "
                   "where, not exact outlines. The model only knows its classes: a picture of something else "
                   "still gets one of them, often with high confidence.")

# ----- confusion matrix ---------------------------------------------------------------------------------

with matrix_tab:
    frame = await_result("Predicting the validation images...", lambda: inference.validation_predictions_request(
        settings, str(info.path), model_path, modified), "Could not predict the validation images")
    if frame is not None and frame.empty:
        st.info("This run's data set has no validation images.")
    elif frame is not None:
        st.markdown("Rows are the true classes, columns what the model said. The diagonal is right; everything "
                    "else is a mistake. **Click a cell** (or choose it below) to see those validation images "
                    "with Grad-CAM.")
        matrix = confusion_matrix(frame["true_index"].to_numpy(), frame["predicted_index"].to_numpy(),
                                  len(class_names))
        event = st.plotly_chart(compare_charts.clickable_confusion_figure(matrix, class_names),
                                key="explore_confusion", on_select="rerun", selection_mode="points")
        points = (event.selection.points if event is not None and hasattr(event, "selection") else []) or []
        if points:
            index = int(points[0].get("point_index", points[0].get("point_number", 0)))
            clicked = (class_names[index // len(class_names)], class_names[index % len(class_names)])
            if st.session_state.get("explore_last_click") != clicked:
                st.session_state["explore_last_click"] = clicked
                st.session_state["explore_cell_true"], st.session_state["explore_cell_predicted"] = clicked
        if "explore_cell_true" not in st.session_state or st.session_state["explore_cell_true"] not in class_names:
            off = matrix.astype(float).copy()
            np.fill_diagonal(off, -1)
            row, col = np.unravel_index(int(np.argmax(off)), off.shape)
            if off[row, col] <= 0:
                row = col = 0
            st.session_state["explore_cell_true"] = class_names[row]
            st.session_state["explore_cell_predicted"] = class_names[col]
        if st.session_state.get("explore_cell_predicted") not in class_names:
            st.session_state["explore_cell_predicted"] = class_names[0]
        true_col, predicted_col, explain_col = st.columns(3)
        true_name = true_col.selectbox("True class", class_names, key="explore_cell_true")
        predicted_name = predicted_col.selectbox("Predicted class", class_names, key="explore_cell_predicted")
        target = explain_col.radio(
            "Grad-CAM explains", ["predicted", "true"], horizontal=True, key="explore_cam_target",
            format_func={"predicted": "the prediction", "true": "the true class"}.get,
            help="'The prediction' shows what convinced the model; 'the true class' shows where it would have "
                 "looked for the right answer.")
        cell = frame[(frame["true"] == true_name) & (frame["predicted"] == predicted_name)]
        verdict = "correct" if true_name == predicted_name else "mistakes"
        st.markdown(f"**{len(cell)} image(s)** of true class *{true_name}* predicted as *{predicted_name}* "
                    f"({verdict}).")
        if len(cell) > MAX_CELL_IMAGES:
            st.caption(f"Showing the {MAX_CELL_IMAGES} most confident.")
        cell = cell.sort_values("confidence", ascending=False).head(MAX_CELL_IMAGES)
        columns = st.columns(4)
        root = Path(config.dataset.root)
        rows = list(cell.iterrows())
        items = [(str(root / row["path"]), int(row["predicted_index"] if target == "predicted" else row["true_index"]))
                 for _, row in rows]
        cams = (await_result("Computing Grad-CAM of these images...", lambda: inference.cell_grad_cams_request(
            settings, model_path, modified, items), "Could not compute Grad-CAM") if items else None) or []
        labels = data_fix.labels_now(config.dataset.root)  # Relabel or remove: a new data set version.
        for position, ((_, row), (overlay, _probability)) in enumerate(zip(rows, cams, strict=False)):
            with columns[position % 4]:
                st.image(overlay, width="stretch")
                st.caption(f"{Path(row['path']).name}: said **{row['predicted']}** ({row['confidence']:.0%})")
                data_fix.image_actions(config.dataset.root, row["path"], row["true"], row["predicted"], class_names,
                                       labels, key=f"explore_fix_{position}")

# ----- embeddings -----------------------------------------------------------------------------------------

with embedding_tab:
    st.markdown(
        "Each dot is one validation image, placed by the backbone's pooled features (the numbers the head "
        "reads), squeezed to 2-D. **Before**: the backbone as it came (ImageNet or random weights). **After**: "
        "this run's backbone. When fine-tuning helps, the colours (classes) pull apart.")
    st.caption("PCA keeps the biggest directions of variation (a linear view); t-SNE keeps neighbours together "
               "(clusters are meaningful, distances between clusters are not). t-SNE is only offered for up to "
               f"{TSNE_MAX_IMAGES} images.")
    cached = None
    if st.button("Compute embeddings", key="explore_embed",
                 help="Runs both backbones over the validation images: a few seconds to a minute."):
        inference.embeddings_request(settings, model_path, modified, config, submit=True)
    # Looked up by its inputs, so a rerun, a reload or another tab follows the request already made.
    answer = await_request("Computing features before and after, and projecting them...",
                           lambda: inference.embeddings_request(settings, model_path, modified, config))
    if answer is not None:
        try:
            cached = (run_id, answer.result())
        except Exception as error:  # noqa: BLE001 - shown to the person.
            st.error(f"Could not compute embeddings: {error}")
    if cached is not None and cached[0] == run_id:
        result = cached[1]
        method = st.radio("Projection", result.methods, horizontal=True, key="explore_embed_method",
                          help="Switch between the two views of the same features.")
        before_col, after_col = st.columns(2)
        for column, which, name in ((before_col, "before", result.before_name), (after_col, "after", result.after_name)):
            part = result.frame[(result.frame["model"] == which) & (result.frame["method"] == method)]
            column.plotly_chart(compare_charts.embedding_figure(part, name, class_names),
                                key=f"explore_embed_{which}")
            score = result.separation.get(which)
            column.metric("Class separation (silhouette)", "-" if score is None else f"{score:.2f}",
                          help="-1..1 in the full feature space: higher means images sit closer to their own "
                               "class than to others.")
        before, after = result.separation.get("before"), result.separation.get("after")
        if before is not None and after is not None:
            change = after - before
            if change > 0.02:
                verdict = "the classes moved further apart: training adapted the features to your classes."
            elif change < -0.02:
                verdict = ("the classes moved closer together in the backbone's features; the head can still "
                           "separate them, but the base did not become more specific.")
            else:
                verdict = "about the same: the backbone's features barely changed (the head did the learning)."
            st.markdown(f"Separation {before:.2f} before, {after:.2f} after: {verdict}")
        for note in result.notes:
            st.caption(note)

# ----- what the model sees -----------------------------------------------------------------------------------

with sees_tab:
    st.markdown("Before the backbone sees an image, it is **resized** to its input size and its pixel values "
                "are **rescaled** the way the backbone was trained on ImageNet. Both steps are inside the model.")
    choices = [] if frame is None else list(frame["path"])[:60]  # The Mistakes tab's predictions, once answered.
    if uploads:
        choices = [f"upload: {f.name}" for f in uploads] + choices
    input_size = await_result("Loading the model...", lambda: inference.model_input_size_request(
        settings, model_path, modified), "Could not load the model")
    if not choices:
        st.caption("No image to show: upload one in the first tab.")
    elif input_size is not None:
        picked = st.selectbox("Image", choices, key="explore_sees_image",
                              help="A validation image, or one you uploaded in the first tab.")
        if picked.startswith("upload: "):
            source = next(f.getvalue() for f in uploads if f"upload: {f.name}" == picked)
        else:
            source = Path(config.dataset.root) / picked
        view = await_result("Resizing and preprocessing the image...", lambda: inference.model_view_request(
            settings, source if isinstance(source, bytes) else str(source), config.model.backbone, input_size),
            "Cannot show this image")
        if view is not None:
            original_col, resized_col, pre_col = st.columns(3)
            original_col.image(source if isinstance(source, bytes) else str(source), width="stretch",
                               caption=f"Original: {view.original_size[0]}x{view.original_size[1]} pixels")
            resized_col.image(view.resized, width="stretch",
                              caption=f"Resized: {input_size}x{input_size}, values {view.input_range[0]:.0f}.."
                                      f"{view.input_range[1]:.0f}")
            pre_col.image(view.display, width="stretch",
                          caption=f"After preprocessing: values {view.output_range[0]:.2f}..{view.output_range[1]:.2f}"
                                  " (rescaled to show)")
            st.markdown(view.description)
            means = ", ".join(f"{name} {value:.2f}" for name, value in zip("RGB", view.channel_means, strict=True))
            st.caption(f"Mean per input channel after preprocessing: {means}. Squashing a wide photo into a "
                       "square is why circles can look like ovals to the model.")

_user_model_section()
