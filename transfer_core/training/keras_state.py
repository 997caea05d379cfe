"""Keras' process-wide state (graph, seeds, dtype policy), the distribution scope and optimizers.

Keras global state is reset only here: :func:`reset_keras_state` at the start of each run, and
:func:`release_run_state` when a warm worker (one process, several runs in turn) has finished
one, so nothing of that run is visible to the next (see ARCHITECTURE.md, decision 11).
"""

from __future__ import annotations

import contextlib
import gc

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


def release_run_state() -> None:
    """After a run, in a process that may train another: drop the run's graph and models, free
    their memory, and put the dtype policy and seeds back to a fresh process's.

    A backbone kept for reuse (:func:`transfer_core.models.keep_backbone`) survives: it is
    referenced from its module, gets its ImageNet weights back here when the run fine-tuned it,
    and is checked before any reuse.
    """
    from transfer_core.models import restore_kept_backbone

    restore_kept_backbone()
    reset_keras_state(0, "float32")  # A run has built models here, so this frees them (free_memory=True).


def resolve_precision(precision: str) -> str:
    """``auto`` -> ``mixed_float16`` when TensorFlow sees a GPU, else ``float32``.

    On CPUs bfloat16 only pays off with AMX/AVX512-BF16 kernels; it is an explicit
    option rather than the default (measured in BENCHMARKS.md).
    """
    if precision != "auto":
        return precision
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def distribution_scope(distribution: str):
    """A ``tf.distribute`` strategy scope (``mirrored``) or a no-op context."""
    if distribution == "mirrored":
        import tensorflow as tf

        return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


def make_optimizer(name: str, learning_rate: float):
    """A Keras optimizer by config name (``adam``, ``sgd`` with momentum 0.9, ``rmsprop``, ``adamw``)."""
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate)
    return keras.optimizers.Adam(learning_rate=learning_rate)
