"""Patching results as figures: a layer × position heatmap per site, a per-head bar chart of one cell, and the
attribution-patching estimate against the real patch."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .recall import head_color

VALUE_TITLES = {"normalized": "normalized effect", "effect": "effect on the metric", "patched": "patched metric"}


def _grid(df: pd.DataFrame, site: str, value: str, n_layers: Optional[int], n_pos: Optional[int]) -> np.ndarray:
    part = df[(df["site"] == site) & df["head"].isna()]
    if part.empty:
        raise ValueError(f"the sweep has no whole-site rows for site {site!r} (sites: {sorted(set(df['site']))}); "
                         "per-head rows are drawn with head_effects_bar")
    layers = n_layers or int(df["layer"].max()) + 1
    positions = n_pos or int(df["position"].max()) + 1
    grid = np.full((layers, positions), np.nan)
    grid[part["layer"].to_numpy(int), part["position"].to_numpy(int)] = part[value].to_numpy(float)
    return grid


def patching_heatmap(df: pd.DataFrame, site: str, value: str = "normalized",
                     position_labels: Optional[Sequence[str]] = None, title: str = "") -> go.Figure:
    """One site of an activation- (or attribution-) patching sweep as a layer × position heatmap of ``value``
    (blank where the layer has no such site or the position was not swept); diverging colours centred on 0.
    Each cell's customdata is ``[layer, position]`` (what a click selects)."""
    if value not in df:
        raise ValueError(f"value must be a column of the sweep ({list(VALUE_TITLES)}), got {value!r}")
    grid = _grid(df, site, value, None, len(position_labels) if position_labels else None)
    layers, positions = grid.shape
    x = list(range(positions))
    custom = np.stack(np.meshgrid(x, range(layers))[::-1], axis=-1)  # [layer, pos, (layer, position)]
    hover = "layer %{y}, pos %{x}" + (" (%{text})" if position_labels else "") + "<br>%{z:.4g}<extra></extra>"
    span = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
    fig = go.Figure(go.Heatmap(z=grid, x=x, y=list(range(layers)), customdata=custom, colorscale="RdBu", zmid=0,
                               zmin=-span, zmax=span, text=None if not position_labels else
                               [list(position_labels)] * layers, hovertemplate=hover,
                               colorbar=dict(title=VALUE_TITLES.get(value, value))))
    direction = df.attrs.get("direction", "")
    fig.update_layout(title=dict(text=title or f"{site}: {direction} patching", x=0, xanchor="left"),
                      xaxis_title="pos", yaxis_title="layer", yaxis=dict(dtick=1, autorange="reversed"),
                      margin=dict(l=40, r=10, t=40, b=40))
    if position_labels:
        fig.update_xaxes(tickvals=x, ticktext=[str(s) for s in position_labels])
    return fig


def patching_heatmaps(df: pd.DataFrame, value: str = "normalized", sites: Optional[Sequence[str]] = None) -> go.Figure:
    """Every site of a sweep (or ``sites``), one layer × position heatmap each, stacked, on one colour scale."""
    sites = [s for s in (sites or dict.fromkeys(df["site"])) if ((df["site"] == s) & df["head"].isna()).any()]
    if not sites:
        raise ValueError("the sweep has no whole-site rows to draw")
    n_pos = int(df["position"].max()) + 1
    grids = [_grid(df, s, value, int(df["layer"].max()) + 1, n_pos) for s in sites]
    span = max(float(np.nanmax(np.abs(g))) if np.isfinite(g).any() else 0.0 for g in grids) or 1.0
    fig = make_subplots(rows=len(sites), cols=1, subplot_titles=sites, shared_xaxes=True, vertical_spacing=0.04)
    for i, g in enumerate(grids, 1):
        fig.add_trace(go.Heatmap(z=g, colorscale="RdBu", zmid=0, zmin=-span, zmax=span, showscale=i == 1,
                                 colorbar=dict(title=VALUE_TITLES.get(value, value)),
                                 hovertemplate="layer %{y}, pos %{x}<br>%{z:.4g}<extra></extra>"), row=i, col=1)
        fig.update_yaxes(title_text="layer", dtick=1, autorange="reversed", row=i, col=1)
    fig.update_xaxes(title_text="pos", row=len(sites), col=1)
    fig.update_layout(height=170 * len(sites) + 80, margin=dict(l=40, r=10, t=40, b=40),
                      title=dict(text=f"{df.attrs.get('direction', '')} patching", x=0, xanchor="left"))
    return fig


def head_effects_bar(df: pd.DataFrame, value: str = "normalized", title: str = "") -> go.Figure:
    """The per-head rows of one cell (:func:`workbench.analysis.patching.head_breakdown`) as bars, a head's colour
    as in every per-head chart."""
    part = df[df["head"].notna()]
    if part.empty:
        raise ValueError("no per-head rows: run the sweep with per_head=True on a head-resolved site")
    heads = part["head"].astype(int).tolist()
    fig = go.Figure(go.Bar(x=[f"head {h}" for h in heads], y=part[value].astype(float).tolist(),
                           marker_color=[head_color(h) for h in heads]))
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), xaxis_title="head",
                      yaxis_title=VALUE_TITLES.get(value, value), margin=dict(l=40, r=10, t=40, b=40))
    return fig


def attribution_scatter(real: pd.DataFrame, estimate: pd.DataFrame, value: str = "effect",
                        agreement: Optional[pd.DataFrame] = None) -> go.Figure:
    """Attribution patching's estimate against the real patch, one point per cell, coloured by site, with the line
    y = x; the legend carries each site's Pearson r when ``agreement`` (``attribution_agreement``) is given."""
    keys = ["site", "layer", "position", "head"]
    merged = real[keys + [value]].merge(estimate[keys + [value]], on=keys, suffixes=("_real", "_estimate"))
    r = {} if agreement is None else dict(zip(agreement["site"], agreement["pearson"]))
    fig = go.Figure()
    for site, part in merged.groupby("site", sort=False):
        label = f"{site} (r = {r[site]:.3f})" if site in r and np.isfinite(r[site]) else site
        text = [f"layer {a}, pos {b}" + ("" if pd.isna(h) else f", head {h}")
                for a, b, h in zip(part["layer"], part["position"], part["head"])]
        fig.add_trace(go.Scatter(x=part[f"{value}_real"], y=part[f"{value}_estimate"], mode="markers", name=label,
                                 text=text, hovertemplate="%{text}<br>real %{x:.4g}<br>estimate %{y:.4g}"))
    both = merged[[f"{value}_real", f"{value}_estimate"]].to_numpy(float)
    lo, hi = (float(np.nanmin(both)), float(np.nanmax(both))) if both.size else (0.0, 1.0)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(dash="dash", color="grey")))
    title = "attribution patching against activation patching"
    if "all" in r and np.isfinite(r["all"]):
        title += f" (all cells: r = {r['all']:.3f})"
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), xaxis_title=f"real patch: {value}",
                      yaxis_title=f"attribution estimate: {value}", margin=dict(l=40, r=10, t=40, b=40))
    return fig
