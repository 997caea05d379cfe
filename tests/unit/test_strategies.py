"""The strategies are declared once (transfer_core.strategies) and every reader agrees with that declaration."""

from __future__ import annotations

import pandas as pd

from transfer_core import compare, config, strategies
from transfer_core.display import compare_charts, run_charts


def test_configuration_accepts_exactly_the_declared_strategies():
    assert config.STRATEGIES == strategies.NAMES == ("feature_extraction", "fine_tuning", "from_scratch")
    assert compare.STRATEGY_LABELS["fine_tuning"] == strategies.FINE_TUNING.label == "fine-tuning"


def test_labels_and_colours_tell_the_strategies_and_the_pitfall_apart():
    colors = strategies.color_by_label()
    assert list(colors) == ["feature extraction", "fine-tuning", "from scratch", strategies.BN_PITFALL_LABEL]
    assert len(set(colors.values())) == len(colors)
    assert len({s.title for s in strategies.STRATEGIES}) == len({s.summary for s in strategies.STRATEGIES}) == 3


def test_an_unknown_strategy_is_shown_by_its_name_in_the_default_colour():
    assert strategies.label("distillation") == "distillation"
    assert strategies.color("distillation") is None


def test_run_charts_and_compare_charts_draw_a_strategy_in_the_same_colour():
    table = pd.DataFrame({"trainable_params": [10, 2000], "val_accuracy": [0.5, 0.9],
                          "strategy": ["feature_extraction", "fine_tuning"]})
    scatter = run_charts.accuracy_vs_parameters_figure(table)
    curves = pd.DataFrame({"run_id": ["a", "b", "c"], "label": ["feature extraction", "fine-tuning",
                                                               strategies.BN_PITFALL_LABEL],
                           "epoch": [1, 1, 1], "elapsed": [1.0, 2.0, 3.0], "stage": ["head"] * 3,
                           "val_accuracy": [0.5, 0.9, 0.7]})
    overlay = compare_charts.overlay_curves_figure(curves)

    assert {t.name: t.marker.color for t in scatter.data} == {
        "feature extraction": strategies.FEATURE_EXTRACTION.color, "fine-tuning": strategies.FINE_TUNING.color}
    overlay_colors = {t.name: t.line.color for t in overlay.data}
    assert overlay_colors["fine-tuning"] == strategies.FINE_TUNING.color
    assert overlay_colors[strategies.BN_PITFALL_LABEL] == strategies.BN_PITFALL_COLOR
