"""Fine-tuning the top blocks: frozen-prefix cache against running the whole network each epoch.

Both runs: same data, split, seed, backbone, freeze plan (top 2 blocks), no augmentation; repeat
i uses seed i for both (head initialisation, batch order), so accuracy is compared over seeds, not
one draw. Reports the median seconds of a stage-2 (fine-tune) epoch and the validation accuracy.

    python bench/bench_fine_tuning.py --repeats 3 --out bench/results/fine_tuning.json
"""

from __future__ import annotations

import argparse
import tempfile
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
    args = parser.parse_args()

    from transfer_core.config import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-ft-"))
    spec = ingest(Path(args.data), work / "ingest")
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
