"""Data: add a data set (demo, uploads per class, camera, ZIP, server folder), check its health."""

from pathlib import Path

import streamlit as st

from transfer_core import data, inference
from transfer_core.data.augment import AUGMENTATION_HELP
from transfer_core.display import run_charts, views
from transfer_core.sessions import project_file
from ui import data_fix, state, widgets
from ui.worker_progress import await_result

st.title("Data")
widgets.show_notice()
ws = state.workspace()
settings = state.settings()


# ----- ingest helpers -------------------------------------------------------------------


def _disk_full(incoming_bytes: int = 0) -> bool:
    """Whether this session's disk quota is used up (counting an upload about to be stored)."""
    used = ws.disk_usage_mb()
    if (
        used < settings.max_session_disk_mb
        and used + incoming_bytes / 1_000_000 <= settings.max_session_disk_mb
    ):
        return False
    incoming = f" and this upload needs {incoming_bytes / 1_000_000:,.0f} MB more" if incoming_bytes else ""
    st.session_state["last_ingest"] = {
        "ok": False,
        "name": "",
        "skipped": [],
        "notes": [],
        "error": f"this session already uses {used:,.0f} MB of the {settings.max_session_disk_mb:,} MB it may use"
        f"{incoming}. Delete data sets (below) or runs (Train page) first.",
    }
    return True


def _ingest(name: str, run, incoming_bytes: int = 0) -> None:
    """Run one ingest into a new workspace folder; report what was skipped and why."""
    if _disk_full(incoming_bytes):
        return
    dest = ws.new_dataset_dir(name or "dataset")
    try:
        with st.spinner("Checking and copying images..."):
            result = run(dest)
    except (data.DataError, ValueError) as error:
        skipped = getattr(error, "skipped", ())
        st.session_state["last_ingest"] = {
            "ok": False,
            "name": name,
            "error": str(error),
            "skipped": [(s.name, s.reason) for s in skipped],
            "notes": [],
        }
        return
    state.set_active_dataset(result.spec)
    st.session_state["last_ingest"] = {
        "ok": True,
        "name": views.dataset_name(result.spec.root),
        "error": "",
        "skipped": [(s.name, s.reason) for s in result.skipped],
        "notes": list(result.notes),
    }


def _show_last_ingest() -> None:
    report = st.session_state.get("last_ingest")
    if not report:
        return
    if report["ok"]:
        skipped = len(report["skipped"])
        text = f"Data set **{report['name']}** is ready and active."
        if skipped:
            text += f" {skipped} file(s) were skipped; the table says why."
        st.success(text)
    else:
        st.error(f"Could not make the data set: {report['error']}")
    if report["skipped"]:
        frame = views.skipped_frame([{"name": n, "reason": r} for n, r in report["skipped"]])
        st.dataframe(frame, hide_index=True, width="stretch", key="last_ingest_skipped")
    if report["notes"]:
        with st.expander(f"Notes ({len(report['notes'])})"):
            for note in report["notes"]:
                st.caption(note)


def _classes() -> list[dict]:
    if "upload_classes" not in st.session_state:
        st.session_state["upload_classes"] = [{"id": 0, "name": "class 1"}, {"id": 1, "name": "class 2"}]
        st.session_state["upload_next_id"] = 2
    return st.session_state["upload_classes"]


def _add_class() -> None:
    classes = _classes()
    next_id = st.session_state["upload_next_id"]
    classes.append({"id": next_id, "name": f"class {len(classes) + 1}"})
    st.session_state["upload_next_id"] = next_id + 1


def _delete_class(class_id: int) -> None:
    st.session_state["upload_classes"] = [c for c in _classes() if c["id"] != class_id]
    st.session_state.setdefault("camera_photos", {}).pop(class_id, None)


def _add_photo(class_id: int, photo) -> None:
    photos = st.session_state.setdefault("camera_photos", {}).setdefault(class_id, [])
    photos.append((f"camera_{len(photos) + 1:03d}.jpg", photo.getvalue()))


# ----- sources ----------------------------------------------------------------------------

st.subheader("Add a data set")
demo_tab, upload_tab, zip_tab, folder_tab, project_tab = st.tabs(
    ["Built-in demo", "Upload per class", "ZIP file", "Folder on the server", "Project file"]
)

with demo_tab:
    st.markdown(
        "Synthetic pictures in four classes (circles, stripes, checkerboards, triangles), made on the spot."
    )
    left, right = st.columns(2)
    per_class = left.slider("Images per class", 10, 200, 40, step=10, key="demo_per_class")
    image_size = right.select_slider(
        "Image size (pixels)", [32, 64, 96, 128, 160], value=96, key="demo_image_size"
    )
    if st.button("Create the demo data set", key="demo_create", type="primary") and not _disk_full():
        with st.spinner("Drawing pictures..."):
            widgets.create_demo_dataset(per_class, image_size)
        st.session_state["last_ingest"] = {
            "ok": True,
            "name": "demo",
            "error": "",
            "skipped": [],
            "notes": [],
        }

with upload_tab:
    st.markdown(
        "Name your classes and drop a few images into each (JPEG, PNG, WebP, BMP, GIF, TIFF). "
        "Ten or more per class is a good start."
    )
    photos_by_class = st.session_state.setdefault("camera_photos", {})
    uploads: list[tuple[str, list, list]] = []
    for cls in list(_classes()):
        class_id = cls["id"]
        with st.container(border=True):
            name_col, delete_col = st.columns([4, 1], vertical_alignment="bottom")
            name = name_col.text_input("Class name", value=cls["name"], key=f"upload_class_name_{class_id}")
            cls["name"] = name
            delete_col.button(
                "Delete class",
                key=f"upload_class_delete_{class_id}",
                on_click=_delete_class,
                args=(class_id,),
                disabled=len(_classes()) <= 2,
            )
            files = st.file_uploader(
                f"Images of “{name}”", accept_multiple_files=True, key=f"upload_class_files_{class_id}"
            )
            photos = photos_by_class.get(class_id, [])
            if st.toggle("Take photos with the camera", key=f"upload_class_camera_on_{class_id}"):
                photo = st.camera_input("Camera", key=f"upload_class_camera_{class_id}")
                st.button(
                    "Add this photo",
                    key=f"upload_class_camera_add_{class_id}",
                    disabled=photo is None,
                    on_click=_add_photo,
                    args=(class_id, photo),
                )
            st.caption(f"{len(files or [])} file(s), {len(photos)} camera photo(s)")
            uploads.append((name.strip(), list(files or []), photos))
    add_col, name_col, create_col = st.columns([1, 2, 1], vertical_alignment="bottom")
    add_col.button("Add a class", key="upload_add_class", on_click=_add_class)
    upload_name = name_col.text_input(
        "Data set name", placeholder="named after the classes or the uploaded folder", key="upload_dataset_name"
    )
    if create_col.button("Create data set", key="upload_create", type="primary"):
        names = [name for name, files, photos in uploads if files or photos]
        if any(not name for name, _, _ in uploads):
            st.error("Every class needs a name.")
        elif len(set(names)) != len(names):
            st.error("Two classes have the same name; give each class its own name.")
        elif len(names) < 2:
            st.error("Add images to at least two classes.")
        else:
            files = [(f"{name}/{f.name}", f.getvalue(), name) for name, fs, _ in uploads for f in fs]
            files += [(f"{name}/{n}", b, name) for name, _, ps in uploads for n, b in ps]
            default_name = data.suggest_dataset_name(
                [f.name for _, fs, _ in uploads for f in fs], [name for name, fs, ps in uploads if fs or ps]
            )
            _ingest(
                upload_name.strip() or default_name,
                lambda dest: data.ingest_uploads(files, dest, settings=settings),
                incoming_bytes=sum(len(content) for _, content, _ in files),
            )

with zip_tab:
    st.markdown(
        "A ZIP with one folder per class (`cats/…`, `dogs/…`), or with `train/` and `val/` folders "
        "that each hold one folder per class (that split is kept)."
    )
    archive = st.file_uploader("ZIP file", type=["zip"], key="zip_file")
    zip_name = st.text_input("Data set name", placeholder="the ZIP file's name", key="zip_dataset_name")
    if st.button("Create data set from the ZIP", key="zip_create", type="primary", disabled=archive is None):
        _ingest(
            zip_name.strip() or data.dataset_name_from_file(archive.name) or "zip data set",
            lambda dest: data.ingest_zip(archive.getvalue(), dest, settings=settings),
            incoming_bytes=archive.size,
        )

with folder_tab:
    allowed = settings.allowed_data_dirs
    if not allowed:
        st.info(
            "Reading folders on the server is off. An operator turns it on by listing the folders the app "
            "may read in the environment variable `TRANSFER_ALLOWED_DATA_DIRS` (separated by `:`), then "
            "restarting the app, e.g. `TRANSFER_ALLOWED_DATA_DIRS=/srv/datasets streamlit run app.py`."
        )
    else:
        st.markdown("Allowed folders: " + ", ".join(f"`{p}`" for p in allowed))
        folder = st.text_input("Folder (one subfolder per class)", value=str(allowed[0]), key="folder_path")
        if st.button("Create data set from the folder", key="folder_create", type="primary"):
            try:
                source = views.resolve_server_folder(folder, allowed)
            except (PermissionError, FileNotFoundError) as error:
                st.error(str(error))
            else:
                _ingest(source.name, lambda dest: data.ingest_folder(source, dest, settings=settings))

with project_tab:
    st.markdown(
        "Save this session's data sets, finished runs and settings as one project file, and open it "
        "again later, here or on another Transfer Lab server."
    )
    st.download_button(
        "Save the project",
        data=lambda: project_file.export_project(ws),
        file_name="transfer-lab-project.zip",
        mime="application/zip",
        on_click="ignore",
        key="project_save",
        disabled=not ws.dataset_dirs() and not ws.store.ids(),
    )
    project = st.file_uploader("Project file to open", type=["zip"], key="project_file")
    if st.button("Open the project", key="project_open", disabled=project is None) and not _disk_full():
        try:
            with st.spinner("Checking and restoring the project..."):
                opened = project_file.open_project(ws, project, settings, file_name=project.name)
        except project_file.ProjectError as error:
            st.error(f"Could not open the project: {error}")
        else:
            if opened.choices is not None:
                state.adopt_choices(opened.choices)
            renamed = "".join(f" {old} is called {new} here (the name was taken)." for old, new in opened.renamed)
            state.set_notice(
                f"Opened {project.name}: {len(opened.datasets)} data set(s) and {len(opened.runs)} run(s) "
                f"added.{renamed}",
                "success",
            )
            st.rerun()  # Redraw the whole page (the Save button, the data set list) with what was added.

_show_last_ingest()

# ----- the workspace's data sets -------------------------------------------------------------

spec = state.active_dataset()
dataset_dirs = ws.dataset_dirs()
if dataset_dirs:
    with st.expander(f"Your data sets ({len(dataset_dirs)})", expanded=spec is None):
        for folder in dataset_dirs:
            try:
                other = data.load_dataset(folder)
                summary = views.dataset_summary(other)
            except ValueError as error:
                st.caption(f"{folder.name}: unreadable ({error})")
                continue
            is_active = spec is not None and Path(spec.root) == Path(other.root)
            text_col, use_col, delete_col = st.columns([5, 1, 1], vertical_alignment="center")
            text_col.markdown(f"**{summary.name}**{' (active)' if is_active else ''}: {summary.text}")
            if use_col.button("Use", key=f"dataset_use_{folder.name}", disabled=is_active):
                state.set_active_dataset(other)
                st.rerun()
            with delete_col.popover("Delete"):
                st.caption(f"Delete {summary.name} and its images?")
                if st.button("Delete for good", key=f"dataset_delete_{folder.name}", type="primary"):
                    ws.delete_dataset(folder)
                    if is_active:
                        state.set_active_dataset(None)
                    st.rerun()

if spec is None:
    st.info("No data set yet: make the demo set or upload images above.")
    st.stop()

# ----- the active data set ----------------------------------------------------------------------

summary = views.dataset_summary(spec)
st.header(f"Active: {summary.name}")
st.caption(summary.text)
data_fix.version_bar(spec.root, key="data_version")  # Fixes from Train/Explore are versions; Undo here too.
report = data.health_report(spec)

counts_col, facts_col = st.columns([3, 2])
with counts_col:
    st.plotly_chart(run_charts.class_counts_figure(report.counts), key="data_counts_chart")
with facts_col:
    ratio = report.imbalance_ratio
    first, second = st.columns(2)
    first.metric("Classes", len(spec.class_names))
    second.metric("Images", summary.total)
    first.metric("Imbalance (largest / smallest)", f"{ratio:.1f}×" if ratio != float("inf") else "∞")
    second.metric("Skipped files", len(report.skipped))
    first.metric("Duplicate groups", len(report.duplicate_groups))
    second.metric("Train/val leaks", len(report.cross_split_duplicates))
for warning in report.warnings:
    st.warning(warning)
if not report.warnings:
    st.success("No problems found: classes are balanced enough, no duplicates across splits.")

if report.cross_split_duplicates:
    with st.expander("Identical images in training and validation (leakage)"):
        st.dataframe(
            [{"train": a, "validation/test": b} for a, b in report.cross_split_duplicates],
            hide_index=True,
            key="data_leaks",
        )
if report.duplicate_groups:
    with st.expander("Duplicate images"):
        st.dataframe(
            [{"images": ", ".join(group)} for group in report.duplicate_groups],
            hide_index=True,
            key="data_duplicates",
        )
if report.conflicting_labels:
    with st.expander("Same image, different classes"):
        st.dataframe(
            [{"images": ", ".join(group)} for group in report.conflicting_labels],
            hide_index=True,
            key="data_conflicts",
        )
if report.skipped:
    st.markdown("**Skipped files and why**")
    st.dataframe(views.skipped_frame(report.skipped), hide_index=True, width="stretch", key="data_skipped")

st.subheader("Images per class")
per_class_thumbs = views.thumbnails_by_class(spec, per_class=6)
for label, items in per_class_thumbs.items():
    st.markdown(f"**{label}**")
    if items:
        st.image([path for path, _ in items], caption=[caption for _, caption in items], width=110)
    else:
        st.caption("no images")

st.subheader("Split")
if data.has_own_split(spec):
    st.caption("This data set came with its own train/validation folders; that split is kept.")
with st.form("split_form"):
    seed_col, val_col, test_col = st.columns(3)
    seed = seed_col.number_input("Seed", 0, 1_000_000, spec.seed, key="split_seed")
    val_fraction = val_col.slider(
        "Validation share", 0.05, 0.5, float(spec.val_fraction), 0.05, key="split_val"
    )
    test_fraction = test_col.slider("Test share", 0.0, 0.4, float(spec.test_fraction), 0.05, key="split_test")
    st.caption(
        "The split is fixed by each image's content and the seed, so every run on this data set "
        "compares on the same images."
    )
    if st.form_submit_button("Apply split", key="split_apply"):
        try:
            spec = data.resplit(spec, seed=int(seed), val_fraction=val_fraction, test_fraction=test_fraction)
            state.set_active_dataset(spec)
            st.rerun()
        except ValueError as error:
            st.error(str(error))

st.subheader("Augmentation preview")
st.caption(
    "Random changes applied to training images each epoch, so the model sees more variety. "
    "Turn them on in the Train page's settings."
)
choices = st.multiselect(
    "Augmentations",
    list(AUGMENTATION_HELP),
    default=list(AUGMENTATION_HELP),
    format_func=lambda name: f"{name}: {AUGMENTATION_HELP[name]}",
    key="aug_preview_choice",
)
image_names = {
    path: f"{label}, image {index + 1}"
    for label, items in views.thumbnails_by_class(spec, per_class=3, split="train").items()
    for index, (path, _) in enumerate(items)
}
if image_names:
    image_path = st.selectbox(
        "Image", list(image_names), format_func=image_names.get, key="aug_preview_image"
    )
    if st.button("Show augmented copies", key="aug_preview_button"):
        inference.ask_augmentation(state.settings(), image_path, choices)  # New copies each click.
    # The newest copies asked for this image, found again by their inputs after a rerun, a reload or in a new tab.
    preview = await_result("Augmenting (in the inference worker; its first request loads TensorFlow)...",
                           lambda: inference.augmentation_request(state.settings(), image_path, choices),
                           "Could not augment this image")
    if preview:
        st.image(preview, caption=["original"] + [f"copy {i}" for i in range(1, len(preview))], width=110)
