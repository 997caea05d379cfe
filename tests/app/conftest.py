"""AppTest fixtures: a private TRANSFER_HOME per test, offline, settings cache cleared."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.app_env import point_app_at
from helpers.patience import patience
from helpers.workspaces import app_environment, finished_workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh TRANSFER_HOME; the shared offline weights when they exist."""
    from ui import state

    point_app_at(tmp_path / "home", monkeypatch, weights_dir=SHARED_WEIGHTS if SHARED_WEIGHTS.exists() else None)
    state.settings.cache_clear()
    yield tmp_path / "home"
    state.settings.cache_clear()
    from transfer_core import inference

    inference.shutdown(tmp_path / "home")  # The worker the pages started (block maps, predictions).


@pytest.fixture
def app(home):
    """An AppTest of app.py that has run once (on Home)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=patience(60))
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def poll_intervals():
    """The ``run_every`` intervals the app sends to the browser (one per fragment registered)."""
    from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

    intervals: list[float] = []

    def record(msg) -> None:
        if msg.HasField("auto_rerun"):
            intervals.append(msg.auto_rerun.interval)

    ForwardMsgQueue.on_before_enqueue_msg(record)
    yield intervals
    ForwardMsgQueue.on_before_enqueue_msg(None)


@pytest.fixture(scope="session")
def finished_home(tmp_path_factory):
    """A workspace with two finished runs, trained once per test process.

    The Explore and Export page tests read it (Export adds exports beside the runs) and share one
    inference worker; tests/conftest.py keeps them on one pytest-xdist worker.
    """
    from transfer_core import inference

    finished = finished_workspace(tmp_path_factory)
    yield finished
    inference.shutdown(finished.home)


@pytest.fixture(scope="module")
def finished(finished_home):
    """The app pointed at ``finished_home`` for one module; its inference worker stays up for the next."""
    with app_environment(finished_home, stop_worker=False) as ready:
        yield ready


@pytest.fixture(scope="module")
def own_finished(tmp_path_factory):
    """A finished workspace of the module's own, for tests that start more runs in it (the Compare page)."""
    with app_environment(finished_workspace(tmp_path_factory)) as ready:
        yield ready
