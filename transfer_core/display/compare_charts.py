"""Plotly figures for the Compare, Explore and Export pages: frame in, figure out.

Pure functions (no Streamlit, no TensorFlow), in the style of
:mod:`transfer_core.display.run_charts`: every figure has a title, labelled axes and a
fixed height, and an empty frame draws an empty chart instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from transfer_core import strategies
from transfer_core.display.chart_layout import apply_layout

__all__ = [
    "STRATEGY_COLORS",
    "clickable_confusion_figure",
    "embedding_figure",
    "lr_finder_figure",
    "overlay_curves_figure",
]

# One colour per strategy, the same on every chart of the Compare page; runs are drawn by label.
STRATEGY_COLORS = strategies.color_by_label()
_DASHES = ("solid", "dash", "dot", "dashdot")
# Plotly's D3 palette: ten easily told-apart colours for classes.
_CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")
_OTHER_COLORS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_METRICS = {
    "val_accuracy": "validation accuracy",
    "val_loss": "validation loss",
    "accuracy": "training accuracy",
    "loss": "training loss",
}
_AXES = {"epoch": "epoch", "elapsed": "wall-clock seconds since the run started"}
_HEIGHT = 340  # A little taller than a run's charts: several runs share the plot.


def _color(label: str, index: int) -> str:
    for name, color in STRATEGY_COLORS.items():
        if label == name:
            return color
    for name, color in STRATEGY_COLORS.items():
        if label.startswith(name + " ("):
            return color
    return _OTHER_COLORS[index % len(_OTHER_COLORS)]


def overlay_curves_figure(curves: pd.DataFrame, metric: str = "val_accuracy", x: str = "epoch") -> go.Figure:
    """One line per run of ``metric`` against epoch or wall-clock seconds.

    Args:
        curves: ``compare.curves_frame`` output (``run_id``, ``label``, ``epoch``,
            ``elapsed``, ``stage`` and metric columns).
        metric: ``val_accuracy``, ``val_loss``, ``accuracy`` or ``loss``.
        x: ``"epoch"`` or ``"elapsed"``.

    Returns:
        A figure with one trace per run, named by its label. Where a run switches
        to fine-tuning its marker changes to a diamond.

    Raises:
        ValueError: Unknown ``metric`` or ``x``.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}. Received: metric={metric!r}")
    if x not in _AXES:
        raise ValueError(f'x must be "epoch" or "elapsed". Received: x={x!r}')
    figure = go.Figure()
    if len(curves):
        for index, (run_id, part) in enumerate(curves.groupby("run_id", sort=False)):
            label = str(part["label"].iloc[0])
            values = pd.to_numeric(part[metric], errors="coerce")
            stages = list(part["stage"]) if "stage" in part else [""] * len(part)
            figure.add_trace(
                go.Scatter(
                    x=list(pd.to_numeric(part[x], errors="coerce")),
                    y=[v if np.isfinite(v) else None for v in values],
                    mode="lines+markers",
                    name=label,
                    # Runs often share their first epochs exactly (same head, same seed): a different dash
                    # and marker size per run keeps the line underneath visible.
                    line={"color": _color(label, index), "dash": _DASHES[index % len(_DASHES)],
                          "width": 3.5 - 0.5 * (index % 3)},
                    marker={"symbol": ["diamond" if s == "fine_tune" else "circle" for s in stages],
                            "size": 11 - 2 * (index % 3)},
                    customdata=[[run_id, s] for s in stages],
                    hovertemplate=f"{label}<br>{_AXES[x]} %{{x:.4g}}<br>{_METRICS[metric]} %{{y:.3f}}"
                    "<br>stage %{customdata[1]}<extra></extra>",
                )
            )
    title = f"{_METRICS[metric].capitalize()} by {'epoch' if x == 'epoch' else 'time'}"
    apply_layout(figure, title, _AXES[x], _METRICS[metric], height=_HEIGHT)
    if metric.endswith("accuracy"):
        figure.update_yaxes(range=[0, 1.02], tickformat=".0%")
    figure.update_xaxes(rangemode="tozero")
    if x == "epoch" and len(curves) and pd.to_numeric(curves["epoch"], errors="coerce").max() <= 20:
        figure.update_xaxes(dtick=1)
    return figure


def embedding_figure(frame: pd.DataFrame, title: str, class_order: Sequence[str] | None = None) -> go.Figure:
    """A 2-D scatter of embedded images, one colour per class.

    Args:
        frame: Rows with ``x``, ``y``, ``label`` and optionally ``path``
            (one model and one method of ``embeddings.EmbeddingResult.frame``).
        title: Chart title.
        class_order: Classes in legend order (all classes of the data set).

    Returns:
        A figure with one trace per class.
    """
    figure = go.Figure()
    if class_order is not None:
        labels = list(class_order)
    else:
        labels = sorted(frame["label"].unique()) if len(frame) else []
    for index, label in enumerate(labels):
        part = frame[frame["label"] == label] if len(frame) else frame
        figure.add_trace(
            go.Scatter(
                x=list(part["x"]) if len(part) else [],
                y=list(part["y"]) if len(part) else [],
                mode="markers",
                name=str(label),
                marker={"size": 8, "opacity": 0.8, "color": _CLASS_COLORS[index % len(_CLASS_COLORS)]},
                text=list(part["path"]) if "path" in part and len(part) else None,
                hovertemplate=f"{label}<br>%{{text}}<extra></extra>" if "path" in part else None,
            )
        )
    apply_layout(figure, title, "component 1", "component 2", height=380)
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    return figure


def lr_finder_figure(frame: pd.DataFrame, suggested_lr: float | None = None,
                     min_loss_lr: float | None = None) -> go.Figure:
    """Loss against learning rate (log scale) from a range test.

    Args:
        frame: ``lr``, ``loss`` and ``smoothed_loss`` columns.
        suggested_lr: Marked with a green vertical line.
        min_loss_lr: Marked with a dotted grey vertical line.

    Returns:
        A figure with ``loss per batch`` and ``smoothed`` traces, plus one trace per marked learning rate.
    """
    figure = go.Figure()
    lrs = list(frame["lr"]) if "lr" in frame else []
    figure.add_trace(go.Scatter(x=lrs, y=list(frame["loss"]) if "loss" in frame else [], mode="lines",
                                name="loss per batch", line={"color": "#9ecae1", "width": 1}))
    figure.add_trace(go.Scatter(x=lrs, y=list(frame["smoothed_loss"]) if "smoothed_loss" in frame else [],
                                mode="lines", name="smoothed", line={"color": "#1f77b4", "width": 2.5}))
    top = 1.0
    if "smoothed_loss" in frame and len(frame):
        finite = pd.to_numeric(frame["smoothed_loss"], errors="coerce")
        finite = finite[np.isfinite(finite)]
        if len(finite):
            # Keep the explosion from flattening the interesting part of the curve.
            top = max(min(float(finite.max()), float(finite.iloc[0]) * 1.6), float(finite.min()) * 1.1)
    # Vertical markers as two-point traces: layout shapes need log-unit coordinates on a log axis.
    for value, name, color, dash in ((suggested_lr, "suggested", "#2ca02c", "solid"),
                                     (min_loss_lr, "lowest loss", "gray", "dot")):
        if value:
            figure.add_trace(go.Scatter(x=[value, value], y=[0, top], mode="lines", name=f"{name} {value:.1e}",
                                        line={"color": color, "dash": dash, "width": 2}))
    apply_layout(figure, "Learning-rate finder", "learning rate (log scale)", "training loss", height=_HEIGHT)
    figure.update_xaxes(type="log")
    figure.update_yaxes(range=[0, top * 1.05])
    return figure


def clickable_confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> go.Figure:
    """A confusion matrix drawn as one square marker per cell, so a click selects a cell.

    Plotly heatmap cells are not selectable in Streamlit; scatter points are.
    Each point's ``customdata`` is ``[true_index, predicted_index, count]``.

    Args:
        matrix: Square counts, rows = true class, columns = predicted class.
        class_names: Names in label order.

    Returns:
        A figure with one scatter trace of ``n * n`` points.

    Raises:
        ValueError: The matrix is not square or does not match ``class_names``.
    """
    counts = np.asarray(matrix, dtype=float)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(class_names):
        raise ValueError(
            "matrix must be square with one row per class. "
            f"Received: matrix shape={counts.shape}, {len(class_names)} class names"
        )
    n = len(class_names)
    names = [str(c) for c in class_names]
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    values = counts[rows, cols]
    totals = counts.sum(axis=1)
    shares = np.divide(values, totals[rows], out=np.zeros_like(values), where=totals[rows] > 0)
    side = max(300, min(720, 70 * n + 160))
    marker_size = max(18, min(90, int((side - 160) / max(n, 1) * 0.85)))
    figure = go.Figure(
        go.Scatter(
            x=[names[c] for c in cols],
            y=[names[r] for r in rows],
            mode="markers+text",
            marker={
                "symbol": "square",
                "size": marker_size,
                "color": shares,
                "colorscale": [[0, "#f7fbff"], [1, "#08519c"]],
                "cmin": 0,
                "cmax": 1,
                "line": {"width": [3 if r != c and v > 0 else 1 for r, c, v in zip(rows, cols, values, strict=True)],
                         "color": ["#d62728" if r != c and v > 0 else "#c6dbef"
                                   for r, c, v in zip(rows, cols, values, strict=True)]},
            },
            text=[str(int(v)) for v in values],
            textfont={"color": ["white" if s > 0.55 else "black" for s in shares]},
            customdata=np.stack([rows, cols, values], axis=1).astype(int).tolist(),
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text} image(s) - click to see them<extra></extra>",
            showlegend=False,
        )
    )
    apply_layout(figure, "Confusion matrix (validation) - click a cell", "predicted class", "true class", height=side)
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=names, showgrid=False)
    figure.update_yaxes(type="category", categoryorder="array", categoryarray=names[::-1], showgrid=False)
    figure.update_layout(clickmode="event+select", dragmode=False)
    return figure
