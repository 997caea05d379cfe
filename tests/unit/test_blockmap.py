"""Parameter counts from the block map equal what Keras counts on the built classifier."""

from __future__ import annotations

import pandas as pd
import pytest

from transfer_core import freezing
from transfer_core.config import FreezePlan, ModelSpec
from transfer_core.freezing import blockmap


@pytest.fixture(scope="module")
def blocks() -> blockmap.BlockMap:
    return blockmap.block_map("mobilenet_v2_0.35", 32)


def test_block_map_holds_numbers_not_a_model(blocks):
    assert blocks.input_size == 32 and blocks.feature_dim == 1280
    assert blocks.block_names[0] == "stem" and len(blocks.block_names) > 10
    assert set(blockmap.BLOCK_COLUMNS) == set(blocks.blocks.columns)
    assert (blocks.blocks["trainable_params"] <= blocks.blocks["trainable_params_with_bn"]).all()


@pytest.mark.parametrize(
    "plan",
    [
        FreezePlan(mode="all_frozen"),
        FreezePlan(mode="top_blocks", top_blocks=3),
        FreezePlan(mode="all_trainable"),
        FreezePlan(mode="all_trainable", train_batchnorm=True),
        FreezePlan(mode="custom", trainable_blocks=("block_2", "block_12")),
    ],
    ids=lambda plan: f"{plan.mode}-bn{plan.train_batchnorm}",
)
def test_counts_match_keras_on_the_built_classifier(blocks, plan):
    from transfer_core.models import build_classifier

    classifier = build_classifier(ModelSpec(input_size=32, weights="random", hidden_units=8), 3)
    freezing.apply_freeze_plan(classifier.backbone, plan)
    assert blockmap.classifier_counts(
        blocks, plan, num_classes=3, hidden_units=8
    ) == freezing.parameter_counts(classifier.model)


def test_more_top_blocks_train_more_parameters(blocks):
    counts = [
        blockmap.classifier_counts(blocks, FreezePlan(mode="top_blocks", top_blocks=n), 2).trainable
        for n in (1, 2, 5)
    ]
    assert counts[0] < counts[1] < counts[2]


def test_head_params():
    assert blockmap.head_params(10, 3) == 33
    assert blockmap.head_params(10, 3, hidden_units=4) == 10 * 4 + 4 + 4 * 3 + 3


def test_plans_that_do_not_fit_are_refused(blocks):
    with pytest.raises(ValueError, match="top_blocks must be between 1 and"):
        blockmap.trainable_blocks(blocks, FreezePlan(mode="top_blocks", top_blocks=99))
    with pytest.raises(ValueError, match="Unknown block names"):
        blockmap.trainable_blocks(blocks, FreezePlan(mode="custom", trainable_blocks=("nope",)))


def test_a_saved_block_map_reads_back_equal(blocks, tmp_path):
    path = blockmap.block_map_path(tmp_path, blocks.key, blocks.input_size)
    assert path == tmp_path / "cache" / "blockmaps" / "mobilenet_v2_0.35-32.json"
    assert blockmap.load_block_map(path) is None  # Not computed yet.
    blockmap.save_block_map(blocks, path)
    loaded = blockmap.load_block_map(path)
    assert (loaded.key, loaded.input_size, loaded.backbone_params, loaded.feature_dim) == (
        blocks.key, blocks.input_size, blocks.backbone_params, blocks.feature_dim)
    pd.testing.assert_frame_equal(loaded.blocks, blocks.blocks[blockmap.BLOCK_COLUMNS])
    plan = FreezePlan(mode="top_blocks", top_blocks=3)
    assert blockmap.classifier_counts(loaded, plan, 5) == blockmap.classifier_counts(blocks, plan, 5)


def test_a_block_map_file_of_another_format_is_ignored(blocks, tmp_path):
    path = tmp_path / "map.json"
    blockmap.save_block_map(blocks, path)
    path.write_text(path.read_text().replace(f'"format": {blockmap.BLOCK_MAP_FORMAT}', '"format": 0'))
    assert blockmap.load_block_map(path) is None
    path.write_text("{not json")
    assert blockmap.load_block_map(path) is None
