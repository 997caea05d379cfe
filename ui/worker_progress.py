"""Follow an inference request from a page: its progress while pending, then its answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from transfer_core.inference import Done, Pending

# How often a page looks at a request it is waiting for; each look reads one or two small files.
REQUEST_POLL_SECONDS = 1.0


def await_request(text: str, check: Callable[[], Pending | Done | None]) -> Done | None:
    """Follow an inference request from a fragment, so no rerun, reload or new tab loses it.

    Args:
        text: What the worker does, shown with its progress while the request is pending.
        check: Looks the request up by its inputs (an ``inference.*_request(..., submit=False)``).

    Returns:
        The answer once the worker has given it (a full rerun shows it), else None: never
        asked, or pending (then a fragment polls it every :data:`REQUEST_POLL_SECONDS`).
    """
    outcome = check()
    if not isinstance(outcome, Pending):
        return outcome

    @st.fragment(run_every=REQUEST_POLL_SECONDS)
    def follow() -> None:
        now = check()
        if not isinstance(now, Pending):
            st.rerun()  # The whole page, which now shows the answer and stops this polling.
        progress = now.progress
        if progress.fraction is None:
            st.caption(f":material/hourglass_top: {text} {progress.text}")
        else:
            st.progress(min(max(float(progress.fraction), 0.0), 1.0), text=f"{text} {progress.text}")

    follow()
    return None


def await_result(text: str, check: Callable[[], Pending | Done | None], failure: str) -> Any:
    """:func:`await_request`, then the answer's value; None while pending, never asked, or failed.

    A failure is shown as ``failure: <what the task raised>``.
    """
    answer = await_request(text, check)
    if answer is None:
        return None
    try:
        return answer.result()
    except Exception as error:  # noqa: BLE001 - shown to the person, not raised.
        st.error(f"{failure}: {error}")
        return None
