"""Figures of the outlier study, drawn from ``results.json`` entries (plotly; PNG via case_studies._report)."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.mixers import names

from .tables import BLOCK_NAME, OPT_NAME

COLORS = {("pre_norm", "adamw"): "#d62728", ("pre_norm", "soap"): "#ff9896",
          ("outlier_protected", "adamw"): "#1f77b4", ("outlier_protected", "soap"): "#2ca02c"}


def _label(run: dict) -> str:
    return f"{BLOCK_NAME[run['block']]} + {OPT_NAME[run['optimizer']]}"


def kurtosis_over_training(runs: list[dict], site: str = "resid_post") -> go.Figure:
    """Largest kurtosis over layers at ``site`` against training step: one panel per mixer, one line per
    (block, optimiser)."""
    mixers = list(dict.fromkeys(r["run"]["mixer"] for r in runs))
    fig = make_subplots(rows=1, cols=len(mixers), subplot_titles=mixers, shared_yaxes=True)
    for col, mixer in enumerate(mixers, start=1):
        for r in (r for r in runs if r["run"]["mixer"] == mixer):
            t = r["over_training"]
            best: dict[int, float] = {}
            for step, s, k in zip(t["step"], t["site"], t["kurtosis"]):
                if s == site:
                    best[step] = max(best.get(step, 0.0), k)
            steps = sorted(best)
            fig.add_trace(go.Scatter(x=steps, y=[best[s] for s in steps], mode="lines+markers", name=_label(r["run"]),
                                     legendgroup=_label(r["run"]), showlegend=col == 1,
                                     line=dict(color=COLORS[(r["run"]["block"], r["run"]["optimizer"])])),
                          row=1, col=col)
        fig.update_xaxes(title_text="training step", row=1, col=col)
    fig.update_yaxes(title_text=f"kurtosis, {site} (max over layers)", type="log", row=1, col=1)
    fig.update_layout(title=f"Outlier features over training: kurtosis of {site}", width=1000, height=450)
    return fig


def quantisation_vs_kurtosis(runs: list[dict], key: str = "per_tensor", label: str = "W8A8") -> go.Figure:
    """Perplexity ratio (quantised / float) of ``r["w8a8"][key]`` against the final kurtosis of the residual
    stream (left) and of the MLP hidden layer (right), one marker per run."""
    sites = ("resid_post", "mlp_hidden")
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=[f"{s} (max over layers)" for s in sites])
    symbols = dict(zip(names(), ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon")))
    for col, site in enumerate(sites, start=1):
        for r in runs:
            run = r["run"]
            fig.add_trace(go.Scatter(
                x=[r["final_kurtosis"][site]], y=[r["w8a8"][key]["ppl_ratio"]], mode="markers",
                name=f"{run['mixer']}, {_label(run)}", legendgroup=r["name"], showlegend=col == 1,
                marker=dict(size=12, symbol=symbols[run["mixer"]], color=COLORS[(run["block"], run["optimizer"])])),
                row=1, col=col)
        fig.update_xaxes(title_text="kurtosis of the final model", type="log", row=1, col=col)
    fig.update_yaxes(title_text=f"validation ppl {label} / float", row=1, col=1)
    fig.update_layout(title=f"{label} cost against outlier features (per-tensor activations)", width=1000, height=500)
    return fig


def perplexity_bars(runs: list[dict]) -> go.Figure:
    """Validation perplexity of each final model: float, W8A8 per-tensor, W8A8 per-token."""
    names = [r["name"] for r in runs]
    fig = go.Figure([
        go.Bar(name="float", x=names, y=[r["val_ppl"] for r in runs]),
        go.Bar(name="W8A8 per-tensor", x=names, y=[r["w8a8"]["per_tensor"]["ppl_w8a8"] for r in runs]),
        go.Bar(name="W8A8 per-token", x=names, y=[r["w8a8"]["per_token"]["ppl_w8a8"] for r in runs]),
    ])
    fig.update_layout(barmode="group", title="Validation perplexity before and after W8A8", yaxis_title="perplexity",
                      width=1000, height=500)
    return fig


def all_figures(runs: list[dict]) -> dict[str, go.Figure]:
    return {"kurtosis_resid_over_training": kurtosis_over_training(runs, "resid_post"),
            "kurtosis_mlp_hidden_over_training": kurtosis_over_training(runs, "mlp_hidden"),
            "w8a8_vs_kurtosis": quantisation_vs_kurtosis(runs, "per_tensor", "W8A8"),
            "w8a4_vs_kurtosis": quantisation_vs_kurtosis(runs, "per_tensor_a4", "W8A4"),
            "perplexity_w8a8": perplexity_bars(runs)}
