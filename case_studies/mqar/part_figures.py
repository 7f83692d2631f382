"""The parts' figures, from the ``runs`` of a part's results.json: every part's learning curves (the
training-mixture accuracy the convergence rule watched), the sweep's accuracy against the learning rate and
the pairs part's accuracy against the pairs stored."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative

from .._stats import t_interval
from .figures import MIXER_LABELS
from .part_tables import frame
from .seed_tables import cell_seeds, cells, seed_frame


def _label(run: dict) -> str:
    r = run["run"]
    conv = "" if r.get("conv_size") is None else f", conv {r['conv_size']}"
    return f"{MIXER_LABELS.get(r['mixer'], r['mixer'])} d={r['d_model']}{conv}, lr {r['lr']:.2e}, seed {r['seed']}"


def learning_curves(runs: list[dict[str, Any]], target: float) -> go.Figure:
    """Eval accuracy on the training mixture against the step, one line per run; the stopping target dotted."""
    fig = go.Figure()
    for i, r in enumerate(runs):
        h = r["history"]
        fig.add_scatter(x=[x["step"] for x in h], y=[x["eval_acc"] for x in h], mode="lines+markers",
                        name=f"{_label(r)} ({r['stop']})", line={"color": qualitative.Dark24[i % 24]},
                        marker={"size": 4})
    fig.add_hline(y=target, line_dash="dot", annotation_text=f"stop at ≥ {target}")
    fig.update_layout(title="Accuracy on the training mixture during training (what the convergence rule watched)",
                      xaxis_title="step", yaxis_title="eval accuracy", width=1100, height=600)
    return fig


def accuracy_vs_lr(runs: list[dict[str, Any]]) -> go.Figure:
    """Mean accuracy over the settings against the learning rate, per (mixer, d_model); one marker per seed."""
    df = frame(runs)
    fig = go.Figure()
    for i, ((mixer, d), g) in enumerate(df.groupby(["mixer", "d_model"], sort=False)):
        means = g.groupby("lr")["mean"].mean()
        name = f"{MIXER_LABELS.get(mixer, mixer)} d={d}"
        colour = qualitative.Plotly[i % 10]
        fig.add_scatter(x=means.index, y=means.values, mode="lines", name=name, legendgroup=name,
                        line={"color": colour})
        fig.add_scatter(x=g["lr"], y=g["mean"], mode="markers", name=name, legendgroup=name, showlegend=False,
                        marker={"color": colour}, text=[f"seed {s}, {st} at {n}" for s, st, n in
                                                        zip(g["seed"], g["stop"], g["steps"])])
    fig.update_layout(title="Mean accuracy over the MQAR settings against the learning rate",
                      xaxis_title="learning rate", yaxis_title="accuracy", xaxis_type="log", width=900, height=550)
    return fig


def accuracy_vs_pairs(runs: list[dict[str, Any]]) -> go.Figure:
    """Accuracy against the pairs stored with its Wilson interval, per model; each model's d_head dotted."""
    fig = go.Figure()
    for i, r in enumerate(sorted(runs, key=lambda r: r["run"]["d_model"])):
        s = r["capacity_sweep"]
        colour = qualitative.Plotly[i % 10]
        fig.add_scatter(x=[x["num_kv_pairs"] for x in s], y=[x["accuracy"] for x in s], mode="lines+markers",
                        name=f"{_label(r)} (d_head {r['d_head']})", line={"color": colour},
                        error_y={"type": "data", "symmetric": False,
                                 "array": [x["hi"] - x["accuracy"] for x in s],
                                 "arrayminus": [x["accuracy"] - x["lo"] for x in s]})
        fig.add_vline(x=r["d_head"], line_dash="dot", line_color=colour, annotation_text=f"d_head = {r['d_head']}")
    fig.update_layout(title="Recall against the number of pairs stored", xaxis_title="key–value pairs in the context",
                      yaxis_title="accuracy", width=900, height=550)
    return fig


def accuracy_by_seed(results: dict[str, Any]) -> go.Figure:
    """The seeds part: per cell, the mean accuracy over the settings of every seed (a marker each, seed 0 from the
    part it was reused from) and their mean with its 95 % t interval over seeds."""
    df, fig = seed_frame(results), go.Figure()
    for i, cell in enumerate(cells(results)):
        g = cell_seeds(df, cell)
        conv = "" if cell[1] is None else f", conv {cell[1]}"
        name = f"{MIXER_LABELS.get(cell[0], cell[0])}{conv}, lr {cell[2]:.2e}"
        mean, lo, hi = t_interval(g["mean"].to_numpy())
        colour = qualitative.Plotly[i % 10]
        fig.add_scatter(x=[name], y=[mean], mode="markers", marker={"color": colour, "symbol": "line-ew-open",
                        "size": 30}, name=f"{name}: mean of {len(g)}", showlegend=False,
                        error_y=None if len(g) < 2 else {"type": "data", "symmetric": False, "array": [hi - mean],
                                                         "arrayminus": [mean - lo]})
        fig.add_scatter(x=[name] * len(g), y=g["mean"], mode="markers", marker={"color": colour, "size": 8},
                        showlegend=False, text=[f"seed {s} ({src}), {st} at {n}" for s, src, st, n in
                                                zip(g["seed"], g["from"], g["stop"], g["steps"])])
    fig.update_layout(title="Mean accuracy over the MQAR settings per seed, with the mean and its 95 % t interval",
                      yaxis_title="accuracy", width=1000, height=550)
    return fig


def figures(results: dict[str, Any]) -> dict[str, go.Figure]:
    """The figures of a part's results, by file name."""
    runs, part = results["runs"], results["part"]
    target = results["study"]["protocol"]["train"]["stop_acc"]
    figs = {"learning_curves": learning_curves(runs, target)}
    if part == "sweep":
        figs["accuracy_vs_lr"] = accuracy_vs_lr(runs)
    if part == "seeds":
        figs["accuracy_by_seed"] = accuracy_by_seed(results)
    if any(r.get("capacity_sweep") for r in runs):
        figs["accuracy_vs_pairs"] = accuracy_vs_pairs(runs)
    return figs
