"""Transfer Lab: the router. Page config, navigation over pages/, and the sidebar status.

Run with ``streamlit run app.py``. Nothing here imports TensorFlow, so the first
screen appears quickly; pages import what they need when they need it.
"""

from __future__ import annotations

import streamlit as st

from transfer_core.sessions.classroom import teacher_token_matches
from ui import state
from ui.widgets import sidebar_status_slot

st.set_page_config(page_title="Transfer Lab", page_icon=":material/school:", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/photo_library:"),
    st.Page("pages/model.py", title="Model", icon=":material/account_tree:"),
    st.Page("pages/train.py", title="Train", icon=":material/monitoring:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/explore.py", title="Explore", icon=":material/search:"),
    st.Page("pages/export.py", title="Export", icon=":material/download:"),
]

# The class view exists only for a session that opened the app with ?teacher=<TRANSFER_TEACHER_TOKEN>.
if teacher_token_matches(state.settings(), st.query_params.get("teacher")):
    st.session_state["teacher_view"] = True
    del st.query_params["teacher"]  # Remembered in the session; not left in the address bar.
if st.session_state.get("teacher_view"):
    PAGES.append(st.Page("pages/teacher.py", title="Class view", icon=":material/groups:"))

state.start_standby()  # Explicit: reading the settings starts no process.
state.prepare_demo()  # The demo data set's template, once per server, in the background.
page = st.navigation(PAGES)
state.workspace()  # Create (or reopen from ?ws=) this session's workspace before any page runs.
# The sidebar shows the state after the page's action: drawn before the page (what stays if the
# page stops early), redrawn when the page changes a choice, and drawn last after the page.
draw_sidebar = sidebar_status_slot()
draw_sidebar(False)
state.on_choices_changed(draw_sidebar)
state.set_live_view(None)  # The page sets it again if it shows a run live.
try:
    page.run()
finally:
    state.on_choices_changed(None)
draw_sidebar(True)
