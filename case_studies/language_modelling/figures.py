"""The study's figures, built from the ``runs`` of results.json (plain dicts), each a plotly figure."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from . import paper
from .config import MODELS
from .tables import summary

# the study's update rules (config.rule_and_map), one colour each
RULE_COLOURS = dict(zip(("softmax", "sum", "delta", "rec-delta", "srwm"), qualitative.Plotly))


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def perplexity_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Validation perplexity per model: each seed a dot, the mean ± std (over seeds) a bar with error bars,
    coloured by update rule."""
    s = summary(runs)
    fig = go.Figure()
    for rule, g in s.groupby("rule", sort=False):
        fig.add_bar(x=g.model, y=g.ppl_mean, error_y=dict(type="data", array=g.ppl_std.fillna(0)), name=rule,
                    marker_color=RULE_COLOURS.get(rule), opacity=0.6)
    dots = pd.DataFrame([{"model": r["run"]["model"], "ppl": r["val_ppl"], "seed": r["run"]["seed"]}
                         for r in runs if _finite(r["val_ppl"])])
    if len(dots):
        fig.add_scatter(x=dots.model, y=dots.ppl, mode="markers", name="one seed", marker=dict(color="black", size=5),
                        text=[f"seed {s}" for s in dots.seed])
    lo = min(s.ppl_min.min(), dots.ppl.min() if len(dots) else math.inf)
    hi = max(s.ppl_max.max(), dots.ppl.max() if len(dots) else -math.inf)
    pad = 0.1 * (hi - lo) if hi > lo else 0.1
    fig.update_layout(title="Validation perplexity per byte (python-topics held-out documents), mean ± std over seeds",
                      yaxis_title="validation perplexity (per byte)", xaxis_title="model", barmode="overlay",
                      yaxis_range=[lo - pad, hi + pad], width=1000)
    fig.update_xaxes(categoryorder="array", categoryarray=[m for m in MODELS if m in set(s.model)])
    return fig


def paper_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Ours (mean ± std over seeds, per byte) against each paper's WikiText-103 validation perplexity (per
    word), one trace per paper table; only the relative order of either axis means anything."""
    s = summary(runs).set_index("model")
    fig = go.Figure()
    for key, table in paper.TABLES.items():
        pairs = [(m, row) for m, row in paper.rows_with_models(key) if m in s.index and _finite(s.loc[m, "ppl_mean"])]
        if not pairs:
            continue
        fig.add_scatter(x=[paper.score(row) for _, row in pairs], y=[s.loc[m, "ppl_mean"] for m, _ in pairs],
                        error_y=dict(type="data", array=[0 if not _finite(s.loc[m, "ppl_std"]) else s.loc[m, "ppl_std"]
                                                         for m, _ in pairs]),
                        mode="markers+text", text=[m for m, _ in pairs], textposition="top center",
                        name=f"{table['title']}")
    fig.update_layout(title="Our perplexity against the papers' (WikiText-103); relative order is what is compared",
                      xaxis_title="paper: WikiText-103 perplexity (per word; test where valid was not found)",
                      yaxis_title="ours: validation perplexity per byte (mean ± std)", width=1000, height=650)
    return fig


def learning_curves(runs: list[dict[str, Any]]) -> go.Figure:
    """Loss on the fixed evaluation batches (training documents) during training, mean over seeds per model."""
    rows = [{"model": r["run"]["model"], "rule": r["rule"], "step": int(k), "loss": v}
            for r in runs for k, v in r["eval_loss_by_step"].items() if _finite(v)]
    fig = go.Figure()
    if rows:
        df = pd.DataFrame(rows).groupby(["model", "rule", "step"], sort=False, as_index=False).loss.mean()
        for model in [m for m in MODELS if m in set(df.model)]:
            g = df[df.model == model].sort_values("step")
            fig.add_scatter(x=g.step, y=g.loss, mode="lines+markers", name=model,
                            line=dict(color=RULE_COLOURS.get(g.rule.iloc[0]),
                                      dash="dot" if g.rule.iloc[0] == "sum" else "solid"))
    fig.update_layout(title="Loss on the evaluation batches during training (mean over seeds)",
                      xaxis_title="step", yaxis_title="loss (nats per byte)", width=1000)
    return fig
