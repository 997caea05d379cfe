"""A workspace with a demo data set and finished runs, made through the core, for the page tests.

Built once per test process and shared by the Explore and Export page tests (tests/app/conftest.py):
training takes seconds, and the pages only read the runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.app_env import point_app_at
from helpers.patience import patience
from helpers.runs import make_finished_run, tiny_config
from transfer_core import compare, inference
from transfer_core.config import DatasetSpec, ModelSpec, Settings
from transfer_core.sessions.workspace import Workspace

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = str(REPO_ROOT / "app.py")
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights"
PRETRAINED_FILE = SHARED_WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


@dataclass
class FinishedWorkspace:
    home: Path
    workspace: Workspace
    dataset: DatasetSpec
    model: ModelSpec
    run_ids: list[str]  # feature extraction, fine-tuning

    @property
    def run_dirs(self) -> list[Path]:
        return [self.workspace.store.path_of(run_id) for run_id in self.run_ids]

    @property
    def pretrained(self) -> bool:
        return self.model.weights == "imagenet"

    @property
    def weights_dir(self) -> Path | None:
        """The offline weights folder the app needs for this workspace's runs (None for random weights)."""
        return SHARED_WEIGHTS if self.pretrained else None


def finished_workspace(tmp_path_factory, *, home_name: str = "home", images_per_class: int = 10,
                       image_size: int = 64, epochs: int = 3, fine_tune_epochs: int = 1, batch_size: int = 8,
                       dropout_rate: float = 0.0, name: str = "compare t1") -> FinishedWorkspace:
    """TRANSFER_HOME with one workspace, a 4-class demo set and two finished runs of one comparison group."""
    from transfer_core.data import make_demo_dataset

    home = tmp_path_factory.mktemp(home_name)
    pretrained = PRETRAINED_FILE.is_file()
    settings = Settings(home=home, weights_dir=SHARED_WEIGHTS if pretrained else None)
    workspace = Workspace.open(settings)
    dataset = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=images_per_class,
                                image_size=image_size)
    # Real weights when present (meaningful predictions and Grad-CAM), else random ones: the pages work either way.
    model = ModelSpec(input_size=image_size, weights="imagenet" if pretrained else "random", dropout_rate=dropout_rate)
    run_ids = []
    for strategy in ("feature_extraction", "fine_tuning"):
        config = tiny_config(dataset, model=model, strategy=strategy, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
                             batch_size=batch_size, name=f"{name}: {compare.STRATEGY_LABELS[strategy]}")
        run_dir, _ = make_finished_run(workspace.runs_dir, config, settings)
        run_ids.append(run_dir.name)
    return FinishedWorkspace(home, workspace, dataset, model, run_ids)


@contextlib.contextmanager
def app_environment(finished: FinishedWorkspace, *, stop_worker: bool = True) -> Iterator[FinishedWorkspace]:
    """Point the app (TRANSFER_HOME, offline weights) at a finished workspace while the block runs.

    ``stop_worker=False`` leaves the pages' inference worker running for the next block on the same workspace.
    """
    from ui import state

    with pytest.MonkeyPatch.context() as patch:
        point_app_at(finished.home, patch, weights_dir=SHARED_WEIGHTS if PRETRAINED_FILE.is_file() else None)
        state.settings.cache_clear()
        try:
            yield finished
        finally:
            state.settings.cache_clear()
            if stop_worker:
                inference.shutdown(finished.home)  # The pages' inference worker of this workspace.


def open_page(finished: FinishedWorkspace, page: str, *, active_dataset: bool = True, timeout: float = 120):
    """An AppTest on ``page`` in the finished workspace (``?ws=<id>``), with the data set and model chosen."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=patience(timeout))
    at.query_params["ws"] = finished.workspace.workspace_id
    at.run()
    assert not at.exception, at.exception
    if active_dataset:
        at.session_state["dataset_root"] = finished.dataset.root
    at.session_state["model_spec"] = finished.model
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def rerun_until(at, condition, timeout: float = 300.0):
    """Rerun an AppTest, as the page's polling fragment would, until ``condition(at)`` holds.

    A page follows an inference request from a fragment (``ui.worker_progress.await_request``);
    AppTest does not run fragments on their timer, so a test reruns the page itself, once a
    second, until the worker's answer shows. Fails with the page's text on a timeout.
    """
    from helpers.runs import wait_for

    def ready() -> bool:
        at.run()
        assert not at.exception, at.exception
        return condition(at)

    if not ready() and not wait_for(ready, timeout, interval=1.0):
        texts = [str(e.value) for e in [*at.markdown, *at.caption, *at.error]]
        raise AssertionError(f"The page did not show the answer within {timeout:.0f} s: {texts}")
    return at


def model_page_ready(at, timeout: float = 300.0):
    """Rerun the Model page until its freeze controls show: the block map is answered (or failed)."""
    return rerun_until(at, lambda page: any(r.key == "model_freeze_preset" for r in page.radio) or bool(page.error),
                       timeout)


def served(task: str) -> int:
    """How many ``task`` requests this process's inference worker ran (its worker.log, one line each)."""
    import os

    from transfer_core.inference import protocol
    from ui import state

    log = protocol.worker_dir(state.settings(), os.getpid()) / "worker.log"
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith(f"served {task} "))
