"""Lenses by layer: perplexity, cross-entropy or KL to the final layer, the logit lens beside the tuned lens,
from a :func:`workbench.analysis.lenses.lens_table` table (several models: a ``model`` column, one pair of
lines each)."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import plotly.graph_objects as go

LENS_METRICS = {"ppl": "perplexity", "ce": "cross-entropy (nats)", "kl": "KL(final ‖ lens) (nats)"}
_DASH = {"logit": "dot", "tuned": "solid"}


def lens_by_layer(table: pd.DataFrame, metric: str = "ppl", log_y: Optional[bool] = None, title: str = "") -> go.Figure:
    """One line per lens (``logit``, and ``tuned`` when the table has it) of ``metric`` (``"ppl"``, ``"ce"`` or
    ``"kl"``) against the layer (0: embeddings, n_layers: the model's output). ``log_y`` defaults to True for
    perplexity."""
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"expected a DataFrame from lens_table(...), got {type(table).__name__}")
    if metric not in LENS_METRICS:
        raise ValueError(f"metric must be one of {sorted(LENS_METRICS)}, got {metric!r}")
    lenses = [name for name in ("logit", "tuned") if f"{name}_{metric}" in table.columns]
    if "layer" not in table.columns or not lenses:
        raise ValueError(f"the table lacks 'layer' or '{{logit,tuned}}_{metric}' columns; pass lens_table(...)")
    groups = table.groupby("model", sort=False) if "model" in table.columns else [(None, table)]
    fig = go.Figure()
    for model, g in groups:
        hooks = g["hook"].tolist() if "hook" in g.columns else [""] * len(g)
        for name in lenses:
            if g[f"{name}_{metric}"].isna().all():  # a model measured without a tuned lens
                continue
            label = f"{name} lens" if model is None else f"{model}: {name} lens"
            fig.add_trace(go.Scatter(
                x=g["layer"].tolist(), y=g[f"{name}_{metric}"].tolist(), mode="lines+markers", name=label,
                line=dict(dash=_DASH[name]), customdata=hooks,
                hovertemplate=f"layer %{{x}} (%{{customdata}})<br>{metric} %{{y:.4g}}<extra>{label}</extra>"))
    if log_y is None:
        log_y = metric == "ppl"
    fig.update_layout(title=title or f"{LENS_METRICS[metric]} by layer", xaxis_title="layer (0: embeddings)",
                      yaxis_title=LENS_METRICS[metric], yaxis_type="log" if log_y else "linear",
                      xaxis=dict(tickmode="linear", dtick=1), margin=dict(l=50, r=10, t=40, b=40))
    return fig
