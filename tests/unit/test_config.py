"""Config dataclasses: validation messages, round trips, settings from the environment."""

import dataclasses
import os
from pathlib import Path

import pytest

from transfer_core.config import (
    SETTING_VARIABLES,
    DatasetSpec,
    FreezePlan,
    ModelSpec,
    RunConfig,
    Settings,
    TrainConfig,
)


def _spec(**kwargs):
    return DatasetSpec(root="/tmp/x", class_names=("a", "b"), **kwargs)


def test_run_config_round_trips_through_dict():
    config = RunConfig(
        dataset=_spec(seed=3),
        model=ModelSpec(backbone="mobilenet_0.25", input_size=128, hidden_units=16),
        freeze=FreezePlan(mode="custom", trainable_blocks=("block_15", "block_16")),
        train=TrainConfig(strategy="fine_tuning", augmentation=("flip", "zoom"), epochs=3),
        name="demo",
    )
    again = RunConfig.from_dict(config.to_dict())
    assert again == config
    assert again.freeze.trainable_blocks == ("block_15", "block_16")


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: TrainConfig(epochs=0), "epochs=0"),
        (lambda: TrainConfig(epochs=-3), "epochs=-3"),
        (lambda: TrainConfig(batch_size=0), "batch_size=0"),
        (lambda: TrainConfig(learning_rate=0.0), "learning_rate=0.0"),
        (lambda: TrainConfig(learning_rate=50.0), "learning_rate=50.0"),
        (lambda: TrainConfig(strategy="magic"), "strategy='magic'"),
        (lambda: TrainConfig(augmentation=("flip", "blur")), "augmentation"),
        (lambda: TrainConfig(strategy="fine_tuning", fine_tune_epochs=0), "fine_tune_epochs=0"),
        (lambda: ModelSpec(input_size=8), "input_size=8"),
        (lambda: ModelSpec(weights="cifar"), "weights='cifar'"),
        (lambda: ModelSpec(dropout_rate=1.0), "dropout_rate=1.0"),
        (lambda: FreezePlan(mode="top_blocks", top_blocks=0), "top_blocks=0"),
        (lambda: FreezePlan(mode="sideways"), "mode='sideways'"),
        (lambda: DatasetSpec(root="x", class_names=("only",)), "at least 2 classes"),
        (lambda: DatasetSpec(root="x", class_names=("a", "a")), "unique"),
        (lambda: _spec(val_fraction=0.0), "val_fraction=0.0"),
    ],
)
def test_bad_settings_fail_before_any_work_with_the_received_value(factory, message):
    with pytest.raises(ValueError, match="Received") as info:
        factory()
    assert message in str(info.value)


def test_from_scratch_with_pretrained_weights_is_refused_not_rewritten():
    with pytest.raises(ValueError, match='needs ModelSpec\\(weights="random"\\)'):
        RunConfig(dataset=_spec(), train=TrainConfig(strategy="from_scratch"))
    config = RunConfig(dataset=_spec(), model=ModelSpec(weights="random"), train=TrainConfig(strategy="from_scratch"))
    assert config.model.weights == "random"


def test_build_run_config_gives_from_scratch_random_weights():
    from transfer_core.sessions import presets

    config = presets.build_run_config(_spec(), ModelSpec(), FreezePlan(), TrainConfig(strategy="from_scratch"))
    assert config.model.weights == "random"


def test_augmentation_turns_feature_caching_off():
    assert TrainConfig().caches_features
    assert not TrainConfig(augmentation=("flip",)).caches_features
    assert not TrainConfig(use_cache=False).caches_features


def test_unknown_field_in_saved_config_is_reported():
    data = TrainConfig().to_dict() | {"epoks": 3}
    with pytest.raises(ValueError, match="epoks"):
        TrainConfig.from_dict(data)


def test_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TRANSFER_HOME", str(tmp_path))
    monkeypatch.setenv("TRANSFER_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("TRANSFER_MAX_CONCURRENT_RUNS", "2")
    monkeypatch.setenv("TRANSFER_ALLOWED_DATA_DIRS", f"{tmp_path}/a:{tmp_path}/b")
    settings = Settings.from_env()
    assert settings.home == tmp_path
    assert settings.weights_dir == tmp_path / "w"
    assert settings.max_concurrent_runs == 2
    assert settings.allowed_data_dirs == (tmp_path / "a", tmp_path / "b")
    assert settings.runs_dir == tmp_path / "runs"


def test_settings_from_an_empty_environment_are_the_dataclass_defaults(monkeypatch):
    for variable in [name for name in os.environ if name.startswith("TRANSFER_")] + ["RAY_ADDRESS"]:
        monkeypatch.delenv(variable, raising=False)
    assert Settings.from_env() == Settings()
    assert Settings.from_env(server=True) == Settings(standby_worker=True)
    assert Settings().offline  # One default for downloads, in code and from the environment.


def test_every_setting_has_an_environment_variable_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    variables = {variable for variable, _ in SETTING_VARIABLES.values()}
    assert set(SETTING_VARIABLES) == {spec.name for spec in dataclasses.fields(Settings)}
    assert [variable for variable in sorted(variables) if f"| `{variable}` |" not in readme] == []


def test_boolean_settings_read_words_and_reject_others(monkeypatch):
    monkeypatch.setenv("TRANSFER_OFFLINE", "no")
    monkeypatch.setenv("TRANSFER_STANDBY_WORKER", "1")
    assert not Settings.from_env().offline and Settings.from_env().standby_worker
    monkeypatch.setenv("TRANSFER_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="TRANSFER_OFFLINE must be 1 or 0"):
        Settings.from_env()


def test_settings_reject_non_integer_env(monkeypatch):
    monkeypatch.setenv("TRANSFER_MAX_CONCURRENT_RUNS", "many")
    with pytest.raises(ValueError, match="TRANSFER_MAX_CONCURRENT_RUNS"):
        Settings.from_env()


def test_dataclasses_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 5
