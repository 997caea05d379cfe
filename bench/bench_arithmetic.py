"""Time against arithmetic: a run's Start -> finished against the bare passes it needs.

For the demo run ("Try the demo": the shapes-where set, 180 images at 96 px, MobileNetV2-0.35 with the
offline weights, head 5 epochs then the top 3 blocks 5 epochs) and a hymenoptera feature-extraction
run (224 px, MobileNetV2-0.35, offline weights, 10 epochs of the head):

- **wall**: the app's own path without the web pages. A fresh TRANSFER_HOME, an idle warm worker
  ready as a freshly started server has one (``jobs.ensure_standby``), then ``jobs.start_run`` (what
  the Train page's Start calls) and the run's events: Start -> finished and each stage's share. The
  first run of a home computes its features; a second run of the same data in the same home (another
  seed) finds them, and the frozen prefix, in the cache, as every later student's demo run does.
- **arithmetic**: in a separate process, alone, with TensorFlow imported and the model built and every
  function already traced: the decoded images in memory, then the backbone's forward pass over every
  image (batches of the run's size), the head's train steps (forward + backward + update) for its
  epochs plus its validation forward passes, and for fine-tuning the frozen prefix's forward pass over
  every image and the unfrozen suffix's train steps and validation passes. The one-off costs the run
  also pays (TensorFlow import, building, tracing, decoding) are timed there too, separately.

    python bench/bench_arithmetic.py --runs demo hymenoptera --repeats 2 --out bench/results/arithmetic.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, write_result

RUN_KINDS = ("demo", "hymenoptera")
STANDBY_READY_TIMEOUT = 180.0


def _dataset(kind: str, work: Path, data: Path):
    if kind == "demo":
        from transfer_core.data import make_demo_dataset
        from transfer_core.sessions import presets

        return make_demo_dataset(work / "demo", images_per_class=presets.DEMO_IMAGES_PER_CLASS,
                                 image_size=presets.DEMO_IMAGE_SIZE, kind=presets.DEMO_KIND)
    return ingest(data, work / "ingest")


def _config(kind: str, spec, settings, seed: int = 0):
    """The run the app starts: the demo's presets, or feature extraction at 224 px with the defaults."""
    import dataclasses

    from transfer_core.config import ModelSpec, RunConfig, TrainConfig
    from transfer_core.sessions import presets

    if kind == "demo":
        choice = presets.choose_demo_backbone(settings)
        train = dataclasses.replace(presets.demo_train_config(choice), seed=seed)
        return presets.build_run_config(spec, presets.demo_model_spec(choice), presets.demo_freeze_plan(), train)
    return RunConfig(dataset=spec, model=ModelSpec(backbone="mobilenet_v2_0.35", input_size=224),
                     train=TrainConfig(strategy="feature_extraction", epochs=10, seed=seed))


# -- wall: through the app's runner ---------------------------------------------------------------


def _wait_for_standby(settings) -> float:
    """Seconds until the pool has an idle warm worker (TensorFlow imported, waiting for a run)."""
    from transfer_core import jobs

    directory, key = jobs.workers_dir(settings), jobs.standby_key(settings)
    started = time.perf_counter()
    while not any(w.state == "idle" for w in jobs.live_workers(directory, key)):
        if time.perf_counter() - started > STANDBY_READY_TIMEOUT:
            raise TimeoutError("no warm worker became idle")
        time.sleep(0.2)
    return time.perf_counter() - started


def _segments(events: list[dict], clicked: float) -> dict:
    """Start -> finished, split where the events say: waiting for the worker, loading, each stage, the end."""
    first: dict[str, float] = {}
    stages: list[tuple[str, float]] = []
    last_epoch_end = None
    for event in events:
        first.setdefault(event["type"], event["time"])
        if event["type"] == "stage":
            stages.append((event["stage"], event["time"]))
        elif event["type"] in ("epoch_end", "progress"):
            last_epoch_end = event["time"]
    terminal = next(first[t] for t in ("finished", "stopped", "failed") if t in first)
    marks = [("to a worker (Start -> starting)", clicked, first.get("starting", clicked)),
             ("loading (starting -> run_started)", first.get("starting", clicked), first.get("run_started"))]
    marks.append(("building, until the first stage", first.get("run_started"), stages[0][1] if stages else None))
    for index, (name, at) in enumerate(stages):
        end = stages[index + 1][1] if index + 1 < len(stages) else last_epoch_end
        marks.append((f"stage {name}", at, end))
    marks.append(("evaluate, save, finish", last_epoch_end, terminal))
    return {
        "start_to_finished_s": round(terminal - clicked, 2),
        "segments_s": {name: round(end - begin, 2) for name, begin, end in marks if begin and end},
    }


def wall(kind: str, work: Path, args) -> list[dict]:
    """``--repeats`` x (a first run in a fresh home, then a second run of the same data in that home)."""
    from transfer_core import jobs
    from transfer_core.config import Settings
    from transfer_core.runs import load_run, read_events

    results = []
    for repeat in range(args.repeats):
        home = work / f"wall-{kind}-{repeat}"
        # What the server reads at start (standby worker on, workers at nice 10), in a fresh home.
        os.environ.update(TRANSFER_HOME=str(home), TRANSFER_WEIGHTS_DIR=str(Path(args.weights_dir).resolve()),
                          TRANSFER_OFFLINE="1")
        settings = Settings.from_env(server=True)
        spec = _dataset(kind, home, Path(args.data))
        jobs.ensure_standby(settings)
        for label, seed in (("first run of a fresh server", 0), ("second run, same data", 1)):
            standby_wait = _wait_for_standby(settings)
            config = _config(kind, spec, settings, seed)
            clicked = time.time()
            run_dir = jobs.start_run(config, runs_dir=home / "runs", settings=settings)
            deadline = time.time() + args.run_limit
            while load_run(run_dir).is_active and time.time() < deadline:
                time.sleep(0.1)
            info = load_run(run_dir)
            events, _ = read_events(run_dir / "events.jsonl")
            result = {"kind": kind, "repeat": repeat, "run": label, "status": info.status,
                      "standby_ready_after_s": round(standby_wait, 1),
                      "cache_hits": (info.report.cache_hits if info.report else None),
                      "val_accuracy": (info.report.val_accuracy if info.report else None)}
            if info.status == "finished":
                result.update(_segments(events, clicked))
            results.append(result)
            print(f"wall {kind} {label} #{repeat}: {result}", flush=True)
        jobs.shutdown_workers(settings)
    return results


# -- arithmetic: alone, in its own process --------------------------------------------------------


def _timed(function, *arguments, repeats: int = 3) -> float:
    """Median seconds of ``function(*arguments)`` after one untimed call (which traces it)."""
    function(*arguments)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(*arguments)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def arithmetic(kind: str, args) -> dict:
    """The bare passes of one run (see the module docstring); prints JSON."""
    one_off: dict[str, float] = {}
    started = time.perf_counter()
    import keras
    import numpy as np
    import tensorflow as tf

    one_off["import TensorFlow and Keras"] = time.perf_counter() - started

    from transfer_core import freezing
    from transfer_core.config import Settings
    from transfer_core.data import make_tf_dataset
    from transfer_core.models import build_classifier, split_classifier
    from transfer_core.training import reset_keras_state
    from transfer_core.training.keras_state import make_optimizer

    work = Path(tempfile.mkdtemp(prefix="arithmetic-"))
    settings = Settings(home=work / "home", weights_dir=Path(args.weights_dir), offline=True)
    spec = _dataset(kind, work, Path(args.data))
    config = _config(kind, spec, settings)
    train = config.train
    reset_keras_state(train.seed)
    started = time.perf_counter()
    classifier = build_classifier(config.model, spec.num_classes, settings=settings)
    one_off["build the classifier"] = time.perf_counter() - started
    size = classifier.input_size

    def images(split):
        ds = make_tf_dataset(spec, split, image_size=size, batch_size=train.batch_size)
        batches, labels = [], []
        for x, y in ds:
            batches.append(x)
            labels.append(y.numpy())
        return batches, np.concatenate(labels).astype("int32")

    started = time.perf_counter()
    train_images, train_labels = images("train")
    val_images, val_labels = images("val")
    one_off["decode and resize every image"] = time.perf_counter() - started
    count = len(train_labels) + len(val_labels)

    def forward_function(model, shape):
        return tf.function(lambda x: model(x, training=False),
                           input_signature=[tf.TensorSpec([None, *shape], tf.float32)])

    def over(function, batches):
        return [function(batch).numpy() for batch in batches]

    def train_function(model, learning_rate):
        optimizer = make_optimizer(train.optimizer, learning_rate)
        optimizer.build(model.trainable_variables)
        shape = model.input_shape[1:]

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32), tf.TensorSpec([None], tf.int32)],
                     autograph=False)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x, training=True)))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        return step

    def epochs_of(step, forward, x, y, x_val, epochs):
        """``epochs`` x (every train batch through ``step``, then the validation set through ``forward``)."""
        def run():
            for _ in range(epochs):
                for start in range(0, len(y), train.batch_size):
                    step(x[start:start + train.batch_size], y[start:start + train.batch_size])
                forward(x_val).numpy()
        return run

    passes: dict[str, float] = {}
    started = time.perf_counter()
    backbone = forward_function(classifier.feature_extractor, (size, size, 3))
    backbone(train_images[0])
    one_off["trace the backbone's forward pass"] = time.perf_counter() - started
    passes["backbone forward, every image"] = _timed(lambda: (over(backbone, train_images),
                                                             over(backbone, val_images)))
    features = np.concatenate(over(backbone, train_images))
    val_features = np.concatenate(over(backbone, val_images))
    head_step = train_function(classifier.head, train.learning_rate)
    head_forward = forward_function(classifier.head, features.shape[1:])
    passes[f"head: {train.epochs} epochs of train steps + validation"] = _timed(
        epochs_of(head_step, head_forward, features, train_labels, val_features, train.epochs), repeats=1)
    if train.strategy == "fine_tuning":
        freezing.apply_freeze_plan(classifier.backbone, config.freeze)
        cut = freezing.cut_layer(classifier.backbone, freezing.first_trainable_layer(classifier.backbone))
        prefix, suffix = split_classifier(classifier, cut)
        prefix_forward = forward_function(prefix, (size, size, 3))
        passes[f"frozen prefix forward (up to {cut}), every image"] = _timed(
            lambda: (over(prefix_forward, train_images), over(prefix_forward, val_images)))
        cut_train = np.concatenate(over(prefix_forward, train_images))
        cut_val = np.concatenate(over(prefix_forward, val_images))
        suffix_step = train_function(suffix, train.fine_tune_learning_rate)
        suffix_forward = forward_function(suffix, cut_train.shape[1:])
        passes[f"unfrozen suffix: {train.fine_tune_epochs} epochs of train steps + validation"] = _timed(
            epochs_of(suffix_step, suffix_forward, cut_train, train_labels, cut_val, train.fine_tune_epochs),
            repeats=1)
        passes["final validation forward (suffix)"] = _timed(lambda: suffix_forward(cut_val).numpy())
    else:
        passes["final validation forward (head)"] = _timed(lambda: head_forward(val_features).numpy())
    return {
        "kind": kind,
        "images": count,
        "input_size": size,
        "batch_size": train.batch_size,
        "strategy": train.strategy,
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(), "cores": os.cpu_count()},
        "passes_s": {name: round(value, 3) for name, value in passes.items()},
        "arithmetic_total_s": round(sum(passes.values()), 3),
        "one_off_s": {name: round(value, 2) for name, value in one_off.items()},
    }


def _arithmetic_in_child(kind: str, args) -> dict:
    """Run :func:`arithmetic` in a fresh process, alone (no server, no other run)."""
    command = [sys.executable, __file__, "--arithmetic-only", kind, "--weights-dir", args.weights_dir,
               "--data", args.data]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=args.run_limit,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
    return json.loads(output[output.index("{"):])


def needed_arithmetic(bare: dict, cache_hits) -> float:
    """The bare passes a run needs: without the forward passes whose outputs it found in the cache."""
    hits = cache_hits or ()
    skipped = sum(seconds for name, seconds in bare["passes_s"].items()
                  if (name.startswith("backbone forward") and "pool" in hits)
                  or (name.startswith("frozen prefix forward") and any(h.startswith("prefix:") for h in hits)))
    return bare["arithmetic_total_s"] - skipped


def summarise(walls: list[dict], bare: dict) -> dict:
    """Per kind of run (first / second): median Start -> finished against the arithmetic it needed."""
    summary = {}
    for label in sorted({w["run"] for w in walls}):
        done = [w for w in walls if w["run"] == label and "start_to_finished_s" in w]
        if not done:
            continue
        median = statistics.median(w["start_to_finished_s"] for w in done)
        needed = needed_arithmetic(bare, done[0]["cache_hits"])
        summary[label] = {"median_start_to_finished_s": round(median, 2),
                          "cache_hits": done[0]["cache_hits"],
                          "arithmetic_needed_s": round(needed, 3),
                          "over_arithmetic": round(median / needed, 1)}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", choices=RUN_KINDS, default=list(RUN_KINDS))
    parser.add_argument("--repeats", type=int, default=2, help="fresh homes per run kind (wall times)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the hymenoptera folder")
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--run-limit", type=float, default=600.0, help="give up on one run after this")
    parser.add_argument("--arithmetic-only", choices=RUN_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.arithmetic_only:
        print(json.dumps(arithmetic(args.arithmetic_only, args)))
        return
    results = {"cores": os.cpu_count(), "load_average_1min_at_start": round(os.getloadavg()[0], 2), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-arithmetic-") as tmp:
        for kind in args.runs:
            walls = wall(kind, Path(tmp), args)
            bare = _arithmetic_in_child(kind, args)
            print(f"arithmetic {kind}: {bare}", flush=True)
            results["runs"][kind] = {"wall": walls, "arithmetic": bare, "summary": summarise(walls, bare)}
    results["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    write_result(results, args.out)


if __name__ == "__main__":
    main()
