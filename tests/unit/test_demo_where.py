"""The "where" demo: a circle, square or triangle on the left or right; deterministic, balanced, and it shows
transfer learning's point (fine-tuning > feature extraction > from scratch)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from transfer_core.compare import comparison_configs
from transfer_core.config import Settings
from transfer_core.data import WHERE_CLASSES, make_demo_dataset, read_manifest
from transfer_core.data.health import health_report
from transfer_core.sessions import presets


def _split_by_sha(spec) -> dict[str, str]:
    frame = read_manifest(spec)
    return dict(zip(frame["sha256"], frame["split"], strict=True))


def _shape_mask(path) -> np.ndarray:
    """The pixels of the shape: the one colour that occurs most often exactly (the noisy background never repeats)."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    return (pixels == colours[counts.argmax()]).all(axis=-1)


def test_where_demo_is_deterministic_balanced_and_puts_one_shape_on_the_named_side(tmp_path):
    spec = make_demo_dataset(tmp_path / "a", images_per_class=12, image_size=96, seed=3, kind="where")
    assert spec.class_names == tuple(sorted(WHERE_CLASSES))
    report = health_report(spec)
    assert report.counts["total"].tolist() == [12] * len(WHERE_CLASSES)
    assert len(set(report.counts["val"].tolist())) == 1  # Every class has as many validation images.
    again = make_demo_dataset(tmp_path / "b", images_per_class=12, image_size=96, seed=3, kind="where")
    other = make_demo_dataset(tmp_path / "c", images_per_class=12, image_size=96, seed=4, kind="where")
    assert _split_by_sha(again) == _split_by_sha(spec)
    assert not set(_split_by_sha(other)) & set(_split_by_sha(spec))
    frame = read_manifest(spec)
    for _, row in frame.iterrows():
        mask = _shape_mask(Path(spec.root) / row["path"])
        assert ndimage.label(mask, structure=np.ones((3, 3)))[1] == 1 and mask.sum() > 50, row["path"]
        centre = np.nonzero(mask)[1].mean()
        assert (centre < 48) == row["label"].endswith("_left"), (row["path"], row["label"], centre)


def test_unknown_demo_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        make_demo_dataset(tmp_path / "x", kind="faces")


def test_the_app_demo_is_the_where_one():
    assert presets.DEMO_KIND == "where"


@pytest.mark.slow
def test_quick_comparison_on_the_where_demo_orders_fine_tuning_feature_extraction_scratch(
    shared_weights_dir, tmp_path
):
    """The demo's own settings through the real engine: fine-tuning > feature extraction > from scratch."""
    from transfer_core.training import train

    settings = Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    spec = make_demo_dataset(tmp_path / "data", images_per_class=presets.DEMO_IMAGES_PER_CLASS,
                             image_size=presets.DEMO_IMAGE_SIZE, seed=0, kind=presets.DEMO_KIND)
    choice = presets.choose_demo_backbone(settings)
    assert choice.weights == "imagenet"
    train_config = dataclasses.replace(presets.demo_train_config(choice), seed=0)
    accuracy = {}
    for config in comparison_configs(spec, presets.demo_model_spec(choice), presets.demo_freeze_plan(),
                                     train_config, ("feature_extraction", "fine_tuning", "from_scratch")):
        result = train(config, settings=settings)
        assert result.status == "finished", result.reason
        accuracy[config.train.strategy] = result.report["val_accuracy"]
    assert accuracy["fine_tuning"] > accuracy["feature_extraction"] > accuracy["from_scratch"], accuracy
