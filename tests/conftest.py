"""Shared fixtures: where the real data and weights are, and an offline, quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.datasets import tiny_dataset_in
from helpers.tiers import TensorFlowGuard, TensorFlowReach, why_tensorflow

from transfer_core.config import DatasetSpec

# Tests never download anything: weights come from the offline folder or not at all.
os.environ.setdefault("TRANSFER_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No idle standby worker per app test (each would import TensorFlow on a 2-core machine); the
# tests that are about it turn it on.
os.environ.setdefault("TRANSFER_STANDBY_WORKER", "0")
# Every EventLog (here and in the worker processes tests start) refuses an event type or field that
# transfer_core.events does not declare.
os.environ.setdefault("TRANSFER_CHECK_EVENTS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
_DEFAULT_SHARED = REPO_ROOT.parent / "shared"

# Real weights and photos from ../shared when present, for tests and the worker processes they start.
for _name, _sub in (("TRANSFER_WEIGHTS_DIR", "weights"), ("TRANSFER_TEST_DATA", "datasets")):
    if not os.environ.get(_name) and (_DEFAULT_SHARED / _sub).exists():
        os.environ[_name] = str((_DEFAULT_SHARED / _sub).resolve())


def _shared_path(env_name: str, default: Path) -> Path | None:
    value = os.environ.get(env_name)
    path = Path(value) if value else default
    return path if path.exists() else None


_GUARD = TensorFlowGuard()
_GUARDED = False


def pytest_configure(config) -> None:
    """``pytest -m fast`` runs with TensorFlow's import and worker processes blocked (tests/helpers/tiers.py)."""
    global _GUARDED
    if (config.option.markexpr or "").strip() == "fast":
        _GUARD.install()
        _GUARDED = True


def pytest_collection_finish(session) -> None:
    """A test module that imports Keras fails its own collection; its attempt is not charged to the first test."""
    if _GUARDED:
        _GUARD.attempts.clear()


@pytest.fixture(autouse=True)
def _fast_tests_stay_without_tensorflow():
    """Fails a test of the fast tier that tried to import TensorFlow or start a worker, even if it caught the error."""
    yield
    if _GUARDED:
        _GUARD.check()


@pytest.fixture(scope="session")
def shared_weights_dir() -> Path:
    """../shared/weights (or $TRANSFER_WEIGHTS_DIR); skips with a reason when absent."""
    path = _shared_path("TRANSFER_WEIGHTS_DIR", _DEFAULT_SHARED / "weights")
    if path is None:
        pytest.skip("Real ImageNet weights not found: set TRANSFER_WEIGHTS_DIR to ../shared/weights.")
    return path


@pytest.fixture(scope="session")
def shared_datasets_dir() -> Path:
    """../shared/datasets (or $TRANSFER_TEST_DATA); skips with a reason when absent."""
    path = _shared_path("TRANSFER_TEST_DATA", _DEFAULT_SHARED / "datasets")
    if path is None:
        pytest.skip("Real test data not found: set TRANSFER_TEST_DATA to ../shared/datasets.")
    return path


@pytest.fixture(scope="session")
def hymenoptera_dir(shared_datasets_dir: Path) -> Path:
    path = shared_datasets_dir / "hymenoptera_data"
    if not path.exists():
        pytest.skip(f"{path} is missing.")
    return path


@pytest.fixture(scope="session")
def shared_images_dir() -> Path:
    path = _DEFAULT_SHARED / "images"
    if not path.exists():
        pytest.skip(f"{path} is missing.")
    return path


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> DatasetSpec:
    """The demo shapes at 12 images per class, 32x32, once per module.

    A module that needs other sizes overrides it with ``tiny_dataset_in(tmp_path_factory, images_per_class=...)``.
    """
    return tiny_dataset_in(tmp_path_factory)


@pytest.hookimpl(tryfirst=True)  # Before pytest-xdist reads the groups (``--dist loadgroup``, see pyproject).
def pytest_collection_modifyitems(config, items) -> None:
    """Which tests share a pytest-xdist worker: the suite runs on two (``-n 2``).

    - A module's tests stay together, so its module-scoped fixtures (real training runs) are built once.
    - Every test that starts a Ray head runs in one worker: two local Ray clusters on one machine can
      pick the same ports.
    - The page tests that read the session's finished workspace run in one worker, which trains it once.
    - The browser tests run one at a time: each drives a Streamlit server, Chromium and training
      workers, and two of them at once would only wait on each other's CPU.
    """
    reach = TensorFlowReach()
    for item in items:
        reason = why_tensorflow(item, reach)
        item.add_marker(pytest.mark.tf(reason) if reason else pytest.mark.fast)
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if "ray_address" in getattr(item, "fixturenames", ()):
            group = "ray"
        elif "finished_home" in getattr(item, "fixturenames", ()):
            group = "finished-workspace"  # One trained workspace and one inference worker (tests/app/conftest.py).
        elif item.get_closest_marker("browser") is not None:
            group = "browser"
        else:
            group = item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
