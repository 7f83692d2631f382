"""Sparse dictionaries: how often each atom is used, and reconstruction against sparsity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots


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


def dictionary_training_curve(history: pd.DataFrame, title: str = "") -> go.Figure:
    """The training history of a dictionary (:func:`workbench.analysis.dictionaries.train_write_sae` or
    ``train_sae``: columns step, mse, l0): the reconstruction error (log scale) and the mean number of active
    atoms, against the step."""
    missing = {"step", "mse", "l0"} - set(history)
    if missing:
        raise ValueError(f"the history lacks the columns {sorted(missing)} (train_write_sae/train_sae's table)")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("reconstruction error (mse)", "active atoms (L0)"))
    steps = history["step"].tolist()
    fig.add_trace(go.Scatter(x=steps, y=history["mse"].tolist(), mode="lines+markers", name="mse"), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=history["l0"].tolist(), mode="lines+markers", name="L0"), row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title=title or "Training curve", showlegend=False)
    return fig


def substitution_comparison(results: pd.DataFrame, rates: pd.DataFrame, metric: str = "loss",
                            title: str = "") -> go.Figure:
    """WriteSAE's substitution test (:func:`workbench.analysis.dictionaries.substitution_test`): left, each firing's
    ``metric`` with the atom's write installed against the write removed (ablate) and against a non-firing atom at
    the same norm (random), below the diagonal where the atom does better; right, how often it does (the
    :func:`~workbench.analysis.dictionaries.win_rate` rows of ``rates`` for ``metric``) with Wilson 95 % intervals."""
    need = {f"{metric}_atom", f"{metric}_ablate", f"{metric}_random"}
    if not need <= set(results):
        raise ValueError(f"results lack the columns {sorted(need - set(results))} (substitution_test's table)")
    rates = rates[rates["metric"] == metric]
    if rates.empty:
        raise ValueError(f"rates has no rows for the metric {metric!r} (win_rate's rows)")
    label = {"loss": "next-token loss", "kl": "KL(native ‖ run)"}.get(metric, metric)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38],
                        subplot_titles=(f"{label} per firing", "atom beats the baseline"))
    atom = results[f"{metric}_atom"]
    values = []
    for baseline, name in (("ablate", "vs the write removed"), ("random", "vs a random atom, same norm")):
        other = results[f"{metric}_{baseline}"]
        ok = atom.notna() & other.notna()
        values += other[ok].tolist() + atom[ok].tolist()
        fig.add_trace(go.Scatter(x=other[ok].tolist(), y=atom[ok].tolist(), mode="markers", name=name, opacity=0.7),
                      row=1, col=1)
    if values:
        lo, hi = min(values), max(values)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="equal",
                                 line=dict(dash="dot", color="gray")), row=1, col=1)
    frac = rates["fraction"].to_numpy(dtype=float)
    fig.add_trace(go.Bar(x=[f"vs {b}" for b in rates["baseline"]], y=frac.tolist(), name="win rate", showlegend=False,
                         text=[f"{w}/{n}" for w, n in zip(rates["wins"], rates["n"])],
                         error_y=dict(type="data", symmetric=False,
                                      array=(rates["ci_high"].to_numpy(dtype=float) - frac).tolist(),
                                      arrayminus=(frac - rates["ci_low"].to_numpy(dtype=float)).tolist())),
                  row=1, col=2)
    fig.add_hline(y=0.5, line_dash="dot", line_color="gray", row=1, col=2)
    fig.update_xaxes(title_text=f"{label}, baseline", row=1, col=1)
    fig.update_yaxes(title_text=f"{label}, atom installed", row=1, col=1)
    fig.update_yaxes(title_text="fraction of firings (Wilson 95 %)", range=[0, 1], row=1, col=2)
    fig.update_layout(title=title or f"Substitution: the firing atom's write in place of the native write ({label})")
    return fig
