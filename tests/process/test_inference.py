"""The inference worker: a real worker process per test module, requests as files, results as plain data."""

from __future__ import annotations

import io
import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.runs import wait_for
from PIL import Image

from transfer_core import inference
from transfer_core.config import Settings
from transfer_core.freezing import blockmap
from transfer_core.inference import protocol
from transfer_core.processes import process_alive

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    home = tmp_path_factory.mktemp("inference-home")
    settings = Settings(home=home)
    yield settings
    inference.shutdown(home)


def _png(colour: tuple[int, int, int], size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _wait(condition, timeout: float = 60.0) -> bool:
    return wait_for(condition, timeout, interval=0.05)


def test_a_block_map_is_computed_once_by_the_worker_then_read_from_its_file(settings):
    progress = []
    tensorflow_before = "tensorflow" in sys.modules  # Earlier tests in the same session may have loaded it.
    blocks = inference.block_map(settings, "mobilenet_v2_0.35", 32, on_progress=progress.append)
    assert ("tensorflow" in sys.modules) == tensorflow_before  # This process only read the answer.
    path = blockmap.block_map_path(settings.home, "mobilenet_v2_0.35", 32)
    assert path.is_file() and blocks.block_names[0] == "stem" and blocks.feature_dim == 1280
    assert progress and all(isinstance(p, inference.Progress) for p in progress)
    pid = inference.worker_pid(settings)
    assert pid is not None
    inference.shutdown(settings.home)
    assert not process_alive(pid, None)
    assert inference.worker_pid(settings) is None
    again = inference.block_map(settings, "mobilenet_v2_0.35", 32)  # From the file: no worker needed.
    assert inference.worker_pid(settings) is None
    assert again.block_names == blocks.block_names and again.backbone_params == blocks.backbone_params


def test_a_task_error_comes_back_as_itself(settings):
    with pytest.raises(ValueError, match="Unknown backbone"):
        inference.call(settings, "block_map", settings, "no_such_backbone", 32)
    with pytest.raises(KeyError):
        inference.call(settings, "no_such_task")


def test_concurrent_sessions_get_their_own_results(settings):
    requests = {"mobilenet_v2_0.35": _png((250, 10, 10)), "resnet50": _png((10, 10, 250)),
                "mobilenet": _png((10, 250, 10))}
    answers: dict[str, object] = {}

    def ask(backbone: str) -> None:
        answers[backbone] = inference.model_view(settings, requests[backbone], backbone, 32)

    threads = [threading.Thread(target=ask, args=(key,)) for key in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(answers) == set(requests)
    for backbone, view in answers.items():
        assert view.resized.shape == (32, 32, 3) and view.resized.dtype == np.uint8  # Plain arrays.
        expected_channel = {"mobilenet_v2_0.35": 0, "resnet50": 2, "mobilenet": 1}[backbone]
        assert int(np.argmax(view.resized.reshape(-1, 3).mean(axis=0))) == expected_channel
    assert "caffe" in answers["resnet50"].description or "BGR" in answers["resnet50"].description
    for backbone, picture in requests.items():  # Kept on disk for a rerun, a reload or another tab.
        done = inference.peek(settings, "model_view", picture, backbone, 32)
        assert isinstance(done, inference.Done) and done.result().description == answers[backbone].description


def _served(settings, key: str) -> int:
    """How many times the worker ran the request ``key`` (one line per request served in worker.log)."""
    log = protocol.worker_dir(settings, os.getpid()) / "worker.log"
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith("served ") and key in line)


def test_a_request_asked_again_while_it_runs_or_after_is_run_once(settings):
    """A rerun, a reload or another tab asks with the same inputs: it follows the first request."""
    picture = _png((120, 30, 200), size=64)
    first = inference.request(settings, "model_view", picture, "resnet50", 64)
    assert isinstance(first, (inference.Pending, inference.Done))
    # Asked again at once (a reload mid-wait) and from three threads (tabs): still one request.
    threads = [threading.Thread(target=inference.request, args=(settings, "model_view", picture, "resnet50", 64))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _wait(lambda: isinstance(inference.peek(settings, "model_view", picture, "resnet50", 64),
                                    inference.Done), timeout=120)
    done = inference.request(settings, "model_view", picture, "resnet50", 64)  # Asked after it ended.
    assert isinstance(done, inference.Done) and done.key == first.key
    assert done.result().resized.shape == (64, 64, 3)
    assert _served(settings, first.key) == 1
    assert inference.peek(settings, "model_view", picture, "resnet50", 96) is None  # Other inputs: never asked.


def test_ask_shows_a_failure_on_every_rerun_and_a_click_asks_again(settings):
    """What a page shows without a click is asked once (``ask``); a click (``request``) retries a failure."""
    args = (settings, "no_such_backbone_either", 32)
    first = inference.ask(settings, "block_map", *args)
    assert _wait(lambda: isinstance(inference.peek(settings, "block_map", *args), inference.Done), timeout=120)
    for _ in range(3):  # Reruns, reloads, tabs.
        failed = inference.ask(settings, "block_map", *args)
        assert isinstance(failed, inference.Done) and not failed.ok and failed.key == first.key
    with pytest.raises(ValueError, match="Unknown backbone"):
        failed.result()
    assert _served(settings, first.key) == 1
    inference.request(settings, "block_map", *args)  # A click asks again.
    assert _wait(lambda: _served(settings, first.key) == 2, timeout=120)


def test_a_worker_that_dies_is_restarted_once_then_reported(settings):
    directory = protocol.worker_dir(settings, os.getpid())
    kills = []

    def kill_while_running(times: int) -> None:
        for _ in range(times):
            # A worker not yet killed that has claimed the request: right after a kill the dead worker's
            # claim is still in running/ until the client notices, and that must not count as a second crash.
            def claimed_by_a_new_worker() -> bool:
                pid = inference.worker_pid(settings)
                return pid is not None and pid not in kills and any((directory / "running").glob("*.pkl"))

            if not _wait(claimed_by_a_new_worker, timeout=120):
                return
            pid = inference.worker_pid(settings)
            if pid is not None:
                os.killpg(pid, signal.SIGKILL)
                kills.append(pid)
                _wait(lambda p=pid: not process_alive(p, None), timeout=10)

    # Building ResNet50 for its block map takes seconds: time enough to kill the worker mid-request.
    inference.ensure_worker(settings)
    killer = threading.Thread(target=kill_while_running, args=(1,))
    killer.start()
    blocks = inference.call(settings, "block_map", settings, "resnet50", 96)  # Survives one crash.
    killer.join()
    assert len(kills) == 1 and blocks.input_size == 96
    killer = threading.Thread(target=kill_while_running, args=(2,))
    killer.start()
    with pytest.raises(inference.InferenceWorkerDied, match="ended while computing 'block_map'"):
        inference.call(settings, "block_map", settings, "resnet50", 128)
    killer.join()
    assert len(kills) == 3


def test_a_request_past_its_timeout_is_withdrawn(settings):
    inference.shutdown(settings.home)  # The next worker needs seconds to import TensorFlow.
    with pytest.raises(inference.InferenceTimeout):
        inference.call(settings, "model_view", _png((1, 2, 3)), "mobilenet_v2_0.35", 32, timeout=0.2)
    directory = protocol.worker_dir(settings, os.getpid())
    assert not any((directory / "requests").glob("*.pkl"))


def test_the_worker_retires_when_idle(tmp_path):
    settings = Settings(home=tmp_path)
    pid = inference.ensure_worker(settings, idle_seconds=0.5)
    assert _wait(lambda: not process_alive(pid, None), timeout=120)
    assert inference.worker_pid(settings) is None


def test_the_worker_retires_when_the_process_that_started_it_ends(tmp_path):
    script = ("import sys; from transfer_core import inference; from transfer_core.config import Settings; "
              "print(inference.ensure_worker(Settings(home=sys.argv[1])))")
    started = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                             cwd=REPO_ROOT, check=True, timeout=60)
    pid = int(started.stdout.strip())
    assert _wait(lambda: not process_alive(pid, None), timeout=120)


def test_payloads_only_build_plain_data(tmp_path):
    path = tmp_path / "payload.pkl"
    protocol.write_pickle(path, {"frame": np.arange(3), "text": "ok"})
    assert protocol.read_pickle(path)["text"] == "ok"
    path.write_bytes(pickle.dumps(subprocess.Popen))  # A class outside the allowed modules.
    with pytest.raises(pickle.UnpicklingError, match="Refusing"):
        protocol.read_pickle(path)
