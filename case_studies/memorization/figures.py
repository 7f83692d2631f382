"""The study's figures, built from the ``runs`` of results.json (plain dicts), each a plotly figure."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from workbench.mixers import describe
from workbench.plots.kfac import curvature_spectrum_figure

from .paper import MERULLO, MERULLO_BASE_PPL, MERULLO_SOURCE, XU_CHANCE, XU_ROUGE_BY_OFFSET, XU_SOURCE

METHOD_LABELS = {"none": "unedited", "kfac": "K-FAC", "svd": "SVD"}


def label(run: dict) -> str:
    return describe(run["run"]["mixer"])


def _color(i: int) -> str:
    return qualitative.Plotly[i % len(qualitative.Plotly)]


def variants(run: dict) -> list[str]:
    """The edit variants of a run's sweep, in protocol order."""
    return list(dict.fromkeys(r["variant"] for r in run["sweep"] if r["method"] != "none"))


def _rows(run: dict, variant: str) -> list[dict]:
    return sorted((r for r in run["sweep"] if r["variant"] == variant), key=lambda r: -r["rho"])


def _dash(variant: str) -> str:
    return "dash" if variant.startswith("SVD") else "solid"


def headline_rows(run: dict) -> dict[str, dict]:
    """The unedited row and each variant's headline edit (see ``run.headline``)."""
    out = {"unedited": _rows(run, "unedited")[0]}
    for variant, rho in run["headline"].items():
        if rho is not None:
            out[variant] = next(r for r in _rows(run, variant) if r["rho"] == rho)
    return out


def tradeoff_figure(runs: list[dict[str, Any]], budget: float = 1.2, x_max: float = 2.5) -> go.Figure:
    """Strict recitation of the memorized canaries against perplexity (relative to the unedited model),
    one panel per model and one line per edit variant through the ρ sweep, with Merullo et al.'s OLMo-2
    7B points."""
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[label(r) for r in runs], shared_yaxes=True)
    for c, run in enumerate(runs, 1):
        none = _rows(run, "unedited")[0]
        for i, variant in enumerate(variants(run)):
            rows = [none] + _rows(run, variant)
            fig.add_trace(go.Scatter(
                x=[r["ppl_ratio"] for r in rows], y=[r["strict_memorized"] for r in rows], mode="lines+markers",
                hovertext=[f"ρ={r['rho']:g}" for r in rows], name=variant, legendgroup=variant, showlegend=c == 1,
                line=dict(color=_color(i), dash=_dash(variant))), row=1, col=c)
        fig.add_trace(go.Scatter(x=[p["ppl"] / MERULLO_BASE_PPL for p in MERULLO], y=[p["strict"] for p in MERULLO],
                                 mode="markers", hovertext=[p["method"] for p in MERULLO],
                                 marker=dict(symbol="star", size=11, color="black"), name=MERULLO_SOURCE,
                                 legendgroup="paper", showlegend=c == 1), row=1, col=c)
        fig.add_vline(x=budget, line_dash="dot", line_color="grey", row=1, col=c)
    fig.update_xaxes(type="log", range=[math.log10(0.98), math.log10(x_max)],
                     title_text=f"perplexity / unedited (dotted: the budget; axis cut at {x_max:g}×)")
    fig.update_yaxes(title_text="strict recitation of the memorized canaries", range=[-0.03, 1.05], col=1)
    fig.update_layout(title="Recitation against perplexity over the ρ sweep (stars: OLMo-2 7B, Merullo et al.)",
                      width=1200, height=600, legend=dict(orientation="h", y=-0.2))
    return fig


def sweep_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Against ρ, one row per model: strict recitation of the memorized canaries, perplexity ratio and
    top-10 agreement."""
    panels = [("strict_memorized", "strict recitation (memorized)"), ("ppl_ratio", "perplexity / unedited"),
              ("top10_agreement", "top-10 agreement with unedited")]
    fig = make_subplots(rows=len(runs), cols=3, subplot_titles=[f"{label(r)}: {t}" for r in runs for _, t in panels])
    for k, run in enumerate(runs, 1):
        none = _rows(run, "unedited")[0]
        for i, variant in enumerate(variants(run)):
            rows = [none] + _rows(run, variant)
            for c, (key, _) in enumerate(panels, 1):
                fig.add_trace(go.Scatter(x=[r["rho"] for r in rows], y=[r[key] for r in rows], mode="lines+markers",
                                         name=variant, legendgroup=variant, showlegend=c == 1 and k == 1,
                                         line=dict(color=_color(i), dash=_dash(variant))), row=k, col=c)
        fig.update_yaxes(type="log", row=k, col=2)
    fig.update_xaxes(title_text="ρ (fraction of mass kept)", autorange="reversed")
    fig.update_layout(title="The ρ sweep", width=1300, height=380 * len(runs) + 150,
                      legend=dict(orientation="h", y=-0.12))
    return fig


def repetition_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Strict recitation by repetition count: unedited, and each variant's headline edit."""
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[label(r) for r in runs], shared_yaxes=True)
    for c, run in enumerate(runs, 1):
        reps = sorted({x["repetitions"] for x in run["canaries"]})
        names = ["unedited"] + variants(run)
        for variant, row in headline_rows(run).items():
            k = names.index(variant)
            name = variant + (f" ρ={row['rho']:g}" if variant != "unedited" else "")
            fig.add_trace(go.Scatter(x=reps, y=[row[f"strict@{r}"] for r in reps], mode="lines+markers", name=name,
                                     line=dict(color="black" if k == 0 else _color(k - 1), dash=_dash(variant))),
                          row=1, col=c)
    fig.update_xaxes(type="log", title_text="repetitions in training")
    fig.update_yaxes(title_text="strict recitation", range=[-0.03, 1.05], col=1)
    fig.update_layout(title="Recitation by repetition count, unedited and at each variant's headline ρ",
                      width=1200, height=550, legend=dict(orientation="h", y=-0.25))
    return fig


def top_levels(run: dict, n: int = 2) -> list[int]:
    """The ``n`` largest repetition counts of a run."""
    return sorted({c["repetitions"] for c in run["canaries"]})[-n:]


def offset_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Positional fragility before editing: similarity 1 − d/L of the recited suffix by prefix offset (canaries
    trained at position 0, the two largest repetition counts), beside Xu et al.'s Rouge-L by offset."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["ours: 1 − normalised distance (and strict, dotted)",
                                                        XU_SOURCE])
    k = 0
    for run in runs:
        df = pd.DataFrame(run["by_offset"])
        df = df[(df.position == 0) & df.repetitions.isin(top_levels(run))]
        for reps, part in df.groupby("repetitions"):
            part = part.sort_values("offset")
            name = f"{label(run)}, {reps}×"
            fig.add_trace(go.Scatter(x=part.offset.tolist(), y=(1 - part.mean_norm_distance).tolist(),
                                     mode="lines+markers", name=name, legendgroup=name,
                                     line=dict(color=_color(k))), row=1, col=1)
            fig.add_trace(go.Scatter(x=part.offset.tolist(), y=part.strict_acc.tolist(), mode="lines", name=name,
                                     legendgroup=name, showlegend=False, line=dict(color=_color(k), dash="dot")),
                          row=1, col=1)
            k += 1
    fig.add_trace(go.Scatter(x=[o + 1 for o in XU_ROUGE_BY_OFFSET], y=list(XU_ROUGE_BY_OFFSET.values()),
                             mode="lines+markers", hovertext=[f"offset {o}" for o in XU_ROUGE_BY_OFFSET],
                             name="Xu et al. 8B, 128×", line=dict(color="black")), row=1, col=2)
    fig.add_hline(y=XU_CHANCE, line_dash="dot", line_color="grey", annotation_text="chance", row=1, col=2)
    fig.update_xaxes(title_text="prefix offset (tokens)", row=1, col=1)
    fig.update_xaxes(title_text="prefix offset + 1 (tokens, log)", type="log", row=1, col=2)
    fig.update_yaxes(range=[-0.03, 1.05])
    fig.update_layout(title="Recitation by prefix offset (unedited models)", width=1100, height=480)
    return fig


def prompt_position_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Strict recitation by repetition count for each (training position, prompt position) of the canary."""
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[label(r) for r in runs], shared_yaxes=True)
    for c, run in enumerate(runs, 1):
        df = pd.DataFrame(run["by_prompt_position"])
        for k, ((pos, prompt), part) in enumerate(df.groupby(["position", "prompt_position"])):
            part = part.sort_values("repetitions")
            name = f"trained at {pos}, prompted at {prompt}"
            fig.add_trace(go.Scatter(x=part.repetitions.tolist(), y=part.strict_acc.tolist(), mode="lines+markers",
                                     name=name, legendgroup=name, showlegend=c == 1,
                                     line=dict(color=_color(k), dash="solid" if pos == prompt else "dash")),
                          row=1, col=c)
    fig.update_xaxes(type="log", title_text="repetitions in training")
    fig.update_yaxes(title_text="strict recitation", range=[-0.03, 1.05], col=1)
    fig.update_layout(title="Recitation with the prompt where the canary was trained, and elsewhere", width=1000)
    return fig


def prefix_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Strict recitation by prefix length (prompt at the training position), one line per repetition count."""
    fig = make_subplots(rows=1, cols=len(runs), subplot_titles=[label(r) for r in runs], shared_yaxes=True)
    for c, run in enumerate(runs, 1):
        df = pd.DataFrame(run["by_prefix_len"])
        df = df.groupby(["repetitions", "prefix_len"], as_index=False).apply(
            lambda g: pd.Series({"strict_acc": (g.strict_acc * g.n).sum() / g.n.sum()}), include_groups=False)
        for k, (reps, part) in enumerate(df.groupby("repetitions")):
            part = part.sort_values("prefix_len")
            fig.add_trace(go.Scatter(x=part.prefix_len.tolist(), y=part.strict_acc.tolist(), mode="lines+markers",
                                     name=f"{reps}×", legendgroup=str(reps), showlegend=c == 1,
                                     line=dict(color=_color(k))), row=1, col=c)
    fig.update_xaxes(title_text="prefix length (tokens)")
    fig.update_yaxes(title_text="strict recitation", range=[-0.03, 1.05], col=1)
    fig.update_layout(title="Recitation by prefix length", width=1000)
    return fig


def spectrum_figure(run: dict[str, Any], stats: str) -> go.Figure:
    """The K-FAC curvature spectrum (factors from ``stats`` data) of every layer, thinned, cut at the
    headline ρ of the first K-FAC variant with these statistics."""
    spectra = {site: pd.DataFrame(rows) for site, rows in run["spectra"][stats].items()}
    rho = next((run["headline"][v] for v in variants(run) if v.startswith("K-FAC") and v.endswith(f"{stats} stats")),
               None)
    return curvature_spectrum_figure(spectra, rho=rho, title=f"K-FAC curvature spectrum, {label(run)}, {stats} "
                                     "statistics" + (f" (cut at a headline ρ = {rho:g})" if rho is not None else ""))
