"""Following a live run from a page: the one way Train and Compare both do it.

A page's full run polls the run and remembers what it drew (:func:`remember_drawn`); the page's
polling fragment then reads the new events, enforces an overdue stop and compares what it sees
with what the page drew (:func:`poll`), asking for a full rerun only when that is worth it.
Events are read incrementally by the run's :class:`transfer_core.live.EventFollower`, kept in
session state (``ui.state.follower``). No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import streamlit as st

from transfer_core import jobs
from transfer_core.live import EventFollower, LiveSnapshot
from ui import state

_DRAWN_KEY = "live_drawn"  # run id -> the LiveSnapshot the page's last full run drew.


@dataclass(frozen=True)
class LivePoll:
    """One poll of a run from a fragment."""

    follower: EventFollower
    current: LiveSnapshot  # What the run looks like now.
    drawn: LiveSnapshot | None  # What the page's last full run drew (None: it has not drawn this run).


def remember_drawn(run_id: str, ended_as: str | None) -> LiveSnapshot:
    """Poll ``run_id`` in the page's full run and remember the snapshot the page now draws.

    Args:
        run_id: A run the page shows as active.
        ended_as: The status to record when the run ended between the page's load and this poll
            (the page drew it as active), so that the fragment's first poll sees the change and
            asks for the full rerun that shows the results; None for a run the page drew as ended.

    Returns:
        The snapshot remembered.
    """
    follower = state.follower(run_id)
    follower.poll()
    drawn = follower.snapshot()
    if drawn.status == "ended" and ended_as is not None:
        drawn = dataclasses.replace(drawn, status=ended_as)
    st.session_state.setdefault(_DRAWN_KEY, {})[run_id] = drawn
    return drawn


def poll(run_id: str) -> LivePoll:
    """One poll from a fragment: the run's new events, its stop enforced when overdue, and both snapshots."""
    follower = state.follower(run_id)
    follower.poll()
    jobs.enforce_stop(follower.run_dir)
    return LivePoll(follower, follower.snapshot(), st.session_state.get(_DRAWN_KEY, {}).get(run_id))
