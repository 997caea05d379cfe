"""What a finished run's events measure for the estimate: each part from known event times (no TensorFlow)."""

from __future__ import annotations

import json

import pytest

from transfer_core.compare.speeds import KEPT, ROUGH_END_SECONDS, Speeds, load_speeds, run_speeds, speed_key

BACKBONE, SIZE = "mobilenet_v2_0.35", 224


def _events(stage_list, *, queued=100.0, starting=101.0, num_train=64, num_val=20, batch_size=32):
    """A run's events at known times. ``stage_list``: (name, cached, [(kind, seconds), ...]) with kinds
    ``batch`` (a batch ends after those seconds), ``epoch`` (an epoch ends), ``progress_cached``, ``pass``."""
    events = [{"type": "queued", "time": queued}, {"type": "starting", "time": starting},
              {"type": "run_started", "time": starting + 0.5, "num_train": num_train, "num_val": num_val,
               "batch_size": batch_size}]
    now = starting + 2.0  # The first stage starts 2 s after "starting".
    for name, cached, steps in stage_list:
        events.append({"type": "stage", "stage": name, "cached": cached, "epochs": 0, "time": now})
        epoch, batch = 1, 0
        for kind, seconds in steps:
            now += seconds
            if kind == "batch":
                batch += 1
                events.append({"type": "batch_end", "stage": name, "epoch": epoch, "batch": batch, "time": now})
            elif kind == "epoch":
                events.append({"type": "epoch_end", "stage": name, "epoch": epoch, "time": now})
                epoch, batch = epoch + 1, 0
            elif kind == "progress_cached":
                events.append({"type": "progress", "stage": name, "done": 1, "total": 1, "cached": True,
                               "time": now})
    events.append({"type": "finished", "reason": "", "time": now + 3.0})
    return events


def _value(speeds: Speeds, part: str) -> float:
    key = speed_key(BACKBONE, SIZE, part)
    values = speeds.images_per_second.get(key) or speeds.overhead_seconds[key]
    assert len(values) == 1
    return values[0]


def test_each_part_of_a_fine_tuning_run_is_measured_from_its_events():
    events = _events([
        ("features", True, [("progress_cached", 0.1)]),  # Read from the cache: a hit, 0.1 s.
        # Head: first batch 1.0 s (tracing), then 0.032 s per batch of 32, validation 0.02 s, twice.
        ("head", True, [("batch", 1.0), ("batch", 0.032), ("epoch", 0.5), ("batch", 0.032), ("batch", 0.032),
                        ("epoch", 0.02)]),
        ("prefix", True, [("pass", 4.2)]),  # Computed: 84 images in 4.2 s.
        ("fine_tune", True, [("batch", 2.0), ("batch", 0.32), ("epoch", 0.4)]),
    ])
    speeds = run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="fine_tuning", num_test=10,
                        run_id="r1")
    assert speeds.recorded == {"r1"}
    assert _value(speeds, "handoff") == pytest.approx(1.0)
    assert _value(speeds, "fine_tuning|start") == pytest.approx(2.0)
    assert _value(speeds, "features|hit") == pytest.approx(0.1)
    assert _value(speeds, "prefix") == pytest.approx(84 / 4.2)
    assert _value(speeds, "head|train") == pytest.approx(32 / 0.032)
    # The steady validation is the later epochs' (the first one traced its step).
    assert _value(speeds, "head|val") == pytest.approx(20 / 0.02)
    # What the head took beyond 96 steady images and 2 validation passes.
    head_total = 1.0 + 0.032 + 0.5 + 0.032 + 0.032 + 0.02
    assert _value(speeds, "head|trace") == pytest.approx(head_total - 96 * 0.001 - 2 * 0.02)
    assert _value(speeds, "fine_tune|train") == pytest.approx(32 / 0.32)
    assert _value(speeds, "fine_tune|trace") == pytest.approx(2.72 - 32 * 0.01 - 0.4)
    # The end (3 s) sent 10 test images through the frozen prefix at the rate its stage measured
    # (the last stage trained on its cached outputs): the rest is the fixed end.
    assert _value(speeds, "end") == pytest.approx(3.0 - 10 / (84 / 4.2))
    assert speed_key(BACKBONE, SIZE, "eval") not in speeds.images_per_second
    # Without a test split the end is all the fixed part.
    untested = run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="fine_tuning")
    assert _value(untested, "end") == pytest.approx(3.0)
    assert speed_key(BACKBONE, SIZE, "eval") not in untested.images_per_second
    assert speed_key(BACKBONE, SIZE, "features") not in speeds.images_per_second


def test_a_run_whose_last_stage_read_images_evaluates_its_test_split_through_the_whole_network():
    events = _events([
        ("head", False, [("batch", 1.0), ("batch", 0.032), ("epoch", 0.5)]),
        ("fine_tune", False, [("batch", 2.0), ("batch", 0.32), ("epoch", 0.4)]),
    ])
    speeds = run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="fine_tuning", num_test=10)
    # The end (3 s) evaluated the 10 test and 20 validation images beyond the 1 s of an end without
    # (not measured yet: the default).
    assert _value(speeds, "eval") == pytest.approx(30 / (3.0 - ROUGH_END_SECONDS))
    assert speed_key(BACKBONE, SIZE, "end") not in speeds.overhead_seconds


def test_evaluated_events_tell_the_trace_of_the_forward_pass_from_its_per_image_cost():
    events = _events([("scratch", False, [("batch", 8.0), ("batch", 2.0), ("epoch", 1.0)])])
    finished = events.pop()
    # 3 s from the last epoch to finished: validation (20 images, the first batch of 8 tracing: 1.0 s)
    # and test (40 images) took 1.2 + 0.8 s; the rest is the fixed end.
    events += [{"type": "evaluated", "split": "val", "images": 20, "seconds": 1.2, "first_batch_images": 8,
                "first_batch_seconds": 1.0, "time": finished["time"] - 1.0},
               {"type": "evaluated", "split": "test", "images": 40, "seconds": 0.8, "first_batch_images": 0,
                "first_batch_seconds": 0.0, "time": finished["time"] - 0.2}, finished]
    speeds = run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="from_scratch", num_test=40)
    per_image = (1.2 + 0.8 - 1.0) / (60 - 8)
    assert _value(speeds, "eval") == pytest.approx(1 / per_image)
    assert _value(speeds, "eval|trace") == pytest.approx(1.0 - 8 * per_image)
    assert _value(speeds, "end") == pytest.approx(3.0 - 2.0)


def test_from_scratch_evaluates_validation_through_the_network_and_waits_for_its_predecessor():
    events = _events([
        ("decode", True, [("pass", 0.42)]),  # 84 images decoded in 0.42 s.
        ("scratch", False, [("batch", 8.0), ("batch", 2.0), ("epoch", 1.0)]),
    ])
    speeds = run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="from_scratch", num_test=0,
                        waited_until=100.6, end_seconds=0.5)
    assert _value(speeds, "decode") == pytest.approx(84 / 0.42)
    assert _value(speeds, "handoff") == pytest.approx(101.0 - 100.6)  # From its predecessor's end.
    assert _value(speeds, "scratch|train") == pytest.approx(32 / 2.0)
    assert _value(speeds, "scratch|val") == pytest.approx(20 / 1.0)
    assert _value(speeds, "scratch|trace") == pytest.approx(11.0 - 32 / 16 - 1.0)
    # Its 20 validation images through the network: 2.5 s of its 3 s end beyond the measured 0.5 s.
    assert _value(speeds, "eval") == pytest.approx(20 / 2.5)


def test_a_run_that_did_not_finish_measures_nothing():
    events = [e for e in _events([("head", True, [("batch", 1.0), ("epoch", 0.1)])]) if e["type"] != "finished"]
    speeds = run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="feature_extraction", run_id="x")
    assert not speeds.images_per_second and not speeds.overhead_seconds and speeds.recorded == {"x"}


def test_the_median_of_the_last_runs_is_used_so_one_slow_run_moves_it_little(tmp_path):
    key = speed_key(BACKBONE, SIZE, "scratch|trace")
    speeds = Speeds()
    for seconds in (8.0, 9.0, 40.0):  # The third run shared the processor with other work.
        speeds = speeds.merged(Speeds(overhead_seconds={key: (seconds,)}))
    assert speeds.seconds(BACKBONE, SIZE, "scratch|trace") == 9.0
    for seconds in range(10):
        speeds = speeds.merged(Speeds(overhead_seconds={key: (float(seconds),)}))
    assert speeds.overhead_seconds[key] == tuple(float(s) for s in range(10 - KEPT, 10))
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(speeds.to_dict()))
    assert load_speeds(path) == speeds


def test_a_litert_conversion_is_left_out_of_the_one_pass_rate():
    """Converting the frozen network happens once (the converted file is cached), so the next runs'
    features stage runs at the rate without it."""
    events = _events([("features", False, [("pass", 5.0)]), ("head", True, [("batch", 1.0), ("epoch", 0.1)])])
    index = next(i for i, e in enumerate(events) if e.get("type") == "stage" and e["stage"] == "features")
    events.insert(index + 1, {"type": "frozen_runtime", "stage": "features", "runtime": "litert",
                              "convert_seconds": 1.5, "time": events[index]["time"] + 1.6})
    speeds = run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="feature_extraction")
    assert _value(speeds, "features") == pytest.approx(84 / (5.0 - 1.5))
    assert _value(speeds, "convert") == pytest.approx(1.5)  # What the next new backbone, size or cut costs.
    without = [e for e in events if e.get("type") != "frozen_runtime"]
    assert _value(run_speeds(without, backbone=BACKBONE, input_size=SIZE, strategy="feature_extraction"),
                  "features") == pytest.approx(84 / 5.0)


def test_a_new_worker_processes_first_trace_of_a_stage_is_kept_apart_from_a_warm_workers():
    def scratch(traced_before):
        events = _events([("scratch", False, [("batch", 9.0), ("batch", 0.32), ("epoch", 0.4)])])
        stage = next(e for e in events if e["type"] == "stage")
        if traced_before is not None:
            stage["traced_before"] = traced_before
        return run_speeds(events, backbone=BACKBONE, input_size=SIZE, strategy="from_scratch")

    trace = 9.72 - 32 * 0.01 - 0.4
    first = scratch(False)
    assert _value(first, "scratch|trace:first") == pytest.approx(trace)
    assert speed_key(BACKBONE, SIZE, "scratch|trace") not in first.overhead_seconds
    # A warm worker's, and a run's from before the field was written, are the plain trace.
    for traced_before in (True, None):
        warm = scratch(traced_before)
        assert _value(warm, "scratch|trace") == pytest.approx(trace)
        assert speed_key(BACKBONE, SIZE, "scratch|trace:first") not in warm.overhead_seconds
