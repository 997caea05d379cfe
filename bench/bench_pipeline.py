"""Input pipeline against the backbone: images per second of decode+resize+batch vs of the model.

Three rates, measured in the same run over the train and val splits:

* ``pipeline``: ``make_tf_dataset`` without a cache, decoding every JPEG every pass
  (in manifest order, as before the cache existed);
* ``cached_pipeline``: ``make_tf_dataset(cache_dir=..., shuffle=True)`` with a warm
  decoded-image cache (filled once before the timing, as the first epoch of a run
  would), shuffled like training (the slower case for the cache: scattered reads);
  ``cached_pipeline_in_order`` is the same without shuffling;
* ``backbone``: the backbone's forward pass alone, on already decoded batches.

    python bench/bench_pipeline.py --repeats 5 --out bench/results/pipeline.json
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import DEFAULT_DATA, DEFAULT_WEIGHTS, ingest, median, write_result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--weights-dir", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--backbone", default="mobilenet_v2_0.35")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()

    import tensorflow as tf

    from transfer_core.config import ModelSpec, Settings
    from transfer_core.data import make_tf_dataset
    from transfer_core.models import build_classifier

    work = Path(tempfile.mkdtemp(prefix="bench-pipe-"))
    spec = ingest(Path(args.data), work / "ingest")
    settings = Settings(home=work, weights_dir=Path(args.weights_dir))
    classifier = build_classifier(ModelSpec(backbone=args.backbone, input_size=args.input_size),
                                  spec.num_classes, settings=settings)
    size = classifier.input_size
    forward = tf.function(lambda x: classifier.feature_extractor(x, training=False),
                          input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    batches = [b for split in ("train", "val")
               for b, _ in make_tf_dataset(spec, split, image_size=size, batch_size=args.batch_size)]
    num_images = sum(int(b.shape[0]) for b in batches)
    forward(batches[0])  # Trace once, outside the timing.

    image_cache = work / "image-cache"
    started = time.perf_counter()
    for split in ("train", "val"):  # Fill the cache once, outside the timing.
        make_tf_dataset(spec, split, image_size=size, batch_size=args.batch_size, cache_dir=image_cache)
    fill_seconds = time.perf_counter() - started

    def pipeline_rate(cache_dir: Path | None, shuffle: bool = False) -> float:
        started = time.perf_counter()
        count = 0
        for split in ("train", "val"):
            dataset = make_tf_dataset(spec, split, image_size=size, batch_size=args.batch_size, shuffle=shuffle,
                                      cache_dir=cache_dir)
            for images, _ in dataset:
                count += int(images.shape[0])
        return count / (time.perf_counter() - started)

    pipeline_rates, cached_rates, in_order_rates, model_rates = [], [], [], []
    for _ in range(args.repeats):
        pipeline_rates.append(pipeline_rate(None))
        cached_rates.append(pipeline_rate(image_cache, shuffle=True))
        in_order_rates.append(pipeline_rate(image_cache))
        started = time.perf_counter()
        for images in batches:  # Already decoded: the model alone.
            forward(images).numpy()
        model_rates.append(num_images / (time.perf_counter() - started))
    result = {
        "images": num_images,
        "input_size": size,
        "batch_size": args.batch_size,
        "pipeline_images_per_second": pipeline_rates,
        "cached_pipeline_images_per_second": cached_rates,
        "cached_pipeline_in_order_images_per_second": in_order_rates,
        "backbone_images_per_second": model_rates,
        "median_pipeline": median(pipeline_rates),
        "median_cached_pipeline": median(cached_rates),
        "median_cached_pipeline_in_order": median(in_order_rates),
        "median_backbone": median(model_rates),
        "pipeline_over_backbone": median(pipeline_rates) / median(model_rates),
        "cached_pipeline_over_backbone": median(cached_rates) / median(model_rates),
        "cached_pipeline_in_order_over_backbone": median(in_order_rates) / median(model_rates),
        "cache_fill_seconds": fill_seconds,
        "cache_bytes": sum(f.stat().st_size for f in image_cache.iterdir() if f.is_file()),
    }
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
