"""The study's figures, built from the ``runs`` of results.json (plain dicts), each a plotly figure."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from workbench.mixers import describe
from workbench.plots.probe_accuracy import ACCURACY_NAME, probe_against_accuracy

from .config import MIXERS_STUDIED

MIXER_LABELS = {m: describe(m) for m in MIXERS_STUDIED}  # in the study's table order
METRIC_LABELS = {"fidelity": "write fidelity cos(Wᵀk, v)", "retrieval_error": "retrieval error ‖Wᵀk − v‖/‖v‖",
                 "decodes": "logit lens decodes the value"}


def _mixer(run: dict) -> str:
    return run["run"]["mixer"]


def _d(run: dict) -> int:
    return run["run"]["d_model"]


def _lag_index(df: pd.DataFrame) -> pd.DataFrame:
    """Lag bins 0, 1, 2, 4, … placed at 0, 1, 2, 3, … (a log axis without dropping lag 0)."""
    return df.assign(lag=[0 if v == 0 else int(v).bit_length() for v in df["lag"]])


def _lag_ticks(fig: go.Figure, top: int) -> None:
    labels = ["0", "1"] + [f"{1 << (i - 1)}–{(1 << i) - 1}" for i in range(2, top + 1)]
    fig.update_xaxes(tickvals=list(range(top + 1)), ticktext=labels)


def _ordered(runs: list[dict]) -> tuple[list[int], list[str]]:
    ds = sorted({_d(r) for r in runs})
    mixers = [m for m in MIXER_LABELS if any(_mixer(r) == m for r in runs)]
    return ds, mixers


def accuracy_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Recall accuracy per training setting: bars per mixer, one panel per d_model."""
    ds, mixers = _ordered(runs)
    fig = make_subplots(rows=1, cols=len(ds), subplot_titles=[f"d_model = {d}" for d in ds], shared_yaxes=True,
                        x_title="MQAR setting (sequence length T, key–value pairs kv)", y_title="accuracy")
    for c, d in enumerate(ds, start=1):
        for i, m in enumerate(mixers):
            run = next((r for r in runs if _d(r) == d and _mixer(r) == m), None)
            if run is None:
                continue
            fig.add_trace(go.Bar(x=[f"T={a['seq_len']}, kv={a['num_kv_pairs']}" for a in run["accuracy"]],
                                 y=[a["accuracy"] for a in run["accuracy"]], name=MIXER_LABELS[m], legendgroup=m,
                                 marker_color=qualitative.Plotly[i], showlegend=c == 1), row=1, col=c)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title="MQAR recall accuracy (2 layers; one model per mixer and width)", barmode="group")
    return fig


def sweep_figure(runs: list[dict[str, Any]], trained_kv: int) -> go.Figure:
    """Accuracy against the number of pairs at fixed length, past the most pairs seen in training."""
    ds, mixers = _ordered(runs)
    seq_len = runs[0]["capacity_sweep"][0]["seq_len"]
    fig = make_subplots(rows=1, cols=len(ds), subplot_titles=[f"d_model = {d}" for d in ds], shared_yaxes=True,
                        x_title=f"key–value pairs in a sequence of {seq_len} (dotted: most seen in training)",
                        y_title="accuracy")
    for c, d in enumerate(ds, start=1):
        for i, m in enumerate(mixers):
            run = next((r for r in runs if _d(r) == d and _mixer(r) == m), None)
            if run is None:
                continue
            sweep = run["capacity_sweep"]
            fig.add_trace(go.Scatter(x=[s["num_kv_pairs"] for s in sweep], y=[s["accuracy"] for s in sweep],
                                     mode="lines+markers", name=MIXER_LABELS[m], legendgroup=m,
                                     line=dict(color=qualitative.Plotly[i]), showlegend=c == 1), row=1, col=c)
        fig.add_vline(x=trained_kv, line_dash="dot", line_color="grey", row=1, col=c)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title="Where recall breaks: accuracy against pairs stored")
    return fig


def probe_grid(runs: list[dict[str, Any]], by: str, metric: str, convention: str = "write") -> go.Figure:
    """The probe's ``metric`` by ``by`` ("n_stored" or "lag") per layer and head, one panel per fast-weight
    model (rows d_model, columns mixer), beside the model's accuracy (capacity sweep / accuracy by lag)."""
    if by not in ("n_stored", "lag"):
        raise ValueError(f"by must be 'n_stored' or 'lag', got {by!r}")
    probed = [r for r in runs if r.get("probe")]
    if not probed:
        raise ValueError("no run has a probe (softmax attention keeps no fast weights); nothing to plot")
    ds, mixers = _ordered(probed)
    titles = [f"{MIXER_LABELS[m]}, d={d}" for d in ds for m in mixers]
    axis = {"n_stored": "pairs stored (probe) / pairs in the sequence (accuracy)",
            "lag": "lag = t − value position, power-of-two bins (accuracy: at the queries)"}[by]
    fig = make_subplots(rows=len(ds), cols=len(mixers), subplot_titles=titles, shared_xaxes=True, shared_yaxes=True,
                        x_title=axis, y_title=metric)
    seen, top = set(), 0
    for r, d in enumerate(ds, start=1):
        for c, m in enumerate(mixers, start=1):
            run = next((x for x in probed if _d(x) == d and _mixer(x) == m), None)
            if run is None:
                continue
            table = pd.DataFrame(run["probe"][f"by_{by}"])
            agg = table[table["convention"] == convention]
            ctrl = table[table["convention"] == "control"]
            if by == "n_stored":
                acc = pd.DataFrame(run["capacity_sweep"]).rename(columns={"num_kv_pairs": "n_stored"})
                acc = acc[acc["n_stored"] <= agg["n_stored"].max()]
            else:
                agg, ctrl = _lag_index(agg), _lag_index(ctrl)
                acc = _lag_index(pd.DataFrame(run["accuracy_by_lag"]).rename(columns={"lag_bin": "lag"}))
                top = max(top, int(agg["lag"].max()), int(acc["lag"].max()))
            panel = probe_against_accuracy(agg, by, metric, acc, control=ctrl if len(ctrl) else None)
            for trace in panel.data:
                trace.showlegend = trace.name not in seen
                seen.add(trace.name)
                fig.add_trace(trace, row=r, col=c)
    if by == "lag":
        _lag_ticks(fig, top)
    setting = run["probe"]["capacity_setting" if by == "n_stored" else "lag_setting"]
    fig.update_layout(
        title=f"{METRIC_LABELS.get(metric, metric)} by {by} ({convention} pairs; T={setting['seq_len']}, "
              f"kv={setting['num_kv_pairs']}); dotted: control pairs, dashed: {ACCURACY_NAME}",
        height=650)
    return fig


def readout_figure(runs: list[dict[str, Any]]) -> go.Figure:
    """cos(hook_z at the query, hook_v at the value position) by lag, per layer and head, every mixer."""
    ds, mixers = _ordered(runs)
    titles = [f"{MIXER_LABELS[m]}, d={d}" for d in ds for m in mixers]
    fig = make_subplots(rows=len(ds), cols=len(mixers), subplot_titles=titles, shared_xaxes=True, shared_yaxes=True,
                        x_title="lag = query position − value position, power-of-two bins",
                        y_title="cos(z at the query, v at the value position)")
    seen, top = set(), 0
    for r, d in enumerate(ds, start=1):
        for c, m in enumerate(mixers, start=1):
            run = next((x for x in runs if _d(x) == d and _mixer(x) == m), None)
            if run is None:
                continue
            agg = _lag_index(pd.DataFrame(run["readout_by_lag"]).rename(columns={"lag_bin": "lag"}))
            acc = _lag_index(pd.DataFrame(run["accuracy_by_lag"]).rename(columns={"lag_bin": "lag"}))
            top = max(top, int(agg["lag"].max()), int(acc["lag"].max()))
            for trace in probe_against_accuracy(agg, "lag", "readout_cos", acc).data:
                trace.showlegend = trace.name not in seen
                seen.add(trace.name)
                fig.add_trace(trace, row=r, col=c)
    _lag_ticks(fig, top)
    fig.update_layout(title="What each head reads out at the query, beside the model's accuracy (dashed)", height=650)
    return fig


def pair_grid(runs: list[dict[str, Any]], metric: str, trained_kv: int, at: str = "write",
              convention: str = "write") -> go.Figure:
    """Per pair of the capacity setting's context (x: pair number, 1 = first): the probe's ``metric``
    ("fidelity", "retrieval_error", "decodes" at the write or at the ``end``; or "beta", the write
    strength at the value position) per layer and head, beside the model's accuracy on that pair."""
    probed = [r for r in runs if r.get("probe") and (metric != "beta" or r["probe"].get("beta_by_pair"))]
    if not probed:
        raise ValueError(f"no run has a probe with {metric!r}; nothing to plot")
    ds, mixers = _ordered(probed)
    titles = [f"{MIXER_LABELS[m]}, d={d}" for d in ds for m in mixers]
    fig = make_subplots(rows=len(ds), cols=len(mixers), subplot_titles=titles, shared_xaxes=True, shared_yaxes=True,
                        x_title="pair number in the context (1 = first; dotted: most pairs seen in training)",
                        y_title=metric)
    seen = set()
    for r, d in enumerate(ds, start=1):
        for c, m in enumerate(mixers, start=1):
            run = next((x for x in probed if _d(x) == d and _mixer(x) == m), None)
            if run is None:
                continue
            if metric == "beta":
                agg, ctrl = pd.DataFrame(run["probe"]["beta_by_pair"]), None
            else:
                table = pd.DataFrame(run["probe"][f"by_pair_at_{at}"])
                agg, ctrl = table[table["convention"] == convention], table[table["convention"] == "control"]
                ctrl = ctrl.assign(pair=ctrl["pair"] + 1)  # control i pairs key i with value i+1: plot it at i+1
            agg = agg.assign(pair=agg["pair"] + 1)
            acc = pd.DataFrame(run["accuracy_by_pair"]).assign(pair=lambda t: t["pair"] + 1)
            for trace in probe_against_accuracy(agg, "pair", metric, acc, control=ctrl).data:
                trace.showlegend = trace.name not in seen
                seen.add(trace.name)
                fig.add_trace(trace, row=r, col=c)
            fig.add_vline(x=trained_kv + 0.5, line_dash="dot", line_color="grey", row=r, col=c)
    setting = probed[0]["probe"]["capacity_setting"]
    what = "write strength β at the value position" if metric == "beta" else \
        f"{METRIC_LABELS.get(metric, metric)} {'right after the write' if at == 'write' else 'at the last position'}"
    fig.update_layout(title=f"Which pairs get stored: {what} (T={setting['seq_len']}, kv={setting['num_kv_pairs']}); "
                            f"dashed: {ACCURACY_NAME} on the pair", height=650)
    return fig
