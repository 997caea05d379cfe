"""Fixing the data from a model's mistakes, as the Train, Explore and Data pages show it.

One click each: relabel an image (as the class the model said, or another), remove it, add a new
photo (an upload or a camera shot) to a class, undo the last change; then train the same run again
on the cleaned data and compare before against after. Every change is a new version of the data
set (``transfer_core.data.fixes``); older versions and the runs made on them stay as they were.

A change is refused for a data set outside this session's workspace (a run made by the command
line on a server folder, say): nothing is written outside the workspace.
No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import streamlit as st

from transfer_core import compare, jobs
from transfer_core.data import (
    DataError,
    ImageRejected,
    VersionRecord,
    add_image,
    current_labels,
    list_versions,
    load_dataset,
    relabel_image,
    remove_image,
    undo_last_change,
)
from transfer_core.display.views import dataset_name
from transfer_core.runs import RunInfo
from transfer_core.sessions.workspace import QuotaExceededError
from ui import state

IMAGE_TYPES = ["jpg", "jpeg", "png", "bmp", "gif", "webp"]


def fixable(root: str) -> bool:
    """Whether the data set at ``root`` lies in this session's workspace (so this session may change it)."""
    try:
        return Path(root).resolve().is_relative_to(state.workspace().datasets_dir.resolve())
    except OSError:
        return False


def labels_now(root: str) -> dict[str, str] | None:
    """Path -> label in the data set's newest version, read once per gallery; None when it cannot be changed."""
    if not fixable(root):
        return None
    try:
        return current_labels(root)
    except DataError:
        return None


def image_actions(root: str, path: str, shown_label: str, predicted: str, class_names: list[str],
                  labels: dict[str, str] | None, key: str) -> None:
    """Under one image of a gallery: relabel as what the model said, relabel as another class, or remove.

    Args:
        root: The data set folder.
        path: The image's path inside it, as the manifest and run reports give it.
        shown_label: The label the gallery shows for it (the run's version's).
        predicted: The class the model said: the one-click relabel.
        class_names: The data set's classes.
        labels: From :func:`labels_now` (None: show nothing).
        key: A widget key prefix unique on the page.
    """
    if labels is None:
        return
    now = labels.get(path)
    if now is None:
        st.caption("Removed from the data set's newest version.")
        return
    if now != shown_label:
        st.caption(f"Now labelled **{now}** in the newest version.")
        return
    if predicted != now and st.button(f"Relabel as {predicted}", key=f"{key}_relabel", width="stretch",
                                      help="The model may be right: give this image the class it said."):
        _apply(lambda: relabel_image(root, path, predicted))
    others = [name for name in class_names if name not in (now, predicted)]
    if others:
        with st.popover("Another class", width="stretch"):
            for name in others:
                if st.button(name, key=f"{key}_relabel_{class_names.index(name)}"):
                    _apply(lambda name=name: relabel_image(root, path, name))
    if st.button("Remove", key=f"{key}_remove", width="stretch",
                 help="Leave this image out of the data set (useless, or in no class at all)."):
        _apply(lambda: remove_image(root, path))


def add_photo_controls(root: str, name: str, data: bytes, suggested: str, class_names: list[str], key: str) -> None:
    """Add one picture (an upload or a camera shot already shown) to the data set, as ``suggested`` or another class."""
    if not fixable(root):
        return
    label_col, add_col = st.columns([2, 1], vertical_alignment="bottom")
    label = label_col.selectbox("Class", class_names, index=class_names.index(suggested) if suggested in class_names
                                else 0, key=f"{key}_class", help="The class this picture really shows.")
    if add_col.button("Add to the data set", key=f"{key}_add", width="stretch",
                      help="A new version of the data set with this picture in the chosen class."):
        _add(root, name, data, label)


def add_photo_form(root: str, class_names: list[str], key: str) -> None:
    """Upload a photo, or take one with the camera, and add it to a class (a new version)."""
    if not fixable(root):
        return
    with st.expander("Add a new photo to a class"):
        upload = st.file_uploader("Photo", type=IMAGE_TYPES, key=f"{key}_upload")
        camera = None
        if st.toggle("Use the camera", key=f"{key}_camera_on"):
            camera = st.camera_input("Photo", key=f"{key}_camera")
        picture = (upload.name, upload.getvalue()) if upload is not None else (
            ("camera photo", camera.getvalue()) if camera is not None else None)
        label = st.selectbox("Class", class_names, key=f"{key}_class")
        if st.button("Add to the data set", key=f"{key}_add", disabled=picture is None):
            _add(root, picture[0], picture[1], label)


def version_bar(root: str, key: str) -> None:
    """The data set's newest version, its history, and Undo."""
    if not fixable(root):
        return
    try:
        records = list_versions(root)
    except DataError as error:
        st.caption(f"The data set's versions cannot be read: {error}")
        return
    newest = records[-1]
    text_col, undo_col = st.columns([4, 1], vertical_alignment="center")
    latest = "" if newest.version == 1 else f" (last change: {newest.description})"
    text_col.markdown(f"**Data set {dataset_name(root)}, version {newest.version}**{latest}")
    if undo_col.button("Undo last change", key=f"{key}_undo", disabled=newest.previous is None, width="stretch",
                       help="A new version with the images and labels from before the last change; "
                            "the versions in between, and runs made on them, stay as they were."):
        _apply(lambda: undo_last_change(root))
    if len(records) > 1:
        with st.expander(f"Versions ({len(records)})"):
            st.dataframe([{"version": r.version, "change": r.description, "images": r.images, "made": r.created}
                          for r in reversed(records)], hide_index=True, width="stretch", key=f"{key}_history")


def after_run(info: RunInfo) -> None:
    """Under an ended run: its data set's version and Undo, adding a photo, training again, before and after."""
    config = info.config
    if config is None or info.is_active:
        return
    root = config.dataset.root
    if fixable(root):
        version_bar(root, key="train_fix")
        add_photo_form(root, list(config.dataset.class_names), key="train_fix_photo")
    run_actions(info)


def run_actions(info: RunInfo) -> None:
    """Under an ended run: "Train again on the cleaned data", and "Compare before and after" once both exist."""
    config = info.config
    if config is None or info.is_active:
        return
    newer = compare.newer_version(config)
    if newer is not None and fixable(config.dataset.root):
        st.markdown(f"The data set changed since this run (it used v{config.dataset.version}; now v{newer}).")
        if st.button(f"Train again on the cleaned data (v{newer})", key="fix_train_again", type="primary",
                     help="The same run (model, freezing, settings and seed) on the newest version of the data."):
            _train_again(info)
    # Only a run on a later version can be an "after" (listing the runs costs a read of each).
    before = compare.before_run(info, state.workspace().store.list_runs()) if config.dataset.version > 1 else None
    both_done = before is not None and {before.status, info.status} <= {"finished", "stopped"}
    if both_done and st.button(f"Compare before (v{before.config.dataset.version}) and after "
                               f"(v{config.dataset.version})", key="fix_compare",
                               help="Opens Compare with these two runs: they differ only in the data."):
        st.session_state["compare_pick"] = [before.run_id, info.run_id]
        st.session_state["compare_follow_group"] = False
        st.switch_page("pages/compare.py")


def _train_again(info: RunInfo) -> None:
    settings = state.settings()
    ws = state.workspace()
    try:
        config = compare.train_again_config(info.config)
        ws.check_quota(settings)
        run_dir = jobs.start_run(config, runs_dir=ws.runs_dir, settings=settings)
    except (ValueError, QuotaExceededError, jobs.QueueFull, jobs.StartFailed) as error:
        st.error(f"Cannot train again: {error}")
        return
    state.set_active_run(run_dir.name)
    state.set_notice(f"Training the same run again on data v{config.dataset.version}. When it ends, "
                     "compare before and after.", "info")
    st.rerun()


def _add(root: str, name: str, data: bytes, label: str) -> None:
    try:
        state.workspace().check_quota(state.settings(), incoming_bytes=len(data))
    except QuotaExceededError as error:
        st.error(str(error))
        return
    try:
        _apply(lambda: add_image(root, name, data, label, state.settings()))
    except ImageRejected as error:
        st.error(f"{name} was not added: {error}")


def _apply(change) -> None:
    """Make the change; on success leave a notice and redraw (the new version shows everywhere)."""
    try:
        record: VersionRecord = change()
    except DataError as error:
        st.error(str(error))
        return
    active = state.active_dataset()
    if active is not None and Path(active.root) == Path(record.spec.root):
        state.set_active_dataset(load_dataset(record.spec.root))
    state.set_notice(f"Data set {dataset_name(record.spec.root)} is now version {record.version}: "
                     f"{record.description}. Undo it, or train again on the cleaned data.", "success")
    st.rerun()


def short_name(path: str) -> str:
    """An image's file name, for captions."""
    return PurePosixPath(path).name
