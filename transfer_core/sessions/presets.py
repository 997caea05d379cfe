"""Ready-made choices: the demo preset, freeze presets, and a run config from form values.

The app's pages call these so that what "Try the demo" or "fine-tune the top
3 blocks" means is decided in one tested place, not in page code.
No TensorFlow on import (the zoo is imported lazily and is TensorFlow-free).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from transfer_core.config import (
    DatasetSpec,
    FreezePlan,
    ModelSpec,
    RunConfig,
    Settings,
    TrainConfig,
)

# The learning rates the Train page offers (a log-spaced ladder a student can reason about).
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


def nearest_learning_rate(learning_rate: float) -> float:
    """The offered learning rate closest to ``learning_rate`` on a log scale."""
    import math

    return min(LEARNING_RATES, key=lambda offered: abs(math.log10(offered / learning_rate)))


DEMO_BACKBONE = "mobilenet_v2_0.35"
DEMO_INPUT_SIZE = 96
DEMO_IMAGES_PER_CLASS = 30
DEMO_IMAGE_SIZE = 96
# Which generated demo "Try the demo" makes (transfer_core.data.synthetic_demo.DEMO_KINDS): "which shape, on
# which side" is half solved by ImageNet features (the shape; averaging over the picture loses the
# side), so fine-tuning visibly beats feature extraction (bench/bench_demo.py, BENCHMARKS.md).
DEMO_KIND = "where"

# Freeze presets as the Model page offers them.
FREEZE_PRESETS = {
    "feature_extraction": "Feature extraction (backbone frozen)",
    "top_blocks": "Fine-tune the top N blocks",
    "all_trainable": "Fine-tune everything",
    "custom": "Custom (choose blocks)",
}


@dataclass(frozen=True)
class DemoChoice:
    """The backbone the demo uses, and why."""

    backbone: str
    input_size: int
    weights: str  # "imagenet" | "random"
    explanation: str


def choose_demo_backbone(settings: Settings, preferred: str = DEMO_BACKBONE) -> DemoChoice:
    """Pick the demo's backbone: the preferred one when its weights are offline,
    else the smallest backbone with offline weights, else the preferred one with
    random weights (and say that this is no transfer).

    Args:
        settings: Where the offline weights folder is.
        preferred: The backbone to use when it can be.

    Returns:
        A :class:`DemoChoice`.
    """
    from transfer_core import zoo

    size = DEMO_INPUT_SIZE
    if zoo.weights_available_offline(preferred, size, settings=settings):
        return DemoChoice(
            preferred,
            size,
            "imagenet",
            f"{zoo.get_backbone_info(preferred).display_name} with ImageNet weights (found offline).",
        )
    available = [
        key
        for key in zoo.offline_backbones(settings)
        if _fits(zoo, key, size) and zoo.weights_available_offline(key, size, settings=settings)
    ]
    if available:
        smallest = min(available, key=lambda key: zoo.get_backbone_info(key).params)
        name = zoo.get_backbone_info(smallest).display_name
        return DemoChoice(
            smallest,
            size,
            "imagenet",
            f"{name} with ImageNet weights: the weights of {preferred} are not on this "
            "machine, and this is the smallest backbone whose weights are.",
        )
    return DemoChoice(
        preferred,
        size,
        "random",
        "No pretrained ImageNet weights are on this machine and downloads are not possible, so the demo "
        "starts from random weights: that is training from scratch, not transfer. Put the weight files "
        "in the folder named by TRANSFER_WEIGHTS_DIR to see real transfer learning.",
    )


def _fits(zoo, key: str, size: int) -> bool:
    try:
        zoo.check_input_size(key, size)
    except ValueError:
        return False
    return True


def demo_model_spec(choice: DemoChoice) -> ModelSpec:
    return ModelSpec(
        backbone=choice.backbone,
        input_size=choice.input_size,
        weights=choice.weights,
        dropout_rate=0.2,
        hidden_units=0,
    )


def demo_train_config(choice: DemoChoice) -> TrainConfig:
    """Fast defaults: well under a minute on a 2-core laptop CPU.

    With pretrained weights the demo fine-tunes in two stages (the head on
    features computed once, then the top blocks on the cached output of the
    frozen layers), so both stages show on the curves. With random weights the
    whole network trains (nothing to transfer), a few epochs only.
    """
    if choice.weights == "random":
        return TrainConfig(strategy="from_scratch", epochs=5, batch_size=32, learning_rate=1e-3)
    return TrainConfig(
        strategy="fine_tuning",
        epochs=5,
        fine_tune_epochs=5,
        batch_size=16,
        learning_rate=1e-3,
        # 5e-4 (not the textbook 1e-4): ~45 steps must move the top blocks enough to learn where things are.
        fine_tune_learning_rate=5e-4,
    )


def demo_freeze_plan() -> FreezePlan:
    """The demo fine-tunes the top three blocks, BatchNorm frozen (the Keras recipe)."""
    return FreezePlan(mode="top_blocks", top_blocks=3)


# The head's pooling as the Model page offers it: a name and one sentence on what it means.
HEAD_CHOICES = {
    "avg": "Global average pooling",
    "max": "Global max pooling",
    "flatten": "Flatten (the classic recipe)",
}
HEAD_MEANINGS = {
    "avg": "Each feature channel becomes its average over the whole picture: few weights, and where "
    "an object sits does not matter.",
    "max": "Each feature channel becomes its strongest response anywhere in the picture: few weights, "
    "and one small clear detail can decide.",
    "flatten": "Every position of every channel gets its own weights: the head can use where things are, "
    "but it has many times more weights to fit, so it overfits a small data set easily.",
}

CLASSIC_RECIPE_NAME = "The classic Keras recipe"
CLASSIC_BACKBONE = "resnet50"
CLASSIC_INPUT_SIZE = 224
# The same head on a backbone whose weights ship with small setups (see ../shared/README.md).
CLASSIC_FALLBACK_BACKBONE = "mobilenet_v2_0.35"


@dataclass(frozen=True)
class RecipeChoice:
    """A ready-made run: model, freeze plan and training settings, and whether it runs here.

    Args:
        model: The model settings.
        freeze: The freeze plan.
        train: The training settings.
        weights_offline: The backbone's ImageNet weights are on this machine.
        summary: What the recipe is, in one sentence.
        obstacle: What stands in its way on this machine ("" when nothing does).
    """

    model: ModelSpec
    freeze: FreezePlan
    train: TrainConfig
    weights_offline: bool
    summary: str
    obstacle: str = ""


def classic_keras_recipe(settings: Settings, backbone: str = CLASSIC_BACKBONE) -> RecipeChoice:
    """The textbook Keras transfer-learning example: ImageNet weights, every layer frozen,
    ``Flatten -> Dense(128, relu) -> softmax``, Adam at 1e-4, 10 epochs.

    Args:
        settings: Where the offline weights folder is, and whether downloads are allowed.
        backbone: ResNet50 in the textbook; :func:`classic_recipe_fallback` passes another one.

    Returns:
        A :class:`RecipeChoice`; ``weights_offline`` False means training needs a download (or, on
        an offline server, cannot use ImageNet weights at all) and ``obstacle`` says which.
    """
    from transfer_core import zoo

    info = zoo.get_backbone_info(backbone)
    size = CLASSIC_INPUT_SIZE if CLASSIC_INPUT_SIZE in info.allowed_input_sizes else info.default_input_size
    offline = zoo.weights_available_offline(backbone, size, settings=settings)
    summary = (
        f"{info.display_name} at {size} px with ImageNet weights, every layer frozen, Flatten -> Dense(128, "
        "ReLU) -> softmax, Adam at learning rate 1e-4, 10 epochs."
    )
    obstacle = ""
    if not offline:
        file_name = info.weights_file(False, size)
        if settings.offline:
            obstacle = (
                f"{info.display_name}'s ImageNet weights (`{file_name}`) are not on this server, and this "
                "server does not download, so this recipe cannot run here as written."
            )
        else:
            obstacle = (
                f"{info.display_name}'s ImageNet weights (`{file_name}`, about {info.size_mb:.0f} MB) are not "
                "on this server: training will try to download them, and fails without internet."
            )
    return RecipeChoice(
        model=ModelSpec(backbone=backbone, input_size=size, weights="imagenet", dropout_rate=0.0,
                        hidden_units=128, head="flatten"),
        freeze=FreezePlan(mode="all_frozen"),
        train=TrainConfig(strategy="feature_extraction", epochs=10, batch_size=32, learning_rate=1e-4,
                          optimizer="adam"),
        weights_offline=offline,
        summary=summary,
        obstacle=obstacle,
    )


def classic_recipe_fallback(settings: Settings) -> RecipeChoice | None:
    """The classic recipe's head and training on a backbone whose weights are on this machine:
    MobileNetV2 (alpha 0.35) when it can, else the smallest backbone with offline weights; None when
    no backbone has its weights here."""
    from transfer_core import zoo

    if zoo.weights_available_offline(CLASSIC_FALLBACK_BACKBONE, CLASSIC_INPUT_SIZE, settings=settings):
        return classic_keras_recipe(settings, CLASSIC_FALLBACK_BACKBONE)
    available = [key for key in zoo.offline_backbones(settings) if key != CLASSIC_BACKBONE]
    if not available:
        return None
    return classic_keras_recipe(settings, min(available, key=lambda key: zoo.get_backbone_info(key).params))


def freeze_plan_for_preset(
    preset: str, top_blocks: int = 2, trainable_blocks: tuple[str, ...] = (), train_batchnorm: bool = False
) -> FreezePlan:
    """The FreezePlan of a Model-page preset.

    Args:
        preset: A key of :data:`FREEZE_PRESETS`.
        top_blocks: N for ``top_blocks``.
        trainable_blocks: Block names for ``custom``.
        train_batchnorm: Let BatchNorm layers of unfrozen blocks train.

    Raises:
        ValueError: Unknown preset.
    """
    if preset == "feature_extraction":
        return FreezePlan(mode="all_frozen", train_batchnorm=train_batchnorm)
    if preset == "top_blocks":
        return FreezePlan(
            mode="top_blocks", top_blocks=max(1, int(top_blocks)), train_batchnorm=train_batchnorm
        )
    if preset == "all_trainable":
        return FreezePlan(mode="all_trainable", train_batchnorm=train_batchnorm)
    if preset == "custom":
        return FreezePlan(
            mode="custom", trainable_blocks=tuple(trainable_blocks), train_batchnorm=train_batchnorm
        )
    raise ValueError(f"preset must be one of {sorted(FREEZE_PRESETS)}. Received: preset={preset!r}")


def preset_of_plan(plan: FreezePlan) -> str:
    """The Model-page preset that shows ``plan`` (``from_layer`` plans show as custom)."""
    return {
        "all_frozen": "feature_extraction",
        "top_blocks": "top_blocks",
        "all_trainable": "all_trainable",
    }.get(plan.mode, "custom")


def describe_plan(plan: FreezePlan) -> str:
    """A freeze plan in a few words, e.g. ``"fine-tune the top 2 blocks"``."""
    if plan.mode == "all_frozen":
        return "backbone frozen (feature extraction)"
    if plan.mode == "top_blocks":
        return f"fine-tune the top {plan.top_blocks} block{'s' if plan.top_blocks != 1 else ''}"
    if plan.mode == "all_trainable":
        return "fine-tune every block"
    if plan.mode == "from_layer":
        return f"fine-tune from layer {plan.from_layer} on"
    blocks = ", ".join(plan.trainable_blocks) or "none"
    return f"fine-tune the chosen blocks ({blocks})"


def strategy_for_plan(plan: FreezePlan) -> str:
    """The training strategy that matches a freeze plan."""
    return "feature_extraction" if plan.mode == "all_frozen" else "fine_tuning"


def plan_warnings(strategy: str, plan: FreezePlan) -> list[str]:
    """Plain-language mismatches between the chosen strategy and the freeze plan."""
    warnings = []
    if strategy == "fine_tuning" and (
        plan.mode == "all_frozen" or (plan.mode == "custom" and not plan.trainable_blocks)
    ):
        warnings.append(
            "Fine-tuning with every block frozen trains only the head twice. "
            "Choose blocks to unfreeze on the Model page."
        )
    if strategy == "feature_extraction" and plan.mode != "all_frozen":
        warnings.append(
            "Feature extraction keeps the whole backbone frozen; the unfrozen blocks chosen on the "
            "Model page are used only by fine-tuning."
        )
    if strategy == "from_scratch":
        warnings.append(
            "From scratch trains every layer from random weights (no transfer); the freeze plan is not used."
        )
    return warnings


def train_config_from_form(values: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from the Train form's values (validated by TrainConfig).

    Args:
        values: Field name -> value; unknown names raise, missing ones take defaults.

    Raises:
        ValueError: A value out of range (the message names it).
    """
    return TrainConfig.from_dict(dict(values))


def build_run_config(
    dataset: DatasetSpec, model: ModelSpec, freeze: FreezePlan, train: TrainConfig, name: str = ""
) -> RunConfig:
    """The run to start, from the session's choices.

    From scratch means no transfer: its run gets random weights whatever the Model page chose.
    """
    if train.strategy == "from_scratch":
        model = dataclasses.replace(model, weights="random")
    return RunConfig(dataset=dataset, model=model, freeze=freeze, train=train, name=name)
