"""The K-FAC curvature spectrum of linear layers (see :func:`workbench.analysis.kfac.curvature_spectrum`)."""

from __future__ import annotations

from typing import Mapping, Optional, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..analysis.kfac.edit import check_rho

SPECTRUM_COLUMNS = ("rank", "curvature", "cumulative")


def thin_spectrum(spectrum: pd.DataFrame, max_points: int = 200) -> pd.DataFrame:
    """At most ``max_points`` rows of a spectrum table, at log-spaced ranks (first and last kept): small
    enough to store with results and redraw."""
    return spectrum.iloc[_thin(len(spectrum), max_points)].reset_index(drop=True)


def _thin(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` ranks of ``range(n)``, log-spaced (every rank when n ≤ max_points), always
    holding the first and the last."""
    if n <= max_points:
        return np.arange(n)
    idx = np.unique(np.round(np.geomspace(1, n, max_points)).astype(int) - 1)
    return np.union1d(idx, [0, n - 1])


def kept_components(spectrum: pd.DataFrame, rho: float) -> int:
    """How many components the edit keeps at ``rho``: the fewest largest whose cumulative fraction
    reaches ρ (the rule of :func:`workbench.analysis.kfac.curvature_mask`, up to float round-off). On a
    thinned table (some ranks left out), the first listed rank that reaches ρ, an upper bound."""
    rho = check_rho(rho)
    cum = spectrum["cumulative"].to_numpy()
    if rho == 1:
        return len(cum)
    at = min(int(np.searchsorted(cum, rho, side="left")), len(cum) - 1)
    return int(spectrum["rank"].iloc[at]) + 1


def curvature_spectrum_figure(spectra: Union[pd.DataFrame, Mapping[str, pd.DataFrame]],
                              rho: Optional[float] = None, max_points: int = 2000, title: str = "") -> go.Figure:
    """Two panels per layer: the curvature Π = λ_i μ_j of every component against its rank, largest
    first (log–log), and the cumulative fraction of curvature mass. ``spectra``: one table of
    :func:`~workbench.analysis.kfac.curvature_spectrum`, or ``{layer name: table}``. With ``rho``, a
    dashed line at ρ and a dotted marker at the rank where each layer's edit cuts (the components to
    its right are removed). Layers with many components are thinned to ``max_points`` log-spaced ranks."""
    if isinstance(spectra, pd.DataFrame):
        spectra = {"layer": spectra}
    if not spectra:
        raise ValueError("no spectra: pass curvature_spectrum(factors) or {name: curvature_spectrum(...)}")
    if not isinstance(max_points, int) or max_points < 2:
        raise ValueError(f"max_points must be an int ≥ 2, got {max_points!r}")
    for name, table in spectra.items():
        missing = [c for c in SPECTRUM_COLUMNS if c not in table]
        if missing:
            raise ValueError(f"spectrum {name!r} has no column(s) {missing}; pass curvature_spectrum(factors)")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("curvature λ_i μ_j by rank", "cumulative curvature mass"))
    for k, (name, table) in enumerate(spectra.items()):
        color = qualitative.Plotly[k % len(qualitative.Plotly)]
        idx = _thin(len(table), max_points)
        ranks = (table["rank"].to_numpy()[idx] + 1).tolist()  # 1-based for the log axis
        fig.add_trace(go.Scatter(x=ranks, y=table["curvature"].to_numpy()[idx].tolist(), mode="lines", name=name,
                                 legendgroup=name, line=dict(color=color)), row=1, col=1)
        fig.add_trace(go.Scatter(x=ranks, y=table["cumulative"].to_numpy()[idx].tolist(), mode="lines", name=name,
                                 legendgroup=name, showlegend=False, line=dict(color=color)), row=1, col=2)
        if rho is not None:
            kept = kept_components(table, rho)
            fig.add_trace(go.Scatter(x=[kept, kept], y=[0, 1], mode="lines", name=f"{name}: keeps {kept}",
                                     legendgroup=name, showlegend=False,
                                     line=dict(color=color, dash="dot")), row=1, col=2)
    if rho is not None:
        fig.add_hline(y=rho, line_dash="dash", line_color="black", annotation_text=f"ρ = {rho:g}", row=1, col=2)
    fig.update_xaxes(type="log", title_text="component rank (largest curvature first)")
    fig.update_yaxes(type="log", exponentformat="power", title_text="λ_i μ_j", row=1, col=1)
    fig.update_yaxes(title_text="fraction of Σλ·Σμ", range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=title or "K-FAC curvature spectrum" + (f" (ρ = {rho:g})" if rho is not None else ""))
    return fig
