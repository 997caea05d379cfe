"""What a person waits for in the app: from "Start" (``jobs.start_run``) to the run's ``finished``
event, with a fresh worker process per run (it imports TensorFlow first) and with the app's
standby worker (TensorFlow already imported, waiting; after a feature-extraction run it has also
built that run's frozen backbone, which the next feature-extraction run reuses).

Two runs, each with a warm feature cache (the second run of a session, the common case):
- feature extraction on hymenoptera, mobilenet_v2_0.35 at 224 px, 10 epochs (a new head on
  cached features: the run the issue's "second run" target is about);
- the app's demo run ("Try the demo": generated 4-class set, fine-tuning at 96 px);
and, through the standby path, a session's first feature-extraction run (empty cache) against its
second one with another head.

    python bench/bench_run_latency.py --repeats 5 --out bench/results/run_latency.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, median, write_result


def _configs(work: Path, data: Path, settings):
    from transfer_core.config import ModelSpec, RunConfig, TrainConfig
    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions import presets

    hymenoptera = ingest(data, work / "ingest")
    fe = RunConfig(dataset=hymenoptera, model=ModelSpec(backbone="mobilenet_v2_0.35", input_size=224),
                   train=TrainConfig(strategy="feature_extraction", epochs=10))
    choice = presets.choose_demo_backbone(settings)
    demo_data = make_demo_dataset(work / "demo", images_per_class=presets.DEMO_IMAGES_PER_CLASS,
                                  image_size=presets.DEMO_IMAGE_SIZE)
    demo = RunConfig(dataset=demo_data, model=presets.demo_model_spec(choice),
                     freeze=presets.demo_freeze_plan(), train=presets.demo_train_config(choice))
    return {"feature_extraction_warm_cache": fe, "demo_run": demo}


def _latency(config, runs_dir: Path, settings) -> float:
    from transfer_core import jobs

    started = time.perf_counter()
    run_dir = jobs.start_run(config, runs_dir=runs_dir, settings=settings)
    status = jobs.follow(run_dir, poll_seconds=0.05, timeout=600)
    seconds = time.perf_counter() - started
    assert status == "finished", (status, run_dir)
    return seconds


def _wait_for_standby(settings, timeout: float = 120.0) -> None:
    from transfer_core import jobs

    directory, key = jobs.standby_dir(settings), jobs.standby_key(settings)
    deadline = time.time() + timeout
    while not jobs.standby_entries(directory, key, "ready"):
        if time.time() > deadline:
            raise TimeoutError("the standby worker never became ready")
        time.sleep(0.1)


def _first_and_second_run(work: Path, config, args) -> dict:
    """The app's standby path for a session's first feature-extraction run (empty feature cache,
    nothing built) and its second one with another head (the issue's "second run" target, as a
    person sees it). A fresh home each repeat."""
    import dataclasses

    from transfer_core import jobs
    from transfer_core.config import Settings

    seconds: dict[str, list[float]] = {"first": [], "second": []}
    second = dataclasses.replace(config, model=dataclasses.replace(config.model, hidden_units=64, dropout_rate=0.3))
    for repeat in range(args.repeats):
        settings = Settings(home=work / f"session{repeat}", weights_dir=Path(args.weights_dir), standby_worker=True)
        jobs.ensure_standby(settings)  # What the app server does when it starts.
        _wait_for_standby(settings)
        seconds["first"].append(_latency(config, work / f"session{repeat}-runs", settings))
        _wait_for_standby(settings)
        time.sleep(2)  # A person changes the head settings; the standby builds the backbone meanwhile.
        seconds["second"].append(_latency(second, work / f"session{repeat}-runs", settings))
        _wait_for_standby(settings)
        jobs.shutdown_standby(settings)
        print("first and second run", {k: round(v[-1], 2) for k, v in seconds.items()}, flush=True)
    return {"seconds": seconds, "median_seconds": {k: median(v) for k, v in seconds.items()},
            "first_over_second": median(seconds["first"]) / median(seconds["second"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()

    from transfer_core import jobs
    from transfer_core.config import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    configs = _configs(work, Path(args.data), Settings(home=work / "home", weights_dir=Path(args.weights_dir)))
    seconds: dict[str, dict[str, list[float]]] = {name: {"fresh_worker": [], "standby": []} for name in configs}
    for name, config in configs.items():
        fresh = Settings(home=work / "home", weights_dir=Path(args.weights_dir))
        standby = Settings(home=work / "home", weights_dir=Path(args.weights_dir), standby_worker=True)
        _latency(config, work / "runs", fresh)  # Fills the feature cache; not timed.
        for _ in range(args.repeats):
            seconds[name]["fresh_worker"].append(_latency(config, work / "runs", fresh))
            jobs.ensure_standby(standby)
            _wait_for_standby(standby)  # In the app the standby is ready long before the next click,
            time.sleep(2)  # and has built the last feature-extraction run's backbone (~0.4 s, after ready).
            seconds[name]["standby"].append(_latency(config, work / "runs", standby))
            _wait_for_standby(standby)  # Its successor, so it does not share the CPU with the next run.
            print(name, {k: round(v[-1], 2) for k, v in seconds[name].items()}, flush=True)
        jobs.shutdown_standby(standby)
    first_second = _first_and_second_run(work, configs["feature_extraction_warm_cache"], args)
    result = {
        "first_and_second_feature_extraction_run": first_second,
        "repeats": args.repeats,
        "seconds": seconds,
        "median_seconds": {n: {k: median(v) for k, v in d.items()} for n, d in seconds.items()},
        "fresh_over_standby": {n: median(d["fresh_worker"]) / median(d["standby"]) for n, d in seconds.items()},
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
