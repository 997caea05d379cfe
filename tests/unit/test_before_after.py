"""Before and after fixing the data: train again on the newest version, find the pair, read it aloud."""

from __future__ import annotations

import dataclasses

import pytest
from helpers.datasets import tiny_dataset_in
from helpers.runs import tiny_config

from transfer_core import compare
from transfer_core.data import VersionError, read_manifest, relabel_image, remove_image
from transfer_core.fileio import atomic_write_json
from transfer_core.runs import EventLog, RunStore


def _ended_run(store: RunStore, config, val_accuracy: float):
    """A finished run's files (no training: the reading only needs the report)."""
    run_dir = store.create(config)
    atomic_write_json(run_dir / "report.json", {"val_accuracy": val_accuracy, "status": "finished", "reason": ""})
    with EventLog(run_dir / "events.jsonl") as log:
        log.write({"type": "finished", "reason": "", "val_accuracy": val_accuracy})
    return store.load(run_dir.name)


@pytest.fixture
def spec(tmp_path_factory):
    return tiny_dataset_in(tmp_path_factory, images_per_class=6)


def test_train_again_repeats_the_run_on_the_newest_version(spec):
    config = tiny_config(spec, name="compare abc: fine-tuning", strategy="fine_tuning", seed=7)
    with pytest.raises(VersionError, match="already used the data set's newest version"):
        compare.train_again_config(config)
    frame = read_manifest(spec)
    relabel_image(spec.root, frame["path"].iloc[0], spec.class_names[1])
    again = compare.train_again_config(config)
    assert again.dataset.version == 2 and again.dataset.root == spec.root
    assert (again.model, again.freeze, again.train) == (config.model, config.freeze, config.train)
    assert again.name == "again on data v2: compare abc: fine-tuning"  # Not in the old comparison group.
    assert compare.newer_version(config) == 2 and compare.newer_version(again) is None
    remove_image(spec.root, frame["path"].iloc[1])
    assert compare.train_again_config(again).name == "again on data v3: compare abc: fine-tuning"


def test_compare_reads_a_before_and_after_pair(spec, tmp_path):
    store = RunStore(tmp_path / "runs")
    frame = read_manifest(spec)
    val = frame[frame["split"] == "val"]["path"].iloc[0]
    config = tiny_config(spec, seed=3)
    before = _ended_run(store, config, 0.5)
    relabel_image(spec.root, val, next(n for n in spec.class_names if n != frame.set_index("path").at[val, "label"]))
    remove_image(spec.root, frame[frame["split"] == "train"]["path"].iloc[0])
    after = _ended_run(store, compare.train_again_config(config), 0.75)
    other = _ended_run(store, dataclasses.replace(config, train=dataclasses.replace(config.train, seed=4)), 0.9)

    assert compare.before_run(after, [before, after, other]) == before
    assert compare.before_run(before, [before, after, other]) is None
    assert compare.differ_only_in_data([before.config, after.config])
    assert not compare.differ_only_in_data([before.config, other.config])  # Same data, another seed.
    assert not compare.differ_only_in_data([after.config, other.config])  # Data and seed differ.

    sentences = compare.before_after_reading([after, before])
    assert sentences == [
        "Before and after fixing the data: v1 → v3 (1 relabelled, 1 removed). Validation accuracy rose from 50.0% "
        "to 75.0% with the same model, settings and seed: the difference is the data's. 1 of the changed images "
        "is a validation image, so the two scores are measured on slightly different images or labels: a fixed "
        "label can move the score by itself."]
    assert compare.before_after_reading([before, other]) == []
    table = compare.comparison_table([before, after])
    assert table["data_version"].tolist() == [1, 3]
    assert table["label"].tolist() == ["feature extraction · data v1", "feature extraction · data v3"]
    assert "data v3" in compare.describe_run(after) and "data v" not in compare.describe_run(before)
