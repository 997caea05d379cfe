"""Does the clip after rounding cost anything? The LiteRT feature pass with and without it.

``decode_and_resize`` once clipped its rounded pixels to 0..255; bilinear resizing cannot leave that
range, so the clip changed no value (``tests/unit/test_data_pipeline.py`` tries extreme pictures).
This times the feature pass over a photo set both ways (decode in tf.data, the pooled backbone on
LiteRT with XNNPACK, as a feature-extraction run does), interleaved in one process, and checks that
the features are identical:

    python bench/bench_decode_round.py --photos-dir /tmp/photos1200 --weights-dir ../shared/weights \
        --repeats 7 --out bench/results/decode_round.json

(``--photos-dir``: the photo set ``bench_feature_extraction.py --photos`` generates, kept with
``--keep-photos``.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import write_result  # Also quiets TensorFlow and puts this checkout first on the path.


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos-dir", required=True)
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from transfer_core.config import ModelSpec, Settings
    from transfer_core.data.decode import decode_and_resize
    from transfer_core.frozen_runtime.convert import to_flatbuffer
    from transfer_core.frozen_runtime.runner import FrozenModel, available_cores
    from transfer_core.models import build_classifier

    paths = sorted(str(p) for p in Path(args.photos_dir).rglob("*.jpg"))
    size = args.input_size
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="bench-round-")), weights_dir=Path(args.weights_dir))
    classifier = build_classifier(ModelSpec(backbone=args.backbone, input_size=size), 2, settings=settings)
    model = FrozenModel(to_flatbuffer(classifier.feature_extractor), threads=available_cores())

    def clipped(contents, image_size):  # The code before: round, then clip.
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        image = tf.image.resize(image, (image_size, image_size), method="bilinear")
        return tf.clip_by_value(tf.round(image), 0.0, 255.0)

    decoders = {"round_and_clip": clipped, "round_only": decode_and_resize}

    def feature_pass(decode) -> np.ndarray:
        dataset = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda path: decode(tf.io.read_file(path), size), num_parallel_calls=available_cores(),
            deterministic=True).batch(32).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.autotune.enabled = False  # As the run's one-pass pipelines (make_tf_dataset(autotune=False)).
        return np.concatenate([model.run_batch(images.numpy()) for images in dataset.with_options(options)])

    outputs = {name: feature_pass(decode) for name, decode in decoders.items()}  # Also the warm-up.
    identical = bool(np.array_equal(outputs["round_and_clip"], outputs["round_only"]))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in decoders}
    for repeat in range(args.repeats):
        for name in (list(decoders) if repeat % 2 == 0 else list(decoders)[::-1]):
            wall, cpu = time.perf_counter(), sum(os.times()[:2])
            feature_pass(decoders[name])
            times[name].append((time.perf_counter() - wall, sum(os.times()[:2]) - cpu))
    median = {name: {"wall": statistics.median(t[0] for t in runs), "cpu": statistics.median(t[1] for t in runs)}
              for name, runs in times.items()}
    result = {
        "photos": len(paths),
        "backbone": args.backbone,
        "input_size": size,
        "repeats": args.repeats,
        "features_identical": identical,
        "seconds": {name: [[round(w, 3), round(c, 3)] for w, c in runs] for name, runs in times.items()},
        "median": median,
        "saved_wall_fraction": round(1 - median["round_only"]["wall"] / median["round_and_clip"]["wall"], 3),
        "saved_cpu_fraction": round(1 - median["round_only"]["cpu"] / median["round_and_clip"]["cpu"], 3),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    write_result(result, args.out)
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
