"""Feature extraction against one forward pass and against the textbook frozen-base fit.

Measures, on the same images, split, backbone and epochs (medians of --repeats; repeat i uses
seed i for every method, so accuracies are compared over seeds, not one draw):

- forward:   build the feature extractor and run it once over every image
             (decode + resize + backbone + pooling): the floor for any frozen-base method;
- ours_cold: transfer_core.training.train(feature_extraction) end to end with an empty
             feature cache (decode, features, head training, evaluation);
- ours_warm: the same data and backbone with different head settings: the feature cache is
             reused, and so is the frozen backbone the first run built (as a later run in the same
             process or an app run in a standby worker that prebuilt it finds it);
- textbook:  the Keras-guide approach: model.fit on images with the frozen base inside the
             model, so the base runs again every epoch (same epochs, same head).

Usage:
    python bench/bench_feature_extraction.py --data ../shared/datasets/hymenoptera_data \
        --weights-dir ../shared/weights --repeats 3 --out bench/results/feature_extraction.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFER_OFFLINE", "1")


def _ingest(source: Path, home: Path):
    from transfer_core.cli import prepare_dataset
    from transfer_core.config import Settings

    return prepare_dataset(source, Settings(home=home), quiet=True)


def _forward(spec, settings, model_spec) -> float:
    from transfer_core.data import make_tf_dataset
    from transfer_core.models import build_classifier
    from transfer_core.training import reset_keras_state

    reset_keras_state(0)
    started = time.perf_counter()
    classifier = build_classifier(model_spec, spec.num_classes, settings=settings)
    for split in ("train", "val"):
        ds = make_tf_dataset(spec, split, image_size=classifier.input_size, batch_size=32)
        classifier.feature_extractor.predict(ds, verbose=0)
    return time.perf_counter() - started


def _ours(spec, settings, model_spec, epochs, *, cold: bool, seed: int) -> tuple[float, float]:
    from transfer_core.config import RunConfig, TrainConfig
    from transfer_core.training import train

    config = RunConfig(dataset=spec, model=model_spec, train=TrainConfig(epochs=epochs, seed=seed))
    if cold:
        from transfer_core.models import forget_kept_backbone

        forget_kept_backbone()  # A first run finds nothing built before it, only imported modules.
    started = time.perf_counter()
    result = train(config, settings=settings)
    seconds = time.perf_counter() - started
    assert result.status == "finished", result.reason
    return seconds, result.report["val_accuracy"]


def _textbook(spec, settings, model_spec, epochs, *, seed: int) -> tuple[float, float]:
    import keras

    from transfer_core.data import make_tf_dataset
    from transfer_core.models import build_classifier
    from transfer_core.training import reset_keras_state

    reset_keras_state(seed)
    started = time.perf_counter()
    classifier = build_classifier(model_spec, spec.num_classes, settings=settings)
    model = classifier.model
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    train_ds = make_tf_dataset(spec, "train", image_size=classifier.input_size, batch_size=32, shuffle=True,
                                seed=seed)
    val_ds = make_tf_dataset(spec, "val", image_size=classifier.input_size, batch_size=32)
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(val_ds, verbose=0)
    return time.perf_counter() - started, float(accuracy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="image folder (class sub-folders or train/val)")
    source.add_argument("--generate", type=int, metavar="N",
                        help="use N generated demo images (128 px, 4 classes) instead, as bench_scale.py does")
    parser.add_argument("--weights-dir", required=True, help="offline ImageNet weights folder")
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-textbook", action="store_true",
                        help="measure only forward / cold / warm (the textbook fit is slow on big sets)")
    parser.add_argument("--out", help="write the JSON results here")
    args = parser.parse_args()

    from transfer_core.config import ModelSpec, Settings

    work = Path(tempfile.mkdtemp(prefix="bench-fe-"))
    if args.generate:
        from transfer_core.data import DEMO_CLASSES, make_demo_dataset

        spec = make_demo_dataset(work / "generated", images_per_class=args.generate // len(DEMO_CLASSES),
                                 image_size=128)
    else:
        spec = _ingest(Path(args.data), work / "ingest")
    model_spec = ModelSpec(backbone=args.backbone, input_size=args.input_size)
    warm_head = ModelSpec(backbone=args.backbone, input_size=args.input_size, hidden_units=64, dropout_rate=0.3)
    times: dict[str, list[float]] = {"forward": [], "ours_cold": [], "ours_warm": [], "textbook": []}
    accuracy: dict[str, list[float]] = {"ours_cold": [], "ours_warm": [], "textbook": []}
    # One untimed round first so TensorFlow's one-off start-up costs are not charged to any method.
    _forward(spec, Settings(home=work / "warmup", weights_dir=Path(args.weights_dir)), model_spec)
    for repeat in range(args.repeats):
        settings = Settings(home=work / f"home{repeat}", weights_dir=Path(args.weights_dir))
        times["forward"].append(_forward(spec, settings, model_spec))
        seconds, acc = _ours(spec, settings, model_spec, args.epochs, cold=True, seed=repeat)
        times["ours_cold"].append(seconds)
        accuracy["ours_cold"].append(acc)
        seconds, acc = _ours(spec, settings, warm_head, args.epochs, cold=False, seed=repeat)
        times["ours_warm"].append(seconds)
        accuracy["ours_warm"].append(acc)
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v), flush=True)
    # The textbook fits last: each Keras fit leaves ~40,000 objects behind in the process, which
    # made every later garbage collection (and so every later run of any method) slower.
    for repeat in range(0 if args.skip_textbook else args.repeats):
        settings = Settings(home=work / f"home{repeat}", weights_dir=Path(args.weights_dir))
        seconds, acc = _textbook(spec, settings, model_spec, args.epochs, seed=repeat)
        times["textbook"].append(seconds)
        accuracy["textbook"].append(acc)
        print(f"textbook repeat {repeat + 1}: {seconds:.2f}s", flush=True)
    median = {k: statistics.median(v) for k, v in times.items() if v}
    result = {
        "backbone": args.backbone,
        "input_size": args.input_size,
        "epochs": args.epochs,
        "images": len(spec.manifest_path.read_text().splitlines()) - 1,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": median,
        "val_accuracy": accuracy,
        "median_val_accuracy": {k: statistics.median(v) for k, v in accuracy.items() if v},
        "ratios": {
            "ours_cold_over_forward": median["ours_cold"] / median["forward"],
            "textbook_over_ours_cold": median["textbook"] / median["ours_cold"] if "textbook" in median else None,
            "ours_cold_over_ours_warm": median["ours_cold"] / median["ours_warm"],
        },
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
