"""The study's figures, built from the ``runs`` of results.json (plain dicts), each a plotly figure."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

PALETTE = qualitative.Dark24  # 11 models in setting 1: Plotly's 10 colours would repeat
SUCCESS = 0.01  # the paper calls a run successful when its final eval loss is ≤ 0.01


def _curves(runs: list[dict[str, Any]], setting: int) -> dict[str, list[dict]]:
    """Runs of one setting grouped by model name (in first-seen order), each sorted by S."""
    curves: dict[str, list[dict]] = {}
    for r in runs:
        if r["setting"] == setting:
            curves.setdefault(r["model"], []).append(r)
    return {name: sorted(rs, key=lambda r: r["num_keys"]) for name, rs in curves.items()}


def _name(run: dict, setting: int) -> str:
    return f"{run['label']} · {run['update']}" if setting == 2 else run["label"]


def _style(i: int, run: dict, setting: int) -> dict:
    """Setting 2: one colour per φ, solid delta, dashed sum; fwm dotted in a colour of its own per φ.
    Setting 1: one colour per model."""
    if setting == 2:
        colour = {"elu1": 0, "dpfp": 1 + run["model"].startswith("dpfp2")}.get(run["feature_map"], 6)
        if run["update"] == "fwm":  # red, purple, black: apart from the blue, pink and green of sum/delta
            return dict(color=PALETTE[{0: 3, 1: 7, 2: 5}.get(colour, 9)], dash="dot")
        return dict(color=PALETTE[colour], dash="solid" if run["update"] == "delta" else "dash")
    return dict(color=PALETTE[i % len(PALETTE)])


def _settings(runs: list[dict[str, Any]]) -> list[int]:
    present = sorted({r["setting"] for r in runs})
    if not present:
        raise ValueError("the results hold no runs")
    return present


LEGEND = dict(font=dict(size=9), tracegroupgap=0)
HEIGHT = 650  # px: the 23 legend entries (setting 2 with FWM) fit
TITLES = {1: "setting 1: each key once", 2: "setting 2: keys re-bound, sum vs delta vs FWM"}


def loss_vs_keys(runs: list[dict[str, Any]], paper: dict[int, dict[str, dict[int, float]]] | None = None) -> go.Figure:
    """Final eval loss against S, one line per model (log y), one panel per setting, the 0.01 success line,
    and — if given — the paper's final losses at the same S as open circles (``paper``: setting → model
    name → {S: loss})."""
    settings = _settings(runs)
    fig = make_subplots(rows=1, cols=len(settings), subplot_titles=[TITLES[s] for s in settings],
                        x_title="S (keys = values stored)", y_title="final eval loss 0.5‖onehot − ŷ‖²")
    for col, setting in enumerate(settings, start=1):
        for i, (name, rs) in enumerate(_curves(runs, setting).items()):
            style = _style(i, rs[0], setting)
            fig.add_trace(go.Scatter(x=[r["num_keys"] for r in rs], y=[max(r["final_eval_loss"], 1e-5) for r in rs],
                                     mode="lines+markers", name=_name(rs[0], setting), legendgroup=f"{setting}{name}", line=style),
                          row=1, col=col)
            ours = {r["num_keys"] for r in rs}
            ref = {S: v for S, v in (paper or {}).get(setting, {}).get(name, {}).items() if S in ours and v == v}
            if ref:
                fig.add_trace(go.Scatter(x=list(ref), y=[max(v, 1e-5) for v in ref.values()], mode="markers",
                                         name=f"{_name(rs[0], setting)} (paper)", legendgroup=f"{setting}{name}", showlegend=False,
                                         marker=dict(symbol="circle-open", size=11, color=style["color"])),
                              row=1, col=col)
        fig.add_hline(y=SUCCESS, line=dict(color="grey", dash="dot"), row=1, col=col)
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(title="Final eval loss vs number of keys S (lines: ours; open circles: the paper's logs; "
                            "dotted: 0.01)", legend=LEGEND, height=HEIGHT)
    return fig


def probe_vs_accuracy(runs: list[dict[str, Any]]) -> go.Figure:
    """Per model and S: the model's accuracy (solid) beside the fraction of stored pairs the memory W decodes
    when read with their own write keys (dotted); right: the write fidelity cos(Wᵀk_i, onehot v_i). One row
    per setting."""
    settings = [s for s in _settings(runs) if any(r["setting"] == s and r["probe"] for r in runs)]
    if not settings:
        raise ValueError("no probed (fast-weight) runs in the results")
    titles = [t for s in settings for t in (f"setting {s}: accuracy", f"setting {s}: write fidelity")]
    fig = make_subplots(rows=len(settings), cols=2, subplot_titles=titles, x_title="S (keys = values stored)",
                        vertical_spacing=0.12)
    for row, setting in enumerate(settings, start=1):
        curves = {n: rs for n, rs in _curves(runs, setting).items() if rs[0]["probe"] is not None}
        for i, (name, rs) in enumerate(curves.items()):
            colour = _style(i, rs[0], setting)["color"]
            S = [r["num_keys"] for r in rs]
            label = _name(rs[0], setting)
            fig.add_trace(go.Scatter(x=S, y=[r["probe"]["model_accuracy"] for r in rs], mode="lines+markers",
                                     name=label, legendgroup=f"{setting}{name}", line=dict(color=colour)), row=row, col=1)
            fig.add_trace(go.Scatter(x=S, y=[r["probe"]["probe_decodes"] for r in rs], mode="lines+markers",
                                     name=f"{label} (probe)", legendgroup=f"{setting}{name}", showlegend=False,
                                     line=dict(color=colour, dash="dot"), marker=dict(symbol="diamond-open")),
                          row=row, col=1)
            fig.add_trace(go.Scatter(x=S, y=[r["probe"]["fidelity"] for r in rs], mode="lines+markers", name=label,
                                     legendgroup=f"{setting}{name}", showlegend=False, line=dict(color=colour)), row=row, col=2)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title="What W holds vs what the model retrieves<br><sup>accuracy: model (solid) and probe "
                            "argmax Wᵀk_i = v_i (dotted); fidelity: cos(Wᵀk_i, onehot v_i)</sup>", legend=LEGEND, height=HEIGHT)
    return fig


def learning_curves(runs: list[dict[str, Any]]) -> go.Figure:
    """Eval loss against training step for every run (log y), one panel per setting: which runs hit the cap."""
    settings = _settings(runs)
    fig = make_subplots(rows=1, cols=len(settings), subplot_titles=[TITLES[s] for s in settings],
                        x_title="step", y_title="eval loss")
    for col, setting in enumerate(settings, start=1):
        for i, (name, rs) in enumerate(_curves(runs, setting).items()):
            style = _style(i, rs[0], setting)
            for j, r in enumerate(rs):
                fig.add_trace(go.Scatter(x=[h["step"] for h in r["history"]],
                                         y=[max(h["eval_loss"], 1e-5) for h in r["history"]], mode="lines",
                                         name=_name(r, setting), legendgroup=f"{setting}{name}", showlegend=j == 0,
                                         line=dict(color=style["color"], dash=style.get("dash", "solid"), width=1),
                                         hovertext=f"S = {r['num_keys']} ({r['stop']})"), row=1, col=col)
        fig.add_hline(y=SUCCESS, line=dict(color="grey", dash="dot"), row=1, col=col)
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_layout(title="Eval loss during training, one line per run (hover: S and why it stopped)", legend=LEGEND, height=HEIGHT)
    return fig
