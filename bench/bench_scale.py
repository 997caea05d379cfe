"""How time and memory grow with the number of images (generated demo images, feature extraction
through the real worker process). Writes a JSON file and a plot (matplotlib from
requirements-bench.txt).

    python bench/bench_scale.py --sizes 100 400 1600 6400 --out bench/results/scale.json \
        --plot bench/results/scale.png
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_WEIGHTS, write_result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600, 6400])
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--out")
    parser.add_argument("--plot")
    args = parser.parse_args()

    from transfer_core.config import ModelSpec, RunConfig, Settings, TrainConfig
    from transfer_core.data import DEMO_CLASSES, make_demo_dataset
    from transfer_core.jobs import follow, start_run
    from transfer_core.runs import load_run

    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows = []
    for size in args.sizes:
        started = time.perf_counter()
        spec = make_demo_dataset(work / f"data{size}", images_per_class=size // len(DEMO_CLASSES), image_size=128)
        generate_seconds = time.perf_counter() - started
        settings = Settings(home=work / f"home{size}", weights_dir=Path(args.weights_dir))
        config = RunConfig(dataset=spec, model=ModelSpec(backbone=args.backbone, input_size=args.input_size),
                           train=TrainConfig(epochs=10))
        run_dir = start_run(config, runs_dir=settings.runs_dir, settings=settings)
        status = follow(run_dir, poll_seconds=0.5)
        report = load_run(run_dir).report
        assert status == "finished", report
        rows.append({
            "images": size,
            "generate_seconds": round(generate_seconds, 2),
            "run_seconds": report.seconds,
            "feature_seconds": report.feature_seconds,
            "training_seconds": report.training_seconds,
            "peak_rss_mb": report.peak_rss_mb,
            "val_accuracy": report.val_accuracy,
        })
        print(rows[-1], flush=True)
    write_result({"backbone": args.backbone, "input_size": args.input_size, "rows": rows}, args.out)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        images = [r["images"] for r in rows]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.plot(images, [r["run_seconds"] for r in rows], "o-", label="whole run")
        left.plot(images, [r["feature_seconds"] for r in rows], "s--", label="backbone features")
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("images")
        left.set_ylabel("seconds")
        left.set_title("Time (log-log; slope 1 = linear)")
        left.legend()
        right.plot(images, [r["peak_rss_mb"] for r in rows], "o-")
        right.set_xscale("log")
        right.set_ylim(0, max(r["peak_rss_mb"] for r in rows) * 1.3)
        right.set_xlabel("images")
        right.set_ylabel("worker peak RSS (MB)")
        right.set_title("Memory")
        fig.suptitle(f"Feature extraction, {args.backbone} at {args.input_size}px, 2-core CPU")
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=100)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
