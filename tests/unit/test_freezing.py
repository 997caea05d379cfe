"""Unit tests of blocks, freeze plans, parameter counts and prefix/suffix splits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from transfer_core import freezing, zoo
from transfer_core.config import FreezePlan
from transfer_core.freezing import Block, ParamCounts

# Smallest input each family accepts, to keep the builds fast.
_SMALL_SIZE = {"inception_v3": 75, "xception": 71}


@pytest.fixture(scope="module")
def backbones():
    """Each zoo backbone built once (random weights, small input), shared by read-only tests."""
    cache: dict = {}

    def get(key: str):
        if key not in cache:
            cache[key] = zoo.build_backbone(key, _SMALL_SIZE.get(key, 32), weights="random")
        return cache[key]

    return get


def _fresh_mobilenet_v2(size: int = 32):
    return zoo.build_backbone("mobilenet_v2_0.35", size, weights="random")


def _names(blocks: list[Block]) -> list[str]:
    return [block.name for block in blocks]


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(zoo.BACKBONES))
def test_blocks_cover_every_layer_once_in_order(backbones, key: str) -> None:
    base = backbones(key)
    blocks = freezing.backbone_blocks(base)
    assert blocks[0].first_layer == 0 and blocks[-1].last_layer == len(base.layers) - 1
    for before, after in zip(blocks, blocks[1:], strict=False):
        assert after.first_layer == before.last_layer + 1
    covered = [name for block in blocks for name in block.layer_names]
    assert covered == [layer.name for layer in base.layers]
    assert len(set(_names(blocks))) == len(blocks)
    assert sum(block.params for block in blocks) == base.count_params()
    assert all(block.num_layers == len(block.layer_names) for block in blocks)
    assert len(blocks) >= 6


EXPECTED_BLOCKS = {
    "mobilenet_0.25": ["stem"] + [f"block_{n}" for n in range(1, 14)],
    "mobilenet_v2_0.35": ["stem", "expanded_conv"] + [f"block_{n}" for n in range(1, 17)] + ["top"],
    "mobilenet_v3_small": ["stem", "expanded_conv"] + [f"expanded_conv_{n}" for n in range(1, 11)] + ["top"],
    "mobilenet_v3_large": ["stem", "expanded_conv"] + [f"expanded_conv_{n}" for n in range(1, 15)] + ["top"],
    "efficientnet_b0": ["stem"]
    + ["block1a", "block2a", "block2b", "block3a", "block3b", "block4a", "block4b", "block4c"]
    + ["block5a", "block5b", "block5c", "block6a", "block6b", "block6c", "block6d", "block7a", "top"],
    "resnet50": ["stem"]
    + [
        f"conv{stage}_block{n}"
        for stage, count in ((2, 3), (3, 4), (4, 6), (5, 3))
        for n in range(1, count + 1)
    ],
    "resnet50_v2": ["stem"]
    + [
        f"conv{stage}_block{n}"
        for stage, count in ((2, 3), (3, 4), (4, 6), (5, 3))
        for n in range(1, count + 1)
    ]
    + ["top"],
    "vgg16": ["stem", "block1", "block2", "block3", "block4", "block5"],
    "inception_v3": ["stem"] + [f"mixed{n}" for n in range(11)],
    "xception": ["stem"] + [f"block{n}" for n in range(1, 15)],
    "densenet121": ["stem"]
    + [f"conv2_block{n}" for n in range(1, 7)]
    + ["pool2"]
    + [f"conv3_block{n}" for n in range(1, 13)]
    + ["pool3"]
    + [f"conv4_block{n}" for n in range(1, 25)]
    + ["pool4"]
    + [f"conv5_block{n}" for n in range(1, 17)]
    + ["top"],
    "convnext_tiny": ["stem"]
    + [f"stage_{stage}_block_{n}" for stage, count in enumerate((3, 3, 9, 3)) for n in range(count)]
    + ["top"],
}


@pytest.mark.parametrize("key", sorted(EXPECTED_BLOCKS))
def test_blocks_follow_the_family_structure(backbones, key: str) -> None:
    assert _names(freezing.backbone_blocks(backbones(key))) == EXPECTED_BLOCKS[key]


def test_efficientnet_v2_blocks(backbones) -> None:
    names = _names(freezing.backbone_blocks(backbones("efficientnet_v2_b0")))
    assert names[0] == "stem" and names[-1] == "top"
    assert all(re.fullmatch(r"block\d[a-z]", name) for name in names[1:-1])
    assert names[1:4] == ["block1a", "block2a", "block2b"]


def test_block_contents_are_right(backbones) -> None:
    mnv2 = {block.name: block for block in freezing.backbone_blocks(backbones("mobilenet_v2_0.35"))}
    assert mnv2["block_1"].layer_names[0] == "block_1_expand"
    assert "block_1_pad" in mnv2["block_1"].layer_names
    assert mnv2["block_12"].layer_names[-1] == "block_12_add"
    assert mnv2["top"].layer_names == ("Conv_1", "Conv_1_bn", "out_relu")
    mnv1 = {block.name: block for block in freezing.backbone_blocks(backbones("mobilenet_0.25"))}
    # The padding before a strided depthwise convolution belongs to that block.
    assert mnv1["block_2"].layer_names[0] == "conv_pad_2"
    assert mnv1["block_2"].layer_names[-1] == "conv_pw_2_relu"
    resnet = {block.name: block for block in freezing.backbone_blocks(backbones("resnet50"))}
    assert resnet["stem"].layer_names[-1] == "pool1_pool"
    assert resnet["conv4_block3"].layer_names[-1] == "conv4_block3_out"
    inception = {block.name: block for block in freezing.backbone_blocks(backbones("inception_v3"))}
    # The stem ends at the last pooling layer before the first Inception module.
    assert inception["stem"].layer_names[-1].startswith("max_pooling2d")
    assert inception["mixed0"].layer_names[-1] == "mixed0"


def test_unknown_models_fall_back_to_chunks() -> None:
    import keras

    inputs = keras.Input((8,))
    x = inputs
    for _ in range(24):
        x = keras.layers.Dense(4)(x)
    model = keras.Model(inputs, x)
    blocks = freezing.backbone_blocks(model)
    assert [block.num_layers for block in blocks] == [10, 10, 5]
    assert _names(blocks) == ["layers_0_9", "layers_10_19", "layers_20_24"]


# ---------------------------------------------------------------------------------------------
# Freeze plans and parameter counts
# ---------------------------------------------------------------------------------------------


def _keras_counts(model) -> tuple[int, int]:
    from keras.src.utils.summary_utils import count_params

    return count_params(model.trainable_weights), count_params(model.non_trainable_weights)


def _is_bn(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def test_all_frozen_and_all_trainable() -> None:
    base = _fresh_mobilenet_v2()
    freezing.apply_freeze_plan(base, FreezePlan(mode="all_frozen"))
    assert base.trainable is False
    assert freezing.parameter_counts(base) == ParamCounts(trainable=0, frozen=base.count_params())
    assert freezing.first_trainable_layer(base) is None

    freezing.apply_freeze_plan(base, FreezePlan(mode="all_trainable"))
    assert base.trainable
    batchnorms = [layer for layer in base.layers if _is_bn(layer)]
    assert batchnorms and all(not layer.trainable for layer in batchnorms)
    assert all(layer.trainable for layer in base.layers if not _is_bn(layer))
    bn_params = sum(layer.count_params() for layer in batchnorms)
    counts = freezing.parameter_counts(base)
    assert counts.frozen == bn_params
    assert counts.total == base.count_params()
    assert freezing.first_trainable_layer(base) == 1

    freezing.apply_freeze_plan(base, FreezePlan(mode="all_trainable", train_batchnorm=True))
    counts = freezing.parameter_counts(base)
    # Only the moving statistics (half of each BatchNormalization's weights) stay frozen.
    assert counts.frozen == bn_params // 2
    assert all(layer.trainable for layer in batchnorms)


def test_top_blocks_plan() -> None:
    base = _fresh_mobilenet_v2()
    blocks = freezing.backbone_blocks(base)
    freezing.apply_freeze_plan(base, FreezePlan(mode="top_blocks", top_blocks=3))
    first = blocks[-3].first_layer
    assert blocks[-3].name == "block_15"
    for index, layer in enumerate(base.layers):
        expected = index >= first and not _is_bn(layer)
        assert layer.trainable == expected or not layer.weights, layer.name
    assert freezing.first_trainable_layer(base) == first
    assert freezing.parameter_counts(base).trainable == _keras_counts(base)[0] > 0


def test_from_layer_plan() -> None:
    base = _fresh_mobilenet_v2()
    assert base.layers[98].name == "block_11_expand"
    freezing.apply_freeze_plan(base, FreezePlan(mode="from_layer", from_layer=98))
    assert freezing.first_trainable_layer(base) == 98
    assert all(not layer.trainable_weights for layer in base.layers[:98])
    assert all(layer.trainable_weights for layer in base.layers[98:] if layer.weights and not _is_bn(layer))


def test_custom_plan() -> None:
    base = _fresh_mobilenet_v2()
    freezing.apply_freeze_plan(base, FreezePlan(mode="custom", trainable_blocks=("block_3", "top")))
    trainable_names = {layer.name for layer in base.layers if layer.trainable_weights}
    assert trainable_names == {"block_3_expand", "block_3_depthwise", "block_3_project", "Conv_1"}


def test_replanning_after_freezing_everything() -> None:
    base = _fresh_mobilenet_v2()
    freezing.apply_freeze_plan(base, FreezePlan(mode="all_frozen"))
    freezing.apply_freeze_plan(base, FreezePlan(mode="top_blocks", top_blocks=1))
    trainable = {layer.name for layer in base.layers if layer.trainable_weights}
    assert trainable == {"Conv_1"}


def test_plans_that_do_not_fit_raise_with_the_valid_range() -> None:
    base = _fresh_mobilenet_v2()
    count = len(freezing.backbone_blocks(base))
    with pytest.raises(ValueError, match=f"between 1 and {count}") as raised:
        freezing.apply_freeze_plan(base, FreezePlan(mode="top_blocks", top_blocks=count + 1))
    assert f"top_blocks={count + 1}" in str(raised.value)
    with pytest.raises(ValueError, match="block_99") as raised:
        freezing.apply_freeze_plan(base, FreezePlan(mode="custom", trainable_blocks=("block_99",)))
    assert "expanded_conv" in str(raised.value)
    with pytest.raises(ValueError, match="from_layer"):
        freezing.apply_freeze_plan(base, FreezePlan(mode="from_layer", from_layer=len(base.layers)))
    with pytest.raises(ValueError):
        freezing.freeze_table(base, FreezePlan(mode="top_blocks", top_blocks=count + 1))


@pytest.mark.parametrize(
    "plan",
    [
        FreezePlan(mode="all_frozen"),
        FreezePlan(mode="top_blocks", top_blocks=4),
        FreezePlan(mode="top_blocks", top_blocks=4, train_batchnorm=True),
        FreezePlan(mode="all_trainable"),
        FreezePlan(mode="custom", trainable_blocks=("stem", "block_5")),
    ],
)
def test_parameter_counts_equal_keras_and_freeze_table(plan: FreezePlan) -> None:
    base = _fresh_mobilenet_v2()
    before = freezing.parameter_counts(base)
    table = freezing.freeze_table(base, plan)
    # The table shows the plan without applying it.
    assert freezing.parameter_counts(base) == before
    freezing.apply_freeze_plan(base, plan)
    counts = freezing.parameter_counts(base)
    assert (counts.trainable, counts.frozen) == _keras_counts(base)
    assert counts.total == base.count_params()
    assert list(table.columns) == [
        "block",
        "first_layer",
        "last_layer",
        "layers",
        "params",
        "trainable",
        "trainable_params",
    ]
    assert int(table["trainable_params"].sum()) == counts.trainable
    assert int(table["params"].sum()) == base.count_params()
    assert table["trainable"].dtype == bool
    for row in table.itertuples():
        layers = base.layers[row.first_layer : row.last_layer + 1]
        assert row.trainable == any(layer.trainable for layer in layers if layer.weights)


def test_parameter_counts_of_a_model_with_a_head() -> None:
    import keras

    base = _fresh_mobilenet_v2()
    freezing.apply_freeze_plan(base, FreezePlan(mode="all_frozen"))
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    counts = freezing.parameter_counts(model)
    assert counts.trainable == 1280 * 3 + 3
    assert counts.frozen == base.count_params()
    assert (counts.trainable, counts.frozen) == _keras_counts(model)


# ---------------------------------------------------------------------------------------------
# Cuts and prefix/suffix splits
# ---------------------------------------------------------------------------------------------


def test_cut_layer_mobilenet_v2(backbones) -> None:
    base = backbones("mobilenet_v2_0.35")
    blocks = {block.name: block for block in freezing.backbone_blocks(base)}
    assert freezing.cut_layer(base, blocks["block_13"].first_layer) == "block_12_add"
    # Inside block 12 the residual input (block_11_add) is the latest cut.
    index = [layer.name for layer in base.layers].index("block_12_depthwise")
    assert freezing.cut_layer(base, index) == "block_11_add"
    assert freezing.cut_layer(base, 1) is None
    assert freezing.cut_layer(base, len(base.layers)) == "out_relu"
    with pytest.raises(ValueError, match="before_index"):
        freezing.cut_layer(base, len(base.layers) + 1)


def test_cut_layer_resnet50(backbones) -> None:
    base = backbones("resnet50")
    blocks = {block.name: block for block in freezing.backbone_blocks(base)}
    assert freezing.cut_layer(base, blocks["conv4_block1"].first_layer) == "conv3_block4_out"
    with pytest.raises(ValueError, match="not a valid cut") as raised:
        freezing.split_at(base, "conv4_block2_2_conv")
    assert "conv4_block1_out" in str(raised.value)
    with pytest.raises(ValueError, match="No layer"):
        freezing.split_at(base, "conv9_block1_out")


def _assert_split_is_exact(base, cut: str, size: int) -> None:
    prefix, suffix = freezing.split_at(base, cut)
    pixels = np.random.default_rng(3).uniform(-1.0, 1.0, size=(2, size, size, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(suffix(prefix(pixels))), np.asarray(base(pixels)))
    assert tuple(prefix.output.shape) == tuple(base.get_layer(cut).output.shape)
    # The suffix shares the backbone's layers: its trainable weights are the base's own objects.
    base_ids = {id(w) for w in base.trainable_weights}
    assert {id(w) for w in suffix.trainable_weights} <= base_ids
    return prefix, suffix


def test_split_mobilenet_v2_is_exact_and_shares_weights() -> None:
    base = _fresh_mobilenet_v2(96)
    freezing.apply_freeze_plan(base, FreezePlan(mode="top_blocks", top_blocks=5))
    cut = freezing.cut_layer(base, freezing.first_trainable_layer(base))
    assert cut == "block_12_add"
    prefix, suffix = _assert_split_is_exact(base, cut, 96)
    assert {id(w) for w in suffix.trainable_weights} == {id(w) for w in base.trainable_weights}
    assert prefix.trainable_weights == []
    # Training the suffix trains the backbone: same variable objects.
    kernel = base.get_layer("Conv_1").kernel
    assert any(w is kernel for w in suffix.trainable_weights)


def test_split_resnet50_is_exact(backbones) -> None:
    base = backbones("resnet50")
    _assert_split_is_exact(base, "conv4_block2_out", 32)


def test_split_at_the_output_gives_an_identity_suffix() -> None:
    base = _fresh_mobilenet_v2()
    prefix, suffix = freezing.split_at(base, base.layers[-1].name)
    pixels = np.random.default_rng(4).uniform(-1.0, 1.0, size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(suffix(prefix(pixels))), np.asarray(base(pixels)))
    assert suffix.weights == []


# ---------------------------------------------------------------------------------------------
# Training respects the plan
# ---------------------------------------------------------------------------------------------


def _snapshot(weights) -> list[bytes]:
    return [np.asarray(w).tobytes() for w in weights]


def _classifier(base, training_flag: bool):
    import keras

    inputs = keras.Input((32, 32, 3))
    features = base(inputs, training=training_flag)
    x = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


def _random_data(count: int = 16):
    rng = np.random.default_rng(5)
    return (
        rng.uniform(-1.0, 1.0, size=(count, 32, 32, 3)).astype("float32"),
        rng.integers(0, 2, size=(count,)),
    )


def _moving_stats(base) -> dict[str, list[bytes]]:
    return {
        layer.name: _snapshot([layer.moving_mean, layer.moving_variance])
        for layer in base.layers
        if _is_bn(layer)
    }


def test_frozen_base_weights_do_not_change_during_fit() -> None:
    import keras

    keras.utils.set_random_seed(0)
    base = _fresh_mobilenet_v2()
    freezing.apply_freeze_plan(base, FreezePlan(mode="all_frozen"))
    model = _classifier(base, training_flag=False)
    head = model.layers[-1]
    base_before = _snapshot(base.weights)
    head_before = _snapshot(head.weights)
    x, y = _random_data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert _snapshot(base.weights) == base_before
    assert all(after != before for after, before in zip(_snapshot(head.weights), head_before, strict=True))


def test_top_blocks_train_and_batchnorm_statistics_stay_put() -> None:
    import keras

    keras.utils.set_random_seed(0)
    base = _fresh_mobilenet_v2()
    freezing.apply_freeze_plan(base, FreezePlan(mode="top_blocks", top_blocks=2))
    first = freezing.first_trainable_layer(base)
    frozen_before = _snapshot(w for layer in base.layers[:first] for w in layer.weights)
    trainable_before = _snapshot(base.trainable_weights)
    stats_before = _moving_stats(base)
    # Even called in training mode, frozen BatchNormalization layers run in inference mode.
    model = _classifier(base, training_flag=True)
    x, y = _random_data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert _snapshot(w for layer in base.layers[:first] for w in layer.weights) == frozen_before
    assert _moving_stats(base) == stats_before
    changed = [
        after != before
        for after, before in zip(_snapshot(base.trainable_weights), trainable_before, strict=True)
    ]
    assert changed and all(changed)


def test_train_batchnorm_updates_statistics_in_training_mode() -> None:
    import keras

    keras.utils.set_random_seed(0)
    base = _fresh_mobilenet_v2()
    freezing.apply_freeze_plan(base, FreezePlan(mode="top_blocks", top_blocks=2, train_batchnorm=True))
    stats_before = _moving_stats(base)
    top_bn = [layer.name for layer in base.layers if _is_bn(layer) and layer.trainable]
    assert "Conv_1_bn" in top_bn and "block_16_project_BN" in top_bn
    model = _classifier(base, training_flag=True)
    x, y = _random_data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    stats_after = _moving_stats(base)
    for name in top_bn:
        assert stats_after[name] != stats_before[name], name
    # BatchNormalization layers outside the trainable blocks keep their statistics.
    assert stats_after["bn_Conv1"] == stats_before["bn_Conv1"]
