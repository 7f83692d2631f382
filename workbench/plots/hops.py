"""A read that proceeds in hops (the Fast Weight Memory's nʲ = LN(F ×₁ nʲ⁻¹ ×₂ e_j)): one row per hop."""

from __future__ import annotations

from typing import Optional, Sequence

import plotly.graph_objects as go
import torch
from jaxtyping import Float


def hop_heatmap(values: Float[torch.Tensor, "hop n"], columns: Optional[Sequence[str]] = None, title: str = "",
                xaxis_title: str = "", signed: Optional[bool] = None) -> go.Figure:
    """Heatmap of a per-hop quantity ``values: [hop, n]`` (rows ``hop 1 …``; columns labelled by ``columns``,
    e.g. token positions or vocabulary entries). Signed values get a diverging scale centred on 0."""
    if values.dim() != 2:
        raise ValueError(f"values must be [hop, n], got {tuple(values.shape)}")
    v = values.detach().float().cpu()
    cols = [str(i) for i in range(v.shape[1])] if columns is None else [str(c) for c in columns]
    if len(cols) != v.shape[1]:
        raise ValueError(f"got {len(cols)} column labels for {v.shape[1]} columns")
    signed = bool((v < 0).any()) if signed is None else signed
    lim = float(v.abs().max()) or 1.0
    rows = [f"hop {j + 1}" for j in range(v.shape[0])]
    fig = go.Figure(go.Heatmap(z=v.numpy(), x=cols, y=rows, colorscale="RdBu" if signed else "Blues",
                               reversescale=signed, zmin=-lim if signed else 0.0, zmax=lim,
                               zmid=0.0 if signed else None,
                               hovertemplate="%{y}<br>%{x}<br>%{z:.4f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=xaxis_title, yaxis_title="hop", yaxis_autorange="reversed",
                      xaxis_type="category", margin=dict(l=40, r=10, t=40, b=40))
    return fig
