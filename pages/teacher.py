"""Class view (teacher only): every session's finished runs on this server, and one run's curves."""

import streamlit as st

from transfer_core import jobs
from transfer_core.display.run_charts import accuracy_vs_parameters_figure, epoch_metric_figure
from transfer_core.sessions import classroom
from ui import assignments_view, state

# app.py lists this page only for a session that showed the teacher token; never render it otherwise.
if not st.session_state.get("teacher_view"):
    st.stop()

st.title("Class view")
st.caption(
    "Finished runs of every session on this server, read from their run folders. Students choose their "
    "nickname on the Home page; they cannot see this page or each other's runs."
)
st.button("Refresh", key="teacher_refresh", icon=":material/refresh:")
with st.expander("Training queue: how many runs at once"):
    st.markdown(classroom.capacity_text(jobs.queue_capacity(state.settings()), state.settings()))

assignments_view.teacher_section()
st.subheader("Every finished run")
runs = classroom.class_runs(state.settings())
if not runs:
    st.info("No finished runs yet. They appear here as soon as a student's run finishes.")
    st.stop()

table = classroom.class_table(runs)
sessions = table["workspace_id"].nunique()
st.markdown(f"**{len(runs)} finished run{'s' if len(runs) != 1 else ''}** from {sessions} "
            f"session{'s' if sessions != 1 else ''}.")
# The run id is in the picker below; a test column only when some data set has a test split.
shown = table.drop(columns=["workspace_id", "run_id"])
if shown["test_accuracy"].isna().all():
    shown = shown.drop(columns=["test_accuracy"])
st.dataframe(
    shown,
    key="teacher_table",
    hide_index=True,
    width="stretch",
    column_config={
        "nickname": st.column_config.TextColumn("Nickname"),
        "dataset": st.column_config.TextColumn("Data set"),
        "backbone": st.column_config.TextColumn("Backbone"),
        "strategy": st.column_config.TextColumn("Strategy"),
        "freeze_plan": st.column_config.TextColumn("Freeze plan"),
        "val_accuracy": st.column_config.NumberColumn("Val. accuracy", format="percent"),
        "test_accuracy": st.column_config.NumberColumn("Test accuracy", format="percent", width="small"),
        "seconds": st.column_config.NumberColumn("Time (s)", format="%.1f", width="small"),
        "trainable_params": st.column_config.NumberColumn("Trainable params", format="localized"),
    },
)
st.plotly_chart(accuracy_vs_parameters_figure(table), key="teacher_accuracy_chart", width="stretch")

st.subheader("One run's curves")
index = st.selectbox(
    "Run",
    options=range(len(runs)),
    format_func=lambda i: f"{table['nickname'][i]} · {table['strategy'][i]} · {table['backbone'][i]} · "
    f"{table['run_id'][i]}",
    key="teacher_run",
)
curves = classroom.run_curves(runs[index])
if curves.empty:
    st.warning("This run's per-epoch metrics cannot be read any more.")
else:
    loss, accuracy = st.columns(2)
    loss.plotly_chart(epoch_metric_figure(curves, "loss"), key="teacher_loss_chart", width="stretch")
    accuracy.plotly_chart(epoch_metric_figure(curves, "accuracy"), key="teacher_accuracy_curve",
                          width="stretch")
