"""Mixed precision on this machine: float32 against mixed_bfloat16 (CPU) / mixed_float16 (GPU).

For each policy: feature extraction (the backbone's forward pass over every image, then the head)
and fine-tuning the top blocks with the whole network running each epoch (cache off), with the
validation accuracy of each. Policies the hardware lacks are skipped with a note.

    python bench/bench_precision.py --repeats 3 --out bench/results/precision.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, median, write_result


def _run(spec, settings, precision, strategy, args) -> dict:
    from transfer_core.config import ModelSpec, RunConfig, TrainConfig
    from transfer_core.training import train

    config = RunConfig(
        dataset=spec,
        model=ModelSpec(backbone=args.backbone, input_size=args.input_size),
        train=TrainConfig(strategy=strategy, epochs=5, fine_tune_epochs=3, precision=precision,
                          use_cache=strategy == "feature_extraction"),
    )
    result = train(config, settings=settings)
    assert result.status == "finished", result.reason
    history = result.history
    tuned = history[history["stage"] == "fine_tune"]["seconds"].tolist()
    return {
        "feature_seconds": result.report["feature_seconds"],
        "fine_tune_epoch_seconds": median(tuned) if tuned else None,
        "val_accuracy": result.report["val_accuracy"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()

    import tensorflow as tf

    from transfer_core.config import Settings

    gpu = bool(tf.config.list_physical_devices("GPU"))
    policies = ["float32", "mixed_float16" if gpu else "mixed_bfloat16"]
    work = Path(tempfile.mkdtemp(prefix="bench-precision-"))
    spec = ingest(Path(args.data), work / "ingest")
    results: dict[str, dict[str, list]] = {}
    for policy in policies:
        runs = {"feature_extraction": [], "fine_tuning": []}
        for repeat in range(args.repeats):
            for strategy in runs:
                settings = Settings(home=work / f"{policy}-{strategy}-{repeat}", weights_dir=Path(args.weights_dir))
                runs[strategy].append(_run(spec, settings, policy, strategy, args))
                print(policy, strategy, runs[strategy][-1], flush=True)
        results[policy] = runs
    summary = {
        policy: {
            "median_feature_seconds": median([r["feature_seconds"] for r in runs["feature_extraction"]]),
            "median_fine_tune_epoch_seconds": median([r["fine_tune_epoch_seconds"] for r in runs["fine_tuning"]]),
            "fe_val_accuracy": [r["val_accuracy"] for r in runs["feature_extraction"]],
            "ft_val_accuracy": [r["val_accuracy"] for r in runs["fine_tuning"]],
        }
        for policy, runs in results.items()
    }
    write_result({"device": "GPU" if gpu else "CPU", "runs": results, "summary": summary}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
