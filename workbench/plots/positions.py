"""Per-head quantities along the sequence (β_t, ‖u_t‖, …), with the position being looked at marked."""

from __future__ import annotations

from typing import Optional

import plotly.graph_objects as go
import torch


def per_head_over_positions(values: torch.Tensor, position: Optional[int] = None, title: str = "",
                            yaxis_title: str = "") -> go.Figure:
    """One line per head of ``values: [pos, head]``; a dashed line at ``position`` if given."""
    if values.dim() != 2:
        raise ValueError(f"values must be [pos, head], got {tuple(values.shape)}")
    v = values.detach().float().cpu()
    fig = go.Figure([go.Scatter(x=list(range(v.shape[0])), y=v[:, h].tolist(), mode="lines+markers",
                                marker_size=4, name=f"head {h}") for h in range(v.shape[1])])
    fig.update_layout(title=title, xaxis_title="pos", yaxis_title=yaxis_title, margin=dict(l=40, r=10, t=40, b=40))
    return mark_position(fig, position)


def mark_position(fig: go.Figure, position: Optional[int]) -> go.Figure:
    """Add a dashed vertical line at ``position`` (nothing if None); returns the figure."""
    if position is not None:
        fig.add_vline(x=position, line_dash="dash", line_color="grey")
    return fig
