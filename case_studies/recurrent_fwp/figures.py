"""The study's figures, built from the ``runs`` of results.json (plain dicts), each a plotly figure."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from workbench.mixers import describe

from .config import MIXERS_STUDIED, TASKS
from .tables import TASK_LABELS

COLORS = {m: qualitative.Plotly[i] for i, m in enumerate(MIXERS_STUDIED)}


def _runs(runs: list[dict], task: str) -> list[dict]:
    return sorted([r for r in runs if r["run"]["task"] == task],
                  key=lambda r: (MIXERS_STUDIED.index(r["run"]["mixer"]), r["run"]["seed"]))


def _label(run: dict) -> str:
    return f"{describe(run['run']['mixer'])} (seed {run['run']['seed']})"


def accuracy_figure(runs: list[dict[str, Any]], metric: str = "sequence") -> go.Figure:
    """Test accuracy per model, one panel per task, with Wilson 95 % intervals (``metric``: answer/sequence)."""
    if metric not in ("answer", "sequence"):
        raise ValueError(f"metric must be 'answer' or 'sequence', got {metric!r}")
    fig = make_subplots(rows=1, cols=len(TASKS), subplot_titles=[TASK_LABELS[t] for t in TASKS], shared_yaxes=True)
    for c, task in enumerate(TASKS, start=1):
        for r in _runs(runs, task):
            t = r["test"]
            acc, (lo, hi) = t[f"{metric}_accuracy"], t[f"{metric}_ci95"]
            fig.add_trace(go.Bar(x=[_label(r)], y=[acc], marker_color=COLORS[r["run"]["mixer"]], showlegend=False,
                                 error_y=dict(type="data", symmetric=False, array=[hi - acc], arrayminus=[acc - lo])),
                          row=1, col=c)
    fig.update_yaxes(range=[0, 1.02], title_text=f"test {metric} accuracy", col=1)
    fig.update_layout(title=f"Test {metric} accuracy per run (error bars: Wilson 95 % interval over the test sequences)")
    return fig


def training_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Held-out answer accuracy during training, one panel per task."""
    fig = make_subplots(rows=1, cols=len(TASKS), subplot_titles=[TASK_LABELS[t] for t in TASKS], shared_yaxes=True,
                        x_title="training step")
    for c, task in enumerate(TASKS, start=1):
        for r in _runs(runs, task):
            h = r["history"]
            fig.add_trace(go.Scatter(x=[p["step"] for p in h], y=[p["eval_acc"] for p in h], mode="lines+markers",
                                     name=_label(r), legendgroup=r["run"]["mixer"], showlegend=c == 1,
                                     line=dict(color=COLORS[r["run"]["mixer"]])), row=1, col=c)
    fig.update_yaxes(range=[0, 1.02], title_text="eval answer accuracy", col=1)
    fig.update_layout(title="Answer accuracy on the training run's held-out batches")
    return fig


def decoding_figure(runs: list[dict[str, Any]], task: str) -> go.Figure:
    """Linear-probe accuracy of each state target from each layer's output, bars per model; the dashed
    line is the majority-class baseline."""
    mine = _runs(runs, task)
    targets = list(dict.fromkeys(row["target"] for row in mine[0]["state_decoding"])) if mine else []
    fig = make_subplots(rows=1, cols=max(len(targets), 1), subplot_titles=targets, shared_yaxes=True,
                        x_title="layer output probed")
    for c, target in enumerate(targets, start=1):
        for r in mine:
            rows = [row for row in r["state_decoding"] if row["target"] == target]
            fig.add_trace(go.Bar(x=[f"layer {row['layer']}" for row in rows], y=[row["accuracy"] for row in rows],
                                 name=_label(r), legendgroup=_label(r), showlegend=c == 1,
                                 marker_color=COLORS[r["run"]["mixer"]]), row=1, col=c)
        base = next(row["baseline"] for row in mine[0]["state_decoding"] if row["target"] == target)
        fig.add_hline(y=base, line_dash="dash", line_color="gray", row=1, col=c)
    fig.update_yaxes(range=[0, 1.02], title_text="probe accuracy (held-out sequences)", col=1)
    fig.update_layout(title=f"{TASK_LABELS[task]}: decoding the task state linearly from each layer", barmode="group")
    return fig


def key_share_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Recurrent share of the written key logits per token kind and layer (models with a recurrent key term)."""
    fig = make_subplots(rows=1, cols=len(TASKS), subplot_titles=[TASK_LABELS[t] for t in TASKS], shared_yaxes=True)
    for c, task in enumerate(TASKS, start=1):
        for r in _runs(runs, task):
            rows = [row for row in r["keys"] if row["recurrent_share"] is not None]
            for layer in sorted({row["layer"] for row in rows}):
                at = [row for row in rows if row["layer"] == layer]
                fig.add_trace(go.Bar(x=[row["kind"] for row in at], y=[row["recurrent_share"] for row in at],
                                     name=f"{_label(r)}, layer {layer}", legendgroup=f"{_label(r)}, layer {layer}",
                                     showlegend=c == 1, marker_color=qualitative.Set2[layer % 8]),
                              row=1, col=c)
    fig.update_yaxes(range=[0, 1], title_text="‖c(R_k f_t)‖ / (‖c(k̃_t)‖ + ‖c(R_k f_t)‖)", col=1)
    fig.update_layout(title="How much of the written key comes from the recurrent term (Recurrent Delta Net)",
                      barmode="group")
    return fig
