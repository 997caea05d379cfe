"""The class view's logic on real finished runs of two sessions, plus damaged and unfinished ones."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from helpers.runs import make_finished_run, tiny_config

from transfer_core import jobs
from transfer_core.config import Settings
from transfer_core.display.run_charts import accuracy_vs_parameters_figure
from transfer_core.runs import RunStore
from transfer_core.sessions import classroom
from transfer_core.sessions.workspace import Workspace


@pytest.fixture(scope="module")
def server_home(tmp_path_factory) -> dict:
    """TRANSFER_HOME with two sessions: Ada (feature extraction + fine-tuning, one test split), Bo (from scratch)."""
    from transfer_core.data import make_demo_dataset

    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    ada, bo = Workspace.open(settings), Workspace.open(settings)
    ada_data = make_demo_dataset(ada.new_dataset_dir("demo"), images_per_class=8, image_size=32)
    bo_data = make_demo_dataset(bo.new_dataset_dir("my shapes"), images_per_class=8, image_size=32)
    runs = {}
    for strategy in ("feature_extraction", "fine_tuning"):
        config = tiny_config(ada_data, strategy=strategy, epochs=1, fine_tune_epochs=1)
        runs[strategy] = make_finished_run(ada.runs_dir, config, settings)[0]
    runs["from_scratch"] = make_finished_run(bo.runs_dir, tiny_config(bo_data, strategy="from_scratch", epochs=1),
                                             settings)[0]
    classroom.save_nickname(ada.root, "  Ada\tL. ")
    return {"settings": settings, "ada": ada, "bo": bo, "runs": runs}


def test_every_finished_run_of_every_session_is_listed(server_home):
    found = classroom.class_runs(server_home["settings"])
    assert sorted((run.nickname, run.strategy) for run in found) == [
        ("", "from_scratch"), ("Ada L.", "feature_extraction"), ("Ada L.", "fine_tuning")]
    by_strategy = {run.strategy: run for run in found}
    fe, ft, scratch = (by_strategy[s] for s in ("feature_extraction", "fine_tuning", "from_scratch"))
    assert fe.dataset == "demo" and scratch.dataset == "my-shapes"
    assert fe.freeze_plan == "backbone frozen (feature extraction)"
    assert ft.freeze_plan == "fine-tune the top 2 blocks"
    assert scratch.freeze_plan == "every layer (random weights)"
    assert {run.workspace_id for run in found} == {server_home["ada"].workspace_id, server_home["bo"].workspace_id}
    for run in found:
        report = RunStore(run.path.parent).load(run.run_id).report
        assert run.val_accuracy == pytest.approx(report.val_accuracy)
        assert run.trainable_params == report.trainable_params > 0
        assert run.seconds == pytest.approx(report.seconds)
        assert run.test_accuracy is None  # The demo sets have no test split.
    # Fine-tuning trains more of the network than feature extraction; from scratch trains all of it.
    assert fe.trainable_params < ft.trainable_params < scratch.trainable_params


def test_damaged_unfinished_and_foreign_folders_are_skipped(server_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(server_home["settings"].home, home)
    settings = Settings(home=home)
    ada_runs = home / "workspaces" / server_home["ada"].workspace_id / "runs"
    fe_run = ada_runs / server_home["runs"]["feature_extraction"].name
    (fe_run / "config.json").write_text("{not json")  # Damaged: listed as failed by the store, so left out.
    ft_run = ada_runs / server_home["runs"]["fine_tuning"].name
    (ft_run / "report.json").unlink()  # Finished event without its report: interrupted.
    (home / "workspaces" / "not-a-workspace" / "runs").mkdir(parents=True)
    (home / "workspaces" / ("0" * 32)).mkdir()  # A workspace without a runs folder.
    found = classroom.class_runs(settings)
    assert [run.strategy for run in found] == ["from_scratch"]
    assert classroom.class_runs(Settings(home=tmp_path / "nowhere")) == []


def test_class_table_and_curves(server_home):
    found = classroom.class_runs(server_home["settings"])
    table = classroom.class_table(found)
    assert list(table.columns) == classroom.CLASS_COLUMNS
    assert sorted(table["nickname"]) == ["(no nickname)", "Ada L.", "Ada L."]
    assert classroom.class_table([]).empty
    curves = classroom.run_curves(next(run for run in found if run.strategy == "fine_tuning"))
    assert list(curves["stage"]) == ["head", "fine_tune"]
    gone = next(run for run in found if run.strategy == "from_scratch")
    assert classroom.run_curves(classroom.ClassRun(**{**gone.__dict__, "path": Path("/nonexistent")})).empty
    figure = accuracy_vs_parameters_figure(table)
    assert sorted(trace.name for trace in figure.data) == ["feature extraction", "fine-tuning", "from scratch"]
    assert figure.layout.xaxis.type == "log"


def test_nickname_is_cleaned_stored_in_the_workspace_and_removable(tmp_path):
    assert classroom.read_nickname(tmp_path) == ""
    assert classroom.save_nickname(tmp_path, "Zoë\x00 \n the   great" + "x" * 60) == ("Zoë the great" + "x" * 60)[:40]
    assert (tmp_path / classroom.NICKNAME_FILE).is_file()
    assert classroom.read_nickname(tmp_path).startswith("Zoë the great")
    assert classroom.save_nickname(tmp_path, "   ") == ""
    assert not (tmp_path / classroom.NICKNAME_FILE).exists()


@pytest.mark.parametrize(("token", "given", "expected"), [
    ("s3cret", "s3cret", True),
    ("s3cret", "s3cre", False),
    ("s3cret", "", False),
    ("s3cret", None, False),
    ("", "", False),  # No token configured: no class view, whatever is given.
    ("", "anything", False),
    ("tök", "tök", True),
])
def test_teacher_token_matches(token, given, expected):
    assert classroom.teacher_token_matches(Settings(teacher_token=token), given) is expected


def test_teacher_token_comes_from_the_environment_and_is_not_in_repr(monkeypatch):
    monkeypatch.setenv("TRANSFER_TEACHER_TOKEN", " s3cret ")
    monkeypatch.setenv("TRANSFER_DEMO_DIR", "/srv/photos")
    settings = Settings.from_env()
    assert settings.teacher_token == "s3cret"
    assert settings.demo_dir == Path("/srv/photos")
    assert "s3cret" not in repr(settings)


def test_the_queue_text_gives_the_class_time_from_measured_runs(tmp_path):
    settings = Settings(home=tmp_path / "home", max_concurrent_runs=2)
    empty = jobs.queue_capacity(settings)
    assert (empty.runs_measured, empty.median_run_seconds, empty.class_seconds(30)) == (0, None, None)
    assert "No run has finished on this server yet" in classroom.capacity_text(empty, settings)
    for seconds in (8.0, 10.0, 30.0):
        jobs.record_run_time(settings, "fine_tuning", seconds)
    capacity = jobs.queue_capacity(settings)
    assert (capacity.slots, capacity.runs_measured, capacity.median_run_seconds) == (2, 3, 10.0)
    assert capacity.class_seconds(30) == 150.0  # 15 rounds of two runs, 10 s each.
    text = classroom.capacity_text(capacity, settings)
    assert "**2 run(s) at a time**" in text
    assert "The last 3 run(s) took a median of 10 s each" in text
    assert "If 30 students press Start together, the last run finishes after about 2 min 30 s" in text
    ray = dataclasses.replace(settings, executor="ray", ray_address="10.0.0.5:6379", ray_num_cpus=2)
    assert "Ray cluster at `10.0.0.5:6379`: each reserves 2 CPU(s)" in classroom.capacity_text(capacity, ray)
