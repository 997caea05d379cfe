"""The training strategies, declared once: name, label, colour and help text.

Everything that names, draws or explains a strategy reads it from here (the configuration's
validation, the comparison's run names, both chart modules, the Train and Compare pages).
A leaf module: it imports nothing from ``transfer_core``, so anything may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BN_PITFALL_COLOR",
    "BN_PITFALL_LABEL",
    "BY_NAME",
    "FEATURE_EXTRACTION",
    "FINE_TUNING",
    "FROM_SCRATCH",
    "NAMES",
    "STRATEGIES",
    "Strategy",
    "color",
    "color_by_label",
    "label",
]


@dataclass(frozen=True)
class Strategy:
    """One way to train.

    Attributes:
        name: The value stored in ``TrainConfig.strategy`` and in every run's ``config.json``.
        label: Short lower-case text for charts, tables and run names, e.g. ``"fine-tuning"``.
        title: Capitalised label for a checkbox, e.g. ``"Fine-tuning"``.
        summary: The title with its one-line gist, for the Train page's choice.
        help: A few sentences on what it does and what it costs.
        color: Its colour on every chart.
    """

    name: str
    label: str
    title: str
    summary: str
    help: str
    color: str


FEATURE_EXTRACTION = Strategy(
    name="feature_extraction",
    label="feature extraction",
    title="Feature extraction",
    summary="Feature extraction (frozen backbone, train the head)",
    help="Backbone frozen; its features are computed once and only the new head trains. Fast and "
         "hard to overfit.",
    color="#1f77b4",
)
FINE_TUNING = Strategy(
    name="fine_tuning",
    label="fine-tuning",
    title="Fine-tuning",
    summary="Fine-tuning (head first, then the unfrozen blocks)",
    help="Stage 1 trains the head like feature extraction; stage 2 unfreezes the top blocks and trains "
         "them with a 10x lower learning rate. Usually a little more accurate, and slower.",
    color="#ff7f0e",
)
FROM_SCRATCH = Strategy(
    name="from_scratch",
    label="from scratch",
    title="From scratch",
    summary="From scratch (random weights, no transfer)",
    help="The same network with random weights, every layer trained: no transfer. The slowest, and far "
         "worse with few images; it shows what the pretrained weights are worth.",
    color="#7f7f7f",
)
STRATEGIES = (FEATURE_EXTRACTION, FINE_TUNING, FROM_SCRATCH)
NAMES = tuple(strategy.name for strategy in STRATEGIES)
BY_NAME = {strategy.name: strategy for strategy in STRATEGIES}

# Fine-tuning with BatchNorm in training mode: not a strategy of its own, but the Compare page runs
# and draws it beside the others to show the pitfall.
BN_PITFALL_LABEL = "fine-tuning, BatchNorm training (pitfall)"
BN_PITFALL_COLOR = "#d62728"


def label(name: str) -> str:
    """The short label of strategy ``name``, or ``name`` itself for one this version does not know."""
    strategy = BY_NAME.get(name)
    return strategy.label if strategy else name


def color(name: str) -> str | None:
    """The chart colour of strategy ``name``, or None (the chart's default) for one this version does not know."""
    strategy = BY_NAME.get(name)
    return strategy.color if strategy else None


def color_by_label() -> dict[str, str]:
    """Each label (the BatchNorm pitfall's included) with its chart colour."""
    return {**{strategy.label: strategy.color for strategy in STRATEGIES}, BN_PITFALL_LABEL: BN_PITFALL_COLOR}
