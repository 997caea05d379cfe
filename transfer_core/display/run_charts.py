"""Plotly figures built from pandas frames: frame in, figure out.

Pure functions with no Streamlit and no TensorFlow, so they are cheap to call
every second while a run is live and easy to test without a browser.
Every figure has a title, labelled axes and a fixed height, so an empty
frame still draws a readable (empty) chart instead of an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from transfer_core import strategies
from transfer_core.display.chart_layout import apply_layout, layout_dict

TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
SPLIT_COLORS = {"train": TRAIN_COLOR, "val": VAL_COLOR, "test": "#2ca02c"}
STAGE_NAMES = {
    "head": "head",
    "fine_tune": "fine-tuning",
    "scratch": "from scratch",
}


def _finite(series: pd.Series) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    return values.where(np.isfinite(values))


def _values(series: pd.Series) -> list:
    """Plain floats with None for missing values (plotly draws a gap)."""
    return [None if pd.isna(v) else float(v) for v in series]


def epoch_metric_figure(frame: pd.DataFrame, metric: str = "loss", title: str | None = None) -> go.Figure:
    """Train and validation ``metric`` per epoch (one line each).

    Built in one pass (a dict validated once): the live Train page rebuilds it
    whenever an epoch ends, on a CPU that is busy training.

    Args:
        frame: Per-epoch rows with ``epoch``, ``metric`` and ``val_<metric>``
            columns (``runs.epoch_frame`` or ``metrics.csv``); an optional
            ``stage`` column marks where fine-tuning starts.
        metric: ``"loss"`` or ``"accuracy"``.
        title: Chart title; defaults to the metric's name.

    Returns:
        A figure with traces named ``train`` and ``validation``.

    Raises:
        ValueError: If ``metric`` is not ``loss`` or ``accuracy``.
    """
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric must be 'loss' or 'accuracy'. Received: metric={metric!r}")
    epochs = [int(e) for e in frame["epoch"]] if "epoch" in frame else []
    data = []
    for column, name, color in ((metric, "train", TRAIN_COLOR), (f"val_{metric}", "validation", VAL_COLOR)):
        values = _values(_finite(frame[column])) if column in frame else []
        data.append(
            {
                "type": "scatter",
                "x": epochs,
                "y": values,
                "mode": "lines+markers",
                "name": name,
                "line": {"color": color},
                "connectgaps": False,
            }
        )
    layout = layout_dict(title or metric.capitalize(), "epoch", metric)
    layout["xaxis"].update({"rangemode": "tozero", "dtick": 1 if len(frame) <= 20 else None})
    if metric == "accuracy":
        layout["yaxis"]["range"] = [0, 1.02]
    shapes, annotations = [], []
    if "stage" in frame and len(frame):
        stages = list(frame["stage"])
        for index in range(1, len(stages)):
            if stages[index] != stages[index - 1]:
                boundary = float(frame["epoch"].iloc[index]) - 0.5
                shapes.append(
                    {
                        "type": "line",
                        "x0": boundary,
                        "x1": boundary,
                        "xref": "x",
                        "y0": 0,
                        "y1": 1,
                        "yref": "paper",
                        "line": {"dash": "dot", "color": "gray"},
                    }
                )
                annotations.append(
                    {
                        "x": boundary,
                        "y": 0.0,
                        "yref": "paper",
                        "yanchor": "bottom",
                        "xanchor": "left",
                        "showarrow": False,
                        "text": f" {STAGE_NAMES.get(stages[index], stages[index])}",
                        "font": {"color": "gray", "size": 11},
                    }
                )
    layout["shapes"] = shapes
    layout["annotations"] = annotations
    return go.Figure({"data": data, "layout": layout})


def batch_loss_figure(frame: pd.DataFrame, smoothing: int = 5, max_points: int = 2000) -> go.Figure:
    """Training loss after every batch, with a moving average.

    Args:
        frame: Rows with ``step`` and ``loss`` (``runs.batch_frame``).
        smoothing: Window of the moving average (1 = none).
        max_points: Longer runs are thinned to about this many points per trace
            (the moving average is computed before thinning).

    Returns:
        A figure with a ``batch loss`` trace and, when ``smoothing > 1``, a
        ``moving average`` trace.
    """
    steps = pd.Series(list(frame["step"]) if "step" in frame else [], dtype=float)
    losses = _finite(frame["loss"]).reset_index(drop=True) if "loss" in frame else pd.Series(dtype=float)
    average = losses.rolling(smoothing, min_periods=1).mean() if smoothing > 1 else None
    every = max(1, -(-len(steps) // max_points))
    if every > 1:
        steps, losses = steps.iloc[::every], losses.iloc[::every]
        average = average.iloc[::every] if average is not None else None
    x = [int(v) for v in steps]
    data = [
        {
            "type": "scatter",
            "x": x,
            "y": _values(losses),
            "mode": "lines",
            "name": "batch loss",
            "line": {"color": TRAIN_COLOR, "width": 1},
            "opacity": 0.5,
        }
    ]
    if average is not None:
        data.append(
            {
                "type": "scatter",
                "x": x,
                "y": _values(average),
                "mode": "lines",
                "name": "moving average",
                "line": {"color": TRAIN_COLOR, "width": 2.5},
            }
        )
    return go.Figure({"data": data, "layout": layout_dict("Loss per batch", "batch (all epochs)", "loss")})


def confusion_matrix_figure(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], normalize: bool = False
) -> go.Figure:
    """Heatmap of a confusion matrix: true classes as rows, predictions as columns.

    Args:
        matrix: Square counts, rows = true class, columns = predicted class.
        class_names: Names in label order.
        normalize: Show each row as shares of that class (recall on the diagonal).

    Returns:
        A heatmap figure with the count (or share) written in each cell.

    Raises:
        ValueError: If the matrix is not square or does not match ``class_names``.
    """
    counts = np.asarray(matrix, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(class_names):
        raise ValueError(
            "matrix must be square with one row per class. "
            f"Received: matrix shape={counts.shape}, {len(class_names)} class names"
        )
    values = counts
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    text = [[f"{v:.0%}" if normalize else f"{int(v)}" for v in row] for row in values]
    names = [str(n) for n in class_names]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
        )
    )
    side = max(260, min(700, 60 * len(names) + 140))
    apply_layout(figure, "Confusion matrix (validation)", "predicted class", "true class", height=side)
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_xaxes(type="category", side="bottom")
    return figure


def class_counts_figure(counts: pd.DataFrame) -> go.Figure:
    """Images per class, stacked by split.

    Args:
        counts: Either long form with ``class`` (or ``label``), ``split`` and
            ``count`` columns, or wide form with one row per class (a ``class``
            / ``label`` column or the index) and one numeric column per split.
            A ``total`` column is ignored.

    Returns:
        A stacked bar figure, one trace per split.
    """
    long = class_counts_long(counts)
    figure = go.Figure()
    for split in long["split"].drop_duplicates():
        part = long[long["split"] == split]
        figure.add_trace(
            go.Bar(
                x=list(part["class"]),
                y=list(part["count"]),
                name=str(split),
                marker_color=SPLIT_COLORS.get(str(split)),
            )
        )
    figure.update_layout(barmode="stack")
    apply_layout(figure, "Images per class", "class", "images")
    figure.update_xaxes(type="category")
    return figure


def class_counts_long(counts: pd.DataFrame) -> pd.DataFrame:
    """Normalise a per-class count table to long form: ``class``, ``split``, ``count``."""
    frame = counts.copy()
    if "label" in frame.columns and "class" not in frame.columns:
        frame = frame.rename(columns={"label": "class"})
    if {"class", "split", "count"} <= set(frame.columns):
        return frame[["class", "split", "count"]].reset_index(drop=True)
    if "class" not in frame.columns:
        frame = frame.rename_axis("class").reset_index()
    splits = [
        c for c in frame.columns if c != "class" and c != "total" and pd.api.types.is_numeric_dtype(frame[c])
    ]
    used = [c for c in splits if frame[c].sum() > 0]
    splits = used or splits[:1]  # An empty split (no test images) gets no legend entry.
    long = frame.melt(id_vars=["class"], value_vars=splits, var_name="split", value_name="count")
    return long[["class", "split", "count"]].reset_index(drop=True)


def trace_points(figure: go.Figure) -> int:
    """Number of finite y values over all traces (how much a live chart shows)."""
    total = 0
    for trace in figure.data:
        values = pd.to_numeric(pd.Series(list(trace.y or [])), errors="coerce")
        total += int(np.isfinite(values).sum())
    return total


def block_map_figure(table: pd.DataFrame) -> go.Figure:
    """Parameters per backbone block, coloured by whether the freeze plan trains the block.

    Args:
        table: ``blockmap.plan_table`` output: ``block``, ``params`` and ``trains`` columns,
            input block first.

    Returns:
        A bar figure with traces ``trains`` and ``frozen``.
    """
    figure = go.Figure()
    blocks = list(table["block"]) if "block" in table else []
    trains = list(table["trains"]) if "trains" in table else [False] * len(blocks)
    params = list(table["params"]) if "params" in table else [0] * len(blocks)
    for name, wanted, color in (("trains", True, VAL_COLOR), ("frozen", False, "#9ecae1")):
        figure.add_trace(
            go.Bar(
                x=blocks,
                y=[p if bool(t) == wanted else 0 for p, t in zip(params, trains, strict=True)],
                name=name,
                marker_color=color,
                hovertemplate="%{x}<br>%{y:,} parameters<extra>" + name + "</extra>",
            )
        )
    figure.update_layout(barmode="stack")
    apply_layout(figure, "Blocks from input (left) to output (right)", "block", "parameters", height=300)
    figure.update_xaxes(type="category", tickangle=-45)
    return figure


def accuracy_vs_parameters_figure(table: pd.DataFrame) -> go.Figure:
    """Validation accuracy against trainable parameters, one point per run, one trace per strategy.

    Args:
        table: Rows with ``trainable_params``, ``val_accuracy`` and ``strategy`` columns, and
            optionally ``nickname`` and ``backbone`` for the hover text (``classroom.class_table``).
            Rows missing either number are left out.

    Returns:
        A scatter figure with a log x axis; traces are named after the strategies.
    """
    figure = go.Figure()
    needed = {"trainable_params", "val_accuracy", "strategy"}
    frame = table if needed <= set(table.columns) else pd.DataFrame(columns=sorted(needed))
    frame = frame.assign(
        trainable_params=_finite(frame["trainable_params"]), val_accuracy=_finite(frame["val_accuracy"])
    ).dropna(subset=["trainable_params", "val_accuracy"])
    frame = frame[frame["trainable_params"] > 0]  # A log axis cannot place 0.
    for strategy, part in frame.groupby("strategy", sort=True):
        labels = [
            f"{nickname} · {backbone}"
            for nickname, backbone in zip(
                part.get("nickname", pd.Series([""] * len(part))),
                part.get("backbone", pd.Series([""] * len(part))),
                strict=True,
            )
        ]
        figure.add_trace(
            go.Scatter(
                x=_values(part["trainable_params"]),
                y=_values(part["val_accuracy"]),
                mode="markers",
                name=strategies.label(str(strategy)),
                marker={"size": 11, "color": strategies.color(str(strategy))},
                text=labels,
                hovertemplate="%{text}<br>%{x:,} trainable parameters<br>accuracy %{y:.1%}<extra></extra>",
            )
        )
    apply_layout(figure, "Validation accuracy against trainable parameters", "trainable parameters (log scale)",
            "validation accuracy")
    figure.update_xaxes(type="log")
    figure.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return figure
