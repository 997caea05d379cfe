"""The one lean training loop and its adapters: in-memory arrays, tf.data pipelines, Keras' fit.

:func:`fit_stage` trains one stage of a run: it picks the adapter, leaves the model holding the
run's best validation-loss weights so far (however the stage ended: completed, early stopping,
Stop, budget or divergence) and turns a stop or a divergence into :class:`RunStopped` /
:class:`RunFailed`. Keras' own ``fit`` is used only under a ``tf.distribute`` strategy, where it
does the per-replica work.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from transfer_core.training.context import RunContext
from transfer_core.training.errors import BudgetUsed, RunFailed, RunStopped
from transfer_core.training.inputs import class_weights
from transfer_core.training.keras_state import make_optimizer
from transfer_core.training.step_cache import train_steps


def fit_stage(ctx: RunContext, model, stage: str, epochs: int, learning_rate: float, train_inputs,
              val_inputs) -> None:
    """Compile and fit ``model`` on arrays (cached) or a tf.data pipeline (images)."""
    train_config = ctx.train_config
    progress = ctx.progress
    if progress.stop_reason == "early":
        progress.stop_reason = ""  # Early stopping ends a stage, not the run.
    num_train = len(ctx.train_data.paths)
    batches = math.ceil(num_train / train_config.batch_size)
    callback = progress.callback(stage, batches, num_train)
    class_weight = (
        class_weights(ctx.train_data.labels, ctx.spec.num_classes) if train_config.class_weights else None
    )
    on_arrays = isinstance(train_inputs, np.ndarray)
    if on_arrays and train_config.distribution == "none":
        with _graph_optimizer_off(model is ctx.classifier.head):
            fit_arrays(model, callback, epochs, make_optimizer(train_config.optimizer, learning_rate),
                       train_inputs, ctx.train_data.labels, val_inputs, ctx.val_data.labels,
                       batch_size=train_config.batch_size, class_weight=class_weight,
                       seed=train_config.seed + progress.epoch)
    elif on_arrays:
        # Under a tf.distribute strategy Keras' fit does the per-replica work.
        _compile(model, train_config.optimizer, learning_rate)
        model.fit(train_inputs, ctx.train_data.labels, batch_size=train_config.batch_size, epochs=epochs,
                  verbose=0, callbacks=[callback], class_weight=class_weight, shuffle=True,
                  validation_data=(val_inputs, ctx.val_data.labels))
    elif train_config.distribution == "none":
        fit_datasets(model, callback, epochs, make_optimizer(train_config.optimizer, learning_rate),
                     train_inputs, val_inputs, class_weight=class_weight)
    else:
        _compile(model, train_config.optimizer, learning_rate)
        # The tf.data pipeline shuffles (seeded) itself.
        model.fit(train_inputs, validation_data=val_inputs, epochs=epochs, verbose=0, callbacks=[callback],
                  class_weight=class_weight, shuffle=False)
    reason = progress.stop_reason
    keep_run_best(ctx, callback)
    if progress.rows:  # Stopped inside the run's first epoch: no epoch to keep, no model to evaluate.
        ctx.final_inputs = (model, val_inputs)
    if reason == "stopped":
        raise RunStopped()
    if reason == "budget":
        raise BudgetUsed()  # Ends the run (later stages too), which still finishes.
    if reason == "nan":
        raise RunFailed(
            f"The loss became NaN or exploded ({progress.nan_detail}): training diverged. "
            f"Lower the learning rate (now {learning_rate:g}; try 1e-3 for the head, 1e-4 or "
            "lower for fine-tuning)."
        )


def keep_run_best(ctx: RunContext, callback) -> None:
    """Leave ``ctx.classifier.model`` holding the best validation-loss epoch of the run so far.

    The stage's best epoch is restored; when an earlier stage did better (fine-tuning that only
    made the head's validation loss worse), that stage's snapshot of the whole model is. So the
    kept model is always the epoch the report names (``best_epoch``), and the reproduce script's
    ``KeepBestWeights`` callback does the same.
    """
    progress = ctx.progress
    callback.restore_best()
    if callback.best_weights is not None and callback.best_loss < progress.best_loss:
        progress.best_loss = callback.best_loss
        ctx.best_epoch = callback.best_epoch
        # One copy per stage, for a later stage that ends worse.
        progress.best_snapshot = ctx.classifier.model.get_weights()
    elif progress.best_snapshot is not None:
        ctx.classifier.model.set_weights(progress.best_snapshot)


def _compile(model, optimizer: str, learning_rate: float) -> None:
    """Compile for Keras' own fit (the tf.distribute adapter)."""
    # Recompiling is what makes a change of `trainable` take effect.
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # XLA compilation ("auto") costs more than it saves for the small models and
        # short runs of a classroom; plain graph mode starts faster on a CPU.
        jit_compile=False,
    )


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


def fit_arrays(model, callback, epochs: int, optimizer, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
                y_val: np.ndarray, *, batch_size: int, class_weight: dict[int, float] | None, seed: int) -> None:
    """``model.fit`` for in-memory cached inputs (see :func:`fit_loop`), shuffled per epoch."""
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

    fit_loop(model, callback, epochs, optimizer, [None, *x.shape[1:]], tf_dtype=x.dtype,
              train_batches=train_batches, val_batches=val_batches, class_weight=class_weight)


def fit_datasets(model, callback, epochs: int, optimizer, train_ds, val_ds, *,
                  class_weight: dict[int, float] | None) -> None:
    """``model.fit`` for image pipelines (see :func:`fit_loop`); the pipeline shuffles itself."""
    element = train_ds.element_spec[0]

    def batches(ds):
        return (((images, labels.numpy()) for images, labels in ds))

    fit_loop(model, callback, epochs, optimizer, [None, *element.shape[1:]], tf_dtype=element.dtype,
              train_batches=lambda: batches(train_ds), val_batches=lambda: batches(val_ds),
              class_weight=class_weight)


def fit_loop(model, callback, epochs: int, optimizer, input_shape, *, tf_dtype, train_batches, val_batches,
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
    weight_of_class = None
    if class_weight:
        weight_of_class = np.array([class_weight.get(i, 1.0) for i in range(max(class_weight) + 1)], "float32")
    signature = [tf.TensorSpec(input_shape, tf.as_dtype(tf_dtype)), tf.TensorSpec([None], tf.int32),
                 tf.TensorSpec([None], tf.float32)]
    # A warm worker's next run of the same shapes reuses the traced steps (step_cache).
    steps = train_steps(model, optimizer, signature, lambda model, optimizer: _trace(model, optimizer, signature))
    train_step, forward = steps.train_step, steps.forward

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


def _trace(model, optimizer, signature: list):
    """The train step and forward pass of ``model``, traced on their first call.

    The optimizer is built first (``step_cache.train_steps``): variables created inside the first
    trace make tf.function trace the whole step twice (whole network: first epoch 8.6 s -> 4.4 s,
    bench/bench_first_step.py; head: 0.14 s -> 0.05 s).
    """
    import keras
    import tensorflow as tf

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

    return train_step, forward
