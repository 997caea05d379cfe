"""Comparison: run configs, starting runs in a chain, the results table, curves, the reading, exports."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.datasets import tiny_dataset_in
from helpers.runs import TINY_MODEL, make_finished_run, patience, tiny_config

from transfer_core import compare
from transfer_core.config import DatasetSpec, FreezePlan, ModelSpec, Settings, TrainConfig
from transfer_core.runs import RunStore


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> DatasetSpec:
    """The tiny data set at 10 images per class, the size these tests were written with."""
    return tiny_dataset_in(tmp_path_factory, images_per_class=10)


@pytest.fixture(scope="module")
def two_runs(tiny_dataset, tmp_path_factory):
    """A feature-extraction and a fine-tuning run of the same comparison group, finished."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    runs_dir = home / "runs"
    for strategy in ("feature_extraction", "fine_tuning"):
        make_finished_run(runs_dir, tiny_config(tiny_dataset, strategy=strategy, fine_tune_epochs=1,
                                                name=f"compare g1: {compare.STRATEGY_LABELS[strategy]}"), settings)
    return RunStore(runs_dir).list_runs()


# ----- configs and starting ---------------------------------------------------------------------


def test_comparison_configs_share_everything_but_the_strategy(tiny_dataset):
    train = TrainConfig(epochs=3, fine_tune_epochs=2, batch_size=8, seed=7, learning_rate=3e-3)
    configs = compare.comparison_configs(
        tiny_dataset, ModelSpec(input_size=96), FreezePlan(mode="top_blocks", top_blocks=3), train,
        ["from_scratch", "fine_tuning", "feature_extraction"], include_bn_pitfall=True, group="g")
    labels = [compare.run_label(c) for c in configs]
    # Always in this order, whatever order they were asked in.
    assert labels == ["feature extraction", "fine-tuning", compare.BN_PITFALL_LABEL, "from scratch"]
    assert {c.dataset for c in configs} == {tiny_dataset}
    assert {c.train.seed for c in configs} == {7}
    assert {c.train.batch_size for c in configs} == {8}
    assert {c.model.input_size for c in configs} == {96}
    # Every run trains for the same number of epochs in total.
    assert configs[0].train.epochs == 5
    assert configs[1].train.epochs == 3 and configs[1].train.fine_tune_epochs == 2
    assert configs[3].train.epochs == 5
    assert configs[0].freeze.mode == "all_frozen"
    assert configs[1].freeze == FreezePlan(mode="top_blocks", top_blocks=3)
    assert configs[2].freeze.train_batchnorm and not configs[1].freeze.train_batchnorm
    assert configs[3].model.weights == "random" and configs[1].model.weights == "imagenet"
    assert all(c.name.startswith("compare g: ") for c in configs)


def test_comparison_configs_replace_a_plan_that_unfreezes_nothing(tiny_dataset):
    configs = compare.comparison_configs(tiny_dataset, ModelSpec(), FreezePlan(mode="all_frozen"),
                                         TrainConfig(), ["fine_tuning"])
    assert configs[0].freeze.mode == "top_blocks" and configs[0].freeze.top_blocks == 2


@pytest.mark.parametrize("strategies", [[], ["transfer"]])
def test_comparison_configs_reject_bad_strategies(tiny_dataset, strategies):
    with pytest.raises(ValueError, match="Received: strategies"):
        compare.comparison_configs(tiny_dataset, ModelSpec(), FreezePlan(), TrainConfig(), strategies)


def test_bn_pitfall_needs_pretrained_weights(tiny_dataset):
    with pytest.raises(ValueError, match="weights='random'"):
        compare.comparison_configs(tiny_dataset, TINY_MODEL, FreezePlan(), TrainConfig(), ["fine_tuning"],
                                   include_bn_pitfall=True)


def test_start_comparison_chains_runs_one_after_another(tiny_dataset, tmp_path, monkeypatch):
    from transfer_core import jobs

    calls = []

    def fake_start_run(config, *, runs_dir, settings=None, after=None):
        run_dir = Path(runs_dir) / f"run{len(calls)}"
        calls.append((config.train.strategy, after))
        return run_dir

    monkeypatch.setattr(jobs, "start_run", fake_start_run)
    first = tmp_path / "busy-run"
    dirs = compare.start_comparison(tiny_dataset, TINY_MODEL, FreezePlan(), TrainConfig(epochs=1, fine_tune_epochs=1),
                                    ["feature_extraction", "fine_tuning", "from_scratch"], tmp_path,
                                    Settings(home=tmp_path), after=first)
    assert [c[0] for c in calls] == ["feature_extraction", "fine_tuning", "from_scratch"]
    assert [c[1] for c in calls] == [first, dirs[0], dirs[1]]


@pytest.mark.slow
def test_start_comparison_runs_real_workers_in_order(tiny_dataset, tmp_path):
    from transfer_core import jobs
    from transfer_core.runs import load_run

    settings = Settings(home=tmp_path / "home")
    dirs = compare.start_comparison(tiny_dataset, TINY_MODEL, FreezePlan(), TrainConfig(epochs=1, fine_tune_epochs=1,
                                                                                        batch_size=8),
                                    ["feature_extraction", "fine_tuning"], settings.runs_dir, settings)
    statuses = [jobs.follow(d, timeout=patience(300)) for d in dirs]
    assert statuses == ["finished", "finished"]
    first, second = (load_run(d) for d in dirs)
    first_end = next(e["time"] for e in first.events() if e["type"] == "finished")
    second_start = next(e["time"] for e in second.events() if e["type"] == "run_started")
    assert second_start >= first_end  # The second waited for the first.
    groups = compare.comparison_groups([first, second])
    assert list(groups.values()) == [[d.name for d in dirs]]


# ----- table, curves, groups ----------------------------------------------------------------------


def test_comparison_table_and_curves_from_real_runs(two_runs):
    table = compare.comparison_table(two_runs)
    assert list(table.columns) == compare.TABLE_COLUMNS
    assert set(table["label"]) == {"feature extraction", "fine-tuning"}
    for _, row in table.iterrows():
        info = next(i for i in two_runs if i.run_id == row["run_id"])
        assert row["final_val_accuracy"] == pytest.approx(info.report.val_accuracy)
        assert row["best_val_accuracy"] == pytest.approx(info.metrics()["val_accuracy"].max())
        assert row["seconds"] > 0 and row["seconds_per_epoch"] > 0
        assert row["num_val"] == info.report.num_val
    fe = table.set_index("label").loc["feature extraction"]
    ft = table.set_index("label").loc["fine-tuning"]
    assert ft["trainable_params"] > fe["trainable_params"]  # Fine-tuning unfroze blocks.
    curves = compare.curves_frame(two_runs)
    assert list(curves.columns) == compare.CURVE_COLUMNS
    assert len(curves[curves["label"] == "fine-tuning"]) == 3  # 2 head + 1 fine-tuning epoch.
    assert (curves.groupby("run_id")["elapsed"].diff().dropna() > 0).all()
    groups = compare.comparison_groups(two_runs)
    assert list(groups) == ["g1"] and set(groups["g1"]) == {i.run_id for i in two_runs}


def test_results_export_as_csv_and_json(two_runs):
    table = compare.comparison_table(two_runs)
    curves = compare.curves_frame(two_runs)
    sentences = compare.reading(table, curves)
    csv_text = compare.results_csv(table)
    assert csv_text.splitlines()[0].split(",") == compare.TABLE_COLUMNS
    assert len(csv_text.strip().splitlines()) == 3
    payload = json.loads(compare.results_json(table, curves, sentences))
    assert len(payload["runs"]) == 2 and len(payload["curves"]) == len(curves)
    assert payload["reading"] == sentences
    assert {r["label"] for r in payload["runs"]} == {"feature extraction", "fine-tuning"}


def test_labels_are_unique_when_strategies_repeat(two_runs):
    import dataclasses

    again = dataclasses.replace(two_runs[0], run_id="20990101-000000-again-deadbeef")
    table = compare.comparison_table([*two_runs, again])
    assert table["label"].is_unique
    assert table["label"].iloc[-1].endswith("(deadbeef)")


# ----- the reading ---------------------------------------------------------------------------------


def _table(rows: list[dict]) -> pd.DataFrame:
    defaults = {"status": "finished", "backbone": "mobilenet_v2_0.35", "input_size": 96, "weights": "imagenet",
                "epochs": 10, "num_val": 100, "best_val_loss": None, "feature_seconds": 0.0,
                "trainable_params": 1000, "images_per_second": 100.0, "cached_features": False,
                "seconds_per_epoch": 1.0}
    return pd.DataFrame([{**defaults, **row} for row in rows], columns=compare.TABLE_COLUMNS)


def _curve(run_id: str, label: str, rows: list[tuple]) -> pd.DataFrame:
    """rows: (stage, loss, accuracy, val_loss, val_accuracy)."""
    return pd.DataFrame(
        [{"run_id": run_id, "label": label, "epoch": i + 1, "elapsed": float(i + 1), "stage": stage, "loss": loss,
          "accuracy": acc, "val_loss": val_loss, "val_accuracy": val_acc}
         for i, (stage, loss, acc, val_loss, val_acc) in enumerate(rows)])


def test_reading_names_fine_tuning_as_winner_with_margin_and_time_cost():
    table = _table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.90, "final_val_loss": 0.30, "best_val_accuracy": 0.90, "seconds": 10.0},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.95, "final_val_loss": 0.20, "best_val_accuracy": 0.95, "seconds": 30.0},
    ])
    sentences = compare.reading(table)
    assert sentences[0].startswith("Fine-tuning won with 95.0% validation accuracy, 5.0 percentage points")
    assert "(5 of 100 validation images)" in sentences[0]
    assert "feature extraction (90.0%)" in sentences[0]
    assert "took 3.0x as long" in sentences[1]


def test_reading_names_feature_extraction_when_it_wins_and_flags_overfitting():
    table = _table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.92, "final_val_loss": 0.25, "seconds": 10.0},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.84, "final_val_loss": 0.60, "seconds": 25.0},
    ])
    curves = pd.concat([
        _curve("a", "feature extraction", [("head", 0.8, 0.7, 0.5, 0.85), ("head", 0.5, 0.85, 0.3, 0.92)]),
        _curve("b", "fine-tuning", [("head", 0.8, 0.7, 0.5, 0.85), ("fine_tune", 0.2, 0.97, 0.5, 0.86),
                                    ("fine_tune", 0.05, 1.0, 0.6, 0.84)]),
    ])
    sentences = compare.reading(table, curves)
    assert sentences[0].startswith("Feature extraction won with 92.0%")
    assert "was also faster (2.5x)" in sentences[1]
    assert any("Fine-tuning shows overfitting" in s and "100.0%" in s and "84.0%" in s for s in sentences)


def test_reading_detects_rising_validation_loss_without_an_accuracy_gap():
    table = _table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.90, "final_val_loss": 0.3, "seconds": 10.0},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.91, "final_val_loss": 0.4, "seconds": 12.0},
    ])
    curves = _curve("b", "fine-tuning", [("fine_tune", 0.4, 0.90, 0.30, 0.90), ("fine_tune", 0.3, 0.92, 0.35, 0.90),
                                         ("fine_tune", 0.2, 0.95, 0.40, 0.91)])
    sentences = compare.reading(table, curves)
    assert any("started to overfit" in s and "0.300 to 0.400" in s for s in sentences)


def test_reading_calls_a_one_image_difference_a_tie_or_luck():
    tie = compare.reading(_table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.900, "final_val_loss": 0.3, "seconds": 10.0, "num_val": 20},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.900, "final_val_loss": 0.2, "seconds": 12.0, "num_val": 20},
    ]))
    assert tie[0].startswith("Fine-tuning and feature extraction tie at 90.0%")
    assert "lower validation loss" in tie[0]
    luck = compare.reading(_table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.90, "final_val_loss": 0.3, "seconds": 10.0, "num_val": 20},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.95, "final_val_loss": 0.2, "seconds": 12.0, "num_val": 20},
    ]))
    assert luck[0].startswith("Fine-tuning won") and "may be luck" in luck[1]


def test_reading_compares_transfer_with_from_scratch_and_the_batchnorm_pitfall():
    table = _table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.90, "final_val_loss": 0.3, "seconds": 10.0},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.94, "final_val_loss": 0.2, "seconds": 20.0},
        {"run_id": "c", "label": compare.BN_PITFALL_LABEL, "strategy": "fine_tuning",
         "final_val_accuracy": 0.70, "final_val_loss": 0.9, "seconds": 20.0},
        {"run_id": "d", "label": "from scratch", "strategy": "from_scratch", "weights": "random",
         "final_val_accuracy": 0.40, "final_val_loss": 1.3, "seconds": 60.0},
    ])
    sentences = compare.reading(table)
    assert sentences[0].startswith("Fine-tuning won")
    assert any(s.startswith("From scratch reached only 40.0%, 54.0 percentage points below fine-tuning")
               for s in sentences)
    assert any("Letting BatchNorm train cost 24.0 percentage points" in s for s in sentences)


def test_reading_counts_cached_features_in_the_time_comparison():
    table = _table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.90, "final_val_loss": 0.3, "seconds": 12.0, "feature_seconds": 10.0},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning", "cached_features": True,
         "final_val_accuracy": 0.95, "final_val_loss": 0.2, "seconds": 8.0, "feature_seconds": 1.0},
    ])
    sentences = compare.reading(table)
    # 8 s + the 10 s of features it reused = 18 s, against 12 s: fine-tuning is slower, not faster.
    assert "took 1.5x as long: 18 s in total" in sentences[1]
    assert "reused backbone features from the cache" in sentences[1]


def test_reading_gives_a_head_epochs_hundredths_of_a_second():
    # A head epoch on cached features takes hundredths of a second: "0.03 s", not "0.0 s".
    table = _table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.50, "final_val_loss": 1.2, "seconds": 1.3, "seconds_per_epoch": 0.031},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.75, "final_val_loss": 0.8, "seconds": 3.5, "seconds_per_epoch": 0.2},
    ])
    sentences = compare.reading(table)
    assert "3.5 s in total (0.2 s per epoch) against 1.3 s (0.03 s per epoch)" in sentences[1]


def test_reading_with_too_few_runs_says_so():
    assert "No run has a validation score" in compare.reading(_table([]))[0]
    one = _table([{"run_id": "a", "label": "fine-tuning", "strategy": "fine_tuning", "final_val_accuracy": 0.5,
                   "final_val_loss": 1.0, "seconds": 1.0}])
    assert "Pick at least two runs" in compare.reading(one)[0]


def test_reading_does_not_blame_fine_tuning_for_a_gap_feature_extraction_has_too():
    table = _table([
        {"run_id": "a", "label": "feature extraction", "strategy": "feature_extraction",
         "final_val_accuracy": 0.86, "final_val_loss": 0.35, "seconds": 10.0},
        {"run_id": "b", "label": "fine-tuning", "strategy": "fine_tuning",
         "final_val_accuracy": 0.88, "final_val_loss": 0.30, "seconds": 12.0},
    ])
    curves = pd.concat([
        _curve("a", "feature extraction", [("head", 0.4, 0.90, 0.40, 0.84), ("head", 0.3, 0.97, 0.35, 0.86)]),
        _curve("b", "fine-tuning", [("head", 0.4, 0.90, 0.40, 0.84), ("fine_tune", 0.1, 0.99, 0.30, 0.88)]),
    ])
    sentences = compare.reading(table, curves)
    assert any("feature extraction shows the same gap" in s and "did not add overfitting" in s for s in sentences)
    assert not any("shows overfitting" in s for s in sentences)


def test_start_comparison_starts_nothing_when_a_run_would_fail(tiny_dataset, tmp_path, monkeypatch):
    from transfer_core import jobs, zoo

    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # No cached weights either.
    started = []
    monkeypatch.setattr(jobs, "start_run", lambda *args, **kwargs: started.append(1))
    with pytest.raises(zoo.WeightsUnavailableError):
        compare.start_comparison(tiny_dataset, ModelSpec(input_size=96, weights="imagenet"), FreezePlan(),
                                 TrainConfig(), ["feature_extraction", "fine_tuning"], tmp_path / "runs",
                                 Settings(home=tmp_path))
    assert started == []
