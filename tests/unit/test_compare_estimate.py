"""How long a comparison will take (before it starts), the from-scratch time budget, test accuracy."""

from __future__ import annotations

import dataclasses
import io
import json

import pandas as pd
import pytest
from helpers.datasets import tiny_dataset_in, tiny_demo_dataset
from helpers.models import TINY_MODEL
from helpers.runs import make_finished_run, tiny_config

from transfer_core import compare
from transfer_core.compare.estimate import Speeds, features_cached, speed_key
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


KEY = ("mobilenet_v2_0.35", 96)
# Every part of the three runs, measured: rates in images per second, fixed costs in seconds.
RATES = {"features": 60.0, "prefix": 120.0, "decode": 400.0, "head|train": 1000.0, "head|val": 4000.0,
         "fine_tune|train": 200.0, "fine_tune|val": 400.0, "scratch|train": 10.0, "scratch|val": 40.0,
         "eval": 60.0}
FIXED = {"handoff": 0.1, "feature_extraction|start": 1.0, "fine_tuning|start": 1.0, "from_scratch|start": 1.0,
         "head|trace": 0.2, "fine_tune|trace": 0.5, "scratch|trace": 8.0, "features|hit": 0.05, "prefix|hit": 0.05,
         "decode|hit": 0.05, "end": 0.5, "eval|trace": 1.0, "convert": 1.5}


def _speeds(rates=RATES, fixed=FIXED) -> Speeds:
    return Speeds({speed_key(*KEY, part): (rate,) for part, rate in rates.items()},
                  {speed_key(*KEY, part): (seconds,) for part, seconds in fixed.items()})


def _epochs(epochs, train_rate, val_rate, trace, num_train=100, num_val=20, batch=8):
    """An epoch stage: its trace holds the first batch; then steady train steps and validation passes."""
    return trace + epochs * (num_train / train_rate + num_val / val_rate) - batch / train_rate


# ----- the estimate -------------------------------------------------------------------------------


def test_estimate_from_measured_parts_adds_up_each_part(tiny_dataset):
    estimate = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                           params=1_700_000, speeds=_speeds())
    fe, ft, scratch = estimate.runs
    # Feature extraction: reach a worker, start, convert the pooled backbone for LiteRT (nothing on this
    # server did yet), features once (120 images at 60/s), 5 head epochs, end.
    assert fe.seconds == pytest.approx(0.1 + 1.0 + 1.5 + 120 / 60 + _epochs(5, 1000, 4000, 0.2) + 0.5)
    assert fe.basis == "measured" and "features computed once" in fe.detail
    # Fine-tuning reads the features feature extraction has just cached, converts its prefix and computes
    # its outputs once.
    assert ft.seconds == pytest.approx(0.1 + 1.0 + 0.05 + _epochs(3, 1000, 4000, 0.2) + 1.5 + 120 / 120
                                       + _epochs(2, 200, 400, 0.5) + 0.5)
    assert "features from the cache" in ft.detail and "prefix computed once" in ft.detail
    # From scratch decodes the images once, trains 5 epochs, then evaluates validation through the network
    # (20 images at 60 per second).
    assert scratch.seconds == pytest.approx(0.1 + 1.0 + 120 / 400 + _epochs(5, 10, 40, 8.0) + 0.5 + 1.0 + 20 / 60)
    assert estimate.total_seconds == pytest.approx(fe.seconds + ft.seconds + scratch.seconds)
    assert estimate.confidence == "measured" and not estimate.rough
    assert estimate.sureness.startswith("±30 %: from this server's own runs")
    # Each part in words a reader can use: a few hundredths of a second is "under 0.1 s", never "~0 s".
    assert "5 head epochs of ~" in fe.detail and "+ ~" in fe.detail
    assert all("~0 s" not in run.detail and "~0.0 s" not in run.detail for run in estimate.runs)
    assert estimate.is_long is (estimate.total_seconds > compare.LONG_COMPARISON_SECONDS)


def test_test_images_are_evaluated_through_the_network_at_the_measured_rate(tiny_dataset):
    with_test = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, num_test=30,
                                            input_size=96, params=1_700_000, speeds=_speeds())
    plain = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                        params=1_700_000, speeds=_speeds())
    # Feature extraction's and fine-tuning's last stages trained on cached inputs: their test images go
    # through the same frozen part (features computed by the first run, the prefix by fine-tuning);
    # from scratch evaluates them through the whole network.
    extra = [tested.seconds - untested.seconds for tested, untested in zip(with_test.runs, plain.runs, strict=True)]
    assert extra == pytest.approx([30 / 60, 30 / 120, 30 / 60])
    assert "30 test images through the frozen part" in with_test.runs[1].detail


def test_a_trace_is_a_warm_workers_and_only_first_traces_are_scaled_to_one(tiny_dataset):
    """A comparison's runs go to the warm worker of the runs before them: it retraces a stage faster than
    a new process traces it the first time (~6 s against ~9 s from scratch), which may be all that was measured."""
    def scratch_seconds(fixed):
        estimate = compare.estimate_comparison(_configs(tiny_dataset, ["from_scratch"]), num_train=100, num_val=20,
                                               input_size=96, params=1_700_000, speeds=_speeds(fixed=fixed))
        assert estimate.confidence == "measured", estimate.sureness
        return estimate.runs[0].seconds

    warm = scratch_seconds(FIXED)
    without_trace = {part: seconds for part, seconds in FIXED.items() if part != "scratch|trace"}
    first_only = scratch_seconds({**without_trace, "scratch|trace:first": 12.0})
    assert first_only - warm == pytest.approx(12.0 * compare.estimate.WARM_TRACE_FRACTION - 8.0)
    # Both measured: the warm worker's trace.
    assert scratch_seconds({**FIXED, "scratch|trace:first": 12.0}) == pytest.approx(warm)


def test_same_time_budget_caps_from_scratch_at_fine_tunings_training_time(tiny_dataset):
    capped = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                         params=1_700_000, speeds=_speeds(), same_time_budget=True)
    fine_tune_training = _epochs(3, 1000, 4000, 0.2) + _epochs(2, 200, 400, 0.5)
    # Checked after every batch, but the first batch (in the 8 s trace) always runs, then the epoch validates.
    assert fine_tune_training < 8.0
    assert capped.runs[2].seconds == pytest.approx(0.1 + 1.0 + 120 / 400 + 8.0 + 20 / 40 + 0.5 + 1.0 + 20 / 60)
    assert "capped at fine-tuning's training time" in capped.runs[2].detail
    # A capped run never measures its steady rate, and its time does not depend on it; nor is reading a cache
    # (well under a second) worth a doubt: the estimate stays measured without either.
    rates = {part: rate for part, rate in RATES.items() if part != "scratch|train"}
    fixed = {part: seconds for part, seconds in FIXED.items() if not part.endswith("|hit")}
    unmeasured = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                             params=1_700_000, speeds=_speeds(rates, fixed), same_time_budget=True)
    assert unmeasured.confidence == "measured", unmeasured.sureness
    # A longer fine-tuning budget is what from scratch trains, plus its last validation pass.
    slow = _speeds(fixed={**FIXED, "fine_tune|trace": 30.0})
    capped = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                         params=1_700_000, speeds=slow, same_time_budget=True)
    budget = _epochs(3, 1000, 4000, 0.2) + _epochs(2, 200, 400, 30.0)
    assert capped.runs[2].seconds == pytest.approx(0.1 + 1.0 + 120 / 400 + budget + 20 / 40 + 0.5 + 1.0 + 20 / 60)


def _finished(store, config, input_size=96):
    run_dir = store.create(config)
    (run_dir / "report.json").write_text(json.dumps({"status": "finished", "input_size": input_size,
                                                     "val_accuracy": 0.9}))
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "finished", "reason": ""})


def test_what_finished_runs_left_in_the_cache_costs_only_reading_it(tiny_dataset, tmp_path):
    # A finished comparison on the same images, backbone and size left features, prefix outputs and decoded images.
    store = RunStore(tmp_path / "runs")
    earlier = _configs(tiny_dataset)
    for config in earlier:
        _finished(store, config)
    runs = store.list_runs()
    assert features_cached(earlier[0], runs, 96)
    assert not features_cached(earlier[0], runs, 128)  # Another input size: other features.
    assert features_cached(earlier[1], runs, 96, "prefix") and features_cached(earlier[2], runs, 96, "decode")
    other_plan = dataclasses.replace(earlier[1], freeze=FreezePlan(mode="top_blocks", top_blocks=3))
    assert not features_cached(other_plan, runs, 96, "prefix")  # Other blocks: another prefix.
    estimate = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                           params=1_700_000, speeds=_speeds(), runs=runs)
    fe, ft, scratch = estimate.runs
    assert fe.seconds == pytest.approx(0.1 + 1.0 + 0.05 + _epochs(5, 1000, 4000, 0.2) + 0.5)
    assert ft.seconds == pytest.approx(0.1 + 1.0 + 0.05 + _epochs(3, 1000, 4000, 0.2) + 0.05
                                       + _epochs(2, 200, 400, 0.5) + 0.5)
    assert scratch.seconds == pytest.approx(0.1 + 1.0 + 0.05 + _epochs(5, 10, 40, 8.0) + 0.5 + 1.0 + 20 / 60)
    assert all("from the cache" in run.detail for run in estimate.runs)


def test_a_frozen_part_is_converted_for_litert_once_per_backbone_size_and_cut_on_any_data(tiny_dataset, tmp_path):
    """The converted networks do not depend on the data set: a finished run on other photos converted them."""
    def seconds(runs=(), **kwargs):
        estimate = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                               params=1_700_000, speeds=_speeds(), runs=runs, **kwargs)
        return [run.seconds for run in estimate.runs], estimate

    first, estimate = seconds()
    assert "converting it for LiteRT first (~1.5 s)" in estimate.runs[0].detail
    # With LiteRT off (TensorFlow runs every frozen pass) nothing converts: the pooled backbone (feature
    # extraction) and the prefix (fine-tuning) cost one conversion each, from scratch none.
    no_litert, _ = seconds(litert=False)
    assert [a - b for a, b in zip(first, no_litert, strict=True)] == pytest.approx([1.5, 1.5, 0.0])
    other_photos = dataclasses.replace(tiny_dataset, root=tmp_path / "other")
    store = RunStore(tmp_path / "runs")
    for config in _configs(other_photos):
        _finished(store, config)
    runs = store.list_runs()
    assert compare.estimate.litert_converted(_configs(tiny_dataset)[0], runs, 96)
    assert not features_cached(_configs(tiny_dataset)[0], runs, 96)  # Their features are other photos'.
    converted, estimate = seconds(runs)
    assert converted == pytest.approx(no_litert)
    assert "LiteRT" not in " ".join(run.detail for run in estimate.runs)
    # Another input size or other frozen blocks: another network to convert.
    assert not compare.estimate.litert_converted(_configs(tiny_dataset)[0], runs, 128)
    other_plan = dataclasses.replace(_configs(tiny_dataset)[1], freeze=FreezePlan(mode="top_blocks", top_blocks=3))
    assert not compare.estimate.litert_converted(other_plan, runs, 96, "prefix")


def test_rough_default_when_nothing_is_measured_grows_with_parameters(tiny_dataset):
    configs = _configs(tiny_dataset)
    small = compare.estimate_comparison(configs, num_train=100, num_val=20, input_size=96, params=500_000)
    large = compare.estimate_comparison(configs, num_train=100, num_val=20, input_size=96, params=5_000_000)
    assert small.confidence == "rough" and all(run.basis == "rough" for run in small.runs)
    assert small.sureness.startswith("rough guess: nothing measured")
    assert large.total_seconds > 1.5 * small.total_seconds
    # From scratch trains every layer on images: the most expensive by far.
    assert small.runs[2].seconds == max(run.seconds for run in small.runs)


def test_a_part_not_measured_makes_the_estimate_partly_measured_and_says_which(tiny_dataset):
    rates = {part: rate for part, rate in RATES.items() if not part.startswith("scratch")}
    estimate = compare.estimate_comparison(_configs(tiny_dataset), num_train=100, num_val=20, input_size=96,
                                           params=1_700_000, speeds=_speeds(rates=rates))
    assert [run.basis for run in estimate.runs] == ["measured", "measured", "partly measured"]
    assert estimate.confidence == "partly measured"
    assert ("from-scratch epochs (training steps); from-scratch epochs (validation) not measured"
            in estimate.sureness), estimate.sureness
    assert "30 %" in estimate.sureness and not estimate.sureness.startswith("±")


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
    size = runs[0].report.input_size
    assert measured.recorded == {runs[0].run_id}
    for part in ("head|train", "head|val", "fine_tune|train", "fine_tune|val"):
        assert measured.rate("mobilenet_v2_0.35", size, part) > 0, part
    for part in ("fine_tuning|start", "end"):
        assert measured.seconds("mobilenet_v2_0.35", size, part) >= 0, part
    for stage in ("head", "fine_tune"):
        # A first trace or a later one, by whether this test process trained the stage before.
        traces = [measured.seconds("mobilenet_v2_0.35", size, f"{stage}|{kind}") for kind in ("trace", "trace:first")]
        assert [trace is not None and trace >= 0 for trace in traces].count(True) == 1, stage
    path = compare.speed_file(settings)
    assert path == settings.home / "cache" / "speed.json"
    stored = compare.record_speeds(path, runs)
    assert stored == measured == compare.load_speeds(path)
    # A run already recorded is not read (nor counted) twice.
    assert compare.record_speeds(path, runs) == stored
    # A speed file of the older format (one rate per stage, validation mixed in) is not trusted.
    path.write_text(json.dumps({"images_per_second": {"other|96|head": 5.0}, "overhead_seconds": {}}))
    assert compare.load_speeds(path) == Speeds()
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
    assert any("From scratch trained for 2 min 26 s and fine-tuning for 14 s" in s and "more time than fine-tuning" in s
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
