"""Sparse dictionaries: how often each atom is used, and reconstruction against sparsity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go


def atom_usage_histogram(usage: pd.DataFrame, title: str = "") -> go.Figure:
    """Histogram of atoms by firing frequency (log₁₀ of the fraction of writes/vectors on which each is active),
    from :func:`workbench.analysis.dictionaries.atom_usage`; dead atoms (never active) counted in the title."""
    if "frequency" not in usage:
        raise ValueError(f"usage needs a 'frequency' column (atom_usage's table), got {list(usage)}")
    freq = usage["frequency"].to_numpy(dtype=float)
    alive = freq[freq > 0]
    fig = go.Figure(go.Histogram(x=np.log10(alive).tolist(), nbinsx=40, name="atoms"))
    dead = int((freq == 0).sum())
    fig.update_layout(title=(title or "Atom usage") + f" ({dead} of {len(freq)} atoms never fire)",
                      xaxis_title="log₁₀ firing frequency", yaxis_title="atoms", bargap=0.05)
    return fig


def reconstruction_vs_sparsity(sweep: pd.DataFrame, y: str = "explained_variance", group: str = "dictionary",
                               title: str = "") -> go.Figure:
    """``y`` against the mean number of active atoms (``l0``), one line per ``group`` (e.g. WriteSAE vs an SAE),
    from a table with one row per trained dictionary (columns ``l0``, ``y`` and optionally ``group``)."""
    missing = {"l0", y} - set(sweep)
    if missing:
        raise ValueError(f"the sweep table lacks the columns {sorted(missing)}")
    fig = go.Figure()
    groups = sweep.groupby(group, sort=False) if group in sweep else [("", sweep)]
    for name, part in groups:
        part = part.sort_values("l0")
        fig.add_trace(go.Scatter(x=part["l0"].tolist(), y=part[y].tolist(), mode="lines+markers", name=str(name)))
    fig.update_layout(title=title or f"{y.replace('_', ' ')} against sparsity", xaxis_title="L0 (active atoms)",
                      yaxis_title=y.replace("_", " "))
    return fig
