"""Charts are pure: frame in, figure out, readable even when the frame is empty."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from transfer_core.display import run_charts


def _epochs(n: int, stages=None) -> pd.DataFrame:
    stages = stages or ["head"] * n
    return pd.DataFrame(
        {
            "epoch": list(range(1, n + 1)),
            "stage": stages,
            "loss": [1.0 / e for e in range(1, n + 1)],
            "accuracy": [0.5 + 0.05 * e for e in range(1, n + 1)],
            "val_loss": [1.2 / e for e in range(1, n + 1)],
            "val_accuracy": [0.4 + 0.05 * e for e in range(1, n + 1)],
        }
    )


@pytest.mark.parametrize("metric", ["loss", "accuracy"])
def test_epoch_figure_has_train_and_validation_lines(metric):
    figure = run_charts.epoch_metric_figure(_epochs(3), metric)
    assert [trace.name for trace in figure.data] == ["train", "validation"]
    assert list(figure.data[0].x) == [1, 2, 3]
    assert list(figure.data[1].y) == pytest.approx(list(_epochs(3)[f"val_{metric}"]))
    assert figure.layout.xaxis.title.text == "epoch"


def test_epoch_figure_marks_where_fine_tuning_starts():
    figure = run_charts.epoch_metric_figure(_epochs(4, ["head", "head", "fine_tune", "fine_tune"]), "loss")
    assert len(figure.layout.shapes) == 1
    assert figure.layout.shapes[0].x0 == pytest.approx(2.5)
    assert "fine-tuning" in figure.layout.annotations[0].text


def test_epoch_figure_of_no_epochs_is_empty_not_an_error():
    figure = run_charts.epoch_metric_figure(pd.DataFrame(columns=["epoch", "loss", "val_loss"]), "loss")
    assert run_charts.trace_points(figure) == 0


def test_epoch_figure_drops_nan_values_from_the_point_count():
    frame = _epochs(3)
    frame.loc[1, "val_loss"] = math.nan
    assert run_charts.trace_points(run_charts.epoch_metric_figure(frame, "loss")) == 5


def test_epoch_figure_rejects_unknown_metric():
    with pytest.raises(ValueError, match="Received: metric='f1'"):
        run_charts.epoch_metric_figure(_epochs(2), "f1")


def test_live_chart_gains_points_as_epochs_arrive():
    counts = [run_charts.trace_points(run_charts.epoch_metric_figure(_epochs(n), "loss")) for n in (1, 2, 3)]
    assert counts == [2, 4, 6]


def test_batch_loss_figure_has_raw_and_smoothed_loss():
    frame = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [4.0, 2.0, 2.0, 0.0]})
    figure = run_charts.batch_loss_figure(frame, smoothing=2)
    assert [trace.name for trace in figure.data] == ["batch loss", "moving average"]
    assert list(figure.data[1].y) == pytest.approx([4.0, 3.0, 2.0, 1.0])
    assert run_charts.batch_loss_figure(pd.DataFrame(columns=["step", "loss"])).data[0].x == ()


def test_confusion_matrix_counts_and_row_shares():
    matrix = [[3, 1], [0, 4]]
    figure = run_charts.confusion_matrix_figure(matrix, ["cat", "dog"])
    heatmap = figure.data[0]
    assert list(heatmap.x) == ["cat", "dog"] and list(heatmap.y) == ["cat", "dog"]
    assert [list(row) for row in heatmap.text] == [["3", "1"], ["0", "4"]]
    shares = run_charts.confusion_matrix_figure(matrix, ["cat", "dog"], normalize=True).data[0]
    assert shares.z[0][0] == pytest.approx(0.75)
    assert shares.text[0][1] == "25%"


def test_confusion_matrix_with_an_empty_class_row_does_not_divide_by_zero():
    figure = run_charts.confusion_matrix_figure([[0, 0], [1, 1]], ["a", "b"], normalize=True)
    assert list(figure.data[0].z[0]) == [0.0, 0.0]


def test_confusion_matrix_must_match_class_names():
    with pytest.raises(ValueError, match="one row per class"):
        run_charts.confusion_matrix_figure([[1, 2], [3, 4]], ["a", "b", "c"])


def test_class_counts_from_wide_health_counts_stack_by_split():
    counts = pd.DataFrame(
        {"train": [8, 6], "val": [2, 1], "test": [0, 0], "total": [10, 7]}, index=["cat", "dog"]
    )
    figure = run_charts.class_counts_figure(counts)
    assert [trace.name for trace in figure.data] == ["train", "val"]  # No empty test split, no total.
    assert list(figure.data[0].x) == ["cat", "dog"] and list(figure.data[0].y) == [8, 6]
    assert figure.layout.barmode == "stack"


def test_class_counts_accepts_long_form():
    long = pd.DataFrame({"label": ["a", "a", "b"], "split": ["train", "val", "train"], "count": [3, 1, 2]})
    figure = run_charts.class_counts_figure(long)
    assert [trace.name for trace in figure.data] == ["train", "val"]
    assert list(figure.data[0].y) == [3, 2]


def test_block_map_figure_splits_params_into_trains_and_frozen():
    table = pd.DataFrame(
        {"block": ["stem", "block_1", "top"], "params": [10, 20, 30], "trains": [False, False, True]}
    )
    figure = run_charts.block_map_figure(table)
    trains, frozen = figure.data
    assert list(trains.y) == [0, 0, 30] and list(frozen.y) == [10, 20, 0]


def test_accuracy_against_parameters_has_one_trace_per_strategy_and_skips_unknown_numbers():
    table = pd.DataFrame({
        "nickname": ["Ada", "Ada", "Bo", "Cy", "Di"],
        "backbone": ["mobilenet_v2_0.35"] * 5,
        "strategy": ["feature_extraction", "fine_tuning", "from_scratch", "fine_tuning", "feature_extraction"],
        "trainable_params": [5_124, 210_000, 410_000, None, 0],
        "val_accuracy": [0.81, 0.9, 0.3, 0.7, 0.5],
    })
    figure = run_charts.accuracy_vs_parameters_figure(table)
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"feature extraction", "fine-tuning", "from scratch"}
    assert list(traces["fine-tuning"].x) == [210_000.0]  # Cy's run has no parameter count.
    assert list(traces["feature extraction"].y) == [0.81]  # Zero parameters cannot sit on a log axis.
    assert "Ada · mobilenet_v2_0.35" in traces["feature extraction"].text
    assert figure.layout.xaxis.type == "log"


def test_accuracy_against_parameters_of_nothing_is_an_empty_chart():
    for table in (pd.DataFrame(), pd.DataFrame(columns=["strategy", "trainable_params", "val_accuracy"])):
        figure = run_charts.accuracy_vs_parameters_figure(table)
        assert figure.data == () and figure.layout.title.text


def test_run_charts_and_compare_charts_share_one_layout():
    from transfer_core.display import compare_charts

    run_figure = run_charts.epoch_metric_figure(_epochs(3), "loss")
    compare_figure = compare_charts.lr_finder_figure(pd.DataFrame({"lr": [1e-4, 1e-3], "smoothed_loss": [1.0, 0.9],
                                                                   "loss": [1.0, 0.8]}))
    for figure in (run_figure, compare_figure):
        assert figure.layout.title.x == 0.0 and figure.layout.legend.orientation == "h"
    assert run_figure.layout.margin == compare_figure.layout.margin
    assert run_figure.layout.template == compare_figure.layout.template
    assert (run_figure.layout.height, compare_figure.layout.height) == (320, 340)
