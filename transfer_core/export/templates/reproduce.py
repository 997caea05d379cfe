#!/usr/bin/env python
"""Reproduce a Transfer Lab run with plain Keras and TensorFlow.

Which run, and every setting it used, is in the generated block below (written by Transfer Lab's
Export page; the rest of this file is the same for every run).

Usage:
    python this_script.py DATA_FOLDER [--weights imagenet|random|FILE.h5] [--weights-dir DIR] [--output model.keras]

DATA_FOLDER is either the Transfer Lab data set folder (it holds manifest.csv, which gives
exactly the run's train/validation split), or a folder with one sub-folder of images per class
(optionally inside train/ and val/ folders). For a plain folder the split is recomputed with the
same rule (content hash and seed), so unchanged image files land in the same split.

Needs only TensorFlow 2.16+ and Keras 3. Results match the run closely but not bit for bit:
random initialisation and dropout draw different random numbers outside the app.
"""

import argparse
import csv
import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

# ----- The run's settings ---------------------------------------------------------------------
# <generated>: Transfer Lab replaces everything up to </generated> with the run's values.
# (Placeholder values, so that this template itself lints. The two "# <shared: ...>" blocks below are
# filled in too, with the source of the named Transfer Lab functions, so the script cannot drift from them.)
CLASS_NAMES = ["cat", "dog"]
BACKBONE = "MobileNetV2"
BACKBONE_KWARGS = {"alpha": 0.35}
BACKBONE_FAMILY = "mobilenet"
PREPROCESSING = "tf"
INPUT_SIZE = 96
WEIGHTS = "imagenet"
WEIGHTS_FILES = ["mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"]
WEIGHTS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
DROPOUT_RATE = 0.2
HIDDEN_UNITS = 0
HEAD_POOLING = "avg"
STRATEGY = "feature_extraction"
EPOCHS = 5
FINE_TUNE_EPOCHS = 0
BATCH_SIZE = 32
LEARNING_RATE = 0.001
FINE_TUNE_LEARNING_RATE = 1e-05
OPTIMIZER = "adam"
AUGMENTATIONS = ("flip", "rotate", "zoom", "contrast")
AUGMENTATION = []
EARLY_STOPPING_PATIENCE = 0
CLASS_WEIGHTS = False
SEED = 0
PRECISION = "float32"
SPLIT_SEED = 0
VAL_FRACTION = 0.2
TEST_FRACTION = 0.0
MANIFEST = "manifest.csv"
UNFREEZE_FROM_LAYER = None
UNFREEZE_LAYERS = []
TRAIN_BATCHNORM = False
# </generated>

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
CLASS_INDEX = {name: index for index, name in enumerate(CLASS_NAMES)}


# ----- Data -------------------------------------------------------------------------------------


# <shared: transfer_core.data.split.split_sizes>: Transfer Lab writes its own function's source here.
def split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    raise NotImplementedError("Placeholder: a generated script holds transfer_core.data.split.split_sizes here.")
# </shared>


def assign_splits(items, seed, val_fraction, test_fraction):
    """Transfer Lab's split: ``"train"``, ``"val"`` or ``"test"`` for each ``(label, sha256, path)`` item.

    Within each class, images are ordered by sha256 of ``"{seed}:{content sha256}"`` (ties broken by the
    content hash, then the path); the first go to validation, the next to test, the rest to training.
    """
    by_label = {}
    for index, (label, _, _) in enumerate(items):
        by_label.setdefault(label, []).append(index)
    splits = ["train"] * len(items)
    for indices in by_label.values():
        ordered = sorted(
            indices,
            key=lambda i: (hashlib.sha256(f"{seed}:{items[i][1]}".encode()).hexdigest(), items[i][1], items[i][2]),
        )
        n_val, n_test = split_sizes(len(ordered), val_fraction, test_fraction)
        for position, index in enumerate(ordered):
            splits[index] = "val" if position < n_val else ("test" if position < n_val + n_test else "train")
    return splits


def images_in(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_file_lists(data_dir):
    """{"train": (paths, labels), "val": (paths, labels)} and where the split came from."""
    splits = {"train": ([], []), "val": ([], [])}
    manifest = data_dir / MANIFEST  # The data set version the run used (versions/<n>/manifest.csv after a fix).
    if not manifest.is_file() and (data_dir / "manifest.csv").is_file():
        raise SystemExit(f"{data_dir} is a Transfer Lab data set, but not the version this run used: {MANIFEST} "
                         "is missing there.")
    if manifest.is_file():
        with open(manifest, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["split"] in splits and row["label"] in CLASS_INDEX:
                    splits[row["split"]][0].append(str(data_dir / row["path"]))
                    splits[row["split"]][1].append(CLASS_INDEX[row["label"]])
        return splits, f"{MANIFEST} (the run's exact split and labels)"
    if (data_dir / "train").is_dir() and (data_dir / "val").is_dir():
        for split in ("train", "val"):
            for name in CLASS_NAMES:
                for path in images_in(data_dir / split / name):
                    splits[split][0].append(str(path))
                    splits[split][1].append(CLASS_INDEX[name])
        return splits, "the folder's own train/ and val/ sub-folders"
    files = [(name, path) for name in CLASS_NAMES for path in images_in(data_dir / name)]
    items = [(name, hashlib.sha256(path.read_bytes()).hexdigest(), path.relative_to(data_dir).as_posix())
             for name, path in files]
    assigned = assign_splits(items, SPLIT_SEED, VAL_FRACTION, TEST_FRACTION)
    for index, (name, path) in enumerate(files):
        split = assigned[index]
        if split in splits:
            splits[split][0].append(str(path))
            splits[split][1].append(CLASS_INDEX[name])
    return splits, "class folders, split by content hash and seed"


def decode(path, label):
    # The same decode and resize as Transfer Lab's pipeline: bilinear, no crop, whole numbers 0..255.
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, (INPUT_SIZE, INPUT_SIZE), method="bilinear")
    return tf.round(image), label  # Whole numbers in 0..255, as the app gives.


def make_dataset(paths, labels, shuffle):
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, dtype=np.int32)))
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=SEED, reshuffle_each_iteration=True)
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle and AUGMENTATION:
        augment = build_augmenter(AUGMENTATION, SEED)
        dataset = dataset.batch(BATCH_SIZE).map(lambda x, y: (augment(x, training=True), y))
    else:
        dataset = dataset.batch(BATCH_SIZE)
    return dataset.prefetch(tf.data.AUTOTUNE)


# <shared: transfer_core.data.augment.build_augmenter>: Transfer Lab writes its own function's source here.
def build_augmenter(augmentation: Sequence[str], seed: int = 0):
    raise NotImplementedError("Placeholder: a generated script holds transfer_core.data.augment.build_augmenter here.")
# </shared>


# ----- Model ------------------------------------------------------------------------------------


def resolve_weights(choice, weights_dir):
    """None (random), or a local weights file: given, found offline, or downloaded by Keras."""
    if choice == "random":
        return None
    if choice != "imagenet":
        return choice
    folders = [Path(weights_dir).expanduser()] if weights_dir else []
    folders.append(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models")
    for name in WEIGHTS_FILES:
        for folder in folders:
            if (folder / name).is_file():
                return str(folder / name)
    name = WEIGHTS_FILES[0]
    return keras.utils.get_file(name, WEIGHTS_ORIGIN + name, cache_subdir="models")


def preprocessing_layers():
    """Stock layers that map raw 0..255 RGB to what the backbone expects (inside the model)."""
    if PREPROCESSING == "tf":
        return [keras.layers.Rescaling(scale=1.0 / 127.5, offset=-1.0, name="preprocess_tf")]
    if PREPROCESSING == "torch":
        std = (0.229, 0.224, 0.225)
        return [
            keras.layers.Rescaling(scale=1.0 / 255.0, name="preprocess_torch_scale"),
            keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[s * s for s in std],
                                       name="preprocess_torch_normalize"),
        ]
    if PREPROCESSING == "caffe":
        # RGB -> BGR and minus the ImageNet mean, as one frozen 1x1 convolution.
        flip = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name="preprocess_caffe_bgr")
        flip.build((None, None, None, 3))
        kernel = np.zeros((1, 1, 3, 3), dtype="float32")
        for out_channel in range(3):
            kernel[0, 0, 2 - out_channel, out_channel] = 1.0
        flip.set_weights([kernel, -np.asarray([103.939, 116.779, 123.68], dtype="float32")])
        return [flip]
    return []  # The backbone preprocesses inside itself.


def build_backbone(weights_path):
    application = getattr(keras.applications, BACKBONE)(
        include_top=False, weights=weights_path, input_shape=(INPUT_SIZE, INPUT_SIZE, 3), pooling=None,
        **BACKBONE_KWARGS,
    )
    if weights_path is not None and BACKBONE_FAMILY == "efficientnet":
        # Keras adds a rescaling step only when it downloads EfficientNet weights itself; match it.
        norm = next(layer for layer in application.layers if isinstance(layer, keras.layers.Normalization))
        norm.adapt_variance.assign(np.asarray(norm.adapt_variance) * np.asarray([0.229, 0.224, 0.225]))
        norm.finalize_state()
    return keras.Model(application.input, application.output, name="backbone")


def build_head(feature_dim):
    features = keras.Input(shape=(feature_dim,), name="features")
    x = features
    if DROPOUT_RATE > 0:
        x = keras.layers.Dropout(DROPOUT_RATE, name="dropout")(x)
    if HIDDEN_UNITS > 0:
        x = keras.layers.Dense(HIDDEN_UNITS, activation="relu", name="hidden")(x)
        if DROPOUT_RATE > 0:
            x = keras.layers.Dropout(DROPOUT_RATE, name="hidden_dropout")(x)
    # float32 output even under a mixed-precision policy: a 16-bit softmax loses small probabilities.
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="classifier", dtype="float32")(x)
    return keras.Model(features, outputs, name="head")


def build_model(weights_path):
    """image -> preprocessing -> backbone -> pooling (HEAD_POOLING) -> head."""
    backbone = build_backbone(weights_path)
    backbone.trainable = False
    image = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = image
    for layer in preprocessing_layers():
        x = layer(x)
    # training=False keeps BatchNormalization in inference mode even when unfrozen (the Keras recipe).
    x = backbone(x, training=None if TRAIN_BATCHNORM else False)
    # "avg": the mean of each channel; "max": its strongest response; "flatten": every position and
    # channel (the classic Keras recipe: many more weights in the head).
    pooling = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D,
               "flatten": keras.layers.Flatten}[HEAD_POOLING]
    features = pooling(name="pool")(x)
    head = build_head(int(features.shape[-1]))
    model = keras.Model(image, head(features), name="classifier")
    feature_extractor = keras.Model(image, features, name="feature_extractor")
    return model, backbone, head, feature_extractor


def unfreeze(backbone):
    """Stage 2: unfreeze the layers the run fine-tuned; BatchNorm stays frozen unless the run let it train."""
    backbone.trainable = True
    names = [layer.name for layer in backbone.layers]
    first = names.index(UNFREEZE_FROM_LAYER) if UNFREEZE_FROM_LAYER else None
    for index, layer in enumerate(backbone.layers):
        trainable = index >= first if first is not None else layer.name in UNFREEZE_LAYERS
        if STRATEGY == "from_scratch":
            trainable = True
        if isinstance(layer, keras.layers.BatchNormalization) and not TRAIN_BATCHNORM:
            trainable = False
        layer.trainable = trainable


# ----- Training ---------------------------------------------------------------------------------


def optimizer(learning_rate):
    if OPTIMIZER == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if OPTIMIZER == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if OPTIMIZER == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def compile_model(model, learning_rate):
    # Compile again after every change of `trainable`: that is what makes it take effect.
    model.compile(optimizer=optimizer(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])


class KeepBestWeights(keras.callbacks.Callback):
    """Keep the whole model's weights at the run's best validation loss, across every stage.

    As Transfer Lab does: at the end of every fit (completed or stopped early) the model holds the
    best epoch so far, and a fine-tuning stage that only did worse gives back the head stage's best.
    (Keras' EarlyStopping(restore_best_weights=True) restores only when it stops the fit early.)
    """

    def __init__(self, model):
        super().__init__()
        self.whole_model = model  # The head's fit sees only the head; keep the whole model.
        self.best_loss = math.inf
        self.best_epoch = 0
        self.best_weights = None
        self.epochs_seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_seen += 1
        val_loss = float((logs or {}).get("val_loss", math.inf))
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch = val_loss, self.epochs_seen
            self.best_weights = self.whole_model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.whole_model.set_weights(self.best_weights)


def callbacks(keep_best):
    kept = [keep_best]
    if EARLY_STOPPING_PATIENCE:
        # Patience per stage; KeepBestWeights does the restoring, completed or not.
        kept.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=EARLY_STOPPING_PATIENCE))
    return kept


def class_weights(labels):
    if not CLASS_WEIGHTS:
        return None
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(float)
    return {i: float(counts.sum() / (len(CLASS_NAMES) * c)) if c else 0.0 for i, c in enumerate(counts)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="data set folder (manifest.csv, or one sub-folder per class)")
    parser.add_argument("--weights", default=WEIGHTS, help='"imagenet", "random" or a path to a .h5 weights file')
    parser.add_argument("--weights-dir", default=os.environ.get("TRANSFER_WEIGHTS_DIR", ""),
                        help="folder with Keras weight files (searched before downloading)")
    parser.add_argument("--output", default="model.keras", help="where to save the trained model")
    args = parser.parse_args()

    keras.utils.set_random_seed(SEED)
    precision = PRECISION
    if precision == "auto":
        precision = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    keras.mixed_precision.set_global_policy(precision)
    splits, source = load_file_lists(args.data)
    (train_paths, train_labels), (val_paths, val_labels) = splits["train"], splits["val"]
    print(f"Split from {source}: {len(train_paths)} training and {len(val_paths)} validation images.")
    if not train_paths or not val_paths:
        raise SystemExit("Need images in both the training and the validation split.")
    train_labels = np.asarray(train_labels, dtype=np.int32)
    val_labels = np.asarray(val_labels, dtype=np.int32)
    weights = class_weights(train_labels)

    model, backbone, head, feature_extractor = build_model(resolve_weights(args.weights, args.weights_dir))
    train_images = make_dataset(train_paths, train_labels, shuffle=True)
    val_images = make_dataset(val_paths, val_labels, shuffle=False)
    keep_best = KeepBestWeights(model)

    if STRATEGY == "from_scratch":
        unfreeze(backbone)
        # As Transfer Lab does: BatchNorm momentum 0.9 instead of Keras' 0.999, or in a few epochs from
        # random weights the moving statistics barely move and validation sits at chance.
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, 0.9)
        compile_model(model, LEARNING_RATE)
        model.fit(train_images, validation_data=val_images, epochs=EPOCHS, class_weight=weights,
                  callbacks=callbacks(keep_best), verbose=2)
    else:
        # Stage 1: the backbone is frozen, so its pooled features are computed once and the head trains on them.
        if AUGMENTATION:
            compile_model(model, LEARNING_RATE)
            model.fit(train_images, validation_data=val_images, epochs=EPOCHS, class_weight=weights,
                      callbacks=callbacks(keep_best), verbose=2)
        else:
            train_features = feature_extractor.predict(make_dataset(train_paths, train_labels, False), verbose=0)
            val_features = feature_extractor.predict(val_images, verbose=0)
            compile_model(head, LEARNING_RATE)
            head.fit(train_features, train_labels, batch_size=BATCH_SIZE, shuffle=True, epochs=EPOCHS,
                     validation_data=(val_features, val_labels), class_weight=weights, callbacks=callbacks(keep_best),
                     verbose=2)
        if STRATEGY == "fine_tuning":
            # Stage 2: unfreeze the top of the backbone and train on with a lower learning rate.
            unfreeze(backbone)
            compile_model(model, FINE_TUNE_LEARNING_RATE)
            model.fit(train_images, validation_data=val_images, epochs=FINE_TUNE_EPOCHS, class_weight=weights,
                      callbacks=callbacks(keep_best), verbose=2)

    compile_model(model, LEARNING_RATE)
    _, accuracy = model.evaluate(val_images, verbose=0)
    print(f"Kept the best validation-loss epoch ({keep_best.best_epoch} of {keep_best.epochs_seen}).")
    print(f"val_accuracy={accuracy:.4f}")
    model.save(args.output)
    print(f"Saved the model to {args.output}")


if __name__ == "__main__":
    main()
