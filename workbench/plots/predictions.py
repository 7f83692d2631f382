"""What the model predicts along a sequence: the probability of the true next token at every position, with
the task's key, value and query positions marked, and how an edit of the memory changes it."""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import plotly.graph_objects as go

from .positions import mark_position

ROLE_STYLE = {  # role → (marker symbol, colour, legend name)
    "key": ("square", "#1f77b4", "key"),
    "value": ("diamond", "#ff7f0e", "value"),
    "query": ("star", "#2ca02c", "query ★ (scored)"),
    "scored": ("star", "#2ca02c", "scored ★"),
}
WRONG = "#d62728"


def _need(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}; pass {what}")


def next_token_probability(table: pd.DataFrame, roles: Sequence[str], title: str = "") -> go.Figure:
    """p(true next token) per position (a grey line) from :func:`workbench.app_support.predictions.predictions`,
    with markers at the positions whose ``roles`` (one per position: key, value, query, scored or "") are set;
    a scored position the model gets wrong is drawn in red with an ✗ in its hover."""
    _need(table, ["pos", "p_next", "correct"], "predictions(model, tokens, scored)")
    if len(roles) != len(table):
        raise ValueError(f"got {len(roles)} roles for {len(table)} positions")
    fig = go.Figure(go.Scatter(x=table["pos"].tolist(), y=table["p_next"].tolist(), mode="lines",
                               line=dict(color="lightgrey"), name="p(next token)",
                               hovertemplate="pos %{x}<br>p(next token) %{y:.3f}<extra></extra>"))
    df = table.assign(role=list(roles))
    for role, (symbol, color, name) in ROLE_STYLE.items():
        part = df[(df.role == role) & df.p_next.notna()]
        if part.empty:
            continue
        right = part["correct"].fillna(False).astype(bool)
        colors = [color if ok or role in ("key", "value") else WRONG for ok in right]
        fig.add_trace(go.Scatter(x=part["pos"].tolist(), y=part["p_next"].tolist(), mode="markers", name=name,
                                 marker=dict(symbol=symbol, size=11 if symbol == "star" else 8, color=colors),
                                 customdata=["✓" if ok else "✗" for ok in right],
                                 hovertemplate=f"{role} at pos %{{x}}<br>p(next token) %{{y:.3f}}<br>top-1 right: "
                                               "%{customdata}<extra></extra>"))
    fig.update_layout(title=title or "p(next token) along the sequence", xaxis_title="pos",
                      yaxis_title="p(true next token)", yaxis_range=[-0.03, 1.03], margin=dict(l=50, r=10, t=40, b=40))
    return fig


def prediction_change(table: pd.DataFrame, scored: Sequence[int] = (), position: Optional[int] = None,
                      title: str = "") -> go.Figure:
    """p(true next token) per position without and with an edit, from an ``EditOutcome.positions`` table; the
    scored positions are stars (green where the edited model's top-1 is right, red where it is wrong) and the
    edited position is a dashed line."""
    _need(table, ["pos", "next_token", "top_after", "p_next_before", "p_next_after"], "EditOutcome.positions")
    fig = go.Figure([
        go.Scatter(x=table["pos"].tolist(), y=table["p_next_before"].tolist(), mode="lines", name="without the edit",
                   line=dict(color="grey", dash="dot")),
        go.Scatter(x=table["pos"].tolist(), y=table["p_next_after"].tolist(), mode="lines", name="with the edit",
                   line=dict(color="#1f77b4")),
    ])
    part = table[table["pos"].isin(list(scored)) & table["next_token"].notna()]
    if not part.empty:
        right = (part["top_after"] == part["next_token"]).astype(bool).tolist()
        fig.add_trace(go.Scatter(x=part["pos"].tolist(), y=part["p_next_after"].tolist(), mode="markers",
                                 name="scored ★ (green: right after the edit, red: wrong)",
                                 marker=dict(symbol="star", size=11, color=["#2ca02c" if ok else WRONG for ok in right]),
                                 customdata=["✓" if ok else "✗" for ok in right],
                                 hovertemplate="scored pos %{x}<br>p(next token) %{y:.3f}<br>top-1 right: "
                                               "%{customdata}<extra></extra>"))
    fig.update_layout(title=title or "p(true next token) without and with the edit", xaxis_title="pos",
                      yaxis_title="p(true next token)", yaxis_range=[-0.03, 1.03], margin=dict(l=50, r=10, t=40, b=40))
    return mark_position(fig, position)
