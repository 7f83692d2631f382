"""The per-(source, target) effect of path knockouts as a heatmap (mamba-knockout's view, for any memory)."""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import plotly.graph_objects as go


def knockout_heatmap(df: pd.DataFrame, labels: Optional[Sequence[str]] = None, title: str = "") -> go.Figure:
    """Effect on the metric (knocked − clean) of blocking what source position s writes from being read at target
    position t, from :func:`workbench.analysis.knockout_effects`: sources across, targets down, a diverging scale
    centred on 0; cells with t < s (no path) are blank. ``labels``: one per position for the axes."""
    missing = [c for c in ("source", "target", "effect") if c not in df.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}; pass knockout_effects(...)")
    grid = df.pivot_table(index="target", columns="source", values="effect", aggfunc="mean").sort_index()
    grid = grid.reindex(sorted(grid.columns), axis=1)
    name = (lambda p: f"{p}: {labels[p]}") if labels is not None else str  # noqa: E731
    z = [[None if pd.isna(v) else float(v) for v in row] for row in grid.to_numpy()]
    peak = max([abs(v) for row in z for v in row if v is not None] or [1.0]) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=[name(int(s)) for s in grid.columns], y=[name(int(t)) for t in grid.index],
                               colorscale="RdBu", zmid=0, zmin=-peak, zmax=peak, colorbar=dict(title="effect"),
                               hovertemplate="source %{x}<br>target %{y}<br>effect %{z:.4f}<extra></extra>"))
    where = ""
    if {"layer", "head"} <= set(df.columns) and not df.empty:
        where = f" (layer {df['layer'].iloc[0]}, head {df['head'].iloc[0]}, route {df['route'].iloc[0]})"
    fig.update_layout(title=title or f"Path knockout: effect on the metric{where}", xaxis_title="source pos",
                      yaxis_title="target pos", yaxis_autorange="reversed", margin=dict(l=60, r=10, t=40, b=50))
    return fig
