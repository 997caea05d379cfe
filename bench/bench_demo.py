"""The built-in demo shows transfer learning's point: fine-tuning > feature extraction >> from scratch.

Runs the comparison the app's "Try the demo" path offers (the demo data set, backbone, freeze plan
and training settings of ``transfer_core.sessions.presets``; feature extraction, fine-tuning and from scratch
through ``transfer_core.compare.comparison_configs``) for several seeds: seed i generates the data
set, its split and the training seed. Prints and writes each run's validation accuracy and seconds,
and the medians over seeds.

    python bench/bench_demo.py --seeds 3 --out bench/results/demo.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_WEIGHTS, median, write_result

STRATEGIES = ("feature_extraction", "fine_tuning", "from_scratch")


def _comparison(seed: int, work: Path, settings, args) -> dict[str, dict]:
    import dataclasses

    from transfer_core.compare import comparison_configs
    from transfer_core.data import make_demo_dataset
    from transfer_core.sessions import presets
    from transfer_core.training import train

    started = time.perf_counter()
    cpu = time.process_time()
    spec = make_demo_dataset(work / f"data{seed}", images_per_class=args.images_per_class,
                             image_size=args.image_size, seed=seed, kind=args.kind)
    make_seconds = time.perf_counter() - started
    choice = presets.choose_demo_backbone(settings)
    train_config = dataclasses.replace(presets.demo_train_config(choice), seed=seed)
    configs = comparison_configs(spec, presets.demo_model_spec(choice), presets.demo_freeze_plan(),
                                 train_config, STRATEGIES)
    out = {"backbone": choice.backbone, "weights": choice.weights, "data_seconds": round(make_seconds, 2),
           "data_cpu_seconds": round(time.process_time() - cpu, 2)}
    for config in configs:
        started, cpu = time.perf_counter(), time.process_time()
        result = train(config, settings=settings)
        assert result.status == "finished", result.reason
        out[config.train.strategy] = {
            "val_accuracy": result.report["val_accuracy"],
            "seconds": round(time.perf_counter() - started, 2),
            # CPU seconds of all this process's threads: what the run costs whatever else the machine runs.
            # On an idle 2-core machine the wall time is between cpu_seconds / 2 and cpu_seconds.
            "cpu_seconds": round(time.process_time() - cpu, 2),
        }
    return out


def main() -> int:
    from transfer_core.sessions import presets

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--images-per-class", type=int, default=presets.DEMO_IMAGES_PER_CLASS)
    parser.add_argument("--image-size", type=int, default=presets.DEMO_IMAGE_SIZE)
    parser.add_argument("--kind", default=presets.DEMO_KIND, help="which generated demo (shapes, where)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()

    from transfer_core.config import Settings

    load_at_start = round(os.getloadavg()[0], 2)
    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    runs = []
    for seed in range(args.seeds):
        # A fresh cache per seed: every comparison pays for its own features, as a student's first one does.
        settings = Settings(home=work / f"home{seed}", weights_dir=Path(args.weights_dir))
        runs.append(_comparison(seed, work, settings, args))
        print(f"seed {seed}: {runs[-1]}", flush=True)
    accuracy = {s: median([run[s]["val_accuracy"] for run in runs]) for s in STRATEGIES}
    seconds = {s: median([run[s]["seconds"] for run in runs]) for s in STRATEGIES}
    load_at_end = os.getloadavg()[0]
    write_result(
        {
            "kind": args.kind,
            "images_per_class": args.images_per_class,
            "image_size": args.image_size,
            "backbone": runs[0]["backbone"],
            "weights": runs[0]["weights"],
            "runs": runs,
            "median_val_accuracy": accuracy,
            "median_seconds": seconds,
            "median_comparison_seconds": median(
                [sum(run[s]["seconds"] for s in STRATEGIES) + run["data_seconds"] for run in runs]
            ),
            "median_comparison_cpu_seconds": median(
                [sum(run[s]["cpu_seconds"] for s in STRATEGIES) + run["data_cpu_seconds"] for run in runs]
            ),
            "load_average_1min": {"start": load_at_start, "end": round(load_at_end, 2)},
            "fine_tuning_minus_feature_extraction": accuracy["fine_tuning"] - accuracy["feature_extraction"],
            "feature_extraction_minus_from_scratch": accuracy["feature_extraction"] - accuracy["from_scratch"],
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
