"""The training engine: strategies, caching, progress events, stop and evaluation.

Three strategies share one data split and one architecture:

- ``feature_extraction``: the backbone is frozen. Its pooled features are
  computed once per image (and cached on disk, keyed by backbone, weights,
  input size and image content), then only the head trains on them. This
  costs one forward pass instead of one per epoch.
- ``fine_tuning``: stage 1 trains the head as above; stage 2 unfreezes the
  blocks of the freeze plan, recompiles with a lower learning rate and trains
  on. Without augmentation the frozen prefix's output is cached too, so each
  epoch only runs the trainable top of the network.
- ``from_scratch``: the same architecture with random weights, all trainable:
  the no-transfer baseline.

Progress is a stream of plain dict events passed to ``emit`` (see
``EVENT_TYPES``). ``should_stop`` is polled after every batch; a stop keeps the
best weights seen so far.

Keras global state is reset only in
:func:`reset_keras_state`, called once at the start of each run.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from transfer_core.augment import build_augmenter
from transfer_core.config import FreezePlan, RunConfig, Settings
from transfer_core.evaluate import evaluate_predictions
from transfer_core.runs import EPOCH_COLUMNS

EVENT_TYPES = (
    "run_started",  # strategy, backbone, classes, num_train, num_val, epochs_total
    "stage",  # stage, description, epochs, cached
    "progress",  # stage, done, total (feature computation)
    "batch_end",  # stage, epoch, batch, batches, step, loss, accuracy
    "epoch_end",  # stage, epoch, loss, accuracy, val_loss, val_accuracy, seconds, elapsed
    "finished",
    "stopped",
    "failed",  # reason
)

Emit = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]

# Frozen-prefix outputs larger than this are not cached (they would not fit
# comfortably in memory on a laptop); training then runs the whole network.
MAX_PREFIX_CACHE_BYTES = 1_500_000_000


class RunStopped(Exception):
    """Raised inside the engine when a stop was requested."""


class RunFailed(Exception):
    """Raised inside the engine for a failure with a user-facing reason."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`."""

    status: str  # finished | stopped | failed
    reason: str
    classifier: Any | None  # transfer_core.models.Classifier
    history: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


_models_built_in_process = False


def reset_keras_state(seed: int, precision: str = "float32") -> str:
    """The one place that touches Keras' global state: fresh graph, seeds, dtype policy.

    Returns:
        The dtype policy in force (``auto`` resolved).
    """
    import keras

    global _models_built_in_process
    # Collecting garbage is what frees an earlier run's model, and costs ~0.25 s; a fresh worker
    # process (every app run) has no earlier model, so it skips the collection.
    if not _models_built_in_process:
        # TensorFlow's and Keras' own objects live as long as the process: keep them out of every
        # later collection, which then only walks what runs created (0.24 s -> 0.0x s per run).
        gc.freeze()
    keras.backend.clear_session(free_memory=_models_built_in_process)
    _models_built_in_process = True
    keras.utils.set_random_seed(seed)
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``mixed_float16`` when TensorFlow sees a GPU, else ``float32``.

    On CPUs bfloat16 only pays off with AMX/AVX512-BF16 kernels; it is an explicit
    option rather than the default (measured in BENCHMARKS.md).
    """
    if precision != "auto":
        return precision
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def _distribution_scope(distribution: str):
    """A ``tf.distribute`` strategy scope (``mirrored``) or a no-op context."""
    if distribution == "mirrored":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


def make_optimizer(name: str, learning_rate: float):
    """A Keras optimizer by config name (``adam``, ``sgd`` with momentum 0.9, ``rmsprop``, ``adamw``)."""
    return _make_optimizer(name, learning_rate)


def _make_optimizer(name: str, learning_rate: float):
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def _compile(model, optimizer: str, learning_rate: float) -> None:
    # Recompiling is what makes a change of `trainable` take effect.
    model.compile(
        optimizer=_make_optimizer(optimizer, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # XLA compilation ("auto") costs more than it saves for the small models and
        # short runs of a classroom; plain graph mode starts faster on a CPU.
        jit_compile=False,
    )


def _class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    total = counts.sum()
    return {i: float(total / (num_classes * c)) if c > 0 else 0.0 for i, c in enumerate(counts)}


@dataclass
class _SplitData:
    paths: list[str]
    labels: np.ndarray
    shas: list[str]


def load_split(spec, split: str) -> _SplitData:
    """Absolute paths, integer labels and content hashes of one split, in manifest order."""
    return _load_split(spec, split)


def _load_split(spec, split: str, manifest: pd.DataFrame | None = None) -> _SplitData:
    from transfer_core.data import read_manifest

    frame = read_manifest(spec) if manifest is None else manifest
    frame = frame[frame["split"] == split]
    index = {name: i for i, name in enumerate(spec.class_names)}
    root = Path(spec.root)
    return _SplitData(
        paths=[str(root / p) for p in frame["path"]],
        labels=np.array([index[label] for label in frame["label"]], dtype=np.int32),
        shas=list(frame["sha256"]),
    )


class _Progress:
    """Keras callback factory + shared state for one run's event stream."""

    def __init__(self, emit: Emit, should_stop: ShouldStop, patience: int, num_classes: int) -> None:
        self.emit = emit
        # Cross-entropy at chance level is ln(num_classes); a hundred times that means the
        # weights have blown up even when Keras' probability clipping keeps the loss finite.
        self.divergence_loss = 100.0 * math.log(max(num_classes, 2))
        self.should_stop = should_stop
        self.patience = patience
        self.started = time.perf_counter()
        self.epoch = 0  # Global epoch counter across stages.
        self.step = 0
        self.rows: list[dict[str, Any]] = []
        self.stop_reason = ""  # "stopped" | "nan" | "early" | ""
        self.nan_detail = ""

    def diverged(self, loss: float) -> bool:
        return not math.isfinite(loss) or loss > self.divergence_loss

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def check_stop(self) -> None:
        if self.should_stop():
            raise RunStopped()

    def callback(self, stage: str, batches: int, num_images: int):
        import keras

        progress = self

        class _Callback(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.best_loss = math.inf
                self.best_weights = None
                self.best_epoch = 0
                self.waited = 0
                self.epoch_started = 0.0
                self.stage_epoch = 0

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch_started = time.perf_counter()
                self.stage_epoch = epoch + 1

            def on_train_batch_end(self, batch, logs=None):
                logs = logs or {}
                progress.step += 1
                loss = float(logs.get("loss", float("nan")))
                progress.emit(
                    {
                        "type": "batch_end",
                        "stage": stage,
                        "epoch": progress.epoch + 1,
                        "batch": batch + 1,
                        "batches": batches,
                        "step": progress.step,
                        "loss": loss,
                        "accuracy": float(logs.get("accuracy", float("nan"))),
                    }
                )
                if progress.diverged(loss):
                    progress.stop_reason = "nan"
                    progress.nan_detail = f"loss {loss:g} at epoch {progress.epoch + 1}, batch {batch + 1}"
                    self.model.stop_training = True
                elif progress.should_stop():
                    progress.stop_reason = "stopped"
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                if progress.stop_reason in ("nan", "stopped"):
                    return  # A partial epoch is not an epoch: no row, no snapshot.
                logs = logs or {}
                progress.epoch += 1
                seconds = time.perf_counter() - self.epoch_started
                row = {
                    "epoch": progress.epoch,
                    "stage": stage,
                    "loss": float(logs.get("loss", float("nan"))),
                    "accuracy": float(logs.get("accuracy", float("nan"))),
                    "val_loss": float(logs.get("val_loss", float("nan"))),
                    "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
                    "seconds": round(seconds, 4),
                    "elapsed": round(progress.elapsed(), 4),
                    "images_per_second": round(num_images / seconds, 2) if seconds > 0 else None,
                }
                progress.rows.append(row)
                progress.emit({"type": "epoch_end", "stage_epoch": self.stage_epoch, **row})
                if progress.diverged(row["loss"]):
                    progress.stop_reason = "nan"
                    progress.nan_detail = f"loss {row['loss']:g} at epoch {progress.epoch}"
                    self.model.stop_training = True
                    return
                val_loss = row["val_loss"] if math.isfinite(row["val_loss"]) else math.inf
                if val_loss < self.best_loss:
                    self.best_loss = val_loss
                    self.best_weights = self.model.get_weights()
                    self.best_epoch = progress.epoch
                    self.waited = 0
                else:
                    self.waited += 1
                    if progress.patience and self.waited >= progress.patience:
                        progress.stop_reason = "early"
                        self.model.stop_training = True

            def restore_best(self) -> None:
                if self.best_weights is not None:
                    self.model.set_weights(self.best_weights)

        return _Callback()


class _Engine:
    """One run of :func:`train`; holds the run's state so the steps stay small."""

    def __init__(self, config: RunConfig, emit: Emit, should_stop: ShouldStop, settings: Settings) -> None:
        self.config = config
        self.spec = config.dataset
        self.train_config = config.train
        self.emit = emit
        self.settings = settings
        self.progress = _Progress(
            emit, should_stop, config.train.early_stopping_patience, config.dataset.num_classes
        )
        self.classifier = None
        self.train_data: _SplitData | None = None
        self.val_data: _SplitData | None = None
        self.test_data: _SplitData | None = None
        self.cache_hits: list[str] = []
        self.feature_seconds = 0.0
        self.best_epoch = 0
        self.final_inputs: tuple[Any, Any] | None = None  # (model, val inputs) for evaluation
        self._inference_functions: dict[int, Any] = {}
        self._decode_announced = False

    # ----- data -----------------------------------------------------------------
    def load_data(self) -> None:
        from transfer_core.data import read_manifest

        manifest = read_manifest(self.spec)
        self.train_data = _load_split(self.spec, "train", manifest)
        self.val_data = _load_split(self.spec, "val", manifest)
        self.test_data = _load_split(self.spec, "test", manifest)
        if len(self.train_data.paths) == 0:
            raise RunFailed("The training split is empty: add images or lower the validation share.")
        if len(self.val_data.paths) == 0:
            raise RunFailed(
                "The validation split is empty, so accuracy could not be measured honestly: "
                "add images (at least 2 per class) or raise the validation share."
            )
        present = set(self.train_data.labels.tolist())
        if len(present) < 2:
            raise RunFailed("The training split holds fewer than 2 classes.")

    def image_dataset(self, data: _SplitData, *, training: bool, every_epoch: bool = False):
        """The split's image pipeline; one read ``every_epoch`` comes from the decoded-image cache."""
        import tensorflow as tf

        from transfer_core.data import make_tf_dataset

        split = "train" if data is self.train_data else ("val" if data is self.val_data else "test")
        cache_dir = None
        if every_epoch and self.train_config.use_cache:
            cache_dir = self.settings.cache_dir / "images"
            self._decode_once(split, cache_dir)
        ds = make_tf_dataset(
            self.spec,
            split,
            image_size=self.classifier.input_size,
            batch_size=self.train_config.batch_size,
            shuffle=training,
            seed=self.train_config.seed,
            cache_dir=cache_dir,
        )
        if training and self.train_config.augmentation:
            augmenter = build_augmenter(self.train_config.augmentation, self.train_config.seed)
            ds = ds.map(
                lambda x, y: (augmenter(x, training=True), y),
                num_parallel_calls=tf.data.AUTOTUNE,
            ).prefetch(tf.data.AUTOTUNE)
        return ds

    def epoch_datasets(self):
        """Training and validation pipelines for a stage that reads the images every epoch."""
        return (self.image_dataset(self.train_data, training=True, every_epoch=True),
                self.image_dataset(self.val_data, training=False, every_epoch=True))

    def _decode_once(self, split: str, cache_dir: Path) -> None:
        """Fill the split's decoded-image cache (if needed) with progress events and stop checks."""
        from transfer_core.data.image_cache import ensure_image_cache

        def progress(done: int, total: int) -> None:
            if not self._decode_announced:  # One stage for the training and validation splits.
                self.emit({"type": "stage", "stage": "decode", "epochs": 0, "cached": True,
                           "description": "Decoding and resizing each image once, kept on disk for every epoch"})
                self._decode_announced = True
            self.progress.check_stop()
            self.emit({"type": "progress", "stage": "decode", "done": done, "total": total})

        ensure_image_cache(self.spec, split, self.classifier.input_size, cache_dir, progress=progress)

    # ----- caching --------------------------------------------------------------
    def _cache_key(self, what: str, data: _SplitData) -> str | None:
        from transfer_core import zoo

        model = self.config.model
        if model.weights != "imagenet":
            return None  # Random weights differ per seed; nothing worth reusing.
        try:
            weights_file = Path(zoo.resolve_weights(model.backbone, self.classifier.input_size, settings=self.settings))
            weights_id = f"{weights_file.name}:{weights_file.stat().st_size}"
        except Exception:  # noqa: BLE001 - an unresolvable file just means no cache.
            return None
        import keras

        from transfer_core.data.decode import DECODE_VERSION

        payload = {
            "what": what,
            "backbone": model.backbone,
            "weights": weights_id,
            "input_size": self.classifier.input_size,
            "precision": resolve_precision(self.train_config.precision),
            "images": data.shas,
            "decode": DECODE_VERSION,  # Features of differently decoded pixels are not reused.
            "keras": keras.__version__,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]

    def compute_outputs(self, model, data: _SplitData, what: str, stage: str) -> np.ndarray:
        """Run ``model`` over ``data``'s images once, with an on-disk cache."""
        key = self._cache_key(what, data) if self.train_config.use_cache else None
        cache_path = self.settings.cache_dir / "features" / f"{key}.npy" if key else None
        if cache_path is not None and cache_path.exists():
            try:
                outputs = np.load(cache_path, allow_pickle=False)
                if outputs.shape[0] == len(data.paths):
                    self.cache_hits.append(what)
                    self.emit({"type": "progress", "stage": stage, "done": len(data.paths),
                               "total": len(data.paths), "cached": True})
                    return outputs
            except (OSError, ValueError):
                pass  # A damaged cache file is recomputed.
        started = time.perf_counter()
        outputs = self._predict_with_progress(model, data, stage)
        self.feature_seconds += time.perf_counter() - started
        if cache_path is not None and outputs.nbytes <= MAX_PREFIX_CACHE_BYTES:
            import io

            from transfer_core.fileio import atomic_write_bytes

            buffer = io.BytesIO()
            np.save(buffer, outputs, allow_pickle=False)
            atomic_write_bytes(cache_path, buffer.getvalue())
        return outputs

    def _predict_with_progress(self, model, data: _SplitData, stage: str) -> np.ndarray:
        ds = self.image_dataset(data, training=False)
        total = len(data.paths)
        done = 0
        chunks = []
        predict = self._inference_function(model)
        for images, _ in ds:
            self.progress.check_stop()
            chunks.append(predict(images).numpy())
            done += int(images.shape[0])
            self.emit({"type": "progress", "stage": stage, "done": done, "total": total})
        return np.concatenate(chunks, axis=0)

    def _inference_function(self, model):
        """One traced graph per model, for any batch size: tracing costs more than the
        forward pass itself on a small data set, so it must happen once per run."""
        import tensorflow as tf

        if id(model) not in self._inference_functions:
            size = self.classifier.input_size
            signature = [tf.TensorSpec([None, size, size, 3], tf.float32)]
            self._inference_functions[id(model)] = tf.function(
                lambda images: model(images, training=False), input_signature=signature
            )
        return self._inference_functions[id(model)]

    # ----- fitting --------------------------------------------------------------
    def fit(self, model, stage: str, epochs: int, learning_rate: float, train_inputs, val_inputs) -> None:
        """Compile and fit ``model`` on arrays (cached) or a tf.data pipeline (images)."""
        train_config = self.train_config
        if self.progress.stop_reason == "early":
            self.progress.stop_reason = ""  # Early stopping ends a stage, not the run.
        num_train = len(self.train_data.paths)
        batches = math.ceil(num_train / train_config.batch_size)
        callback = self.progress.callback(stage, batches, num_train)
        class_weight = (
            _class_weights(self.train_data.labels, self.spec.num_classes) if train_config.class_weights else None
        )
        on_arrays = isinstance(train_inputs, np.ndarray)
        if on_arrays and train_config.distribution == "none":
            with _graph_optimizer_off(model is self.classifier.head):
                _fit_arrays(model, callback, epochs, _make_optimizer(train_config.optimizer, learning_rate),
                            train_inputs, self.train_data.labels, val_inputs, self.val_data.labels,
                            batch_size=train_config.batch_size, class_weight=class_weight,
                            seed=train_config.seed + self.progress.epoch)
        elif on_arrays:
            # Under a tf.distribute strategy Keras' fit does the per-replica work.
            _compile(model, train_config.optimizer, learning_rate)
            model.fit(train_inputs, self.train_data.labels, batch_size=train_config.batch_size, epochs=epochs,
                      verbose=0, callbacks=[callback], class_weight=class_weight, shuffle=True,
                      validation_data=(val_inputs, self.val_data.labels))
        elif train_config.distribution == "none":
            _fit_datasets(model, callback, epochs, _make_optimizer(train_config.optimizer, learning_rate),
                          train_inputs, val_inputs, class_weight=class_weight)
        else:
            _compile(model, train_config.optimizer, learning_rate)
            # The tf.data pipeline shuffles (seeded) itself.
            model.fit(train_inputs, validation_data=val_inputs, epochs=epochs, verbose=0, callbacks=[callback],
                      class_weight=class_weight, shuffle=False)
        reason = self.progress.stop_reason
        if reason in ("stopped", "nan", "early"):
            callback.restore_best()
        if callback.best_epoch:
            self.best_epoch = callback.best_epoch
        self.final_inputs = (model, val_inputs)
        if reason == "stopped":
            raise RunStopped()
        if reason == "nan":
            raise RunFailed(
                f"The loss became NaN or exploded ({self.progress.nan_detail}): training diverged. "
                f"Lower the learning rate (now {learning_rate:g}; try 1e-3 for the head, 1e-4 or "
                "lower for fine-tuning)."
            )

    def stage(self, stage: str, description: str, epochs: int, cached: bool) -> None:
        self.progress.check_stop()
        self.emit({"type": "stage", "stage": stage, "description": description, "epochs": epochs,
                   "cached": cached})

    def train_head(self) -> None:
        """Feature extraction (and stage 1 of fine-tuning)."""
        classifier = self.classifier
        epochs = self.train_config.epochs
        lr = self.train_config.learning_rate
        if self.train_config.caches_features:
            self.stage("features", "Computing backbone features once for every image", 0, True)
            train_features = self.compute_outputs(classifier.feature_extractor, self.train_data, "pool", "features")
            val_features = self.compute_outputs(classifier.feature_extractor, self.val_data, "pool", "features")
            self.stage("head", "Training the new head on cached features", epochs, True)
            self.fit(classifier.head, "head", epochs, lr, train_features, val_features)
        else:
            why = "augmentation is on" if self.train_config.augmentation else "caching is off"
            train_images, val_images = self.epoch_datasets()
            self.stage("head", f"Training the head; the frozen backbone runs every epoch ({why})", epochs, False)
            self.fit(classifier.model, "head", epochs, lr, train_images, val_images)

    def fine_tune(self) -> None:
        """Stage 2 of fine-tuning: unfreeze per the plan, lower LR, recompile, train."""
        from transfer_core import freezing
        from transfer_core.models import split_classifier

        classifier = self.classifier
        freezing.apply_freeze_plan(classifier.backbone, self.config.freeze)
        epochs = self.train_config.fine_tune_epochs
        lr = self.train_config.fine_tune_learning_rate
        first = freezing.first_trainable_layer(classifier.backbone)
        cut = None
        if self.train_config.caches_features and first is not None:
            cut = freezing.cut_layer(classifier.backbone, first)
        if cut is not None:
            prefix, trainable_part = split_classifier(classifier, cut)
            size = _estimated_bytes(prefix, len(self.train_data.paths) + len(self.val_data.paths))
            if size <= MAX_PREFIX_CACHE_BYTES:
                self.stage("prefix", f"Caching the frozen layers' output (up to '{cut}') once", 0, True)
                train_cut = self.compute_outputs(prefix, self.train_data, f"prefix:{cut}", "prefix")
                val_cut = self.compute_outputs(prefix, self.val_data, f"prefix:{cut}", "prefix")
                self.stage("fine_tune", "Fine-tuning the unfrozen top blocks on the cached prefix",
                           epochs, True)
                self.fit(trainable_part, "fine_tune", epochs, lr, train_cut, val_cut)
                return
        if self.train_config.augmentation:
            why = "augmentation is on, so every epoch sees new images"
        elif first is None:
            why = "nothing is frozen"
        else:
            why = "no single cut point before the first trainable layer"
        train_images, val_images = self.epoch_datasets()
        self.stage("fine_tune", f"Fine-tuning the whole network each epoch ({why})", epochs, False)
        self.fit(classifier.model, "fine_tune", epochs, lr, train_images, val_images)

    def from_scratch(self) -> None:
        import keras

        from transfer_core import freezing

        freezing.apply_freeze_plan(
            self.classifier.backbone, FreezePlan(mode="all_trainable", train_batchnorm=True)
        )
        # Keras' MobileNets use BatchNorm momentum 0.999, tuned for long ImageNet runs: in a
        # few epochs from random weights the moving statistics barely leave their start, and
        # validation (which uses them) sits at chance. 0.9 lets them follow, so the baseline
        # is an honest one rather than a broken one.
        for layer in self.classifier.backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, 0.9)
        epochs = self.train_config.epochs
        train_images, val_images = self.epoch_datasets()
        self.stage("scratch", "Training every layer from random weights (no transfer)", epochs, False)
        self.fit(self.classifier.model, "scratch", epochs, self.train_config.learning_rate,
                 train_images, val_images)

    # ----- evaluation -------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """Validation (and test) metrics of the final model."""
        model, val_inputs = self.final_inputs
        if isinstance(val_inputs, np.ndarray):
            # Called directly: Keras' predict builds a predict function first (~0.05 s, as
            # long as the rest of a warm feature-extraction run's evaluation).
            val_probs = np.concatenate([
                np.asarray(model(val_inputs[start:start + 256], training=False), dtype="float32")
                for start in range(0, len(val_inputs), 256)
            ])
        else:
            val_probs = self.classifier.model.predict(
                self.image_dataset(self.val_data, training=False), verbose=0
            )
        root = Path(self.spec.root)
        rel = [str(Path(p).relative_to(root)) for p in self.val_data.paths]
        result = {"val": evaluate_predictions(self.val_data.labels, val_probs, self.spec.class_names, rel)}
        if self.test_data.paths:
            test_probs = self.classifier.model.predict(
                self.image_dataset(self.test_data, training=False), verbose=0
            )
            rel_test = [str(Path(p).relative_to(root)) for p in self.test_data.paths]
            result["test"] = evaluate_predictions(
                self.test_data.labels, test_probs, self.spec.class_names, rel_test
            )
        return result


@contextlib.contextmanager
def _graph_optimizer_off(off: bool):
    """Turn TensorFlow's graph optimiser (grappler) off while the head's step is first called.

    Grappler optimises a function when it is first called: ~0.02 s for the head's step (first
    call 0.067 s vs 0.045 s) and again for its forward pass, a tenth of a warm feature-extraction
    run, for nothing in return on a few Dense layers (0.80 vs 0.82 ms per later step;
    bench/bench_head_step.py). Conv layers gain from it (fused kernels): it stays on for the rest.
    """
    if not off:
        yield
        return
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def _fit_arrays(model, callback, epochs: int, optimizer, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, *, batch_size: int, class_weight: dict[int, float] | None, seed: int) -> None:
    """``model.fit`` for in-memory cached inputs (see :func:`_fit_loop`), shuffled per epoch."""
    rng = np.random.default_rng(seed)
    y = y.astype("int32")

    def train_batches():
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            index = order[start:start + batch_size]
            yield x[index], y[index]

    def val_batches():
        for start in range(0, len(y_val), 1024):
            yield x_val[start:start + 1024], y_val[start:start + 1024]

    _fit_loop(model, callback, epochs, optimizer, [None, *x.shape[1:]], tf_dtype=x.dtype,
              train_batches=train_batches, val_batches=val_batches, class_weight=class_weight)


def _fit_datasets(model, callback, epochs: int, optimizer, train_ds, val_ds, *,
                  class_weight: dict[int, float] | None) -> None:
    """``model.fit`` for image pipelines (see :func:`_fit_loop`); the pipeline shuffles itself."""
    element = train_ds.element_spec[0]

    def batches(ds):
        return (((images, labels.numpy()) for images, labels in ds))

    _fit_loop(model, callback, epochs, optimizer, [None, *element.shape[1:]], tf_dtype=element.dtype,
              train_batches=lambda: batches(train_ds), val_batches=lambda: batches(val_ds),
              class_weight=class_weight)


def _fit_loop(model, callback, epochs: int, optimizer, input_shape, *, tf_dtype, train_batches, val_batches,
              class_weight: dict[int, float] | None) -> None:
    """A lean ``model.fit`` with the same callback protocol: one traced train step and one forward pass.

    Keras' ``fit`` spends far longer than an epoch on cached features on per-epoch set-up and on
    tracing a train and a test function; on images, building its train function costs ~1.7 s more
    than this step (bench/bench_first_step.py). Logs match Keras': running mean loss/accuracy per
    batch, and epoch-end ``val_loss`` / ``val_accuracy``. ``train_batches()`` yields ``(inputs,
    labels)`` for one epoch (labels as NumPy), ``val_batches()`` the same for validation.
    """
    import keras
    import tensorflow as tf

    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    # Create the optimizer's slot variables now: variables created inside the first trace make
    # tf.function trace the whole step twice (whole network: first epoch 8.6 s -> 4.4 s,
    # bench/bench_first_step.py; head: 0.14 s -> 0.05 s).
    optimizer.build(model.trainable_variables)
    weight_of_class = None
    if class_weight:
        weight_of_class = np.array([class_weight.get(i, 1.0) for i in range(max(class_weight) + 1)], "float32")
    signature = [tf.TensorSpec(input_shape, tf.as_dtype(tf_dtype)), tf.TensorSpec([None], tf.int32),
                 tf.TensorSpec([None], tf.float32)]

    # No autograph: the steps have no tensor-dependent Python control flow, and converting
    # them costs more than the head's whole training on a small data set.
    @tf.function(input_signature=signature, autograph=False)
    def train_step(inputs, labels, weights):
        with tf.GradientTape() as tape:
            probabilities = model(inputs, training=True)
            per_sample = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            # Keras' class_weight semantics: weighted losses averaged over the batch.
            loss = tf.reduce_mean(tf.cast(per_sample, tf.float32) * weights)
            if model.losses:
                loss += tf.add_n(model.losses)
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        predicted = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return loss, tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))

    @tf.function(input_signature=signature[:1], autograph=False)
    def forward(inputs):
        return tf.cast(model(inputs, training=False), tf.float32)

    model.stop_training = False
    callback.set_model(model)
    for epoch in range(epochs):
        callback.on_epoch_begin(epoch)
        seen, loss_sum, correct_sum = 0, 0.0, 0.0
        for batch, (inputs, labels) in enumerate(train_batches()):
            labels = np.asarray(labels, dtype="int32")
            weights = weight_of_class[labels] if weight_of_class is not None else np.ones(len(labels), "float32")
            loss, correct = train_step(inputs, labels, weights)
            seen += len(labels)
            loss_sum += float(loss) * len(labels)
            correct_sum += float(correct)
            callback.on_train_batch_end(batch, {"loss": loss_sum / seen, "accuracy": correct_sum / seen})
            if model.stop_training:
                break
        probabilities, truth = [], []
        for inputs, labels in val_batches():
            probabilities.append(forward(inputs).numpy())
            truth.append(np.asarray(labels, dtype="int64"))
        probabilities, truth = np.concatenate(probabilities), np.concatenate(truth)
        true_probability = np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1.0)
        callback.on_epoch_end(epoch, {
            "loss": loss_sum / max(seen, 1),
            "accuracy": correct_sum / max(seen, 1),
            "val_loss": float(-np.log(true_probability).mean()),
            "val_accuracy": float((probabilities.argmax(axis=1) == truth).mean()),
        })
        if model.stop_training:
            break


def _estimated_bytes(prefix, num_images: int) -> int:
    shape = prefix.output.shape[1:]
    return int(np.prod([int(d) for d in shape])) * 4 * num_images


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _param_counts(model) -> tuple[int, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    frozen = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return trainable, frozen


def compute_head_features(
    config: RunConfig, settings: Settings | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features of one split, through the engine's on-disk cache.

    The same cache key as a feature-extraction run, so a run and this call reuse
    each other's work.

    Returns:
        ``(features, labels)``.

    Raises:
        ValueError: The split is empty.
    """
    from transfer_core.models import build_classifier

    settings = settings or Settings.from_env()
    engine = _Engine(config, emit=lambda event: None, should_stop=lambda: False, settings=settings)
    data = _load_split(config.dataset, split)
    if not data.paths:
        raise ValueError(f"The {split} split of {config.dataset.root} is empty. Received: 0 images")
    engine.train_data = data
    engine.classifier = build_classifier(config.model, config.dataset.num_classes, settings=settings)
    features = engine.compute_outputs(engine.classifier.feature_extractor, data, "pool", "features")
    return features, data.labels


def preflight(config: RunConfig, settings: Settings | None = None) -> None:
    """Check a run before any work starts; cheap (no TensorFlow).

    Raises:
        ValueError: Unknown backbone, an input size the backbone rejects, a data
            set that is missing or has an empty training or validation split.
        transfer_core.zoo.WeightsUnavailableError: ImageNet weights are needed,
            are not available offline and downloads are off.
    """
    from transfer_core import zoo
    from transfer_core.data import DataError, read_manifest

    settings = settings or Settings.from_env()
    zoo.get_backbone_info(config.model.backbone)
    input_size = zoo.check_input_size(config.model.backbone, config.model.input_size)
    try:
        manifest = read_manifest(config.dataset)
    except (DataError, OSError) as error:
        raise ValueError(f"The data set at {config.dataset.root} cannot be read: {error}") from None
    counts = manifest["split"].value_counts()
    if counts.get("train", 0) == 0 or counts.get("val", 0) == 0:
        raise ValueError(
            "Training needs images in both the training and the validation split. "
            f"Received: train={int(counts.get('train', 0))}, val={int(counts.get('val', 0))} images"
        )
    if config.model.weights == "imagenet" and zoo.offline_only():
        # Resolving raises WeightsUnavailableError with the file name and where to put it.
        zoo.resolve_weights(config.model.backbone, input_size, settings=settings)


def train(
    config: RunConfig,
    *,
    emit: Emit | None = None,
    should_stop: ShouldStop | None = None,
    settings: Settings | None = None,
) -> TrainResult:
    """Train one run in this process and evaluate it.

    Args:
        config: What to train (data set, model, freeze plan, training settings).
        emit: Receives every progress event (a dict with a ``type``); see ``EVENT_TYPES``.
        should_stop: Polled after every batch; returning True stops the run
            within one batch and keeps the best weights so far.
        settings: Weights folder and cache location (``Settings.from_env()`` when None).

    Returns:
        A :class:`TrainResult`. Failures (missing weights, empty splits, NaN
        loss, ...) come back as ``status="failed"`` with a reason, not as exceptions.
    """
    emit = emit or (lambda event: None)
    should_stop = should_stop or (lambda: False)
    settings = settings or Settings.from_env()
    engine = _Engine(config, emit, should_stop, settings)
    status, reason = "finished", ""
    report: dict[str, Any] = {}
    try:
        policy = reset_keras_state(config.train.seed, config.train.precision)
        engine.load_data()
        emit(
            {
                "type": "run_started",
                "strategy": config.train.strategy,
                "backbone": config.model.backbone,
                "weights": config.model.weights,
                "classes": list(config.dataset.class_names),
                "num_train": len(engine.train_data.paths),
                "num_val": len(engine.val_data.paths),
                "epochs_total": _epochs_total(config),
                "batch_size": config.train.batch_size,
                "precision": policy,
                "distribution": config.train.distribution,
            }
        )
        with _distribution_scope(config.train.distribution):
            engine.classifier = _build(config, settings)
            strategy = config.train.strategy
            if strategy == "from_scratch":
                engine.from_scratch()
            else:
                engine.train_head()
                if strategy == "fine_tuning":
                    engine.fine_tune()
    except RunStopped:
        status, reason = "stopped", "stopped on request; the best weights so far were kept"
    except RunFailed as error:
        status, reason = "failed", str(error)
    except Exception as error:  # noqa: BLE001 - every failure becomes a reason a person can read.
        from transfer_core.zoo import WeightsUnavailableError

        status = "failed"
        if isinstance(error, (WeightsUnavailableError, ValueError)):
            reason = str(error)
        else:
            reason = f"{type(error).__name__}: {error}"
    history = pd.DataFrame(engine.progress.rows, columns=EPOCH_COLUMNS)
    if status != "failed" and engine.final_inputs is None:
        # Stopped before any epoch finished: there is nothing worth keeping.
        return TrainResult(status, reason, None, history, {"status": status, "reason": reason})
    if status != "failed":
        try:
            report = _report(config, engine, history, status, reason)
        except Exception as error:  # noqa: BLE001
            status, reason = "failed", f"Evaluation failed: {type(error).__name__}: {error}"
    if status == "failed":
        return TrainResult(status, reason, None, history, {"status": status, "reason": reason})
    if _shares_backbone(config):
        from transfer_core.models import keep_backbone

        keep_backbone(engine.classifier, config.model, settings)
    return TrainResult(status, reason, engine.classifier, history, report)


def _build(config: RunConfig, settings: Settings):
    from transfer_core.models import build_classifier

    train_batchnorm = config.freeze.train_batchnorm or config.train.strategy == "from_scratch"
    if not _shares_backbone(config):
        from transfer_core.models import forget_kept_backbone

        forget_kept_backbone()  # This run builds its own; a kept one would only take memory.
    return build_classifier(
        config.model, config.dataset.num_classes, settings=settings, train_batchnorm=train_batchnorm,
        reuse_backbone=_shares_backbone(config), seed=config.train.seed,
    )


def _shares_backbone(config: RunConfig) -> bool:
    """Feature extraction never changes the backbone, so it may share the one an earlier run in
    this process kept (or a standby worker prebuilt); the head's seed keeps the result the same.
    Not under tf.distribute: its variables belong to that strategy."""
    return config.train.strategy == "feature_extraction" and config.train.distribution == "none"


def _epochs_total(config: RunConfig) -> int:
    if config.train.strategy == "fine_tuning":
        return config.train.epochs + config.train.fine_tune_epochs
    return config.train.epochs


def _report(config: RunConfig, engine: _Engine, history: pd.DataFrame, status: str, reason: str) -> dict:
    evaluation = engine.evaluate()
    trainable, frozen = _param_counts(engine.classifier.model)
    training_seconds = float(history["seconds"].sum()) if len(history) else 0.0
    epochs_run = len(history)
    num_train = len(engine.train_data.paths)
    val = evaluation["val"]
    return {
        "status": status,
        "reason": reason,
        "strategy": config.train.strategy,
        "backbone": config.model.backbone,
        "weights": config.model.weights,
        "input_size": engine.classifier.input_size,
        "precision": resolve_precision(config.train.precision),
        "distribution": config.train.distribution,
        "class_names": list(config.dataset.class_names),
        "num_train": num_train,
        "num_val": len(engine.val_data.paths),
        "val_accuracy": val["accuracy"],
        "val_loss": val["loss"],
        "best_val_accuracy": float(history["val_accuracy"].max()) if epochs_run else None,
        "best_val_loss": float(history["val_loss"].min()) if epochs_run else None,
        "best_epoch": engine.best_epoch,
        "epochs": epochs_run,
        "seconds": round(engine.progress.elapsed(), 3),
        "training_seconds": round(training_seconds, 3),
        "feature_seconds": round(engine.feature_seconds, 3),
        "seconds_per_epoch": round(training_seconds / epochs_run, 4) if epochs_run else None,
        "images_per_second": round(num_train * epochs_run / training_seconds, 2) if training_seconds else None,
        "trainable_params": trainable,
        "frozen_params": frozen,
        "cache_hits": engine.cache_hits,
        "reused_backbone": engine.classifier.reused_backbone,
        "peak_rss_mb": _peak_rss_mb(),
        "evaluation": evaluation,
    }
