"""Recitation of models side by side: one bar per model in every group (repetition count, prefix length,
offset, or sequence), from :func:`workbench.analysis.memorization.summarize` tables with a ``model`` column."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

RECITATION_METRICS = ("strict_acc", "loose_acc", "mean_norm_distance")


def recitation_bars(by_group: pd.DataFrame, group: str = "repetitions", metric: str = "strict_acc",
                    title: str = "") -> go.Figure:
    """Grouped bars of ``metric`` by ``group``, one trace per ``model`` (in the table's order)."""
    if not isinstance(by_group, pd.DataFrame):
        raise ValueError(f"expected a DataFrame from summarize(...), got {type(by_group).__name__}")
    if metric not in RECITATION_METRICS:
        raise ValueError(f"metric must be one of {RECITATION_METRICS}, got {metric!r}")
    missing = [c for c in ("model", group, metric) if c not in by_group.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}; pass summarize(table, [{group!r}]) with a 'model' column")
    fig = go.Figure()
    for model, g in by_group.groupby("model", sort=False):
        fig.add_trace(go.Bar(x=[str(v) for v in g[group]], y=g[metric].tolist(), name=str(model),
                             hovertemplate=f"{group} %{{x}}<br>{metric} %{{y:.3f}}<extra>{model}</extra>"))
    bounded = metric != "mean_norm_distance" or by_group[metric].max() <= 1
    fig.update_layout(barmode="group", title=title or f"{metric} by {group}", xaxis_title=group, yaxis_title=metric,
                      yaxis_range=[0, 1.02] if bounded else None, xaxis_type="category",
                      margin=dict(l=50, r=10, t=40, b=40))
    return fig
