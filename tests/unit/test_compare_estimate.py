"""How long a comparison will take (before it starts), the from-scratch time budget, test accuracy."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from helpers.datasets import tiny_dataset_in, tiny_demo_dataset
from helpers.models import TINY_MODEL
from helpers.runs import make_finished_run, tiny_config

from transfer_core import compare
from transfer_core.compare.estimate import (
    ROUGH_OVERHEAD_SECONDS,
    Speeds,
    features_cached,
    speed_key,
)
from transfer_core.config import DatasetSpec, FreezePlan, ModelSpec, Settings, TrainConfig
from transfer_core.display.run_text import format_seconds
from transfer_core.report import RunReport
from transfer_core.runs import EventLog, RunStore, load_run
from transfer_core.training.budget import resolve_time_budget

PRETRAINED = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="imagenet")
PLAN = FreezePlan(mode="top_blocks", top_blocks=2)
TRAIN = TrainConfig(epochs=3, fine_tune_epochs=2, batch_size=8)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> DatasetSpec:
    """The tiny data set at 10 images per class, the size these tests were written with."""
    return tiny_dataset_in(tmp_path_factory, images_per_class=10)


@pytest.fixture(scope="module")
def tested_dataset(tmp_path_factory) -> DatasetSpec:
    """A demo set with a held-out test split."""
    from transfer_core.data import read_manifest, resplit

    spec = tiny_demo_dataset(tmp_path_factory.mktemp("tested") / "data", images_per_class=10)
    spec = resplit(spec, seed=0, val_fraction=0.25, test_fraction=0.25)
    assert (read_manifest(spec)["split"] == "test").sum() > 0
    return spec


def _configs(dataset, strategies=("feature_extraction", "fine_tuning", "from_scratch"), model=PRETRAINED):
    return compare.comparison_configs(dataset, model, PLAN, TRAIN, list(strategies), group="g")


def _speeds(**rates: float) -> Speeds:
    return Speeds({speed_key("mobilenet_v2_0.35", 96, stage): rate for stage, rate in rates.items()},
                  {speed_key("mobilenet_v2_0.35", 96, "overhead"): 2.0})


# ----- the estimate -------------------------------------------------------------------------------


def test_estimate_from_measured_rates_adds_up_each_stage(tiny_dataset):
    speeds = _speeds(features=60.0, head=1000.0, fine_tune=200.0, scratch=10.0)
    estimate = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                           params=1_700_000, speeds=speeds)
    fe, ft, scratch = estimate.runs
    # Feature extraction: features once (120 images at 60/s), 5 head epochs of 100 images at 1000/s, overhead.
    assert fe.seconds == pytest.approx(2.0 + 5 * 0.1 + 2.0)
    assert fe.basis == "measured" and "features computed once" in fe.detail
    # Fine-tuning reads the features feature extraction has just cached: head and fine-tuning epochs only.
    assert ft.seconds == pytest.approx(3 * 0.1 + 2 * 0.5 + 2.0)
    assert ft.basis == "cached features"
    # From scratch: 5 epochs of 100 images at 10/s.
    assert scratch.seconds == pytest.approx(5 * 10.0 + 2.0)
    assert estimate.total_seconds == pytest.approx(fe.seconds + ft.seconds + scratch.seconds)
    assert not estimate.rough and not estimate.is_long and estimate.warning is None


def test_same_time_budget_caps_from_scratch_at_fine_tunings_training_time(tiny_dataset):
    speeds = _speeds(features=60.0, head=1000.0, fine_tune=200.0, scratch=10.0)
    capped = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                         params=1_700_000, speeds=speeds, same_time_budget=True)
    assert capped.runs[2].seconds == pytest.approx(3 * 0.1 + 2 * 0.5 + 2.0)
    assert "capped at fine-tuning's training time" in capped.runs[2].detail


def test_features_already_cached_cost_only_head_epochs(tiny_dataset, tmp_path):
    # A finished feature-extraction run on the same images, backbone and size left its features on disk.
    store = RunStore(tmp_path / "runs")
    earlier = _configs(tiny_dataset, ["feature_extraction"])[0]
    run_dir = store.create(earlier)
    (run_dir / "report.json").write_text(json.dumps({"status": "finished", "input_size": 96, "val_accuracy": 0.9}))
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "finished", "reason": ""})
    runs = store.list_runs()
    assert features_cached(earlier, runs, 96)
    assert not features_cached(earlier, runs, 128)  # Another input size: other features.
    speeds = _speeds(features=60.0, head=1000.0)
    estimate = compare.estimate_comparison(_configs(tiny_dataset, ["feature_extraction"]), num_train=100,
                                           num_val=20, input_size=96, params=1_700_000, speeds=speeds, runs=runs)
    assert estimate.runs[0].seconds == pytest.approx(5 * 0.1 + 2.0)
    assert estimate.runs[0].basis == "cached features"
    assert "features from the cache" in estimate.runs[0].detail


def test_rough_default_when_nothing_is_measured_grows_with_parameters(tiny_dataset):
    configs = _configs(tiny_dataset)
    small = compare.estimate_comparison(configs, num_train=100, num_val=20, input_size=96, params=500_000)
    large = compare.estimate_comparison(configs, num_train=100, num_val=20, input_size=96, params=5_000_000)
    assert small.rough and all(run.basis == "rough" for run in small.runs)
    assert all(run.seconds > ROUGH_OVERHEAD_SECONDS for run in small.runs)
    assert large.total_seconds > 5 * (small.total_seconds - 3 * ROUGH_OVERHEAD_SECONDS)
    # From scratch trains every layer on images: the most expensive by far.
    assert small.runs[2].seconds == max(run.seconds for run in small.runs)


def test_a_comparison_over_three_minutes_is_warned_about(tiny_dataset):
    configs = _configs(tiny_dataset)
    short = compare.estimate_comparison(configs, num_train=40, num_val=10, input_size=96, params=500_000)
    long = compare.estimate_comparison(configs, num_train=1030, num_val=258, input_size=224, params=1_700_000)
    assert short.total_seconds < compare.LONG_COMPARISON_SECONDS and short.warning is None
    assert long.is_long
    assert long.warning.startswith(f"This comparison will take about {format_seconds(long.total_seconds)}")
    assert "from scratch" in long.warning  # The slowest run is named.


def test_speeds_are_measured_from_finished_runs_and_kept_in_the_speed_file(tiny_dataset, tmp_path):
    settings = Settings(home=tmp_path / "home")
    runs_dir = tmp_path / "home" / "runs"
    make_finished_run(runs_dir, tiny_config(tiny_dataset, strategy="fine_tuning", epochs=2, fine_tune_epochs=2),
                      settings)
    runs = RunStore(runs_dir).list_runs()
    measured = compare.measured_speeds(runs)
    head = measured.images_per_second[speed_key("mobilenet_v2_0.35", 32, "head")]
    fine_tune = measured.images_per_second[speed_key("mobilenet_v2_0.35", 32, "fine_tune")]
    assert head > 0 and fine_tune > 0
    assert measured.overhead_seconds[speed_key("mobilenet_v2_0.35", 32, "overhead")] > 0
    path = compare.speed_file(settings)
    assert path == settings.home / "cache" / "speed.json"
    stored = compare.record_speeds(path, runs)
    assert stored == measured == compare.load_speeds(path)
    # An older measurement of another key survives a later merge.
    path.write_text(json.dumps({"images_per_second": {"other|96|head": 5.0}, "overhead_seconds": {}}))
    merged = compare.record_speeds(path, runs)
    assert merged.images_per_second["other|96|head"] == 5.0 and head == merged.images_per_second[
        speed_key("mobilenet_v2_0.35", 32, "head")]
    assert compare.load_speeds(tmp_path / "missing.json") == Speeds()


# ----- the time budget ------------------------------------------------------------------------------


def test_a_run_with_a_time_budget_stops_at_an_epoch_boundary_and_finishes(tiny_dataset, tmp_path):
    settings = Settings(home=tmp_path / "home")
    config = tiny_config(tiny_dataset, strategy="from_scratch", epochs=5, time_budget_seconds=0.001)
    run_dir, result = make_finished_run(tmp_path / "home" / "runs", config, settings)
    report = RunReport.from_dict(result.report)
    assert result.status == "finished"
    assert report.epochs == 1 and report.epochs_planned == 5
    assert report.stopped_by_budget and report.time_budget_seconds == 0.001
    assert result.reason.startswith("time budget used:") and "after 1 of 5 epochs" in result.reason
    assert report.val_accuracy is not None  # Evaluated like any finished run.
    started = next(e for e in load_run(run_dir).events() if e["type"] == "run_started")
    assert started["time_budget_seconds"] == 0.001


def test_without_a_budget_every_epoch_runs(tiny_dataset, tmp_path):
    result = make_finished_run(tmp_path / "runs", tiny_config(tiny_dataset, strategy="from_scratch", epochs=2),
                               Settings(home=tmp_path))[1]
    report = RunReport.from_dict(result.report)
    assert report.epochs == 2 and not report.stopped_by_budget and report.time_budget_seconds is None


def test_budget_from_another_run_is_its_training_time(tmp_path):
    run_dir = tmp_path / "ft"
    run_dir.mkdir()
    (run_dir / "report.json").write_text(json.dumps({"status": "finished", "training_seconds": 41.5}))
    assert resolve_time_budget(TrainConfig(time_budget_from=str(run_dir))) == 41.5
    # A failed or missing source run gives no budget: the run trains its epochs.
    (run_dir / "report.json").write_text(json.dumps({"status": "failed", "reason": "x"}))
    assert resolve_time_budget(TrainConfig(time_budget_from=str(run_dir))) is None
    assert resolve_time_budget(TrainConfig(time_budget_from=str(tmp_path / "nope"))) is None
    assert resolve_time_budget(TrainConfig(time_budget_seconds=3.0, time_budget_from=str(run_dir))) == 3.0
    with pytest.raises(ValueError, match="time_budget_seconds"):
        TrainConfig(time_budget_seconds=0)


def test_start_comparison_gives_from_scratch_fine_tunings_time(tiny_dataset, tmp_path, monkeypatch):
    from transfer_core import jobs, training

    started = []

    def fake_start(config, *, runs_dir, settings=None, after=None):
        started.append(config)
        return runs_dir / f"run{len(started)}"

    monkeypatch.setattr(jobs, "start_run", fake_start)
    monkeypatch.setattr(training, "preflight", lambda config, settings=None: None)
    dirs = compare.start_comparison(tiny_dataset, TINY_MODEL, PLAN, TRAIN,
                                    ["feature_extraction", "fine_tuning", "from_scratch"], tmp_path,
                                    Settings(home=tmp_path), same_time_budget=True)
    assert [c.train.time_budget_from for c in started] == ["", "", str(dirs[1])]
    started.clear()
    compare.start_comparison(tiny_dataset, TINY_MODEL, PLAN, TRAIN, ["fine_tuning", "from_scratch"], tmp_path,
                             Settings(home=tmp_path))
    assert [c.train.time_budget_from for c in started] == ["", ""]


def test_reading_names_the_budget_from_scratch_used_with_real_runs(tiny_dataset, tmp_path):
    settings = Settings(home=tmp_path / "home")
    runs_dir = tmp_path / "home" / "runs"
    ft_dir, _ = make_finished_run(runs_dir, tiny_config(tiny_dataset, strategy="fine_tuning", epochs=1,
                                                        fine_tune_epochs=1), settings)
    budget = load_run(ft_dir).report.training_seconds
    scratch = tiny_config(tiny_dataset, strategy="from_scratch", epochs=60, time_budget_from=str(ft_dir))
    scratch_dir, result = make_finished_run(runs_dir, scratch, settings)
    report = RunReport.from_dict(result.report)
    assert report.time_budget_seconds == pytest.approx(budget)
    assert report.stopped_by_budget and report.epochs < 60
    # Within one batch of the budget (tests/unit/test_training_budget_best.py pins the bound), so within an epoch.
    assert abs(report.training_seconds - budget) <= load_run(scratch_dir).metrics()["seconds"].max()
    table = compare.comparison_table([load_run(ft_dir), load_run(scratch_dir)])
    row = table.iloc[1]
    assert bool(row["stopped_by_budget"]) and row["epochs_planned"] == 60
    sentences = compare.reading(table)
    used = report.training_seconds
    assert any(s.startswith(f"From scratch trained for {used:.1f} s" if used < 10 else
                            f"From scratch trained for {used:.0f} s") and
               (f"fine-tuning for {budget:.1f} s" if budget < 10 else f"fine-tuning for {budget:.0f} s") in s and
               f": {report.epochs} of 60 epochs" in s for s in sentences), sentences


def test_reading_says_same_number_of_epochs_without_a_budget():
    table = pd.DataFrame([
        {"run_id": "a", "label": "fine-tuning", "strategy": "fine_tuning", "weights": "imagenet",
         "final_val_accuracy": 0.9, "final_val_loss": 0.3, "seconds": 10.0, "epochs": 10, "num_val": 50,
         "cached_features": False},
        {"run_id": "b", "label": "from scratch", "strategy": "from_scratch", "weights": "random",
         "final_val_accuracy": 0.5, "final_val_loss": 1.3, "seconds": 100.0, "epochs": 10, "num_val": 50,
         "cached_features": False},
    ], columns=compare.TABLE_COLUMNS)
    sentences = compare.reading(table)
    assert any("From scratch trained for the same number of epochs (10)" in s for s in sentences)
    budgeted = table.assign(time_budget_seconds=[None, 41.0], stopped_by_budget=[False, True],
                            epochs=[10, 7], epochs_planned=[10, 40], training_seconds=[41.0, 42.5])
    assert any("From scratch trained for 42 s and fine-tuning for 41 s, its budget: 7 of 40 epochs, so the two "
               "are compared at equal training time." in s for s in compare.reading(budgeted))
    # One epoch longer than the budget used to be reported as "the same" time; the reading says it was not.
    overran = budgeted.assign(training_seconds=[14.0, 146.0], time_budget_seconds=[None, 14.0], epochs=[10, 1])
    assert any("From scratch trained for 146 s and fine-tuning for 14 s" in s and "more time than fine-tuning" in s
               for s in compare.reading(overran))


# ----- test accuracy -------------------------------------------------------------------------------


def test_test_accuracy_in_table_reading_csv_and_json(tested_dataset, tmp_path):
    settings = Settings(home=tmp_path / "home")
    runs_dir = tmp_path / "home" / "runs"
    for strategy in ("feature_extraction", "fine_tuning"):
        make_finished_run(runs_dir, tiny_config(tested_dataset, strategy=strategy, epochs=1, fine_tune_epochs=1),
                          settings)
    runs = sorted(RunStore(runs_dir).list_runs(), key=lambda info: info.created)
    table = compare.comparison_table(runs)
    expected = [info.report.test_accuracy for info in runs]
    assert all(value is not None for value in expected)
    assert table["test_accuracy"].tolist() == pytest.approx(expected)
    assert (table["num_test"] > 0).all()
    sentences = compare.reading(table)
    quoted = next(s for s in sentences if s.startswith("Test accuracy — the number to quote"))
    assert "never used to choose anything" in quoted
    assert f"{expected[0]:.1%}" in quoted and f"({int(table['num_test'].iloc[0])} test images)" in quoted
    csv = pd.read_csv(io.StringIO(compare.results_csv(table)))
    assert csv["test_accuracy"].tolist() == pytest.approx(expected)
    payload = json.loads(compare.results_json(table, None, sentences))
    assert [run["test_accuracy"] for run in payload["runs"]] == pytest.approx(expected)
    assert quoted in payload["reading"]


def test_no_test_split_no_test_sentence(tiny_dataset, tmp_path):
    runs_dir = tmp_path / "runs"
    for strategy in ("feature_extraction", "fine_tuning"):
        make_finished_run(runs_dir, tiny_config(tiny_dataset, strategy=strategy, epochs=1, fine_tune_epochs=1),
                          Settings(home=tmp_path))
    table = compare.comparison_table(RunStore(runs_dir).list_runs())
    assert table["test_accuracy"].isna().all()
    assert not any("number to quote" in s for s in compare.reading(table))
