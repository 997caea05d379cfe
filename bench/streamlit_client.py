"""A light Streamlit client: one app session over Streamlit's own websocket and protobuf messages, no browser.

What a browser tab does, reduced to what a load test needs (the messages are Streamlit's own
``streamlit.proto`` classes, as its tests use them):

- connects to ``ws://<host>/_stcore/stream`` (subprotocol ``streamlit``) and asks for a script run with
  a ``BackMsg.rerun_script`` (``ClientState``: query string, page script hash, widget states);
- keeps the page: every ``ForwardMsg.delta`` is stored under its delta path, and a full script run
  that finished drops the paths it did not write (as the frontend clears stale elements);
- follows navigation (``new_session.page_script_hash``: ``st.switch_page``) and the address bar
  (``page_info_changed.query_string``: ``st.query_params``), and sends both back with every rerun,
  as the browser does;
- presses a button by its label (a ``trigger_value`` widget state; a form's submit button likewise,
  the form's other widgets keeping the values the server last saw);
- runs each fragment's ``run_every`` timer (``ForwardMsg.auto_rerun``), sending ``is_auto_rerun``
  fragment reruns, cleared when a full run starts and on ``stop_auto_rerun``, as the frontend does. A
  timer fires whatever the script is doing (the server merges the requests); an earlier version held
  it back while a full run was in flight and, when a fragment rerun cut that run short, never sent again.

It does not render, upload files, or cache messages (no ``cached_message_hashes``, so the server sends
every message in full). One asyncio loop can hold dozens of sessions.

    async with StreamlitSession("http://127.0.0.1:8501") as session:
        await session.wait_for_idle()
        await session.click("Try the demo")
        print(session.texts())
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

# The first message of a session can take long on a busy server (it compiles and runs the script).
DEFAULT_TIMEOUT = 120.0
FULL_RUN_ENDS = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR}


class SessionError(RuntimeError):
    """The server closed the session, showed an exception, or a wait ran out of time."""


@dataclass
class SessionStats:
    """What one session cost and saw: messages, bytes, script runs it asked for."""

    messages: int = 0
    bytes_received: int = 0
    full_runs: int = 0
    fragment_runs: int = 0
    reruns_sent: int = 0
    auto_reruns_sent: int = 0
    exceptions: list[str] = field(default_factory=list)


class StreamlitSession:
    """One browser-like session of a running Streamlit app (see the module docstring)."""

    def __init__(self, url: str, query_string: str = "", *, page_script_hash: str = "") -> None:
        parsed = urllib.parse.urlparse(url)
        self.ws_url = f"ws://{parsed.netloc}{parsed.path.rstrip('/')}/_stcore/stream"
        self.query_string = query_string
        self.page_script_hash = page_script_hash
        self.session_id = ""
        self.stats = SessionStats()
        self._socket = None
        self._reader: asyncio.Task | None = None
        self._elements: dict[tuple[int, ...], Element] = {}
        self._written_this_run: set[tuple[int, ...]] = set()
        self._full_run_running = False  # From new_session / script_finished / session_status_changed.
        self._full_runs_finished = 0
        self._changed = asyncio.Event()
        self._timers: dict[str, asyncio.Task] = {}
        self._closed: str | None = None

    # -- connection -------------------------------------------------------------------------------

    async def __aenter__(self) -> StreamlitSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the websocket and ask for the first script run (what a new tab does)."""
        self._socket = await websockets.connect(self.ws_url, subprotocols=["streamlit"], max_size=None,
                                                open_timeout=DEFAULT_TIMEOUT, ping_interval=None)
        self._reader = asyncio.create_task(self._read())
        await self.rerun()

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader

    # -- what the page shows ----------------------------------------------------------------------

    def elements(self) -> Iterator[Element]:
        """The page's elements in delta-path order (main area, then sidebar)."""
        for path in sorted(self._elements):
            yield self._elements[path]

    def texts(self) -> list[str]:
        """Every text the page shows: headings, markdown and captions, alerts, buttons, options, progress."""
        texts = []
        for element in self.elements():
            kind = element.WhichOneof("type")
            if kind in ("heading", "markdown", "alert", "text"):
                texts.append(getattr(element, kind).body)
            elif kind == "code":
                texts.append(element.code.code_text)
            elif kind in ("button", "download_button", "page_link"):
                texts.append(getattr(element, kind).label)
            elif kind == "progress":
                texts.append(element.progress.text)
            elif kind == "selectbox":
                texts.extend([element.selectbox.label, *element.selectbox.options])
            elif kind == "exception":
                texts.append(f"{element.exception.type}: {element.exception.message}")
        return texts

    def alerts(self) -> list[str]:
        return [element.alert.body for element in self.elements() if element.WhichOneof("type") == "alert"]

    def headings(self) -> list[str]:
        return [element.heading.body for element in self.elements() if element.WhichOneof("type") == "heading"]

    def selectbox_options(self, label: str) -> list[str] | None:
        for element in self.elements():
            if element.WhichOneof("type") == "selectbox" and element.selectbox.label == label:
                return list(element.selectbox.options)
        return None

    def button(self, label: str):
        """The button proto with this label (a form's submit button included), or None."""
        for element in self.elements():
            if element.WhichOneof("type") == "button" and element.button.label == label:
                return element.button
        return None

    def query(self, name: str) -> str | None:
        values = urllib.parse.parse_qs(self.query_string).get(name)
        return values[0] if values else None

    # -- acting ----------------------------------------------------------------------------------

    async def rerun(self, widget_states=(), *, fragment_id: str = "", is_auto_rerun: bool = False) -> None:
        """Send one ``rerun_script`` with the current page and address, and ``widget_states``."""
        message = BackMsg()
        client_state = message.rerun_script
        client_state.query_string = self.query_string
        client_state.page_script_hash = self.page_script_hash
        client_state.widget_states.widgets.extend(widget_states)
        if fragment_id:
            client_state.fragment_id = fragment_id
            client_state.is_auto_rerun = is_auto_rerun
            self.stats.auto_reruns_sent += is_auto_rerun
        self.stats.reruns_sent += 1
        if self._closed:
            raise SessionError(f"session closed: {self._closed}")
        await self._socket.send(message.SerializeToString())

    async def click(self, label: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Press the button ``label`` and wait until the script runs it caused have finished."""
        button = await self.wait_for(lambda: self.button(label), timeout=timeout, what=f"button {label!r}")
        if button.disabled:
            raise SessionError(f"button {label!r} is disabled")
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        state = WidgetState(id=button.id, trigger_value=True)
        before = self._full_runs_finished
        await self.rerun([state])
        await self.wait_for(lambda: self._full_runs_finished > before and not self._full_run_running,
                            timeout=timeout, what=f"the script run after pressing {label!r}")

    async def wait_for_idle(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Until at least one full script run has finished and none is running."""
        await self.wait_for(lambda: self._full_runs_finished > 0 and not self._full_run_running,
                            timeout=timeout, what="the first script run")

    async def wait_for(self, condition, *, timeout: float = DEFAULT_TIMEOUT, what: str = "a condition"):
        """Until ``condition()`` is truthy (checked after every message); its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self._closed:
                raise SessionError(f"session closed while waiting for {what}: {self._closed}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionError(f"no {what} within {timeout:.0f} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 1.0))

    # -- messages from the server -----------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for data in self._socket:
                self.stats.messages += 1
                self.stats.bytes_received += len(data)
                message = ForwardMsg()
                message.ParseFromString(data)
                self._handle(message)
                self._changed.set()
        except websockets.ConnectionClosed as error:
            self._closed = f"connection closed ({error})"
        except Exception as error:  # Kept for the waiter, which reports it.
            self._closed = f"{type(error).__name__}: {error}"
        else:
            self._closed = "connection closed by the server"
        self._changed.set()

    def _handle(self, message: ForwardMsg) -> None:
        kind = message.WhichOneof("type")
        if kind == "new_session":
            is_fragment_run = bool(message.metadata.run.fragment_ids)
            if message.new_session.initialize.session_id:
                self.session_id = message.new_session.initialize.session_id
            if not is_fragment_run:
                self.page_script_hash = message.new_session.page_script_hash or self.page_script_hash
                self._full_run_running = True
                self._written_this_run = set()
                for timer in self._timers.values():  # A full run re-registers the fragments it keeps.
                    timer.cancel()
                self._timers.clear()
                self.stats.full_runs += 1
            else:
                self.stats.fragment_runs += 1
        elif kind == "delta":
            path = tuple(message.metadata.delta_path)
            self._written_this_run.add(path)
            delta = message.delta
            if delta.WhichOneof("type") == "new_element":
                self._elements[path] = delta.new_element
                if delta.new_element.WhichOneof("type") == "exception":
                    exception = delta.new_element.exception
                    self.stats.exceptions.append(f"{exception.type}: {exception.message}")
            else:  # A block (container) or a transient: the path holds no element of its own.
                self._elements.pop(path, None)
        elif kind == "page_info_changed":
            self.query_string = message.page_info_changed.query_string
        elif kind == "navigation":
            self.page_script_hash = message.navigation.page_script_hash or self.page_script_hash
        elif kind == "auto_rerun":
            fragment_id = message.auto_rerun.fragment_id
            if fragment_id in self._timers:
                self._timers[fragment_id].cancel()
            self._timers[fragment_id] = asyncio.create_task(
                self._auto_rerun(fragment_id, message.auto_rerun.interval))
        elif kind == "stop_auto_rerun":
            for fragment_id in message.stop_auto_rerun.fragment_ids:
                timer = self._timers.pop(fragment_id, None)
                if timer is not None:
                    timer.cancel()
        elif kind == "script_finished":
            status = message.script_finished
            if status in FULL_RUN_ENDS:
                # Elements an earlier run drew and this one did not are gone from the page.
                for path in [p for p in self._elements if p not in self._written_this_run]:
                    del self._elements[path]
                self._full_run_running = False
                self._full_runs_finished += 1
            # FINISHED_EARLY_FOR_RERUN: another run follows (st.rerun, st.switch_page, a request that
            # cut it short); the flag stays as it is until that run's messages come.
        elif kind == "session_status_changed" and not message.session_status_changed.script_is_running:
            self._full_run_running = False

    async def _auto_rerun(self, fragment_id: str, interval: float) -> None:
        """A fragment's ``run_every``: rerun it every ``interval`` s until a full run or the server stops it."""
        with contextlib.suppress(asyncio.CancelledError, SessionError, websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                await self.rerun(fragment_id=fragment_id, is_auto_rerun=True)

    def describe(self) -> dict:
        """What the page shows and where the session stands: for a report when a wait ran out."""
        return {"headings": self.headings(), "alerts": self.alerts(), "query_string": self.query_string,
                "script_running": self._full_run_running, "full_runs_finished": self._full_runs_finished,
                "fragment_timers": len(self._timers), "closed": self._closed}
