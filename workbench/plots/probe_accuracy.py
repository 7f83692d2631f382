"""The probe beside the model's own accuracy: is the pair still in W_t where the model stops recalling it?"""

from __future__ import annotations

from typing import Optional

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from .recall import _LABELS

ACCURACY_NAME = "model accuracy"


def probe_against_accuracy(agg: pd.DataFrame, by: str, metric: str = "fidelity",
                           accuracy: Optional[pd.DataFrame] = None, control: Optional[pd.DataFrame] = None,
                           title: str = "") -> go.Figure:
    """One line per head (per layer and head if ``agg`` has a ``layer`` column) of ``metric`` against
    ``by``, from :func:`workbench.analysis.aggregate`; ``control`` (the same table for control pairs,
    e.g. keys paired with another pair's value) as dotted lines in the same colours; ``accuracy``
    (columns ``by`` and ``accuracy``): the model's own recall accuracy, a black dashed line."""
    for name, table in (("the table", agg), ("the control table", control)):
        for col in ("head", by, metric):
            if table is not None and col not in table:
                raise ValueError(f"{name} has no column {col!r}; pass aggregate(df, {by!r}) (plus a 'layer' column)")
    if accuracy is not None and not {by, "accuracy"} <= set(accuracy):
        raise ValueError(f"accuracy needs the columns {by!r} and 'accuracy', got {list(accuracy)}")
    keys = ["layer", "head"] if "layer" in agg else ["head"]
    fig = go.Figure()
    for i, (key, part) in enumerate(agg.sort_values(by).groupby(keys, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        name = " ".join(f"{k[0].upper()}{v}" for k, v in zip(keys, key))  # "L1 H0"
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        fig.add_trace(go.Scatter(x=part[by].tolist(), y=part[metric].tolist(), mode="lines+markers", name=name,
                                 legendgroup=name, line=dict(color=color)))
        if control is not None:
            ctrl = control.sort_values(by)
            for k, v in zip(keys, key):
                ctrl = ctrl[ctrl[k] == v]
            fig.add_trace(go.Scatter(x=ctrl[by].tolist(), y=ctrl[metric].tolist(), mode="lines", name=f"{name} control",
                                     legendgroup=name, showlegend=False, line=dict(color=color, dash="dot")))
    if accuracy is not None:
        acc = accuracy.sort_values(by)
        fig.add_trace(go.Scatter(x=acc[by].tolist(), y=acc["accuracy"].tolist(), mode="lines+markers",
                                 name=ACCURACY_NAME, legendgroup=ACCURACY_NAME,
                                 line=dict(color="black", dash="dash"), marker=dict(symbol="diamond")))
    fig.update_layout(title=title or f"{metric} by {by}", xaxis_title=_LABELS.get(by, by), yaxis_title=metric)
    return fig
