"""Part "uncapped" of the study: setting 1 near each capacity, trained to the paper's stopping rule, with seeds.

Pure functions of a results dict (its ``runs``, and the planned runs in ``study.runs`` so that a partial
results.json says which cells are still to run): :func:`frame` (one row per planned run, done or not),
:func:`cell_stats` (per model and S: mean final loss over the seeds done, 95 % t interval, successes),
:func:`capacities` (per model and seed: the largest S that succeeds, and whether the grid has decided it),
:func:`tables` (markdown) and :func:`figure` (final loss against S, one point per seed).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import pandas as pd
import plotly.graph_objects as go

from .._stats import t_interval
from . import paper
from .config import Model, Run
from .figures import SUCCESS


def _planned(results: dict[str, Any]) -> list[Run]:
    return [Run(r["setting"], r["num_keys"], Model(**r["model"]), r["seed"]) for r in results["study"]["runs"]]


def frame(results: dict[str, Any]) -> pd.DataFrame:
    """One row per planned run: model, label, S, seed, done, and for the done ones the final eval loss and
    accuracy, success (final loss ≤ 0.01), stop reason, steps and training seconds."""
    done = {r["name"]: r for r in results["runs"]}
    rows = []
    for run in _planned(results):
        r = done.pop(run.name, None)
        rows.append({"model": run.model.name, "label": run.model.label, "S": run.num_keys, "seed": run.seed,
                     "done": r is not None,
                     "loss": r["final_eval_loss"] if r else math.nan, "acc": r["final_eval_acc"] if r else math.nan,
                     "success": bool(r["final_eval_loss"] <= SUCCESS) if r else None,
                     "stop": r["stop"] if r else None, "steps": r["steps"] if r else None,
                     "seconds": r["train_seconds"] if r else math.nan})
    if done:
        raise ValueError(f"runs {sorted(done)} are not in this study's plan (study.runs); not a results.json of "
                         "this part, or made with another grid")
    return pd.DataFrame(rows)


def cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, S) in plan order: seeds planned and done, mean final loss over the done ones with its 95 % t
    interval, successes, mean accuracy, mean steps, and runs that hit the 100 000-step cap."""
    rows = []
    models = list(dict.fromkeys(df["model"]))
    for (model, S), g in sorted(df.groupby(["model", "S"], sort=False), key=lambda kv: (models.index(kv[0][0]), kv[0][1])):
        d = g[g["done"]].sort_values("seed")
        mean, lo, hi = t_interval(d["loss"].to_numpy())
        rows.append({"model": model, "label": g["label"].iloc[0], "S": S, "planned": len(g), "n": len(d),
                     "mean": mean, "lo": lo, "hi": hi, "success": int(d["success"].sum()),
                     "per_seed": {int(k): float(v) for k, v in zip(d["seed"], d["loss"])},
                     "acc": float(d["acc"].mean()) if len(d) else math.nan,
                     "steps": float(d["steps"].astype(float).mean()) if len(d) else math.nan,
                     "capped": int((d["stop"] == "max_steps").sum())})
    return pd.DataFrame(rows)


def capacity(cells: pd.DataFrame) -> dict[str, Any]:
    """For one model and seed (rows S, done, success): ``value`` the largest S that succeeds among the done
    runs (0 if none), ``decided`` whether every larger S of the grid is done (so no pending run can raise
    it), ``censored`` "above" if it is the grid's largest S, "below" if even the smallest S failed,
    ``holes`` the S below it that failed."""
    cells = cells.sort_values("S")
    grid = cells["S"].tolist()
    wins = cells[cells["done"] & (cells["success"] == True)]["S"].tolist()  # noqa: E712 (None for pending)
    value = max(wins) if wins else 0
    above = cells[cells["S"] > value]
    decided = bool(above["done"].all())
    censored = ("above" if value == grid[-1] else "below" if value == 0 and decided else None)
    holes = cells[(cells["S"] < value) & cells["done"] & (cells["success"] == False)]["S"].tolist()  # noqa: E712
    return {"value": value, "decided": decided, "censored": censored, "holes": holes,
            "fails_at": int(above["S"].min()) if len(above) and decided else None}


def capacities(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, seed): :func:`capacity`."""
    rows = []
    for (model, seed), g in df.groupby(["model", "seed"], sort=False):
        rows.append({"model": model, "label": g["label"].iloc[0], "seed": seed, "runs_done": int(g["done"].sum()),
                     "runs": len(g), **capacity(g)})
    return pd.DataFrame(rows)


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "–"
    return f"{x:.4f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.1e}"


def _capacity_text(c: pd.Series, grid_min: int) -> str:
    if c["runs_done"] == 0:
        return "not run yet"
    if not c["decided"]:
        return f"≥ {c['value']} (larger S pending)" if c["value"] else "– (pending)"
    if c["censored"] == "above":
        text = f"≥ {c['value']} (grid's largest S)"
    elif c["censored"] == "below":
        text = f"< {grid_min} (fails at every S)"
    else:
        text = f"{c['value']} (fails at {int(c['fails_at'])})"
    return text + (f", but fails at {', '.join(map(str, c['holes']))}" if c["holes"] else "")


def _capacity_mean(group: pd.DataFrame) -> str:
    """Over the seeds whose capacity the grid has decided; none if fewer than two, or if one lies off the grid."""
    decided = group[group["decided"] & (group["runs_done"] > 0)]
    if len(decided) < 2 or decided["censored"].notna().any():
        return "–"
    mean, lo, hi = t_interval(decided["value"].to_numpy())
    return f"{mean:.0f} [{lo:.0f}, {hi:.0f}] ({len(decided)} of {len(group)} seeds)"


def tables(results: dict[str, Any]) -> str:
    df = frame(results)
    cells, caps = cell_stats(df), capacities(df)
    seeds = sorted(df["seed"].unique())
    done, planned = int(df["done"].sum()), len(df)
    train = results["study"]["train"]
    out = [f"# capacity, part uncapped: setting 1 near each capacity, seeds {', '.join(map(str, seeds))}", "",
           f"Stopping rule: eval loss ≤ {train['target_loss']}, {train['patience']} evaluations without a new best, "
           f"or {train['max_steps']:,} steps. Success: final eval loss ≤ {SUCCESS}.".replace(f"{train['max_steps']:,}",
                                                                                   f"{train['max_steps']:,}".replace(",", " ")), "",
           f"**{done} of {planned} planned runs done**" + ("" if done == planned else
                                                          " — a partial result: pending runs are marked *pending*; "
                                                          "the same command continues from the finished runs."), ""]
    paper_caps = paper.CAPACITY[1]
    out += ["## Capacity per seed (largest S with final loss ≤ 0.01)", "",
            "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean [95 % t interval] | paper |",
            "|---|" + "---|" * (len(seeds) + 2)]
    for model, g in caps.groupby("model", sort=False):
        grid_min = int(df[df["model"] == model]["S"].min())
        cols = [_capacity_text(g[g["seed"] == s].iloc[0], grid_min) if (g["seed"] == s).any() else "" for s in seeds]
        out.append(f"| {g['label'].iloc[0]} | " + " | ".join(cols) + f" | {_capacity_mean(g)} | "
                   f"{paper_caps.get(model, '–')} |")
    out += ["", "## Fraction of seeds succeeding per S", "",
            "successes / seeds done (of seeds planned); final eval loss per seed (– pending) and its mean over the "
            "seeds done [95 % t interval]; steps: mean; † = some run stopped at the step cap; paper: its final loss "
            "(its steps).", ""]
    for model, c in cells.groupby("model", sort=False):
        out += [f"### {c['label'].iloc[0]}", "",
                f"| S | successes | final loss, seed {' / '.join(map(str, seeds))} | mean [95 % t interval] | "
                "accuracy | steps | paper |", "|---|---|---|---|---|---|---|"]
        for _, r in c.iterrows():
            ref = (f"{_fmt(paper.FINAL_LOSS[1].get(model, {}).get(r['S'], math.nan))} "
                   f"({paper.STEPS[1].get(model, {}).get(r['S'], '–')})")
            if r["n"] == 0:
                out.append(f"| {r['S']} | *pending* (0 of {r['planned']}) | | | | | {ref} |")
                continue
            pend = "" if r["n"] == r["planned"] else f" (of {r['planned']}; {r['planned'] - r['n']} *pending*)"
            losses = " / ".join(_fmt(r["per_seed"][s]) if s in r["per_seed"] else "–" for s in seeds)
            out.append(f"| {r['S']} | {r['success']}/{r['n']}{pend} | {losses} | {_fmt(r['mean'])} [{_fmt(r['lo'])}, "
                       f"{_fmt(r['hi'])}] | {r['acc']:.3f} | {r['steps']:.0f}{' †' * int(r['capped'] > 0)} | {ref} |")
        out.append("")
    out += ["## Every run", "", "| run | final loss | accuracy | stop | steps | train s |", "|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        name = f"{r['model']} S = {r['S']} seed {r['seed']}"
        out.append(f"| {name} | {_fmt(r['loss'])} | {r['acc']:.3f} | {r['stop']} | {r['steps']} | {r['seconds']:.0f} |"
                   if r["done"] else f"| {name} | *pending* | | | | |")
    out.append("")
    return "\n".join(out)


def figure(results: dict[str, Any]) -> go.Figure:
    """Final eval loss against S per model: one marker per seed done, a line through the means, the paper's
    final losses dashed; the success threshold dotted."""
    df = frame(results)
    d = df[df["done"]]
    fig = go.Figure()
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for i, (model, g) in enumerate(df.groupby("model", sort=False)):
        colour, label = colours[i % len(colours)], g["label"].iloc[0]
        mine = d[d["model"] == model]
        means = mine.groupby("S")["loss"].mean()
        fig.add_scatter(x=means.index, y=means.values, mode="lines", name=label, legendgroup=label,
                        line={"color": colour})
        fig.add_scatter(x=mine["S"], y=mine["loss"], mode="markers", name=label, legendgroup=label, showlegend=False,
                        marker={"color": colour}, text=[f"seed {s}, {st} at {n}" for s, st, n in
                                                        zip(mine["seed"], mine["stop"], mine["steps"])])
        ref: Optional[dict] = paper.FINAL_LOSS[1].get(model)
        if ref:
            grid = sorted(g["S"].unique())
            xs = [S for S in sorted(ref) if grid[0] <= S <= grid[-1]]
            fig.add_scatter(x=xs, y=[max(ref[S], 1e-6) for S in xs], mode="lines", name=f"{label} (paper)",
                            legendgroup=label, line={"color": colour, "dash": "dash"})
    fig.add_hline(y=SUCCESS, line_dash="dot", annotation_text="success ≤ 0.01")
    done, planned = len(d), len(df)
    fig.update_layout(title=f"Setting 1 to the paper's stopping rule: final eval loss per seed ({done}/{planned} runs)",
                      xaxis_title="S (keys stored)", yaxis_title="final eval loss", yaxis_type="log",
                      width=900, height=550)
    return fig
