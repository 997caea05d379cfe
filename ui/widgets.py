"""Small pieces of UI the pages share: the sidebar status, notices, the demo action.

No TensorFlow here: the sidebar renders on every page, including Home.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from transfer_core import jobs
from transfer_core.display.run_text import status_line
from transfer_core.display.views import dataset_summary
from ui import state

STATUS_ICONS = {
    "queued": ":material/hourglass_top:",
    "running": ":material/directions_run:",
    "finished": ":material/check_circle:",
    "stopped": ":material/stop_circle:",
    "failed": ":material/error:",
    "interrupted": ":material/warning:",
}


def sidebar_status_slot() -> Callable[[bool], None]:
    """A place in the sidebar for :func:`sidebar_status`, and a function that (re)draws it there.

    The router draws it before the page (what a page that stops early leaves), again
    whenever the page changes a choice, and last after the page, so the sidebar shows the
    state after the page's action.
    """
    slot = st.sidebar.empty()

    def draw(poll: bool = False) -> None:
        with slot.container():
            sidebar_status(poll)

    return draw


def sidebar_status(poll: bool = True) -> None:
    """Active data set, chosen backbone and the current run's state, in the current container.

    Args:
        poll: Refresh the run's state every :data:`SIDEBAR_POLL_SECONDS` while it is active
            (unless the page shows that run live).
    """
    st.markdown("**Data set**")
    spec = state.active_dataset()
    if spec is None:
        st.caption("none yet: choose one on the Data page")
    else:
        try:
            summary = dataset_summary(spec)
            st.caption(f"{summary.name}: {summary.text}")
            st.caption(
                "Classes: "
                + ", ".join(spec.class_names[:8])
                + (" …" if len(spec.class_names) > 8 else "")
            )
        except ValueError as error:
            st.caption(f"unreadable: {error}")
    st.markdown("**Backbone**")
    model = state.model_spec()
    size = f"{model.input_size}px" if model.input_size else "default size"
    weights = "ImageNet weights" if model.weights == "imagenet" else "random weights (no transfer)"
    st.caption(f"{model.backbone}, {size}, {weights}")
    followed = state.sidebar_run()
    if followed is None:
        st.markdown("**Current run**")
        st.caption("none")
        return
    info, _ = followed
    if poll and info.is_active and state.live_view_run() != info.run_id:
        # On other pages the sidebar polls the run, slowly; the Train page's live view polls it itself.
        st.fragment(_run_status, run_every=SIDEBAR_POLL_SECONDS)(polling=True)
    else:
        _run_status(polling=False)


SIDEBAR_POLL_SECONDS = 10.0


def _run_status(polling: bool) -> None:
    followed = state.sidebar_run()
    if followed is None:
        st.markdown("**Current run**")
        st.caption("none")
        if polling:
            st.rerun()  # Nothing left to follow: stop this fragment's polling.
        return
    info, heading = followed
    st.markdown(f"**{heading}**")
    st.caption(f"{STATUS_ICONS.get(info.status, '')} {info.run_id}")
    if info.is_active and state.live_view_run() == info.run_id:
        # Not polled here (the page is), so a detailed line would go stale while the page moves on.
        st.caption(f"{info.status}: progress on this page")
        return
    position = jobs.queue_position(info.path, state.settings()) if info.status == "queued" else None
    eta = jobs.queue_eta(info.path, state.settings()) if position is not None else None
    st.caption(status_line(info, position, eta))
    if polling and not info.is_active:
        # The run just ended: one full rerun redraws the page and stops this fragment's polling.
        st.rerun()


def show_notice() -> None:
    """Show (once) a message left by the previous page."""
    notice = state.pop_notice()
    if notice is None:
        return
    kind, text = notice
    {"success": st.success, "warning": st.warning, "error": st.error}.get(kind, st.info)(text)


def create_demo_dataset(images_per_class: int, image_size: int, seed: int = 0, kind: str = "shapes") -> None:
    """Make a built-in demo data set (``transfer_core.data.DEMO_KINDS``) in this workspace and make it active."""
    from transfer_core.data import demo_dataset_from_template

    ws = state.workspace()
    # The pictures are made once per server home and linked into each workspace: 30 students
    # pressing "Try the demo" together no longer paint 30 sets in the server process.
    spec = demo_dataset_from_template(
        ws.new_dataset_dir("demo"), state.settings().cache_dir, images_per_class=images_per_class,
        image_size=image_size, seed=seed, kind=kind,
    )
    state.set_active_dataset(spec)


def start_demo() -> str:
    """The "Try the demo" path: demo data, a backbone that works offline, fast training settings.

    Returns:
        A sentence saying which backbone was chosen and why.
    """
    from transfer_core.sessions import presets

    create_demo_dataset(presets.DEMO_IMAGES_PER_CLASS, presets.DEMO_IMAGE_SIZE, kind=presets.DEMO_KIND)
    return apply_demo_settings()


def apply_demo_settings() -> str:
    """The demo's backbone (one that works offline), freeze plan and fast training settings.

    Returns:
        A sentence saying which backbone was chosen and why.
    """
    from transfer_core.sessions import presets

    choice = presets.choose_demo_backbone(state.settings())
    state.set_model_spec(presets.demo_model_spec(choice))
    train = presets.demo_train_config(choice)
    state.set_freeze_plan(presets.demo_freeze_plan())
    state.set_train_config(train)
    return choice.explanation
