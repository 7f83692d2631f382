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


CONDITIONS = ("residual", "state", "residual + state", "state (norm-matched)", "residual + state (norm-matched)",
              "residual (matched to state)", "residual (matched to state) + state")


def steering_table(results: dict, column: str = "effect") -> list[str]:
    """One row per (mixer, multiplier), one column per steering condition: ``column`` (effect or perplexity)."""
    df = steering_frame(results)
    kinds = [c for c in CONDITIONS if c in set(df["steering"])]
    out = ["| mixer | multiplier | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for (m, s), g in df.groupby(["mixer", "strength"], sort=False):
        cells = [_ms(g.loc[g["steering"] == k, column]) if (g["steering"] == k).any() else "–" for k in kinds]
        out.append(f"| {m} | {s:g} | " + " | ".join(cells) + " |")
    return out


def matching_table(results: dict) -> list[str]:
    """The state direction's scale beside the CAA vector's: ‖v‖, the mean ‖Δ attn_out‖ that state steering at
    strength 1 causes, the norm-matched strength and the change it gives at multipliers +1 and −1."""
    rows = pd.DataFrame([{"mixer": r["mixer"], "norm": r["steering"]["vector_norm"],
                          "unit": r["steering"].get("state_unit_change"), "scale": r["steering"].get("matched_scale"),
                          "plus": r["steering"].get("matched_change_at_1"),
                          "minus": r["steering"].get("matched_change_at_-1"),
                          "missing": r["run"] if r["steering"].get("matched_not_reached") else None}
                         for r in results["runs"] if not r["steering"]["state_not_defined"]])
    out = ["| mixer | runs | ‖v‖ (CAA vector) | mean ‖Δ attn_out‖, state at strength 1 | matched strength | "
           "mean ‖Δ attn_out‖ at +1 / −1 × matched | not reachable (saturates) |", "|---|---|---|---|---|---|---|"]
    for m, g in rows.groupby("mixer", sort=False):
        missing = ", ".join(g["missing"].dropna()) or "–"
        out.append(f"| {m} | {len(g)} | {_ms(g['norm'])} | {_ms(g['unit'])} | {_ms(g['scale'])} | "
                   f"{_ms(g['plus'])} / {_ms(g['minus'])} | {missing} |")
    return out


def additivity_table(results: dict) -> list[str]:
    """Does state steering add to residual steering? Per (mixer, multiplier), paired within each run: the
    combined effect minus the residual effect, and the combined effect minus the sum of the two alone."""
    df = steering_frame(results)
    wide = df.pivot_table(index=["mixer", "seed", "strength"], columns="steering", values="effect").reset_index()
    out = ["| mixer | multiplier | scales | seeds | residual | state alone | residual + state | "
           "(residual + state) − residual | (residual + state) − (residual) − (state) |", "|---|---|---|---|---|---|---|---|---|"]
    for label, res, state, both in (
            ("own contrast", "residual", "state", "residual + state"),
            ("state norm-matched to v", "residual", "state (norm-matched)", "residual + state (norm-matched)"),
            ("v matched to the state", "residual (matched to state)", "state", "residual (matched to state) + state")):
        if both not in wide:
            continue
        w = wide.dropna(subset=[both])
        for (m, s), g in w[w["strength"] != 0].groupby(["mixer", "strength"], sort=False):
            out.append(f"| {m} | {s:g} | {label} | {len(g)} | {_ms(g[res])} | {_ms(g[state])} | {_ms(g[both])} | "
                       f"{_ms(g[both] - g[res])} | {_ms(g[both] - g[res] - g[state])} |")
    return out


def behaviour_table(results: dict) -> list[str]:
    out = ["| mixer | seeds | val ppl (all text) | mood marker accuracy | adjective mass | Alice acc | Bob acc "
           "| Alice acc, disagree | Bob acc, disagree | Alice / Bob acc before fine-tuning |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    rows = pd.DataFrame([{"mixer": r["mixer"], "val_ppl": r["val_ppl"],
                          "marker": r["steering"]["marker_accuracy"], "mass": r["steering"]["adjective_mass"],
                          "alice": r["quirky"]["behaviour"]["alice"]["accuracy_vs_persona"],
                          "bob": r["quirky"]["behaviour"]["bob"]["accuracy_vs_persona"],
                          "alice_dis": r["quirky"]["behaviour"]["alice"]["accuracy_vs_persona_disagree"],
                          "bob_dis": r["quirky"]["behaviour"]["bob"]["accuracy_vs_persona_disagree"],
                          "alice_pre": r["quirky"]["behaviour_before_finetune"]["alice"]["accuracy_vs_persona"],
                          "bob_pre": r["quirky"]["behaviour_before_finetune"]["bob"]["accuracy_vs_persona"]}
                         for r in results["runs"]])
    for m, g in rows.groupby("mixer", sort=False):
        out.append(f"| {m} | {len(g)} | " + " | ".join(_ms(g[c]) for c in
                   ("val_ppl", "marker", "mass", "alice", "bob", "alice_dis", "bob_dis")) +
                   f" | {_ms(g['alice_pre'])} / {_ms(g['bob_pre'])} |")
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
        out.append(f"| inputs only (one-hot a, c; no model) | – | {len(base)} | – | {_ms(base['auroc_truth_bob'])} | "
                   f"{_ms(base['auroc_truth_bob_disagree'])} |")
    return out


def headline(results: dict) -> str:
    return "\n".join(["Model behaviour on the synthetic lines (mean ± s.e. over seeds; quirky accuracy of the fine-tuned "
                      "copy against the persona's answer, majority rate 0.5):", "", *behaviour_table(results)])


def tables(results: dict) -> str:
    times = [f"{r['run']}: " + ", ".join(f"{k} {v}" for k, v in r["seconds"].items()) for r in results["runs"]]
    out = [f"Command: `{results['command']}` ({results['wall_seconds']} s wall, {results.get('cpu_seconds')} CPU s)",
           "", "Runs: " + ", ".join(r["run"] for r in results["runs"]), "", "Seconds per run: " + "; ".join(times), "",
           headline(results), "", "## 1. Logit vs tuned lens on python-topics validation text", "", *lens_table(results),
           "", "## 2. CAA steering of the neutral mood prompts", "",
           "Effect on log p(good) − log p(bad) (steered − clean):", "", *steering_table(results), "",
           "Held-out perplexity under the same steering:", "", *steering_table(results, "perplexity"), "",
           "The state direction's scale beside the CAA vector's:", "", *matching_table(results), "",
           "Does state steering add to residual steering (paired within each run)?", "", *additivity_table(results),
           "", "## 3. Truth probe trained on Alice, read on Bob", "", *probe_table(results)]
    notes = {r["run"]: r["steering"]["state_not_defined"] for r in results["runs"] if r["steering"]["state_not_defined"]}
    if notes:
        out += ["", "State steering not defined: " + "; ".join(f"{k}: {v}" for k, v in notes.items())]
    return "\n".join(out) + "\n"
