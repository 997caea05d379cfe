"""Names shared by the comparison modules: strategy labels, the group prefix, safe number reading."""

from __future__ import annotations

import math
from typing import Any

from transfer_core import strategies
from transfer_core.config import RunConfig
from transfer_core.report import EMPTY_REPORT, RunReport
from transfer_core.runs import RunInfo

BN_PITFALL_LABEL = strategies.BN_PITFALL_LABEL
STRATEGY_LABELS = {strategy.name: strategy.label for strategy in strategies.STRATEGIES}
# Runs started together are named "compare <group>: <label>", so a group can be found again later.
COMPARISON_PREFIX = "compare "


def run_label(config: RunConfig | None) -> str:
    """A short name for a run's strategy, e.g. ``"fine-tuning"``.

    Args:
        config: The run's configuration (None for an unreadable run).

    Returns:
        The label; the BatchNorm pitfall is named as such.
    """
    if config is None:
        return "unreadable run"
    if config.train.strategy == "fine_tuning" and config.freeze.train_batchnorm:
        return BN_PITFALL_LABEL
    return strategies.label(config.train.strategy)


def as_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, NaN or infinite)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def report_of(info: RunInfo) -> RunReport:
    """The run's report; an empty one (every field None) when it has none."""
    return info.report or EMPTY_REPORT
