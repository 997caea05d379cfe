"""Class assignments on the pages: the teacher's publish form and leaderboard, a student's card on Home.

The logic (publishing, copying the public data, scores and ranks) is in
``transfer_core.sessions.assignments`` and ``transfer_core.sessions.leaderboard``; this module only draws.
A student's card shows their own scores and rank; the leaderboard is drawn only in the class view.
"""

from __future__ import annotations

import streamlit as st

from transfer_core import zoo
from transfer_core.config import ModelSpec
from transfer_core.data import DataError, load_dataset
from transfer_core.display.views import dataset_name
from transfer_core.sessions import assignments, leaderboard
from ui import state

SORT_NAMES = {"score": "Score (best first)", "trainable_params": "Trainable parameters (fewest first)",
              "seconds": "Time (fastest first)", "nickname": "Nickname"}


def teacher_section() -> None:
    """The class view's assignments: publish one from the teacher's data sets, then its leaderboard."""
    settings = state.settings()
    st.subheader("Assignments")
    with st.expander("Publish an assignment", expanded=not assignments.list_assignments(settings)):
        _publish_form()
    published = assignments.list_assignments(settings)
    if not published:
        st.caption("No assignment yet. Students see a published one on their Home page.")
        return
    by_id = {a.assignment_id: a for a in published}
    chosen = st.selectbox("Assignment", list(by_id), format_func=lambda i: by_id[i].title, key="assignment_pick")
    assignment = by_id[chosen]
    st.caption(f"{assignment.public_images} images for students, {assignment.hidden_images} held out as the "
               f"hidden test split · limits: {assignment.limits.describe()}")
    sort_by = st.selectbox("Sort by", list(SORT_NAMES), format_func=SORT_NAMES.get, key="assignment_sort")
    board = leaderboard.leaderboard(settings, chosen, sort_by)
    if board.empty:
        st.info("No ranked run yet: each finished run on this assignment's data is scored on the hidden test "
                "images and appears here.")
    else:
        st.dataframe(board.drop(columns=["run_id"]), key="assignment_leaderboard", hide_index=True,
                     width="stretch", column_config={
                         "rank": st.column_config.NumberColumn("Rank", width="small"),
                         "nickname": "Nickname",
                         "score": st.column_config.NumberColumn("Hidden test accuracy", format="percent"),
                         "strategy": "Strategy",
                         "backbone": "Backbone",
                         "trainable_params": st.column_config.NumberColumn("Trainable params", format="localized"),
                         "seconds": st.column_config.NumberColumn("Time (s)", format="%.1f"),
                         "runs": st.column_config.NumberColumn("Ranked runs", width="small"),
                     })
    unranked = leaderboard.unranked_runs(settings, chosen)
    if not unranked.empty:
        st.markdown(f"**Not ranked: {len(unranked)} run(s) broke a limit**")
        st.dataframe(unranked.drop(columns=["run_id"]), key="assignment_unranked", hide_index=True, width="stretch",
                     column_config={"score": st.column_config.NumberColumn("Hidden test accuracy", format="percent"),
                                    "broken_limits": "Why not ranked"})
    if st.button("Withdraw this assignment", key="assignment_withdraw"):
        assignments.withdraw_assignment(settings, chosen)
        st.rerun()


def _publish_form() -> None:
    settings = state.settings()
    folders = state.workspace().dataset_dirs()
    if not folders:
        st.info("Make or upload a data set on the Data page first (in this session): an assignment is published "
                "from one of your data sets.")
        return
    with st.form("assignment_form"):
        folder = st.selectbox("Data set", folders, format_func=lambda p: dataset_name(p), key="assignment_dataset")
        title = st.text_input("Title", max_chars=assignments.MAX_TITLE_LENGTH, key="assignment_title")
        instructions = st.text_area("Instructions", max_chars=assignments.MAX_INSTRUCTIONS_LENGTH,
                                    key="assignment_instructions")
        hidden_share = st.slider("Hidden test split (share of each class, never shown to students)", 0.1, 0.5, 0.2,
                                 0.05, key="assignment_hidden_share")
        allowed = st.multiselect("Backbones allowed (none chosen: any)", list(zoo.BACKBONES),
                                 key="assignment_backbones")
        params_col, time_col = st.columns(2)
        max_params = params_col.number_input("Most trainable parameters (0: no limit)", 0, 10**9, 0, step=1000,
                                             key="assignment_max_params")
        budget = time_col.number_input("Time budget per run in seconds (0: none)", 0, 24 * 3600, 0,
                                       key="assignment_time_budget")
        submitted = st.form_submit_button("Publish", type="primary", key="assignment_publish")
    if not submitted:
        return
    try:
        limits = assignments.AssignmentLimits(tuple(allowed), int(max_params) or None, float(budget) or None)
        published = assignments.publish_assignment(settings, load_dataset(folder), title, instructions, limits,
                                                   hidden_fraction=float(hidden_share))
    except (ValueError, DataError, OSError) as error:
        st.error(f"Cannot publish: {error}")
        return
    st.success(f"Published “{published.title}”: {published.public_images} images for students, "
               f"{published.hidden_images} held out as the hidden test split.")


def student_section() -> None:
    """Home: each published assignment, a one-click start, and this student's own scores and rank."""
    settings = state.settings()
    if not settings.teacher_token:
        return  # No class view on this server: nobody publishes, nothing to show.
    published = assignments.list_assignments(settings)
    if not published:
        return
    st.divider()
    st.subheader("Class assignments")
    workspace = state.workspace()
    for assignment in published:
        with st.container(border=True):
            st.markdown(f"**{assignment.title}**")
            if assignment.instructions:
                st.markdown(assignment.instructions)
            st.caption(f"Classes: {', '.join(assignment.class_names)} · limits: {assignment.limits.describe()} · "
                       "every finished run on its data is scored on hidden test images you never see.")
            if st.button("Start from its data", key=f"assignment_start_{assignment.assignment_id}", type="primary"):
                _start(assignment)
            _own_standing(leaderboard.standing(settings, assignment.assignment_id, workspace.workspace_id))


def _start(assignment: assignments.Assignment) -> None:
    settings = state.settings()
    workspace = state.workspace()
    try:
        workspace.check_quota(settings)
        spec = assignments.start_assignment(settings, assignment, workspace.datasets_dir)
    except (OSError, DataError, ValueError) as error:
        st.error(f"Cannot start: {error}")
        return
    state.set_active_dataset(spec)
    model = state.model_spec()
    allowed = assignment.limits.backbones
    note = ""
    if allowed and model.backbone not in allowed:
        state.set_model_spec(ModelSpec(backbone=allowed[0], weights=model.weights, head=model.head,
                                       dropout_rate=model.dropout_rate, hidden_units=model.hidden_units))
        note = f" The backbone is now {allowed[0]}, one this assignment allows."
    state.set_notice(f"“{assignment.title}”: its data is your active data set.{note} Press **Start training**; "
                     "your score appears on Home when the run finishes.", "success")
    st.switch_page("pages/train.py")


def _own_standing(mine: leaderboard.Standing) -> None:
    if not mine.own_scores:
        return
    if mine.best is not None:
        st.markdown(f"Your best: **{mine.best.accuracy:.1%}** on {mine.best.num_images} hidden test images · "
                    f"**rank {mine.rank} of {mine.students_ranked}**")
    else:
        st.markdown("None of your runs is ranked yet.")
    rows = [{"run": s.run_id, "score": s.accuracy, "backbone": s.backbone, "strategy": s.strategy,
             "ranked": "yes" if s.ranked else "no: " + "; ".join(s.broken_limits)} for s in mine.own_scores]
    st.dataframe(rows, hide_index=True, width="stretch", key=f"assignment_own_{mine.own_scores[0].assignment_id}",
                 column_config={"run": "Run", "backbone": "Backbone", "strategy": "Strategy", "ranked": "Ranked",
                                "score": st.column_config.NumberColumn("Hidden test accuracy", format="percent")})


def train_notice(dataset_root: str, backbone: str) -> None:
    """Train: when the active data set is an assignment's, say so and what would keep a run off the
    leaderboard, before Start (the backbone is known now; parameters and time once it has run)."""
    settings = state.settings()
    assignment_id = assignments.assignment_of_dataset(dataset_root)
    assignment = assignments.load_assignment(settings, assignment_id) if assignment_id else None
    if assignment is None:
        return
    known_now = assignment.limits.breaches(backbone, None, None)
    if known_now:
        st.warning(f"“{assignment.title}”: a run with these settings will not be ranked: {'; '.join(known_now)}. "
                   "Change the backbone on the Model page.", icon=":material/rule:")
    else:
        st.caption(f"“{assignment.title}”: each finished run is scored on its hidden test images · limits: "
                   f"{assignment.limits.describe()}.")

