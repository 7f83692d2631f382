"""Steering plots: the metric and held-out perplexity against strength (one line per kind of steering, e.g.
residual vs state side by side), and the next-token distribution with and without steering."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def steering_sweep_plot(df: pd.DataFrame, metric_name: str = "metric", title: str = "") -> go.Figure:
    """Two panels from :func:`workbench.analysis.steering_sweep`: the metric (± its standard error over the
    prompts) and the held-out perplexity against the steering strength, one line per steering."""
    missing = [c for c in ("steering", "strength", "metric", "perplexity") if c not in df.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}; pass steering_sweep(...)")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(metric_name, "held-out perplexity"))
    for i, (name, part) in enumerate(df.groupby("steering", sort=False)):
        part = part.sort_values("strength")
        color = PALETTE[i % len(PALETTE)]
        sem = part["metric_sem"].fillna(0).tolist() if "metric_sem" in part else None
        fig.add_trace(go.Scatter(x=part["strength"].tolist(), y=part["metric"].tolist(), mode="lines+markers",
                                 name=name, legendgroup=name, line=dict(color=color),
                                 error_y=dict(type="data", array=sem, visible=sem is not None)), row=1, col=1)
        fig.add_trace(go.Scatter(x=part["strength"].tolist(), y=part["perplexity"].tolist(), mode="lines+markers",
                                 name=name, legendgroup=name, showlegend=False, line=dict(color=color)), row=1, col=2)
    fig.update_xaxes(title_text="strength")
    fig.update_layout(title=title or "Steering strength against the metric and held-out perplexity",
                      margin=dict(l=50, r=10, t=60, b=40))
    return fig


def next_token_shift(table: pd.DataFrame, title: str = "") -> go.Figure:
    """Grouped bars of the next-token probabilities in ``table`` (a ``token`` column and one probability column
    per run, e.g. clean / residual / state), one group per token."""
    if "token" not in table.columns or len(table.columns) < 2:
        raise ValueError("the table needs a 'token' column and at least one probability column")
    fig = go.Figure()
    for i, col in enumerate(c for c in table.columns if c != "token"):
        fig.add_trace(go.Bar(x=table["token"].astype(str).tolist(), y=table[col].tolist(), name=str(col),
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(barmode="group", title=title or "Next-token distribution with and without steering",
                      xaxis_title="token", xaxis_type="category", yaxis_title="p(next token)", margin=dict(l=50, r=10, t=40, b=40))
    return fig
