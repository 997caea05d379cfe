"""Ready-made choices: the demo's backbone, freeze presets, the run config from form values."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer_core.config import DatasetSpec, FreezePlan, ModelSpec, Settings
from transfer_core.sessions import presets

SHARED_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights"


def test_demo_without_any_weights_falls_back_to_random_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    choice = presets.choose_demo_backbone(Settings(home=tmp_path, weights_dir=tmp_path / "no-weights"))
    assert choice.weights == "random" and choice.backbone == presets.DEMO_BACKBONE
    assert "not transfer" in choice.explanation
    assert presets.demo_train_config(choice).strategy == "from_scratch"


def test_demo_uses_the_preferred_backbone_when_its_weights_are_offline(shared_weights_dir, tmp_path):
    choice = presets.choose_demo_backbone(Settings(home=tmp_path, weights_dir=shared_weights_dir))
    assert (choice.backbone, choice.weights) == ("mobilenet_v2_0.35", "imagenet")
    train = presets.demo_train_config(choice)
    assert train.caches_features and train.epochs + train.fine_tune_epochs <= 20


def test_demo_takes_the_smallest_offline_backbone_when_the_preferred_one_is_missing(
    shared_weights_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    choice = presets.choose_demo_backbone(
        Settings(home=tmp_path, weights_dir=shared_weights_dir), preferred="efficientnet_b0"
    )
    assert (choice.backbone, choice.weights) == ("mobilenet_0.25", "imagenet")
    assert "smallest" in choice.explanation


@pytest.mark.parametrize(
    ("preset", "mode"),
    [
        ("feature_extraction", "all_frozen"),
        ("top_blocks", "top_blocks"),
        ("all_trainable", "all_trainable"),
        ("custom", "custom"),
    ],
)
def test_freeze_presets_round_trip(preset, mode):
    plan = presets.freeze_plan_for_preset(preset, top_blocks=3, trainable_blocks=("block_1",))
    assert plan.mode == mode
    assert presets.preset_of_plan(plan) == preset
    if mode == "top_blocks":
        assert plan.top_blocks == 3


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="Received: preset='half'"):
        presets.freeze_plan_for_preset("half")


def test_plan_descriptions_and_strategy():
    assert presets.describe_plan(FreezePlan(mode="top_blocks", top_blocks=1)) == "fine-tune the top 1 block"
    assert presets.strategy_for_plan(FreezePlan(mode="all_frozen")) == "feature_extraction"
    assert presets.strategy_for_plan(FreezePlan(mode="top_blocks", top_blocks=2)) == "fine_tuning"


def test_plan_warnings_catch_mismatches():
    assert presets.plan_warnings("fine_tuning", FreezePlan(mode="all_frozen"))
    assert presets.plan_warnings("feature_extraction", FreezePlan(mode="top_blocks"))
    assert presets.plan_warnings("fine_tuning", FreezePlan(mode="top_blocks")) == []


def test_train_config_from_form_validates_values():
    config = presets.train_config_from_form(
        {"strategy": "fine_tuning", "epochs": 3, "augmentation": ("flip",)}
    )
    assert config.augmentation == ("flip",) and not config.caches_features
    with pytest.raises(ValueError, match="epochs"):
        presets.train_config_from_form({"epochs": 0})
    with pytest.raises(ValueError, match="Unknown"):
        presets.train_config_from_form({"epochz": 3})


def test_build_run_config_keeps_the_session_choices(tmp_path):
    spec = DatasetSpec(root=str(tmp_path), class_names=("a", "b"))
    model = ModelSpec(backbone="mobilenet_0.25", input_size=128)
    config = presets.build_run_config(
        spec,
        model,
        FreezePlan(mode="all_frozen"),
        presets.train_config_from_form({"strategy": "from_scratch"}),
        name="x",
    )
    assert config.model.backbone == "mobilenet_0.25" and config.model.weights == "random"  # From scratch.
    assert config.name == "x"


def test_nearest_learning_rate_snaps_on_a_log_scale():
    from transfer_core.sessions.presets import LEARNING_RATES, nearest_learning_rate

    assert nearest_learning_rate(2.5e-3) == 3e-3
    assert nearest_learning_rate(1.5e-4) == 1e-4
    assert nearest_learning_rate(1.0) == max(LEARNING_RATES)
