"""Session state of the app, in one place, so pages stay thin and agree on keys.

Keys in ``st.session_state``:
- ``workspace``: the session's :class:`transfer_core.sessions.workspace.Workspace`
  (its id is also kept in the URL as ``?ws=...`` so a reload keeps the data).
- ``run_id``: also kept in the URL as ``?run=...``, so a reload reopens the run.
- ``dataset_root``: folder of the active data set (str) or absent.
- ``run_id``: the run the Train page follows / shows, or absent.
- ``model_spec``, ``freeze_plan``: the Model page's choices (config dataclasses).
- ``train_config``: the Train form's last values (a TrainConfig).
- ``followers``: run id -> :class:`transfer_core.live.EventFollower`.
- ``notice``: a one-time message for the next page (e.g. after "Try the demo").
- ``saved_choices``: the :class:`SessionChoices` last written to (or read from) the workspace.
- ``compare_group``: run ids of the comparison the Compare page shows; ``compare_follow_group``: keep
  its "Runs to compare" pick (widget key ``compare_pick``) on that comparison's runs as they end.

The data set, model, freeze plan and training choices are also kept in the workspace
(``session.json``): a new session on the same ``?ws=`` address (a reload, a new tab)
starts from them. Each setter saves when the choices changed, then redraws the sidebar.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import streamlit as st

from transfer_core.compare.labels import run_label
from transfer_core.config import DatasetSpec, FreezePlan, ModelSpec, Settings, TrainConfig
from transfer_core.live import EventFollower
from transfer_core.runs import RunInfo
from transfer_core.sessions.workspace import SessionChoices, Workspace


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Operator settings, read once per server process. Reading them starts nothing."""
    return Settings.from_env(server=True)


def start_standby() -> None:
    """Start this server's standby worker (TensorFlow imported before the first Start) unless it is off.

    app.py calls it on every run; the worker starts once for each distinct settings.
    """
    current = settings()
    if current.standby_worker:
        _start_standby_for(current)


@lru_cache(maxsize=1)
def _start_standby_for(current: Settings) -> None:
    from transfer_core.jobs import ensure_standby

    ensure_standby(current)


def prepare_demo() -> None:
    """Make the demo data set's template once per server, in the background: "Try the demo" then
    only copies it, even for the first student (app.py calls this on every run). Like the standby
    worker, only where the server prepares ahead (``standby_worker``: on in the app, off in tests)."""
    current = settings()
    if current.standby_worker:
        _prepare_demo_for(current)


@lru_cache(maxsize=1)
def _prepare_demo_for(current: Settings) -> None:
    import threading

    from transfer_core.data import prepare_demo_template
    from transfer_core.sessions import presets

    def build() -> None:
        # A failure here is not lost: "Try the demo" builds it itself and shows what went wrong.
        with contextlib.suppress(Exception):
            prepare_demo_template(current.cache_dir, images_per_class=presets.DEMO_IMAGES_PER_CLASS,
                                  image_size=presets.DEMO_IMAGE_SIZE, kind=presets.DEMO_KIND)

    threading.Thread(target=build, name="demo-template", daemon=True).start()


def workspace() -> Workspace:
    """This session's workspace; created on first use and remembered in the URL."""
    if "workspace" not in st.session_state:
        ws = Workspace.open(settings(), st.query_params.get("ws"))
        st.session_state["workspace"] = ws
        _restore_choices(ws)
    ws = st.session_state["workspace"]
    if st.query_params.get("ws") != ws.workspace_id:
        st.query_params["ws"] = ws.workspace_id
    run_id = st.session_state.get("run_id")
    if run_id and st.query_params.get("run") != run_id:
        st.query_params["run"] = run_id  # A reload (or a bookmark) reopens the same run.
    return ws


def _restore_choices(ws: Workspace) -> None:
    """Start a new session from the choices saved in its workspace (a reload, a new tab)."""
    choices, warnings = ws.load_choices()
    st.session_state["saved_choices"] = choices
    adopt_choices(choices)  # Equal to the saved ones, so nothing is written.
    if warnings:
        set_notice("Some saved choices were reset to defaults: " + "; ".join(warnings) + ".", "warning")


def adopt_choices(choices: SessionChoices) -> None:
    """Make ``choices`` (an opened project's, say) this session's choices, and save them."""
    ws = workspace()
    if choices.dataset:
        st.session_state["dataset_root"] = str(ws.datasets_dir / choices.dataset)
    for key, value in (("model_spec", choices.model), ("freeze_plan", choices.freeze),
                       ("train_config", choices.train)):
        if value is not None:
            st.session_state[key] = value
    _choices_changed()


def _choices_changed() -> None:
    """Save the session's choices to its workspace when they differ from the saved ones."""
    root = st.session_state.get("dataset_root")
    choices = SessionChoices(
        dataset=Path(root).name if root else "",
        model=st.session_state.get("model_spec"),
        freeze=st.session_state.get("freeze_plan"),
        train=st.session_state.get("train_config"),
    )
    if choices == st.session_state.get("saved_choices"):
        return
    workspace().save_choices(choices)
    st.session_state["saved_choices"] = choices
    redraw = st.session_state.get("on_choices_changed")
    if redraw is not None:
        redraw()


def on_choices_changed(redraw: Callable[[], None] | None) -> None:
    """Call ``redraw`` (the sidebar) whenever a page changes a choice during this script run."""
    st.session_state["on_choices_changed"] = redraw


def active_dataset() -> DatasetSpec | None:
    """The data set chosen on the Data page, or None."""
    from transfer_core.data import DataError, load_dataset

    root = st.session_state.get("dataset_root")
    if not root:
        return None
    try:
        return load_dataset(root)
    except DataError:
        st.session_state.pop("dataset_root", None)
        return None


def set_active_dataset(spec: DatasetSpec | None) -> None:
    if spec is None:
        st.session_state.pop("dataset_root", None)
    else:
        st.session_state["dataset_root"] = spec.root
    _choices_changed()


def model_spec() -> ModelSpec:
    return st.session_state.get("model_spec") or ModelSpec()


def set_model_spec(spec: ModelSpec) -> None:
    st.session_state["model_spec"] = spec
    _choices_changed()


def freeze_plan() -> FreezePlan:
    return st.session_state.get("freeze_plan") or FreezePlan()


def set_freeze_plan(plan: FreezePlan) -> None:
    st.session_state["freeze_plan"] = plan
    _choices_changed()


def train_config() -> TrainConfig | None:
    """The Train form's last submitted (or preset) values, or None for the defaults."""
    return st.session_state.get("train_config")


def set_train_config(config: TrainConfig | None) -> None:
    if config is None:
        st.session_state.pop("train_config", None)
    else:
        st.session_state["train_config"] = config
    _choices_changed()


def active_run_id() -> str | None:
    """The run this session follows; after a reload, the run named in the URL (``?run=``) if it exists."""
    if "run_id" not in st.session_state:
        requested = st.query_params.get("run")
        if requested:
            try:
                workspace().store.load(requested)
            except (FileNotFoundError, ValueError):
                del st.query_params["run"]
            else:
                st.session_state["run_id"] = requested
    return st.session_state.get("run_id")


def set_active_run(run_id: str | None) -> None:
    if run_id is None:
        st.session_state.pop("run_id", None)
        if "run" in st.query_params:
            del st.query_params["run"]
    else:
        st.session_state["run_id"] = run_id
        st.query_params["run"] = run_id
        set_opened_run(run_id)


def opened_run_id() -> str | None:
    """The run this session last opened: picked on Explore or Export, or started on Train."""
    return st.session_state.get("opened_run_id")


def set_opened_run(run_id: str | None) -> None:
    """Remember ``run_id`` as opened; None (a comparison started) lets pickers choose the most accurate."""
    if run_id is None:
        st.session_state.pop("opened_run_id", None)
    else:
        st.session_state["opened_run_id"] = run_id


def active_run() -> RunInfo | None:
    """The run the session follows, read from the run store (None if unknown or deleted)."""
    run_id = active_run_id()
    if not run_id:
        return None
    try:
        return workspace().store.load(run_id)
    except (FileNotFoundError, ValueError):
        set_active_run(None)
        return None


def sidebar_run() -> tuple[RunInfo, str] | None:
    """What the sidebar follows, and its heading: the session's run, or while that is idle the comparison in flight.

    Returns:
        ``(run, heading)``, e.g. a queued run of a comparison under "Comparison: run 2 of 3,
        from scratch"; None when the session has neither.
    """
    info = active_run()
    if info is not None and info.is_active:
        return info, "Current run"
    group = st.session_state.get("compare_group") or []
    store = workspace().store
    for index, run_id in enumerate(group):
        try:
            member = store.load(run_id)
        except (FileNotFoundError, ValueError):
            continue
        if member.is_active:
            return member, f"Comparison: run {index + 1} of {len(group)}, {run_label(member.config)}"
    return (info, "Current run") if info is not None else None


def follower(run_id: str) -> EventFollower:
    """The incremental event reader of ``run_id`` (one per run, kept across reruns)."""
    followers: dict[str, EventFollower] = st.session_state.setdefault("followers", {})
    if run_id not in followers:
        followers[run_id] = EventFollower(workspace().store.path_of(run_id))
    return followers[run_id]


def set_live_view(run_id: str | None) -> None:
    """Record that this script run's page shows ``run_id`` live (None: no live view yet).

    The page's own status fragment then notices the run's changes, so the sidebar need not poll
    it too (one rerun fewer every few seconds per watching student).
    """
    if run_id is None:
        st.session_state.pop("live_view_run", None)
    else:
        st.session_state["live_view_run"] = run_id


def live_view_run() -> str | None:
    return st.session_state.get("live_view_run")


def set_notice(text: str, kind: str = "info") -> None:
    """A message the next page shows once."""
    st.session_state["notice"] = (kind, text)


def pop_notice() -> tuple[str, str] | None:
    return st.session_state.pop("notice", None)


def comparison_group() -> list[str] | None:
    """Run ids of the comparison the Compare page shows, or None before one is chosen."""
    return st.session_state.get("compare_group")


def set_comparison_group(run_ids: list[str], follow: bool = False) -> None:
    """Show the comparison of ``run_ids``; ``follow``: it just started, so the pick follows its runs."""
    st.session_state["compare_group"] = list(run_ids)
    if follow:
        st.session_state["compare_follow_group"] = True


def prepare_comparison_pick(group_ids: list[str], finished_ids: list[str], group_active: bool) -> None:
    """Set what the "Runs to compare" multiselect (key ``compare_pick``) shows before it is drawn.

    While a comparison is followed, its finished runs (following stops once none is active); else the
    student's own pick, at first the comparison's runs or the first three. Runs gone are dropped.
    """
    available = set(finished_ids)
    in_group = [run_id for run_id in group_ids if run_id in available]
    if st.session_state.get("compare_follow_group"):
        st.session_state["compare_pick"] = in_group
        st.session_state["compare_follow_group"] = group_active
    elif "compare_pick" not in st.session_state:
        st.session_state["compare_pick"] = in_group or finished_ids[:3]
    st.session_state["compare_pick"] = [run_id for run_id in st.session_state["compare_pick"] if run_id in available]


def forget_widgets(keys: list[str] | tuple[str, ...]) -> None:
    """Drop widgets' values so that they show the choices they are built from on the next run."""
    for key in keys:
        st.session_state.pop(key, None)


def set_widgets(values: dict[str, object]) -> None:
    """Give widgets new values from a callback. Forgetting a value is not enough when the widget stays on
    the page: the browser keeps showing its old value while the script reads the new default."""
    for key, value in values.items():
        st.session_state[key] = value
