"""The README's tables, generated from results.json (the tests check the README holds them verbatim)."""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from .figures import headline_rows, label, top_levels, variants
from .paper import MERULLO, MERULLO_BASE_PPL, XU_ROUGE_BY_OFFSET


def _num(x: Optional[float], digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def _reps(run: dict) -> list[int]:
    return sorted({c["repetitions"] for c in run["canaries"]})


def headline_table(results: dict[str, Any]) -> str:
    budget = results["study"]["protocol"]["ppl_budget"]
    head = ["model", "edit", "ρ", "strict", "loose", "ppl", "ppl / unedited", "top-10 agr.", "‖ΔW‖/‖W‖"]
    rows = []
    for run in results["runs"]:
        found = headline_rows(run)
        for variant in ["unedited"] + variants(run):
            r = found.get(variant)
            if r is None:
                rows.append([label(run), variant, f"none within {budget:g}×", "", "", "", "", "", ""])
                continue
            rows.append([label(run), variant, f"{r['rho']:g}", _num(r["strict_memorized"]),
                         _num(r["loose_memorized"]), _num(r["ppl"], 2), _num(r["ppl_ratio"]),
                         _num(r["top10_agreement"]), _num(r["weight_rel_change"], 2)])
    for p in MERULLO:
        rows.append(["OLMo-2 7B (paper)", p["method"], "0.6" if p["method"] == "K-FAC" else "", _num(p["strict"]),
                     _num(p["loose"]), _num(p["ppl"], 2), _num(p["ppl"] / MERULLO_BASE_PPL), "", ""])
    n = ", ".join(f"{label(r)} {len(r['memorized'])} of {len(r['canaries'])}" for r in results["runs"])
    return "\n".join([f"Recitation of the canaries each unedited model recites exactly ({n}); each edit at the "
                      f"smallest ρ of the sweep whose perplexity stays within {budget:g}× the unedited model's:", ""]
                     + _table(head, rows))


def sweep_table(results: dict[str, Any]) -> str:
    out = []
    for run in results["runs"]:
        reps = _reps(run)
        head = (["edit", "ρ", "ppl", "ppl / unedited", "top-10 agr.", "‖ΔW‖/‖W‖", "kept", "strict (mem.)",
                 "loose (mem.)", "distance (mem.)"] + [f"strict @{r}" for r in reps])
        order = ["unedited"] + variants(run)
        rows = []
        for r in sorted(run["sweep"], key=lambda r: (order.index(r["variant"]), -r["rho"])):
            rows.append([r["variant"], f"{r['rho']:g}", _num(r["ppl"], 2), _num(r["ppl_ratio"]),
                         _num(r["top10_agreement"]), _num(r["weight_rel_change"], 2), _num(r["kept_fraction"]),
                         _num(r["strict_memorized"]), _num(r["loose_memorized"]), _num(r["distance_memorized"])]
                        + [_num(r.get(f"strict@{k}"), 2) for k in reps])
        tokens = ", ".join(f"{n} tokens of {k} data" for k, n in run["kfac_tokens"].items())
        out += [f"**{label(run)}** (validation perplexity {run['val_ppl']:.2f}; K-FAC factors from {tokens}):", ""]
        out += _table(head, rows) + [""]
    return "\n".join(out).rstrip()


def position_table(results: dict[str, Any]) -> str:
    head = None
    rows = []
    for run in results["runs"]:
        df = pd.DataFrame(run["by_prompt_position"])
        reps = _reps(run)
        head = ["model", "trained at", "prompted at"] + [f"strict @{r}" for r in reps] + \
               [f"1 − d @{reps[-1]}"]
        for (pos, prompt), part in df.groupby(["position", "prompt_position"]):
            part = part.set_index("repetitions")
            rows.append([label(run), str(pos), str(prompt)] + [_num(part.strict_acc.get(r), 2) for r in reps]
                        + [_num(1 - part.mean_norm_distance[reps[-1]], 2)])
    return "\n".join(["Strict recitation before editing, by where the canary sat in its training rows and where the "
                      "prompt is placed (after that many tokens of validation text):", ""] + _table(head, rows))


def offset_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    offsets = sorted({o["offset"] for o in runs[0]["by_offset"]})
    head = ["model", "repetitions"] + [f"offset {o}" for o in offsets]
    rows = []
    for run in runs:
        df = pd.DataFrame(run["by_offset"])
        df = df[(df.position == 0) & df.repetitions.isin(top_levels(run))]
        for reps, part in df.groupby("repetitions"):
            part = part.set_index("offset")
            rows.append([label(run), str(reps)] + [f"{part.strict_acc[o]:.2f} / {1 - part.mean_norm_distance[o]:.2f}"
                                                   for o in offsets])
    p = runs[0]["task"]
    prot = results["study"]["protocol"]
    xu = ", ".join(f"{o}: {v}" for o, v in XU_ROUGE_BY_OFFSET.items())
    return "\n".join([f"Strict accuracy / similarity 1 − d/L of the recited suffix, prefix of "
                      f"{prot['offset_prefix_len']} tokens taken at the offset into the canary, suffix of "
                      f"{prot['offset_suffix_len']}, prompt at position 0; canaries trained at position 0 with the two "
                      f"largest repetition counts, unedited models (the canaries are {p['canary_len']} tokens). "
                      f"Xu et al. (8B, 128×), Rouge-L by offset: {xu}.", ""] + _table(head, rows))


def prefix_table(results: dict[str, Any]) -> str:
    head, rows = None, []
    for run in results["runs"]:
        df = pd.DataFrame(run["by_prefix_len"])
        lens = sorted(set(df.prefix_len))
        head = ["model", "repetitions"] + [f"prefix {p}" for p in lens]
        g = df.assign(k=df.strict_acc * df.n).groupby(["repetitions", "prefix_len"])
        acc = (g.k.sum() / g.n.sum())
        for reps in _reps(run):
            rows.append([label(run), str(reps)] + [_num(acc[(reps, p)], 2) for p in lens])
    return "\n".join(["Strict recitation before editing by prefix length (prompt at the training position):", ""]
                     + _table(head, rows))


def tables(results: dict[str, Any]) -> str:
    return "\n\n".join([headline_table(results), sweep_table(results), position_table(results),
                        offset_table(results), prefix_table(results)]) + "\n"
