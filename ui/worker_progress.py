"""Show what the inference worker is doing while a page waits for it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import streamlit as st

from transfer_core.inference import Progress


@contextlib.contextmanager
def worker_progress(text: str) -> Iterator[Callable[[Progress], None]]:
    """A spinner with ``text`` and a line (or bar) below it that follows the worker's progress reports.

    Yields the ``on_progress`` callback to hand to a ``transfer_core.inference`` call.
    """
    with st.spinner(text):
        line = st.empty()

        def show(progress: Progress) -> None:
            if progress.fraction is None:
                line.caption(progress.text)
            else:
                line.progress(min(max(float(progress.fraction), 0.0), 1.0), text=progress.text)

        try:
            yield show
        finally:
            line.empty()
