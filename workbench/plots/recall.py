"""Plots of the associative-recall probe (see :mod:`workbench.analysis.recall_probe`)."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

_LABELS = {"lag": "lag (pos − value pos)", "n_stored": "pairs stored", "key_overlap": "max |cos| with other keys"}


def head_color(head: int) -> str:
    """The colour of head ``head`` in every per-head chart."""
    return qualitative.Plotly[int(head) % len(qualitative.Plotly)]


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def probe_curve(agg: pd.DataFrame, by: str, metric: str = "fidelity", title: str = "",
                control: Optional[pd.DataFrame] = None) -> go.Figure:
    """One line per head of ``metric`` against ``by``, from :func:`workbench.analysis.aggregate`. Where the
    table has ``<metric>_sem`` (the app's mean over samples), a band of ± one standard error; ``control``
    (the same table for the control pairs): dotted lines in the heads' colours."""
    for name, table in (("the table", agg), ("the control table", control)):
        for col in ("head", by, metric):
            if table is not None and col not in table:
                raise ValueError(f"{name} has no column {col!r}; pass aggregate(df, {by!r})")
    fig = go.Figure()
    sem = f"{metric}_sem"
    for head, part in agg.sort_values(by).groupby("head"):
        color, name = head_color(head), f"head {head}"
        if sem in part and part[sem].notna().any():
            x = part[by].tolist()
            lo = (part[metric] - part[sem].fillna(0)).tolist()
            hi = (part[metric] + part[sem].fillna(0)).tolist()
            fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=_rgba(color, 0.18),
                                     line=dict(width=0), hoverinfo="skip", showlegend=False, legendgroup=name,
                                     name=f"{name} ± s.e."))
        fig.add_trace(go.Scatter(x=part[by].tolist(), y=part[metric].tolist(), mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color)))
    if control is not None:
        for head, part in control.sort_values(by).groupby("head"):
            fig.add_trace(go.Scatter(x=part[by].tolist(), y=part[metric].tolist(), mode="lines",
                                     name=f"head {head} control", legendgroup=f"head {head}",
                                     line=dict(color=head_color(head), dash="dot")))
    fig.update_layout(title=title or f"{metric} by {by}", xaxis_title=_LABELS.get(by, by), yaxis_title=metric)
    return fig
