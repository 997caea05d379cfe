"""The layout every chart shares, so run, compare and class figures look alike.

A left-aligned title, labelled axes, a fixed height (a page does not jump while a chart fills in),
the legend in one row above the plot.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

__all__ = ["DEFAULT_HEIGHT", "apply_layout", "layout_dict"]

DEFAULT_HEIGHT = 320


def layout_dict(title: str, x_title: str, y_title: str, height: int = DEFAULT_HEIGHT) -> dict[str, Any]:
    """The shared layout as a plain dict, for building a figure in one go (``go.Figure({"layout": ...})``).

    Args:
        title: The chart's title.
        x_title: The x axis' title.
        y_title: The y axis' title.
        height: Pixels.

    Returns:
        Plotly layout properties.
    """
    return {
        "title": {"text": title, "x": 0.0, "xanchor": "left"},
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "height": height,
        "margin": {"l": 55, "r": 20, "t": 60, "b": 45},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        "template": "plotly_white",
    }


def apply_layout(figure: go.Figure, title: str, x_title: str, y_title: str,
                 height: int = DEFAULT_HEIGHT) -> go.Figure:
    """Gives ``figure`` the shared layout (see :func:`layout_dict`) and returns it."""
    figure.update_layout(**layout_dict(title, x_title, y_title, height))
    return figure
