"""Export: take the trained model away (.keras, SavedModel, TFLite, ONNX, labels), measure each file, reproduce it."""

import functools
from pathlib import Path

import streamlit as st

from transfer_core import compare, export, inference
from ui import state, widgets
from ui.worker_progress import await_request, await_result

st.title("Export")
widgets.show_notice()
ws = state.workspace()


runs = [info for info in compare.finished_runs(ws.store.list_runs()) if info.model_path.exists()]
if not runs:
    st.info("No trained model yet. Train one on the Train page or run a comparison, then export it here.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/monitoring:")
    st.stop()

by_id = {info.run_id: info for info in runs}
ids = list(by_id)
# The run this session last opened (here, on the other model page or on Train), else the most accurate.
preselected = compare.default_run_id(runs, (state.opened_run_id(),))
run_id = st.selectbox(
    "Model to export", ids, index=ids.index(preselected), key="export_run",
    format_func=lambda r: compare.describe_run(by_id[r]),
    help="Any finished run of this session.")
state.set_opened_run(run_id)
info = by_id[run_id]
config = info.config
modified = info.model_path.stat().st_mtime
input_size = (info.report.input_size if info.report else None) or config.model.input_size
short = run_id.rsplit("-", 1)[-1]

st.markdown(
    f"Every file takes **raw RGB pixels (0..255) at {input_size}x{input_size}**: the resizing is yours, the "
    "preprocessing is inside the model. So the model gives the same answers anywhere, with no hidden step to "
    "forget."
)

# ----- files -------------------------------------------------------------------------------------------

st.subheader("Files")
if st.button("Export and check", key="export_make", type="primary",
             help="Writes every format (a minute or two for a small model), then runs each file through its own "
                  "runtime on the validation (and test) images and compares it with the trained model."):
    # In the inference worker: exporting and the parity check load TensorFlow, never in this server.
    inference.export_request(state.settings(), str(info.path), str(info.model_path), modified, submit=True)
# Looked up by its inputs, so a rerun, a reload or another tab follows the export already asked for.
exported = await_request("Exporting every format, then running each file through its runtime...",
                         lambda: inference.export_request(state.settings(), str(info.path), str(info.model_path),
                                                          modified))
if exported is not None and not exported.ok:
    try:
        exported.result()
    except Exception as error:  # noqa: BLE001 - shown to the person.
        st.error(f"Export failed: {type(error).__name__}: {error}")

files = export.existing_exports(info.path)
if not files:
    st.caption("Nothing exported yet for this run: press **Export and check**.")
else:
    for name, path in files.items():
        file_col, button_col = st.columns([3, 1], vertical_alignment="center")
        size = path.stat().st_size
        size_text = f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{max(size / 1e3, 0.1):.1f} KB"
        fmt = export.EXPORT_FORMATS[name]
        file_col.markdown(f"**{fmt.display_name}** · {size_text}  \n{fmt.explanation}")
        button_col.download_button(
            "Download", data=functools.partial(Path.read_bytes, path), file_name=f"{short}-{path.name}",
            mime=fmt.mime, key=f"export_download_{name}", on_click="ignore", width="stretch")
missing = {key: export.missing_packages(key) for key in export.FORMATS if export.missing_packages(key)}
if missing:
    st.caption("Not written on this server: " + "; ".join(
        f"{export.EXPORT_FORMATS[key].display_name} (needs {', '.join(names)})" for key, names in missing.items())
        + ". Install them with `pip install -r requirements-export.txt`.")

# ----- parity ------------------------------------------------------------------------------------------

st.subheader("What each file costs")
parity = export.load_parity(info.path)
if parity is None or parity.empty:
    st.caption("Appears after **Export and check**.")
elif "val_accuracy" not in parity:
    st.caption("This run was exported before the cost table existed: press **Export and check** again.")
else:
    passed = bool(parity["passed"].all())
    (st.success if passed else st.error)(
        "Every exported file gives the trained model's answers." if passed
        else "Some exported files disagree with the trained model: see the table.")
    st.markdown("  \n".join(export.cost_reading(parity)))
    for advice in parity.loc[parity["flagged"].fillna(False).astype(bool), "advice"]:
        st.warning(advice)
    st.dataframe(
        parity[["name", "passed", "val_accuracy", "test_accuracy", "top1_agreement", "size_mb", "ms_per_image",
                "runtime", "max_abs_diff", "images", "note"]],
        hide_index=True, width="stretch", key="export_parity_table",
        column_config={
            "name": "Format",
            "passed": st.column_config.CheckboxColumn("Passed"),
            "val_accuracy": st.column_config.NumberColumn("Validation accuracy", format="percent"),
            "test_accuracy": st.column_config.NumberColumn(
                "Test accuracy", format="percent", help="Empty when the data set has no test split."),
            "runtime": st.column_config.TextColumn("Runtime", help="What ran the file: LiteRT (XNNPACK), "
                                                                    "onnxruntime, Keras or TensorFlow."),
            "top1_agreement": st.column_config.NumberColumn(
                "Same top-1 class", format="percent",
                help="Share of validation images whose most likely class matches the trained model's."),
            "max_abs_diff": st.column_config.NumberColumn(
                "Largest difference", format="%.2e",
                help="The largest gap between any class probability of this file and the trained model's."),
            "mean_abs_diff": st.column_config.NumberColumn("Mean difference", format="%.2e"),
            "images": "Images",
            "ms_per_image": st.column_config.NumberColumn(
                "ms / image", format="%.2f",
                help="One image at a time (batch 1), median over the images, on this server's CPU (shared with "
                     "everyone using it)."),
            "size_mb": st.column_config.NumberColumn("MB", format="%.2f"),
            "note": "Note",
        },
    )
    st.caption(f"Float formats pass with 100% agreement and differences below {export.FLOAT_TOLERANCE:g} "
               "(rounding). A rounded file (float16, 8-bit) passes when at most "
               f"{export.QUANTIZED_MAX_FLIP_SHARE:.0%} of the images (or one) change class, images the model was "
               f"unsure about, and (but for int8, whose output is rounded too) no probability moves by more than "
               f"{export.QUANTIZED_MAX_DIFF:g}. A file that "
               f"loses more than {export.MAX_POINTS_LOST:g} points of accuracy or agrees on fewer than "
               f"{export.MIN_AGREEMENT:.0%} of the images is flagged. The int8 file is calibrated on training "
               "images only.")

# ----- reproduce ---------------------------------------------------------------------------------------------

st.subheader("Reproduce it and use it")
snippet = export.predict_snippet(config)
script_col, snippet_col = st.columns(2)
script_col.markdown("**A script that trains this model again**, with plain Keras and TensorFlow: the same split "
                    "(from the data set's manifest.csv), backbone, preprocessing, head and recipe.")
with script_col:
    # In the inference worker: the script names the layers that train, which means building the backbone.
    script = await_result("Writing the script...", lambda: inference.reproduction_script_request(
        state.settings(), config, run_id, info.report.val_accuracy if info.report else None),
        "Could not write the script")
if script is not None:
    script_col.download_button("Download train script", script, file_name=f"train_{short}.py",
                               mime="text/x-python", key="export_download_script", on_click="ignore")
snippet_col.markdown("**A few lines that load the exported `.keras` file and predict an image.**")
snippet_col.download_button("Download predict.py", snippet, file_name="predict.py", mime="text/x-python",
                            key="export_download_snippet", on_click="ignore")
st.caption(f"Run it as `python train_{short}.py DATA_FOLDER`, where DATA_FOLDER holds the data set's manifest.csv "
           "(the exact split) or is your own folder with one sub-folder of images per class. Expect a validation "
           "accuracy close to the run's, not identical: random starts differ outside the app. On this server "
           f"the data set is `{config.dataset.root}`.")
if script is not None:
    with st.expander("The train script", expanded=False):
        st.code(script, language="python")
with st.expander("predict.py", expanded=True):
    st.code(snippet, language="python")
