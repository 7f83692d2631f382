"""Pictures of fast-weight matrices: the matrix itself, its write, and its spectrum over positions."""

from __future__ import annotations

from typing import Optional

import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots


def fast_weight_heatmap(W: Float[torch.Tensor, "d_k d_v"], title: str = "W_t",
                        axes: tuple[str, str] = ("d_k", "d_v"), clip: Optional[float] = None) -> go.Figure:
    """One head's fast-weight matrix ``[d_k, d_v]`` (rows: key dims, columns: value dims), or any 2-D view of
    a state whose ``axes`` (row, column) are named otherwise (e.g. a slice of a third-order state). The colour
    scale is symmetric, red for positive and blue for negative entries, up to max |W|; ``clip`` (a quantile in
    (0, 1], e.g. 0.99) ends it at that quantile of |W| instead, so that one large column does not wash out the
    rest (larger entries take the end colours)."""
    if W.dim() != 2:
        raise ValueError(f"W must be one head's [d_k, d_v] matrix, got {tuple(W.shape)}")
    if clip is not None and not (isinstance(clip, (int, float)) and 0 < clip <= 1):
        raise ValueError(f"clip must be a quantile in (0, 1], got {clip!r}")
    rows, cols = axes
    w = W.detach().float().cpu()
    lim = float(w.abs().max() if clip is None else w.abs().flatten().quantile(clip)) or 1.0
    bar = "value" if clip is None else f"value (clipped at the {clip:.0%} quantile of |W|)"
    fig = go.Figure(go.Heatmap(z=w.numpy(), colorscale="RdBu", reversescale=True, zmin=-lim, zmax=lim, zmid=0,
                               colorbar=dict(title=dict(text=bar, side="right")),
                               hovertemplate=f"{rows} %{{y}}<br>{cols} %{{x}}<br>%{{z:.4f}}<extra></extra>"))
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), xaxis_title=cols, yaxis_title=rows,
                      yaxis_autorange="reversed", margin=dict(l=40, r=10, t=40, b=40))
    return fig


def state_and_update(W_before: Float[torch.Tensor, "d_k d_v"], W_after: Float[torch.Tensor, "d_k d_v"], title: str = "") -> go.Figure:
    """Side by side: W_{t-1}, the write W_t − W_{t-1}, and W_t, on one colour scale each."""
    panels = [("W_{t-1}", W_before), ("write W_t − W_{t-1}", W_after - W_before), ("W_t", W_after)]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[0] for p in panels], horizontal_spacing=0.06)
    for i, (_, m) in enumerate(panels):
        m = m.detach().float().cpu()
        lim = float(m.abs().max()) or 1.0
        fig.add_trace(go.Heatmap(z=m.numpy(), colorscale="RdBu", reversescale=True, zmin=-lim, zmax=lim,
                                 showscale=False), row=1, col=i + 1)
        fig.update_yaxes(autorange="reversed", row=1, col=i + 1)
    fig.update_layout(title=title, margin=dict(l=30, r=10, t=60, b=30))
    return fig


def singular_values_over_positions(W: Float[torch.Tensor, "n_positions d_k d_v"], positions=None, top: int = 8,
                                   title: str = "singular values of W_t") -> go.Figure:
    """Lines of the ``top`` singular values of one head's W_t, for ``W: [n_positions, d_k, d_v]``."""
    if W.dim() != 3:
        raise ValueError(f"W must be [n_positions, d_k, d_v], got {tuple(W.shape)}")
    x = list(range(W.shape[0])) if positions is None else list(positions)
    if len(x) != W.shape[0]:
        raise ValueError(f"got {len(x)} positions for {W.shape[0]} matrices")
    s = torch.linalg.svdvals(W.detach().double().cpu())  # [n_positions, min(d_k, d_v)]
    n = min(top, s.shape[1])
    shades = sample_colorscale("Viridis", [i / max(n - 1, 1) * 0.85 for i in range(n)])  # not the heads' colours
    fig = go.Figure([go.Scatter(x=x, y=s[:, i].tolist(), mode="lines", name=f"σ{i + 1}", line=dict(color=shades[i]))
                     for i in range(n)])
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), xaxis_title="pos", yaxis_title="singular value")
    return fig
