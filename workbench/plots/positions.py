"""Per-head quantities along the sequence (β_t, ‖u_t‖, …), with the position being looked at marked."""

from __future__ import annotations

from typing import Optional

import plotly.graph_objects as go
import torch

from .recall import head_color


def per_head_over_positions(values: torch.Tensor, position: Optional[int] = None, title: str = "",
                            yaxis_title: str = "", highlight: Optional[int] = None) -> go.Figure:
    """One line per head of ``values: [pos, head]``, each head in its own colour (:func:`head_color`, the
    same in every per-head chart); ``highlight`` draws that head's line bold and the others faint; a dashed
    line at ``position`` if given."""
    if values.dim() != 2:
        raise ValueError(f"values must be [pos, head], got {tuple(values.shape)}")
    v = values.detach().float().cpu()
    fig = go.Figure()
    for h in range(v.shape[1]):
        faint = highlight is not None and h != highlight
        fig.add_trace(go.Scatter(x=list(range(v.shape[0])), y=v[:, h].tolist(), mode="lines+markers", marker_size=4,
                                 name=f"head {h}", opacity=0.35 if faint else 1.0,
                                 line=dict(color=head_color(h), width=1 if faint else 2.5)))
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), xaxis_title="pos", yaxis_title=yaxis_title,
                      margin=dict(l=40, r=10, t=40, b=40))
    return mark_position(fig, position)


def mark_position(fig: go.Figure, position: Optional[int], label: str = "t") -> go.Figure:
    """Add a dashed vertical line at ``position``, labelled ``label = position`` (nothing if None); returns the
    figure."""
    if position is not None:
        fig.add_vline(x=position, line_dash="dash", line_color="grey", annotation_text=f"{label} = {position}",
                      annotation_position="top")
    return fig
