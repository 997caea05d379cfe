"""Session choices kept in the workspace: round trip, damaged and older files, data set names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfer_core.config import FreezePlan, ModelSpec, Settings, TrainConfig
from transfer_core.data import dataset_name_from_file, make_demo_dataset, suggest_dataset_name
from transfer_core.sessions.workspace import CHOICES_FILE, SessionChoices, Workspace


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace.open(Settings(home=tmp_path))


def _full_choices(workspace: Workspace) -> SessionChoices:
    spec = make_demo_dataset(workspace.new_dataset_dir("demo"), images_per_class=10, image_size=32)
    return SessionChoices(
        dataset=Path(spec.root).name,
        model=ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="random", dropout_rate=0.3,
                        hidden_units=64),
        freeze=FreezePlan(mode="top_blocks", top_blocks=3, train_batchnorm=True),
        train=TrainConfig(strategy="fine_tuning", epochs=4, fine_tune_epochs=2, augmentation=("flip",), seed=7),
    )


def test_choices_round_trip_through_the_workspace(workspace):
    choices = _full_choices(workspace)
    workspace.save_choices(choices)
    reopened = Workspace.open(Settings(home=workspace.root.parents[1]), workspace.workspace_id)
    loaded, warnings = reopened.load_choices()
    assert loaded == choices and warnings == []
    assert json.loads((workspace.root / CHOICES_FILE).read_text())["version"] == 1


def test_no_file_gives_defaults_without_warnings(workspace):
    assert workspace.load_choices() == (SessionChoices(), [])


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b"null", b""])
def test_damaged_file_gives_defaults_and_a_warning(workspace, content):
    (workspace.root / CHOICES_FILE).write_bytes(content)
    choices, warnings = workspace.load_choices()
    assert choices == SessionChoices()
    assert len(warnings) == 1 and "saved choices" in warnings[0]


def test_one_bad_part_is_dropped_the_rest_kept(workspace):
    good = _full_choices(workspace)
    data = good.to_dict()
    data["model"] = {"backbone": "mobilenet_v2_0.35", "input_size": -5}  # Fails ModelSpec validation.
    data["train"]["no_such_field"] = 1  # A field this version does not know.
    (workspace.root / CHOICES_FILE).write_text(json.dumps(data))
    choices, warnings = workspace.load_choices()
    assert choices.dataset == good.dataset and choices.freeze == good.freeze
    assert choices.model is None and choices.train is None
    assert len(warnings) == 2
    assert any("model" in w for w in warnings) and any("train" in w for w in warnings)


def test_an_older_file_without_version_or_parts_loads(workspace):
    (workspace.root / CHOICES_FILE).write_text(json.dumps({"model": {"backbone": "mobilenet_v2_0.35"}}))
    choices, warnings = workspace.load_choices()
    assert choices == SessionChoices(model=ModelSpec(backbone="mobilenet_v2_0.35")) and warnings == []


def test_a_newer_file_says_so_and_keeps_what_it_reads(workspace):
    data = {"version": 99, "model": ModelSpec(backbone="mobilenet_v2_0.35").to_dict()}
    (workspace.root / CHOICES_FILE).write_text(json.dumps(data))
    choices, warnings = workspace.load_choices()
    assert choices.model == ModelSpec(backbone="mobilenet_v2_0.35")
    assert warnings and "newer" in warnings[0]


@pytest.mark.parametrize("name", ["../../etc", "/abs", ".hidden", 5])
def test_a_data_set_name_that_is_a_path_is_refused(workspace, name):
    (workspace.root / CHOICES_FILE).write_text(json.dumps({"version": 1, "dataset": name}))
    choices, warnings = workspace.load_choices()
    assert choices.dataset == "" and warnings


def test_a_deleted_data_set_is_forgotten(workspace):
    choices = _full_choices(workspace)
    workspace.save_choices(choices)
    workspace.delete_dataset(workspace.datasets_dir / choices.dataset)
    loaded, warnings = workspace.load_choices()
    assert loaded.dataset == "" and loaded.model == choices.model and warnings == []


def test_save_leaves_no_temporary_files(workspace):
    for epochs in range(1, 6):
        workspace.save_choices(SessionChoices(train=TrainConfig(epochs=epochs)))
    assert [p.name for p in workspace.root.iterdir() if p.is_file()] == [CHOICES_FILE]
    assert workspace.load_choices()[0].train == TrainConfig(epochs=5)


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [("my_photos.zip", "my_photos"), ("C:\\Users\\me\\Holiday Pics.ZIP", "Holiday Pics"),
     ("folder/cats and dogs.zip", "cats and dogs"), ("  spaced .zip", "spaced"), ("noext", "noext")],
)
def test_dataset_name_from_file_uses_the_cleaned_stem(file_name, expected):
    assert dataset_name_from_file(file_name) == expected


def test_suggested_names_for_uploads():
    assert suggest_dataset_name(["holiday/cats/a.jpg", "holiday/dogs/b.jpg"], ["cats", "dogs"]) == "holiday"
    assert suggest_dataset_name(["a.jpg", "b.jpg"], ["cats", "dogs"]) == "cats vs dogs"
    assert suggest_dataset_name(["a/x.jpg", "b/y.jpg"], ["a", "b", "c", "d"]) == "a vs b vs c etc"
    assert suggest_dataset_name([], []) == "dataset"
