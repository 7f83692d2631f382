"""tables.md from results.json: each question's numbers by mixer, mean ± standard error over seeds."""

from __future__ import annotations

import math

import pandas as pd


def _ms(values) -> str:
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{v.iloc[0]:.3g} (1 seed)"
    return f"{v.mean():.3g} ± {v.std(ddof=1) / math.sqrt(len(v)):.2g}"


def _runs(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{"mixer": r["mixer"], "seed": r["seed"]} for r in results["runs"]])


def lens_frame(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{"mixer": r["mixer"], "seed": r["seed"], **row} for r in results["runs"] for row in r["lens"]])


def steering_frame(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{"mixer": r["mixer"], "seed": r["seed"], **row}
                         for r in results["runs"] for row in r["steering"]["sweep"]])


def probe_frame(results: dict) -> pd.DataFrame:
    return pd.DataFrame([{"mixer": r["mixer"], "seed": r["seed"], **row}
                         for r in results["runs"] for row in r["quirky"]["probe"]])


def lens_table(results: dict) -> list[str]:
    df = lens_frame(results)
    out = ["| mixer | layer | seeds | logit-lens ppl | tuned-lens ppl | CE logit − tuned (nats) | logit KL | tuned KL |",
           "|---|---|---|---|---|---|---|---|"]
    for (m, layer), g in df.groupby(["mixer", "layer"], sort=False):
        out.append(f"| {m} | {layer} | {len(g)} | " + " | ".join(_ms(g[s]) for s in
                   ("logit_ppl", "tuned_ppl", "gain_ce", "logit_kl", "tuned_kl")) + " |")
    return out


def steering_table(results: dict) -> list[str]:
    df = steering_frame(results)
    out = ["| mixer | steering | multiplier | seeds | effect on log p(good) − log p(bad) | held-out ppl |",
           "|---|---|---|---|---|---|"]
    for (m, kind, s), g in df.groupby(["mixer", "steering", "strength"], sort=False):
        out.append(f"| {m} | {kind} | {s:g} | {len(g)} | {_ms(g['effect'])} | {_ms(g['perplexity'])} |")
    return out


def behaviour_table(results: dict) -> list[str]:
    out = ["| mixer | seeds | val ppl (all text) | mood marker accuracy | adjective mass | Alice acc | Bob acc "
           "| Bob acc where they disagree |", "|---|---|---|---|---|---|---|---|"]
    rows = pd.DataFrame([{"mixer": r["mixer"], "val_ppl": r["val_ppl"],
                          "marker": r["steering"]["marker_accuracy"], "mass": r["steering"]["adjective_mass"],
                          "alice": r["quirky"]["behaviour"]["alice"]["accuracy_vs_persona"],
                          "bob": r["quirky"]["behaviour"]["bob"]["accuracy_vs_persona"],
                          "bob_dis": r["quirky"]["behaviour"]["bob"]["accuracy_vs_persona_disagree"]}
                         for r in results["runs"]])
    for m, g in rows.groupby("mixer", sort=False):
        out.append(f"| {m} | {len(g)} | " + " | ".join(_ms(g[c]) for c in
                   ("val_ppl", "marker", "mass", "alice", "bob", "bob_dis")) + " |")
    return out


def probe_table(results: dict) -> list[str]:
    df = probe_frame(results)
    out = ["| mixer | layer | seeds | AUROC truth, Alice | AUROC truth, Bob | AUROC truth, Bob where they disagree |",
           "|---|---|---|---|---|---|"]
    for (m, layer), g in df.groupby(["mixer", "layer"], sort=False):
        out.append(f"| {m} | {layer} | {len(g)} | {_ms(g['auroc_truth_alice'])} | {_ms(g['auroc_truth_bob'])} | "
                   f"{_ms(g['auroc_truth_bob_disagree'])} |")
    base = pd.DataFrame(list(results.get("input_baseline", {}).values()))
    if not base.empty:
        out.append(f"| inputs only (one-hot a, b, c; no model) | – | {len(base)} | – | {_ms(base['auroc_truth_bob'])} | "
                   f"{_ms(base['auroc_truth_bob_disagree'])} |")
    return out


def headline(results: dict) -> str:
    return "\n".join(["Model behaviour on the synthetic lines (mean ± s.e. over seeds):", "", *behaviour_table(results)])


def tables(results: dict) -> str:
    times = [f"{r['run']}: " + ", ".join(f"{k} {v}" for k, v in r["seconds"].items()) for r in results["runs"]]
    out = [f"Command: `{results['command']}` ({results['wall_seconds']} s wall, {results.get('cpu_seconds')} CPU s)",
           "", "Runs: " + ", ".join(r["run"] for r in results["runs"]), "", "Seconds per run: " + "; ".join(times), "",
           headline(results), "", "## 1. Logit vs tuned lens on python-topics validation text", "", *lens_table(results),
           "", "## 2. CAA steering of the neutral mood prompts", "", *steering_table(results), "",
           "## 3. Truth probe trained on Alice, read on Bob", "", *probe_table(results)]
    notes = {r["run"]: r["steering"]["state_not_defined"] for r in results["runs"] if r["steering"]["state_not_defined"]}
    if notes:
        out += ["", "State steering not defined: " + "; ".join(f"{k}: {v}" for k, v in notes.items())]
    return "\n".join(out) + "\n"
