"""Session state of the app, in one place, so pages stay thin and agree on keys.

Keys in ``st.session_state``:
- ``workspace``: the session's :class:`transfer_core.workspace.Workspace`
  (its id is also kept in the URL as ``?ws=...`` so a reload keeps the data).
- ``dataset_root``: folder of the active data set (str) or absent.
- ``run_id``: the run the Train page follows / shows, or absent.
- ``model_spec``, ``freeze_plan``: the Model page's choices (config dataclasses).
"""

from __future__ import annotations

from functools import lru_cache

import streamlit as st

from transfer_core.config import DatasetSpec, FreezePlan, ModelSpec, Settings
from transfer_core.workspace import Workspace


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Operator settings, read once per server process."""
    return Settings.from_env()


def workspace() -> Workspace:
    """This session's workspace; created on first use and remembered in the URL."""
    if "workspace" not in st.session_state:
        ws = Workspace.open(settings(), st.query_params.get("ws"))
        st.session_state["workspace"] = ws
    ws = st.session_state["workspace"]
    if st.query_params.get("ws") != ws.workspace_id:
        st.query_params["ws"] = ws.workspace_id
    return ws


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


def model_spec() -> ModelSpec:
    return st.session_state.get("model_spec") or ModelSpec()


def freeze_plan() -> FreezePlan:
    return st.session_state.get("freeze_plan") or FreezePlan()


def active_run_id() -> str | None:
    return st.session_state.get("run_id")


def set_active_run(run_id: str | None) -> None:
    if run_id is None:
        st.session_state.pop("run_id", None)
    else:
        st.session_state["run_id"] = run_id
