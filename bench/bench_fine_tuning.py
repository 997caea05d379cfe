"""Fine-tuning the top blocks: frozen-prefix cache against running the whole network each epoch.

Both runs: same data, split, seed, backbone, freeze plan (top 2 blocks), no augmentation; repeat
i uses seed i for both (head initialisation, batch order), so accuracy is compared over seeds, not
one draw. Reports the median seconds of a stage-2 (fine-tune) epoch and the validation accuracy.

    python bench/bench_fine_tuning.py --repeats 3 --out bench/results/fine_tuning.json

With --compare-runtimes it runs the prefix-cache fine-tuning with its frozen passes on TensorFlow
and on LiteRT (the setting ``frozen_runtime``, switched in this one process), interleaved, and
reports each one-pass stage's wall and CPU seconds (stage event to next stage event): ``decode``
(the images decoded once into the image cache), ``features`` (the pooled backbone for the head)
and ``prefix`` (the frozen layers' output). Each run starts without cached features, prefix or
decoded images; LiteRT reads the converted networks from disk as a fresh worker does (the one
conversion per machine happens in an untimed warm-up run and is reported).

    python bench/bench_fine_tuning.py --compare-runtimes --repeats 3 --out bench/results/fine_tuning_runtimes.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, median, write_result


def _run(spec, settings, use_cache: bool, seed: int, args) -> dict:
    from transfer_core.config import FreezePlan, ModelSpec, RunConfig, TrainConfig
    from transfer_core.training import train

    config = RunConfig(
        dataset=spec,
        model=ModelSpec(backbone=args.backbone, input_size=args.input_size),
        freeze=FreezePlan(mode="top_blocks", top_blocks=args.top_blocks),
        train=TrainConfig(strategy="fine_tuning", epochs=args.head_epochs, fine_tune_epochs=args.epochs,
                          use_cache=use_cache, seed=seed),
    )
    result = train(config, settings=settings)
    assert result.status == "finished", result.reason
    stage = result.history[result.history["stage"] == "fine_tune"]
    return {"epoch_seconds": stage["seconds"].tolist(), "val_accuracy": result.report["val_accuracy"]}


def _staged_run(spec, settings, seed: int, args) -> dict:
    """One prefix-cache fine-tuning run from empty caches (the converted networks kept): seconds per stage."""
    from transfer_core.config import FreezePlan, ModelSpec, RunConfig, TrainConfig
    from transfer_core.training import train

    for folder in ("features", "images"):
        shutil.rmtree(settings.cache_dir / folder, ignore_errors=True)
    marks: list[tuple[str, float, float]] = []
    frozen: list[dict] = []

    def emit(event: dict) -> None:
        if event["type"] == "stage":
            marks.append((event["stage"], time.perf_counter(), time.process_time()))
        elif event["type"] == "frozen_runtime":
            frozen.append(event)

    config = RunConfig(
        dataset=spec,
        model=ModelSpec(backbone=args.backbone, input_size=args.input_size),
        freeze=FreezePlan(mode="top_blocks", top_blocks=args.top_blocks),
        train=TrainConfig(strategy="fine_tuning", epochs=args.head_epochs, fine_tune_epochs=args.epochs, seed=seed),
    )
    result = train(config, settings=settings, emit=emit)
    assert result.status == "finished", result.reason
    stages = {}
    for (name, wall, cpu), (_, next_wall, next_cpu) in zip(marks, marks[1:], strict=False):
        stages[name] = (round(next_wall - wall, 3), round(next_cpu - cpu, 3))
    return {"stages": stages, "val_accuracy": result.report["val_accuracy"], "frozen_runtime": frozen}


def _compare_runtimes(spec, args, work: Path) -> dict:
    from transfer_core import frozen_runtime
    from transfer_core.config import Settings

    homes = {name: Settings(home=work / name, weights_dir=Path(args.weights_dir), frozen_runtime=name)
             for name in ("tensorflow", "litert")}
    warmup = {name: _staged_run(spec, settings, 0, args) for name, settings in homes.items()}
    print("warm-up:", warmup["litert"]["frozen_runtime"], flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in homes}
    for repeat in range(args.repeats):
        order = ("tensorflow", "litert") if repeat % 2 == 0 else ("litert", "tensorflow")
        for name in order:
            frozen_runtime.forget_loaded()  # Read from disk, as a fresh worker does.
            runs[name].append(_staged_run(spec, homes[name], repeat, args))
            print(f"repeat {repeat + 1} {name} (load {os.getloadavg()[0]:.1f}): {runs[name][-1]['stages']} "
                  f"val_accuracy {runs[name][-1]['val_accuracy']:.4f}", flush=True)
    stages = ("decode", "features", "prefix")
    wall = {name: {stage: median([run["stages"][stage][0] for run in values]) for stage in stages}
            for name, values in runs.items()}
    cpu = {name: {stage: median([run["stages"][stage][1] for run in values]) for stage in stages}
           for name, values in runs.items()}

    def ratios(m: dict) -> dict:
        tf, lite = m["tensorflow"], m["litert"]
        return {
            "features": round(tf["features"] / lite["features"], 2),
            "prefix": round(tf["prefix"] / lite["prefix"], 2),
            "decode_features_prefix": round(sum(tf.values()) / sum(lite.values()), 2),
        }

    return {
        "backbone": args.backbone,
        "input_size": args.input_size,
        "top_blocks": args.top_blocks,
        "repeats": args.repeats,
        "conversion": warmup["litert"]["frozen_runtime"],
        "runs": runs,
        "median_stage_seconds": wall,
        "median_stage_cpu_seconds": cpu,
        "tensorflow_over_litert_wall": ratios(wall),
        "tensorflow_over_litert_cpu": ratios(cpu),
        "val_accuracy": {name: [run["val_accuracy"] for run in values] for name, values in runs.items()},
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--top-blocks", type=int, default=2)
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="fine-tune (stage 2) epochs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    parser.add_argument("--compare-runtimes", action="store_true",
                        help="time the one-pass stages with the frozen passes on TensorFlow and on LiteRT")
    args = parser.parse_args()

    from transfer_core.config import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-ft-"))
    spec = ingest(Path(args.data), work / "ingest")
    if args.compare_runtimes:
        write_result(_compare_runtimes(spec, args, work), args.out)
        return 0
    runs: dict[str, list[dict]] = {"prefix_cache": [], "whole_network": []}
    for repeat in range(args.repeats):
        for name, use_cache in (("prefix_cache", True), ("whole_network", False)):
            settings = Settings(home=work / f"{name}{repeat}", weights_dir=Path(args.weights_dir))
            runs[name].append(_run(spec, settings, use_cache, repeat, args))
            print(f"repeat {repeat + 1} {name}: {runs[name][-1]}", flush=True)
    # Median over every stage-2 epoch of every repeat (the first epoch of each run includes tracing).
    per_epoch = {name: median([s for run in values for s in run["epoch_seconds"]]) for name, values in runs.items()}
    accuracy = {name: [run["val_accuracy"] for run in values] for name, values in runs.items()}
    median_accuracy = {name: median(values) for name, values in accuracy.items()}
    write_result(
        {
            "backbone": args.backbone,
            "input_size": args.input_size,
            "top_blocks": args.top_blocks,
            "runs": runs,
            "median_epoch_seconds": per_epoch,
            "val_accuracy": accuracy,
            "median_val_accuracy": median_accuracy,
            "speedup_prefix_cache": per_epoch["whole_network"] / per_epoch["prefix_cache"],
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
