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

With --compare-runtimes it measures the frozen pass on LiteRT against TensorFlow instead (the
setting ``frozen_runtime`` switches between them in this one process), each repeat interleaving:

- decode:        the run's tf.data pipeline alone over every image (read, decode, resize), each
                 batch converted to NumPy and dropped as the stage does;
- bare_litert:   the converted backbone over the decoded images held in memory, run's batches;
- bare_tf:       the traced Keras backbone over the same arrays (what the TensorFlow path runs);
- stage_<name>:  a feature-extraction run's "features" stage (decode + forward, overlapped, plus
                 the check against Keras), from its stage event to the next, on an empty feature
                 cache; LiteRT loads the converted file from disk as a fresh worker would (the
                 conversion itself, once per machine, is timed separately in a warm-up run);
                 ``stage_litert_decoded``: the same with the photos already in the decoded-image
                 cache (an earlier run on them at this size), so nothing is decoded.

Wall seconds and CPU seconds of this process (all its threads) are both reported: on a machine
shared with other work the CPU seconds are the steadier measure.

Usage:
    python bench/bench_feature_extraction.py --data ../shared/datasets/hymenoptera_data \
        --weights-dir ../shared/weights --repeats 3 --out bench/results/feature_extraction.json
    python bench/bench_feature_extraction.py --data ../shared/datasets/hymenoptera_data --photos 1200 \
        --weights-dir ../shared/weights --compare-runtimes --repeats 3 --out bench/results/frozen_runtime.json
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


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return round(wall - start[0], 3), round(cpu - start[1], 3)


def _feature_stage(spec, settings, model_spec, seed: int) -> dict:
    """One feature-extraction run on an empty feature cache: its features stage's wall and CPU seconds."""
    import shutil

    from transfer_core.config import RunConfig, TrainConfig
    from transfer_core.training import train

    shutil.rmtree(settings.cache_dir / "features", ignore_errors=True)
    marks: dict[str, tuple[float, float]] = {}
    frozen: list[dict] = []

    def emit(event: dict) -> None:
        if event["type"] == "stage":
            marks[event["stage"]] = _clock()
        elif event["type"] == "frozen_runtime":
            frozen.append(event)

    config = RunConfig(dataset=spec, model=model_spec, train=TrainConfig(epochs=1, seed=seed))
    result = train(config, settings=settings, emit=emit)
    assert result.status == "finished", result.reason
    wall = marks["head"][0] - marks["features"][0]
    cpu = marks["head"][1] - marks["features"][1]
    return {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "val_accuracy": result.report["val_accuracy"],
            "frozen_runtime": frozen[0]}


def _compare_runtimes(spec, args, work: Path) -> dict:
    """The frozen pass on LiteRT against TensorFlow, in this one process (see the module docstring)."""
    import tensorflow as tf

    from transfer_core import frozen_runtime
    from transfer_core.config import ModelSpec, Settings
    from transfer_core.data import make_tf_dataset
    from transfer_core.models import build_classifier

    model_spec = ModelSpec(backbone=args.backbone, input_size=args.input_size)
    homes = {name: Settings(home=work / name, weights_dir=Path(args.weights_dir), frozen_runtime=name)
             for name in ("tensorflow", "litert")}
    # A third home whose decoded-image cache holds the photos (as after an earlier run on them at this
    # size, e.g. the previous strategy of a comparison): the stage reads pixels instead of decoding.
    homes["litert_decoded"] = Settings(home=work / "litert_decoded", weights_dir=Path(args.weights_dir))
    from transfer_core.data.image_cache import ensure_image_cache

    for split in ("train", "val"):
        ensure_image_cache(spec, split, args.input_size, homes["litert_decoded"].cache_dir / "images")
    # Untimed warm-up runs: TensorFlow's one-off start-up, and the one conversion per machine.
    warmup = {name: _feature_stage(spec, settings, model_spec, seed=0) for name, settings in homes.items()}
    print("warm-up:", json.dumps({k: v["frozen_runtime"] for k, v in warmup.items()}), flush=True)
    classifier = build_classifier(model_spec, spec.num_classes, settings=homes["litert"])
    frozen = frozen_runtime.frozen_pass(classifier.feature_extractor, settings=homes["litert"],
                                        backbone=args.backbone, weights="imagenet", cut="pool", check_images=None)
    assert frozen.model is not None, frozen.reason
    size = classifier.input_size
    traced = tf.function(lambda images: classifier.feature_extractor(images, training=False),
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    batch = 32
    times: dict[str, list[tuple[float, float]]] = {}
    for repeat in range(args.repeats):
        load = os.getloadavg()[0]
        start = _clock()
        for split in ("train", "val"):  # Each batch converted and dropped, as the stage does.
            for images, _ in make_tf_dataset(spec, split, image_size=size, batch_size=batch, autotune=False):
                images.numpy()
        times.setdefault("decode", []).append(_since(start))
        # Untimed: the same batches held in memory for the bare forward passes (holding 1,000 decoded
        # images costs page faults the stage never pays, so the timed pass above drops them).
        batches = [images.numpy() for split in ("train", "val")
                   for images, _ in make_tf_dataset(spec, split, image_size=size, batch_size=batch, autotune=False)]
        frozen.model.run_batch(batches[0])
        start = _clock()
        for images in batches:
            frozen.model.run_batch(images)
        times.setdefault("bare_litert", []).append(_since(start))
        traced(batches[0])
        start = _clock()
        for images in batches:
            traced(images).numpy()
        times.setdefault("bare_tf", []).append(_since(start))
        del batches
        order = ("tensorflow", "litert", "litert_decoded") if repeat % 2 == 0 else (
            "litert_decoded", "litert", "tensorflow")
        for name in order:
            frozen_runtime.forget_loaded()  # Read from disk, as a fresh worker does.
            stage = _feature_stage(spec, homes[name], model_spec, seed=repeat)
            times.setdefault(f"stage_{name}", []).append((stage["seconds"], stage["cpu_seconds"]))
            times.setdefault(f"accuracy_{name}", []).append((stage["val_accuracy"], stage["val_accuracy"]))
        print(f"repeat {repeat + 1} (load {load:.1f}): " + ", ".join(
            f"{k} {v[-1][0]:.2f}s/{v[-1][1]:.2f}cpu" for k, v in times.items() if not k.startswith("accuracy")),
            flush=True)
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items() if not k.startswith("accuracy")}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items() if not k.startswith("accuracy")}

    def ratios(m: dict[str, float]) -> dict[str, float]:
        return {
            "stage_tf_over_stage_litert": round(m["stage_tensorflow"] / m["stage_litert"], 2),
            "stage_litert_over_decode_plus_bare_litert": round(
                m["stage_litert"] / (m["decode"] + m["bare_litert"]), 2),
            "bare_tf_over_bare_litert": round(m["bare_tf"] / m["bare_litert"], 2),
            "stage_tf_over_stage_litert_decoded": round(m["stage_tensorflow"] / m["stage_litert_decoded"], 2),
        }

    return {
        "backbone": args.backbone,
        "input_size": args.input_size,
        "images": int(sum(1 for _ in spec.manifest_path.read_text().splitlines()) - 1),
        "batch_size": batch,
        "threads": frozen.model.threads,
        "chunk": frozen.model.chunk,
        "interpreter": frozen.model.runtime,
        "repeats": args.repeats,
        "conversion": warmup["litert"]["frozen_runtime"],
        "seconds": {k: [w for w, _ in v] for k, v in times.items() if not k.startswith("accuracy")},
        "cpu_seconds": {k: [c for _, c in v] for k, v in times.items() if not k.startswith("accuracy")},
        "val_accuracy": {k.split("_", 1)[1]: [a for a, _ in v] for k, v in times.items() if k.startswith("accuracy")},
        "median_seconds": wall,
        "median_cpu_seconds": cpu,
        "ratios_wall": ratios(wall),
        "ratios_cpu": ratios(cpu),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }


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
    parser.add_argument("--photos", type=int, metavar="N",
                        help="use N distinct photos made from --data's photos (mirrored, cropped, rotated, "
                             "brightened; every side above 224 px), generated under /tmp")
    parser.add_argument("--keep-photos", metavar="DIR",
                        help="with --photos: generate them into DIR (kept) instead of a temporary folder")
    parser.add_argument("--compare-runtimes", action="store_true",
                        help="measure the frozen pass on LiteRT against TensorFlow (see above)")
    args = parser.parse_args()

    from transfer_core.config import ModelSpec, Settings

    work = Path(tempfile.mkdtemp(prefix="bench-fe-"))
    if args.generate:
        from transfer_core.data import DEMO_CLASSES, make_demo_dataset

        spec = make_demo_dataset(work / "generated", images_per_class=args.generate // len(DEMO_CLASSES),
                                 image_size=128)
    elif args.photos:
        from _common import make_photo_set

        target = Path(args.keep_photos) if args.keep_photos else work / "photos"
        reuse = target.is_dir() and sum(1 for _ in target.rglob("*.jpg")) == args.photos
        photos = target if reuse else make_photo_set(Path(args.data), target, args.photos)
        spec = _ingest(photos, work / "ingest")
    else:
        spec = _ingest(Path(args.data), work / "ingest")
    if args.compare_runtimes:
        result = _compare_runtimes(spec, args, work)
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return 0
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
