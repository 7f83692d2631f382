"""Pictures of outlier statistics: a metric by layer, the top neurons, who writes an outlier dimension,
and fast-weight state norms / ranks over position. Inputs are the DataFrames of
:mod:`workbench.analysis.outliers`."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import plotly.graph_objects as go


def _need(df: pd.DataFrame, columns, what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"expected a DataFrame from {what}, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"the DataFrame lacks columns {missing}; pass the output of {what}")


def metric_by_layer(table: pd.DataFrame, metric: str = "kurtosis", log_y: bool = True, title: str = "") -> go.Figure:
    """One line per site of ``metric`` over layer, from :func:`~workbench.analysis.outliers.outlier_table`
    (or its concatenation over checkpoints with a ``step`` column, then one line per site and step)."""
    _need(table, ["layer", "site", metric], "outlier_table")
    by = ["site", "step"] if "step" in table.columns else ["site"]
    few = table["layer"].nunique() <= FEW_LAYERS  # a line between two layers suggests a trend that is not there
    fig = go.Figure()
    for key, g in table.sort_values("layer").groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        name = key[0] if len(key) == 1 else f"{key[0]} @ step {key[1]}"
        fig.add_trace(go.Scatter(x=g.layer.tolist(), y=g[metric].tolist(), mode="markers" if few else "lines+markers",
                                 marker_size=10 if few else 6, name=name))
    fig.update_layout(title=title or f"{metric} by layer", xaxis_title="layer", yaxis_title=metric,
                      margin=dict(l=50, r=10, t=40, b=40))
    return log_axis(fig, "y") if log_y else fig.update_layout(yaxis_type="linear")


FEW_LAYERS = 3  # up to this many layers, metric_by_layer draws points only


def log_axis(fig: go.Figure, axis: str = "y") -> go.Figure:
    """Make ``axis`` logarithmic with ticks at 1, 2, 5 × each power of ten, each labelled by its full value (20,
    50; plotly's default labels the ticks between powers of ten by their leading digit only: "2 3 4")."""
    return fig.update_layout({f"{axis}axis_type": "log", f"{axis}axis_tickformat": "~g", f"{axis}axis_dtick": "D2"})


def neuron_rms_bar(neurons: pd.DataFrame, title: str = "per-neuron RMS") -> go.Figure:
    """Bars of ``rms`` per neuron (in neuron order), from :meth:`OutlierStats.neurons`."""
    _need(neurons, ["neuron", "rms"], "OutlierStats.neurons()")
    df = neurons.sort_values("neuron")
    fig = go.Figure(go.Bar(x=df.neuron.tolist(), y=df.rms.tolist(),
                           hovertemplate="neuron %{x}<br>RMS %{y:.4g}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="neuron", yaxis_title="RMS over tokens",
                      margin=dict(l=50, r=10, t=40, b=40))
    return fig


def contribution_bar(summary: pd.DataFrame, value: str = "mean", title: str = "direct writes") -> go.Figure:
    """Bars of each component's ``value`` (``mean`` or ``mean_abs``), in residual-stream order, from
    :func:`~workbench.analysis.outliers.contribution_summary`."""
    _need(summary, ["component", value], "contribution_summary")
    fig = go.Figure(go.Bar(x=summary.component.tolist(), y=summary[value].tolist()))
    fig.update_layout(title=title, xaxis_title="component", yaxis_title=f"{value} contribution",
                      margin=dict(l=50, r=10, t=40, b=60))
    return fig


def state_over_positions(df: pd.DataFrame, value: str = "frobenius", layer: Optional[int] = None,
                         title: str = "", yaxis_title: Optional[str] = None) -> go.Figure:
    """One line per (layer, head) of ``value`` (``frobenius``, ``sigma_1``, ``effective_rank``, …) over
    position, from :func:`~workbench.analysis.outliers.state_statistics`."""
    _need(df, ["layer", "head", "pos", value], "state_statistics")
    if layer is not None:
        df = df[df.layer == layer]
        if df.empty:
            raise ValueError(f"no rows for layer {layer}")
    fig = go.Figure()
    for (lay, head), g in df.sort_values("pos").groupby(["layer", "head"]):
        fig.add_trace(go.Scatter(x=g.pos.tolist(), y=g[value].tolist(), mode="lines+markers", marker_size=4,
                                 name=f"L{lay} head {head}"))
    fig.update_layout(title=title or f"{value} of W_t over position", xaxis_title="pos", yaxis_title=yaxis_title or value,
                      margin=dict(l=50, r=10, t=40, b=40))
    return fig


def metric_over_training(table: pd.DataFrame, metric: str = "kurtosis", site: str = "resid_post",
                         log_y: bool = True, title: str = "") -> go.Figure:
    """One line per layer of ``metric`` at ``site`` over training step, from
    :func:`~workbench.analysis.outliers.trace_over_training`."""
    _need(table, ["step", "layer", "site", metric], "trace_over_training")
    df = table[table.site == site]
    if df.empty:
        raise ValueError(f"no rows for site {site!r}; traced sites: {sorted(set(table.site))}")
    fig = go.Figure()
    for layer, g in df.sort_values("step").groupby("layer"):
        fig.add_trace(go.Scatter(x=g.step.tolist(), y=g[metric].tolist(), mode="lines+markers", name=f"layer {layer}"))
    fig.update_layout(title=title or f"{metric} of {site} over training", xaxis_title="step", yaxis_title=metric,
                      margin=dict(l=50, r=10, t=40, b=40))
    return log_axis(fig, "y") if log_y else fig.update_layout(yaxis_type="linear")
