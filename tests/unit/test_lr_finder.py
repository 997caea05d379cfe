"""The learning-rate range test: sweep, smoothing, divergence stop, suggestion, and the run-config entry point."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from transfer_core.config import ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.training.lr_finder import find_learning_rate, lr_range_test, suggest_learning_rate

SHARED_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights"


def _blobs(n_per_class: int = 60, classes: int = 3, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, dim))
    features = np.concatenate([centres[c] + rng.normal(size=(n_per_class, dim)) for c in range(classes)])
    labels = np.repeat(np.arange(classes), n_per_class)
    return features.astype(np.float32), labels


def test_range_test_sweeps_exponentially_and_finds_a_learning_rate():
    features, labels = _blobs()
    result = lr_range_test(features, labels, 3, head_spec=ModelSpec(dropout_rate=0.0), steps=60,
                           min_lr=1e-5, max_lr=1.0, batch_size=16)
    frame = result.frame
    assert list(frame.columns) == ["step", "lr", "loss", "smoothed_loss"]
    assert frame["lr"].iloc[0] == pytest.approx(1e-5)
    ratios = frame["lr"].to_numpy()[1:] / frame["lr"].to_numpy()[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # Exponential steps.
    # Untrained, the loss is about ln(3); the sweep drives it well below that.
    assert frame["loss"].iloc[0] == pytest.approx(math.log(3), abs=0.5)
    assert frame["smoothed_loss"].min() < 0.5 * frame["smoothed_loss"].iloc[0]
    assert 1e-5 <= result.suggested_lr <= result.min_loss_lr <= 1.0
    assert 1e-4 <= result.suggested_lr <= 0.3, result.explanation
    assert f"{result.suggested_lr:.1e}" in result.explanation


def test_range_test_stops_when_the_loss_explodes():
    features, labels = _blobs()
    result = lr_range_test(features, labels, 3, optimizer="sgd", steps=100, min_lr=1e-4, max_lr=1e4,
                           batch_size=16)
    assert result.diverged
    assert len(result.frame) < 100
    assert "exploded" in result.explanation
    assert result.suggested_lr < result.frame["lr"].iloc[-1]


def test_suggestion_on_a_known_curve():
    lrs = np.logspace(-6, 0, 100)
    x = np.log10(lrs)
    # Falls fastest at 1e-3, bottoms out near 1e-1.5, then climbs.
    loss = 2.0 - np.tanh(2.0 * (x + 3.0)) + np.where(x > -1.5, 4.0 * (x + 1.5) ** 2, 0.0)
    suggested, steepest, minimum = suggest_learning_rate(pd.DataFrame({"lr": lrs, "smoothed_loss": loss}))
    assert steepest == pytest.approx(1e-3, rel=0.2)
    assert minimum == pytest.approx(10**-1.5, rel=0.3)
    assert suggested == steepest


def test_suggestion_falls_back_to_a_tenth_of_the_minimum():
    lrs = np.logspace(-6, 0, 50)
    loss = np.linspace(2.0, 1.0, 50)  # Falls evenly and never turns: the steepest point is not clear-cut.
    loss[-10:] = np.linspace(1.0, 0.99, 10)
    suggested, _, minimum = suggest_learning_rate(pd.DataFrame({"lr": lrs, "smoothed_loss": loss}))
    assert suggested == pytest.approx(minimum / 10) or suggested <= minimum / 3


def test_bad_inputs_are_refused():
    features, labels = _blobs()
    with pytest.raises(ValueError, match="one label per row"):
        lr_range_test(features, labels[:-1], 3)
    with pytest.raises(ValueError, match="min_lr"):
        lr_range_test(features, labels, 3, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="steps"):
        lr_range_test(features, labels, 3, steps=5)
    with pytest.raises(ValueError, match="At least 4"):
        suggest_learning_rate(pd.DataFrame({"lr": [1e-3, 1e-2], "smoothed_loss": [1.0, 0.5]}))


def test_find_learning_rate_on_a_data_set_uses_the_feature_cache(tmp_path):
    from transfer_core.data import make_demo_dataset

    pretrained = (SHARED_WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5").is_file()
    if not pretrained:
        pytest.skip("Real ImageNet weights not found at ../shared/weights (random features carry no signal).")
    spec = make_demo_dataset(tmp_path / "data", images_per_class=12, image_size=64)
    settings = Settings(home=tmp_path / "home", weights_dir=SHARED_WEIGHTS)
    config = RunConfig(dataset=spec, model=ModelSpec(input_size=64, dropout_rate=0.0),
                       train=TrainConfig(batch_size=8))
    result = find_learning_rate(config, settings=settings, steps=50)
    assert len(result.frame) >= 20
    assert 1e-6 <= result.suggested_lr <= 1.0
    cached = list((settings.cache_dir / "features").glob("*.npy"))
    assert len(cached) == 1  # The training split's pooled features, shared with the training engine.
    again = find_learning_rate(config, settings=settings, steps=50)
    pd.testing.assert_frame_equal(again.frame, result.frame)  # Same cached features, same seed: same curve.


def test_range_test_reports_each_step():
    features, labels = _blobs()
    steps_seen = []
    result = lr_range_test(features, labels, 3, steps=20, on_step=lambda step, steps: steps_seen.append((step, steps)))
    assert steps_seen == [(step, 20) for step in range(1, len(result.frame) + 1)]
