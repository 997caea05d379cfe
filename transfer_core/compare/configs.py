"""Building and starting a comparison: the run configurations, the chained jobs, finding groups again."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from transfer_core.compare.labels import BN_PITFALL_LABEL, COMPARISON_PREFIX, STRATEGY_LABELS
from transfer_core.config import (
    STRATEGIES,
    DatasetSpec,
    FreezePlan,
    ModelSpec,
    RunConfig,
    Settings,
    TrainConfig,
)
from transfer_core.runs import RunInfo


def comparison_configs(
    dataset: DatasetSpec,
    model_spec: ModelSpec,
    freeze_plan: FreezePlan,
    train_config: TrainConfig,
    strategies: Sequence[str],
    include_bn_pitfall: bool = False,
    group: str | None = None,
) -> list[RunConfig]:
    """The run configurations of one comparison (nothing is started).

    Every run gets the same total number of epochs (head epochs + fine-tuning
    epochs), so feature extraction's curve can be laid over fine-tuning's: they
    are identical until fine-tuning unfreezes blocks. From scratch uses random
    weights and trains everything for the same number of epochs.

    Args:
        dataset: The data set (its split and seed are shared by every run).
        model_spec: Backbone, input size and head (from the Model page).
        freeze_plan: What fine-tuning unfreezes. A plan that freezes everything
            is replaced by "top 2 blocks" for the fine-tuning run.
        train_config: Epochs, learning rates, batch size, optimizer, seed, augmentation.
        strategies: Any of ``feature_extraction``, ``fine_tuning``, ``from_scratch``.
        include_bn_pitfall: Add a fine-tuning run with BatchNormalization in training mode.
        group: Name shared by the runs (a new one when None).

    Returns:
        One :class:`RunConfig` per run, in the order they should run.

    Raises:
        ValueError: No strategies, an unknown strategy, or a pitfall run without pretrained weights.
    """
    unknown = sorted(set(strategies) - set(STRATEGIES))
    strategies = [s for s in STRATEGIES if s in set(strategies)]
    if unknown or not (strategies or include_bn_pitfall):
        raise ValueError(f"Choose strategies among {STRATEGIES}. Received: strategies={list(strategies)}")
    group = group or f"{time.strftime('%H%M%S')}-{secrets.token_hex(2)}"
    fine_tune_epochs = train_config.fine_tune_epochs or 5
    transfer_total = train_config.epochs + fine_tune_epochs
    base_train = dataclasses.replace(train_config, fine_tune_epochs=fine_tune_epochs)
    plan = freeze_plan
    if plan.mode == "all_frozen" or (plan.mode == "custom" and not plan.trainable_blocks):
        plan = FreezePlan(mode="top_blocks", top_blocks=2)
    plan = dataclasses.replace(plan, train_batchnorm=False)

    def make(label: str, train: TrainConfig, freeze: FreezePlan, model: ModelSpec = model_spec) -> RunConfig:
        return RunConfig(dataset=dataset, model=model, freeze=freeze, train=train,
                         name=f"{COMPARISON_PREFIX}{group}: {label}")

    configs = []
    if "feature_extraction" in strategies:
        configs.append(make(STRATEGY_LABELS["feature_extraction"],
                            dataclasses.replace(base_train, strategy="feature_extraction", epochs=transfer_total),
                            FreezePlan(mode="all_frozen")))
    if "fine_tuning" in strategies:
        configs.append(make(STRATEGY_LABELS["fine_tuning"],
                            dataclasses.replace(base_train, strategy="fine_tuning"), plan))
    if include_bn_pitfall:
        if model_spec.weights != "imagenet":
            raise ValueError(
                "The BatchNorm pitfall needs pretrained (ImageNet) weights: with random weights there are "
                f"no statistics to wreck. Received: weights={model_spec.weights!r}"
            )
        configs.append(make(BN_PITFALL_LABEL, dataclasses.replace(base_train, strategy="fine_tuning"),
                            dataclasses.replace(plan, train_batchnorm=True)))
    if "from_scratch" in strategies:
        scratch_epochs = transfer_total if ("fine_tuning" in strategies or include_bn_pitfall) else train_config.epochs
        configs.append(make(STRATEGY_LABELS["from_scratch"],
                            dataclasses.replace(base_train, strategy="from_scratch", epochs=scratch_epochs),
                            FreezePlan(mode="all_trainable", train_batchnorm=True),
                            dataclasses.replace(model_spec, weights="random")))
    return configs


def start_comparison(
    dataset: DatasetSpec,
    model_spec: ModelSpec,
    freeze_plan: FreezePlan,
    train_config: TrainConfig,
    strategies: Sequence[str],
    runs_dir: Path,
    settings: Settings | None = None,
    include_bn_pitfall: bool = False,
    after: Path | None = None,
    same_time_budget: bool = False,
) -> list[Path]:
    """Start the runs of a comparison, one after another, through the job runner.

    Each run waits for the previous one (``jobs.start_run(..., after=previous)``),
    so they never share the CPU and their times compare fairly. Returns at once.

    Args:
        dataset, model_spec, freeze_plan, train_config, strategies, include_bn_pitfall:
            See :func:`comparison_configs`.
        runs_dir: The run store the runs go to.
        settings: Passed to the workers.
        after: A run directory the first run should wait for (e.g. a run still training).
        same_time_budget: From scratch trains until it has used as much training time as
            the fine-tuning run did (it runs after it), instead of a number of epochs only;
            its epochs stay the upper bound. Ignored without a fine-tuning run.

    Returns:
        The run directories, in the order they will run.

    Raises:
        ValueError: See :func:`comparison_configs`; also a data set without a training or
            validation split, or an input size the backbone rejects.
        transfer_core.zoo.WeightsUnavailableError: Pretrained weights are needed and missing.
            Nothing is started when any run would fail these checks.
    """
    from transfer_core import jobs
    from transfer_core.training import preflight

    configs = comparison_configs(dataset, model_spec, freeze_plan, train_config, strategies, include_bn_pitfall)
    for config in configs:  # Check every run before starting any, so a comparison never stops half-way.
        preflight(config, settings)
    run_dirs: list[Path] = []
    previous = after
    fine_tuning_dir: Path | None = None
    for config in configs:
        if same_time_budget and fine_tuning_dir is not None and config.train.strategy == "from_scratch":
            # Resolved by the engine when this run starts, after fine-tuning has finished.
            config = dataclasses.replace(
                config, train=dataclasses.replace(config.train, time_budget_from=str(fine_tuning_dir)))
        run_dir = jobs.start_run(config, runs_dir=Path(runs_dir), settings=settings, after=previous)
        if config.train.strategy == "fine_tuning" and not config.freeze.train_batchnorm:
            fine_tuning_dir = run_dir
        run_dirs.append(run_dir)
        previous = run_dir
    return run_dirs


def comparison_groups(runs: Sequence[RunInfo]) -> dict[str, list[str]]:
    """Runs started together by :func:`start_comparison`, found by their names.

    Args:
        runs: Runs of a store (any order).

    Returns:
        Group name -> run ids in the order they ran; newest group first.
    """
    groups: dict[str, list[tuple[float, str]]] = {}
    for info in runs:
        name = info.config.name if info.config else ""
        if not name.startswith(COMPARISON_PREFIX) or ":" not in name:
            continue
        group = name[len(COMPARISON_PREFIX) :].split(":", 1)[0].strip()
        groups.setdefault(group, []).append((info.created, info.run_id))
    ordered = sorted(groups.items(), key=lambda item: max(t for t, _ in item[1]), reverse=True)
    return {group: [run_id for _, run_id in sorted(members)] for group, members in ordered}
