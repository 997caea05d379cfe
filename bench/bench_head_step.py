"""The head's training step on cached features: what one call costs, and what grappler costs.

A warm feature-extraction run is mostly this step: traced once, called once per batch. For the
engine's head (1280 pooled MobileNetV2 features -> optional hidden Dense -> softmax, Adam, batch 32)
in a fresh process each way, reports: tracing seconds, the first call's seconds (TensorFlow
instantiates and, with grappler on, optimises the graph then), and the median milliseconds of
later calls; plus an empty traced function's call as the floor.

    python bench/bench_head_step.py --out bench/results/head_step.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import REPO, write_result

_CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[3])
import numpy as np, tensorflow as tf, keras
hidden, grappler = int(sys.argv[1]), sys.argv[2] == "on"
if not grappler:
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
from transfer_core.config import ModelSpec
from transfer_core.models import build_head
from transfer_core.training import make_optimizer
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 1280)).astype("float32"); y = rng.integers(0, 2, 32).astype("int32")
ones = np.ones(32, "float32")
spec = [tf.TensorSpec([None, 1280], tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32)]

@tf.function(input_signature=spec, autograph=False)
def empty(a, b, c):
    return tf.reduce_sum(c), tf.reduce_sum(c)

model = build_head(1280, 2, ModelSpec(hidden_units=hidden, dropout_rate=0.2))
optimizer = make_optimizer("adam", 1e-3)
optimizer.build(model.trainable_variables)

@tf.function(input_signature=spec, autograph=False)
def step(inputs, labels, weights):
    with tf.GradientTape() as tape:
        probabilities = model(inputs, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities) * weights)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss, tf.reduce_sum(probabilities)

def per_call_ms(fn, calls=300):
    for _ in range(20):
        float(fn(x, y, ones)[0])
    times = []
    for _ in range(calls):
        started = time.perf_counter(); result = fn(x, y, ones); float(result[0]); float(result[1])
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))

started = time.perf_counter(); step.get_concrete_function(); trace = time.perf_counter() - started
started = time.perf_counter(); float(step(x, y, ones)[0]); first = time.perf_counter() - started
print(json.dumps({"trace_seconds": trace, "first_call_seconds": first, "step_ms": per_call_ms(step),
                  "empty_function_ms": per_call_ms(empty)}))
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out")
    args = parser.parse_args()
    result = {}
    for hidden in (0, 64):
        for grappler in ("on", "off"):
            completed = subprocess.run([sys.executable, "-c", _CHILD, str(hidden), grappler, str(REPO)],
                                       capture_output=True, text=True, check=True)
            name = f"hidden_{hidden}_grappler_{grappler}"
            result[name] = json.loads(completed.stdout.strip().splitlines()[-1])
            print(name, {k: round(v, 4) for k, v in result[name].items()}, flush=True)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
