"""Class assignments: publish with a hidden test split, start a copy without it, score, rank, keep it hidden."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from helpers.datasets import tiny_dataset_in
from helpers.models import TINY_MODEL
from helpers.runs import make_finished_run, tiny_config

from transfer_core import export
from transfer_core.config import Settings
from transfer_core.data import load_dataset, read_manifest
from transfer_core.data.manifest import write_manifest
from transfer_core.sessions import assignments, leaderboard, project_file, scoring
from transfer_core.sessions.classroom import save_nickname
from transfer_core.sessions.workspace import Workspace


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A home, the teacher's workspace, and a data set in it with one image stored twice (a duplicate)."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    workspace = Workspace.open(settings)
    spec = tiny_dataset_in(tmp_path_factory, images_per_class=10)
    source = Path(shutil.copytree(spec.root, workspace.new_dataset_dir("shapes")))
    spec = load_dataset(source)
    frame = read_manifest(spec)
    first = frame.iloc[0]
    copy = "images/" + Path(first["path"]).parent.name + "/duplicate.png"
    shutil.copyfile(source / first["path"], source / copy)
    write_manifest(source, pd.concat([frame, frame.iloc[[0]].assign(path=copy)], ignore_index=True))
    return settings, workspace, load_dataset(source)


@pytest.fixture(scope="module")
def published(teacher):
    settings, _, spec = teacher
    limits = assignments.AssignmentLimits(backbones=("mobilenet_v2_0.35",))
    # Seeds until the duplicated image is among the hidden ones, so the test below means something.
    first_sha = read_manifest(spec).iloc[0]["sha256"]
    for seed in range(50):
        assignment = assignments.publish_assignment(settings, spec, "Shapes", "Beat 80 %.", limits, 0.3, seed)
        hidden = read_manifest(assignments.hidden_dataset(settings, assignment.assignment_id))
        if first_sha in set(hidden["sha256"]):
            return assignment
        assignments.withdraw_assignment(settings, assignment.assignment_id)
    raise AssertionError("no seed held out the duplicated image")


def _hidden_files(settings, assignment) -> list[Path]:
    hidden = assignments.hidden_dataset(settings, assignment.assignment_id)
    return [Path(hidden.root) / p for p in read_manifest(hidden)["path"]]


def test_publishing_holds_out_a_share_of_each_class_and_every_copy_of_it(teacher, published):
    settings, workspace, spec = teacher
    folder = assignments.assignment_dir(settings, published.assignment_id)
    assert workspace.root not in folder.parents and settings.workspaces_dir not in folder.parents
    hidden = read_manifest(assignments.hidden_dataset(settings, published.assignment_id))
    public = read_manifest(load_dataset(folder / assignments.PUBLIC_FOLDER))
    assert set(hidden["label"]) == set(spec.class_names) and set(hidden["split"]) == {"test"}
    assert not set(hidden["sha256"]) & set(public["sha256"])  # The duplicate went with its twin.
    assert set(public["split"]) == {"train", "val"}
    assert published.hidden_images == len(hidden) and published.public_images == len(public)
    assert len(hidden) + len(public) == len(read_manifest(spec)) - 1  # One duplicate row dropped from hidden.
    assert assignments.list_assignments(settings)[0] == published
    assert assignments.load_assignment(settings, published.assignment_id) == published


def test_a_class_too_small_to_hold_out_is_refused(teacher, tmp_path):
    _, _, spec = teacher
    frame = read_manifest(spec)
    small = frame[(frame["label"] != spec.class_names[0]) | frame.index.isin(frame.index[:2])]
    root = Path(shutil.copytree(spec.root, tmp_path / "small"))
    write_manifest(root, small)
    with pytest.raises(ValueError, match="needs at least 3 distinct images"):
        assignments.publish_assignment(Settings(home=tmp_path / "h"), load_dataset(root), "Too small")
    assert not (tmp_path / "h" / "assignments").exists() or not any((tmp_path / "h" / "assignments").iterdir())


def test_limits_validate_and_name_what_was_broken():
    with pytest.raises(ValueError, match="Received: max_trainable_params=0"):
        assignments.AssignmentLimits(max_trainable_params=0)
    limits = assignments.AssignmentLimits(("mobilenet_v2_0.35",), 10_000, 60.0)
    assert limits.breaches("mobilenet_v2_0.35", 5_000, 30.0) == []
    broken = limits.breaches("resnet50", 20_000, 90.0)
    assert len(broken) == 3 and "resnet50" in broken[0] and "20,000" in broken[1] and "90 s" in broken[2]
    assert assignments.AssignmentLimits().describe() == "no limits"


@pytest.fixture(scope="module")
def student(teacher, published):
    """A student who started the assignment and finished two runs (one breaking the backbone limit), scored."""
    settings, _, _ = teacher
    workspace = Workspace.open(settings)
    save_nickname(workspace.root, "Grace")
    spec = assignments.start_assignment(settings, published, workspace.datasets_dir)
    scores = []
    for model in (TINY_MODEL, dataclasses.replace(TINY_MODEL, backbone="mobilenet_0.25")):
        config = tiny_config(spec, model=model, epochs=1, strategy="feature_extraction")
        run_dir, result = make_finished_run(workspace.runs_dir, config, settings)
        # What the training worker does right after the report (transfer_core.jobs.runner).
        scores.append(scoring.score_run(run_dir, config, result.classifier.model, result.report, settings))
    return workspace, spec, scores


def test_a_student_copy_has_no_hidden_image_and_runs_on_it_are_scored(teacher, published, student):
    settings, _, _ = teacher
    workspace, spec, (ranked, broken) = student
    assert assignments.assignment_of_dataset(spec.root) == published.assignment_id
    assert Path(spec.root).parent == workspace.datasets_dir
    assert ranked.ranked and 0.0 <= ranked.accuracy <= 1.0 and ranked.num_images == published.hidden_images
    assert not broken.ranked and "mobilenet_0.25 is not allowed" in broken.broken_limits[0]
    assert broken.accuracy is not None  # Scored, shown as breaking a limit, never ranked.
    mine = leaderboard.standing(settings, published.assignment_id, workspace.workspace_id)
    assert mine.best == ranked and mine.rank == 1 and mine.students_ranked == 1 and len(mine.own_scores) == 2


def test_a_run_outside_an_assignment_is_not_scored(teacher, tmp_path):
    settings, workspace, spec = teacher
    run_dir, result = make_finished_run(tmp_path / "runs", tiny_config(spec, epochs=1), settings)
    assert scoring.score_run(run_dir, tiny_config(spec), result.classifier.model, result.report, settings) is None


def test_the_leaderboard_ranks_each_students_best_and_sorts(teacher, published, student):
    settings, _, _ = teacher
    workspace, _, (ranked, _) = student
    other = Workspace.open(settings)
    better = leaderboard.AssignmentScore(
        published.assignment_id, other.workspace_id, "r-other", 1.0, published.hidden_images, "fine_tuning",
        "mobilenet_v2_0.35", "avg", 10**9, 999.0, (), 1.0)
    worse = leaderboard.AssignmentScore(**{**better.to_dict(), "run_id": "r-worse", "accuracy": -1.0})
    for score in (better, worse):
        leaderboard.save_score(settings, score)
    board = leaderboard.leaderboard(settings, published.assignment_id)
    assert list(board["rank"]) == [1, 2] and list(board["nickname"]) == ["(no nickname)", "Grace"]
    assert list(board["run_id"]) == ["r-other", ranked.run_id] and list(board["runs"]) == [2, 1]
    by_params = leaderboard.leaderboard(settings, published.assignment_id, "trainable_params")
    assert list(by_params["nickname"]) == ["Grace", "(no nickname)"]
    assert list(leaderboard.unranked_runs(settings, published.assignment_id)["nickname"]) == ["Grace"]
    assert leaderboard.standing(settings, published.assignment_id, workspace.workspace_id).rank == 2
    with pytest.raises(ValueError, match="sort_by must be one of"):
        leaderboard.leaderboard(settings, published.assignment_id, "accuracy")
    for score in (better, worse):
        leaderboard.score_path(settings, score).unlink()


def test_nothing_a_student_can_reach_holds_a_hidden_image(teacher, published, student):
    """Workspace files, the project file, reproduce scripts: no hidden image's bytes, hash, or file name."""
    settings, _, _ = teacher
    workspace, spec, _ = student
    hidden = _hidden_files(settings, published)
    hidden_manifest = read_manifest(assignments.hidden_dataset(settings, published.assignment_id))
    needles = set(hidden_manifest["sha256"]) | {p.name for p in hidden} | {p.stem for p in hidden}
    byte_hashes = {_sha(p) for p in hidden}
    texts: dict[str, bytes] = {}
    for path in workspace.root.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes()
            assert _sha(path) not in byte_hashes, f"{path} is a hidden test image"
    with zipfile.ZipFile(io.BytesIO(project_file.export_project(workspace))) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            texts[f"project:{info.filename}"] = data + info.filename.encode()
            assert hashlib.sha256(data).hexdigest() not in byte_hashes, f"{info.filename} is a hidden test image"
    for run in workspace.store.list_runs():
        texts[f"script:{run.run_id}"] = export.generate_script(run.config, run.run_id).encode()
    for name, data in texts.items():
        for needle in needles:
            assert needle.encode() not in data, f"{name} names hidden image {needle}"
    assert len(needles) >= 2 * published.hidden_images and texts  # The search really had something to find.
