"""Plots of the associative-recall probe (see :mod:`workbench.analysis.recall_probe`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

_LABELS = {"lag": "lag (pos − value pos)", "n_stored": "pairs stored", "key_overlap": "max |cos| with other keys"}


def probe_curve(agg: pd.DataFrame, by: str, metric: str = "fidelity", title: str = "") -> go.Figure:
    """One line per head of ``metric`` against ``by``, from :func:`workbench.analysis.aggregate`."""
    for col in ("head", by, metric):
        if col not in agg:
            raise ValueError(f"the table has no column {col!r}; pass aggregate(df, {by!r})")
    fig = go.Figure()
    for head, part in agg.sort_values(by).groupby("head"):
        fig.add_trace(go.Scatter(x=part[by].tolist(), y=part[metric].tolist(), mode="lines+markers", name=f"head {head}"))
    fig.update_layout(title=title or f"{metric} by {by}", xaxis_title=_LABELS.get(by, by), yaxis_title=metric)
    return fig
