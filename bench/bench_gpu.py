"""What a GPU gives this project, in one run of under five minutes: features, a fine-tuning epoch, mixed precision.

For each precision policy (float32, and mixed_float16 on a GPU): feature extraction (the backbone's
forward pass over every image, cached, then the head) and fine-tuning with the whole network running
each epoch (cache off), timing the backbone's features and the median fine-tuning epoch, with the
validation accuracy of each. Prints the devices TensorFlow sees first (see `python -m transfer_core
doctor`). Safe on a CPU: it runs float32 only (mixed_float16 is for GPUs; bench_precision.py measures
mixed_bfloat16 on a CPU) and says so.

    bash scripts/setup.sh --gpu        # once, on the GPU machine: TensorFlow's CUDA build
    .venv/bin/python bench/bench_gpu.py --out bench/results/gpu.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, median, write_result


def _run(spec, settings, precision: str, strategy: str, args) -> dict:
    from transfer_core.config import FreezePlan, ModelSpec, RunConfig, TrainConfig
    from transfer_core.training import train

    config = RunConfig(
        dataset=spec,
        model=ModelSpec(backbone=args.backbone, input_size=args.input_size),
        freeze=FreezePlan(mode="top_blocks", top_blocks=args.top_blocks),
        train=TrainConfig(strategy=strategy, epochs=2, fine_tune_epochs=args.fine_tune_epochs,
                          batch_size=args.batch_size, precision=precision,
                          use_cache=strategy == "feature_extraction"),
    )
    started = time.perf_counter()
    result = train(config, settings=settings)
    assert result.status == "finished", result.reason
    history = result.history
    tuned = history[history["stage"] == "fine_tune"]["seconds"].tolist()
    return {
        "wall_seconds": round(time.perf_counter() - started, 2),
        "feature_seconds": result.report.get("feature_seconds"),
        "fine_tune_epoch_seconds": median(tuned) if tuned else None,
        "val_accuracy": result.report["val_accuracy"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--top-blocks", type=int, default=4, help="blocks fine-tuning unfreezes")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="the median of these is reported")
    parser.add_argument("--out")
    args = parser.parse_args()

    import tensorflow as tf

    from transfer_core.config import Settings

    gpus = tf.config.list_physical_devices("GPU")
    build = dict(tf.sysconfig.get_build_info())
    print(f"TensorFlow {tf.__version__}; devices: {[d.name for d in tf.config.list_physical_devices()]}; "
          f"CUDA build: {build.get('is_cuda_build')} (CUDA {build.get('cuda_version', '-')}, "
          f"cuDNN {build.get('cudnn_version', '-')})", flush=True)
    policies = ["float32", "mixed_float16"] if gpus else ["float32"]
    note = "" if gpus else ("No GPU visible: float32 on the CPU only. On a GPU machine run `bash scripts/setup.sh "
                            "--gpu` first (this venv has a CPU-only TensorFlow unless `doctor` says CUDA build).")
    if note:
        print(note, flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    spec = ingest(Path(args.data), work / "ingest")
    results: dict[str, dict[str, dict]] = {}
    for policy in policies:
        results[policy] = {}
        for strategy in ("feature_extraction", "fine_tuning"):
            settings = Settings(home=work / f"{policy}-{strategy}", weights_dir=Path(args.weights_dir))
            results[policy][strategy] = _run(spec, settings, policy, strategy, args)
            print(policy, strategy, results[policy][strategy], flush=True)
    write_result({"device": gpus[0].name if gpus else "CPU", "tensorflow": tf.__version__, "note": note,
                  "backbone": args.backbone, "input_size": args.input_size, "runs": results}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
