"""The standby worker: a process with TensorFlow already imported that becomes the next run's worker."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess

import pytest
from helpers.models import TINY_MODEL_DEFAULT_DROPOUT as TINY_MODEL
from helpers.runs import wait_for

from transfer_core import jobs
from transfer_core.config import DatasetSpec, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.runs import load_run, read_pid

pytestmark = pytest.mark.slow  # Standbys and workers are real processes that import TensorFlow.


@pytest.fixture
def settings(tmp_path):
    settings = Settings(home=tmp_path / "home", standby_worker=True)
    yield settings
    jobs.shutdown_standby(settings)


def _config(spec) -> RunConfig:
    return RunConfig(dataset=spec, model=TINY_MODEL, train=TrainConfig(epochs=2, batch_size=8))


def _standbys(settings: Settings, state: str) -> list[int]:
    return [pid for _, pid in jobs.standby_entries(jobs.standby_dir(settings), jobs.standby_key(settings), state)]


def test_a_ready_standby_trains_the_next_run_and_its_successor_starts_after_the_run(tiny_dataset, settings,
                                                                                    tmp_path):
    jobs.ensure_standby(settings)
    jobs.ensure_standby(settings)  # At most one standby per settings.
    assert len(_standbys(settings, "warming") + _standbys(settings, "ready")) == 1
    assert wait_for(lambda: len(_standbys(settings, "ready")) == 1), "the standby never became ready"
    [standby_pid] = _standbys(settings, "ready")

    run_dir = jobs.start_run(_config(tiny_dataset), runs_dir=tmp_path / "runs", settings=settings)
    assert read_pid(run_dir)[0] == standby_pid
    # While the run trains, no second process imports TensorFlow next to it.
    assert _standbys(settings, "warming") == [] and _standbys(settings, "ready") == []
    seen = []
    assert jobs.follow(run_dir, seen.append, timeout=120) == "finished", load_run(run_dir).reason
    assert (run_dir / "model.keras").exists()
    assert seen[0]["type"] == "starting"  # The queue and slot logic ran as for any worker.
    # The worker's output went to the run's own log.
    assert (run_dir / "worker.log").exists()

    # When the run has ended, its worker starts the next standby.
    assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
    assert _standbys(settings, "ready") != [standby_pid]
    second = jobs.start_run(_config(tiny_dataset), runs_dir=tmp_path / "runs", settings=settings)
    assert read_pid(second)[0] != standby_pid
    assert jobs.follow(second, timeout=120) == "finished"


def test_a_standby_only_serves_runs_with_its_settings(tiny_dataset, settings, tmp_path):
    jobs.ensure_standby(settings)
    assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
    other = dataclasses.replace(settings, max_upload_mb=settings.max_upload_mb + 1)
    assert jobs.claim_standby(other) is None
    run_dir = jobs.start_run(_config(tiny_dataset), runs_dir=tmp_path / "runs", settings=other)
    assert read_pid(run_dir)[0] not in _standbys(settings, "ready")
    assert len(_standbys(settings, "ready")) == 1  # Still waiting for a run of its own settings.
    assert jobs.follow(run_dir, timeout=120) == "finished"
    jobs.shutdown_standby(other)


def test_a_standby_retires_when_the_server_that_owns_it_is_gone(settings, monkeypatch):
    owner = subprocess.Popen(["sleep", "600"])
    monkeypatch.setenv(jobs.STANDBY_OWNER_ENV, str(owner.pid))
    jobs.ensure_standby(settings)
    assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
    [pid] = _standbys(settings, "ready")
    owner.kill()
    owner.wait()
    assert wait_for(lambda: _standbys(settings, "ready") == [], 30)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30)  # Exited (and reaped).


def test_a_standby_retires_when_its_home_is_deleted(settings):
    jobs.ensure_standby(settings)
    assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
    [pid] = _standbys(settings, "ready")
    shutil.rmtree(settings.home)  # A test's or a benchmark's temporary home; its server may live on.
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30)


def test_without_the_setting_no_standby_is_started(tiny_dataset, tmp_path):
    settings = Settings(home=tmp_path / "home")
    run_dir = jobs.start_run(_config(tiny_dataset), runs_dir=tmp_path / "runs", settings=settings)
    assert jobs.follow(run_dir, timeout=120) == "finished"
    assert not (tmp_path / "home" / "standby").exists()


def test_a_killed_standby_is_never_handed_a_run(tiny_dataset, settings, tmp_path):
    import signal

    jobs.ensure_standby(settings)
    assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
    [pid] = _standbys(settings, "ready")
    os.killpg(pid, signal.SIGKILL)
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 30)
    run_dir = jobs.start_run(_config(tiny_dataset), runs_dir=tmp_path / "runs", settings=settings)
    assert read_pid(run_dir)[0] != pid  # A fresh worker instead.
    assert jobs.follow(run_dir, timeout=120) == "finished"


def test_a_standby_killed_after_it_was_handed_a_run_shows_the_run_interrupted(tiny_dataset, settings, tmp_path):
    import signal

    jobs.ensure_standby(settings)
    assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
    config = RunConfig(dataset=tiny_dataset, model=TINY_MODEL, train=TrainConfig(epochs=200, batch_size=8))
    run_dir = jobs.start_run(config, runs_dir=tmp_path / "runs", settings=settings)
    assert wait_for(lambda: load_run(run_dir).status == "running")
    os.killpg(read_pid(run_dir)[0], signal.SIGKILL)
    assert jobs.follow(run_dir, timeout=60) == "interrupted"


def test_after_a_feature_extraction_run_the_next_standby_prebuilds_its_backbone(tiny_dataset, tmp_path,
                                                                               shared_weights_dir):
    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir, standby_worker=True)
    model = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="imagenet")
    first = RunConfig(dataset=tiny_dataset, model=model, train=TrainConfig(epochs=2, batch_size=8))
    try:
        jobs.ensure_standby(settings)
        assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
        run_dir = jobs.start_run(first, runs_dir=tmp_path / "runs", settings=settings)
        assert jobs.follow(run_dir, timeout=120) == "finished", load_run(run_dir).reason
        assert load_run(run_dir).report.reused_backbone is False  # Nothing was built before it.

        # Its successor builds the same backbone while it waits; another head on it reuses that.
        assert wait_for(lambda: len(_standbys(settings, "ready")) == 1)
        second = dataclasses.replace(first, model=dataclasses.replace(model, hidden_units=16))
        run_dir = jobs.start_run(second, runs_dir=tmp_path / "runs", settings=settings)
        assert jobs.follow(run_dir, timeout=120) == "finished", load_run(run_dir).reason
        report = load_run(run_dir).report
        assert report.reused_backbone is True and report.cache_hits == ("pool", "pool")
        assert (run_dir / "model.keras").exists()
    finally:
        jobs.shutdown_standby(settings)


def test_only_feature_extraction_runs_leave_a_backbone_to_prebuild(tmp_path):
    def hint(strategy, weights="imagenet", distribution="none"):
        run_dir = tmp_path / f"{strategy}-{weights}-{distribution}"
        run_dir.mkdir()
        config = RunConfig(dataset=DatasetSpec(root=str(tmp_path), class_names=("a", "b")),
                           model=ModelSpec(weights=weights, input_size=160),
                           train=TrainConfig(strategy=strategy, distribution=distribution))
        (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
        return jobs.prebuild_hint(run_dir)

    assert '"input_size": 160' in hint("feature_extraction")
    assert hint("fine_tuning") is None
    assert hint("feature_extraction", weights="random") is None
    assert hint("feature_extraction", distribution="mirrored") is None
    assert jobs.prebuild_hint(tmp_path / "missing") is None
