"""Attention-style heatmaps: softmax patterns and exact effective attention (signed)."""

from __future__ import annotations

from typing import Optional, Sequence

import plotly.graph_objects as go
import torch


def _labels(tokens: Optional[Sequence[str]], n: int, start: int = 0) -> list[str]:
    if tokens is None:
        return [str(start + i) for i in range(n)]
    if len(tokens) != n:
        raise ValueError(f"got {len(tokens)} token labels for {n} positions")
    return [f"{start + i}:{t}" for i, t in enumerate(tokens)]


def attention_heatmap(
    A: torch.Tensor,  # [pos, pos] (query, key) for one head
    tokens: Optional[Sequence[str]] = None,
    title: str = "",
    signed: Optional[bool] = None,
    start: int = 0,
    colorbar_title: str = "weight",
) -> go.Figure:
    """Heatmap of one head's (effective) attention; signed weights get a diverging colour scale, red for
    positive and blue for negative weights (a value that is subtracted). ``A`` may be a window of the
    sequence starting at position ``start`` (axis labels ``pos:token``, hover with the token strings)."""
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be one head's [pos, pos] matrix, got {tuple(A.shape)}")
    a = A.detach().float().cpu()
    signed = bool((a < 0).any()) if signed is None else signed
    labels = _labels(tokens, a.shape[0], start)
    lim = float(a.abs().max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=a.numpy(), x=labels, y=labels,
            colorscale="RdBu" if signed else "Blues", reversescale=signed,  # reversed RdBu: red > 0 > blue
            zmin=-lim if signed else 0.0, zmax=lim, zmid=0.0 if signed else None,
            colorbar=dict(title=dict(text=colorbar_title + (" (red +, blue −)" if signed else ""), side="right")),
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title="key pos", yaxis_title="query pos", yaxis_autorange="reversed",
                      xaxis_type="category", yaxis_type="category", margin=dict(l=40, r=10, t=40, b=40))
    return fig


def head_scores_bar(scores: torch.Tensor, name: str = "score", layer_names: Optional[Sequence[str]] = None) -> go.Figure:
    """Grouped bars of a per-head score: ``scores`` is ``[layer, head]``."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be [layer, head], got {tuple(scores.shape)}")
    names = layer_names or [f"layer {i}" for i in range(scores.shape[0])]
    fig = go.Figure([go.Bar(name=n, x=[f"head {h}" for h in range(scores.shape[1])], y=row.tolist())
                     for n, row in zip(names, scores.detach().float().cpu())])
    fig.update_layout(barmode="group", yaxis_title=name, title=name)
    return fig
