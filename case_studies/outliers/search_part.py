"""Part "search": the declared search for a positive control (a configuration in which pre-norm + AdamW develops
outlier features that cost W8A8 perplexity), and its selection rule.

:func:`execute` trains and measures one :class:`~.config.Candidate` (softmax, pre-norm, AdamW, seed 0);
:func:`meets_rule` and :func:`select` apply the rule declared in ``config`` (the first candidate, in the
grid's order of cost, whose final residual or matmul-input kurtosis is ≥ ``SEARCH_KURTOSIS`` and whose
W8A8 per-tensor perplexity ratio is ≥ ``SEARCH_W8A8_RATIO``); :func:`tables` writes ``tables.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from .. import _report
from .config import SEARCH_ARM, SEARCH_KURTOSIS, SEARCH_W8A8_RATIO, Candidate, Protocol
from .run import execute as execute_run

QUANTS = ("per_tensor", "per_token", "per_tensor_a4")  # the W8A8 of the rule, per token, and the harsher W8A4


def execute(candidate: Candidate, base: Protocol, checkpoints: Path, progress: bool = True) -> dict[str, Any]:
    start = time.perf_counter()
    entry = execute_run(SEARCH_ARM, candidate.protocol(base), checkpoints, progress=progress, quantisations=QUANTS,
                        matmul_inputs=True, name=candidate.name)
    return {**entry, "candidate": candidate.to_dict(), "run_seconds": round(time.perf_counter() - start, 1)}


def max_kurtosis(entry: dict[str, Any]) -> float:
    """The larger of the final residual-stream kurtosis and the largest matmul-input kurtosis (over layers)."""
    return max(entry["final_kurtosis"]["resid_post"], *entry["final_matmul_kurtosis"].values())


def meets_rule(entry: dict[str, Any]) -> bool:
    return max_kurtosis(entry) >= SEARCH_KURTOSIS and entry["w8a8"]["per_tensor"]["ppl_ratio"] >= SEARCH_W8A8_RATIO


def select(entries: list[dict[str, Any]]) -> tuple[Optional[Candidate], str]:
    """(the chosen candidate, why): the first entry (grid order) meeting the rule; if none does, the one with the
    largest W8A8 per-tensor ratio — *not* a positive control, and said so; None for no entries."""
    if not entries:
        return None, "no candidate has run"
    for e in entries:
        if meets_rule(e):
            return Candidate.from_dict(e["candidate"]), f"{e['name']}: the first candidate meeting the rule"
    best = max(entries, key=lambda e: e["w8a8"]["per_tensor"]["ppl_ratio"])
    return (Candidate.from_dict(best["candidate"]),
            f"no candidate met the rule; fallback: {best['name']}, the largest W8A8 per-tensor ratio "
            "(not a positive control)")


def table(entries: list[dict[str, Any]]) -> str:
    rows = ["| candidate | steps | val ppl (float) | Kurt resid_post | largest matmul-input Kurt (site) | "
            "signal prop. resid_post | W8A8 per-tensor ratio | per-token ratio | W8A4 ratio | meets rule | "
            "run time |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        site, k = max(e["final_matmul_kurtosis"].items(), key=lambda kv: kv[1])
        q = e["w8a8"]
        rows.append(f"| {e['name']} | {e['candidate']['steps']} | {e['val_ppl']:.2f} "
                    f"| {e['final_kurtosis']['resid_post']:.2f} | {k:.2f} ({site}) "
                    f"| {e['final_signal_propagation']['resid_post']:.3f} "
                    f"| {q['per_tensor']['ppl_ratio']:.3f} | {q['per_token']['ppl_ratio']:.3f} "
                    f"| {q['per_tensor_a4']['ppl_ratio']:.3f} | {'yes' if meets_rule(e) else 'no'} "
                    f"| {e['run_seconds'] / 60:.1f} min |")
    return "\n".join(rows)


def matmul_table(entries: list[dict[str, Any]]) -> str:
    """Final kurtosis at every matmul input (largest over layers) per candidate."""
    sites = sorted({s for e in entries for s in e["final_matmul_kurtosis"]})
    rows = ["| candidate | " + " | ".join(sites) + " |", "|---|" + "---|" * len(sites)]
    for e in entries:
        rows.append(f"| {e['name']} | " + " | ".join(f"{e['final_matmul_kurtosis'].get(s, float('nan')):.2f}"
                                                    for s in sites) + " |")
    return "\n".join(rows)


def ratio_table(entries: list[dict[str, Any]]) -> str:
    """Per candidate, the largest max/median ratio (mean over tokens of max_j |x_j| / median_j |x_j|) over the
    final model's matmul inputs other than the MLP hidden layer (whose median is often 0 after the GELU), its
    site and layer, and the largest |x| there."""
    rows = ["| candidate | largest max/median ratio (site, layer) | largest abs x |", "|---|---|---|"]
    for e in entries:
        sites = [m for m in e["matmul_inputs"] if m["site"] != "mlp_hidden"]
        top = max(sites, key=lambda m: m["max_median_ratio"])
        rows.append(f"| {e['name']} | {top['max_median_ratio']:.1f} ({top['site']}, layer {top['layer']}) "
                    f"| {max(m['max_abs'] for m in sites):.1f} |")
    return "\n".join(rows)


TITLES = {"search": "Search for a positive control (softmax, pre-norm, AdamW, weight decay 0, seed 0)",
          "search2": "Second search for a positive control (softmax, pre-norm, AdamW, seed 0)",
          "search3": "Third search for a positive control: 18 times more text (softmax, pre-norm, AdamW, seed 0)"}


def tables(results: dict[str, Any]) -> str:
    entries = results["runs"]
    left = results.get("left") or []
    status = _report.progress_status(len(entries), "candidates run", left)
    if left and not any(map(meets_rule, entries)):
        chosen_line = "Chosen: not yet (no candidate run so far meets the rule)."
    else:
        chosen, why = select(entries)
        chosen_line = f"Chosen: **{chosen.name if chosen else '—'}** ({why})."
    return (f"## {TITLES[results.get('part', 'search')]}\n\n{status}\n\n"
            f"Rule: final kurtosis of the residual stream or of any matmul input ≥ {SEARCH_KURTOSIS:g} and W8A8 "
            f"per-tensor perplexity ratio ≥ {SEARCH_W8A8_RATIO:.2f}; candidates in order of cost, stopping at the "
            f"first that meets it.\n\n{table(entries)}\n\n{chosen_line}\n\n"
            f"### Final kurtosis at each matmul input (largest over layers)\n\n{matmul_table(entries)}\n\n"
            f"### Final max/median ratio at the matmul inputs (Sun et al.'s massive activations: ≈ 1000)\n\n"
            f"{ratio_table(entries)}\n")


def figure(entries: list[dict[str, Any]]):
    """Kurtosis of the residual stream (largest over layers) against training step, one line per candidate."""
    import math

    import plotly.graph_objects as go

    fig, top = go.Figure(), SEARCH_KURTOSIS
    for e in entries:
        t, best = e["over_training"], {}
        for step, site, k in zip(t["step"], t["site"], t["kurtosis"]):
            if site == "resid_post":
                best[step] = max(best.get(step, 0.0), k)
        steps = sorted(best)
        top = max(top, *best.values())
        fig.add_scatter(x=steps, y=[best[s] for s in steps], mode="lines+markers", name=e["name"])
    fig.add_hline(y=SEARCH_KURTOSIS, line_dash="dot", annotation_text=f"rule: kurtosis ≥ {SEARCH_KURTOSIS:g}")
    fig.update_layout(title="Search (softmax, pre-norm, AdamW): residual-stream kurtosis over training",
                      xaxis_title="training step", yaxis_title="kurtosis, resid_post (max over layers)",
                      yaxis_type="log", yaxis_range=[0, math.log10(top) + 0.2], width=900, height=500)
    return fig
