"""Part "favor" of the study: FAVOR+'s {redrawn, fixed} × {orthogonal, Gaussian} (× input scaled or not) with seeds.

Pure functions of the ``runs`` of its results.json: :func:`cell_stats` (per cell and S: mean final loss over
seeds with a t interval, successes), :func:`effects` (main effects and the interaction of the 2 × 2 at each
S and input scaling, as per-seed contrasts with a paired t interval and test), :func:`tables` (markdown) and
:func:`figure` (final loss per cell against S, one point per seed).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .._stats import paired_t, t_interval
from .figures import SUCCESS

FACTORS = ("redraw", "orthogonal", "scale")


def frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: S, seed, the three FAVOR+ choices, final eval loss and accuracy, stop reason."""
    rows = []
    for r in runs:
        if not r.get("favor_choices"):
            raise ValueError(f"run {r['name']} has no favor_choices; it is not a run of the favor part")
        redraw, orthogonal, scale = r["favor_choices"]
        rows.append({"S": r["num_keys"], "seed": r["seed"], "redraw": redraw, "orthogonal": orthogonal,
                     "scale": scale, "loss": r["final_eval_loss"], "acc": r["final_eval_acc"],
                     "capped": r["stop"] == "max_steps", "steps": r["steps"]})
    return pd.DataFrame(rows)


def cell_name(redraw: bool, orthogonal: bool) -> str:
    return f"{'redrawn' if redraw else 'fixed'}, {'orthogonal' if orthogonal else 'Gaussian'}"


def cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (scale, S, redraw, orthogonal): seeds, mean loss with its 95 % t interval, runs with loss ≤ 0.01,
    mean accuracy, runs stopped at the step cap."""
    rows = []
    for (scale, S, redraw, orthogonal), g in df.groupby(["scale", "S", "redraw", "orthogonal"]):
        mean, lo, hi = t_interval(g["loss"].to_numpy())
        rows.append({"scale": scale, "S": S, "redraw": redraw, "orthogonal": orthogonal, "n": len(g),
                     "mean": mean, "lo": lo, "hi": hi, "success": int((g["loss"] <= SUCCESS).sum()),
                     "acc": float(g["acc"].mean()), "capped": int(g["capped"].sum())})
    return pd.DataFrame(rows)


def effects(df: pd.DataFrame) -> pd.DataFrame:
    """At each input scaling (``input``: "unscaled", "scaled"; "both" for the scale contrast) and S, per seed (init and data shared by the four cells of that seed), the
    contrasts of the 2 × 2 on the final loss: redraw (redrawn − fixed, averaged over the feature kinds),
    orthogonal (orthogonal − Gaussian, averaged over redraw) and their interaction ((RO − FO) − (RG − FG));
    and the third factor, input scaling (scaled − unscaled, averaged over the four cells) where both ran.
    Each: mean over seeds, 95 % t interval, two-sided paired t p, seeds."""
    rows = []

    def add(scale: str, S: int, contrast: str, a: pd.Series, b: pd.Series) -> None:
        a, b = a.dropna(), b.dropna()
        seeds = sorted(set(a.index) & set(b.index))
        if len(seeds) >= 2:
            rows.append({"input": scale, "S": S, "contrast": contrast, **paired_t(a[seeds].to_numpy(), b[seeds].to_numpy())})

    for (scaled, S), g in df.groupby(["scale", "S"]):
        scale = "scaled" if scaled else "unscaled"
        wide = g.pivot_table(index="seed", columns=["redraw", "orthogonal"], values="loss")
        if wide.shape[1] < 4:
            continue
        ro, rg, fo, fg = (wide[(r, o)] for r, o in ((True, True), (True, False), (False, True), (False, False)))
        add(scale, S, "redraw", (ro + rg) / 2, (fo + fg) / 2)
        add(scale, S, "orthogonal", (ro + fo) / 2, (rg + fg) / 2)
        add(scale, S, "interaction", ro - fo, rg - fg)
        add(scale, S, "redraw (orthogonal only)", ro, fo)
        add(scale, S, "redraw (Gaussian only)", rg, fg)
        add(scale, S, "orthogonal (redrawn only)", ro, rg)
        add(scale, S, "orthogonal (fixed only)", fo, fg)
    for S, g in df.groupby("S"):
        wide = g.pivot_table(index="seed", columns=["scale", "redraw", "orthogonal"], values="loss")
        if wide.shape[1] == 8:
            add("both", S, "scale", wide[True].mean(axis=1, skipna=False), wide[False].mean(axis=1, skipna=False))
    return pd.DataFrame(rows)


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:.4f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def tables(results: dict[str, Any]) -> str:
    df = frame(results["runs"])
    cells, eff = cell_stats(df), effects(df)
    seeds = sorted(df["seed"].unique())
    out = [f"# capacity, part favor: FAVOR+ (m = 64) 2 × 2 with seeds {', '.join(map(str, seeds))}", "",
           "Final eval loss: mean over seeds [95 % t interval]; successes = runs ending ≤ 0.01; "
           "acc = mean accuracy; † = some runs stopped at the step cap.", ""]
    for scale in sorted(cells["scale"].unique()):
        c = cells[cells["scale"] == scale]
        grid = sorted(c["S"].unique())
        out += [f"## Input {'scaled by d^-¼' if scale else 'unscaled (the paper)'}", "",
                "| features | " + " | ".join(f"S = {S}" for S in grid) + " |", "|---|" + "---|" * len(grid)]
        for redraw in (True, False):
            for orthogonal in (True, False):
                cols = []
                for S in grid:
                    row = c[(c["S"] == S) & (c["redraw"] == redraw) & (c["orthogonal"] == orthogonal)]
                    if row.empty:
                        cols.append("")
                        continue
                    r = row.iloc[0]
                    cols.append(f"{_fmt(r['mean'])} [{_fmt(r['lo'])}, {_fmt(r['hi'])}] {r['success']}/{r['n']}, "
                                f"acc {r['acc']:.2f}{' †' * int(r['capped'] > 0)}")
                out.append(f"| {cell_name(redraw, orthogonal)} | " + " | ".join(cols) + " |")
        out.append("")
    if not eff.empty:
        out += ["## Effects on the final loss (paired by seed)", "",
                "Mean difference over seeds [95 % t interval], paired t p. redraw = redrawn − fixed, orthogonal = "
                "orthogonal − Gaussian (each averaged over the other factor), interaction = (RO − FO) − (RG − FG), "
                "scale = scaled − unscaled (averaged over the four cells).", "",
                "| input | S | contrast | seeds | difference [95 % CI] | p |", "|---|---|---|---|---|---|"]
        for _, e in eff.iterrows():
            out.append(f"| {e['input']} | {e['S']} | {e['contrast']} | {e['n']} | {_fmt(e['mean'])} "
                       f"[{_fmt(e['lo'])}, {_fmt(e['hi'])}] | {_p(e['p'])} |")
        out.append("")
    return "\n".join(out)


def figure(runs: list[dict[str, Any]]) -> go.Figure:
    """Final eval loss against S, one marker per seed and a line through the means, per cell (dashed: input
    scaled); the paper's success threshold dotted."""
    df = frame(runs)
    fig = go.Figure()
    colours = {(True, True): "#d62728", (True, False): "#ff7f0e", (False, True): "#1f77b4", (False, False): "#2ca02c"}
    for (scale, redraw, orthogonal), g in df.groupby(["scale", "redraw", "orthogonal"]):
        name = cell_name(redraw, orthogonal) + (", scaled" if scale else "")
        colour, dash = colours[(redraw, orthogonal)], "dash" if scale else "solid"
        means = g.groupby("S")["loss"].mean()
        fig.add_scatter(x=means.index, y=means.values, mode="lines", name=name, legendgroup=name,
                        line={"color": colour, "dash": dash})
        fig.add_scatter(x=g["S"], y=g["loss"], mode="markers", name=name, legendgroup=name, showlegend=False,
                        marker={"color": colour, "symbol": "circle-open" if scale else "circle"},
                        text=[f"seed {s}" for s in g["seed"]])
    fig.add_hline(y=SUCCESS, line_dash="dot", annotation_text="success ≤ 0.01")
    fig.update_layout(title="FAVOR+ (m = 64): final eval loss per seed, by feature choice",
                      xaxis_title="S (keys stored)", yaxis_title="final eval loss", yaxis_type="log",
                      width=900, height=550)
    return fig
