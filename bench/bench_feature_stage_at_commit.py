"""The "features" stage of a feature-extraction run, timed with whatever ``transfer_core`` is importable.

For comparing against an older commit ("today's TensorFlow path" before LiteRT): it uses only
``transfer_core.cli.prepare_dataset`` and ``transfer_core.training.train``, which every commit since
the feature cache has, so it runs against any checkout put first on ``PYTHONPATH``:

    git archive 7729507 | tar -x -C /tmp/base
    PYTHONPATH=/tmp/base python bench/bench_feature_stage_at_commit.py --photos-dir /tmp/photos1200 \
        --weights-dir ../shared/weights --repeats 5 --out bench/results/frozen_runtime_features_base.json

(``--photos-dir``: the photo set ``bench_feature_extraction.py --photos`` generates, kept with
``--keep-photos``). The first run is an untimed warm-up; each timed run starts without cached features.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFER_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos-dir", required=True)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()

    import transfer_core
    from transfer_core.cli import prepare_dataset
    from transfer_core.config import ModelSpec, RunConfig, Settings, TrainConfig
    from transfer_core.training import train

    work = Path(tempfile.mkdtemp(prefix="bench-stage-"))
    spec = prepare_dataset(Path(args.photos_dir), Settings(home=work / "ingest"), quiet=True)
    settings = Settings(home=work / "home", weights_dir=Path(args.weights_dir))
    model = ModelSpec(backbone=args.backbone, input_size=args.input_size)
    runs = []
    for repeat in range(args.repeats + 1):
        shutil.rmtree(settings.cache_dir / "features", ignore_errors=True)
        marks: dict[str, tuple[float, float]] = {}

        def emit(event: dict, marks=marks) -> None:
            if event["type"] == "stage":
                marks[event["stage"]] = (time.perf_counter(), time.process_time())

        result = train(RunConfig(dataset=spec, model=model, train=TrainConfig(epochs=1, seed=repeat)),
                       settings=settings, emit=emit)
        assert result.status == "finished", result.reason
        wall = marks["head"][0] - marks["features"][0]
        cpu = marks["head"][1] - marks["features"][1]
        print(f"repeat {repeat} (load {os.getloadavg()[0]:.1f}): {wall:.2f}s / {cpu:.2f} cpu", flush=True)
        if repeat:  # Repeat 0 is the warm-up.
            runs.append({"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                         "val_accuracy": result.report["val_accuracy"]})
    result = {
        "code": str(Path(transfer_core.__file__).resolve().parent.parent),
        "backbone": args.backbone,
        "input_size": args.input_size,
        "runs": runs,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
