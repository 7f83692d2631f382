"""The study's figures, built from the ``runs`` of results.json (plain dicts), each a plotly figure."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from workbench.mixers import describe

from .paper import MERULLO, MERULLO_BASE_PPL, MERULLO_SOURCE, XU_CHANCE, XU_ROUGE_BY_OFFSET, XU_SOURCE
from .pooled import RANDOM, methods, models, of_model, pool_summary, summary_row


def _color(i: int) -> str:
    return qualitative.Plotly[i % len(qualitative.Plotly)]


def tradeoff_figure(runs: list[dict[str, Any]], budget: float = 1.2, x_max: float = 3.0) -> go.Figure:
    """Strict recitation of the memorized canaries against perplexity (relative to the unedited model),
    one panel per model: each swept edit's ρ grid, one thin line per seed, and every edit's headline
    pooled over seeds (a marker with its 95 % interval), with Merullo et al.'s OLMo-2 7B points."""
    mixers = models(runs)
    fig = make_subplots(rows=1, cols=len(mixers), subplot_titles=[describe(m) for m in mixers], shared_yaxes=True)
    for c, mixer in enumerate(mixers, 1):
        keys = methods(of_model(runs, mixer)[0])
        for i, (key, text) in enumerate(keys):
            for s, run in enumerate(of_model(runs, mixer)):
                rows = sorted((r for r in run["sweep"] if r["variant"] == key), key=lambda r: -(r["rho"] or 0))
                if len(rows) < 2:
                    continue
                fig.add_trace(go.Scatter(
                    x=[r["ppl_ratio"] for r in rows], y=[r["strict_memorized"] for r in rows], mode="lines",
                    hovertext=[f"seed {run['run']['seed']}, ρ={r['rho']:g}" for r in rows], opacity=0.35,
                    line=dict(color=_color(i), width=1), showlegend=False, legendgroup=text), row=1, col=c)
            s = summary_row(runs, mixer, key)
            if "n" not in s:
                continue
            mean, lo, hi = s["strict"]
            x = sum(s["ppl_ratio"]) / len(s["ppl_ratio"])
            fig.add_trace(go.Scatter(x=[x], y=[mean], mode="markers", name=text, legendgroup=text,
                                     showlegend=c == 1, marker=dict(size=11, color=_color(i),
                                                                    symbol="diamond" if key == RANDOM else "circle"),
                                     error_y=dict(type="data", symmetric=False, array=[hi - mean],
                                                  arrayminus=[mean - lo])), row=1, col=c)
        fig.add_trace(go.Scatter(x=[p["ppl"] / MERULLO_BASE_PPL for p in MERULLO], y=[p["strict"] for p in MERULLO],
                                 mode="markers", hovertext=[p["method"] for p in MERULLO],
                                 marker=dict(symbol="star", size=11, color="black"), name=MERULLO_SOURCE,
                                 legendgroup="paper", showlegend=c == 1), row=1, col=c)
        fig.add_vline(x=budget, line_dash="dot", line_color="grey", row=1, col=c)
    fig.update_xaxes(type="log", range=[math.log10(0.98), math.log10(x_max)],
                     title_text=f"perplexity / unedited (dotted: the budget; axis cut at {x_max:g}×)")
    fig.update_yaxes(title_text="strict recitation of the memorized canaries", range=[-0.03, 1.05], col=1)
    fig.update_layout(title="Recitation against perplexity: ρ sweeps per seed (thin) and headlines pooled over seeds "
                            "with 95 % intervals (stars: OLMo-2 7B, Merullo et al.)",
                      width=1300, height=650, legend=dict(orientation="h", y=-0.25))
    return fig


def offset_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Similarity 1 − d/L of the recited suffix against the prefix's offset into the canary, for the most
    repeated canaries, one panel per model: the prefix fed at position 0 (dashed) or where its tokens sat
    in training (solid), per training position; Xu et al.'s Rouge-L for reference."""
    mixers = models(runs)
    fig = make_subplots(rows=1, cols=len(mixers), subplot_titles=[describe(m) for m in mixers], shared_yaxes=True)
    for c, mixer in enumerate(mixers, 1):
        recs = [x for r in of_model(runs, mixer) for x in r["by_offset"]]
        df = pool_summary(recs, ["placement", "position", "repetitions", "offset"])
        df = df[df.repetitions == df.repetitions.max()]
        for i, ((placement, pos), part) in enumerate(df.groupby(["placement", "position"])):
            text = f"trained at {pos}, fed at {'0' if placement == 'zero' else 'its training position'}"
            fig.add_trace(go.Scatter(x=part.offset, y=part.similarity, mode="lines+markers", name=text,
                                     legendgroup=text, showlegend=c == 1,
                                     line=dict(color=_color(int(pos > 0)), dash="dash" if placement == "zero" else "solid")),
                          row=1, col=c)
        xs = [o for o in XU_ROUGE_BY_OFFSET if o <= df.offset.max()]
        fig.add_trace(go.Scatter(x=xs, y=[XU_ROUGE_BY_OFFSET[o] for o in xs], mode="markers",
                                 marker=dict(symbol="star", size=11, color="black"), name=XU_SOURCE,
                                 showlegend=c == 1, legendgroup="paper"), row=1, col=c)
        fig.add_hline(y=XU_CHANCE, line_dash="dot", line_color="grey", row=1, col=c)
    fig.update_xaxes(title_text="offset o of the prefix into the canary (tokens)")
    fig.update_yaxes(title_text="similarity 1 − d/L (most repeated canaries)", range=[-0.03, 1.05], col=1)
    fig.update_layout(title="Offset probe: absolute position (dashed: prefix at 0) against offset alone (solid)",
                      width=1300, height=600, legend=dict(orientation="h", y=-0.25))
    return fig


def seed_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Strict recitation at each swept edit's headline, one point per seed, per model."""
    mixers = models(runs)
    fig = make_subplots(rows=1, cols=len(mixers), subplot_titles=[describe(m) for m in mixers], shared_yaxes=True)
    for c, mixer in enumerate(mixers, 1):
        for i, (key, text) in enumerate(methods(of_model(runs, mixer)[0])):
            pts = [(run["run"]["seed"], summary_row([run], mixer, key)) for run in of_model(runs, mixer)]
            pts = [(seed, s["strict"][0]) for seed, s in pts if "n" in s]
            fig.add_trace(go.Scatter(x=[text] * len(pts), y=[y for _, y in pts], mode="markers", name=text,
                                     hovertext=[f"seed {seed}" for seed, _ in pts], showlegend=False,
                                     marker=dict(size=10, color=_color(i))), row=1, col=c)
    fig.update_yaxes(title_text="strict recitation (memorized canaries of one seed)", range=[-0.03, 1.05], col=1)
    fig.update_layout(title="Headline edits, one point per seed", width=1300, height=600)
    return fig
