"""A warm worker reuses the traced train steps of an earlier run of the same shapes, reset so the
next run trains exactly as in a fresh state (training.step_cache, ARCHITECTURE.md decision 11).

Real ImageNet weights (../shared/weights) at 96 px on tiny generated images: steps are kept only
for a classifier on the kept ImageNet backbone, which is what a warm worker trains.
"""

from __future__ import annotations

import numpy as np
import pytest

from transfer_core import models
from transfer_core.config import FreezePlan, ModelSpec, RunConfig, Settings, TrainConfig
from transfer_core.training import release_run_state, step_cache, train

PRETRAINED = ModelSpec(backbone="mobilenet_v2_0.35", input_size=96, weights="imagenet", dropout_rate=0.2)
TOP_1 = FreezePlan(mode="top_blocks", top_blocks=1)


@pytest.fixture
def settings(tmp_path, shared_weights_dir) -> Settings:
    """A process that behaves like a warm worker (recycles backbones), with nothing kept yet."""
    models.forget_kept_backbone()
    step_cache.forget()
    models.recycle_backbones()
    yield Settings(home=tmp_path / "home", weights_dir=shared_weights_dir)
    models.recycle_backbones(False)
    models.forget_kept_backbone()
    step_cache.forget()


def _run(data, settings, *, freeze=TOP_1, **train_kwargs):
    config = RunConfig(dataset=data, model=PRETRAINED, freeze=freeze, train=TrainConfig(**{
        "strategy": "fine_tuning", "epochs": 2, "fine_tune_epochs": 2, "batch_size": 8, **train_kwargs}))
    result = train(config, settings=settings)
    assert result.status == "finished", result.reason
    outcome = (result.history.copy(), result.classifier.model.get_weights(), result.classifier)
    release_run_state()  # What the worker does once the run is saved.
    return outcome


def _steps():
    return {id(steps.train_step): steps.train_step.experimental_get_tracing_count()
            for steps in step_cache.kept_steps()}


def _same_run(got, want):
    columns = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]  # Not the times.
    assert list(got[0]["stage"]) == list(want[0]["stage"])
    np.testing.assert_allclose(got[0][columns].to_numpy(float), want[0][columns].to_numpy(float),
                               rtol=1e-6, atol=1e-7)
    assert len(got[1]) == len(want[1])
    for mine, theirs in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6)


def test_a_second_run_reuses_the_traced_steps_and_trains_as_in_a_fresh_state(tiny_dataset, settings):
    # Run A: another seed and other learning rates, so anything it leaves behind would show.
    run_a = _run(tiny_dataset, settings, seed=3, learning_rate=0.01, fine_tune_learning_rate=0.002)
    first = run_a[2]
    traced = _steps()
    assert len(traced) == 2  # The head's step and the fine-tuning suffix's step.
    assert set(traced.values()) == {1}
    second = _run(tiny_dataset, settings)
    assert second[2] is first  # The same classifier, reset...
    assert _steps() == traced  # ...and the same steps, not traced again.
    # Run B again in a fresh state: built and traced anew.
    step_cache.forget()
    fresh = _run(tiny_dataset, settings)
    assert fresh[2] is not first
    assert all(count == 1 for count in _steps().values()) and set(_steps()).isdisjoint(traced)
    _same_run(second, fresh)
    with pytest.raises(AssertionError):
        _same_run(second, run_a)  # Run A trained otherwise: the comparison tells runs apart.


def test_another_freeze_plan_traces_its_own_suffix_step_and_still_trains_as_fresh(tiny_dataset, settings):
    _run(tiny_dataset, settings, seed=1)
    traced = _steps()
    two_blocks = FreezePlan(mode="top_blocks", top_blocks=2)
    reused = _run(tiny_dataset, settings, freeze=two_blocks)
    after = _steps()
    # The head's step is reused; only the suffix (other trainable variables) got a step of its own.
    assert set(traced) < set(after) and len(set(after) - set(traced)) == 1
    assert all(count == 1 for count in after.values())
    step_cache.forget()
    fresh = _run(tiny_dataset, settings, freeze=two_blocks)
    _same_run(reused, fresh)


def test_another_class_count_builds_and_traces_anew(tiny_dataset, settings, tmp_path_factory):
    from transfer_core.data import make_demo_dataset

    _, _, first = _run(tiny_dataset, settings)
    traced = _steps()
    six = make_demo_dataset(tmp_path_factory.mktemp("where") / "data", images_per_class=6, image_size=32,
                            kind="where")
    assert six.num_classes != tiny_dataset.num_classes
    _, _, other = _run(six, settings)
    assert other is not first
    assert set(_steps()).isdisjoint(traced)


def test_a_library_process_keeps_no_steps(tiny_dataset, settings):
    models.recycle_backbones(False)  # A notebook: the result of a run must not change under the user.
    _, weights, first = _run(tiny_dataset, settings)
    assert step_cache.kept_steps() == []
    _, _, second = _run(tiny_dataset, settings)
    assert second is not first
    for got, want in zip(first.model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(got, want)
