"""Where the first epoch of whole-network training goes: building (tracing) the training step.

Trains MobileNetV2 (alpha 0.35, random weights, 96 px, 4 classes) for two epochs of 4 batches of 16
on in-memory images, each way in a fresh process, and reports the first and second epoch's seconds:

- keras_fit:       ``model.fit`` (what the engine used for image pipelines before this measurement);
- custom_step:     one ``tf.function`` train step (autograph off) and a forward pass;
- custom_prebuilt: the same with the optimizer's variables created before the step is traced
                   (creating them inside the first trace makes tf.function trace twice): the
                   engine's loop now;
- custom_no_grappler: the custom step with TensorFlow's graph optimiser (grappler) off;
- custom_prebuilt_no_grappler: both.

    python bench/bench_first_step.py --out bench/results/first_step.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import write_result

_CHILD = r'''
import os, sys, time, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf, keras
mode = sys.argv[1]
if mode.endswith("no_grappler"):
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, (64, 96, 96, 3)).astype("float32"); y = rng.integers(0, 4, 64).astype("int32")
backbone = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False,
                                          weights=None, pooling="avg")
inputs = keras.Input((96, 96, 3)); model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(backbone(inputs)))
seconds = []
if mode == "keras_fit":
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    for _ in range(2):
        t = time.perf_counter(); model.fit(data, epochs=1, verbose=0, validation_data=data); seconds.append(time.perf_counter() - t)
else:
    optimizer = keras.optimizers.Adam(1e-3)
    if mode.startswith("custom_prebuilt"):
        # Create Adam's slot variables before tracing: variables made inside the first trace
        # make tf.function trace the whole step a second time.
        optimizer.build(model.trainable_variables)
    spec = [tf.TensorSpec([None, 96, 96, 3], tf.float32), tf.TensorSpec([None], tf.int32)]
    @tf.function(input_signature=spec, autograph=False)
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, model(images, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss
    @tf.function(input_signature=spec[:1], autograph=False)
    def forward(images):
        return model(images, training=False)
    for _ in range(2):
        t = time.perf_counter()
        for s in range(0, 64, 16): float(step(x[s:s + 16], y[s:s + 16]))
        for s in range(0, 64, 16): forward(x[s:s + 16]).numpy()
        seconds.append(time.perf_counter() - t)
print(json.dumps(seconds))
'''

MODES = ("keras_fit", "custom_step", "custom_prebuilt", "custom_no_grappler", "custom_prebuilt_no_grappler")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out")
    args = parser.parse_args()
    result = {}
    for mode in MODES:
        completed = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
        first, second = json.loads(completed.stdout.strip().splitlines()[-1])
        result[mode] = {"first_epoch_seconds": first, "second_epoch_seconds": second}
        print(mode, result[mode], flush=True)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
