"""The Compare page's time estimate against the measured wall time, on real photos at 224 px.

For hymenoptera (398 photos, train/val) and a larger real set built from them (``--large`` photos,
each a flip, crop or rescale of a hymenoptera photo, all larger than 224 px, with its own
train/val/test folders), one after another in one fresh server home (a standby worker started as a
freshly started server has one, ``jobs.ensure_standby``):

1. a **first** comparison of the data set (feature extraction, fine-tuning, from scratch with the same
   time budget as fine-tuning: the Compare page's defaults), its features not yet cached;
2. the **same comparison again** (another seed): its features come from the cache.

Before each Start the estimate is what the page shows (``compare.estimate_for`` over the runs in
the store then); the measurement is Start -> the last run's terminal event, and for each run the
time from the previous run's end (or Start) to its own end. MobileNetV2-0.35, offline ImageNet
weights, 224 px; few epochs so the whole bench takes a few minutes.

    python bench/bench_estimate.py --head-epochs 2 --fine-tune-epochs 1 --large 1200 \\
        --out bench/results/estimate.json
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, write_result

RUN_LIMIT_SECONDS = 1800.0
TERMINAL = ("finished", "stopped", "failed")


def build_large_set(source: Path, target: Path, count: int, seed: int = 0) -> Path:
    """``count`` real photos larger than 224 px in train/val/test (60/20/20) class folders.

    Each is a hymenoptera photo, flipped, cropped to 80-95 % or rescaled by 1.1-1.4 (a
    different variant per copy), so decoding costs what real photos of that size cost.
    """
    from PIL import Image, ImageOps

    if target.exists():
        shutil.rmtree(target)
    photos = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rng = random.Random(seed)
    made = 0
    while made < count:
        for photo in photos:
            if made >= count:
                break
            label = photo.parent.name
            split = ("train", "train", "train", "val", "test")[made % 5]
            with Image.open(photo) as opened:
                image = opened.convert("RGB")
            variant = made // len(photos) % 3
            if variant == 0:
                image = ImageOps.mirror(image)
            elif variant == 1:
                fraction = rng.uniform(0.8, 0.95)
                w, h = image.size
                cw, ch = int(w * fraction), int(h * fraction)
                left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
                image = image.crop((left, top, left + cw, top + ch))
            else:
                scale = rng.uniform(1.1, 1.4)
                image = image.resize((int(image.width * scale), int(image.height * scale)))
            if min(image.size) <= 224:  # Keep every photo larger than the input size.
                scale = 240 / min(image.size)
                image = image.resize((int(image.width * scale) + 1, int(image.height * scale) + 1))
            out = target / split / label / f"{made:05d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            image.save(out, quality=90)
            made += 1
    return target


def _wait(run_dirs: list[Path]) -> list[float]:
    """Until every run ended; returns the 1-minute load average sampled every second meanwhile."""
    from transfer_core.runs import load_run

    deadline = time.time() + RUN_LIMIT_SECONDS
    loads, sampled = [], 0.0
    while time.time() < deadline and any(load_run(d).is_active for d in run_dirs):
        if time.time() - sampled >= 1.0:
            loads.append(os.getloadavg()[0])
            sampled = time.time()
        time.sleep(0.2)
    return loads


def _wait_for_standby(settings) -> None:
    """Until the standby worker has TensorFlow loaded, as a server's has by the time a user clicks."""
    from transfer_core.jobs.pool import live_workers, workers_dir

    deadline = time.time() + 300
    while time.time() < deadline and not any(
            w.state == "idle" for w in live_workers(workers_dir(settings), jobs_key(settings))):
        time.sleep(0.2)


def jobs_key(settings) -> str:
    from transfer_core.jobs import standby_key

    return standby_key(settings)


def comparison(name: str, attempt: str, spec, store, settings, args, seed: int) -> dict:
    """One comparison: the page's estimate before Start, then Start -> every run's end."""
    import dataclasses

    from transfer_core import compare
    from transfer_core.config import FreezePlan, ModelSpec, TrainConfig
    from transfer_core.display.run_text import format_seconds
    from transfer_core.runs import load_run, read_events

    model = ModelSpec(backbone="mobilenet_v2_0.35", input_size=224)
    plan = FreezePlan()
    train = dataclasses.replace(TrainConfig(), epochs=args.head_epochs, fine_tune_epochs=args.fine_tune_epochs,
                                seed=seed)
    strategies = ["feature_extraction", "fine_tuning", "from_scratch"]
    estimate = compare.estimate_for(compare.comparison_configs(spec, model, plan, train, strategies),
                                    store.list_runs(), settings, same_time_budget=True)
    clicked = time.time()
    run_dirs = compare.start_comparison(spec, model, plan, train, strategies, store.root, settings=settings,
                                        same_time_budget=True)
    loads = _wait(run_dirs)
    runs, previous_end = [], clicked
    for run_dir, run_estimate in zip(run_dirs, estimate.runs, strict=True):
        info = load_run(run_dir)
        events, _ = read_events(run_dir / "events.jsonl")
        end = next((e["time"] for e in events if e["type"] in TERMINAL), time.time())
        report = info.report
        runs.append({
            "strategy": info.strategy, "status": info.status,
            "estimate_s": round(run_estimate.seconds, 1), "basis": run_estimate.basis,
            "detail": run_estimate.detail, "guessed": list(run_estimate.guessed), "measured_s": round(end - previous_end, 1),
            "report_seconds": report.seconds if report else None,
            "training_seconds": report.training_seconds if report else None,
            "feature_seconds": report.feature_seconds if report else None,
            "cache_hits": list(report.cache_hits or ()) if report else None,
        })
        previous_end = end
    measured = previous_end - clicked
    result = {"data": name, "attempt": attempt, "estimate_s": round(estimate.total_seconds, 1),
              "confidence": estimate.confidence, "shown": f"about {format_seconds(estimate.total_seconds)} "
              f"({estimate.sureness})",
              "measured_s": round(measured, 1), "ratio": round(estimate.total_seconds / measured, 3),
              "load_average_median": round(statistics.median(loads), 1) if loads else None,
              "runs": runs}
    print(f"{name} {attempt}: estimate {result['estimate_s']} s, measured {result['measured_s']} s, "
          f"ratio {result['ratio']}, load {result['load_average_median']}; shown: {result['shown']}", flush=True)
    for run in runs:
        print(f"    {run}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--large", type=int, default=1200, help="Photos in the larger set (0: hymenoptera only).")
    parser.add_argument("--head-epochs", type=int, default=2)
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--work", default="/tmp/bench_estimate")
    parser.add_argument("--out")
    args = parser.parse_args()

    from transfer_core import jobs
    from transfer_core.config import Settings
    from transfer_core.runs import RunStore

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    home = work / "home"
    os.environ.update(TRANSFER_HOME=str(home), TRANSFER_WEIGHTS_DIR=str(Path(args.weights_dir).resolve()),
                      TRANSFER_OFFLINE="1")
    settings = Settings.from_env(server=True)
    sets = [("hymenoptera", ingest(Path(args.data), home))]
    if args.large:
        large = build_large_set(Path(args.data), work / "large", args.large)
        sets.append((f"larger set ({args.large} photos)", ingest(large, home)))
    store = RunStore(home / "runs")
    store.root.mkdir(parents=True, exist_ok=True)
    jobs.ensure_standby(settings)
    _wait_for_standby(settings)
    started = time.time()
    results = []
    try:
        for seed, (name, spec) in enumerate(sets):
            results.append(comparison(name, "first run", spec, store, settings, args, seed=2 * seed))
            results.append(comparison(name, "cached features", spec, store, settings, args, seed=2 * seed + 1))
    finally:
        jobs.shutdown_workers(settings, busy=True)
    write_result({"command_args": vars(args), "bench_seconds": round(time.time() - started, 1),
                  "comparisons": results}, args.out)


if __name__ == "__main__":
    main()
